//! Runs playbooks: for each play, select hosts, split into `serial` batches, then the phases
//! connect → facts → pre_tasks → handlers → roles/tasks → handlers → post_tasks → handlers,
//! hosts in parallel under `--forks` (linear strategy), and finally the recap.

pub mod actions;
pub mod play;
pub mod pool;
pub mod state;
pub mod stats;
pub mod task;
pub mod vars;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::{Map, Value};

use crate::inventory::Inventory;
use crate::output::Printer;
use crate::playbook::{Play, Playbook};
use crate::template::{Scope, Templar};
use pool::{ConnOverrides, Pool};
use state::HostState;
use stats::Stats;

/// Settings of one `duststack play` run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `--check`.
    pub check: bool,
    /// `--diff`.
    pub diff: bool,
    /// `--forks`: hosts worked on at once.
    pub forks: usize,
    /// `--limit` pattern.
    pub limit: Option<String>,
    /// `--tags`.
    pub tags: Vec<String>,
    /// `--skip-tags`.
    pub skip_tags: Vec<String>,
    /// `-e` extra variables (highest precedence).
    pub extra_vars: Map<String, Value>,
    /// Connection overrides from the command line.
    pub conn: ConnOverrides,
    /// Extra role directories.
    pub role_paths: Vec<PathBuf>,
    /// `--ask-become-pass`: sudo password when no `ansible_become_password` is set.
    pub become_password: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            check: false,
            diff: false,
            forks: 50,
            limit: None,
            tags: Vec::new(),
            skip_tags: Vec::new(),
            extra_vars: Map::new(),
            conn: ConnOverrides::default(),
            role_paths: Vec::new(),
            become_password: None,
        }
    }
}

/// What stays the same for a whole run.
pub struct Engine<'a> {
    /// Run settings.
    pub opts: &'a RunOptions,
    /// The inventory.
    pub inventory: &'a Inventory,
    /// Output.
    pub printer: &'a Printer,
    /// The template engine.
    pub templar: Templar,
    /// Open connections.
    pub pool: Pool,
}

/// What stays the same for one play (one batch).
pub struct PlayCtx<'a> {
    /// The play.
    pub play: &'a Play,
    /// Variables loaded from `vars_files`.
    pub vars_files: Map<String, Value>,
    /// `-e` variables.
    pub extra_vars: &'a Map<String, Value>,
    /// Hosts of the play (all batches).
    pub play_hosts: Arc<Value>,
    /// Hosts of the current batch.
    pub batch: Arc<Value>,
    /// `groups`.
    pub groups: Arc<Value>,
    /// `group_names` per host.
    pub group_names: HashMap<String, Value>,
    /// `hostvars` snapshot, when the play uses it.
    pub hostvars: Option<Arc<Value>>,
    /// Whether anything in the play mentions `hostvars`.
    pub uses_hostvars: bool,
    /// `hostvars` of every inventory host from its inventory variables (filled when the play
    /// uses `hostvars`), so hosts outside the play or `--limit` are there too, as in Ansible.
    pub inventory_hostvars: Arc<Map<String, Value>>,
    /// Directory of the playbook.
    pub playbook_dir: PathBuf,
    /// Directory of the (first) inventory source.
    pub inventory_dir: Value,
    /// `--check`.
    pub check: bool,
    /// `--diff`.
    pub diff: bool,
}

