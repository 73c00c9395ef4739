//! Everything the engine prints goes through one [`Printer`]: Ansible-style lines (with an
//! indicatif progress line on a terminal), or a JSON event stream (`--json`).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Map, Value};

use crate::exec::stats::Stats;
use crate::modules::Diff;

/// How a task ended on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Nothing changed.
    Ok,
    /// The host was changed.
    Changed,
    /// The task failed.
    Failed,
    /// The task was skipped (condition false, check mode…).
    Skipped,
    /// The host could not be reached.
    Unreachable,
}

impl Status {
    /// The word Ansible prints.
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Failed => "failed",
            Status::Skipped => "skipping",
            Status::Unreachable => "unreachable",
        }
    }
}

/// One host's result for a task (or a loop item), as printed.
#[derive(Debug, Clone)]
pub struct HostLine<'a> {
    /// Host name.
    pub host: &'a str,
    /// Delegated to this host, if any.
    pub delegated: Option<&'a str>,
    /// How it ended.
    pub status: Status,
    /// The loop item label, for per-item lines.
    pub item: Option<&'a Value>,
    /// The failure was ignored (`ignore_errors`).
    pub ignored: bool,
    /// The registered result.
    pub result: &'a Map<String, Value>,
    /// Diffs to show with `--diff`.
    pub diffs: &'a [Diff],
    /// Print the result even without -v (debug).
    pub show_result: bool,
}

/// Output settings and state.
pub struct Printer {
    json: bool,
    verbosity: u8,
    diff: bool,
    bar: Mutex<Option<ProgressBar>>,
    tty: bool,
}

impl Printer {
    /// A printer: JSON events or Ansible-style lines; progress only on a terminal.
    pub fn new(json: bool, verbosity: u8, diff: bool) -> Self {
        Printer {
            json,
            verbosity,
            diff,
            bar: Mutex::new(None),
            tty: !json && std::io::stdout().is_terminal(),
        }
    }

