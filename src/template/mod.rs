//! Jinja templating with Ansible's semantics on minijinja: lazy variables, native result types,
//! chainable undefined values that fail when printed, `omit`, and Ansible's filters, tests and lookups.
//!
//! [`Templar`] is built once and shared; each call gets a [`Scope`] (the raw, untemplated
//! variables of a host/task). Variables that are themselves templates are rendered when read.

mod context;
mod convert;
mod error;
mod filters;
mod lookups;
mod netaddr;
mod predicates;
mod undefined;
mod yaml;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::value::Value as MjValue;
use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};

use context::{FrameGuard, LazyVars};
pub use error::{TemplateError, TemplateErrorKind};

/// The value of the `omit` variable; a module argument rendering to exactly this is dropped.
pub const OMIT: &str = "__omit_place_holder__2b1f7c9e4d__duststack__";

/// Template names starting with this hold their own source (inline strings).
const INLINE: char = '\u{1}';
/// Template names starting with this hold a bare expression.
const EXPR: char = '\u{2}';
/// Template names starting with this are file paths (includes of file templates).
const FILE: char = '\u{3}';
/// Bytes put in front of an expression to make it a template (`{{ `).
const EXPR_SHIFT: usize = 3;

/// Variables visible to one render: the raw (untemplated) vars of a host/task, plus file
/// search paths for lookups.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Variables by name; values may themselves contain templates.
    pub vars: Arc<Map<String, Value>>,
    /// Directories searched, in order, for relative paths in `lookup('file')` and friends.
    pub search_paths: Vec<PathBuf>,
}

impl Scope {
    /// A scope over `vars` with no search paths.
    pub fn new(vars: Map<String, Value>) -> Scope {
        Scope {
            vars: Arc::new(vars),
            search_paths: Vec::new(),
        }
    }
}

/// The template engine: a minijinja environment with Ansible's filters, tests and lookups.
#[derive(Clone)]
pub struct Templar {
    env: Arc<Environment<'static>>,
}

impl Default for Templar {
    fn default() -> Self {
        Templar::new()
    }
}

impl std::fmt::Debug for Templar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templar")
    }
}

impl Templar {
    /// Builds the environment (once; clone the `Templar` to share it).
    pub fn new() -> Templar {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_debug(true);
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(false)
            .keep_trailing_newline(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        env.set_loader(load_template);
        env.set_path_join_callback(join_template_path);
        env.set_formatter(|out, _state, value| {
            if value.is_undefined() {
                return Err(minijinja::Error::new(
                    minijinja::ErrorKind::UndefinedError,
                    error::UNDEFINED_OUTPUT,
                ));
            }
            if context::capture(value) {
                return Ok(());
            }
            out.write_str(&convert::py_str(value)).map_err(|_| {
                minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "write failed")
            })
        });
        env.set_unknown_method_callback(filters::unknown_method);
        filters::register(&mut env);
        predicates::register(&mut env);
        lookups::register(&mut env);
        Templar { env: Arc::new(env) }
    }

    fn vars_for(&self, scope: &Scope) -> Arc<LazyVars> {
        Arc::new(LazyVars::new(
            self.clone(),
            scope.vars.clone(),
            scope.search_paths.clone(),
        ))
    }

    /// Renders `text`. A string that is exactly one `{{ expr }}` yields the expression's native
    /// value (list, dict, number…); anything else renders to a string. Text without template
    /// markers is returned unchanged without touching the engine.
    pub fn render_str(&self, text: &str, scope: &Scope) -> Result<Value, TemplateError> {
        if !has_markers(text) {
            return Ok(Value::String(text.to_string()));
        }
        self.render_text_in(&self.vars_for(scope), text)
    }

    /// Renders every string in `value` (recursively through maps and lists). Map entries and
    /// list items whose value renders to [`OMIT`] are dropped.
    pub fn render_value(&self, value: &Value, scope: &Scope) -> Result<Value, TemplateError> {
        if !has_template(value) {
            return Ok(value.clone());
        }
        self.render_json_in(&self.vars_for(scope), value)
    }

    /// Evaluates a bare expression (`when:`, `until:`, `that:` items) to its native value.
    pub fn evaluate(&self, expr: &str, scope: &Scope) -> Result<Value, TemplateError> {
        let vars = self.vars_for(scope);
        self.evaluate_in(&vars, expr)
    }

    /// Ansible truthiness of [`evaluate`](Self::evaluate): booleans as they are, the strings
    /// `true/false/yes/no/on/off/1/0` as booleans, anything else by Python truthiness.
    pub fn is_true(&self, expr: &str, scope: &Scope) -> Result<bool, TemplateError> {
        let value = self.evaluate(expr, scope)?;
        Ok(truthy(&value))
    }

