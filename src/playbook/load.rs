//! Loads playbooks and task files from YAML into the model, expanding static imports and
//! `roles:`, and validating module names and parameters before anything runs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::{Map, Value};

use super::role::{RoleSearch, RoleUse};
use super::{keywords, syntax};
use super::{Action, Inherited, Origin, Play, Playbook, RoleScope, Task};
use crate::data::yaml::{parse_yaml_with_positions, Positions, KEY_SUFFIX};
use crate::data::{SourceError, SourcePos};
use crate::modules::args::parse_free_form;
use crate::modules::{self, command::FREE_FORM_KEYS};

/// One parsed YAML file and the positions of its nodes, for error messages.
pub(crate) struct Source {
    pub(crate) file: Arc<PathBuf>,
    text: String,
    positions: Positions,
    pub(crate) root: Value,
}

impl Source {
    /// Reads and parses `path`.
    pub(crate) fn read(path: &Path) -> Result<Source> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let (root, positions) = parse_yaml_with_positions(&text, path)?;
        Ok(Source {
            file: Arc::new(path.to_path_buf()),
            text,
            positions,
            root,
        })
    }

    fn pos(&self, ptr: &str) -> SourcePos {
        let mut p = ptr;
        loop {
            if let Some(pos) = self.positions.get(p) {
                return *pos;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return SourcePos { line: 1, col: 1 },
            }
        }
    }

    pub(crate) fn origin(&self, ptr: &str) -> Origin {
        Origin {
            file: self.file.clone(),
            pos: self.pos(ptr),
        }
    }

    pub(crate) fn error(&self, ptr: &str, msg: impl Into<String>) -> anyhow::Error {
        SourceError::new(&*self.file, Some(&self.text), self.pos(ptr), msg).into()
    }

    fn dir(&self) -> PathBuf {
        self.file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}

/// State shared while loading one play: where roles are found, handlers collected, roles seen.
pub(crate) struct PlayLoader<'a> {
    pub(crate) roles: &'a RoleSearch,
    pub(crate) handlers: Vec<Task>,
    seen_roles: HashSet<String>,
}

impl<'a> PlayLoader<'a> {
    pub(crate) fn new(roles: &'a RoleSearch) -> Self {
        PlayLoader {
            roles,
            handlers: Vec::new(),
            seen_roles: HashSet::new(),
        }
    }
}

/// Loads a playbook file (plays, roles, static imports), failing with `file:line:col` on bad input.
pub fn load_playbook(path: &Path, extra_role_paths: &[PathBuf]) -> Result<Playbook> {
    let src = Source::read(path)?;
    let mut plays = Vec::new();
    let base = src.dir();
    let search = RoleSearch::new(&base, extra_role_paths);
    let Value::Array(items) = &src.root else {
        return Err(src.error("", "a playbook must be a list of plays"));
    };
    for (i, item) in items.iter().enumerate() {
        let ptr = format!("/{i}");
        let Value::Object(map) = item else {
            return Err(src.error(&ptr, "a play must be a mapping"));
        };
        if let Some(inc) = map
            .get("import_playbook")
            .or_else(|| map.get("ansible.builtin.import_playbook"))
        {
            let file = inc
                .as_str()
                .ok_or_else(|| src.error(&ptr, "import_playbook needs a file name"))?;
            let sub = load_playbook(&base.join(file), extra_role_paths)?;
            plays.extend(sub.plays);
            continue;
        }
        plays.push(load_play(&src, &ptr, map, &search)?);
    }
    Ok(Playbook {
        path: path.to_path_buf(),
        plays,
    })
}

