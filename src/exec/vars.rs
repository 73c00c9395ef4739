//! The variables a task sees on a host, layered in Ansible's precedence order.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::state::HostState;
use super::PlayCtx;
use crate::inventory::Inventory;
use crate::playbook::Task;
use crate::template::OMIT;

fn extend(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (k, v) in from {
        into.insert(k.clone(), v.clone());
    }
}

/// Builds the task's variables for `host` (low → high): role defaults, inventory, facts, play
/// vars, vars_files, role vars, block vars, task vars, set_fact/register/include_vars, role
/// params, extra vars; then the magic variables.
pub fn task_vars(p: &PlayCtx, task: Option<&Task>, host: &HostState) -> Map<String, Value> {
    let mut v = Map::new();
    let role = task.and_then(|t| t.role.as_deref());
    if let Some(r) = role {
        extend(&mut v, &r.defaults);
    }
    extend(&mut v, &host.inv_vars);
    for (k, f) in &host.facts {
        v.insert(format!("ansible_{k}"), f.clone());
    }
    v.insert("ansible_facts".into(), Value::Object(host.facts.clone()));
    extend(&mut v, &p.play.vars);
    extend(&mut v, &p.vars_files);
    if let Some(r) = role {
        extend(&mut v, &r.vars);
    }
    if let Some(t) = task {
        extend(&mut v, &t.inherit.vars);
        extend(&mut v, &t.vars);
    }
    extend(&mut v, &host.host_vars);
    if let Some(r) = role {
        extend(&mut v, &r.params);
    }
    extend(&mut v, p.extra_vars);
    magic(
        &mut v,
        p,
        role.map(|r| (r.name.as_str(), r.path.as_path())),
        host,
    );
    v
}

fn magic(
    v: &mut Map<String, Value>,
    p: &PlayCtx,
    role: Option<(&str, &std::path::Path)>,
    host: &HostState,
) {
    let name = &host.name;
    v.insert("inventory_hostname".into(), Value::String(name.clone()));
    v.insert(
        "inventory_hostname_short".into(),
        Value::String(name.split('.').next().unwrap_or(name).to_owned()),
    );
    v.insert(
        "group_names".into(),
        p.group_names
            .get(name)
            .cloned()
            .unwrap_or(Value::Array(vec![])),
    );
    v.insert("groups".into(), (*p.groups).clone());
    v.insert("play_hosts".into(), (*p.batch).clone());
    v.insert("ansible_play_hosts".into(), (*p.batch).clone());
    v.insert("ansible_play_batch".into(), (*p.batch).clone());
    v.insert("ansible_play_hosts_all".into(), (*p.play_hosts).clone());
    v.insert(
        "ansible_play_name".into(),
        Value::String(p.play.name.clone()),
    );
    v.insert(
        "playbook_dir".into(),
        Value::String(p.playbook_dir.display().to_string()),
    );
    v.insert("inventory_dir".into(), p.inventory_dir.clone());
    v.insert("omit".into(), Value::String(OMIT.to_owned()));
    v.insert("ansible_check_mode".into(), Value::Bool(p.check));
    v.insert("ansible_diff_mode".into(), Value::Bool(p.diff));
    v.insert("ansible_version".into(), serde_json::json!({"full": "2.19.0", "major": 2, "minor": 19, "revision": 0, "string": "2.19.0"}));
    // The running duststack binary, for roles that call it on the control machine (`pki`).
    if let Ok(exe) = std::env::current_exe() {
        v.insert(
            "duststack_executable".into(),
            Value::String(exe.display().to_string()),
        );
    }
    v.insert(
        "duststack_version".into(),
        Value::String(env!("CARGO_PKG_VERSION").into()),
    );
    if let Some((rname, rpath)) = role {
        v.insert("role_name".into(), Value::String(rname.to_owned()));
        v.insert(
            "role_path".into(),
            Value::String(rpath.display().to_string()),
        );
    }
    if let Some(hv) = &p.hostvars {
        v.insert("hostvars".into(), (**hv).clone());
    }
}

/// `hostvars`: every host's inventory vars, facts and set facts (built once per task when used);
/// `inventory` (from [`inventory_hostvars`]) supplies the hosts no play has reached yet.
pub fn hostvars(hosts: &[HostState], inventory: &Map<String, Value>) -> Arc<Value> {
    let mut out = inventory.clone();
    for h in hosts {
        let mut m = (*h.inv_vars).clone();
        for (k, f) in &h.facts {
            m.insert(format!("ansible_{k}"), f.clone());
        }
        m.insert("ansible_facts".into(), Value::Object(h.facts.clone()));
        extend(&mut m, &h.host_vars);
        m.insert("inventory_hostname".into(), Value::String(h.name.clone()));
        out.insert(h.name.clone(), Value::Object(m));
    }
    Arc::new(Value::Object(out))
}

/// The inventory's part of `hostvars` for every inventory host: its variables and name.
pub fn inventory_hostvars(
    inventory: &Inventory,
    playbook_dir: &Path,
) -> anyhow::Result<Map<String, Value>> {
    let mut out = Map::new();
    for h in inventory.hosts() {
        let mut m = inventory.vars_for_host(&h, Some(playbook_dir))?;
        m.insert("inventory_hostname".into(), Value::String(h.clone()));
        out.insert(h, Value::Object(m));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hostvars_cover_hosts_outside_the_play() {
        let inventory = Map::from_iter([
            ("a".to_owned(), json!({"x": 1, "inventory_hostname": "a"})),
            ("b".to_owned(), json!({"x": 2, "inventory_hostname": "b"})),
        ]);
        let mut a = HostState::new("a", Map::from_iter([("x".to_owned(), json!(1))]));
        a.host_vars.insert("y".into(), json!("set"));
        let hv = hostvars(&[a], &inventory);
        assert_eq!(hv["a"]["y"], "set");
        assert_eq!(hv["b"]["x"], 2);
        assert_eq!(hv["b"]["inventory_hostname"], "b");
        assert_eq!(
            hv.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["a", "b"]
        );
    }
}
