//! `ansible-inventory` output: `--list` JSON, `--graph [--vars]` text, `--host` JSON.

use std::collections::HashSet;

use anyhow::bail;
use serde_json::{json, Map, Value};

use super::Inventory;

/// `ansible-inventory --list` for every host.
pub fn list_json(inv: &Inventory) -> anyhow::Result<Value> {
    list_json_for(inv, &inv.hosts())
}

/// `ansible-inventory --list` restricted to `available` hosts (what `--limit` leaves).
pub fn list_json_for(inv: &Inventory, available: &[String]) -> anyhow::Result<Value> {
    let available: HashSet<&str> = available.iter().map(String::as_str).collect();
    let mut out = Map::new();
    let mut seen: HashSet<String> = HashSet::new();
    format_group(inv, "all", &available, &mut seen, &mut out);
    let mut hostvars = Map::new();
    for host in inv.hosts() {
        if !available.contains(host.as_str()) {
            continue;
        }
        let vars = inv.vars_for_host(&host, None)?;
        if !vars.is_empty() {
            hostvars.insert(host, Value::Object(vars));
        }
    }
    out.insert(
        "_meta".into(),
        json!({"hostvars": hostvars, "profile": "inventory_legacy"}),
    );
    Ok(Value::Object(out))
}

fn format_group(
    inv: &Inventory,
    name: &str,
    available: &HashSet<&str>,
    seen: &mut HashSet<String>,
    out: &mut Map<String, Value>,
) {
    let Some(group) = inv.group(name) else {
        return;
    };
    let mut entry = Map::new();
    let mut nested = Map::new();
    if name != "all" {
        let hosts: Vec<Value> = group
            .hosts
            .iter()
            .filter(|h| available.contains(h.as_str()))
            .map(|h| Value::String(h.clone()))
            .collect();
        if !hosts.is_empty() {
            entry.insert("hosts".into(), Value::Array(hosts));
        }
    }
    let mut children = Vec::new();
    for child in &group.children {
        children.push(Value::String(child.clone()));
        if seen.insert(child.clone()) {
            format_group(inv, child, available, seen, &mut nested);
        }
    }
    if !children.is_empty() {
        entry.insert("children".into(), Value::Array(children));
    }
    if !entry.is_empty() {
        out.insert(name.to_owned(), Value::Object(entry));
    }
    for (k, v) in nested {
        out.insert(k, v);
    }
}

/// `ansible-inventory --host HOST`: the host's merged vars.
pub fn host_json(inv: &Inventory, host: &str) -> anyhow::Result<Value> {
    let hosts = inv.select(host)?;
    if hosts.len() != 1 {
        bail!("You must pass a single valid host to --host parameter");
    }
    Ok(Value::Object(inv.vars_for_host(&hosts[0], None)?))
}

/// `ansible-inventory --graph [GROUP] [--vars]`.
pub fn graph(inv: &Inventory, group: Option<&str>, with_vars: bool) -> anyhow::Result<String> {
    let start = group.unwrap_or("all");
    if inv.group(start).is_none() {
        bail!("Pattern must be valid group name when using --graph");
    }
    let mut lines = Vec::new();
    graph_group(inv, start, 0, with_vars, &mut lines)?;
    Ok(lines.join("\n"))
}

fn graph_name(name: &str, depth: usize) -> String {
    if depth == 0 {
        name.to_owned()
    } else {
        format!("{}--{name}", "  |".repeat(depth))
    }
}

fn show_vars(vars: &Map<String, Value>, depth: usize, lines: &mut Vec<String>) {
    let mut keys: Vec<&String> = vars.keys().collect();
    keys.sort();
    for k in keys {
        lines.push(graph_name(
            &format!("{{{k} = {}}}", crate::data::python::str_of(&vars[k])),
            depth,
        ));
    }
}

fn graph_group(
    inv: &Inventory,
    name: &str,
    depth: usize,
    with_vars: bool,
    lines: &mut Vec<String>,
) -> anyhow::Result<()> {
    let Some(group) = inv.group(name) else {
        return Ok(());
    };
    lines.push(graph_name(&format!("@{name}:"), depth));
    for child in &group.children {
        graph_group(inv, child, depth + 1, with_vars, lines)?;
    }
    if name != "all" {
        for host in &group.hosts {
            lines.push(graph_name(host, depth + 1));
            if with_vars {
                show_vars(&inv.vars_for_host(host, None)?, depth + 2, lines);
            }
        }
    }
    if with_vars {
        let mut vars = inv.group_vars(name)?;
        if group.priority != 1 {
            vars.insert("ansible_group_priority".into(), Value::from(group.priority));
        }
        show_vars(&vars, depth + 1, lines);
    }
    Ok(())
}
