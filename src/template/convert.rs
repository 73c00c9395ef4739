//! Conversions between the JSON value model and minijinja values, and Python-style printing
//! (`str()`, `repr()`, `json.dumps`) so rendered text matches what Ansible prints.

use minijinja::value::{Value, ValueKind};
use serde_json::Value as Json;

/// A JSON value as a minijinja value.
pub(crate) fn to_mj(v: &Json) -> Value {
    match v {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::from(items.iter().map(to_mj).collect::<Vec<_>>()),
        Json::Object(map) => {
            Value::from_pairs(map.iter().map(|(k, x)| (Value::from(k.as_str()), to_mj(x))))
        }
    }
}

/// A minijinja value as JSON. Undefined or failed items inside containers (lazy variables whose
/// template failed) are errors, reported with the reason recorded by the current render.
pub(crate) fn to_json(v: &Value) -> Result<Json, minijinja::Error> {
    Ok(match v.kind() {
        ValueKind::Undefined => {
            let reason = super::context::current_vars().and_then(|vars| vars.last_failure());
            return Err(match reason {
                Some(err) => err.into_mj(),
                None => minijinja::Error::new(
                    minijinja::ErrorKind::UndefinedError,
                    super::error::UNDEFINED_OUTPUT,
                ),
            });
        }
        ValueKind::Invalid => {
            let reason = super::context::current_vars().and_then(|vars| vars.last_failure());
            return Err(match reason {
                Some(err) => err.into_mj(),
                None => {
                    minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, v.to_string())
                }
            });
        }
        ValueKind::None => Json::Null,
        ValueKind::Bool => Json::Bool(v.is_true()),
        ValueKind::Number => {
            if let Ok(i) = i64::try_from(v.clone()) {
                Json::from(i)
            } else if let Ok(u) = u64::try_from(v.clone()) {
                Json::from(u)
            } else {
                let f = f64::try_from(v.clone()).unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Json::Number)
                    .unwrap_or(Json::Null)
            }
        }
        ValueKind::String => Json::String(v.as_str().unwrap_or_default().to_string()),
        ValueKind::Bytes => Json::String(v.to_string()),
        ValueKind::Seq | ValueKind::Iterable => {
            let mut out = Vec::new();
            for item in v.try_iter()? {
                out.push(to_json(&item)?);
            }
            Json::Array(out)
        }
        ValueKind::Map => {
            let mut out = serde_json::Map::new();
            for key in v.try_iter()? {
                let item = v.get_item(&key)?;
                let k = match key.as_str() {
                    Some(s) => s.to_string(),
                    None => py_str(&key),
                };
                out.insert(k, to_json(&item)?);
            }
            Json::Object(out)
        }
        _ => Json::String(v.to_string()),
    })
}

/// Python's `str()` of a value, as Jinja prints it in Ansible (None prints as nothing).
pub(crate) fn py_str(v: &Value) -> String {
    match v.kind() {
        ValueKind::None | ValueKind::Undefined => String::new(),
        ValueKind::String => v.as_str().unwrap_or_default().to_string(),
        _ => py_repr(v),
    }
}

/// Python's `repr()` of a value (`['a', 1]`, `{'k': True}`).
pub(crate) fn py_repr(v: &Value) -> String {
    let mut out = String::new();
    write_repr(v, &mut out);
    out
}

fn write_repr(v: &Value, out: &mut String) {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number => out.push_str(&py_number(v)),
        ValueKind::String => out.push_str(&py_quote(v.as_str().unwrap_or_default())),
        ValueKind::Bytes => out.push_str(&format!("b{}", py_quote(&v.to_string()))),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            if let Ok(iter) = v.try_iter() {
                for (i, item) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_repr(&item, out);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(iter) = v.try_iter() {
                for (i, key) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_repr(&key, out);
                    out.push_str(": ");
                    let item = v.get_item(&key).unwrap_or_default();
                    write_repr(&item, out);
                }
            }
            out.push('}');
        }
        _ => out.push_str(&v.to_string()),
    }
}

/// A number printed like Python prints it (`1.0`, not `1`, for floats).
pub(crate) fn py_number(v: &Value) -> String {
    if v.is_integer() {
        return v.to_string();
    }
    match f64::try_from(v.clone()) {
        Ok(f) => py_float(f),
        Err(_) => v.to_string(),
    }
}

/// A float printed like Python's `repr(float)`.
pub(crate) fn py_float(f: f64) -> String {
    crate::data::python::float(f)
}

/// Python's `repr(str)`: single quotes unless the text holds a single quote and no double quote.
pub(crate) fn py_quote(s: &str) -> String {
    crate::data::python::quote(s)
}

/// Options of Python's `json.dumps` used by `to_json`/`to_nice_json`.
pub(crate) struct JsonStyle {
    pub indent: Option<usize>,
    pub sort_keys: bool,
    pub ensure_ascii: bool,
}

/// `json.dumps(v, ...)` with Python's default separators.
pub(crate) fn py_json(v: &Json, style: &JsonStyle) -> String {
    let mut out = String::new();
    write_json(v, style, 0, &mut out);
    out
}

fn newline(style: &JsonStyle, depth: usize, out: &mut String) {
    if let Some(n) = style.indent {
        out.push('\n');
        out.push_str(&" ".repeat(n * depth));
    }
}

fn write_json(v: &Json, style: &JsonStyle, depth: usize, out: &mut String) {
    let item_sep = if style.indent.is_some() { "," } else { ", " };
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => match (n.is_f64(), n.as_f64()) {
            (true, Some(f)) => out.push_str(&match py_float(f).as_str() {
                "nan" => "NaN".to_string(),
                "inf" => "Infinity".to_string(),
                "-inf" => "-Infinity".to_string(),
                s => s.to_string(),
            }),
            _ => out.push_str(&n.to_string()),
        },
        Json::String(s) => write_json_str(s, style.ensure_ascii, out),
        Json::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(style, depth + 1, out);
                write_json(item, style, depth + 1, out);
            }
            newline(style, depth, out);
            out.push(']');
        }
        Json::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut entries: Vec<(&String, &Json)> = map.iter().collect();
            if style.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(style, depth + 1, out);
                write_json_str(k, style.ensure_ascii, out);
                out.push_str(": ");
                write_json(item, style, depth + 1, out);
            }
            newline(style, depth, out);
            out.push('}');
        }
    }
}

fn write_json_str(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{:04x}", unit));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python truthiness of a JSON value.
pub(crate) fn json_truthy(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64().map(|f| f != 0.0).unwrap_or(true),
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => !a.is_empty(),
        Json::Object(m) => !m.is_empty(),
    }
}

/// Ansible's `bool` conversion of a value (`yes`, `on`, `1`, `true` are true).
pub(crate) fn ansible_bool(v: &Value) -> bool {
    match v.kind() {
        ValueKind::Bool => v.is_true(),
        ValueKind::String => matches!(
            v.as_str()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
                .as_str(),
            "yes" | "on" | "1" | "true" | "y" | "t"
        ),
        ValueKind::Number => f64::try_from(v.clone()).map(|f| f == 1.0).unwrap_or(false),
        _ => false,
    }
}
