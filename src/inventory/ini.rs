//! INI inventories as Ansible's `ini` plugin reads them: `[group]`, `[group:vars]`,
//! `[group:children]` sections, shlex-split host lines with `host[:port]` and `k=v` vars.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::{literal, range, Inventory};
use crate::data::{SourceError, SourcePos};

/// What the current section holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Hosts,
    Vars,
    Children,
}

/// A section or child group named before its group exists.
struct Pending {
    line: usize,
    state: State,
    parents: Vec<String>,
}

/// Parses INI inventory `text` from `file` into `inv`.
pub fn parse(inv: &mut Inventory, text: &str, file: &Path) -> anyhow::Result<()> {
    let err = |line: usize, col: usize, msg: String| -> anyhow::Error {
        SourceError::new(file, Some(text), SourcePos { line, col }, msg).into()
    };
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut pending_order: Vec<String> = Vec::new();
    let mut group = "ungrouped".to_owned();
    let mut state = State::Hosts;
    for (index, raw) in text.lines().enumerate() {
        let lineno = index + 1;
        let line = raw.trim();
        let col = raw.len() - raw.trim_start().len() + 1;
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some((name, kind)) = section_header(line) {
            let new_state = match kind.as_deref() {
                None | Some("hosts") => State::Hosts,
                Some("vars") => State::Vars,
                Some("children") => State::Children,
                Some(other) => {
                    return Err(err(
                        lineno,
                        col,
                        format!("Section [{name}:{other}] has unknown type: {other}"),
                    ))
                }
            };
            group = name;
            state = new_state;
            if !inv.has_group(&group) {
                if state == State::Vars && !pending.contains_key(&group) {
                    pending.insert(
                        group.clone(),
                        Pending {
                            line: lineno,
                            state,
                            parents: Vec::new(),
                        },
                    );
                    pending_order.push(group.clone());
                }
                inv.add_group(&group);
            }
            if state != State::Vars {
                if let Some(decl) = pending.get(&group) {
                    match decl.state {
                        State::Children => add_pending_children(inv, &group, &mut pending)
                            .map_err(|e| err(lineno, col, e.to_string()))?,
                        _ => {
                            pending.remove(&group);
                        }
                    }
                }
            }
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            return Err(err(
                lineno,
                col,
                format!(
                    "Invalid section entry: '{line}'. Please make sure that there are no spaces in the section entry, and that there are no other invalid characters"
                ),
            ));
        }
        match state {
            State::Hosts => {
                let tokens = shlex_split(line).map_err(|e| {
                    err(
                        lineno,
                        col,
                        format!("Error parsing host definition '{line}': {e}"),
                    )
                })?;
                let Some(first) = tokens.first() else {
                    continue;
                };
                let (hosts, port) = expand_host_pattern(first).map_err(|e| err(lineno, col, e))?;
                let mut vars = Vec::new();
                for token in &tokens[1..] {
                    let Some((k, v)) = token.split_once('=') else {
                        let at = raw.find(token.as_str()).map_or(col, |i| i + 1);
                        return Err(err(
                            lineno,
                            at,
                            format!("Expected key=value host variable assignment, got: {token}"),
                        ));
                    };
                    vars.push((k.to_owned(), literal::parse_value(v)));
                }
                for host in hosts {
                    inv.add_host(&host, Some(&group), port)
                        .map_err(|e| err(lineno, col, e.to_string()))?;
                    for (k, v) in &vars {
                        inv.set_variable(&host, k, v.clone())
                            .map_err(|e| err(lineno, col, e.to_string()))?;
                    }
                }
            }
            State::Vars => {
                let Some((k, v)) = line.split_once('=') else {
                    return Err(err(lineno, col, format!("Expected key=value, got: {line}")));
                };
                let value: Value = literal::parse_value(v.trim());
                inv.set_variable(&group, k.trim(), value)
                    .map_err(|e| err(lineno, col, e.to_string()))?;
            }
            State::Children => {
                let Some(child) = group_name_line(line) else {
                    return Err(err(
                        lineno,
                        col,
                        format!("Expected group name, got: {line}"),
                    ));
                };
                if inv.has_group(&child) {
                    inv.add_child(&group, &child)
                        .map_err(|e| err(lineno, col, e.to_string()))?;
                } else if let Some(decl) = pending.get_mut(&child) {
                    decl.parents.push(group.clone());
                } else {
                    pending.insert(
                        child.clone(),
                        Pending {
                            line: lineno,
                            state: State::Children,
                            parents: vec![group.clone()],
                        },
                    );
                    pending_order.push(child);
                }
            }
        }
    }
    for name in pending_order {
        let Some(decl) = pending.get(&name) else {
            continue;
        };
        let raw = text.lines().nth(decl.line - 1).unwrap_or("");
        let col = raw.len() - raw.trim_start().len() + 1;
        let message = match decl.state {
            State::Vars => format!("Section [{name}:vars] not valid for undefined group '{name}'."),
            _ => format!(
                "Section [{}:children] includes undefined group '{name}'.",
                decl.parents.last().map(String::as_str).unwrap_or("")
            ),
        };
        return Err(err(decl.line, col, message));
    }
    Ok(())
}

fn add_pending_children(
    inv: &mut Inventory,
    group: &str,
    pending: &mut HashMap<String, Pending>,
) -> anyhow::Result<()> {
    let parents = pending
        .get(group)
        .map(|d| d.parents.clone())
        .unwrap_or_default();
    for parent in parents {
        inv.add_child(&parent, group)?;
        if pending
            .get(&parent)
            .is_some_and(|d| d.state == State::Children)
        {
            add_pending_children(inv, &parent, pending)?;
        }
    }
    pending.remove(group);
    Ok(())
}

