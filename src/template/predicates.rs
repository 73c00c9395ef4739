//! Ansible's Jinja tests: `version`, task-result tests (`failed`, `changed`…), regex tests,
//! set tests, and local path tests.

use std::cmp::Ordering;
use std::path::Path;

use minijinja::value::{Kwargs, Rest, Value, ValueKind};
use minijinja::{Environment, Error};
use serde_json::Value as Json;

use super::convert::{ansible_bool, py_str};
use super::filters::{compile_regex, data, fail, need, text};

/// Registers every test.
pub(crate) fn register(env: &mut Environment<'static>) {
    env.add_test("version", version_test);
    env.add_test("version_compare", version_test);
    env.add_test("succeeded", |v: Value| {
        result_flag(&v, "succeeded").map(|f| !f)
    });
    env.add_test("success", |v: Value| result_flag(&v, "success").map(|f| !f));
    env.add_test("failed", |v: Value| result_flag(&v, "failed"));
    env.add_test("failure", |v: Value| result_flag(&v, "failure"));
    env.add_test("changed", |v: Value| result_flag(&v, "changed"));
    env.add_test("change", |v: Value| result_flag(&v, "change"));
    env.add_test("skipped", |v: Value| result_flag(&v, "skipped"));
    env.add_test("skip", |v: Value| result_flag(&v, "skip"));
    env.add_test("finished", |v: Value| -> Result<bool, Error> {
        let r = result_dict(&v, "finished")?;
        Ok(r.get("finished")
            .map(|f| f.as_i64() != Some(0) && f != &Json::Bool(false))
            .unwrap_or(true))
    });
    env.add_test("match", |v: Value, p: String, kwargs: Kwargs| {
        regex_test(v, p, kwargs, "match")
    });
    env.add_test("search", |v: Value, p: String, kwargs: Kwargs| {
        regex_test(v, p, kwargs, "search")
    });
    env.add_test("regex", |v: Value, p: String, kwargs: Kwargs| {
        let mt = if kwargs.has("match_type") {
            kwargs.get::<String>("match_type")?
        } else {
            "search".into()
        };
        regex_test(v, p, kwargs, &mt)
    });
    env.add_test("subset", |a: Value, b: Value| -> Result<bool, Error> {
        let (a, b) = (items(&a)?, items(&b)?);
        Ok(a.iter().all(|x| b.contains(x)))
    });
    env.add_test("superset", |a: Value, b: Value| -> Result<bool, Error> {
        let (a, b) = (items(&a)?, items(&b)?);
        Ok(b.iter().all(|x| a.contains(x)))
    });
    env.add_test(
        "contains",
        |seq: Value, item: Value| -> Result<bool, Error> {
            need(&seq)?;
            Ok(seq.try_iter()?.any(|x| x == item))
        },
    );
    env.add_test("any", |v: Value| -> Result<bool, Error> {
        Ok(v.try_iter()?.any(|x| x.is_true()))
    });
    env.add_test("all", |v: Value| -> Result<bool, Error> {
        Ok(v.try_iter()?.all(|x| x.is_true()))
    });
    env.add_test("truthy", |v: Value| v.is_true());
    env.add_test("falsy", |v: Value| !v.is_true());
    env.add_test("bool", |v: Value| v.kind() == ValueKind::Bool);
    env.add_test("file", |v: Value| -> Result<bool, Error> {
        Ok(Path::new(&text(&v)?).is_file())
    });
    env.add_test("directory", |v: Value| -> Result<bool, Error> {
        Ok(Path::new(&text(&v)?).is_dir())
    });
    env.add_test("exists", |v: Value| -> Result<bool, Error> {
        Ok(Path::new(&text(&v)?).exists())
    });
    env.add_test("link", |v: Value| -> Result<bool, Error> {
        Ok(Path::new(&text(&v)?).is_symlink())
    });
    env.add_test("abs", |v: Value| -> Result<bool, Error> {
        Ok(Path::new(&text(&v)?).is_absolute())
    });
}

fn items(v: &Value) -> Result<Vec<Json>, Error> {
    match data(v)? {
        Json::Array(a) => Ok(a),
        Json::Object(m) => Ok(m.into_iter().map(|(k, _)| Json::String(k)).collect()),
        other => Ok(vec![other]),
    }
}

fn result_dict(v: &Value, test: &str) -> Result<serde_json::Map<String, Json>, Error> {
    match data(v)? {
        Json::Object(m) => Ok(m),
        _ => Err(fail(format!("The '{test}' test expects a dictionary"))),
    }
}

/// Whether a registered task result is failed/changed/skipped (`succeeded` is `!failed`).
fn result_flag(v: &Value, test: &str) -> Result<bool, Error> {
    let r = result_dict(v, test)?;
    let key = match test {
        "succeeded" | "success" | "failed" | "failure" => "failed",
        "changed" | "change" => "changed",
        _ => "skipped",
    };
    let truthy = |j: Option<&Json>| {
        j.map(|x| ansible_bool(&super::convert::to_mj(x)))
            .unwrap_or(false)
    };
    if key == "changed" {
        if let Some(Json::Array(results)) = r.get("results") {
            if results.iter().all(Json::is_object) && !results.is_empty() {
                return Ok(
                    results.iter().any(|x| truthy(x.get("changed"))) || truthy(r.get("changed"))
                );
            }
        }
    }
    Ok(truthy(r.get(key)))
}

