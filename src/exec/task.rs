//! One task on one host: conditions, loops, argument templating, the module or action,
//! retries, `changed_when`/`failed_when`, and what gets registered.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde_json::{json, Map, Value};

use super::pool::WithEnv;
use super::state::HostState;
use super::{actions, vars, Engine, PlayCtx};
use crate::connection::{ConnError, Connection};
use crate::modules::{self, Args, Become, Ctx, Diff, Outcome};
use crate::output::Status;
use crate::playbook::{Action, Task};
use crate::template::Scope;

/// One loop item's result.
#[derive(Debug, Clone)]
pub struct ItemResult {
    /// The item's label.
    pub label: Value,
    /// How it ended.
    pub status: Status,
    /// Its registered result.
    pub result: Map<String, Value>,
    /// Its diffs.
    pub diffs: Vec<Diff>,
}

/// A task's result on one host.
#[derive(Debug, Clone)]
pub struct TaskResult {
    /// Overall status (loops: changed if any item changed, failed if any failed, skipped if all skipped).
    pub status: Status,
    /// The failure was ignored.
    pub ignored: bool,
    /// The registered value.
    pub result: Map<String, Value>,
    /// Diffs of a single run.
    pub diffs: Vec<Diff>,
    /// Per-item results of a loop.
    pub items: Vec<ItemResult>,
    /// Delegated to this host.
    pub delegated: Option<String>,
    /// Print the result without -v (debug).
    pub show_result: bool,
    /// Facts to store (setup) .
    pub facts: Option<Map<String, Value>>,
    /// Variables to set on the host (set_fact, include_vars).
    pub set_vars: Map<String, Value>,
}

impl TaskResult {
    /// A result with `status` and the registered `result`, nothing else.
    pub fn new(status: Status, result: Map<String, Value>) -> Self {
        TaskResult {
            status,
            ignored: false,
            result,
            diffs: Vec::new(),
            items: Vec::new(),
            delegated: None,
            show_result: false,
            facts: None,
            set_vars: Map::new(),
        }
    }

    fn failed(msg: String) -> Self {
        TaskResult::new(
            Status::Failed,
            Map::from_iter([
                ("failed".to_owned(), Value::Bool(true)),
                ("msg".to_owned(), Value::String(msg)),
            ]),
        )
    }
}

/// One execution of a task on one host: what its module or action works with.
#[derive(Clone, Copy)]
pub struct Step<'a> {
    /// The run.
    pub engine: &'a Engine<'a>,
    /// The play.
    pub p: &'a PlayCtx<'a>,
    /// The task.
    pub t: &'a Task,
    /// The host it runs for.
    pub host: &'a HostState,
    /// Variables (with the loop item) and search paths.
    pub scope: &'a Scope,
    /// The host it is delegated to, if any.
    pub delegated: Option<&'a str>,
}

/// Variables and search paths for templating on this host.
pub fn scope_for(p: &PlayCtx, t: &Task, vars: Map<String, Value>) -> Scope {
    let mut search_paths = Vec::new();
    if let Some(r) = &t.role {
        search_paths.push(r.path.clone());
    }
    if let Some(dir) = t.origin.file.parent() {
        search_paths.push(dir.to_path_buf());
    }
    search_paths.push(p.playbook_dir.clone());
    Scope {
        vars: Arc::new(vars),
        search_paths,
    }
}

/// The first of the task's `when:` conditions (enclosing blocks' first) that is false, if any.
pub fn when_fails(engine: &Engine, t: &Task, scope: &Scope) -> Result<Option<String>> {
    match conditions(engine, &t.inherit.when, scope)? {
        Some(c) => Ok(Some(c)),
        None => conditions(engine, &t.when, scope),
    }
}

/// Evaluates a list of conditions (all must hold).
fn conditions(engine: &Engine, conds: &[Value], scope: &Scope) -> Result<Option<String>> {
    for c in conds {
        let ok = match c {
            Value::Bool(b) => *b,
            Value::String(s) => engine.templar.is_true(s, scope)?,
            Value::Null => false,
            Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
            other => anyhow::bail!("Conditional expressions must be strings, got: {other}"),
        };
        if !ok {
            return Ok(Some(match c {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            }));
        }
    }
    Ok(None)
}