    /// [`is_true`](Self::is_true) for a condition that may already be a boolean (YAML `when: true`).
    pub fn is_true_value(&self, cond: &Value, scope: &Scope) -> Result<bool, TemplateError> {
        match cond {
            Value::String(s) => self.is_true(s, scope),
            other => Ok(truthy(other)),
        }
    }

    /// Renders a template file's `source` (the `template` module): trim_blocks on, lstrip_blocks
    /// off, trailing newline kept. `name` (its path) is used for messages and relative includes.
    pub fn render_template_file(
        &self,
        source: &str,
        name: &str,
        scope: &Scope,
    ) -> Result<String, TemplateError> {
        let vars = self.vars_for(scope);
        self.render_file_in(&vars, source, name)
    }

    pub(crate) fn render_file_in(
        &self,
        vars: &Arc<LazyVars>,
        source: &str,
        name: &str,
    ) -> Result<String, TemplateError> {
        let _frame = FrameGuard::push(vars.clone(), false);
        let tmpl_name = format!("{FILE}{name}");
        self.env
            .render_named_str(&tmpl_name, source, MjValue::from_dyn_object(vars.clone()))
            .map_err(|e| {
                let mut err = self.explain(vars, &e, source, 0);
                err.message = format!("{}: {}", name, err.message);
                err
            })
    }

    /// Renders one string with shared variables (the engine behind `render_str`).
    pub(crate) fn render_text_in(
        &self,
        vars: &Arc<LazyVars>,
        text: &str,
    ) -> Result<Value, TemplateError> {
        if !has_markers(text) {
            return Ok(Value::String(text.to_string()));
        }
        let native = is_single_expression(text);
        let name = format!("{INLINE}{text}");
        let tmpl = self
            .env
            .get_template(&name)
            .map_err(|e| self.explain(vars, &e, text, 0))?;
        let frame = FrameGuard::push(vars.clone(), native);
        let out = tmpl
            .render(MjValue::from_dyn_object(vars.clone()))
            .map_err(|e| self.explain(vars, &e, text, 0))?;
        if native {
            if let Some(value) = frame.take_captured() {
                return convert::to_json(&value).map_err(|e| TemplateError::from_mj(&e, text, 0));
            }
        }
        Ok(Value::String(out))
    }

    /// Evaluates an expression with shared variables.
    pub(crate) fn evaluate_in(
        &self,
        vars: &Arc<LazyVars>,
        expr: &str,
    ) -> Result<Value, TemplateError> {
        if has_markers(expr) {
            return self.render_text_in(vars, expr);
        }
        if expr.trim().is_empty() {
            return Err(TemplateError::new(
                TemplateErrorKind::Syntax,
                "empty expression",
            ));
        }
        let name = format!("{EXPR}{expr}");
        let source = expr_source(expr);
        let tmpl = self
            .env
            .get_template(&name)
            .map_err(|e| self.explain(vars, &e, &source, EXPR_SHIFT))?;
        let frame = FrameGuard::push(vars.clone(), true);
        tmpl.render(MjValue::from_dyn_object(vars.clone()))
            .map_err(|e| self.explain(vars, &e, &source, EXPR_SHIFT))?;
        let value = frame.take_captured().unwrap_or(MjValue::from(()));
        convert::to_json(&value).map_err(|e| TemplateError::from_mj(&e, &source, EXPR_SHIFT))
    }

