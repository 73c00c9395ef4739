//! YAML for the `to_yaml`/`to_nice_yaml`/`from_yaml` filters: a dumper shaped like PyYAML's
//! (sorted keys, indentless sequences, quoting of ambiguous scalars) and a YAML 1.1 loader.

use serde_json::{Map, Number, Value as Json};
use yaml_rust2::parser::{Event, EventReceiver, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;

/// How `dump` lays out collections.
pub(crate) struct DumpStyle {
    /// Spaces per nesting level.
    pub indent: usize,
    /// Write collections holding only scalars in flow style (`[1, 2]`), like PyYAML's
    /// `default_flow_style=None` (`to_yaml`); otherwise everything is block style.
    pub flow_leaves: bool,
    /// Sort mapping keys (PyYAML's default).
    pub sort_keys: bool,
}

/// Dumps `v` as a YAML document ending in a newline.
pub(crate) fn dump(v: &Json, style: &DumpStyle) -> String {
    let mut out = String::new();
    let indent = style.indent.max(1);
    let style = DumpStyle {
        indent,
        flow_leaves: style.flow_leaves,
        sort_keys: style.sort_keys,
    };
    match v {
        Json::Object(m) if !m.is_empty() && !is_flow(v, &style) => {
            write_map(m, 0, false, &style, &mut out)
        }
        Json::Array(a) if !a.is_empty() && !is_flow(v, &style) => {
            write_seq(a, 0, false, &style, &mut out)
        }
        other => {
            out.push_str(&inline(other, 0, &style));
            out.push('\n');
        }
    }
    out
}

fn is_collection(v: &Json) -> bool {
    matches!(v, Json::Object(_) | Json::Array(_))
}

/// Whether `v` is written on one line: scalars, empty collections, and (flow_leaves) collections of scalars.
fn is_flow(v: &Json, style: &DumpStyle) -> bool {
    match v {
        Json::Object(m) => m.is_empty() || (style.flow_leaves && !m.values().any(is_collection)),
        Json::Array(a) => a.is_empty() || (style.flow_leaves && !a.iter().any(is_collection)),
        _ => true,
    }
}

fn entries<'a>(m: &'a Map<String, Json>, style: &DumpStyle) -> Vec<(&'a String, &'a Json)> {
    let mut e: Vec<_> = m.iter().collect();
    if style.sort_keys {
        e.sort_by(|a, b| a.0.cmp(b.0));
    }
    e
}

/// One-line form of a scalar or flow collection; `ind` is the indentation of continuation lines.
fn inline(v: &Json, ind: usize, style: &DumpStyle) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(b) => if *b { "true" } else { "false" }.into(),
        Json::Number(n) => match (n.is_f64(), n.as_f64()) {
            (true, Some(f)) => {
                if f.is_nan() {
                    ".nan".into()
                } else if f.is_infinite() {
                    if f > 0.0 {
                        ".inf".into()
                    } else {
                        "-.inf".into()
                    }
                } else {
                    super::convert::py_float(f)
                }
            }
            _ => n.to_string(),
        },
        Json::String(s) => scalar(s, ind + style.indent),
        Json::Array(a) => {
            let items: Vec<String> = a.iter().map(|x| inline(x, ind, style)).collect();
            format!("[{}]", items.join(", "))
        }
        Json::Object(m) => {
            let items: Vec<String> = entries(m, style)
                .into_iter()
                .map(|(k, x)| {
                    format!(
                        "{}: {}",
                        scalar(k, ind + style.indent),
                        inline(x, ind, style)
                    )
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

fn write_map(
    m: &Map<String, Json>,
    ind: usize,
    first_inline: bool,
    style: &DumpStyle,
    out: &mut String,
) {
    for (i, (k, v)) in entries(m, style).into_iter().enumerate() {
        if i > 0 || !first_inline {
            out.push_str(&" ".repeat(ind));
        }
        out.push_str(&scalar(k, ind + style.indent));
        out.push(':');
        if is_flow(v, style) {
            out.push(' ');
            out.push_str(&inline(v, ind, style));
            out.push('\n');
        } else {
            out.push('\n');
            match v {
                Json::Array(a) => write_seq(a, ind, false, style, out),
                Json::Object(mm) => write_map(mm, ind + style.indent, false, style, out),
                _ => {}
            }
        }
    }
}

fn write_seq(a: &[Json], ind: usize, first_inline: bool, style: &DumpStyle, out: &mut String) {
    for (i, v) in a.iter().enumerate() {
        if i > 0 || !first_inline {
            out.push_str(&" ".repeat(ind));
        }
        if is_flow(v, style) {
            out.push_str("- ");
            out.push_str(&inline(v, ind, style));
            out.push('\n');
        } else {
            out.push('-');
            out.push_str(&" ".repeat(style.indent.saturating_sub(1).max(1)));
            match v {
                Json::Array(aa) => write_seq(aa, ind + style.indent, true, style, out),
                Json::Object(mm) => write_map(mm, ind + style.indent, true, style, out),
                _ => {}
            }
        }
    }
}

/// A string scalar: plain when that reads back as the same string, else quoted like PyYAML.
fn scalar(s: &str, cont_indent: usize) -> String {
    if s.chars()
        .any(|c| (c < ' ' && c != '\n') || c == '\u{7f}' || c == '\u{feff}')
    {
        return double_quoted(s);
    }
    if is_plain_safe(s) {
        return s.to_string();
    }
    // Single-quoted: quotes doubled, a line break written as an empty line.
    let mut out = String::from("'");
    let pad = " ".repeat(cont_indent);
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\n' => {
                out.push_str("\n\n");
                out.push_str(&pad);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if c < ' ' || c == '\u{7f}' || c == '\u{feff}' => {
                out.push_str(&format!("\\x{:02X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn is_plain_safe(s: &str) -> bool {
    if s.is_empty() || s.trim() != s || s.contains('\n') {
        return false;
    }
    let first = s.chars().next().unwrap_or(' ');
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        // `-foo` and `:foo` are fine when not followed by a space, but PyYAML quotes `-` alone etc.
        let second = s.chars().nth(1);
        let ok = matches!(first, '-' | '?' | ':') && second.is_some_and(|c| c != ' ') && s != "---";
        if !ok {
            return false;
        }
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return false;
    }
    if s.contains(",") && (s.contains('[') || s.contains('{')) {
        return false;
    }
    // Would it read back as something other than a string?
    matches!(resolve_plain(s), Json::String(_)) && !looks_like_timestamp(s)
}

fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
}

/// YAML 1.1 typing of a plain scalar (as PyYAML resolves it).
pub(crate) fn resolve_plain(s: &str) -> Json {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Json::Null,
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" | "y" | "Y" => {
            // PyYAML does not resolve y/Y as booleans.
            if s.eq_ignore_ascii_case("y") {
                return Json::String(s.into());
            }
            return Json::Bool(true);
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Json::Bool(false)
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Json::String(s.into());
        }
        _ => {}
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let clean: String = body.chars().filter(|c| *c != '_').collect();
    let int = if let Some(hex) = clean.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(bin) = clean.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()
    } else if clean.len() > 1 && clean.starts_with('0') && clean.chars().all(|c| c.is_ascii_digit())
    {
        i64::from_str_radix(&clean[1..], 8).ok()
    } else if !clean.is_empty() && clean.chars().all(|c| c.is_ascii_digit()) {
        clean.parse::<i64>().ok()
    } else {
        None
    };
    if let Some(i) = int {
        if !body.is_empty() && body.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            return Json::Number(Number::from(if neg { -i } else { i }));
        }
    }
    let is_float = !clean.is_empty()
        && clean
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '.')
        && clean.contains('.')
        && clean
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        && clean.chars().filter(|c| *c == '.').count() == 1;
    if is_float {
        if let Ok(f) = clean.parse::<f64>() {
            if let Some(n) = Number::from_f64(if neg { -f } else { f }) {
                return Json::Number(n);
            }
        }
    }
    Json::String(s.to_string())
}