/// Runs `t` on `host` (all loop items), never panicking: errors become failed results.
pub async fn run_on_host(
    engine: &Engine<'_>,
    p: &PlayCtx<'_>,
    t: &Task,
    host: &HostState,
) -> TaskResult {
    let base = vars::task_vars(p, Some(t), host);
    let limit = t
        .timeout
        .as_ref()
        .and_then(|v| {
            v.as_f64()
                .or_else(|| modules::args::to_string(v)?.parse().ok())
        })
        .filter(|s| *s > 0.0);
    let run = run_inner(engine, p, t, host, base);
    let outcome = match limit {
        Some(secs) => match tokio::time::timeout(Duration::from_secs_f64(secs), run).await {
            Ok(r) => r,
            Err(_) => Err(anyhow!("The task exceeded its timeout of {secs} seconds")),
        },
        None => run.await,
    };
    let mut r = match outcome {
        Ok(r) => r,
        Err(e) => match e.downcast_ref::<ConnError>() {
            Some(ConnError::Unreachable(msg)) => {
                engine.pool.forget(&host.name);
                let mut r = TaskResult::failed(msg.clone());
                r.status = Status::Unreachable;
                r.result.insert("unreachable".into(), Value::Bool(true));
                r.result.insert("changed".into(), Value::Bool(false));
                r
            }
            _ => TaskResult::failed(format!("{e:#}")),
        },
    };
    if r.status == Status::Failed && t.inherit.ignore_errors.unwrap_or(false) {
        r.ignored = true;
    }
    if t.inherit.no_log.unwrap_or(false) {
        let censored = json!("the output has been hidden due to the fact that 'no_log: true' was specified for this result");
        r.result = Map::from_iter([
            ("censored".to_owned(), censored),
            (
                "changed".to_owned(),
                Value::Bool(r.status == Status::Changed),
            ),
        ]);
        r.diffs.clear();
        for i in &mut r.items {
            i.result = Map::new();
            i.label = json!("(censored due to no_log)");
        }
    }
    r
}