fn load_play(
    src: &Source,
    ptr: &str,
    map: &Map<String, Value>,
    search: &RoleSearch,
) -> Result<Play> {
    for key in map.keys() {
        if !keywords::PLAY.contains(&key.as_str()) {
            let hint = modules::suggest(key, keywords::PLAY.iter().copied())
                .map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_default();
            return Err(src.error(
                &format!("{ptr}/{key}{KEY_SUFFIX}"),
                format!("'{key}' is not a valid attribute for a play{hint}"),
            ));
        }
    }
    let hosts = match map.get("hosts") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(":"),
        _ => return Err(src.error(ptr, "the play needs 'hosts:'")),
    };
    let inherit = inherited(src, ptr, map, &Inherited::default())?;
    let vars = mapping(src, &format!("{ptr}/vars"), map.get("vars"))?;
    let mut loader = PlayLoader::new(search);
    let list = |key: &str, loader: &mut PlayLoader| -> Result<Vec<Task>> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(v) => parse_tasks(src, &format!("{ptr}/{key}"), v, &inherit, None, loader),
        }
    };
    let pre_tasks = list("pre_tasks", &mut loader)?;
    let mut tasks = Vec::new();
    if let Some(roles) = map.get("roles") {
        let Value::Array(items) = roles else {
            return Err(src.error(&format!("{ptr}/roles"), "roles must be a list"));
        };
        for (i, r) in items.iter().enumerate() {
            let rptr = format!("{ptr}/roles/{i}");
            let used = RoleUse::parse(r).map_err(|e| src.error(&rptr, e.to_string()))?;
            tasks.extend(expand_role(src, &rptr, &used, &inherit, &mut loader)?);
        }
    }
    tasks.extend(list("tasks", &mut loader)?);
    let post_tasks = list("post_tasks", &mut loader)?;
    let mut handlers = list("handlers", &mut loader)?;
    // Role handlers come before the play's own, as in Ansible.
    let mut all_handlers = std::mem::take(&mut loader.handlers);
    all_handlers.append(&mut handlers);
    Ok(Play {
        name: map
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(&hosts)
            .to_owned(),
        hosts,
        vars,
        vars_files: match map.get("vars_files") {
            Some(Value::Array(v)) => v.clone(),
            Some(v @ Value::String(_)) => vec![v.clone()],
            _ => Vec::new(),
        },
        gather_facts: map
            .get("gather_facts")
            .and_then(modules::args::to_bool)
            .unwrap_or(true),
        inherit,
        serial: match map.get("serial") {
            Some(Value::Array(v)) => v.clone(),
            Some(v) => vec![v.clone()],
            None => Vec::new(),
        },
        any_errors_fatal: map
            .get("any_errors_fatal")
            .and_then(modules::args::to_bool)
            .unwrap_or(false),
        max_fail_percentage: map
            .get("max_fail_percentage")
            .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok())),
        pre_tasks,
        tasks,
        post_tasks,
        handlers: all_handlers,
        origin: Some(src.origin(ptr)),
    })
}

/// Expands a role into tasks (dependencies first), adding its handlers to the play.
pub(crate) fn expand_role(
    src: &Source,
    ptr: &str,
    used: &RoleUse,
    outer: &Inherited,
    loader: &mut PlayLoader,
) -> Result<Vec<Task>> {
    let role = loader
        .roles
        .find(&used.name)
        .map_err(|e| src.error(ptr, e.to_string()))?;
    let key = format!(
        "{}|{}",
        role.path.display(),
        serde_json::to_string(&used.params).unwrap_or_default()
    );
    if !loader.seen_roles.insert(key) {
        return Ok(Vec::new());
    }
    let mut inherit = outer.clone();
    inherit.when.extend(used.when.iter().cloned());
    inherit.tags.extend(used.tags.iter().cloned());
    if used.escalate.is_some() {
        inherit.escalate = used.escalate;
    }
    let mut tasks = Vec::new();
    for (i, dep) in role.dependencies.iter().enumerate() {
        tasks.extend(expand_role(
            &role.meta_source()?,
            &format!("/dependencies/{i}"),
            dep,
            &inherit,
            loader,
        )?);
    }
    let scope = Arc::new(RoleScope {
        name: role.name.clone(),
        path: role.path.clone(),
        defaults: Arc::new(role.defaults.clone()),
        vars: Arc::new(role.vars.clone()),
        params: Arc::new(used.params.clone()),
    });
    let tasks_file = role.tasks_file(used.tasks_from.as_deref());
    if let Some(file) = tasks_file {
        tasks.extend(load_task_file(
            &file,
            &inherit,
            Some(scope.clone()),
            loader,
        )?);
    }
    if let Some(file) = role.handlers_file() {
        let handlers = load_task_file(&file, &inherit, Some(scope), loader)?;
        loader.handlers.extend(handlers);
    }
    Ok(tasks)
}

