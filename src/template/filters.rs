//! Ansible's filters (data formats, regex, combine, sets, paths, hashing, …) and the Python
//! string/dict methods that roles call (`.split()`, `.items()`, `.get()`).

use std::collections::HashSet;

use base64::Engine as _;
use minijinja::value::{Kwargs, Rest, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};
use serde_json::Value as Json;

use super::convert::{ansible_bool, py_json, py_repr, py_str, to_json, to_mj, JsonStyle};
use super::{netaddr, predicates, yaml};

/// An invalid-operation error with `msg`.
pub(crate) fn fail(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// Errors with the undefined marker when `v` is undefined (names the expression in the message).
pub(crate) fn need(v: &Value) -> Result<(), Error> {
    if v.is_undefined() {
        Err(Error::new(
            ErrorKind::UndefinedError,
            super::error::UNDEFINED_OUTPUT,
        ))
    } else {
        Ok(())
    }
}

/// `v` as JSON, failing on undefined.
pub(crate) fn data(v: &Value) -> Result<Json, Error> {
    need(v)?;
    to_json(v)
}

/// `v` as a string, failing on undefined (numbers and other values use Python's `str()`).
pub(crate) fn text(v: &Value) -> Result<String, Error> {
    need(v)?;
    Ok(match v.kind() {
        ValueKind::None => "None".into(),
        _ => py_str(v),
    })
}

fn kw<'a, T: minijinja::value::ArgType<'a, Output = T>>(
    kwargs: &'a Kwargs,
    name: &'a str,
) -> Result<Option<T>, Error> {
    if kwargs.has(name) {
        kwargs.get::<Option<T>>(name)
    } else {
        Ok(None)
    }
}

/// Positional argument `idx`, or keyword `name`.
fn arg(args: &[Value], idx: usize, kwargs: &Kwargs, name: &str) -> Result<Option<Value>, Error> {
    if let Some(v) = args.get(idx) {
        return Ok(Some(v.clone()));
    }
    if kwargs.has(name) {
        return kwargs.get::<Value>(name).map(Some);
    }
    Ok(None)
}

/// Registers every filter and the `dict` global.
pub(crate) fn register(env: &mut Environment<'static>) {
    env.add_filter("to_json", to_json_filter);
    env.add_filter("to_nice_json", to_nice_json);
    env.add_filter("from_json", from_json);
    env.add_filter("to_yaml", to_yaml);
    env.add_filter("to_nice_yaml", to_nice_yaml);
    env.add_filter("from_yaml", from_yaml);
    env.add_filter("from_yaml_all", from_yaml_all);
    env.add_filter("regex_replace", regex_replace);
    env.add_filter("regex_search", regex_search);
    env.add_filter("regex_findall", regex_findall);
    env.add_filter("regex_escape", regex_escape);
    env.add_filter("combine", combine);
    env.add_filter("ternary", ternary);
    env.add_filter("dict2items", dict2items);
    env.add_filter("items2dict", items2dict);
    env.add_filter("flatten", flatten);
    env.add_filter("b64encode", b64encode);
    env.add_filter("b64decode", b64decode);
    env.add_filter("basename", basename);
    env.add_filter("dirname", dirname);
    env.add_filter("expanduser", expanduser);
    env.add_filter("realpath", realpath);
    env.add_filter("splitext", splitext);
    env.add_filter("path_join", path_join);
    env.add_filter("mandatory", mandatory);
    env.add_filter("bool", bool_filter);
    env.add_filter("string", string_filter);
    env.add_filter("union", union);
    env.add_filter("intersect", intersect);
    env.add_filter("difference", difference);
    env.add_filter("symmetric_difference", symmetric_difference);
    env.add_filter("quote", quote);
    env.add_filter("hash", hash);
    env.add_filter("checksum", |v: Value| hash(v, Some("sha1".into())));
    env.add_filter("sha1", |v: Value| hash(v, Some("sha1".into())));
    env.add_filter("md5", |v: Value| hash(v, Some("md5".into())));
    env.add_filter("comment", comment);
    env.add_filter("type_debug", type_debug);
    env.add_filter("product", product);
    env.add_filter("sum", sum);
    env.add_filter("extract", extract);
    env.add_filter("subelements", subelements);
    env.add_filter("human_to_bytes", human_to_bytes);
    env.add_filter("human_readable", human_readable);
    env.add_filter("version_compare", predicates::version_filter);
    env.add_filter("log", |x: f64, base: Option<f64>| match base {
        Some(b) => x.ln() / b.ln(),
        None => x.ln(),
    });
    env.add_filter("pow", |x: f64, y: f64| x.powf(y));
    env.add_filter("root", |x: f64, base: Option<f64>| {
        x.powf(1.0 / base.unwrap_or(2.0))
    });
    env.add_filter("ipaddr", netaddr::ipaddr);
    env.add_filter("ipv4", netaddr::ipv4);
    env.add_filter("ipv6", netaddr::ipv6);
    env.add_filter("ipwrap", netaddr::ipwrap);
    env.add_function("dict", dict_fn);
    env.add_filter("join", join);
    use minijinja::filters as b;
    let strict: [(&'static str, Value); 24] = [
        ("upper", Value::from_function(b::upper)),
        ("lower", Value::from_function(b::lower)),
        ("title", Value::from_function(b::title)),
        ("capitalize", Value::from_function(b::capitalize)),
        ("replace", Value::from_function(b::replace)),
        ("trim", Value::from_function(b::trim)),
        ("length", Value::from_function(b::length)),
        ("count", Value::from_function(b::length)),
        ("first", Value::from_function(b::first)),
        ("last", Value::from_function(b::last)),
        ("list", Value::from_function(b::list)),
        ("int", Value::from_function(b::int)),
        ("float", Value::from_function(b::float)),
        ("indent", Value::from_function(b::indent)),
        ("sort", Value::from_function(b::sort)),
        ("reverse", Value::from_function(b::reverse)),
        ("items", Value::from_function(b::items)),
        ("dictsort", Value::from_function(b::dictsort)),
        ("unique", Value::from_function(b::unique)),
        ("min", Value::from_function(b::min)),
        ("max", Value::from_function(b::max)),
        ("map", Value::from_function(b::map)),
        ("select", Value::from_function(b::select)),
        ("selectattr", Value::from_function(b::selectattr)),
    ];
    for (name, f) in strict {
        env.add_filter(
            name,
            move |state: &mut State, args: Rest<Value>, kwargs: Kwargs| -> Result<Value, Error> {
                if let Some(v) = args.first() {
                    need(v)?;
                }
                let mut args = args.0;
                if kwargs.args().next().is_some() {
                    args.push(Value::from(kwargs));
                }
                f.call(state, &args)
            },
        );
    }
}

/// Jinja's `join`, printing items with Python's `str()` (`True`, `None`).
fn join(v: Value, sep: Option<String>, kwargs: Kwargs) -> Result<String, Error> {
    need(&v)?;
    let attribute = kw::<String>(&kwargs, "attribute")?;
    let sep = sep.or(kw::<String>(&kwargs, "d")?).unwrap_or_default();
    let mut parts = Vec::new();
    for item in v.try_iter()? {
        let item = match &attribute {
            Some(a) => a
                .split('.')
                .fold(item, |x, k| x.get_attr(k).unwrap_or_default()),
            None => item,
        };
        parts.push(match item.kind() {
            ValueKind::None => "None".to_string(),
            _ => py_str(&item),
        });
    }
    Ok(parts.join(&sep))
}

fn to_json_filter(v: Value, kwargs: Kwargs) -> Result<String, Error> {
    let style = JsonStyle {
        indent: kw::<usize>(&kwargs, "indent")?,
        sort_keys: kw::<bool>(&kwargs, "sort_keys")?.unwrap_or(false),
        ensure_ascii: kw::<bool>(&kwargs, "ensure_ascii")?.unwrap_or(true),
    };
    Ok(py_json(&data(&v)?, &style))
}

fn to_nice_json(v: Value, kwargs: Kwargs) -> Result<String, Error> {
    let style = JsonStyle {
        indent: Some(kw::<usize>(&kwargs, "indent")?.unwrap_or(4)),
        sort_keys: kw::<bool>(&kwargs, "sort_keys")?.unwrap_or(true),
        ensure_ascii: kw::<bool>(&kwargs, "ensure_ascii")?.unwrap_or(true),
    };
    Ok(py_json(&data(&v)?, &style))
}

fn from_json(v: Value) -> Result<Value, Error> {
    let s = text(&v)?;
    serde_json::from_str::<Json>(&s)
        .map(|j| to_mj(&j))
        .map_err(|e| fail(format!("from_json: invalid JSON: {e}")))
}

fn to_yaml(v: Value, kwargs: Kwargs) -> Result<String, Error> {
    let style = yaml::DumpStyle {
        indent: kw::<usize>(&kwargs, "indent")?.unwrap_or(2),
        flow_leaves: !matches!(kw::<bool>(&kwargs, "default_flow_style")?, Some(false)),
        sort_keys: kw::<bool>(&kwargs, "sort_keys")?.unwrap_or(true),
    };
    Ok(yaml::dump(&data(&v)?, &style))
}

fn to_nice_yaml(v: Value, kwargs: Kwargs) -> Result<String, Error> {
    let style = yaml::DumpStyle {
        indent: kw::<usize>(&kwargs, "indent")?.unwrap_or(4),
        flow_leaves: false,
        sort_keys: kw::<bool>(&kwargs, "sort_keys")?.unwrap_or(true),
    };
    Ok(yaml::dump(&data(&v)?, &style))
}

fn from_yaml(v: Value) -> Result<Value, Error> {
    let s = text(&v)?;
    yaml::load(&s)
        .map(|j| to_mj(&j))
        .map_err(|e| fail(format!("from_yaml: {e}")))
}

fn from_yaml_all(v: Value) -> Result<Value, Error> {
    let s = text(&v)?;
    yaml::load_all(&s)
        .map(|docs| to_mj(&Json::Array(docs)))
        .map_err(|e| fail(format!("from_yaml_all: {e}")))
}

/// Compiles a Python regular expression (the common subset Rust's `regex` shares).
pub(crate) fn compile_regex(
    pattern: &str,
    ignorecase: bool,
    multiline: bool,
) -> Result<regex::Regex, Error> {
    let pat = pattern.replace("\\Z", "\\z");
    regex::RegexBuilder::new(&pat)
        .case_insensitive(ignorecase)
        .multi_line(multiline)
        .build()
        .map_err(|e| fail(format!("invalid regular expression '{pattern}': {e}")))
}

/// Python `re.sub` replacement syntax (`\1`, `\g<name>`) in Rust's (`${1}`, `${name}`).
fn python_replacement(repl: &str) -> String {
    let mut out = String::with_capacity(repl.len());
    let chars: Vec<char> = repl.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' {
            out.push_str("$$");
        } else if c == '\\' && i + 1 < chars.len() {
            let n = chars[i + 1];
            if n.is_ascii_digit() {
                let mut j = i + 1;
                let mut num = String::new();
                while j < chars.len() && chars[j].is_ascii_digit() && num.len() < 2 {
                    num.push(chars[j]);
                    j += 1;
                }
                out.push_str(&format!("${{{num}}}"));
                i = j;
                continue;
            } else if n == 'g' && chars.get(i + 2) == Some(&'<') {
                if let Some(end) = chars[i + 3..].iter().position(|c| *c == '>') {
                    let name: String = chars[i + 3..i + 3 + end].iter().collect();
                    out.push_str(&format!("${{{name}}}"));
                    i = i + 4 + end;
                    continue;
                }
            } else {
                match n {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '\\' => out.push('\\'),
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
                i += 2;
                continue;
            }
        } else {
            out.push(c);
        }
        i += 1;
    }
    out
}

fn flag(args: &[Value], idx: usize, kwargs: &Kwargs, name: &str) -> Result<bool, Error> {
    Ok(arg(args, idx, kwargs, name)?
        .map(|v| v.is_true())
        .unwrap_or(false))
}

fn regex_replace(v: Value, args: Rest<Value>, kwargs: Kwargs) -> Result<String, Error> {
    let s = text(&v)?;
    let pattern = arg(&args, 0, &kwargs, "pattern")?
        .map(|p| py_str(&p))
        .unwrap_or_default();
    let repl = arg(&args, 1, &kwargs, "replacement")?
        .map(|p| py_str(&p))
        .unwrap_or_default();
    let ignorecase = flag(&args, 2, &kwargs, "ignorecase")?;
    let multiline = flag(&args, 3, &kwargs, "multiline")?;
    let count = arg(&args, 4, &kwargs, "count")?
        .and_then(|c| i64::try_from(c).ok())
        .unwrap_or(0);
    let re = compile_regex(&pattern, ignorecase, multiline)?;
    let repl = python_replacement(&repl);
    Ok(if count > 0 {
        re.replacen(&s, count as usize, repl.as_str()).into_owned()
    } else {
        re.replace_all(&s, repl.as_str()).into_owned()
    })
}

fn regex_search(v: Value, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let s = text(&v)?;
    let pattern = args.first().map(py_str).unwrap_or_default();
    let ignorecase = kw::<bool>(&kwargs, "ignorecase")?.unwrap_or(false);
    let multiline = kw::<bool>(&kwargs, "multiline")?.unwrap_or(false);
    let re = compile_regex(&pattern, ignorecase, multiline)?;
    let Some(caps) = re.captures(&s) else {
        return Ok(Value::from(()));
    };
    if args.len() <= 1 {
        return Ok(Value::from(caps.get(0).map(|m| m.as_str()).unwrap_or("")));
    }
    let mut groups = Vec::new();
    for g in &args[1..] {
        let g = py_str(g);
        let m = if let Some(name) = g.strip_prefix("\\g<").and_then(|x| x.strip_suffix('>')) {
            match name.parse::<usize>() {
                Ok(n) => caps.get(n),
                Err(_) => caps.name(name),
            }
        } else if let Some(n) = g.strip_prefix('\\').and_then(|x| x.parse::<usize>().ok()) {
            caps.get(n)
        } else {
            return Err(fail(format!("regex_search: unknown group selector '{g}'")));
        };
        groups.push(Value::from(m.map(|m| m.as_str()).unwrap_or("")));
    }
    Ok(Value::from(groups))
}

fn regex_findall(v: Value, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let s = text(&v)?;
    let pattern = arg(&args, 0, &kwargs, "regex")?
        .map(|p| py_str(&p))
        .unwrap_or_default();
    let ignorecase = flag(&args, 1, &kwargs, "ignorecase")?;
    let multiline = flag(&args, 2, &kwargs, "multiline")?;
    let re = compile_regex(&pattern, ignorecase, multiline)?;
    let groups = re.captures_len() - 1;
    let mut out = Vec::new();
    for caps in re.captures_iter(&s) {
        let g = |i: usize| Value::from(caps.get(i).map(|m| m.as_str()).unwrap_or(""));
        out.push(match groups {
            0 => g(0),
            1 => g(1),
            n => Value::from((1..=n).map(g).collect::<Vec<_>>()),
        });
    }
    Ok(Value::from(out))
}

fn regex_escape(v: Value, re_type: Option<String>) -> Result<String, Error> {
    let s = text(&v)?;
    if re_type.as_deref().unwrap_or("python") == "posix_basic" {
        let mut out = String::new();
        for c in s.chars() {
            if "$.[]\\*^".contains(c) {
                out.push('\\');
            }
            out.push(c);
        }
        return Ok(out);
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' => out.push_str("\\\t"),
            '\n' => out.push_str("\\\n"),
            '\r' => out.push_str("\\\r"),
            c if "()[]{}?*+-|^$\\.&~# \u{b}\u{c}".contains(c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn merge_lists(a: Vec<Json>, b: Vec<Json>, mode: &str) -> Result<Vec<Json>, Error> {
    Ok(match mode {
        "replace" => b,
        "keep" => a,
        "append" => a.into_iter().chain(b).collect(),
        "prepend" => b.into_iter().chain(a).collect(),
        "append_rp" => {
            let mut out: Vec<Json> = a.into_iter().filter(|x| !b.contains(x)).collect();
            out.extend(b);
            out
        }
        "prepend_rp" => {
            let mut out = b.clone();
            out.extend(a.into_iter().filter(|x| !b.contains(x)));
            out
        }
        other => return Err(fail(format!("combine: unknown list_merge '{other}'"))),
    })
}

fn merge(a: Json, b: Json, recursive: bool, list_merge: &str) -> Result<Json, Error> {
    match (a, b) {
        (Json::Object(mut am), Json::Object(bm)) => {
            for (k, bv) in bm {
                // Python's dict.update: an existing key keeps its position.
                let Some(slot) = am.get_mut(&k) else {
                    am.insert(k, bv);
                    continue;
                };
                let av = std::mem::take(slot);
                *slot = match (av, bv) {
                    (av @ Json::Object(_), bv @ Json::Object(_)) if recursive => {
                        merge(av, bv, recursive, list_merge)?
                    }
                    (Json::Array(al), Json::Array(bl)) if recursive => {
                        Json::Array(merge_lists(al, bl, list_merge)?)
                    }
                    (_, bv) => bv,
                };
            }
            Ok(Json::Object(am))
        }
        (_, b) => Ok(b),
    }
}

fn combine(v: Value, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let recursive = kw::<bool>(&kwargs, "recursive")?.unwrap_or(false);
    let list_merge = kw::<String>(&kwargs, "list_merge")?.unwrap_or_else(|| "replace".into());
    let mut dicts = Vec::new();
    for item in std::iter::once(&v).chain(args.iter()) {
        match data(item)? {
            Json::Array(items) => dicts.extend(items),
            other => dicts.push(other),
        }
    }
    let mut acc = Json::Object(Default::default());
    for d in dicts {
        if !d.is_object() {
            return Err(fail(format!(
                "combine expects dictionaries, got {}",
                type_name(&d)
            )));
        }
        acc = merge(acc, d, recursive, &list_merge)?;
    }
    Ok(to_mj(&acc))
}

fn ternary(v: Value, yes: Value, no: Value, none_val: Option<Value>) -> Result<Value, Error> {
    if v.is_none() {
        if let Some(n) = none_val {
            return Ok(n);
        }
    }
    need(&v)?;
    Ok(if v.is_true() { yes } else { no })
}

fn dict2items(v: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let key_name = kw::<String>(&kwargs, "key_name")?.unwrap_or_else(|| "key".into());
    let value_name = kw::<String>(&kwargs, "value_name")?.unwrap_or_else(|| "value".into());
    let Json::Object(m) = data(&v)? else {
        return Err(fail("dict2items requires a dictionary"));
    };
    let items: Vec<Json> = m
        .into_iter()
        .map(|(k, x)| {
            let mut e = serde_json::Map::new();
            e.insert(key_name.clone(), Json::String(k));
            e.insert(value_name.clone(), x);
            Json::Object(e)
        })
        .collect();
    Ok(to_mj(&Json::Array(items)))
}

fn items2dict(v: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let key_name = kw::<String>(&kwargs, "key_name")?.unwrap_or_else(|| "key".into());
    let value_name = kw::<String>(&kwargs, "value_name")?.unwrap_or_else(|| "value".into());
    let Json::Array(items) = data(&v)? else {
        return Err(fail("items2dict requires a list"));
    };
    let mut out = serde_json::Map::new();
    for item in items {
        let (Some(k), Some(x)) = (item.get(&key_name), item.get(&value_name)) else {
            return Err(fail(format!(
                "items2dict: each item needs '{key_name}' and '{value_name}'"
            )));
        };
        let k = match k {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.insert(k, x.clone());
    }
    Ok(to_mj(&Json::Object(out)))
}

fn flatten_into(items: Vec<Json>, levels: Option<i64>, skip_nulls: bool, out: &mut Vec<Json>) {
    for item in items {
        match item {
            Json::Array(inner) if levels.is_none_or(|l| l > 0) => {
                flatten_into(inner, levels.map(|l| l - 1), skip_nulls, out)
            }
            Json::Null if skip_nulls => {}
            other => out.push(other),
        }
    }
}

fn flatten(v: Value, levels: Option<i64>, kwargs: Kwargs) -> Result<Value, Error> {
    let levels = match levels {
        Some(l) => Some(l),
        None => kw::<i64>(&kwargs, "levels")?,
    };
    let skip_nulls = kw::<bool>(&kwargs, "skip_nulls")?.unwrap_or(true);
    let Json::Array(items) = data(&v)? else {
        return Err(fail("flatten requires a list"));
    };
    let mut out = Vec::new();
    flatten_into(items, levels, skip_nulls, &mut out);
    Ok(to_mj(&Json::Array(out)))
}

fn b64encode(v: Value) -> Result<String, Error> {
    Ok(base64::engine::general_purpose::STANDARD.encode(text(&v)?.as_bytes()))
}

fn b64decode(v: Value) -> Result<String, Error> {
    let s = text(&v)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| fail(format!("b64decode: {e}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `posixpath.basename`.
fn basename(v: Value) -> Result<String, Error> {
    let s = text(&v)?;
    Ok(s.rsplit('/').next().unwrap_or("").to_string())
}

/// `posixpath.dirname`.
fn dirname(v: Value) -> Result<String, Error> {
    let s = text(&v)?;
    Ok(match s.rfind('/') {
        None => String::new(),
        Some(i) => {
            let head = &s[..=i];
            let trimmed = head.trim_end_matches('/');
            if trimmed.is_empty() {
                head.to_string()
            } else {
                trimmed.to_string()
            }
        }
    })
}

fn expanduser(v: Value) -> Result<String, Error> {
    let s = text(&v)?;
    if s == "~" || s.starts_with("~/") {
        if let Ok(home) = std::env::var("HOME") {
            return Ok(format!("{home}{}", &s[1..]));
        }
    }
    Ok(s)
}

fn realpath(v: Value) -> Result<String, Error> {
    let s = text(&v)?;
    Ok(std::fs::canonicalize(&s)
        .map(|p| p.display().to_string())
        .unwrap_or(s))
}

/// `posixpath.splitext` as a two-item list.
fn splitext(v: Value) -> Result<Value, Error> {
    let s = text(&v)?;
    let base_start = s.rfind('/').map(|i| i + 1).unwrap_or(0);
    let base = &s[base_start..];
    let dot = base
        .rfind('.')
        .filter(|&i| base[..i].chars().any(|c| c != '.'));
    Ok(match dot {
        Some(i) => Value::from(vec![
            Value::from(&s[..base_start + i]),
            Value::from(&s[base_start + i..]),
        ]),
        None => Value::from(vec![Value::from(s.as_str()), Value::from("")]),
    })
}

fn path_join(v: Value) -> Result<String, Error> {
    let parts: Vec<String> = match v.kind() {
        ValueKind::Seq | ValueKind::Iterable => v.try_iter()?.map(|x| py_str(&x)).collect(),
        _ => vec![text(&v)?],
    };
    let mut out = String::new();
    for p in parts {
        if p.starts_with('/') {
            out = p;
        } else if out.is_empty() || out.ends_with('/') {
            out.push_str(&p);
        } else {
            out.push('/');
            out.push_str(&p);
        }
    }
    Ok(out)
}

fn mandatory(v: Value, msg: Option<String>) -> Result<Value, Error> {
    if v.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            msg.unwrap_or_else(|| super::error::UNDEFINED_OUTPUT.into()),
        ));
    }
    Ok(v)
}

fn bool_filter(v: Value) -> Result<bool, Error> {
    need(&v)?;
    Ok(ansible_bool(&v))
}

fn string_filter(v: Value) -> Result<String, Error> {
    text(&v)
}

fn list_of(v: &Value, what: &str) -> Result<Vec<Json>, Error> {
    match data(v)? {
        Json::Array(a) => Ok(a),
        Json::Object(m) => Ok(m.into_iter().map(|(k, _)| Json::String(k)).collect()),
        Json::String(s) => Ok(s.chars().map(|c| Json::String(c.to_string())).collect()),
        other => Err(fail(format!(
            "{what} expects a list, got {}",
            type_name(&other)
        ))),
    }
}

fn dedup(items: impl IntoIterator<Item = Json>) -> Vec<Json> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|x| seen.insert(x.to_string()))
        .collect()
}

fn union(a: Value, b: Value) -> Result<Value, Error> {
    let (a, b) = (list_of(&a, "union")?, list_of(&b, "union")?);
    Ok(to_mj(&Json::Array(dedup(a.into_iter().chain(b)))))
}

fn intersect(a: Value, b: Value) -> Result<Value, Error> {
    let (a, b) = (list_of(&a, "intersect")?, list_of(&b, "intersect")?);
    Ok(to_mj(&Json::Array(dedup(
        a.into_iter().filter(|x| b.contains(x)),
    ))))
}

fn difference(a: Value, b: Value) -> Result<Value, Error> {
    let (a, b) = (list_of(&a, "difference")?, list_of(&b, "difference")?);
    Ok(to_mj(&Json::Array(dedup(
        a.into_iter().filter(|x| !b.contains(x)),
    ))))
}

fn symmetric_difference(a: Value, b: Value) -> Result<Value, Error> {
    let (a, b) = (
        list_of(&a, "symmetric_difference")?,
        list_of(&b, "symmetric_difference")?,
    );
    let left: Vec<Json> = a.iter().filter(|x| !b.contains(x)).cloned().collect();
    let right: Vec<Json> = b.iter().filter(|x| !a.contains(x)).cloned().collect();
    Ok(to_mj(&Json::Array(dedup(left.into_iter().chain(right)))))
}

/// Python's `shlex.quote`.
pub(crate) fn shell_quote(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

fn quote(v: Value) -> Result<String, Error> {
    Ok(shell_quote(&text(&v)?))
}

fn hash(v: Value, algo: Option<String>) -> Result<String, Error> {
    use sha2::Digest;
    let s = text(&v)?;
    let bytes = s.as_bytes();
    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
    Ok(match algo.as_deref().unwrap_or("sha1") {
        "sha1" => hex(&sha1::Sha1::digest(bytes)),
        "md5" => hex(&md5::Md5::digest(bytes)),
        "sha224" => hex(&sha2::Sha224::digest(bytes)),
        "sha256" => hex(&sha2::Sha256::digest(bytes)),
        "sha384" => hex(&sha2::Sha384::digest(bytes)),
        "sha512" => hex(&sha2::Sha512::digest(bytes)),
        other => return Err(fail(format!("hash: unsupported algorithm '{other}'"))),
    })
}

/// Ansible's `comment` filter (styles plain, erlang, c, cblock, xml).
fn comment(v: Value, style: Option<String>, kwargs: Kwargs) -> Result<String, Error> {
    let s = text(&v)?;
    let style = style.unwrap_or_else(|| "plain".into());
    let (mut beginning, mut decoration, mut end) = match style.as_str() {
        "plain" => ("", "# ", ""),
        "erlang" => ("", "% ", ""),
        "c" => ("", "// ", ""),
        "cblock" => ("/*", " * ", " */"),
        "xml" => ("<!--", " - ", "-->"),
        other => return Err(fail(format!("comment: unknown style '{other}'"))),
    };
    let decoration_kw = kw::<String>(&kwargs, "decoration")?;
    let beginning_kw = kw::<String>(&kwargs, "beginning")?;
    let end_kw = kw::<String>(&kwargs, "end")?;
    if let Some(d) = &decoration_kw {
        decoration = d;
    }
    if let Some(b) = &beginning_kw {
        beginning = b;
    }
    if let Some(e) = &end_kw {
        end = e;
    }
    let prefix =
        kw::<String>(&kwargs, "prefix")?.unwrap_or_else(|| decoration.trim_end().to_string());
    let postfix =
        kw::<String>(&kwargs, "postfix")?.unwrap_or_else(|| decoration.trim_end().to_string());
    let prefix_count = kw::<usize>(&kwargs, "prefix_count")?.unwrap_or(1);
    let postfix_count = kw::<usize>(&kwargs, "postfix_count")?.unwrap_or(1);
    let newline = kw::<String>(&kwargs, "newline")?.unwrap_or_else(|| "\n".into());
    let mut lines: Vec<String> = Vec::new();
    if !beginning.is_empty() {
        lines.push(beginning.to_string());
    }
    for _ in 0..prefix_count {
        lines.push(prefix.clone());
    }
    for line in s.split('\n') {
        lines.push(format!("{decoration}{line}").trim_end().to_string());
    }
    for _ in 0..postfix_count {
        lines.push(postfix.clone());
    }
    if !end.is_empty() {
        lines.push(end.to_string());
    }
    Ok(lines.join(&newline))
}

/// Python's type name of a JSON value.
pub(crate) fn type_name(v: &Json) -> &'static str {
    match v {
        Json::Null => "NoneType",
        Json::Bool(_) => "bool",
        Json::Number(n) if n.is_f64() => "float",
        Json::Number(_) => "int",
        Json::String(_) => "str",
        Json::Array(_) => "list",
        Json::Object(_) => "dict",
    }
}

fn type_debug(v: Value) -> Result<String, Error> {
    Ok(type_name(&data(&v)?).to_string())
}

fn product(v: Value, others: Rest<Value>) -> Result<Value, Error> {
    let mut acc: Vec<Vec<Json>> = vec![vec![]];
    for list in std::iter::once(&v).chain(others.iter()) {
        let items = list_of(list, "product")?;
        acc = acc
            .into_iter()
            .flat_map(|prefix| {
                items.iter().map(move |x| {
                    let mut p = prefix.clone();
                    p.push(x.clone());
                    p
                })
            })
            .collect();
    }
    Ok(to_mj(&Json::Array(
        acc.into_iter().map(Json::Array).collect(),
    )))
}

/// Jinja's `sum`, extended to concatenating lists (`sum(start=[])`).
fn sum(state: &State, v: Value, kwargs: Kwargs) -> Result<Value, Error> {
    need(&v)?;
    let attribute = kw::<String>(&kwargs, "attribute")?;
    let start = kw::<Value>(&kwargs, "start")?.unwrap_or(Value::from(0));
    kwargs.assert_all_used()?;
    let mut acc = start;
    for item in v.try_iter()? {
        let item = match &attribute {
            Some(a) => a
                .split('.')
                .fold(item, |v, k| v.get_attr(k).unwrap_or_default()),
            None => item,
        };
        acc = match (acc.kind(), item.kind()) {
            (ValueKind::Seq, ValueKind::Seq) => {
                let mut out: Vec<Value> = acc.try_iter()?.collect();
                out.extend(item.try_iter()?);
                Value::from(out)
            }
            _ => state
                .env()
                .compile_expression("a + b")?
                .eval(minijinja::context! { a => acc, b => item })?,
        };
    }
    Ok(acc)
}

/// `map('extract', container, morekeys)`: looks `item` up in `container`.
fn extract(item: Value, container: Value, morekeys: Option<Value>) -> Result<Value, Error> {
    need(&container)?;
    let mut v = container.get_item(&item).unwrap_or_default();
    if let Some(keys) = morekeys {
        let keys: Vec<Value> = match keys.kind() {
            ValueKind::Seq => keys.try_iter()?.collect(),
            _ => vec![keys],
        };
        for k in keys {
            v = v.get_item(&k).unwrap_or_default();
        }
    }
    Ok(v)
}

fn subelements(
    v: Value,
    key: String,
    kwargs: Kwargs,
    skip_missing: Option<bool>,
) -> Result<Value, Error> {
    let skip = skip_missing
        .or(kw::<bool>(&kwargs, "skip_missing")?)
        .unwrap_or(false);
    let items = match data(&v)? {
        Json::Array(a) => a,
        Json::Object(m) => m.into_iter().map(|(_, x)| x).collect(),
        _ => return Err(fail("subelements requires a list or dict")),
    };
    let mut out = Vec::new();
    for item in items {
        let mut cur = Some(&item);
        for part in key.split('.') {
            cur = cur.and_then(|c| c.get(part));
        }
        match cur {
            Some(Json::Array(subs)) => {
                for s in subs {
                    out.push(Json::Array(vec![item.clone(), s.clone()]));
                }
            }
            Some(_) => return Err(fail(format!("the key '{key}' should point to a list"))),
            None if skip => {}
            None => return Err(fail(format!("could not find '{key}' key in iterated item"))),
        }
    }
    Ok(to_mj(&Json::Array(out)))
}

const UNITS: [&str; 9] = ["", "K", "M", "G", "T", "P", "E", "Z", "Y"];

fn human_to_bytes(
    v: Value,
    default_unit: Option<String>,
    isbits: Option<bool>,
) -> Result<i64, Error> {
    let s = text(&v)?;
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = (s[..split].trim(), s[split..].trim());
    let num: f64 = num
        .parse()
        .map_err(|_| fail(format!("human_to_bytes: can't interpret '{s}'")))?;
    let unit = if unit.is_empty() {
        default_unit.unwrap_or_default()
    } else {
        unit.to_string()
    };
    let isbits = isbits.unwrap_or(false);
    let letter = unit
        .chars()
        .next()
        .map(|c| c.to_ascii_uppercase().to_string())
        .unwrap_or_default();
    let power = if letter.is_empty() || letter == "B" {
        0
    } else {
        UNITS
            .iter()
            .position(|u| *u == letter)
            .ok_or_else(|| fail(format!("human_to_bytes: unknown unit '{unit}'")))?
    };
    if isbits && unit.ends_with('B') && unit.len() > 1 {
        return Err(fail(format!(
            "human_to_bytes: '{unit}' is bytes, expected bits"
        )));
    }
    Ok((num * 1024f64.powi(power as i32)) as i64)
}

fn human_readable(v: Value, isbits: Option<bool>, unit: Option<String>) -> Result<String, Error> {
    let n = f64::try_from(v.clone()).map_err(|_| fail("human_readable expects a number"))?;
    let isbits = isbits.unwrap_or(false);
    let suffix = if isbits { "b" } else { "B" };
    let mut power = 0;
    if let Some(u) = unit {
        power = UNITS
            .iter()
            .position(|x| x.eq_ignore_ascii_case(&u[..1.min(u.len())]))
            .unwrap_or(0);
    } else {
        while power + 1 < UNITS.len() && n.abs() >= 1024f64.powi(power as i32 + 1) {
            power += 1;
        }
    }
    let value = n / 1024f64.powi(power as i32);
    let name = if power == 0 {
        if isbits {
            "bits".to_string()
        } else {
            "Bytes".to_string()
        }
    } else {
        format!("{}{}", UNITS[power], suffix)
    };
    Ok(format!("{value:.2} {name}"))
}

/// Python's `dict()`: from keyword arguments, a mapping, or a list of pairs.
fn dict_fn(args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let mut out = serde_json::Map::new();
    if let Some(first) = args.first() {
        match data(first)? {
            Json::Object(m) => out.extend(m),
            Json::Array(pairs) => {
                for p in pairs {
                    match p {
                        Json::Array(kv) if kv.len() == 2 => {
                            let k = match &kv[0] {
                                Json::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            out.insert(k, kv[1].clone());
                        }
                        _ => return Err(fail("dict() needs a list of key/value pairs")),
                    }
                }
            }
            other => return Err(fail(format!("dict() cannot convert {}", type_name(&other)))),
        }
    }
    for key in kwargs.args().map(str::to_string).collect::<Vec<_>>() {
        let v: Value = kwargs.get(&key)?;
        out.insert(key, data(&v)?);
    }
    Ok(to_mj(&Json::Object(out)))
}

/// Python methods on strings, dicts and lists (`'a,b'.split(',')`, `d.items()`, `d.get(k, x)`).
pub(crate) fn unknown_method(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    match (value.kind(), method) {
        (ValueKind::String, "split") if args.is_empty() => {
            let s = value.as_str().unwrap_or_default();
            Ok(Value::from(
                s.split_whitespace().map(Value::from).collect::<Vec<_>>(),
            ))
        }
        (ValueKind::String, "rsplit") => {
            let s = value.as_str().unwrap_or_default();
            let sep = args.first().map(py_str);
            let max = args
                .get(1)
                .and_then(|m| i64::try_from(m.clone()).ok())
                .unwrap_or(-1);
            let mut parts: Vec<String> = match (&sep, max) {
                (Some(sep), m) if m >= 0 => s
                    .rsplitn(m as usize + 1, sep.as_str())
                    .map(str::to_string)
                    .collect(),
                (Some(sep), _) => s.rsplit(sep.as_str()).map(str::to_string).collect(),
                (None, _) => s.split_whitespace().rev().map(str::to_string).collect(),
            };
            parts.reverse();
            Ok(Value::from(parts))
        }
        (ValueKind::String, "zfill") => {
            let s = value.as_str().unwrap_or_default();
            let width = args
                .first()
                .and_then(|w| usize::try_from(w.clone()).ok())
                .unwrap_or(0);
            Ok(Value::from(format!("{s:0>width$}")))
        }
        (ValueKind::String, "__mod__") => Err(fail(
            "'%' string formatting is not supported; use the format filter",
        )),
        (ValueKind::Seq, "index") => {
            let needle = args.first().cloned().unwrap_or_default();
            value
                .try_iter()?
                .position(|x| x == needle)
                .map(Value::from)
                .ok_or_else(|| fail(format!("{} is not in list", py_repr(&needle))))
        }
        (ValueKind::Map, "copy") => Ok(value.clone()),
        _ => minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args),
    }
}