async fn run_inner(
    engine: &Engine<'_>,
    p: &PlayCtx<'_>,
    t: &Task,
    host: &HostState,
    base: Map<String, Value>,
) -> Result<TaskResult> {
    let Action::Module { name, args } = &t.action else {
        return Err(anyhow!("not a module task"));
    };
    let scope = scope_for(p, t, base.clone());
    let delegated = match &t.inherit.delegate_to {
        Some(d) => Some(
            modules::args::to_string(&engine.templar.render_value(d, &scope)?)
                .ok_or_else(|| anyhow!("delegate_to must be a host name"))?,
        ),
        None => None,
    };
    let Some((kind, loop_value)) = &t.looping else {
        // Block-level and task-level conditions, evaluated once.
        if let Some(cond) = when_fails(engine, t, &scope)? {
            return Ok(skipped(cond, delegated));
        }
        let step = Step {
            engine,
            p,
            t,
            host,
            scope: &scope,
            delegated: delegated.as_deref(),
        };
        let mut r = run_once(step, name, args).await?;
        r.delegated = delegated;
        return Ok(r);
    };
    let items = match loop_items(engine, kind, loop_value, &scope) {
        Ok(items) => items,
        // As in Ansible: a loop that cannot be templated (say, over a skipped task's
        // registered `stdout`) is no error when the task's own condition, evaluated without
        // the loop variable, is false.
        Err(err) => match when_fails(engine, t, &scope) {
            Ok(Some(cond)) => return Ok(skipped(cond, delegated)),
            _ => return Err(err),
        },
    };
    let lc = &t.loop_control;
    let loop_var = lc
        .get("loop_var")
        .and_then(Value::as_str)
        .unwrap_or("item")
        .to_owned();
    let index_var = lc
        .get("index_var")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let pause = lc.get("pause").and_then(Value::as_f64).unwrap_or(0.0);
    let mut item_results = Vec::new();
    let mut results = Vec::new();
    let n = items.len();
    for (i, item) in items.into_iter().enumerate() {
        let mut vars = base.clone();
        vars.insert(loop_var.clone(), item.clone());
        vars.insert("ansible_loop_var".into(), json!(loop_var));
        if let Some(iv) = &index_var {
            vars.insert(iv.clone(), json!(i));
        }
        vars.insert(
            "ansible_loop".into(),
            json!({"index": i + 1, "index0": i, "first": i == 0, "last": i + 1 == n, "length": n,
                   "revindex": n - i, "revindex0": n - i - 1}),
        );
        let iscope = scope_for(p, t, vars);
        let label = match lc.get("label") {
            Some(l) => engine.templar.render_value(l, &iscope)?,
            None => item.clone(),
        };
        let mut r = match when_fails(engine, t, &iscope)? {
            Some(cond) => skipped(cond, None),
            None => {
                let step = Step {
                    engine,
                    p,
                    t,
                    host,
                    scope: &iscope,
                    delegated: delegated.as_deref(),
                };
                run_once(step, name, args).await?
            }
        };
        r.result.insert(loop_var.clone(), item.clone());
        r.result.insert("ansible_loop_var".into(), json!(loop_var));
        let unreachable = r.status == Status::Unreachable;
        item_results.push(ItemResult {
            label,
            status: r.status,
            result: r.result.clone(),
            diffs: r.diffs.clone(),
        });
        results.push(Value::Object(r.result));
        if unreachable {
            break;
        }
        if pause > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(pause)).await;
        }
    }
    let any = |s: Status| item_results.iter().any(|i| i.status == s);
    let status = if any(Status::Unreachable) {
        Status::Unreachable
    } else if any(Status::Failed) {
        Status::Failed
    } else if !item_results.is_empty() && item_results.iter().all(|i| i.status == Status::Skipped) {
        Status::Skipped
    } else if any(Status::Changed) {
        Status::Changed
    } else if item_results.is_empty() {
        Status::Skipped
    } else {
        Status::Ok
    };
    let mut result = Map::new();
    result.insert("changed".into(), json!(status == Status::Changed));
    result.insert(
        "msg".into(),
        json!(if status == Status::Failed {
            "One or more items failed"
        } else {
            "All items completed"
        }),
    );
    if status == Status::Failed {
        result.insert("failed".into(), json!(true));
    }
    if status == Status::Skipped {
        result.insert("skipped".into(), json!(true));
    }
    result.insert("results".into(), Value::Array(results));
    let mut r = TaskResult::new(status, result);
    r.items = item_results;
    r.delegated = delegated;
    Ok(r)
}

fn skipped(cond: String, delegated: Option<String>) -> TaskResult {
    let mut r = TaskResult::new(
        Status::Skipped,
        Map::from_iter([
            ("changed".to_owned(), json!(false)),
            ("skipped".to_owned(), json!(true)),
            (
                "skip_reason".to_owned(),
                json!("Conditional result was False"),
            ),
            ("false_condition".to_owned(), json!(cond)),
        ]),
    );
    r.delegated = delegated;
    r
}