/// Runs every play of `playbook` and returns the recap (host, counters) in inventory order.
pub async fn run_playbook(
    playbook: &Playbook,
    inventory: &Inventory,
    opts: &RunOptions,
    printer: &Printer,
) -> Result<Vec<(String, Stats)>> {
    let engine = Engine {
        opts,
        inventory,
        printer,
        templar: Templar::new(),
        pool: Pool::new(opts.conn.clone()),
    };
    let playbook_dir = playbook_dir(&playbook.path);
    let mut states: Vec<HostState> = Vec::new();
    let mut inventory_hostvars: Option<Arc<Map<String, Value>>> = None;
    let mut order: Vec<String> = Vec::new();
    let limit = match &opts.limit {
        Some(l) => Some(inventory.select(l)?),
        None => None,
    };
    for play in &playbook.plays {
        let mut hosts = select_hosts(inventory, &hosts_pattern(&engine, play, &playbook_dir)?)?;
        if let Some(l) = &limit {
            hosts.retain(|h| l.contains(h) || h == "localhost" && !inventory.hosts().contains(h));
        }
        printer.play(&play.name);
        if hosts.is_empty() {
            printer.warn("no hosts matched, skipping");
            continue;
        }
        for h in &hosts {
            if !states.iter().any(|s| &s.name == h) {
                let mut vars = if inventory.hosts().contains(h) {
                    inventory.vars_for_host(h, Some(&playbook_dir))?
                } else {
                    Map::new()
                };
                if h == "localhost" && !vars.contains_key("ansible_connection") {
                    vars.insert("ansible_connection".into(), Value::String("local".into()));
                }
                states.push(HostState::new(h, vars));
                order.push(h.clone());
            }
        }
        // A host that failed or was unreachable sits out the rest of the playbook, as in Ansible;
        // `meta: end_host`/`end_play` only end the current play.
        for s in states.iter_mut() {
            s.ended = false;
        }
        let mut pctx = play_context(&engine, play, &hosts, &playbook_dir)?;
        // Variables can reach `hostvars` through inventory or extra vars too, not only the play.
        pctx.uses_hostvars |= format!("{:?}", opts.extra_vars).contains("hostvars")
            || states
                .iter()
                .any(|s| format!("{:?}", s.inv_vars).contains("hostvars"));
        if pctx.uses_hostvars {
            if inventory_hostvars.is_none() {
                inventory_hostvars = Some(Arc::new(vars::inventory_hostvars(
                    inventory,
                    &playbook_dir,
                )?));
            }
            pctx.inventory_hostvars = inventory_hostvars.clone().unwrap_or_default();
        }
        for batch in batches(&play.serial, &hosts)? {
            pctx.batch = Arc::new(Value::from(batch.clone()));
            let stop = play::run_play_batch(&engine, &mut pctx, &mut states, &batch).await?;
            if stop {
                break;
            }
        }
    }
    engine.pool.close_all().await;
    let mut recap: Vec<(String, Stats)> = order
        .iter()
        .filter_map(|h| {
            states
                .iter()
                .find(|s| &s.name == h)
                .map(|s| (h.clone(), s.stats))
        })
        .collect();
    recap.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(recap)
}

/// The play's `hosts:` pattern, templated with play vars and extra vars (`hosts: "{{ target }}"`).
fn hosts_pattern(engine: &Engine, play: &Play, playbook_dir: &Path) -> Result<String> {
    if !play.hosts.contains("{{") {
        return Ok(play.hosts.clone());
    }
    let mut vars = play.vars.clone();
    vars.extend(engine.opts.extra_vars.clone());
    let scope = Scope {
        vars: Arc::new(vars),
        search_paths: vec![playbook_dir.to_path_buf()],
    };
    let rendered = engine
        .templar
        .render_value(&Value::String(play.hosts.clone()), &scope)
        .with_context(|| format!("play hosts '{}'", play.hosts))?;
    Ok(match rendered {
        Value::Array(items) => items
            .iter()
            .filter_map(crate::modules::args::to_string)
            .collect::<Vec<_>>()
            .join(","),
        v => crate::modules::args::to_string(&v).unwrap_or_default(),
    })
}

