//! YAML loading with Ansible's semantics: YAML 1.1 typing of plain scalars (PyYAML's
//! resolver), anchors, aliases and merge keys, Ansible's `!unsafe`/`!vault` tags, and
//! `file:line:col` errors. Produces `serde_json::Value` plus optional node positions.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::{SourceError, SourcePos};

/// Node positions keyed by JSON pointer (`""` is the document, `"/0/tasks/3"` a nested node);
/// a mapping key's own position is under its value's pointer plus [`KEY_SUFFIX`].
pub type Positions = HashMap<String, SourcePos>;

/// Suffix of the pointer under which a mapping key's position is recorded (`/0/hosts#key`).
pub const KEY_SUFFIX: &str = "#key";

/// Parses the first document of `text` (an empty stream is `null`).
pub fn parse_yaml(text: &str, file: &Path) -> Result<Value, SourceError> {
    parse_yaml_with_positions(text, file).map(|(value, _)| value)
}

/// Parses the first document of `text` and records where every node starts.
pub fn parse_yaml_with_positions(
    text: &str,
    file: &Path,
) -> Result<(Value, Positions), SourceError> {
    let mut sink = EventSink::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(err) = parser.load(&mut sink, false) {
        let mark = err.marker();
        return Err(SourceError::new(
            file,
            Some(text),
            to_pos(mark),
            format!("YAML syntax error: {}", err.info()),
        ));
    }
    let mut builder = Builder {
        events: &sink.events,
        next: 0,
        anchors: HashMap::new(),
        positions: Positions::new(),
        file,
        text,
    };
    let value = builder.document()?;
    Ok((value, builder.positions))
}

/// Parses data the way Ansible's loader does: JSON first (so `1e3` stays a number in JSON
/// files), YAML 1.1 otherwise.
pub fn parse_data(text: &str, file: &Path) -> Result<Value, SourceError> {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => Ok(value),
        Err(_) => parse_yaml(text, file),
    }
}

/// Reads and parses a YAML (or JSON) file.
pub fn load_yaml_file(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(parse_data(&text, path)?)
}

/// Reads a vars file (YAML or JSON) that must hold a mapping; an empty file is an empty map.
pub fn load_vars_file(path: &Path) -> anyhow::Result<Map<String, Value>> {
    match load_yaml_file(path)? {
        Value::Null => Ok(Map::new()),
        Value::Object(map) => Ok(map),
        other => anyhow::bail!(
            "{}: vars file must contain a mapping (dictionary), found {}",
            path.display(),
            kind_name(&other)
        ),
    }
}

fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn to_pos(mark: &Marker) -> SourcePos {
    SourcePos {
        line: mark.line().max(1),
        col: mark.col() + 1,
    }
}

/// Collects the parser's events with their positions.
#[derive(Default)]
struct EventSink {
    events: Vec<(Event, Marker)>,
}

impl MarkedEventReceiver for EventSink {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        self.events.push((ev, mark));
    }
}

/// Turns the event list of one document into a value.
struct Builder<'a> {
    events: &'a [(Event, Marker)],
    next: usize,
    anchors: HashMap<usize, Value>,
    positions: Positions,
    file: &'a Path,
    text: &'a str,
}

/// What a tag asks for.
enum TagKind {
    None,
    Str,
    Int,
    Float,
    Bool,
    Null,
    Map,
    Seq,
    Unsafe,
    Timestamp,
    Vault,
    Unknown(String),
}

fn tag_kind(tag: &Option<Tag>) -> TagKind {
    let Some(tag) = tag else {
        return TagKind::None;
    };
    if tag.handle == "tag:yaml.org,2002:" {
        return match tag.suffix.as_str() {
            "str" | "python/unicode" | "binary" => TagKind::Str,
            "int" => TagKind::Int,
            "float" => TagKind::Float,
            "bool" => TagKind::Bool,
            "null" => TagKind::Null,
            "map" | "python/dict" | "omap" | "set" => TagKind::Map,
            "seq" | "pairs" => TagKind::Seq,
            "timestamp" => TagKind::Timestamp,
            other => TagKind::Unknown(format!("!!{other}")),
        };
    }
    let full = format!("{}{}", tag.handle, tag.suffix);
    match full.as_str() {
        "!unsafe" => TagKind::Unsafe,
        "!vault" | "!vault-encrypted" => TagKind::Vault,
        // A bare `!` forces the non-specific tag: strings for scalars.
        "!" => TagKind::Str,
        _ => TagKind::Unknown(full),
    }
}

