//! The linear strategy: every task runs on all active hosts of the batch (in parallel under
//! `--forks`) before the next one starts; blocks, includes and handlers are walked here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Result;
use futures::stream::{self, StreamExt};
use serde_json::{Map, Value};

use super::state::HostState;
use super::task::{self, TaskResult};
use super::{vars, Engine, PlayCtx};
use crate::output::{HostLine, Status};
use crate::playbook::{Action, Task};

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Why a task list stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Keep going.
    No,
    /// `meta: end_play`, `any_errors_fatal` or `max_fail_percentage`: stop the play.
    Play,
}

/// Runs one batch of a play through its phases; returns true if the play must stop.
pub async fn run_play_batch(
    engine: &Engine<'_>,
    p: &mut PlayCtx<'_>,
    states: &mut [HostState],
    batch: &[String],
) -> Result<bool> {
    let play = p.play;
    if play.gather_facts {
        let stop = run_task_all(engine, p, states, batch, &gather_facts_task(play), false).await?;
        if stop == Stop::Play {
            return Ok(true);
        }
    }
    for phase in [&play.pre_tasks, &play.tasks, &play.post_tasks] {
        if run_list(engine, p, states, batch, phase).await? == Stop::Play {
            return Ok(true);
        }
        flush_handlers(engine, p, states, batch).await?;
    }
    Ok(false)
}

fn gather_facts_task(play: &crate::playbook::Play) -> Task {
    let action = Action::Module {
        name: "setup".into(),
        args: Value::Object(Map::new()),
    };
    let inherit = crate::playbook::Inherited {
        tags: vec!["always".into()],
        ..play.inherit.clone()
    };
    let origin = play
        .origin
        .clone()
        .unwrap_or_else(|| crate::playbook::Origin {
            file: Arc::new(Default::default()),
            pos: Default::default(),
        });
    Task::new(
        Some("Gathering Facts".into()),
        action,
        inherit,
        None,
        origin,
    )
}

/// Whether `--tags`/`--skip-tags` select the task.
fn tags_selected(engine: &Engine, tags: &[String]) -> bool {
    let o = engine.opts;
    let has = |t: &str| tags.iter().any(|x| x == t);
    if o.skip_tags.iter().any(|s| has(s)) {
        return false;
    }
    if has("always") {
        return true;
    }
    if o.tags.is_empty() || o.tags.iter().any(|t| t == "all") {
        return !has("never");
    }
    o.tags.iter().any(|t| has(t)) || (o.tags.iter().any(|t| t == "tagged") && !tags.is_empty())
}

/// Runs a task list on the active hosts of `targets`.
pub fn run_list<'a>(
    engine: &'a Engine<'a>,
    p: &'a mut PlayCtx<'_>,
    states: &'a mut [HostState],
    targets: &'a [String],
    tasks: &'a [Task],
) -> BoxFut<'a, Result<Stop>> {
    Box::pin(async move {
        for t in tasks {
            let stop = match &t.action {
                Action::Block {
                    block,
                    rescue,
                    always,
                } => run_block(engine, p, states, targets, block, rescue, always).await?,
                Action::IncludeTasks { .. } | Action::IncludeRole { .. } => {
                    run_include(engine, p, states, targets, t).await?
                }
                Action::Module { name, .. } => {
                    if !tags_selected(engine, t.tags()) {
                        continue;
                    }
                    if crate::modules::registry::short_name(name) == "meta" {
                        super::actions::meta(engine, p, states, targets, t).await?
                    } else {
                        run_task_all(engine, p, states, targets, t, false).await?
                    }
                }
            };
            if stop == Stop::Play {
                return Ok(Stop::Play);
            }
            if !states
                .iter()
                .any(|s| targets.contains(&s.name) && s.active())
            {
                break;
            }
        }
        Ok(Stop::No)
    })
}