fn regex_test(v: Value, pattern: String, kwargs: Kwargs, mode: &str) -> Result<bool, Error> {
    let s = text(&v)?;
    let ignorecase = kwargs.has("ignorecase") && kwargs.get::<bool>("ignorecase")?;
    let multiline = kwargs.has("multiline") && kwargs.get::<bool>("multiline")?;
    let re = compile_regex(&pattern, ignorecase, multiline)?;
    Ok(match mode {
        "match" => compile_regex(&format!("\\A(?:{pattern})"), ignorecase, multiline)?.is_match(&s),
        "fullmatch" => {
            compile_regex(&format!("\\A(?:{pattern})\\z"), ignorecase, multiline)?.is_match(&s)
        }
        _ => re.is_match(&s),
    })
}

/// One component of a loose version (`1.2.3rc1` → 1, 2, 3, "rc", 1).
#[derive(Debug, PartialEq, Eq)]
enum Part {
    Num(u64),
    Text(String),
}

impl PartialOrd for Part {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Part {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Part::Num(a), Part::Num(b)) => a.cmp(b),
            (Part::Text(a), Part::Text(b)) => a.cmp(b),
            (Part::Num(_), Part::Text(_)) => Ordering::Greater,
            (Part::Text(_), Part::Num(_)) => Ordering::Less,
        }
    }
}

/// Splits like Python's `LooseVersion` (runs of digits, runs of letters, other separators dropped
/// except non-dot punctuation, which is kept as text).
fn loose_parts(s: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_ascii_digit() {
            let mut n = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                n.push(d);
                chars.next();
            }
            parts.push(Part::Num(n.parse().unwrap_or(u64::MAX)));
        } else if c.is_ascii_alphabetic() {
            let mut t = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_alphabetic()) {
                t.push(d);
                chars.next();
            }
            parts.push(Part::Text(t));
        } else {
            chars.next();
            if c != '.' {
                parts.push(Part::Text(c.to_string()));
            }
        }
    }
    parts
}

/// Semantic-version ordering: a pre-release sorts before its release.
fn semver_cmp(a: &str, b: &str) -> Ordering {
    let split = |s: &str| {
        let s = s.trim_start_matches('v');
        let s = s.split('+').next().unwrap_or("");
        match s.split_once('-') {
            Some((core, pre)) => (core.to_string(), Some(pre.to_string())),
            None => (s.to_string(), None),
        }
    };
    let (ac, ap) = split(a);
    let (bc, bp) = split(b);
    match loose_parts(&ac).cmp(&loose_parts(&bc)) {
        Ordering::Equal => match (ap, bp) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => loose_parts(&x).cmp(&loose_parts(&y)),
        },
        o => o,
    }
}

/// `version(value, other, operator, strict=?, version_type=?)`.
pub(crate) fn compare_versions(
    value: &str,
    other: &str,
    op: &str,
    version_type: &str,
) -> Result<bool, Error> {
    let ord = match version_type {
        "semver" | "semantic" => semver_cmp(value, other),
        _ => loose_parts(value).cmp(&loose_parts(other)),
    };
    Ok(match op {
        "<" | "lt" => ord == Ordering::Less,
        "<=" | "le" => ord != Ordering::Greater,
        ">" | "gt" => ord == Ordering::Greater,
        ">=" | "ge" => ord != Ordering::Less,
        "==" | "=" | "eq" => ord == Ordering::Equal,
        "!=" | "<>" | "ne" => ord != Ordering::Equal,
        other => return Err(fail(format!("Invalid operator type ({other})"))),
    })
}

fn version_args(v: &Value, args: &[Value], kwargs: &Kwargs) -> Result<bool, Error> {
    need(v)?;
    let value = py_str(v);
    let other = match args.first() {
        Some(o) => py_str(o),
        None if kwargs.has("version") => kwargs.get::<String>("version")?,
        None => return Err(fail("version test needs a version to compare with")),
    };
    let op = match args.get(1) {
        Some(o) => py_str(o),
        None if kwargs.has("operator") => kwargs.get::<String>("operator")?,
        None => "eq".into(),
    };
    let strict = kwargs.has("strict") && kwargs.get::<bool>("strict")?;
    let version_type = if kwargs.has("version_type") {
        kwargs.get::<String>("version_type")?
    } else if strict {
        "strict".into()
    } else {
        "loose".into()
    };
    compare_versions(&value, &other, &op, &version_type)
}

fn version_test(v: Value, args: Rest<Value>, kwargs: Kwargs) -> Result<bool, Error> {
    version_args(&v, &args, &kwargs)
}

/// `version_compare` as a filter.
pub(crate) fn version_filter(v: Value, args: Rest<Value>, kwargs: Kwargs) -> Result<bool, Error> {
    version_args(&v, &args, &kwargs)
}