impl Builder<'_> {
    fn error(&self, mark: &Marker, message: impl Into<String>) -> SourceError {
        SourceError::new(self.file, Some(self.text), to_pos(mark), message)
    }

    fn take(&mut self) -> Option<&(Event, Marker)> {
        let item = self.events.get(self.next);
        self.next += 1;
        item
    }

    fn document(&mut self) -> Result<Value, SourceError> {
        loop {
            let Some((event, _)) = self.events.get(self.next) else {
                return Ok(Value::Null);
            };
            match event {
                Event::StreamStart | Event::DocumentStart | Event::Nothing => self.next += 1,
                Event::StreamEnd | Event::DocumentEnd => return Ok(Value::Null),
                _ => return self.node(String::new()),
            }
        }
    }

    fn node(&mut self, pointer: String) -> Result<Value, SourceError> {
        let Some((event, mark)) = self.take().cloned() else {
            return Ok(Value::Null);
        };
        // A block mapping's start event is marked at its first `:`; its first key is where it begins.
        let mut start = to_pos(&mark);
        if let (Event::MappingStart(..), Some((first, first_mark))) =
            (&event, self.events.get(self.next))
        {
            let key_pos = to_pos(first_mark);
            if !matches!(first, Event::MappingEnd)
                && (key_pos.line, key_pos.col) < (start.line, start.col)
            {
                start = key_pos;
            }
        }
        self.positions.insert(pointer.clone(), start);
        match event {
            Event::Alias(id) => self
                .anchors
                .get(&id)
                .cloned()
                .ok_or_else(|| self.error(&mark, "found undefined alias")),
            Event::Scalar(text, style, anchor, tag) => {
                let value = self.scalar(&text, style, &tag, &mark)?;
                if anchor > 0 {
                    self.anchors.insert(anchor, value.clone());
                }
                Ok(value)
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_collection_tag(&tag, &mark, false)?;
                let mut items = Vec::new();
                loop {
                    if matches!(self.events.get(self.next), Some((Event::SequenceEnd, _))) {
                        self.next += 1;
                        break;
                    }
                    if self.next >= self.events.len() {
                        return Err(self.error(&mark, "unterminated sequence"));
                    }
                    let child = format!("{pointer}/{}", items.len());
                    items.push(self.node(child)?);
                }
                let value = Value::Array(items);
                if anchor > 0 {
                    self.anchors.insert(anchor, value.clone());
                }
                Ok(value)
            }
            Event::MappingStart(anchor, tag) => {
                self.check_collection_tag(&tag, &mark, true)?;
                let value = Value::Object(self.mapping(&pointer, &mark)?);
                if anchor > 0 {
                    self.anchors.insert(anchor, value.clone());
                }
                Ok(value)
            }
            other => Err(self.error(&mark, format!("unexpected YAML event {other:?}"))),
        }
    }

    fn check_collection_tag(
        &self,
        tag: &Option<Tag>,
        mark: &Marker,
        is_map: bool,
    ) -> Result<(), SourceError> {
        match tag_kind(tag) {
            TagKind::None | TagKind::Unsafe => Ok(()),
            TagKind::Map if is_map => Ok(()),
            TagKind::Seq if !is_map => Ok(()),
            TagKind::Vault => Err(self.error(mark, "the !vault tag requires a string value")),
            _ => Err(self.error(
                mark,
                format!("tag {} does not apply to this node", tag_text(tag)),
            )),
        }
    }

    /// Reads key/value pairs until `MappingEnd`, applying merge keys like PyYAML.
    fn mapping(
        &mut self,
        pointer: &str,
        start: &Marker,
    ) -> Result<Map<String, Value>, SourceError> {
        let mut merged: Vec<(String, Value)> = Vec::new();
        let mut own: Vec<(String, Value)> = Vec::new();
        loop {
            let Some((event, key_mark)) = self.events.get(self.next).cloned() else {
                return Err(self.error(start, "unterminated mapping"));
            };
            if matches!(event, Event::MappingEnd) {
                self.next += 1;
                break;
            }
            let is_merge =
                matches!(&event, Event::Scalar(text, TScalarStyle::Plain, _, None) if text == "<<");
            if is_merge {
                self.next += 1;
                let value = self.node(format!("{pointer}/<<"))?;
                match value {
                    Value::Object(map) => merged.extend(map),
                    Value::Array(list) => {
                        // Earlier mappings in the list win: insert them last.
                        let mut pairs = Vec::new();
                        for item in list.into_iter().rev() {
                            match item {
                                Value::Object(map) => pairs.extend(map),
                                _ => {
                                    return Err(self.error(
                                        &key_mark,
                                        "expected a mapping for merging, but found a list item that is not a mapping",
                                    ))
                                }
                            }
                        }
                        merged.extend(pairs)
                    }
                    _ => {
                        return Err(self.error(
                            &key_mark,
                            "expected a mapping or list of mappings for merging",
                        ))
                    }
                };
                continue;
            }
            let key_value = self.node(format!("{pointer}/\u{0}key"))?;
            let key_pos = self.positions.remove(&format!("{pointer}/\u{0}key"));
            let key = self.key_string(key_value, &key_mark)?;
            let child = format!("{pointer}/{}", escape_pointer(&key));
            if let Some(pos) = key_pos {
                self.positions.insert(format!("{child}{KEY_SUFFIX}"), pos);
            }
            let value = self.node(child)?;
            own.push((key, value));
        }
        let mut map = Map::new();
        for (key, value) in merged.into_iter().chain(own) {
            map.insert(key, value);
        }
        Ok(map)
    }

    fn key_string(&self, key: Value, mark: &Marker) -> Result<String, SourceError> {
        match key {
            Value::String(s) => Ok(s),
            Value::Null => Ok("null".into()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(self.error(
                mark,
                "found unhashable key (a mapping key must be a scalar)",
            )),
        }
    }

    fn scalar(
        &self,
        text: &str,
        style: TScalarStyle,
        tag: &Option<Tag>,
        mark: &Marker,
    ) -> Result<Value, SourceError> {
        let plain = style == TScalarStyle::Plain;
        let bad = |what: &str| self.error(mark, format!("invalid {what} value: {text:?}"));
        match tag_kind(tag) {
            TagKind::None | TagKind::Unsafe => Ok(if plain {
                resolve_plain(text)
            } else {
                Value::String(text.to_owned())
            }),
            TagKind::Str | TagKind::Timestamp => Ok(Value::String(text.to_owned())),
            TagKind::Int => parse_int(text).ok_or_else(|| bad("integer")),
            TagKind::Float => parse_float(text).ok_or_else(|| bad("float")),
            TagKind::Bool => parse_bool(text)
                .map(Value::Bool)
                .ok_or_else(|| bad("boolean")),
            TagKind::Null => Ok(Value::Null),
            TagKind::Map | TagKind::Seq => Err(self.error(
                mark,
                format!("tag {} cannot be used on a scalar", tag_text(tag)),
            )),
            TagKind::Vault => Err(self.error(
                mark,
                "vault-encrypted values (!vault) are not supported by duststack",
            )),
            TagKind::Unknown(name) => Err(self.error(
                mark,
                format!("could not determine a constructor for the tag {name:?}"),
            )),
        }
    }
}

