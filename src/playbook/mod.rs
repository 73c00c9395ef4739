//! The playbook model: plays, tasks, blocks and roles as loaded from YAML, with every task
//! remembering where it was written so errors can point at it.
//!
//! Static constructs (`roles:`, `import_tasks`, `import_role`) are expanded while loading;
//! dynamic ones (`include_tasks`, `include_role`) stay as tasks and are loaded by the executor.

pub mod keywords;
pub mod load;
pub mod role;
pub mod syntax;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::data::SourcePos;

pub use load::load_playbook;
pub use role::{Role, RoleSearch};

/// Where a task or play was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The YAML file.
    pub file: Arc<PathBuf>,
    /// Position of the task's mapping in that file.
    pub pos: SourcePos,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.file.display(),
            self.pos.line,
            self.pos.col
        )
    }
}

/// A whole playbook file.
#[derive(Debug, Clone)]
pub struct Playbook {
    /// The playbook file.
    pub path: PathBuf,
    /// Its plays, in order (`import_playbook` expanded).
    pub plays: Vec<Play>,
}

/// One play.
#[derive(Debug, Clone, Default)]
pub struct Play {
    /// `name:` (defaults to the hosts pattern).
    pub name: String,
    /// `hosts:` pattern.
    pub hosts: String,
    /// `vars:`.
    pub vars: Map<String, Value>,
    /// `vars_files:` (templated at run time, relative to the playbook).
    pub vars_files: Vec<Value>,
    /// `gather_facts:` (default true).
    pub gather_facts: bool,
    /// Play-level task keywords inherited by every task (become, become_user, environment, check_mode, tags…).
    pub inherit: Inherited,
    /// `serial:` batch sizes (ints or percentages), empty = all at once.
    pub serial: Vec<Value>,
    /// `any_errors_fatal:`.
    pub any_errors_fatal: bool,
    /// `max_fail_percentage:`.
    pub max_fail_percentage: Option<f64>,
    /// `pre_tasks:`.
    pub pre_tasks: Vec<Task>,
    /// `roles:` expanded into tasks, followed by `tasks:`.
    pub tasks: Vec<Task>,
    /// `post_tasks:`.
    pub post_tasks: Vec<Task>,
    /// Handlers of the play and of its roles, in definition order.
    pub handlers: Vec<Task>,
    /// Where the play was written.
    pub origin: Option<Origin>,
}

/// Keywords a block or play passes down to its tasks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inherited {
    /// `become:`.
    pub escalate: Option<bool>,
    /// `become_user:`.
    pub become_user: Option<String>,
    /// `environment:` merged from outer to inner.
    pub environment: Map<String, Value>,
    /// `check_mode:`.
    pub check_mode: Option<bool>,
    /// `tags:` accumulated from outer levels.
    pub tags: Vec<String>,
    /// `when:` conditions of outer levels (all must hold).
    pub when: Vec<Value>,
    /// `ignore_errors:`.
    pub ignore_errors: Option<bool>,
    /// `no_log:`.
    pub no_log: Option<bool>,
    /// `delegate_to:`.
    pub delegate_to: Option<Value>,
    /// `run_once:`.
    pub run_once: Option<bool>,
    /// `any_errors_fatal` at block level.
    pub any_errors_fatal: Option<bool>,
    /// `vars:` of enclosing blocks (outer first).
    pub vars: Map<String, Value>,
}

/// The role a task came from: its variables and paths.
#[derive(Debug, Clone, Default)]
pub struct RoleScope {
    /// Role name.
    pub name: String,
    /// Role directory.
    pub path: PathBuf,
    /// `defaults/main.yml` (lowest precedence).
    pub defaults: Arc<Map<String, Value>>,
    /// `vars/main.yml`.
    pub vars: Arc<Map<String, Value>>,
    /// Parameters given where the role is used (`roles: - role: x\n  param: 1`).
    pub params: Arc<Map<String, Value>>,
}