/// `[name]` or `[name:kind]` followed by optional blanks and `# comment`.
fn section_header(line: &str) -> Option<(String, Option<String>)> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$").expect("static regex")
    });
    let caps = re.captures(line)?;
    Some((
        caps[1].to_owned(),
        caps.get(2).map(|m| m.as_str().to_owned()),
    ))
}

/// A `[g:children]` line: one group name, optional `# comment`.
fn group_name_line(line: &str) -> Option<String> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re =
        RE.get_or_init(|| regex::Regex::new(r"^([^:\]\s]+)\s*(?:#.*)?$").expect("static regex"));
    re.captures(line).map(|c| c[1].to_owned())
}

/// Splits `host[:port]` / `[v6]:port`; unparseable text is a host name without port.
pub fn split_host_port(pattern: &str) -> (String, Option<u16>) {
    static BRACKETED: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    static HOSTPORT: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let bracketed =
        BRACKETED.get_or_init(|| regex::Regex::new(r"^\[(.+)\]:([0-9]+)$").expect("static regex"));
    let hostport = HOSTPORT.get_or_init(|| {
        regex::Regex::new(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$").expect("static regex")
    });
    let mut address = pattern.to_owned();
    let mut port = None;
    for re in [bracketed, hostport] {
        if let Some(c) = re.captures(&address.clone()) {
            address = c[1].to_owned();
            port = c[2].parse::<u16>().ok();
        }
    }
    if port.is_some() && valid_address(&address) {
        (address, port)
    } else {
        // Not a recognisable address: Ansible keeps the whole text as the host name.
        (pattern.to_owned(), None)
    }
}

/// Rough equivalent of Ansible's address check (hostname labels, IPv4, IPv6 with ranges).
fn valid_address(address: &str) -> bool {
    static HOSTNAME: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    static IPV6: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let range = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]";
    let hostname = HOSTNAME.get_or_init(|| {
        let label = format!(r"(?:\w|{range})(?:[\w-]|{range})*");
        regex::Regex::new(&format!(r"(?i)^{label}(?:\.{label})*$")).expect("static regex")
    });
    let ipv6 = IPV6.get_or_init(|| {
        regex::Regex::new(r"(?i)^[0-9a-f:.\[\]]*:[0-9a-f:.\[\]]*$").expect("static regex")
    });
    let label_ok = address
        .split('.')
        .all(|l| !(l.ends_with('-') || l.ends_with('_')));
    (hostname.is_match(address) && label_ok) || ipv6.is_match(address)
}

/// Expands a host token into host names (ranges) and its port.
pub fn expand_host_pattern(token: &str) -> Result<(Vec<String>, Option<u16>), String> {
    let (name, port) = split_host_port(token);
    if token.trim().ends_with(':') && port.is_none() {
        return Err(format!(
            "Invalid host pattern '{token}' supplied, ending in ':' is not allowed, this character is reserved to provide a port."
        ));
    }
    let hosts = if range::has_range(&name) {
        range::expand(&name)?
    } else {
        vec![name]
    };
    if hosts.iter().any(|h| h.trim() == "---") {
        return Err(format!(
            "Invalid host pattern '{token}' supplied, '---' is normally a sign this is a YAML file."
        ));
    }
    Ok((hosts, port))
}

/// Python's `shlex.split(line, comments=True)` (POSIX mode).
pub fn shlex_split(line: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut token = String::new();
    let mut in_token = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                if in_token {
                    tokens.push(std::mem::take(&mut token));
                    in_token = false;
                }
            }
            '#' => break,
            '\\' => {
                let Some(next) = chars.next() else {
                    return Err("No escaped character".into());
                };
                token.push(next);
                in_token = true;
            }
            '\'' => {
                in_token = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => token.push(ch),
                        None => return Err("No closing quotation".into()),
                    }
                }
            }
            '"' => {
                in_token = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\')) => token.push(ch),
                            Some(ch) => {
                                token.push('\\');
                                token.push(ch);
                            }
                            None => return Err("No closing quotation".into()),
                        },
                        Some(ch) => token.push(ch),
                        None => return Err("No closing quotation".into()),
                    }
                }
            }
            other => {
                token.push(other);
                in_token = true;
            }
        }
    }
    if in_token {
        tokens.push(token);
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shlex_like_python() {
        assert_eq!(
            shlex_split("h a=\"x y\" b='q' c=d#e f").unwrap(),
            ["h", "a=x y", "b=q", "c=d"]
        );
        assert_eq!(
            shlex_split(r#"h a="\"q\"" b=x\ y"#).unwrap(),
            ["h", "a=\"q\"", "b=x y"]
        );
        assert!(shlex_split("h a='x").is_err());
    }

    #[test]
    fn host_ports() {
        assert_eq!(split_host_port("web:2222"), ("web".into(), Some(2222)));
        assert_eq!(split_host_port("[::1]:442"), ("::1".into(), Some(442)));
        assert_eq!(split_host_port("::1"), ("::1".into(), None));
        assert_eq!(split_host_port("web[1:3]"), ("web[1:3]".into(), None));
        assert_eq!(
            split_host_port("web[1:3]:22"),
            ("web[1:3]".into(), Some(22))
        );
        assert_eq!(
            split_host_port("10.0.0.1:22"),
            ("10.0.0.1".into(), Some(22))
        );
    }

    #[test]
    fn bad_header_is_located() {
        let mut inv = Inventory::new();
        let err = parse(&mut inv, "h1\n\n  [bad group]\n", Path::new("inv")).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("inv:3:3: Invalid section entry"), "{text}");
        let err = parse(&mut inv, "[g:kids]\n", Path::new("inv")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("inv:1:1: Section [g:kids] has unknown type"),
            "{err}"
        );
    }
}