/// Loads a task file (a list of tasks) with inherited keywords and an optional role scope.
pub(crate) fn load_task_file(
    path: &Path,
    inherit: &Inherited,
    role: Option<Arc<RoleScope>>,
    loader: &mut PlayLoader,
) -> Result<Vec<Task>> {
    let src = Source::read(path)?;
    match &src.root {
        Value::Null => Ok(Vec::new()),
        root => parse_tasks(&src, "", root, inherit, role, loader),
    }
}

fn parse_tasks(
    src: &Source,
    ptr: &str,
    list: &Value,
    inherit: &Inherited,
    role: Option<Arc<RoleScope>>,
    loader: &mut PlayLoader,
) -> Result<Vec<Task>> {
    let Value::Array(items) = list else {
        return Err(src.error(ptr, "expected a list of tasks"));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let tptr = format!("{ptr}/{i}");
        let Value::Object(map) = item else {
            return Err(src.error(&tptr, "a task must be a mapping"));
        };
        out.extend(parse_task(src, &tptr, map, inherit, role.clone(), loader)?);
    }
    Ok(out)
}

/// The keywords of a task/block merged over the inherited ones.
fn inherited(
    src: &Source,
    ptr: &str,
    map: &Map<String, Value>,
    outer: &Inherited,
) -> Result<Inherited> {
    let mut inh = outer.clone();
    if let Some(v) = map.get("become") {
        inh.escalate = modules::args::to_bool(v);
    }
    if let Some(v) = map.get("become_user") {
        inh.become_user = modules::args::to_string(v);
    }
    if let Some(v) = map.get("environment") {
        match v {
            Value::Object(env) => inh.environment.extend(env.clone()),
            Value::String(_) => {
                inh.environment.insert("__template__".into(), v.clone());
            }
            _ => {
                return Err(src.error(
                    &format!("{ptr}/environment"),
                    "environment must be a mapping",
                ))
            }
        }
    }
    if let Some(v) = map.get("check_mode") {
        inh.check_mode = modules::args::to_bool(v);
    }
    if let Some(v) = map.get("ignore_errors") {
        inh.ignore_errors = modules::args::to_bool(v);
    }
    if let Some(v) = map.get("no_log") {
        inh.no_log = modules::args::to_bool(v);
    }
    if let Some(v) = map.get("run_once") {
        inh.run_once = modules::args::to_bool(v);
    }
    if let Some(v) = map.get("any_errors_fatal") {
        inh.any_errors_fatal = modules::args::to_bool(v);
    }
    if let Some(v) = map.get("delegate_to") {
        inh.delegate_to = Some(v.clone());
    }
    inh.tags.extend(string_list(map.get("tags")));
    Ok(inh)
}