/// `playbook_dir`: the playbook's directory as an absolute path, as Ansible gives it (a playbook
/// named without a directory lives in the current one).
fn playbook_dir(playbook: &Path) -> PathBuf {
    let dir = match playbook.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Hosts for a play's `hosts:` pattern; `localhost` is implicit when not in the inventory.
fn select_hosts(inventory: &Inventory, pattern: &str) -> Result<Vec<String>> {
    if pattern.trim() == "localhost" && !inventory.hosts().iter().any(|h| h == "localhost") {
        return Ok(vec!["localhost".into()]);
    }
    inventory.select(pattern)
}

fn play_context<'a>(
    engine: &'a Engine,
    play: &'a Play,
    hosts: &[String],
    playbook_dir: &Path,
) -> Result<PlayCtx<'a>> {
    let groups: Map<String, Value> = engine
        .inventory
        .groups()
        .into_iter()
        .map(|(g, hs)| (g, Value::from(hs)))
        .collect();
    let group_names = hosts
        .iter()
        .map(|h| (h.clone(), Value::from(engine.inventory.group_names(h))))
        .collect();
    // vars_files are templated with play vars and extra vars, and read once per play.
    let mut vars_files = Map::new();
    let mut base = play.vars.clone();
    base.extend(engine.opts.extra_vars.clone());
    let scope = Scope {
        vars: Arc::new(base),
        search_paths: vec![playbook_dir.to_path_buf()],
    };
    for f in &play.vars_files {
        let name = engine.templar.render_value(f, &scope)?;
        let candidates: Vec<String> = match name {
            Value::Array(items) => items
                .iter()
                .filter_map(crate::modules::args::to_string)
                .collect(),
            v => crate::modules::args::to_string(&v).into_iter().collect(),
        };
        // A list means "the first file that exists".
        let path = candidates
            .iter()
            .map(|c| playbook_dir.join(c))
            .find(|p| p.exists())
            .with_context(|| format!("vars_files: none of {candidates:?} found"))?;
        vars_files.extend(crate::data::yaml::load_vars_file(&path)?);
    }
    let uses_hostvars = format!("{play:?}").contains("hostvars");
    Ok(PlayCtx {
        play,
        vars_files,
        extra_vars: &engine.opts.extra_vars,
        play_hosts: Arc::new(Value::from(hosts.to_vec())),
        batch: Arc::new(Value::from(hosts.to_vec())),
        groups: Arc::new(Value::Object(groups)),
        group_names,
        hostvars: None,
        uses_hostvars,
        inventory_hostvars: Arc::new(Map::new()),
        playbook_dir: playbook_dir.to_path_buf(),
        inventory_dir: Value::Null,
        check: engine.opts.check,
        diff: engine.opts.diff,
    })
}

/// Splits hosts into `serial` batches (ints, percentages, or a list of them; the last repeats).
pub fn batches(serial: &[Value], hosts: &[String]) -> Result<Vec<Vec<String>>> {
    if serial.is_empty() {
        return Ok(vec![hosts.to_vec()]);
    }
    let size = |v: &Value| -> Result<usize> {
        let n = match v {
            Value::Number(n) => n.as_u64().unwrap_or(0) as usize,
            Value::String(s) if s.trim().ends_with('%') => {
                let pct: f64 = s
                    .trim()
                    .trim_end_matches('%')
                    .parse()
                    .context("serial percentage")?;
                ((hosts.len() as f64) * pct / 100.0).floor() as usize
            }
            Value::String(s) => s.trim().parse().context("serial")?,
            _ => anyhow::bail!("serial must be a number or percentage"),
        };
        Ok(n.max(1))
    };
    let mut out = Vec::new();
    let mut rest = hosts;
    let mut i = 0;
    while !rest.is_empty() {
        let n = size(&serial[i.min(serial.len() - 1)])?.min(rest.len());
        out.push(rest[..n].to_vec());
        rest = &rest[n..];
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serial_batches() {
        let hosts: Vec<String> = (1..=7).map(|i| format!("h{i}")).collect();
        let b = batches(&[json!(1), json!("50%")], &hosts).unwrap();
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 3, 3]);
        assert_eq!(batches(&[], &hosts).unwrap().len(), 1);
    }

    #[test]
    fn playbook_dir_is_absolute() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(playbook_dir(Path::new("site.yml")), cwd);
        assert_eq!(playbook_dir(Path::new("plays/site.yml")), cwd.join("plays"));
        assert_eq!(
            playbook_dir(Path::new("/srv/p/site.yml")),
            PathBuf::from("/srv/p")
        );
    }
}
