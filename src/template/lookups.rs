//! `lookup()`/`query()`: env, file, template, pipe, vars, first_found, fileglob, items/list, dict.
//! Relative paths are searched in the scope's search paths (and their `files/`/`templates/`
//! subdirectories), then in the working directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::value::{Kwargs, Rest, Value, ValueKind};
use minijinja::{Environment, Error};
use serde_json::Value as Json;

use super::context::{current_vars, LazyVars};
use super::convert::{py_str, to_mj};
use super::filters::{data, fail, need};

/// Registers `lookup`, `query` and `q`.
pub(crate) fn register(env: &mut Environment<'static>) {
    env.add_function(
        "lookup",
        |name: String, terms: Rest<Value>, kwargs: Kwargs| {
            let wantlist = kwargs.has("wantlist") && kwargs.get::<bool>("wantlist")?;
            let results = run(&name, &terms, &kwargs)?;
            Ok(if wantlist {
                Value::from(results)
            } else {
                join(results)
            })
        },
    );
    env.add_function(
        "query",
        |name: String, terms: Rest<Value>, kwargs: Kwargs| {
            run(&name, &terms, &kwargs).map(Value::from)
        },
    );
    env.add_function("q", |name: String, terms: Rest<Value>, kwargs: Kwargs| {
        run(&name, &terms, &kwargs).map(Value::from)
    });
}

/// `lookup()` without `wantlist`: one result as itself, several strings joined with commas.
fn join(results: Vec<Value>) -> Value {
    match results.len() {
        0 => Value::from(()),
        1 => results.into_iter().next().unwrap_or_default(),
        _ if results.iter().all(|r| r.kind() == ValueKind::String) => {
            Value::from(results.iter().map(py_str).collect::<Vec<_>>().join(","))
        }
        _ => Value::from(results),
    }
}

fn scope_vars() -> Result<Arc<LazyVars>, Error> {
    current_vars().ok_or_else(|| fail("lookup used outside of a render"))
}

/// Terms as strings; a list term contributes its items.
fn term_strings(terms: &[Value]) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for t in terms {
        need(t)?;
        match t.kind() {
            ValueKind::Seq => out.extend(t.try_iter()?.map(|x| py_str(&x))),
            _ => out.push(py_str(t)),
        }
    }
    Ok(out)
}

/// Finds `name` under `subdir` of each search path, then in each search path, then as given.
pub(crate) fn find_file(vars: &LazyVars, name: &str, subdir: &str) -> Option<PathBuf> {
    let p = Path::new(name);
    if p.is_absolute() {
        return p.exists().then(|| p.to_path_buf());
    }
    for dir in &vars.search_paths {
        for candidate in [dir.join(subdir).join(p), dir.join(p)] {
            if candidate.exists() {
                return Some(candidate);
            }
        }
    }
    p.exists().then(|| p.to_path_buf())
}