/// Builds JSON values from parser events.
#[derive(Default)]
struct Builder {
    docs: Vec<Json>,
    stack: Vec<(Json, Option<String>, usize)>,
    anchors: std::collections::HashMap<usize, Json>,
    error: Option<String>,
}

impl Builder {
    fn push_value(&mut self, v: Json, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, v.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(v),
            Some((Json::Array(a), _, _)) => a.push(v),
            Some((Json::Object(m), key, _)) => match key.take() {
                None => {
                    let k = match v {
                        Json::String(s) => s,
                        Json::Null => "null".into(),
                        other => other.to_string(),
                    };
                    *key = Some(k);
                }
                Some(k) => {
                    if k == "<<" {
                        merge_into(m, v);
                    } else {
                        m.insert(k, v);
                    }
                }
            },
            Some(_) => {}
        }
    }
}

fn merge_into(m: &mut Map<String, Json>, v: Json) {
    let sources = match v {
        Json::Array(items) => items,
        other => vec![other],
    };
    for src in sources {
        if let Json::Object(sm) = src {
            for (k, x) in sm {
                m.entry(k).or_insert(x);
            }
        }
    }
}

fn tagged(value: String, tag: &Tag) -> Json {
    match tag.suffix.as_str() {
        "str" => Json::String(value),
        "int" => value
            .parse::<i64>()
            .map(Json::from)
            .unwrap_or(Json::String(value)),
        "float" => value
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Json::Number)
            .unwrap_or(Json::String(value)),
        "bool" => resolve_plain(&value),
        "null" => Json::Null,
        _ => Json::String(value),
    }
}

impl EventReceiver for Builder {
    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Scalar(value, style, anchor, tag) => {
                let v = match (&tag, style) {
                    (Some(t), _) => tagged(value, t),
                    (None, TScalarStyle::Plain) => resolve_plain(&value),
                    (None, _) => Json::String(value),
                };
                self.push_value(v, anchor);
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push((Json::Array(Vec::new()), None, anchor))
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push((Json::Object(Map::new()), None, anchor))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((v, _, anchor)) = self.stack.pop() {
                    self.push_value(v, anchor);
                }
            }
            Event::Alias(id) => {
                let v = self.anchors.get(&id).cloned().unwrap_or(Json::Null);
                self.push_value(v, 0);
            }
            _ => {}
        }
        if self.error.is_some() {
            self.stack.clear();
        }
    }
}

/// Parses every document in `text` (YAML 1.1 typing, merge keys, anchors).
pub(crate) fn load_all(text: &str) -> Result<Vec<Json>, String> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| e.to_string())?;
    Ok(builder.docs)
}

/// Parses the first document in `text` (null when empty).
pub(crate) fn load(text: &str) -> Result<Json, String> {
    Ok(load_all(text)?.into_iter().next().unwrap_or(Json::Null))
}
