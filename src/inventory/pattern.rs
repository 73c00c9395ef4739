//! Host patterns (`--limit`, play `hosts:`): `a:b` union, `a:&b` intersection, `a:!b`
//! exclusion, shell wildcards, `~regex`, and `group[0:2]` subscripts — Ansible's rules.

use anyhow::{bail, Context};

use super::Inventory;

/// Splits a pattern string on `,` (or, without commas, on `:` outside brackets/IPv6).
pub fn split_pattern(pattern: &str) -> Vec<String> {
    if pattern.contains(',') {
        return pattern
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
    }
    let trimmed = pattern.trim();
    // A bare IPv6 address is one pattern.
    if trimmed.matches(':').count() > 1
        && trimmed
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
    {
        return vec![trimmed.to_owned()];
    }
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for c in trimmed.chars() {
        match c {
            '[' => {
                depth += 1;
                current.push(c);
            }
            ']' => {
                depth = depth.saturating_sub(1);
                current.push(c);
            }
            ':' if depth == 0 => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Hosts selected by `pattern`, in inventory order, without duplicates.
pub fn select(inv: &Inventory, pattern: &str) -> anyhow::Result<Vec<String>> {
    let parts = split_pattern(pattern);
    let mut regular: Vec<&String> = parts
        .iter()
        .filter(|p| !p.starts_with(['&', '!']))
        .collect();
    let and: Vec<&String> = parts.iter().filter(|p| p.starts_with('&')).collect();
    let not: Vec<&String> = parts.iter().filter(|p| p.starts_with('!')).collect();
    let all = "all".to_owned();
    if regular.is_empty() {
        regular.push(&all);
    }
    let mut hosts: Vec<String> = Vec::new();
    for p in regular {
        if inv.host(p).is_some() {
            if !hosts.contains(p) {
                hosts.push(p.clone());
            }
            continue;
        }
        for h in match_one(inv, p)? {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
    }
    for p in and {
        let that = match_one(inv, &p[1..])?;
        hosts.retain(|h| that.contains(h));
    }
    for p in not {
        let that = match_one(inv, &p[1..])?;
        hosts.retain(|h| !that.contains(h));
    }
    Ok(hosts)
}

/// Matches one pattern term (no `&`/`!` prefix) with its optional subscript.
fn match_one(inv: &Inventory, pattern: &str) -> anyhow::Result<Vec<String>> {
    if pattern.is_empty() {
        return Ok(Vec::new());
    }
    let (expr, subscript) = split_subscript(pattern)?;
    let hosts = enumerate(inv, &expr)?;
    let Some((start, end)) = subscript else {
        return Ok(hosts);
    };
    if hosts.is_empty() {
        return Ok(hosts);
    }
    let len = hosts.len() as i64;
    let index = |i: i64| if i < 0 { (len + i).max(0) } else { i.min(len) } as usize;
    match end {
        None => {
            let i = if start < 0 { len + start } else { start };
            if i < 0 || i >= len {
                bail!("No hosts matched the subscripted pattern '{pattern}'");
            }
            Ok(vec![hosts[i as usize].clone()])
        }
        Some(end) => {
            let end = if end == -1 { len - 1 } else { end };
            let (s, e) = (index(start), index(end + 1));
            Ok(if s < e {
                hosts[s..e].to_vec()
            } else {
                Vec::new()
            })
        }
    }
}

type Subscript = Option<(i64, Option<i64>)>;

fn split_subscript(pattern: &str) -> anyhow::Result<(String, Subscript)> {
    if pattern.starts_with('~') {
        return Ok((pattern.to_owned(), None));
    }
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"^(.+)\[(?:(-?[0-9]+)|(-?[0-9]+)([:-])(-?[0-9]+)?)\]$")
            .expect("static regex")
    });
    let Some(c) = re.captures(pattern) else {
        return Ok((pattern.to_owned(), None));
    };
    let base = c[1].to_owned();
    if let Some(idx) = c.get(2) {
        return Ok((base, Some((idx.as_str().parse()?, None))));
    }
    let start: i64 = c[3].parse()?;
    let end: i64 = match c.get(5) {
        Some(e) => e.as_str().parse()?,
        None => -1,
    };
    Ok((base, Some((start, Some(end)))))
}

/// Groups matching the term contribute all their hosts; hosts matching it directly are added too.
fn enumerate(inv: &Inventory, pattern: &str) -> anyhow::Result<Vec<String>> {
    let matcher = compile(pattern)?;
    let mut results: Vec<String> = Vec::new();
    let groups: Vec<String> = inv
        .group_list()
        .into_iter()
        .filter(|g| matcher.is_match(g))
        .collect();
    for g in &groups {
        results.extend(inv.group_hosts(g));
    }
    let special = pattern.starts_with('~') || pattern.contains(['.', '?', '*', '[']);
    if groups.is_empty() || special {
        for h in inv.hosts_in_order() {
            if matcher.is_match(&h) {
                results.push(h);
            }
        }
    }
    let mut unique = Vec::new();
    for h in results {
        if !unique.contains(&h) {
            unique.push(h);
        }
    }
    Ok(unique)
}

/// `~re` is a regex matched at the start; anything else is a shell glob on the whole name.
fn compile(pattern: &str) -> anyhow::Result<regex::Regex> {
    if let Some(re) = pattern.strip_prefix('~') {
        return regex::Regex::new(&format!("^(?:{re})"))
            .with_context(|| format!("invalid regex in host pattern {pattern}"));
    }
    let mut out = String::from("^(?s:");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '[' => {
                let close = chars[i + 1..]
                    .iter()
                    .position(|&c| c == ']')
                    .map(|p| p + i + 1);
                match close {
                    Some(j) if j > i + 1 => {
                        let mut class: String = chars[i + 1..j].iter().collect();
                        if let Some(rest) = class.strip_prefix('!') {
                            class = format!("^{rest}");
                        }
                        out.push('[');
                        out.push_str(&class.replace('\\', "\\\\"));
                        out.push(']');
                        i = j;
                    }
                    _ => out.push_str("\\["),
                }
            }
            c => out.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    out.push_str(")$");
    regex::Regex::new(&out).with_context(|| format!("invalid host pattern {pattern}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv() -> Inventory {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv");
        std::fs::write(
            &path,
            "[web]\nw1\nw2\nw3\n[db]\nd1\nw1\n[prod:children]\nweb\ndb\n",
        )
        .unwrap();
        Inventory::load(&[path]).unwrap()
    }

    #[test]
    fn union_intersection_exclusion() {
        let inv = inv();
        assert_eq!(inv.select("web:db").unwrap(), ["w1", "w2", "w3", "d1"]);
        assert_eq!(inv.select("web:&db").unwrap(), ["w1"]);
        assert_eq!(inv.select("prod:!db").unwrap(), ["w2", "w3"]);
        assert_eq!(inv.select("w*").unwrap(), ["w1", "w2", "w3"]);
        assert_eq!(inv.select("~d\\d").unwrap(), ["d1"]);
        assert_eq!(inv.select("web[0:1]").unwrap(), ["w1", "w2"]);
        assert_eq!(inv.select("web[-1]").unwrap(), ["w3"]);
        assert_eq!(inv.select("d1,w2").unwrap(), ["d1", "w2"]);
        assert_eq!(inv.select("all").unwrap().len(), 4);
        assert!(inv.select("nothing").unwrap().is_empty());
    }
}