async fn run_block(
    engine: &Engine<'_>,
    p: &mut PlayCtx<'_>,
    states: &mut [HostState],
    targets: &[String],
    block: &[Task],
    rescue: &[Task],
    always: &[Task],
) -> Result<Stop> {
    let entered: Vec<String> = states
        .iter()
        .filter(|s| targets.contains(&s.name) && s.active())
        .map(|s| s.name.clone())
        .collect();
    let mut stop = run_list(engine, p, states, &entered, block).await?;
    let failed: Vec<String> = states
        .iter()
        .filter(|s| entered.contains(&s.name) && s.failed && !s.unreachable)
        .map(|s| s.name.clone())
        .collect();
    if !rescue.is_empty() && !failed.is_empty() && stop != Stop::Play {
        for s in states.iter_mut().filter(|s| failed.contains(&s.name)) {
            s.failed = false;
            s.stats.failed = s.stats.failed.saturating_sub(1);
            s.stats.rescued += 1;
        }
        stop = run_list(engine, p, states, &failed, rescue).await?;
    }
    if !always.is_empty() {
        // `always` runs for hosts that failed too; they stay failed afterwards.
        let still_failed: Vec<String> = states
            .iter()
            .filter(|s| entered.contains(&s.name) && s.failed && !s.unreachable)
            .map(|s| s.name.clone())
            .collect();
        for s in states.iter_mut().filter(|s| still_failed.contains(&s.name)) {
            s.failed = false;
        }
        let s2 = run_list(engine, p, states, &entered, always).await?;
        for s in states.iter_mut().filter(|s| still_failed.contains(&s.name)) {
            s.failed = true;
        }
        if s2 == Stop::Play {
            stop = Stop::Play;
        }
    }
    Ok(stop)
}

/// `include_tasks`/`include_role`: evaluated per host, hosts grouped by what they include.
async fn run_include(
    engine: &Engine<'_>,
    p: &mut PlayCtx<'_>,
    states: &mut [HostState],
    targets: &[String],
    t: &Task,
) -> Result<Stop> {
    let mut groups: Vec<(String, Vec<Task>, Vec<String>)> = Vec::new();
    let hostvars = p
        .uses_hostvars
        .then(|| vars::hostvars(states, &p.inventory_hostvars));
    p.hostvars = hostvars;
    let mut failures: Vec<(String, String)> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for s in states
        .iter()
        .filter(|s| targets.contains(&s.name) && s.active())
    {
        match task::resolve_include(engine, p, t, s) {
            Ok(Some(tasks)) => {
                // Hosts that include the same tasks run them together.
                let key = format!("{tasks:?}");
                match groups.iter_mut().find(|(k, _, _)| *k == key) {
                    Some((_, _, hosts)) => hosts.push(s.name.clone()),
                    None => groups.push((key, tasks, vec![s.name.clone()])),
                }
            }
            Ok(None) => skipped.push(s.name.clone()),
            Err(e) => failures.push((s.name.clone(), format!("{e:#}"))),
        }
    }
    let name = t.display_name();
    let evaluated =
        failures.len() + skipped.len() + groups.iter().map(|g| g.2.len()).sum::<usize>();
    if evaluated == 0 {
        return Ok(Stop::No);
    }
    engine.printer.task(&name, false, evaluated);
    // Like Ansible: an include counts as ok on the hosts that include, skipped where its condition is false.
    for (_, tasks, hosts) in &groups {
        let what = tasks
            .first()
            .map(|f| f.origin.file.display().to_string())
            .unwrap_or_else(|| name.clone());
        engine.printer.included(&what, hosts);
        for s in states.iter_mut().filter(|s| hosts.contains(&s.name)) {
            s.stats.ok += 1;
        }
    }
    let none = Map::new();
    for h in &skipped {
        engine.printer.result(
            &name,
            &HostLine {
                host: h,
                delegated: None,
                status: Status::Skipped,
                item: None,
                ignored: false,
                result: &none,
                diffs: &[],
                show_result: false,
            },
        );
        if let Some(s) = states.iter_mut().find(|s| &s.name == h) {
            s.stats.skipped += 1;
        }
    }
    for (h, msg) in failures {
        let result = Map::from_iter([
            ("failed".to_owned(), Value::Bool(true)),
            ("msg".to_owned(), Value::String(msg)),
        ]);
        engine.printer.result(
            &name,
            &HostLine {
                host: &h,
                delegated: None,
                status: Status::Failed,
                item: None,
                ignored: false,
                result: &result,
                diffs: &[],
                show_result: false,
            },
        );
        if let Some(s) = states.iter_mut().find(|s| s.name == h) {
            s.failed = true;
            s.stats.failed += 1;
        }
    }
    engine.printer.task_end();
    for (_, tasks, hosts) in groups {
        if run_list(engine, p, states, &hosts, &tasks).await? == Stop::Play {
            return Ok(Stop::Play);
        }
    }
    Ok(Stop::No)
}

