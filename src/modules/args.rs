//! Module arguments: typed access to the (already templated) argument map, and free-form
//! `k=v` parsing (`copy: src=a dest=b`, `command: ls chdir=/tmp`).

use anyhow::{anyhow, bail, Result};
use serde_json::{Map, Value};

/// The arguments given to one module invocation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Args(pub Map<String, Value>);

/// The key under which free-form text is stored (as Ansible's `_raw_params`).
pub const RAW: &str = "_raw_params";

impl Args {
    /// Arguments from a map.
    pub fn new(map: Map<String, Value>) -> Self {
        Args(map)
    }

    /// The raw value of `key`, if present and not null.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// The first present key of `keys` (a parameter and its aliases).
    pub fn get_any(&self, keys: &[&str]) -> Option<&Value> {
        keys.iter().find_map(|k| self.get(k))
    }

    /// `key` as a string (numbers and booleans are converted, as Ansible does for `str` params).
    pub fn str(&self, key: &str) -> Result<Option<String>> {
        self.str_any(&[key])
    }

    /// The first present of `keys` as a string.
    pub fn str_any(&self, keys: &[&str]) -> Result<Option<String>> {
        match self.get_any(keys) {
            None => Ok(None),
            Some(v) => Ok(Some(to_string(v).ok_or_else(|| {
                anyhow!(
                    "argument '{}' must be a string, got {}",
                    keys[0],
                    type_name(v)
                )
            })?)),
        }
    }

    /// A required string argument (`keys[0]` and its aliases).
    pub fn required(&self, keys: &[&str]) -> Result<String> {
        self.str_any(keys)?
            .ok_or_else(|| anyhow!("missing required arguments: {}", keys[0]))
    }

    /// `key` as a boolean with Ansible's spellings (yes/no/true/false/on/off/1/0).
    pub fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => {
                to_bool(v).ok_or_else(|| anyhow!("argument '{key}' is not a valid boolean: {v}"))
            }
        }
    }

    /// An optional boolean (`None` when absent).
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.bool(key, false).map(Some),
        }
    }

    /// `key` as an integer.
    pub fn int(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| anyhow!("argument '{key}' must be an integer")),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| anyhow!("argument '{key}' must be an integer, got '{s}'")),
            Some(v) => bail!("argument '{key}' must be an integer, got {}", type_name(v)),
        }
    }

    /// `key` as a list of strings: a YAML list, or a comma-separated string.
    pub fn list(&self, key: &str) -> Result<Vec<String>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    to_string(v)
                        .ok_or_else(|| anyhow!("argument '{key}' must be a list of strings"))
                })
                .collect(),
            Some(v) => Ok(to_string(v)
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()),
        }
    }

    /// A file mode: octal string (`"0644"`, `"644"`), or an integer as YAML gives it (`0644` → 420).
    pub fn mode(&self, key: &str) -> Result<Option<u32>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .filter(|m| *m <= 0o7777)
                .map(|m| Some(m as u32))
                .ok_or_else(|| anyhow!("argument '{key}' is not a valid mode: {n}")),
            Some(Value::String(s)) => u32::from_str_radix(s.trim().trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .map(Some)
                .ok_or_else(|| anyhow!("argument '{key}' is not a valid octal mode: '{s}' (symbolic modes are not supported)")),
            Some(v) => bail!("argument '{key}' is not a valid mode: {v}"),
        }
    }

    /// `key` as one of `choices` (or `default`).
    pub fn choice(&self, key: &str, choices: &[&str], default: &str) -> Result<String> {
        let value = self.str(key)?.unwrap_or_else(|| default.to_owned());
        if choices.contains(&value.as_str()) {
            Ok(value)
        } else {
            bail!(
                "value of {key} must be one of: {}, got: {value}",
                choices.join(", ")
            )
        }
    }
}

/// Scalar → string as Ansible converts `str` parameters.
pub fn to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_owned()),
        _ => None,
    }
}

/// Ansible's boolean spellings.
pub fn to_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "yes" | "on" | "1" | "true" | "y" | "t" => Some(true),
            "no" | "off" | "0" | "false" | "n" | "f" | "" => Some(false),
            _ => None,
        },
        Value::Null => Some(false),
        _ => None,
    }
}

/// A JSON type name for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Splits free-form module text into `k=v` pairs and the remaining raw text.
///
/// With `only` given (command/shell), only those keys are taken out of the text; everything else
/// stays in `_raw_params`. Otherwise every `k=v` token becomes an argument.
pub fn parse_free_form(text: &str, only: Option<&[&str]>) -> Result<Map<String, Value>> {
    let mut map = Map::new();
    let mut raw = Vec::new();
    for token in split_preserving_quotes(text)? {
        let kv = token.split_once('=').filter(|(k, _)| {
            !k.is_empty()
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && only.is_none_or(|keys| keys.contains(k))
        });
        match kv {
            Some((k, v)) => {
                map.insert(k.to_owned(), Value::String(unquote(v)));
            }
            None => raw.push(token),
        }
    }
    if !raw.is_empty() {
        map.insert(RAW.to_owned(), Value::String(raw.join(" ")));
    }
    Ok(map)
}