fn run(name: &str, terms: &[Value], kwargs: &Kwargs) -> Result<Vec<Value>, Error> {
    let name = name
        .strip_prefix("ansible.builtin.")
        .or_else(|| name.strip_prefix("community.general."))
        .unwrap_or(name);
    match name {
        "env" => {
            let default = if kwargs.has("default") {
                Some(kwargs.get::<Value>("default")?)
            } else {
                None
            };
            Ok(term_strings(terms)?
                .into_iter()
                .map(|t| match std::env::var(&t) {
                    Ok(v) => Value::from(v),
                    Err(_) => default.clone().unwrap_or(Value::from("")),
                })
                .collect())
        }
        "file" => {
            let vars = scope_vars()?;
            let rstrip = !kwargs.has("rstrip") || kwargs.get::<bool>("rstrip")?;
            let lstrip = kwargs.has("lstrip") && kwargs.get::<bool>("lstrip")?;
            let mut out = Vec::new();
            for t in term_strings(terms)? {
                let path = find_file(&vars, &t, "files")
                    .ok_or_else(|| fail(format!("could not locate file in lookup: {t}")))?;
                let mut content = std::fs::read_to_string(&path)
                    .map_err(|e| fail(format!("could not read {}: {e}", path.display())))?;
                if rstrip {
                    content.truncate(content.trim_end().len());
                }
                if lstrip {
                    content = content.trim_start().to_string();
                }
                out.push(Value::from(content));
            }
            Ok(out)
        }
        "template" => {
            let vars = scope_vars()?;
            let mut out = Vec::new();
            for t in term_strings(terms)? {
                let path = find_file(&vars, &t, "templates").ok_or_else(|| {
                    fail(format!(
                        "the template file {t} could not be found for the lookup"
                    ))
                })?;
                let source = std::fs::read_to_string(&path)
                    .map_err(|e| fail(format!("could not read {}: {e}", path.display())))?;
                let rendered = vars
                    .templar
                    .render_file_in(&vars, &source, &path.display().to_string())
                    .map_err(|e| e.into_mj())?;
                out.push(Value::from(rendered));
            }
            Ok(out)
        }
        "pipe" => {
            let mut out = Vec::new();
            for t in term_strings(terms)? {
                let output = std::process::Command::new("/bin/sh")
                    .arg("-c")
                    .arg(&t)
                    .output()
                    .map_err(|e| fail(format!("lookup pipe: cannot run '{t}': {e}")))?;
                if !output.status.success() {
                    return Err(fail(format!(
                        "lookup_plugin.pipe({t}) returned {}",
                        output.status.code().unwrap_or(-1)
                    )));
                }
                let s = String::from_utf8_lossy(&output.stdout);
                out.push(Value::from(s.trim_end()));
            }
            Ok(out)
        }
        "vars" => {
            let vars = scope_vars()?;
            let root = Value::from_dyn_object(vars.clone());
            let default = if kwargs.has("default") {
                Some(kwargs.get::<Value>("default")?)
            } else {
                None
            };
            let mut out = Vec::new();
            for t in term_strings(terms)? {
                let v = root.get_attr(&t).unwrap_or_default();
                if v.is_undefined() {
                    match &default {
                        Some(d) => out.push(d.clone()),
                        None => return Err(fail(format!("No variable found with this name: {t}"))),
                    }
                } else {
                    out.push(v);
                }
            }
            Ok(out)
        }
        "first_found" => {
            let vars = scope_vars()?;
            let mut files = term_strings(terms)?;
            let mut paths: Vec<String> = Vec::new();
            for t in terms {
                if t.kind() == ValueKind::Map {
                    if let Some(f) = t.get_attr("files").ok().filter(|f| !f.is_undefined()) {
                        files.extend(term_strings(&[f])?);
                    }
                    if let Some(p) = t.get_attr("paths").ok().filter(|p| !p.is_undefined()) {
                        paths.extend(term_strings(&[p])?);
                    }
                }
            }
            files.retain(|f| !f.starts_with('{'));
            if kwargs.has("files") {
                files.extend(term_strings(&[kwargs.get::<Value>("files")?])?);
            }
            if kwargs.has("paths") {
                paths.extend(term_strings(&[kwargs.get::<Value>("paths")?])?);
            }
            let skip = kwargs.has("skip") && kwargs.get::<bool>("skip")?;
            for f in &files {
                let mut candidates: Vec<String> =
                    paths.iter().map(|p| format!("{p}/{f}")).collect();
                candidates.push(f.clone());
                for c in candidates {
                    if let Some(found) = find_file(&vars, &c, "files") {
                        let abs = std::fs::canonicalize(&found).unwrap_or(found);
                        return Ok(vec![Value::from(abs.display().to_string())]);
                    }
                }
            }
            if skip {
                Ok(vec![])
            } else {
                Err(fail("No file was found when using first_found."))
            }
        }
        "fileglob" => {
            let vars = scope_vars()?;
            let mut out = Vec::new();
            for t in term_strings(terms)? {
                let mut patterns = vec![];
                if Path::new(&t).is_absolute() {
                    patterns.push(t.clone());
                } else {
                    for dir in &vars.search_paths {
                        patterns.push(dir.join("files").join(&t).display().to_string());
                        patterns.push(dir.join(&t).display().to_string());
                    }
                    patterns.push(t.clone());
                }
                for p in patterns {
                    let found: Vec<String> = glob::glob(&p)
                        .map_err(|e| fail(format!("fileglob: {e}")))?
                        .filter_map(Result::ok)
                        .filter(|p| p.is_file())
                        .map(|p| p.display().to_string())
                        .collect();
                    if !found.is_empty() {
                        out.extend(found.into_iter().map(Value::from));
                        break;
                    }
                }
            }
            Ok(out)
        }
        "items" | "list" | "flattened" => {
            let mut out = Vec::new();
            for t in terms {
                need(t)?;
                match t.kind() {
                    ValueKind::Seq if name != "list" => out.extend(t.try_iter()?),
                    _ => out.push(t.clone()),
                }
            }
            Ok(out)
        }
        "dict" => {
            let mut out = Vec::new();
            for t in terms {
                let Json::Object(m) = data(t)? else {
                    return Err(fail("with_dict expects a dict"));
                };
                for (k, v) in m {
                    out.push(to_mj(&serde_json::json!({"key": k, "value": v})));
                }
            }
            Ok(out)
        }
        other => Err(fail(format!("lookup plugin '{other}' is not supported"))),
    }
}