/// The items of `loop:`/`with_*:`.
fn loop_items(engine: &Engine, kind: &str, value: &Value, scope: &Scope) -> Result<Vec<Value>> {
    let rendered = engine.templar.render_value(value, scope)?;
    let as_list = |v: Value| -> Result<Vec<Value>> {
        match v {
            Value::Array(a) => Ok(a),
            Value::Null => Ok(Vec::new()),
            other => Err(anyhow!(
                "Invalid data passed to '{kind}', it requires a list, got this instead: {other}"
            )),
        }
    };
    match kind {
        "loop" | "with_list" => as_list(rendered),
        "with_items" => {
            let items = match rendered {
                Value::Array(a) => a,
                Value::Null => Vec::new(),
                other => vec![other],
            };
            Ok(items
                .into_iter()
                .flat_map(|i| match i {
                    Value::Array(inner) => inner,
                    v => vec![v],
                })
                .collect())
        }
        "with_dict" => match rendered {
            Value::Object(m) => Ok(m
                .into_iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect()),
            other => Err(anyhow!("with_dict expects a dict, got {other}")),
        },
        "with_indexed_items" => Ok(as_list(rendered)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| json!([i, v]))
            .collect()),
        "with_sequence" => {
            let spec = modules::args::to_string(&rendered).unwrap_or_default();
            let mut start = 1i64;
            let mut end = 0i64;
            let mut stride = 1i64;
            let mut format = "%d".to_owned();
            for part in spec.split_whitespace() {
                match part.split_once('=') {
                    Some(("start", v)) => start = v.parse()?,
                    Some(("end", v)) => end = v.parse()?,
                    Some(("count", v)) => end = start + v.parse::<i64>()? - 1,
                    Some(("stride", v)) => stride = v.parse()?,
                    Some(("format", v)) => format = v.to_owned(),
                    _ => {
                        if let Some((a, b)) = part.split_once('-') {
                            start = a.parse()?;
                            end = b.parse()?;
                        } else {
                            end = part.parse()?;
                        }
                    }
                }
            }
            let mut out = Vec::new();
            let mut i = start;
            while (stride > 0 && i <= end) || (stride < 0 && i >= end) {
                out.push(json!(format
                    .replace("%d", &i.to_string())
                    .replace("%02d", &format!("{i:02}"))));
                i += stride;
                if stride == 0 {
                    break;
                }
            }
            Ok(out)
        }
        other => Err(anyhow!("unsupported loop '{other}' (use loop:)")),
    }
}

/// One execution (no loop): the action or module with retries, then changed_when/failed_when.
async fn run_once(step: Step<'_>, name: &str, args: &Value) -> Result<TaskResult> {
    let Step {
        engine,
        t,
        host,
        scope,
        ..
    } = step;
    let short = modules::registry::short_name(name);
    let attempts = match &t.until {
        Some(_) => {
            let retries = match &t.retries {
                Some(v) => modules::args::to_string(&engine.templar.render_value(v, scope)?)
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(3),
                None => 3,
            };
            retries + 1
        }
        None => 1,
    };
    let delay = match &t.delay {
        Some(v) => modules::args::to_string(&engine.templar.render_value(v, scope)?)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(5.0),
        None => 5.0,
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut r = if keywords_action(short) {
            actions::run(step, short, args).await?
        } else {
            let outcome = run_module(step, name, args).await?;
            from_outcome(outcome)
        };
        // changed_when / failed_when / until see the result under the register name.
        let mut vars = (*scope.vars).clone();
        if let Some(reg) = &t.register {
            vars.insert(reg.clone(), Value::Object(r.result.clone()));
        }
        let rscope = Scope {
            vars: Arc::new(vars),
            search_paths: scope.search_paths.clone(),
        };
        if let Some(cw) = &t.changed_when {
            let changed = conditions(engine, cw, &rscope)?.is_none();
            if r.status == Status::Changed || r.status == Status::Ok {
                r.status = if changed { Status::Changed } else { Status::Ok };
            }
            r.result.insert("changed".into(), json!(changed));
        }
        if let Some(fw) = &t.failed_when {
            let failed = conditions(engine, fw, &rscope)?.is_none() && !fw.is_empty();
            r.result.insert("failed_when_result".into(), json!(failed));
            if failed {
                r.status = Status::Failed;
                r.result.insert("failed".into(), json!(true));
            } else if r.status == Status::Failed {
                r.status = if r.result.get("changed") == Some(&json!(true)) {
                    Status::Changed
                } else {
                    Status::Ok
                };
                r.result.insert("failed".into(), json!(false));
            }
        }
        let Some(until) = &t.until else {
            return Ok(r);
        };
        let done = r.status != Status::Unreachable && conditions(engine, until, &rscope)?.is_none();
        r.result.insert("attempts".into(), json!(attempt));
        if done {
            if r.status == Status::Failed && t.failed_when.is_none() {
                r.status = Status::Ok;
                r.result.insert("failed".into(), json!(false));
            }
            return Ok(r);
        }
        if attempt >= attempts || r.status == Status::Unreachable {
            r.status = if r.status == Status::Unreachable {
                Status::Unreachable
            } else {
                Status::Failed
            };
            r.result.insert("failed".into(), json!(true));
            r.result
                .entry("msg")
                .or_insert(json!("Retry limit reached"));
            return Ok(r);
        }
        engine.printer.warn(&format!(
            "FAILED - RETRYING: [{}]: {} ({} retries left).",
            host.name,
            t.display_name(),
            attempts - attempt
        ));
        tokio::time::sleep(Duration::from_secs_f64(delay)).await;
    }
}