/// Runs the notified handlers, in definition order, on the hosts that notified them.
pub async fn flush_handlers(
    engine: &Engine<'_>,
    p: &mut PlayCtx<'_>,
    states: &mut [HostState],
    targets: &[String],
) -> Result<()> {
    let play = p.play;
    for h in &play.handlers {
        let names: Vec<&str> = h
            .name
            .iter()
            .map(String::as_str)
            .chain(h.listen.iter().map(String::as_str))
            .collect();
        let hosts: Vec<String> = states
            .iter()
            .filter(|s| {
                targets.contains(&s.name)
                    && s.active()
                    && s.notified.iter().any(|n| names.contains(&n.as_str()))
            })
            .map(|s| s.name.clone())
            .collect();
        if hosts.is_empty() {
            continue;
        }
        for s in states.iter_mut().filter(|s| hosts.contains(&s.name)) {
            s.notified.retain(|n| !names.contains(&n.as_str()));
        }
        run_task_all(engine, p, states, &hosts, h, true).await?;
    }
    for s in states.iter_mut().filter(|s| targets.contains(&s.name)) {
        s.notified.clear();
    }
    Ok(())
}

/// Runs one task on every active host of `targets` in parallel, prints and records results.
pub async fn run_task_all(
    engine: &Engine<'_>,
    p: &mut PlayCtx<'_>,
    states: &mut [HostState],
    targets: &[String],
    t: &Task,
    handler: bool,
) -> Result<Stop> {
    let active: usize = states
        .iter()
        .filter(|s| targets.contains(&s.name) && s.active())
        .count();
    if active == 0 {
        return Ok(Stop::No);
    }
    p.hostvars = p
        .uses_hostvars
        .then(|| vars::hostvars(states, &p.inventory_hostvars));
    let name = t.display_name();
    engine.printer.task(&name, handler, active);
    let run_once = t.inherit.run_once.unwrap_or(false);
    let p_ro: &PlayCtx = p;
    let name = name.as_str();
    let mut selected: Vec<&mut HostState> = states
        .iter_mut()
        .filter(|s| targets.contains(&s.name) && s.active())
        .collect();
    if run_once {
        selected.truncate(1);
    }
    let results: Vec<(String, TaskResult)> = stream::iter(selected)
        .map(|s| async move {
            let r = task::run_on_host(engine, p_ro, t, s).await;
            engine.printer.host_done();
            print_result(engine, name, &s.name, &r);
            (s.name.clone(), r)
        })
        .buffer_unordered(engine.opts.forks.max(1))
        .collect()
        .await;
    engine.printer.task_end();

    // Record results; run_once shares the result (and registered var) with every host.
    let mut failed_now = 0usize;
    for (host, r) in &results {
        let receivers: Vec<String> = if run_once {
            states
                .iter()
                .filter(|s| targets.contains(&s.name) && s.active())
                .map(|s| s.name.clone())
                .collect()
        } else {
            vec![host.clone()]
        };
        for s in states.iter_mut().filter(|s| receivers.contains(&s.name)) {
            let counted = &s.name == host;
            task::record(s, t, r, counted);
            if counted && r.status == Status::Failed && !r.ignored {
                failed_now += 1;
            }
        }
    }
    let any_fatal = t
        .inherit
        .any_errors_fatal
        .unwrap_or(p.play.any_errors_fatal);
    if failed_now > 0 && any_fatal {
        for s in states.iter_mut().filter(|s| targets.contains(&s.name)) {
            s.ended = true;
        }
        return Ok(Stop::Play);
    }
    if let Some(pct) = p.play.max_fail_percentage {
        let batch = targets.len().max(1) as f64;
        let failed = states
            .iter()
            .filter(|s| targets.contains(&s.name) && (s.failed || s.unreachable))
            .count() as f64;
        if failed / batch * 100.0 > pct {
            engine.printer.warn(&format!(
                "max_fail_percentage {pct}% exceeded, stopping the play"
            ));
            return Ok(Stop::Play);
        }
    }
    Ok(Stop::No)
}

fn print_result(engine: &Engine, task: &str, host: &str, r: &TaskResult) {
    for item in &r.items {
        engine.printer.result(
            task,
            &HostLine {
                host,
                delegated: r.delegated.as_deref(),
                status: item.status,
                item: Some(&item.label),
                ignored: false,
                result: &item.result,
                diffs: &item.diffs,
                show_result: r.show_result,
            },
        );
    }
    if r.items.is_empty() || r.status == Status::Failed || r.status == Status::Unreachable {
        engine.printer.result(
            task,
            &HostLine {
                host,
                delegated: r.delegated.as_deref(),
                status: r.status,
                item: None,
                ignored: r.ignored,
                result: &r.result,
                diffs: if r.items.is_empty() { &r.diffs } else { &[] },
                show_result: r.show_result,
            },
        );
    }
}
