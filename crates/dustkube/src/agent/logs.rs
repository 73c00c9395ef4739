//! The CRI log format the runtime writes for each container
//! (`<RFC 3339 time> <stdout|stderr> <P|F> <message>`, P = partial line): turned back into the
//! container's output as `kubectl logs` shows it.

/// One parsed log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// The runtime's timestamp.
    pub time: &'a str,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// The message ends a line (F) rather than continuing (P).
    pub full: bool,
    /// The text.
    pub message: &'a str,
}

/// Parses one line of a CRI log file (without its newline).
pub fn parse(line: &str) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let message = parts.next().unwrap_or("");
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    let full = !tag.split(':').any(|t| t == "P");
    Some(Record {
        time,
        stream,
        full,
        message,
    })
}

/// Turns complete CRI log lines into output lines (partials joined, `\n` restored), each with
/// the timestamp of its first record.
pub fn render(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(String, String)> = None;
    for line in text.lines() {
        let Some(r) = parse(line) else { continue };
        let entry = pending.get_or_insert_with(|| (r.time.to_string(), String::new()));
        entry.1.push_str(r.message);
        if r.full {
            entry.1.push('\n');
            out.extend(pending.take());
        }
    }
    out.extend(pending);
    out
}

/// The output for `kubectl logs`: the last `tail` lines (all when `None`), with timestamps
/// when asked.
pub fn format(lines: &[(String, String)], tail: Option<usize>, timestamps: bool) -> String {
    let start = tail.map(|n| lines.len().saturating_sub(n)).unwrap_or(0);
    let mut s = String::new();
    for (time, text) in &lines[start..] {
        if timestamps {
            s.push_str(time);
            s.push(' ');
        }
        s.push_str(text);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_join_and_tail() {
        let text = "2024-01-01T00:00:00.1Z stdout F hello\n\
                    2024-01-01T00:00:01.1Z stderr P par\n\
                    2024-01-01T00:00:01.2Z stderr F tial\n\
                    2024-01-01T00:00:02.1Z stdout F \n\
                    2024-01-01T00:00:03.1Z stdout F last words\n";
        let lines = render(text);
        assert_eq!(
            format(&lines, None, false),
            "hello\npartial\n\nlast words\n"
        );
        assert_eq!(format(&lines, Some(2), false), "\nlast words\n");
        assert_eq!(
            format(&lines, Some(1), true),
            "2024-01-01T00:00:03.1Z last words\n"
        );
        assert!(parse("garbage").is_none());
    }
}