fn keywords_action(short: &str) -> bool {
    crate::playbook::keywords::ACTIONS.contains(&short)
}

fn from_outcome(o: Outcome) -> TaskResult {
    let status = if o.failed {
        Status::Failed
    } else if o.skipped {
        Status::Skipped
    } else if o.changed {
        Status::Changed
    } else {
        Status::Ok
    };
    let mut result = Map::new();
    result.insert("changed".into(), json!(o.changed));
    for (k, v) in o.data {
        result.insert(k, v);
    }
    if let Some(m) = o.msg {
        result.insert("msg".into(), json!(m));
    }
    if o.failed {
        result.insert("failed".into(), json!(true));
    }
    if o.skipped {
        result.insert("skipped".into(), json!(true));
    }
    let mut r = TaskResult::new(status, result);
    r.diffs = o.diffs;
    r
}

/// The connection a task uses: the delegated host's, or the host's own, with `environment:`.
pub async fn connection_for(step: Step<'_>) -> Result<Arc<dyn Connection>> {
    let Step {
        engine,
        p,
        t,
        host,
        scope,
        delegated,
    } = step;
    let (target, raw_vars) = match delegated {
        Some(d) if d != host.name => {
            let mut v = if engine.inventory.hosts().iter().any(|h| h == d) {
                engine.inventory.vars_for_host(d, Some(&p.playbook_dir))?
            } else {
                Map::new()
            };
            if matches!(d, "localhost" | "127.0.0.1") && !v.contains_key("ansible_connection") {
                v.insert("ansible_connection".into(), json!("local"));
            }
            v.insert("inventory_hostname".into(), json!(d));
            (d.to_owned(), v)
        }
        _ => (host.name.clone(), (*scope.vars).clone()),
    };
    let conn_vars = connection_vars(engine, &raw_vars, scope)?;
    let conn = engine.pool.get(&target, &conn_vars).await?;
    let env = match t.inherit.environment.get("__template__") {
        Some(tpl) => match engine.templar.render_value(tpl, scope)? {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        None => match engine
            .templar
            .render_value(&Value::Object(t.inherit.environment.clone()), scope)?
        {
            Value::Object(m) => m,
            _ => Map::new(),
        },
    };
    Ok(WithEnv::wrap(conn, &env))
}

/// Templated connection variables (`ansible_host`, `ansible_user`…).
fn connection_vars(
    engine: &Engine,
    vars: &Map<String, Value>,
    scope: &Scope,
) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    let s = Scope {
        vars: Arc::new(vars.clone()),
        search_paths: scope.search_paths.clone(),
    };
    for (k, v) in vars {
        if k.starts_with("ansible_") && !k.starts_with("ansible_facts") {
            out.insert(k.clone(), engine.templar.render_value(v, &s)?);
        }
    }
    Ok(out)
}

