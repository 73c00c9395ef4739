//! What the engine remembers about each host during a run.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::stats::Stats;

/// One host's state across plays: facts, variables set by tasks, status and counters.
#[derive(Debug, Clone)]
pub struct HostState {
    /// Inventory name.
    pub name: String,
    /// Inventory-level variables (groups, group_vars, host_vars), merged.
    pub inv_vars: Arc<Map<String, Value>>,
    /// Gathered facts (`ansible_facts`, without the prefix).
    pub facts: Map<String, Value>,
    /// Variables from `set_fact`, `register` and `include_vars`.
    pub host_vars: Map<String, Value>,
    /// Recap counters.
    pub stats: Stats,
    /// A task failed (and was not rescued or ignored).
    pub failed: bool,
    /// The host could not be reached.
    pub unreachable: bool,
    /// `meta: end_host`/`end_play` stopped it for this play.
    pub ended: bool,
    /// Handlers (names or topics) notified and not yet run.
    pub notified: Vec<String>,
}

impl HostState {
    /// A fresh state for `name` with its inventory variables.
    pub fn new(name: &str, inv_vars: Map<String, Value>) -> Self {
        HostState {
            name: name.to_owned(),
            inv_vars: Arc::new(inv_vars),
            facts: Map::new(),
            host_vars: Map::new(),
            stats: Stats::default(),
            failed: false,
            unreachable: false,
            ended: false,
            notified: Vec::new(),
        }
    }

    /// Still running tasks in this play.
    pub fn active(&self) -> bool {
        !self.failed && !self.unreachable && !self.ended
    }

    /// Records a notification (once).
    pub fn notify(&mut self, handler: &str) {
        if !self.notified.iter().any(|h| h == handler) {
            self.notified.push(handler.to_owned());
        }
    }
}
