//! Build progress on stderr: an indicatif spinner with the current step and detail on a TTY,
//! plain `==> step` lines otherwise; records each step's wall time.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::StepTiming;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// Spinner when stderr is a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Plain step lines.
    Plain,
    /// Nothing (timings are still recorded).
    Quiet,
}

/// The running progress display of one build.
pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    current: Option<(String, Instant)>,
    steps: Vec<StepTiming>,
}

impl Progress {
    /// Starts a display in `mode`.
    pub fn new(mode: ProgressMode) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let (bar, plain) = match mode {
            ProgressMode::Auto if tty => (Some(spinner()), false),
            ProgressMode::Auto | ProgressMode::Plain => (None, true),
            ProgressMode::Quiet => (None, false),
        };
        Progress {
            bar,
            plain,
            current: None,
            steps: Vec::new(),
        }
    }

    /// Ends the current step (recording its time) and starts `name`.
    pub fn step(&mut self, name: &str) {
        self.end_step();
        self.current = Some((name.to_string(), Instant::now()));
        if let Some(bar) = &self.bar {
            bar.set_prefix(name.to_string());
            bar.set_message("");
        } else if self.plain {
            eprintln!("==> {name}");
        }
    }

    /// True when a spinner redraws in place (frequent details are cheap).
    pub fn is_live(&self) -> bool {
        self.bar.is_some()
    }

    /// Detail of the current step (the spinner's message, or an indented line).
    pub fn detail(&self, msg: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg.to_string());
        } else if self.plain {
            eprintln!("    {msg}");
        }
    }

    fn end_step(&mut self) {
        if let Some((name, t)) = self.current.take() {
            let elapsed = t.elapsed();
            if let Some(bar) = &self.bar {
                bar.println(format!("  ✓ {name} ({})", format_duration(elapsed)));
            }
            self.steps.push(StepTiming { name, elapsed });
        }
    }

    /// Stops the display and returns the step timings (the failed step included when `ok` is false).
    pub fn finish(mut self, ok: bool) -> Vec<StepTiming> {
        if ok {
            self.end_step();
        } else if let Some((name, t)) = self.current.take() {
            if let Some(bar) = &self.bar {
                bar.println(format!("  ✗ {name} ({})", format_duration(t.elapsed())));
            } else if self.plain {
                eprintln!("==> {name} failed after {}", format_duration(t.elapsed()));
            }
            self.steps.push(StepTiming {
                name,
                elapsed: t.elapsed(),
            });
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        std::mem::take(&mut self.steps)
    }
}

fn spinner() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg} [{elapsed}]")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// `1m32.4s`, `12.3s`, `0.4s`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 {
        format!("{}m{:04.1}s", (s / 60.0).floor() as u64, s % 60.0)
    } else {
        format!("{s:.1}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(format_duration(Duration::from_millis(400)), "0.4s");
        assert_eq!(format_duration(Duration::from_millis(92_400)), "1m32.4s");
        assert_eq!(format_duration(Duration::from_millis(65_000)), "1m05.0s");
    }

    #[test]
    fn steps_are_timed_in_order() {
        let mut p = Progress::new(ProgressMode::Quiet);
        p.step("a");
        p.step("b");
        let steps = p.finish(true);
        let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }
}
