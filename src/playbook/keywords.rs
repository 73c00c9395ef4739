//! Task, block and play keywords: what is not a module name.

/// Keywords a task may carry besides its module.
pub const TASK: &[&str] = &[
    "name", "when", "loop", "loop_control", "register", "changed_when", "failed_when", "ignore_errors",
    "ignore_unreachable", "tags", "notify", "listen", "become", "become_user", "become_method",
    "become_flags", "delegate_to", "delegate_facts", "run_once", "retries", "until", "delay",
    "check_mode", "diff", "no_log", "environment", "vars", "args", "any_errors_fatal", "throttle",
    "timeout", "connection", "remote_user", "collections", "debugger", "module_defaults", "port",
    "action", "local_action",
];

/// Keywords of a block.
pub const BLOCK: &[&str] = &[
    "block", "rescue", "always", "name", "when", "tags", "become", "become_user", "become_method",
    "ignore_errors", "environment", "vars", "check_mode", "no_log", "delegate_to", "run_once",
    "any_errors_fatal", "collections", "module_defaults", "notify", "throttle", "timeout", "diff",
    "remote_user", "connection", "ignore_unreachable", "debugger",
];

/// Keywords of a play.
pub const PLAY: &[&str] = &[
    "name", "hosts", "vars", "vars_files", "vars_prompt", "roles", "pre_tasks", "tasks", "post_tasks",
    "handlers", "gather_facts", "gather_subset", "gather_timeout", "become", "become_user",
    "become_method", "serial", "any_errors_fatal", "max_fail_percentage", "tags", "environment",
    "check_mode", "no_log", "remote_user", "connection", "strategy", "order", "force_handlers",
    "ignore_errors", "ignore_unreachable", "collections", "module_defaults", "diff", "throttle",
    "timeout", "run_once", "port", "debugger", "fact_path",
];

/// Executor actions: run by the engine itself, not sent to hosts as commands.
pub const ACTIONS: &[&str] = &[
    "set_fact", "debug", "assert", "fail", "meta", "setup", "gather_facts", "wait_for_connection",
    "include_vars", "pause", "add_host", "group_by", "ping",
];

/// Whether `key` starts a loop (`loop`, `with_items`, `with_dict`…).
pub fn is_loop(key: &str) -> bool {
    key == "loop" || key.starts_with("with_")
}
