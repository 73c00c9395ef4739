//! INI value typing: the subset of Python's `ast.literal_eval` Ansible relies on (numbers,
//! strings, `True`/`False`/`None`, lists, tuples, sets, dicts); anything else stays the raw string.

use serde_json::{Map, Number, Value};

/// Types an INI value like Ansible: a Python literal when it is one, else the text itself.
pub fn parse_value(text: &str) -> Value {
    literal_eval(text).unwrap_or_else(|| Value::String(text.to_owned()))
}

/// Evaluates `text` as one Python literal expression; `None` when it is not one.
pub fn literal_eval(text: &str) -> Option<Value> {
    let mut parser = LiteralParser {
        chars: text.trim_start_matches([' ', '\t']).chars().collect(),
        pos: 0,
    };
    let value = parser.expr()?;
    parser.skip_space();
    (parser.pos == parser.chars.len()).then_some(value)
}

struct LiteralParser {
    chars: Vec<char>,
    pos: usize,
}

impl LiteralParser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    /// Skips blanks and a trailing `# comment` (Python's tokenizer does the same).
    fn skip_space(&mut self) {
        while let Some(c) = self.peek() {
            if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\x0c' {
                self.pos += 1;
            } else if c == '#' {
                while let Some(c) = self.peek() {
                    if c == '\n' {
                        break;
                    }
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Option<Value> {
        self.skip_space();
        match self.peek()? {
            '[' => {
                self.pos += 1;
                Some(Value::Array(self.items(']')?))
            }
            '(' => {
                self.pos += 1;
                let start = self.pos;
                // A parenthesised single value without a comma is just that value.
                if let Some(v) = self.expr() {
                    if self.eat(')') {
                        return Some(v);
                    }
                }
                self.pos = start;
                Some(Value::Array(self.items(')')?))
            }
            '{' => {
                self.pos += 1;
                self.dict_or_set()
            }
            '-' | '+' => {
                let negative = self.peek() == Some('-');
                self.pos += 1;
                self.skip_space();
                match self.expr()? {
                    Value::Number(n) if negative => negate(&n),
                    Value::Number(n) => Some(Value::Number(n)),
                    _ => None,
                }
            }
            c if c == '\'' || c == '"' => self.strings(),
            c if c.is_ascii_digit() || c == '.' => self.number(),
            c if c.is_alphabetic() || c == '_' => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    self.pos += 1;
                }
                let word: String = self.chars[start..self.pos].iter().collect();
                match word.as_str() {
                    "True" => Some(Value::Bool(true)),
                    "False" => Some(Value::Bool(false)),
                    "None" => Some(Value::Null),
                    // String prefixes: r'..', u'..' (bytes and f-strings are not literals we keep).
                    "r" | "R" | "u" | "U" if matches!(self.peek(), Some('\'' | '"')) => {
                        self.pos = start;
                        self.strings()
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn items(&mut self, close: char) -> Option<Vec<Value>> {
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Some(items);
            }
            items.push(self.expr()?);
            if self.eat(',') {
                continue;
            }
            if self.eat(close) {
                return Some(items);
            }
            return None;
        }
    }

    fn dict_or_set(&mut self) -> Option<Value> {
        if self.eat('}') {
            return Some(Value::Object(Map::new()));
        }
        let first = self.expr()?;
        if self.eat(':') {
            let mut map = Map::new();
            let value = self.expr()?;
            map.insert(key_text(&first)?, value);
            loop {
                if self.eat('}') {
                    return Some(Value::Object(map));
                }
                if !self.eat(',') {
                    return None;
                }
                if self.eat('}') {
                    return Some(Value::Object(map));
                }
                let key = self.expr()?;
                if !self.eat(':') {
                    return None;
                }
                let value = self.expr()?;
                map.insert(key_text(&key)?, value);
            }
        }
        // A set literal: Ansible turns sets into lists.
        let mut items = vec![first];
        if self.eat('}') {
            return Some(Value::Array(items));
        }
        if !self.eat(',') {
            return None;
        }
        items.extend(self.items('}')?);
        let mut unique: Vec<Value> = Vec::new();
        for item in items {
            if !unique.contains(&item) {
                unique.push(item);
            }
        }
        Some(Value::Array(unique))
    }

    /// One or more adjacent string literals (Python concatenates them).
    fn strings(&mut self) -> Option<Value> {
        let mut out = String::new();
        loop {
            self.skip_space();
            let raw = match self.peek() {
                Some('r' | 'R') => {
                    self.pos += 1;
                    true
                }
                Some('u' | 'U') => {
                    self.pos += 1;
                    false
                }
                Some('\'' | '"') => false,
                _ => break,
            };
            out.push_str(&self.string(raw)?);
        }
        Some(Value::String(out))
    }

    fn string(&mut self, raw: bool) -> Option<String> {
        let quote = self.peek()?;
        let triple = self.chars.get(self.pos..self.pos + 3) == Some(&[quote, quote, quote][..]);
        self.pos += if triple { 3 } else { 1 };
        let mut out = String::new();
        loop {
            let c = self.peek()?;
            if c == quote {
                if !triple {
                    self.pos += 1;
                    return Some(out);
                }
                if self.chars.get(self.pos..self.pos + 3) == Some(&[quote, quote, quote][..]) {
                    self.pos += 3;
                    return Some(out);
                }
            }
            if c == '\n' && !triple {
                return None;
            }
            self.pos += 1;
            if c != '\\' {
                out.push(c);
                continue;
            }
            let e = self.peek()?;
            self.pos += 1;
            if raw {
                out.push('\\');
                out.push(e);
                continue;
            }
            match e {
                '\n' => {}
                '\\' => out.push('\\'),
                '\'' => out.push('\''),
                '"' => out.push('"'),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'v' => out.push('\x0b'),
                'x' | 'u' | 'U' => {
                    let len = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let hex: String = self.chars.get(self.pos..self.pos + len)?.iter().collect();
                    self.pos += len;
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                '0'..='7' => {
                    let mut code = e.to_digit(8)?;
                    for _ in 0..2 {
                        match self.peek().and_then(|c| c.to_digit(8)) {
                            Some(d) => {
                                code = code * 8 + d;
                                self.pos += 1;
                            }
                            None => break,
                        }
                    }
                    out.push(char::from_u32(code)?);
                }
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        }
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            // An exponent sign belongs to the number: 1e-5.
            let c = self.peek();
            self.pos += 1;
            if matches!(c, Some('e' | 'E')) && matches!(self.peek(), Some('+' | '-')) {
                let prefix: String = self.chars[start..self.pos].iter().collect();
                if !prefix.starts_with("0x") && !prefix.starts_with("0X") {
                    self.pos += 1;
                }
            }
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        python_number(&text)
    }
}

fn negate(n: &Number) -> Option<Value> {
    if let Some(i) = n.as_i64() {
        return Some(Value::Number(Number::from(i.checked_neg()?)));
    }
    if let Some(u) = n.as_u64() {
        if u == i64::MAX as u64 + 1 {
            return Some(Value::Number(Number::from(i64::MIN)));
        }
        return Number::from_f64(-(u as f64)).map(Value::Number);
    }
    Number::from_f64(-n.as_f64()?).map(Value::Number)
}

/// Python dict keys become JSON object keys the way `json.dumps` writes them.
fn key_text(key: &Value) -> Option<String> {
    match key {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("null".into()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses a Python 3 numeric literal (ints with `0x/0o/0b`, `_` separators, floats).
fn python_number(text: &str) -> Option<Value> {
    if text.is_empty() || text.starts_with('_') || text.ends_with('_') || text.contains("__") {
        return None;
    }
    let clean = text.replace('_', "");
    let lower = clean.to_ascii_lowercase();
    let radix = if lower.starts_with("0x") {
        Some(16)
    } else if lower.starts_with("0o") {
        Some(8)
    } else if lower.starts_with("0b") {
        Some(2)
    } else {
        None
    };
    if let Some(radix) = radix {
        let digits = &lower[2..];
        let n = u64::from_str_radix(digits, radix).ok()?;
        return Some(Value::Number(Number::from(n)));
    }
    if lower.bytes().all(|b| b.is_ascii_digit()) {
        // Python 3 rejects leading zeros on non-zero decimals ("010" is a syntax error).
        if lower.len() > 1 && lower.starts_with('0') && lower.bytes().any(|b| b != b'0') {
            return None;
        }
        if let Ok(n) = lower.parse::<u64>() {
            return Some(Value::Number(Number::from(n)));
        }
        return Number::from_f64(lower.parse::<f64>().ok()?).map(Value::Number);
    }
    let valid = regex_float().is_match(&lower);
    if !valid {
        return None;
    }
    let f: f64 = lower.parse().ok()?;
    match Number::from_f64(f) {
        Some(n) => Some(Value::Number(n)),
        // Overflow to infinity: Python keeps `inf`; JSON cannot, so keep Python's text.
        None => Some(Value::String(if f > 0.0 { "inf" } else { "-inf" }.into())),
    }
}

fn regex_float() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:e[+-]?[0-9]+)?$")
            .expect("static regex")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typing_matches_ansible_ini() {
        let cases = [
            ("23", json!(23)),
            ("-5", json!(-5)),
            ("1.5", json!(1.5)),
            ("1e3", json!(1000.0)),
            ("False", json!(false)),
            ("None", json!(null)),
            ("\"23\"", json!("23")),
            ("'0700'", json!("0700")),
            ("010", json!("010")),
            ("10-5", json!("10-5")),
            ("FALSE", json!("FALSE")),
            ("yes", json!("yes")),
            ("0x1f", json!(31)),
            ("1_000", json!(1000)),
            ("[1, 2, \"x\"]", json!([1, 2, "x"])),
            ("(1, 'a')", json!([1, "a"])),
            ("{'a': 1, 'b': [None]}", json!({"a": 1, "b": [null]})),
            (
                "{\"a\": 1, \"b\": [true]}",
                json!("{\"a\": 1, \"b\": [true]}"),
            ),
            ("'a' 'b'", json!("ab")),
            ("hello world", json!("hello world")),
            ("", json!("")),
            ("1234e567", json!("inf")),
            ("{1, 2, 1}", json!([1, 2])),
            ("(5)", json!(5)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_value(text), want, "{text}");
        }
    }
}