/// Splits on unquoted whitespace, keeping quotes (so `_raw_params` is passed to the shell unchanged).
fn split_preserving_quotes(text: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    // Inside `{{ }}`, `{% %}` or `{# #}` nothing splits and quotes belong to the template.
    let mut jinja = 0usize;
    let mut prev = '\0';
    for c in text.chars() {
        let pair = [prev, c];
        prev = c;
        if matches!(pair, ['{', '{'] | ['{', '%'] | ['{', '#']) {
            jinja += 1;
            cur.push(c);
            prev = '\0';
            continue;
        }
        if jinja > 0 {
            if matches!(pair, ['}', '}'] | ['%', '}'] | ['#', '}']) {
                jinja -= 1;
                prev = '\0';
            }
            cur.push(c);
            continue;
        }
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match (c, quote) {
            ('\\', _) => {
                cur.push(c);
                escaped = true;
            }
            ('"' | '\'', None) => {
                quote = Some(c);
                cur.push(c);
            }
            (c2, Some(q)) if c2 == q => {
                quote = None;
                cur.push(c);
            }
            (c2, None) if c2.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if quote.is_some() {
        bail!("unbalanced quotes in: {text}");
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Like Ansible's `parse_kv`: strips one pair of matching outer quotes, then decodes Python
/// escape sequences (`\n`, `\t`, `\\`, `\'`, `\"`, `\xHH`, `\uHHHH`, octal).
fn unquote(v: &str) -> String {
    let inner = match (v.chars().next(), v.chars().last()) {
        (Some(a), Some(b)) if v.len() >= 2 && a == b && (a == '"' || a == '\'') => {
            &v[1..v.len() - 1]
        }
        _ => v,
    };
    decode_escapes(inner)
}

fn decode_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let hex = |chars: &mut std::iter::Peekable<std::str::Chars>, n: usize| -> Option<char> {
            let digits: String = (0..n).filter_map(|_| chars.next()).collect();
            u32::from_str_radix(&digits, 16)
                .ok()
                .and_then(char::from_u32)
        };
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('a') => out.push('\u{7}'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some(q @ ('\\' | '\'' | '"')) => out.push(q),
            Some('x') => out.extend(hex(&mut chars, 2)),
            Some('u') => out.extend(hex(&mut chars, 4)),
            Some('U') => out.extend(hex(&mut chars, 8)),
            Some(d @ '0'..='7') => {
                let mut digits = d.to_string();
                while digits.len() < 3 && chars.peek().is_some_and(|c| ('0'..='7').contains(c)) {
                    digits.extend(chars.next());
                }
                out.extend(
                    u32::from_str_radix(&digits, 8)
                        .ok()
                        .and_then(char::from_u32),
                );
            }
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_form_for_command_keeps_other_tokens() {
        let m = parse_free_form("echo a=b 'x y' chdir=/tmp", Some(&["chdir", "creates"])).unwrap();
        assert_eq!(m["chdir"], "/tmp");
        assert_eq!(m[RAW], "echo a=b 'x y'");
    }

    #[test]
    fn free_form_kv_for_other_modules() {
        let m = parse_free_form("src=a.txt dest=\"/tmp/b c\" mode=0644", None).unwrap();
        assert_eq!(m["dest"], "/tmp/b c");
        assert_eq!(m["mode"], "0644");
        assert!(!m.contains_key(RAW));
    }

    #[test]
    fn free_form_keeps_templates_whole() {
        let m = parse_free_form(
            "path={{ workdir }}/{{ run }} content=\"{{ 'a b' }} c\" state=directory",
            None,
        )
        .unwrap();
        assert_eq!(m["path"], "{{ workdir }}/{{ run }}");
        assert_eq!(m["content"], "{{ 'a b' }} c");
        assert_eq!(m["state"], "directory");
    }

    #[test]
    fn free_form_values_decode_escapes_like_ansible() {
        let m = parse_free_form(r#"a="x\ny" b=p\\nq c='it''s'"#, None).unwrap();
        assert_eq!(m["a"], "x\ny");
        assert_eq!(m["b"], "p\\nq");
    }

    #[test]
    fn modes() {
        let a = Args::new(
            serde_json::json!({"a": "0644", "b": 420, "c": "u+x"})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(a.mode("a").unwrap(), Some(0o644));
        assert_eq!(a.mode("b").unwrap(), Some(0o644));
        assert!(a.mode("c").is_err());
    }
}