fn tag_text(tag: &Option<Tag>) -> String {
    match tag {
        Some(t) if t.handle == "tag:yaml.org,2002:" => format!("!!{}", t.suffix),
        Some(t) => format!("{}{}", t.handle, t.suffix),
        None => String::new(),
    }
}

/// Escapes a map key for use in a JSON pointer (RFC 6901).
pub fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Types a plain (unquoted) scalar the way PyYAML's YAML 1.1 resolver does.
pub fn resolve_plain(text: &str) -> Value {
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Value::Null;
    }
    if let Some(b) = parse_bool(text) {
        return Value::Bool(b);
    }
    if is_int(text) {
        if let Some(v) = parse_int(text) {
            return v;
        }
    }
    if is_float(text) {
        if let Some(v) = parse_float(text) {
            return v;
        }
    }
    Value::String(text.to_owned())
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn int_regex() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(
            r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$",
        )
        .expect("static regex")
    })
}

fn float_regex() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(
            r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        )
        .expect("static regex")
    })
}

fn is_int(text: &str) -> bool {
    int_regex().is_match(text)
}

fn is_float(text: &str) -> bool {
    float_regex().is_match(text)
}

/// Converts an integer literal (PyYAML rules) to a JSON number; huge values become floats.
fn parse_int(text: &str) -> Option<Value> {
    let cleaned = text.replace('_', "");
    let (negative, digits) = match cleaned.as_bytes().first()? {
        b'-' => (true, &cleaned[1..]),
        b'+' => (false, &cleaned[1..]),
        _ => (false, cleaned.as_str()),
    };
    if digits.is_empty() {
        return None;
    }
    let magnitude: Option<u128> = if digits == "0" {
        Some(0)
    } else if let Some(bin) = digits.strip_prefix("0b") {
        u128::from_str_radix(bin, 2).ok()
    } else if let Some(hex) = digits.strip_prefix("0x") {
        u128::from_str_radix(hex, 16).ok()
    } else if digits.starts_with('0') {
        u128::from_str_radix(digits, 8).ok()
    } else if digits.contains(':') {
        let mut total: u128 = 0;
        for part in digits.split(':') {
            total = total
                .checked_mul(60)?
                .checked_add(part.parse::<u128>().ok()?)?;
        }
        Some(total)
    } else {
        digits.parse::<u128>().ok()
    };
    let Some(magnitude) = magnitude else {
        // Beyond 128 bits: keep the magnitude approximately, like a float.
        let f: f64 = digits.parse().ok()?;
        return Number::from_f64(if negative { -f } else { f }).map(Value::Number);
    };
    let number = if negative {
        i64::try_from(magnitude)
            .ok()
            .map(|m| Number::from(-m))
            .or_else(|| Number::from_f64(-(magnitude as f64)))
    } else {
        u64::try_from(magnitude)
            .ok()
            .map(Number::from)
            .or_else(|| Number::from_f64(magnitude as f64))
    };
    number.map(Value::Number)
}