fn parse_task(
    src: &Source,
    ptr: &str,
    map: &Map<String, Value>,
    outer: &Inherited,
    role: Option<Arc<RoleScope>>,
    loader: &mut PlayLoader,
) -> Result<Vec<Task>> {
    let mut inherit = inherited(src, ptr, map, outer)?;
    let when = condition_list(map.get("when"));
    let vars = mapping(src, &format!("{ptr}/vars"), map.get("vars"))?;
    let origin = src.origin(ptr);
    let name = map.get("name").and_then(modules::args::to_string);

    if map.contains_key("block") {
        for key in map.keys() {
            if !keywords::BLOCK.contains(&key.as_str()) {
                return Err(src.error(
                    &format!("{ptr}/{key}{KEY_SUFFIX}"),
                    format!("'{key}' is not a valid attribute for a block"),
                ));
            }
        }
        // Block conditions and vars apply to every task inside.
        inherit.when.extend(when);
        inherit.vars.extend(vars);
        let part = |key: &str, loader: &mut PlayLoader| -> Result<Vec<Task>> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(v) => parse_tasks(
                    src,
                    &format!("{ptr}/{key}"),
                    v,
                    &inherit,
                    role.clone(),
                    loader,
                ),
            }
        };
        let block = part("block", loader)?;
        let rescue = part("rescue", loader)?;
        let always = part("always", loader)?;
        return Ok(vec![Task::new(
            name,
            Action::Block {
                block,
                rescue,
                always,
            },
            inherit,
            role,
            origin,
        )]);
    }

    // Find the action: the one key that is not a keyword.
    let mut actions: Vec<&String> = map
        .keys()
        .filter(|k| !keywords::TASK.contains(&k.as_str()) && !keywords::is_loop(k))
        .collect();
    let (mut module, mut args) = if let Some(a) =
        map.get("action").or_else(|| map.get("local_action"))
    {
        if !actions.is_empty() {
            return Err(src.error(
                ptr,
                format!("conflicting action statements: action, {}", actions[0]),
            ));
        }
        let text = modules::args::to_string(a).unwrap_or_default();
        let (m, rest) = text
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((text.trim(), ""));
        if map.contains_key("local_action") {
            inherit.delegate_to = Some(Value::String("localhost".into()));
        }
        (m.to_owned(), Value::String(rest.to_owned()))
    } else {
        match actions.len() {
            0 => return Err(src.error(ptr, "no module/action detected in task")),
            1 => {}
            _ => {
                actions.sort();
                return Err(src.error(
                    ptr,
                    format!(
                        "conflicting action statements: {} (unknown task keyword or a second module?)",
                        actions.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        let key = actions[0].clone();
        let value = map.get(&key).cloned().unwrap_or(Value::Null);
        (key, value)
    };
    let short = modules::registry::short_name(&module).to_owned();
    let aptr = format!("{ptr}/{module}");
    check_templates(src, ptr, map)?;

    // Static imports expand now.
    match short.as_str() {
        "import_tasks" | "include_tasks" | "include" => {
            let file = match &args {
                Value::Object(m) => m.get("file").cloned().unwrap_or(Value::Null),
                v => v.clone(),
            };
            let mut params = vars;
            if let Value::Object(m) = &args {
                if let Some(Value::Object(v)) = m.get("vars") {
                    params.extend(v.clone());
                }
            }
            if short == "import_tasks" {
                let fname = file
                    .as_str()
                    .ok_or_else(|| src.error(&aptr, "import_tasks needs a file name"))?;
                if fname.contains("{{") {
                    return Err(src.error(&aptr, "import_tasks is static: its file name cannot be templated (use include_tasks)"));
                }
                let path = resolve_task_file(src, role.as_deref(), fname);
                inherit.when.extend(when);
                inherit.vars.extend(params);
                return load_task_file(&path, &inherit, role, loader)
                    .with_context(|| format!("imported at {origin}"));
            }
            return Ok(vec![dynamic(
                name,
                Action::IncludeTasks { file, params },
                map,
                when,
                inherit,
                role,
                origin,
            )]);
        }
        "import_role" | "include_role" => {
            let Value::Object(m) = &args else {
                return Err(src.error(&aptr, format!("{short} needs 'name:'")));
            };
            let role_name = m
                .get("name")
                .cloned()
                .ok_or_else(|| src.error(&aptr, format!("{short} needs 'name:'")))?;
            let tasks_from = m.get("tasks_from").and_then(modules::args::to_string);
            if short == "import_role" {
                let rname = role_name
                    .as_str()
                    .ok_or_else(|| src.error(&aptr, "import_role needs a role name"))?;
                let used = RoleUse {
                    name: rname.to_owned(),
                    params: vars,
                    tasks_from,
                    when,
                    tags: Vec::new(),
                    escalate: None,
                };
                return expand_role(src, &aptr, &used, &inherit, loader);
            }
            return Ok(vec![dynamic(
                name,
                Action::IncludeRole {
                    name: role_name,
                    tasks_from,
                    params: vars,
                },
                map,
                when,
                inherit,
                role,
                origin,
            )]);
        }
        _ => {}
    }

    // A module: it must exist, and its parameters must be known.
    let module_impl = modules::lookup(&module);
    if module_impl.is_none() && !keywords::ACTIONS.contains(&short.as_str()) {
        let names = modules::registry::names().chain(keywords::ACTIONS.iter().copied());
        let hint = modules::suggest(&short, names)
            .map(|s| format!(". Did you mean '{s}'?"))
            .unwrap_or_default();
        return Err(src.error(
            &format!("{aptr}{KEY_SUFFIX}"),
            format!("couldn't resolve module/action '{module}'{hint}"),
        ));
    }
    if let Value::String(text) = &args {
        let only = matches!(short.as_str(), "command" | "shell").then_some(FREE_FORM_KEYS);
        let parsed = match short.as_str() {
            "raw" | "meta" | "fail" | "debug" | "set_fact" | "assert" if !text.contains('=') => {
                Map::from_iter([(modules::args::RAW.to_owned(), Value::String(text.clone()))])
            }
            _ => parse_free_form(text, only).map_err(|e| src.error(&aptr, e.to_string()))?,
        };
        args = Value::Object(parsed);
    }
    if args.is_null() {
        args = Value::Object(Map::new());
    }
    if let Some(Value::Object(extra)) = map.get("args") {
        if let Value::Object(a) = &mut args {
            for (k, v) in extra {
                a.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    if let (Some(m), Value::Object(a)) = (module_impl, &args) {
        for key in a.keys() {
            if !m.params().contains(&key.as_str()) {
                let hint = modules::suggest(key, m.params().iter().copied())
                    .map(|s| format!(" Did you mean '{s}'?"))
                    .unwrap_or_default();
                return Err(src.error(
                    &format!("{aptr}/{key}{KEY_SUFFIX}"),
                    format!("Unsupported parameter for ({short}) module: {key}.{hint}"),
                ));
            }
        }
    }
    module = module.trim().to_owned();
    let mut task = dynamic(
        name,
        Action::Module { name: module, args },
        map,
        when,
        inherit,
        role,
        origin,
    );
    task.vars = vars;
    Ok(vec![task])
}

/// Template and conditional syntax of a task, checked before anything runs.
fn check_templates(src: &Source, ptr: &str, map: &Map<String, Value>) -> Result<()> {
    for (key, value) in map {
        let kptr = format!("{ptr}/{key}");
        let checked = match key.as_str() {
            "when" | "changed_when" | "failed_when" | "until" => match value {
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, c)| syntax::check_condition(c, &format!("{kptr}/{i}"))),
                v => syntax::check_condition(v, &kptr),
            },
            _ => syntax::check_value(value, &kptr),
        };
        if let Err(e) = checked {
            return Err(src.error(&e.ptr, e.message));
        }
    }
    Ok(())
}

/// Builds a task from its keywords (shared by modules and includes).
fn dynamic(
    name: Option<String>,
    action: Action,
    map: &Map<String, Value>,
    when: Vec<Value>,
    inherit: Inherited,
    role: Option<Arc<RoleScope>>,
    origin: Origin,
) -> Task {
    let looping = map
        .iter()
        .find(|(k, _)| keywords::is_loop(k))
        .map(|(k, v)| (k.clone(), v.clone()));
    Task {
        name,
        action,
        when,
        looping,
        loop_control: map
            .get("loop_control")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        register: map.get("register").and_then(modules::args::to_string),
        changed_when: map.get("changed_when").map(|v| condition_list(Some(v))),
        failed_when: map.get("failed_when").map(|v| condition_list(Some(v))),
        notify: string_list(map.get("notify")),
        listen: string_list(map.get("listen")),
        retries: map.get("retries").cloned(),
        until: map.get("until").map(|v| condition_list(Some(v))),
        delay: map.get("delay").cloned(),
        timeout: map.get("timeout").cloned(),
        vars: Map::new(),
        inherit,
        role,
        origin,
    }
}

/// Where `import_tasks`/`include_tasks` finds `name`: the role's tasks/ dir, then beside the current file.
pub(crate) fn resolve_task_file(src: &Source, role: Option<&RoleScope>, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    let mut candidates = Vec::new();
    if let Some(r) = role {
        candidates.push(r.path.join("tasks").join(name));
    }
    candidates.push(src.dir().join(name));
    candidates
        .iter()
        .find(|c| c.exists())
        .cloned()
        .unwrap_or_else(|| candidates.remove(candidates.len() - 1))
}

fn mapping(src: &Source, ptr: &str, v: Option<&Value>) -> Result<Map<String, Value>> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(Value::Array(items)) => {
            // Ansible accepts a list of single-key mappings for vars.
            let mut out = Map::new();
            for item in items {
                match item {
                    Value::Object(m) => out.extend(m.clone()),
                    _ => return Err(src.error(ptr, "vars must be a mapping")),
                }
            }
            Ok(out)
        }
        Some(_) => Err(src.error(ptr, "vars must be a mapping")),
    }
}

/// `when:`/`changed_when:`… as a list of conditions.
fn condition_list(v: Option<&Value>) -> Vec<Value> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(v) => vec![v.clone()],
    }
}

/// A string or list of strings (tags, notify, listen).
fn string_list(v: Option<&Value>) -> Vec<String> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().filter_map(modules::args::to_string).collect(),
        Some(Value::String(s)) => s
            .split(',')
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect(),
        Some(v) => modules::args::to_string(v).into_iter().collect(),
    }
}