/// What a task does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Run a module (or an executor action such as set_fact/debug/assert/fail/meta/setup).
    Module {
        /// The module name as written (may be a FQCN).
        name: String,
        /// Its arguments: a mapping, or free-form text.
        args: Value,
    },
    /// `block:` with `rescue:` and `always:`.
    Block {
        /// The block's tasks.
        block: Vec<Task>,
        /// Run when a block task fails.
        rescue: Vec<Task>,
        /// Always run.
        always: Vec<Task>,
    },
    /// `include_tasks: file` (loaded per host when reached).
    IncludeTasks {
        /// File name (templated).
        file: Value,
        /// Parameters (`vars:` of the include).
        params: Map<String, Value>,
    },
    /// `include_role: name=...` (loaded when reached).
    IncludeRole {
        /// Role name (templated).
        name: Value,
        /// `tasks_from:` (default main).
        tasks_from: Option<String>,
        /// Parameters (`vars:`).
        params: Map<String, Value>,
    },
}

/// One task (or block, or include) with its keywords.
#[derive(Debug, Clone)]
pub struct Task {
    /// `name:`.
    pub name: Option<String>,
    /// What it does.
    pub action: Action,
    /// `when:` (this task's own conditions; enclosing ones are in `inherit.when`).
    pub when: Vec<Value>,
    /// `loop:` / `with_items:` / `with_list:` / `with_dict:`…: (kind, value).
    pub looping: Option<(String, Value)>,
    /// `loop_control:`.
    pub loop_control: Map<String, Value>,
    /// `register:`.
    pub register: Option<String>,
    /// `changed_when:`.
    pub changed_when: Option<Vec<Value>>,
    /// `failed_when:`.
    pub failed_when: Option<Vec<Value>>,
    /// `notify:` handler names or topics.
    pub notify: Vec<String>,
    /// `listen:` topics (handlers only).
    pub listen: Vec<String>,
    /// `retries:` (with `until`).
    pub retries: Option<Value>,
    /// `until:`.
    pub until: Option<Vec<Value>>,
    /// `delay:` between attempts (seconds).
    pub delay: Option<Value>,
    /// `timeout:` in seconds for the whole task on one host.
    pub timeout: Option<Value>,
    /// `vars:` of the task.
    pub vars: Map<String, Value>,
    /// Keywords inherited from play/blocks merged with the task's own.
    pub inherit: Inherited,
    /// The role this task belongs to, if any.
    pub role: Option<Arc<RoleScope>>,
    /// Where it was written.
    pub origin: Origin,
}

impl Task {
    /// A task doing `action` with no keywords of its own besides those inherited.
    pub fn new(
        name: Option<String>,
        action: Action,
        inherit: Inherited,
        role: Option<Arc<RoleScope>>,
        origin: Origin,
    ) -> Self {
        Task {
            name,
            action,
            when: Vec::new(),
            looping: None,
            loop_control: Map::new(),
            register: None,
            changed_when: None,
            failed_when: None,
            notify: Vec::new(),
            listen: Vec::new(),
            retries: None,
            until: None,
            delay: None,
            timeout: None,
            vars: Map::new(),
            inherit,
            role,
            origin,
        }
    }

    /// The name shown in output: `role : name`, or the module name.
    pub fn display_name(&self) -> String {
        let base = match (&self.name, &self.action) {
            (Some(n), _) => n.clone(),
            (None, Action::Module { name, .. }) => name.clone(),
            (None, Action::Block { .. }) => "block".into(),
            (None, Action::IncludeTasks { .. }) => "include_tasks".into(),
            (None, Action::IncludeRole { .. }) => "include_role".into(),
        };
        match &self.role {
            Some(r) => format!("{} : {base}", r.name),
            None => base,
        }
    }

    /// Whether the task is tagged `always`/`never`/with one of `tags`.
    pub fn tags(&self) -> &[String] {
        &self.inherit.tags
    }
}