/// Converts a float literal (PyYAML rules). Infinity and NaN cannot be JSON numbers: they
/// become the strings Python prints for them (`inf`, `-inf`, `nan`).
fn parse_float(text: &str) -> Option<Value> {
    let cleaned = text.replace('_', "").to_ascii_lowercase();
    let (sign, body) = match cleaned.as_bytes().first()? {
        b'-' => (-1.0, &cleaned[1..]),
        b'+' => (1.0, &cleaned[1..]),
        _ => (1.0, cleaned.as_str()),
    };
    let value: f64 = if body == ".inf" {
        return Some(Value::String(
            if sign < 0.0 { "-inf" } else { "inf" }.into(),
        ));
    } else if body == ".nan" {
        return Some(Value::String("nan".into()));
    } else if body.contains(':') {
        let mut total = 0.0;
        for part in body.split(':') {
            total = total * 60.0 + part.parse::<f64>().ok()?;
        }
        total
    } else {
        // Rust's parser rejects "1." and ".5e+3" forms less often than Python; normalise "1." → "1.0".
        let fixed = if body.ends_with('.') {
            format!("{body}0")
        } else {
            body.replace(".e", ".0e")
        };
        fixed.parse().ok()?
    };
    Number::from_f64(sign * value).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(text: &str) -> Value {
        parse_yaml(text, Path::new("t.yml")).unwrap()
    }

    #[test]
    fn plain_scalar_typing_follows_yaml_1_1() {
        let v = load(
            "a: yes\nb: \"yes\"\nc: 0755\nd: 1_000\ne: 010\nf: 1:30\ng: ~\nh: .inf\ni: On\nj: NO\n\
             k: 0x1F\nl: 0b1010\nm: 1.5\nn: .5\no: 1e3\np: 1.0e+3\nq: 09\nr: 0o17\ns: ''\nt:\nu: -.inf\n\
             v: Null\nw: 12:30:00\nx: 1:30.5\ny: 'true'\nz: -0x10\n",
        );
        assert_eq!(
            v,
            json!({"a": true, "b": "yes", "c": 493, "d": 1000, "e": 8, "f": 90, "g": null,
                   "h": "inf", "i": true, "j": false, "k": 31, "l": 10, "m": 1.5, "n": 0.5,
                   "o": "1e3", "p": 1000.0, "q": "09", "r": "0o17", "s": "", "t": null,
                   "u": "-inf", "v": null, "w": 45000, "x": 90.5, "y": "true", "z": -16})
        );
    }

    #[test]
    fn explicit_tags_are_honoured() {
        let v = load("a: !!str 10\nb: !!int \"10\"\nc: !!float 1\nd: !unsafe yes\ne: !unsafe '{{ x }}'\nf: !!bool yes\n");
        assert_eq!(
            v,
            json!({"a": "10", "b": 10, "c": 1.0, "d": true, "e": "{{ x }}", "f": true})
        );
    }

    #[test]
    fn vault_tag_is_rejected_with_position() {
        let err = parse_yaml(
            "a: 1\nb: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n",
            Path::new("v.yml"),
        )
        .unwrap_err();
        // Block scalars are located at their first content line.
        assert_eq!(err.pos.line, 3);
        assert!(err.message.contains("vault"), "{}", err.message);
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let v = load(
            "base: &b {x: 1, y: 2}\nother: &o {y: 3, z: 4}\nm:\n  <<: *b\n  y: 9\nl:\n  <<: [*b, *o]\n  w: 0\nlist: &l [1, 2]\ncopy: *l\n",
        );
        assert_eq!(v["m"], json!({"x": 1, "y": 9}));
        assert_eq!(v["l"], json!({"y": 2, "z": 4, "x": 1, "w": 0}));
        let keys: Vec<&String> = v["l"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["y", "z", "x", "w"]);
        assert_eq!(v["copy"], json!([1, 2]));
    }

    #[test]
    fn duplicate_keys_last_wins_and_first_document_only() {
        assert_eq!(
            load("a: 1\nb: 2\na: 3\n---\nc: 4\n"),
            json!({"a": 3, "b": 2})
        );
        assert_eq!(load(""), Value::Null);
        assert_eq!(load("# only a comment\n"), Value::Null);
    }

    #[test]
    fn non_string_keys_become_json_keys() {
        assert_eq!(
            load("1: a\n~: b\n1.5: c\n"),
            json!({"1": "a", "null": "b", "1.5": "c"})
        );
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let err = parse_yaml("a: 1\nb: [1, 2\nc: 3\n", Path::new("bad.yml")).unwrap_err();
        assert_eq!(err.file, Path::new("bad.yml"));
        assert!(err.pos.line >= 2, "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("bad.yml:{}:{}:", err.pos.line, err.pos.col)),
            "{text}"
        );

        let err = parse_yaml("a: 1\n  b: 2\n", Path::new("x.yml")).unwrap_err();
        assert_eq!((err.pos.line, err.pos.col), (2, 4), "{err}");
    }

    #[test]
    fn positions_are_recorded_by_pointer() {
        let (_, pos) =
            parse_yaml_with_positions("- name: a\n  tasks:\n    - debug: x\n", Path::new("p.yml"))
                .unwrap();
        assert_eq!(pos["/0/tasks/0"], SourcePos { line: 3, col: 7 });
        assert_eq!(pos["/0/name"], SourcePos { line: 1, col: 9 });
    }

    #[test]
    fn vars_files_must_be_mappings() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.yml");
        std::fs::write(&empty, "").unwrap();
        assert!(load_vars_file(&empty).unwrap().is_empty());
        let list = dir.path().join("list.yml");
        std::fs::write(&list, "- 1\n").unwrap();
        let err = load_vars_file(&list).unwrap_err().to_string();
        assert!(err.contains("list.yml"), "{err}");
        let json_file = dir.path().join("v.json");
        std::fs::write(&json_file, "{\"a\": [1, true]}").unwrap();
        assert_eq!(
            Value::Object(load_vars_file(&json_file).unwrap()),
            json!({"a": [1, true]})
        );
    }
}