    /// Renders every string inside `value` with shared variables, dropping omitted entries.
    pub(crate) fn render_json_in(
        &self,
        vars: &Arc<LazyVars>,
        value: &Value,
    ) -> Result<Value, TemplateError> {
        match value {
            Value::String(s) => self.render_text_in(vars, s),
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let v = self.render_json_in(vars, item)?;
                    if !is_omit(&v) {
                        out.push(v);
                    }
                }
                Ok(Value::Array(out))
            }
            Value::Object(map) => {
                let mut out = Map::with_capacity(map.len());
                for (k, item) in map {
                    let v = self.render_json_in(vars, item)?;
                    if is_omit(&v) {
                        continue;
                    }
                    let key = if has_markers(k) {
                        match self.render_text_in(vars, k)? {
                            Value::String(s) => s,
                            other => other.to_string(),
                        }
                    } else {
                        k.clone()
                    };
                    out.insert(key, v);
                }
                Ok(Value::Object(out))
            }
            other => Ok(other.clone()),
        }
    }

    /// Turns an engine error into a `TemplateError`, naming the underlying undefined variable.
    fn explain(
        &self,
        vars: &Arc<LazyVars>,
        err: &minijinja::Error,
        source: &str,
        shift: usize,
    ) -> TemplateError {
        let mut te = TemplateError::from_mj(err, source, shift);
        if te.kind != TemplateErrorKind::Undefined {
            return te;
        }
        if te.message.ends_with(" (in '') is undefined") || !te.message.ends_with(" is undefined") {
            return te;
        }
        // Look at the whole `{{ }}`/`{% %}` around the failing span: a filter call's span may
        // cover only the filter name.
        let Some(range) = err.range() else {
            return te;
        };
        let start = range.start.min(source.len());
        let end = range.end.min(source.len()).max(start);
        let open = [source[..start].rfind("{{"), source[..start].rfind("{%")]
            .into_iter()
            .flatten()
            .max()
            .map(|i| i + 2)
            .unwrap_or(0);
        let close = [source[end..].find("}}"), source[end..].find("%}")]
            .into_iter()
            .flatten()
            .min()
            .map(|i| end + i)
            .unwrap_or(source.len());
        let expr = source.get(open..close).unwrap_or(&source[start..end]);
        if let Some(better) = undefined::describe(vars, expr, source) {
            te.message = better.message;
            if better.kind != TemplateErrorKind::Undefined {
                te.kind = better.kind;
            }
        }
        te
    }
}

/// Ansible truthiness of a conditional's result.
fn truthy(value: &Value) -> bool {
    match value {
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" | "y" => true,
            "false" | "no" | "off" | "0" | "n" | "" | "none" | "null" => false,
            _ => true,
        },
        other => convert::json_truthy(other),
    }
}

fn is_omit(v: &Value) -> bool {
    matches!(v, Value::String(s) if s == OMIT)
}

/// Whether `text` holds any Jinja markers.
pub(crate) fn has_markers(text: &str) -> bool {
    let b = text.as_bytes();
    memchr_brace(b)
}

fn memchr_brace(b: &[u8]) -> bool {
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'{' && matches!(b[i + 1], b'{' | b'%' | b'#') {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether any string inside `value` holds Jinja markers.
pub(crate) fn has_template(value: &Value) -> bool {
    match value {
        Value::String(s) => has_markers(s),
        Value::Array(items) => items.iter().any(has_template),
        Value::Object(map) => map.iter().any(|(k, v)| has_markers(k) || has_template(v)),
        _ => false,
    }
}

/// Whether `text` is exactly one `{{ expr }}` (so the result keeps its native type).
fn is_single_expression(text: &str) -> bool {
    let Some(inner) = text.strip_prefix("{{").and_then(|t| t.strip_suffix("}}")) else {
        return false;
    };
    !inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%") && !inner.contains("{#")
}

fn expr_source(expr: &str) -> String {
    format!("{{{{ {expr}\n}}}}")
}

/// Loader: inline sources and expressions carry their text in the name; files are read
/// (their names were resolved to paths by [`join_template_path`]).
fn load_template(name: &str) -> Result<Option<String>, minijinja::Error> {
    if let Some(text) = name.strip_prefix(INLINE) {
        return Ok(Some(text.to_string()));
    }
    if let Some(expr) = name.strip_prefix(EXPR) {
        return Ok(Some(expr_source(expr)));
    }
    let path = Path::new(name.strip_prefix(FILE).unwrap_or(name));
    if !path.is_file() {
        return Ok(None);
    }
    std::fs::read_to_string(path).map(Some).map_err(|e| {
        minijinja::Error::new(
            minijinja::ErrorKind::TemplateNotFound,
            format!("cannot read {}: {e}", path.display()),
        )
    })
}

/// `{% include 'x.j2' %}` resolves next to the including file first, then in the render's
/// search paths (and their `templates/` subdirectories), then relative to the working directory.
fn join_template_path<'s>(name: &'s str, parent: &'s str) -> Cow<'s, str> {
    let p = Path::new(name);
    if p.is_absolute() {
        return Cow::Owned(format!("{FILE}{name}"));
    }
    let mut candidates = Vec::new();
    if let Some(dir) = parent
        .strip_prefix(FILE)
        .and_then(|pp| Path::new(pp).parent())
    {
        candidates.push(dir.join(p));
    }
    if let Some(vars) = context::current_vars() {
        for dir in &vars.search_paths {
            candidates.push(dir.join("templates").join(p));
            candidates.push(dir.join(p));
        }
    }
    for c in candidates {
        if c.is_file() {
            return Cow::Owned(format!("{FILE}{}", c.display()));
        }
    }
    Cow::Owned(format!("{FILE}{name}"))
}