    fn line(&self, text: &str) {
        let bar = self.bar.lock().ok();
        match bar.as_ref().and_then(|b| b.as_ref()) {
            Some(pb) => pb.println(text),
            None => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
            }
        }
    }

    fn event(&self, value: Value) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{value}");
    }

    fn banner(title: &str) -> String {
        let width: usize = 79;
        let stars = width.saturating_sub(title.len() + 1).max(3);
        format!("\n{title} {}", "*".repeat(stars))
    }

    /// A play starts.
    pub fn play(&self, name: &str) {
        if self.json {
            self.event(json!({"event": "play_start", "play": name}));
        } else {
            self.line(&Self::banner(&format!("PLAY [{name}]")));
        }
    }

    /// A task starts on `hosts` hosts.
    pub fn task(&self, name: &str, handler: bool, hosts: usize) {
        if self.json {
            self.event(json!({"event": "task_start", "task": name, "handler": handler}));
            return;
        }
        let kind = if handler { "RUNNING HANDLER" } else { "TASK" };
        self.line(&Self::banner(&format!("{kind} [{name}]")));
        if self.tty {
            if let Ok(mut bar) = self.bar.lock() {
                let pb = ProgressBar::new(hosts as u64);
                pb.set_style(
                    ProgressStyle::with_template("{spinner} {msg} {pos}/{len} hosts [{elapsed}]")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                pb.set_message(name.to_owned());
                pb.enable_steady_tick(std::time::Duration::from_millis(120));
                if let Some(old) = bar.replace(pb) {
                    old.finish_and_clear();
                }
            }
        }
    }

    /// One host finished the current task.
    pub fn host_done(&self) {
        if let Ok(bar) = self.bar.lock() {
            if let Some(pb) = bar.as_ref() {
                pb.inc(1);
            }
        }
    }

    /// The current task is over on every host.
    pub fn task_end(&self) {
        if let Ok(mut bar) = self.bar.lock() {
            if let Some(pb) = bar.take() {
                pb.finish_and_clear();
            }
        }
    }

    /// A host's result line.
    pub fn result(&self, task: &str, r: &HostLine) {
        if self.json {
            self.event(json!({
                "event": "host_result", "task": task, "host": r.host, "delegated_to": r.delegated,
                "status": r.status.word(), "item": r.item, "ignored": r.ignored, "result": r.result,
            }));
            return;
        }
        if self.diff {
            for d in r.diffs {
                self.line(&render_diff(d));
            }
        }
        let host = match r.delegated {
            Some(d) if d != r.host => format!("[{} -> {d}]", r.host),
            _ => format!("[{}]", r.host),
        };
        let item = r
            .item
            .map(|i| format!(" => (item={})", label(i)))
            .unwrap_or_default();
        let text = match r.status {
            Status::Failed => format!("fatal: {host}: FAILED! => {}", compact(r.result)),
            Status::Unreachable => format!("fatal: {host}: UNREACHABLE! => {}", compact(r.result)),
            s if r.show_result && self.verbosity == 0 => {
                // Like Ansible's default callback: debug/assert output without the bookkeeping keys.
                let mut shown = r.result.clone();
                shown.remove("changed");
                format!("{}: {host}{item} => {}", s.word(), pretty(&shown))
            }
            s if self.verbosity > 0 => {
                format!("{}: {host}{item} => {}", s.word(), pretty(r.result))
            }
            s => format!("{}: {host}{item}", s.word()),
        };
        let text = if r.status == Status::Failed && r.item.is_some() {
            text.replacen("fatal:", "failed:", 1)
                .replacen(&host, &format!("{host}{item}"), 1)
        } else {
            text
        };
        self.line(&text);
        if r.ignored {
            self.line("...ignoring");
        }
    }

    /// An `include_tasks`/`include_role` brought in `what` for `hosts`.
    pub fn included(&self, what: &str, hosts: &[String]) {
        if self.json {
            self.event(json!({"event": "included", "file": what, "hosts": hosts}));
        } else {
            self.line(&format!("included: {what} for {}", hosts.join(", ")));
        }
    }

    /// A warning or notice.
    pub fn warn(&self, msg: &str) {
        if self.json {
            self.event(json!({"event": "warning", "msg": msg}));
        } else {
            self.line(&format!("[WARNING]: {msg}"));
        }
    }

    /// The PLAY RECAP table.
    pub fn recap(&self, stats: &[(String, Stats)]) {
        if self.json {
            let hosts: Map<String, Value> = stats
                .iter()
                .map(|(h, s)| (h.clone(), s.to_json()))
                .collect();
            self.event(json!({"event": "recap", "hosts": hosts}));
            return;
        }
        self.line(&Self::banner("PLAY RECAP"));
        let width = stats
            .iter()
            .map(|(h, _)| h.len())
            .max()
            .unwrap_or(0)
            .max(26);
        for (host, s) in stats {
            self.line(&format!(
                "{host:<width$} : ok={:<4} changed={:<4} unreachable={:<4} failed={:<4} skipped={:<4} rescued={:<4} ignored={}",
                s.ok, s.changed, s.unreachable, s.failed, s.skipped, s.rescued, s.ignored
            ));
        }
        self.line("");
    }
}

fn label(item: &Value) -> String {
    match item {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

fn compact(m: &Map<String, Value>) -> String {
    serde_json::to_string(m).unwrap_or_default()
}

fn pretty(m: &Map<String, Value>) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    if serde::Serialize::serialize(m, &mut ser).is_err() {
        return compact(m);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// A unified diff of before/after as `--diff` prints it.
pub fn render_diff(d: &Diff) -> String {
    let diff = similar::TextDiff::from_lines(&d.before, &d.after);
    diff.unified_diff()
        .header(
            &format!("before: {}", d.before_header),
            &format!("after: {}", d.after_header),
        )
        .to_string()
}
