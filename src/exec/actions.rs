//! Actions the engine runs itself rather than as commands on the host: set_fact, debug,
//! assert, fail, setup/gather_facts, wait_for_connection, include_vars, pause, ping, meta.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Map, Value};

use super::play::{flush_handlers, Stop};
use super::state::HostState;
use super::task::{connection_for, scope_for, when_fails, Step, TaskResult};
use super::{Engine, PlayCtx};
use crate::facts;
use crate::modules::args::{to_bool, to_string, RAW};
use crate::output::Status;
use crate::playbook::{Action, Task};

fn ok(result: Map<String, Value>) -> TaskResult {
    TaskResult::new(Status::Ok, result)
}

fn failed(msg: String, mut extra: Map<String, Value>) -> TaskResult {
    extra.insert("failed".into(), json!(true));
    extra.insert("msg".into(), json!(msg));
    let mut r = ok(extra);
    r.status = Status::Failed;
    r
}

/// Runs the executor action `short` for one host.
pub async fn run(step: Step<'_>, short: &str, args: &Value) -> Result<TaskResult> {
    let Step {
        engine,
        host,
        scope,
        ..
    } = step;
    // `debug: var=` must see the expression unrendered.
    let raw_args = args.as_object().cloned().unwrap_or_default();
    let args = match short {
        "debug" | "assert" => raw_args.clone(),
        _ => match engine.templar.render_value(args, scope)? {
            Value::Object(m) => m,
            _ => Map::new(),
        },
    };
    match short {
        "set_fact" => {
            let mut vars = Map::new();
            for (k, v) in &args {
                if k != "cacheable" {
                    vars.insert(k.clone(), v.clone());
                }
            }
            let mut r = ok(Map::from_iter([
                ("changed".to_owned(), json!(false)),
                ("ansible_facts".to_owned(), Value::Object(vars.clone())),
            ]));
            r.set_vars = vars;
            Ok(r)
        }
        "debug" => {
            let verbosity = args.get("verbosity").and_then(Value::as_u64).unwrap_or(0);
            let _ = verbosity;
            let mut result = Map::new();
            if let Some(var) = args.get("var").and_then(to_string) {
                let value = match engine.templar.evaluate(&var, scope) {
                    Ok(v) => v,
                    Err(_) => json!("VARIABLE IS NOT DEFINED!"),
                };
                result.insert(var, value);
            } else {
                let msg = match args.get("msg").or_else(|| args.get(RAW)) {
                    Some(m) => engine.templar.render_value(m, scope)?,
                    None => json!("Hello world!"),
                };
                result.insert("msg".into(), msg);
            }
            result.insert("changed".into(), json!(false));
            let mut r = ok(result);
            r.show_result = true;
            Ok(r)
        }
        "assert" => {
            let that = match args.get("that") {
                Some(Value::Array(items)) => items.clone(),
                Some(v) => vec![v.clone()],
                None => bail!("assert needs 'that:'"),
            };
            let quiet = args.get("quiet").and_then(to_bool).unwrap_or(false);
            for cond in &that {
                let text = to_string(cond).unwrap_or_else(|| cond.to_string());
                let holds = match cond {
                    Value::Bool(b) => *b,
                    Value::String(_) => engine.templar.is_true(&text, scope)?,
                    other => bail!("Conditional expressions must be strings, got: {other}"),
                };
                if !holds {
                    let msg = match args.get("fail_msg").or_else(|| args.get("msg")) {
                        Some(m) => {
                            to_string(&engine.templar.render_value(m, scope)?).unwrap_or_default()
                        }
                        None => "Assertion failed".into(),
                    };
                    return Ok(failed(
                        msg,
                        Map::from_iter([
                            ("changed".to_owned(), json!(false)),
                            ("assertion".to_owned(), json!(text)),
                            ("evaluated_to".to_owned(), json!(false)),
                        ]),
                    ));
                }
            }
            let msg = match args.get("success_msg") {
                Some(m) => engine.templar.render_value(m, scope)?,
                None => json!("All assertions passed"),
            };
            let mut r = ok(Map::from_iter([
                ("changed".to_owned(), json!(false)),
                ("msg".to_owned(), msg),
            ]));
            r.show_result = !quiet;
            Ok(r)
        }
        "fail" => {
            let msg = args
                .get("msg")
                .or_else(|| args.get(RAW))
                .and_then(to_string)
                .unwrap_or_else(|| "Failed as requested from task".into());
            Ok(failed(
                msg,
                Map::from_iter([("changed".to_owned(), json!(false))]),
            ))
        }
        "setup" | "gather_facts" => {
            let conn = connection_for(step).await?;
            let out = conn.exec(facts::COMMAND, None).await?;
            let f = facts::parse(&out.stdout_str());
            let mut r = ok(Map::from_iter([
                ("changed".to_owned(), json!(false)),
                ("ansible_facts".to_owned(), Value::Object(f.clone())),
            ]));
            r.facts = Some(f);
            Ok(r)
        }
        "ping" => {
            let conn = connection_for(step).await?;
            let out = conn.exec("true", None).await?;
            if out.rc != 0 {
                return Ok(failed(out.stderr_str(), Map::new()));
            }
            Ok(ok(Map::from_iter([
                ("ping".to_owned(), json!("pong")),
                ("changed".to_owned(), json!(false)),
            ])))
        }
        "wait_for_connection" => {
            let num = |k: &str, d: f64| {
                args.get(k)
                    .and_then(|v| v.as_f64().or_else(|| to_string(v)?.parse().ok()))
                    .unwrap_or(d)
            };
            let (timeout, delay, sleep) =
                (num("timeout", 600.0), num("delay", 0.0), num("sleep", 1.0));
            tokio::time::sleep(Duration::from_secs_f64(delay)).await;
            let start = Instant::now();
            loop {
                let attempt = async {
                    let conn = connection_for(step).await?;
                    let out = conn.exec("true", None).await?;
                    anyhow::ensure!(out.rc == 0, "test command failed");
                    Ok::<(), anyhow::Error>(())
                };
                match attempt.await {
                    Ok(()) => {
                        return Ok(ok(Map::from_iter([
                            ("changed".to_owned(), json!(false)),
                            ("elapsed".to_owned(), json!(start.elapsed().as_secs())),
                        ])))
                    }
                    Err(e) => {
                        engine.pool.forget(&host.name);
                        if start.elapsed().as_secs_f64() >= timeout {
                            return Ok(failed(
                                format!("timed out waiting for ping module test: {e:#}"),
                                Map::from_iter([(
                                    "elapsed".to_owned(),
                                    json!(start.elapsed().as_secs()),
                                )]),
                            ));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs_f64(sleep)).await;
            }
        }
        "include_vars" => {
            let file = args
                .get("file")
                .or_else(|| args.get(RAW))
                .and_then(to_string)
                .ok_or_else(|| anyhow!("include_vars needs a file"))?;
            let path = scope
                .search_paths
                .iter()
                .flat_map(|d| [d.join("vars").join(&file), d.join(&file)])
                .find(|c| c.exists())
                .ok_or_else(|| anyhow!("could not find or access '{file}'"))?;
            let loaded = crate::data::yaml::load_vars_file(&path)?;
            let vars = match args.get("name").and_then(to_string) {
                Some(n) => Map::from_iter([(n, Value::Object(loaded))]),
                None => loaded,
            };
            let mut r = ok(Map::from_iter([
                ("changed".to_owned(), json!(false)),
                ("ansible_facts".to_owned(), Value::Object(vars.clone())),
            ]));
            r.set_vars = vars;
            Ok(r)
        }
        "pause" => {
            let num = |k: &str| {
                args.get(k)
                    .and_then(|v| v.as_f64().or_else(|| to_string(v)?.parse().ok()))
            };
            let secs = num("seconds").unwrap_or(0.0) + num("minutes").unwrap_or(0.0) * 60.0;
            if args.contains_key("prompt") && secs == 0.0 {
                bail!("pause with a prompt needs a terminal; give seconds: instead");
            }
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            Ok(ok(Map::from_iter([("changed".to_owned(), json!(false))])))
        }
        other => bail!("the action '{other}' is not supported by duststack"),
    }
}

/// `meta:` — flush_handlers, end_play, end_host, noop, clear_host_errors, reset_connection.
pub async fn meta(
    engine: &Engine<'_>,
    p: &mut PlayCtx<'_>,
    states: &mut [HostState],
    targets: &[String],
    t: &Task,
) -> Result<Stop> {
    let Action::Module { args, .. } = &t.action else {
        return Ok(Stop::No);
    };
    let what = args
        .get(RAW)
        .or_else(|| args.get("free_form"))
        .and_then(to_string)
        .or_else(|| to_string(args))
        .unwrap_or_default();
    let hosts_when = |states: &[HostState]| -> Result<Vec<String>> {
        let mut out = Vec::new();
        for s in states
            .iter()
            .filter(|s| targets.contains(&s.name) && s.active())
        {
            let scope = scope_for(p, t, super::vars::task_vars(p, Some(t), s));
            let pass = when_fails(engine, t, &scope)?.is_none();
            if pass {
                out.push(s.name.clone());
            }
        }
        Ok(out)
    };
    match what.trim() {
        "flush_handlers" => {
            flush_handlers(engine, p, states, targets).await?;
            Ok(Stop::No)
        }
        "end_play" => {
            let hosts = hosts_when(states)?;
            if hosts.is_empty() {
                return Ok(Stop::No);
            }
            for s in states.iter_mut().filter(|s| targets.contains(&s.name)) {
                s.ended = true;
            }
            Ok(Stop::Play)
        }
        "end_host" => {
            let hosts = hosts_when(states)?;
            for s in states.iter_mut().filter(|s| hosts.contains(&s.name)) {
                s.ended = true;
            }
            Ok(Stop::No)
        }
        "clear_host_errors" => {
            for s in states.iter_mut().filter(|s| targets.contains(&s.name)) {
                s.failed = false;
            }
            Ok(Stop::No)
        }
        "reset_connection" => {
            for s in states.iter().filter(|s| targets.contains(&s.name)) {
                engine.pool.forget(&s.name);
            }
            Ok(Stop::No)
        }
        "noop" | "refresh_inventory" | "clear_facts" | "end_batch" | "end_role" => {
            if what.trim() == "clear_facts" {
                for s in states.iter_mut().filter(|s| targets.contains(&s.name)) {
                    s.facts.clear();
                }
            }
            Ok(Stop::No)
        }
        other => bail!("{}: unknown meta action '{other}'", t.origin),
    }
}