async fn run_module(step: Step<'_>, name: &str, args: &Value) -> Result<Outcome> {
    let Step {
        engine,
        p,
        t,
        host,
        scope,
        ..
    } = step;
    let module =
        modules::lookup(name).ok_or_else(|| anyhow!("couldn't resolve module/action '{name}'"))?;
    let rendered = match engine.templar.render_value(args, scope)? {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => return Err(anyhow!("module arguments must be a mapping, got {other}")),
    };
    let check = t.inherit.check_mode.unwrap_or(p.check);
    if check && !module.supports_check() {
        return Ok(Outcome {
            skipped: true,
            msg: Some("check mode not supported for this module".into()),
            ..Outcome::default()
        });
    }
    let conn = connection_for(step).await?;
    let escalate = become_for(engine, t, scope)?;
    let render = |text: &str, tname: &str| -> Result<String> {
        let mut vars = (*scope.vars).clone();
        vars.insert("template_path".into(), json!(tname));
        let s = Scope {
            vars: Arc::new(vars),
            search_paths: scope.search_paths.clone(),
        };
        Ok(engine.templar.render_template_file(text, tname, &s)?)
    };
    let ctx = Ctx {
        conn: conn.as_ref(),
        check,
        diff: p.diff,
        escalate: escalate.as_ref(),
        search_paths: &scope.search_paths,
        render: &render,
        facts: &host.facts,
        inventory_hostname: &host.name,
    };
    module.run(&Args::new(rendered), &ctx).await
}

/// `become:` settings for the task, or None when not escalating (or already that user).
fn become_for(engine: &Engine, t: &Task, scope: &Scope) -> Result<Option<Become>> {
    let vars = &scope.vars;
    let wanted = t
        .inherit
        .escalate
        .or_else(|| vars.get("ansible_become").and_then(modules::args::to_bool))
        .unwrap_or(false);
    if !wanted {
        return Ok(None);
    }
    let user = match &t.inherit.become_user {
        Some(u) => engine.templar.render_str(u, scope)?,
        None => vars
            .get("ansible_become_user")
            .cloned()
            .unwrap_or(json!("root")),
    };
    let user = modules::args::to_string(&user).unwrap_or_else(|| "root".into());
    let remote = vars.get("ansible_user").and_then(modules::args::to_string);
    let me = std::env::var("USER").unwrap_or_default();
    if remote.as_deref().unwrap_or(&me) == user {
        return Ok(None);
    }
    let password = match vars
        .get("ansible_become_password")
        .or_else(|| vars.get("ansible_become_pass"))
    {
        Some(v) => modules::args::to_string(&engine.templar.render_value(v, scope)?),
        None => engine.opts.become_password.clone(),
    };
    Ok(Some(Become { user, password }))
}

/// Applies a result to the host: counters (when `counted`), register, notify, facts, vars.
pub fn record(s: &mut HostState, t: &Task, r: &TaskResult, counted: bool) {
    if counted {
        match r.status {
            Status::Ok => s.stats.ok += 1,
            Status::Changed => {
                s.stats.ok += 1;
                s.stats.changed += 1;
            }
            Status::Skipped => s.stats.skipped += 1,
            Status::Failed if r.ignored => {
                s.stats.ok += 1;
                s.stats.ignored += 1;
            }
            Status::Failed => {
                s.stats.failed += 1;
                s.failed = true;
            }
            Status::Unreachable => {
                s.stats.unreachable += 1;
                s.unreachable = true;
            }
        }
    }
    if let Some(reg) = &t.register {
        s.host_vars
            .insert(reg.clone(), Value::Object(r.result.clone()));
    }
    if let Some(f) = &r.facts {
        for (k, v) in f {
            s.facts.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in &r.set_vars {
        s.host_vars.insert(k.clone(), v.clone());
    }
    if r.status == Status::Changed {
        for n in &t.notify {
            s.notify(n);
        }
    }
}

/// What an `include_tasks`/`include_role` task loads on `host` (None when its condition is false).
pub fn resolve_include(
    engine: &Engine,
    p: &PlayCtx,
    t: &Task,
    host: &HostState,
) -> Result<Option<Vec<Task>>> {
    let vars = vars::task_vars(p, Some(t), host);
    let scope = scope_for(p, t, vars);
    if when_fails(engine, t, &scope)?.is_some() {
        return Ok(None);
    }
    crate::playbook::load::load_include(
        t,
        &scope,
        &engine.templar,
        &engine.opts.role_paths,
        &p.playbook_dir,
    )
    .map(Some)
}
