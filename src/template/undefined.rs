//! Names the culprit of an undefined error the way Ansible does: `'foo' is undefined` for a
//! missing variable, `object of type 'dict' has no attribute 'bar'` for a missing key.

use std::sync::Arc;

use minijinja::value::{Object, Value, ValueKind};

use super::context::LazyVars;
use super::error::{TemplateError, TemplateErrorKind};

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "is",
    "if",
    "else",
    "true",
    "false",
    "none",
    "True",
    "False",
    "None",
    "loop",
    "range",
    "lookup",
    "query",
    "q",
    "dict",
    "namespace",
    "omit",
    "vars",
];

/// A variable reference in an expression: root name plus attribute/item path.
struct PathRef {
    root: String,
    segs: Vec<Value>,
}

/// Scans `expr` for variable references (skipping strings, filter/test names and attributes).
fn references(expr: &str) -> Vec<PathRef> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut prev_sig: Option<char> = None;
    let mut prev_word = String::new();
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            prev_sig = Some(c);
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let is_ref = !matches!(prev_sig, Some('.') | Some('|'))
                && prev_word != "is"
                && !KEYWORDS.contains(&word.as_str())
                && chars.get(i) != Some(&'(')
                && chars.get(i) != Some(&'=');
            let mut segs = Vec::new();
            // Follow `.attr` and `[const]`.
            loop {
                if chars.get(i) == Some(&'.')
                    && chars
                        .get(i + 1)
                        .is_some_and(|c| c.is_alphanumeric() || *c == '_')
                {
                    let s = i + 1;
                    i += 1;
                    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                        i += 1;
                    }
                    let name: String = chars[s..i].iter().collect();
                    if chars.get(i) == Some(&'(') {
                        break;
                    }
                    segs.push(Value::from(name));
                } else if chars.get(i) == Some(&'[') {
                    let Some(end) = chars[i..].iter().position(|c| *c == ']') else {
                        break;
                    };
                    let inner: String = chars[i + 1..i + end].iter().collect();
                    let inner = inner.trim();
                    let key = if let Ok(n) = inner.parse::<i64>() {
                        Value::from(n)
                    } else if inner.len() >= 2
                        && (inner.starts_with('\'') && inner.ends_with('\'')
                            || inner.starts_with('"') && inner.ends_with('"'))
                    {
                        Value::from(&inner[1..inner.len() - 1])
                    } else {
                        break;
                    };
                    segs.push(key);
                    i += end + 1;
                } else {
                    break;
                }
            }
            if is_ref {
                out.push(PathRef {
                    root: word.clone(),
                    segs,
                });
            }
            prev_word = word;
            prev_sig = Some('a');
            continue;
        }
        if !c.is_whitespace() {
            prev_sig = Some(c);
            prev_word.clear();
        }
        i += 1;
    }
    out
}

/// Whether the template itself binds `name` (loop variable, `set`, macro argument…).
fn bound_in_template(source: &str, name: &str) -> bool {
    let pattern = format!(r"\b(for|set|macro|with)\b[^%]*\b{}\b", regex::escape(name));
    regex::Regex::new(&pattern).is_ok_and(|re| re.is_match(source))
}

fn type_name(v: &Value) -> &'static str {
    match v.kind() {
        ValueKind::Map => "dict",
        ValueKind::Seq => "list",
        ValueKind::String => "str",
        ValueKind::Bool => "bool",
        ValueKind::None => "NoneType",
        ValueKind::Number if v.is_integer() => "int",
        ValueKind::Number => "float",
        _ => "object",
    }
}

/// Explains which part of `expr` is undefined, if it can be found.
pub(crate) fn describe(vars: &Arc<LazyVars>, expr: &str, source: &str) -> Option<TemplateError> {
    for r in references(expr) {
        let Some(mut cur) = vars.get_value(&Value::from(r.root.as_str())) else {
            if bound_in_template(source, &r.root) {
                continue;
            }
            if let Some(reason) = vars.undefined_reason(&r.root) {
                return Some(reason);
            }
            return Some(TemplateError::new(
                TemplateErrorKind::Undefined,
                format!("'{}' is undefined", r.root),
            ));
        };
        if cur.is_undefined() {
            continue;
        }
        let mut path = r.root.clone();
        for seg in &r.segs {
            let next = cur.get_item(seg).unwrap_or_default();
            path = match seg.as_str() {
                Some(s) => format!("{path}.{s}"),
                None => format!("{path}.{seg}"),
            };
            if next.is_undefined() {
                if let Some(reason) = vars.undefined_reason(&path) {
                    return Some(reason);
                }
                let seg_text = match seg.as_str() {
                    Some(s) => format!("'{s}'"),
                    None => seg.to_string(),
                };
                return Some(TemplateError::new(
                    TemplateErrorKind::Undefined,
                    format!(
                        "object of type '{}' has no attribute {}",
                        type_name(&cur),
                        seg_text
                    ),
                ));
            }
            cur = next;
        }
    }
    None
}