/// Loads what a dynamic `include_tasks`/`include_role` task brings in, with its names templated.
pub fn load_include(
    t: &Task,
    scope: &crate::template::Scope,
    templar: &crate::template::Templar,
    role_paths: &[PathBuf],
    playbook_dir: &Path,
) -> Result<Vec<Task>> {
    let search = RoleSearch::new(playbook_dir, role_paths);
    let mut loader = PlayLoader::new(&search);
    let src = Source::read(&t.origin.file)?;
    let render = |v: &Value| -> Result<String> {
        modules::args::to_string(&templar.render_value(v, scope)?)
            .ok_or_else(|| anyhow::anyhow!("{}: include needs a name", t.origin))
    };
    match &t.action {
        Action::IncludeTasks { file, params } => {
            let name = render(file)?;
            let path = resolve_task_file(&src, t.role.as_deref(), &name);
            let mut inherit = t.inherit.clone();
            inherit.vars.extend(params.clone());
            load_task_file(&path, &inherit, t.role.clone(), &mut loader)
                .with_context(|| format!("included at {}", t.origin))
        }
        Action::IncludeRole {
            name,
            tasks_from,
            params,
        } => {
            let used = RoleUse {
                name: render(name)?,
                params: params.clone(),
                tasks_from: tasks_from.clone(),
                ..RoleUse::default()
            };
            let tasks = expand_role(&src, "", &used, &t.inherit, &mut loader)?;
            Ok(tasks)
        }
        _ => Ok(Vec::new()),
    }
}
