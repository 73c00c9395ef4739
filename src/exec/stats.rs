//! Per-host counters of the PLAY RECAP, and the exit code they imply.

use serde_json::{json, Value};

/// Recap counters for one host (Ansible counts `ok` for changed tasks too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Tasks that ran fine (changed or not).
    pub ok: u32,
    /// Tasks that changed the host.
    pub changed: u32,
    /// The host became unreachable.
    pub unreachable: u32,
    /// Tasks that failed.
    pub failed: u32,
    /// Tasks skipped.
    pub skipped: u32,
    /// Failures rescued by a block.
    pub rescued: u32,
    /// Failures ignored (`ignore_errors`).
    pub ignored: u32,
}

impl Stats {
    /// The counters as JSON.
    pub fn to_json(&self) -> Value {
        json!({"ok": self.ok, "changed": self.changed, "unreachable": self.unreachable, "failed": self.failed,
               "skipped": self.skipped, "rescued": self.rescued, "ignored": self.ignored})
    }
}

/// ansible-playbook's exit code: 4 if a host was unreachable, else 2 if one failed, else 0.
pub fn exit_code<'a>(stats: impl IntoIterator<Item = &'a Stats>) -> u8 {
    let (mut unreachable, mut failed) = (false, false);
    for s in stats {
        unreachable |= s.unreachable > 0;
        failed |= s.failed > 0;
    }
    if unreachable {
        4
    } else if failed {
        2
    } else {
        0
    }
}
