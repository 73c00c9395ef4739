//! Host range expansion as Ansible's `expand_hostname_range`: `web[01:10]`, `[a:f]`,
//! `[1:9:2]` steps and several ranges in one name.

const LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// True when the name holds a range to expand (Ansible only looks for `[`).
pub fn has_range(name: &str) -> bool {
    name.contains('[')
}

/// Expands every `[beg:end(:step)]` in `name`, left to right, into host names.
pub fn expand(name: &str) -> Result<Vec<String>, String> {
    let Some(open) = name.find('[') else {
        return Ok(vec![name.to_owned()]);
    };
    let head = &name[..open];
    let rest = &name[open + 1..];
    let Some(close) = rest.find(']') else {
        return Err(format!("host range in {name:?} is missing its closing ']'"));
    };
    let range = &rest[..close];
    let tail = &rest[close + 1..];
    let bounds: Vec<&str> = range.split(':').collect();
    if bounds.len() != 2 && bounds.len() != 3 {
        return Err("host range must be begin:end or begin:end:step".into());
    }
    let beg = if bounds[0].is_empty() { "0" } else { bounds[0] };
    let end = bounds[1];
    let step_text = bounds.get(2).copied().unwrap_or("1");
    if end.is_empty() {
        return Err("host range must specify end value".into());
    }
    let pad = if beg.starts_with('0') && beg.len() > 1 {
        if beg.len() != end.len() {
            return Err("host range must specify equal-length begin and end formats".into());
        }
        beg.len()
    } else {
        0
    };
    let step: i64 = step_text
        .trim()
        .parse()
        .map_err(|_| format!("invalid step {step_text:?} in host range [{range}]"))?;
    let items: Vec<String> = match (LETTERS.find(beg), LETTERS.find(end)) {
        (Some(b), Some(e)) => {
            if b > e {
                return Err("host range must have begin <= end".into());
            }
            if step <= 0 {
                return Err(format!("invalid step {step} in host range [{range}]"));
            }
            LETTERS[b..=e]
                .chars()
                .step_by(step as usize)
                .map(String::from)
                .collect()
        }
        _ => {
            let b: i64 = beg
                .trim()
                .parse()
                .map_err(|_| format!("invalid begin {beg:?} in host range [{range}]"))?;
            let e: i64 = end
                .trim()
                .parse()
                .map_err(|_| format!("invalid end {end:?} in host range [{range}]"))?;
            if step == 0 {
                return Err("host range step must not be zero".into());
            }
            let mut out = Vec::new();
            let mut i = b;
            while (step > 0 && i <= e) || (step < 0 && i > e + 1) {
                out.push(format!("{i:0pad$}"));
                i += step;
            }
            out
        }
    };
    let mut hosts = Vec::new();
    for item in items {
        let host = format!("{head}{item}{tail}");
        if has_range(&host) {
            hosts.extend(expand(&host)?);
        } else {
            hosts.push(host);
        }
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_padded_alpha_step_and_multiple() {
        assert_eq!(expand("web[1:3]").unwrap(), ["web1", "web2", "web3"]);
        assert_eq!(
            expand("db[08:10].x").unwrap(),
            ["db08.x", "db09.x", "db10.x"]
        );
        assert_eq!(expand("n[a:c]").unwrap(), ["na", "nb", "nc"]);
        assert_eq!(expand("s[0:6:3]").unwrap(), ["s0", "s3", "s6"]);
        assert_eq!(
            expand("r[1:2]-[a:b]").unwrap(),
            ["r1-a", "r1-b", "r2-a", "r2-b"]
        );
        assert_eq!(expand("x[:2]").unwrap(), ["x0", "x1", "x2"]);
        assert!(expand("x[01:100]").is_err());
        assert!(expand("x[1]").is_err());
    }
}
