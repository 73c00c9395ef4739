//! `ansible-inventory` output: `--list` JSON, `--graph [--vars]` text, `--host` JSON.

use std::collections::HashSet;

use anyhow::bail;
use serde_json::{json, Map, Value};

use super::Inventory;

/// `ansible-inventory --list` for every host.
pub fn list_json(inv: &Inventory) -> anyhow::Result<Value> {
    list_json_for(inv, &inv.hosts())
}

/// `ansible-inventory --list` restricted to `available` hosts (what `--limit` leaves).
pub fn list_json_for(inv: &Inventory, available: &[String]) -> anyhow::Result<Value> {
    let available: HashSet<&str> = available.iter().map(String::as_str).collect();
    let mut out = Map::new();
    let mut seen: HashSet<String> = HashSet::new();
    format_group(inv, "all", &available, &mut seen, &mut out);
    let mut hostvars = Map::new();
    for host in inv.hosts() {
        if !available.contains(host.as_str()) {
            continue;
        }
        let vars = inv.vars_for_host(&host, None)?;
        if !vars.is_empty() {
            hostvars.insert(host, Value::Object(vars));
        }
    }
    out.insert(
        "_meta".into(),
        json!({"hostvars": hostvars, "profile": "inventory_legacy"}),
    );
    Ok(Value::Object(out))
}

fn format_group(
    inv: &Inventory,
    name: &str,
    available: &HashSet<&str>,
    seen: &mut HashSet<String>,
    out: &mut Map<String, Value>,
) {
    let Some(group) = inv.group(name) else {
        return;
    };
    let mut entry = Map::new();
    let mut nested = Map::new();
    if name != "all" {
        let hosts: Vec<Value> = group
            .hosts
            .iter()
            .filter(|h| available.contains(h.as_str()))
            .map(|h| Value::String(h.clone()))
            .collect();
        if !hosts.is_empty() {
            entry.insert("hosts".into(), Value::Array(hosts));
        }
    }
    let mut children = Vec::new();
    for child in &group.children {
        children.push(Value::String(child.clone()));
        if seen.insert(child.clone()) {
            format_group(inv, child, available, seen, &mut nested);
        }
    }
    if !children.is_empty() {
        entry.insert("children".into(), Value::Array(children));
    }
    if !entry.is_empty() {
        out.insert(name.to_owned(), Value::Object(entry));
    }
    for (k, v) in nested {
        out.insert(k, v);
    }
}

/// `ansible-inventory --host HOST`: the host's merged vars.
pub fn host_json(inv: &Inventory, host: &str) -> anyhow::Result<Value> {
    let hosts = inv.select(host)?;
    if hosts.len() != 1 {
        bail!("You must pass a single valid host to --host parameter");
    }
    Ok(Value::Object(inv.vars_for_host(&hosts[0], None)?))
}

/// `ansible-inventory --graph [GROUP] [--vars]`.
pub fn graph(inv: &Inventory, group: Option<&str>, with_vars: bool) -> anyhow::Result<String> {
    let start = group.unwrap_or("all");
    if inv.group(start).is_none() {
        bail!("Pattern must be valid group name when using --graph");
    }
    let mut lines = Vec::new();
    graph_group(inv, start, 0, with_vars, &mut lines)?;
    Ok(lines.join("\n"))
}

fn graph_name(name: &str, depth: usize) -> String {
    if depth == 0 {
        name.to_owned()
    } else {
        format!("{}--{name}", "  |".repeat(depth))
    }
}

fn show_vars(vars: &Map<String, Value>, depth: usize, lines: &mut Vec<String>) {
    let mut keys: Vec<&String> = vars.keys().collect();
    keys.sort();
    for k in keys {
        lines.push(graph_name(
            &format!("{{{k} = {}}}", python_str(&vars[k])),
            depth,
        ));
    }
}

fn graph_group(
    inv: &Inventory,
    name: &str,
    depth: usize,
    with_vars: bool,
    lines: &mut Vec<String>,
) -> anyhow::Result<()> {
    let Some(group) = inv.group(name) else {
        return Ok(());
    };
    lines.push(graph_name(&format!("@{name}:"), depth));
    for child in &group.children {
        graph_group(inv, child, depth + 1, with_vars, lines)?;
    }
    if name != "all" {
        for host in &group.hosts {
            lines.push(graph_name(host, depth + 1));
            if with_vars {
                show_vars(&inv.vars_for_host(host, None)?, depth + 2, lines);
            }
        }
    }
    if with_vars {
        let mut vars = inv.group_vars(name)?;
        if group.priority != 1 {
            vars.insert("ansible_group_priority".into(), Value::from(group.priority));
        }
        show_vars(&vars, depth + 1, lines);
    }
    Ok(())
}

/// Python's `str()` of a value (strings bare, containers with `repr` items).
pub fn python_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => python_repr(other),
    }
}

/// Python's `repr()` of a JSON-like value.
pub fn python_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => python_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => python_str_repr(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(python_repr).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", python_str_repr(k), python_repr(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

/// Python's float repr: shortest round-trip digits, exponent form below 1e-4 or from 1e16.
pub fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..16).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    let plain = format!("{f}");
    if plain.contains('.') {
        plain
    } else {
        format!("{plain}.0")
    }
}

fn python_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::new();
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_reprs() {
        assert_eq!(
            python_str(&json!([1, "x", true, null, 1.5])),
            "[1, 'x', True, None, 1.5]"
        );
        assert_eq!(python_str(&json!({"a": "it's"})), "{'a': \"it's\"}");
        assert_eq!(python_float(1e16), "1e+16");
        assert_eq!(python_float(1000.0), "1000.0");
        assert_eq!(python_float(0.00001), "1e-05");
    }
}
