//! The variables a template sees: `LazyVars` renders a variable's own templates when it is first
//! read (with a cycle guard), and a per-thread stack of render frames lets the output formatter
//! and lookups find the render they belong to.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use serde_json::{Map, Value as Json};

use super::convert::to_mj;
use super::error::{TemplateError, TemplateErrorKind};
use super::{has_template, Templar, OMIT};

/// Raw variables of one scope, templated on access; shared by all renders of one API call.
pub(crate) struct LazyVars {
    pub templar: Templar,
    pub raw: Arc<Map<String, Json>>,
    pub search_paths: Vec<PathBuf>,
    cache: Mutex<HashMap<String, Value>>,
    /// Names being rendered right now, outermost first (the cycle guard).
    active: Mutex<Vec<String>>,
    /// Why a variable rendered as undefined (its own template used an undefined name).
    why_undefined: Mutex<HashMap<String, TemplateError>>,
    /// The most recent failure while rendering a variable (for errors found while converting).
    last_failure: Mutex<Option<TemplateError>>,
}

impl std::fmt::Debug for LazyVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<vars: {} names>", self.raw.len())
    }
}

impl LazyVars {
    pub fn new(templar: Templar, raw: Arc<Map<String, Json>>, search_paths: Vec<PathBuf>) -> Self {
        LazyVars {
            templar,
            raw,
            search_paths,
            cache: Mutex::new(HashMap::new()),
            active: Mutex::new(Vec::new()),
            why_undefined: Mutex::new(HashMap::new()),
            last_failure: Mutex::new(None),
        }
    }

    /// The underlying reason `name` was undefined, if its own template failed on an undefined.
    pub fn undefined_reason(&self, name: &str) -> Option<TemplateError> {
        self.why_undefined.lock().ok()?.get(name).cloned()
    }

    /// The most recent failure while rendering a variable of this scope.
    pub fn last_failure(&self) -> Option<TemplateError> {
        self.last_failure.lock().ok()?.clone()
    }

    fn record_failure(&self, err: &TemplateError) {
        if let Ok(mut last) = self.last_failure.lock() {
            *last = Some(err.clone());
        }
    }

    /// The value of variable `name`, rendered; `None` when it does not exist.
    fn lookup(self: &Arc<Self>, name: &str) -> Option<Value> {
        if let Some(v) = self.cache.lock().ok().and_then(|c| c.get(name).cloned()) {
            return Some(v);
        }
        let Some(raw) = self.raw.get(name) else {
            return match name {
                "vars" => Some(Value::from_dyn_object(self.clone())),
                "omit" => Some(Value::from(OMIT)),
                _ => None,
            };
        };
        let value = match self.render_item(raw, name, name) {
            Ok(v) => v,
            Err(None) => return None,
            Err(Some(invalid)) => return Some(invalid),
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(name.to_string(), value.clone());
        }
        Some(value)
    }
}

impl LazyVars {
    /// Renders one raw value found at `path` (inside top-level variable `root`): strings are
    /// templated now, containers holding templates become [`LazyNode`]s rendered per item.
    /// `Err(None)` means undefined; `Err(Some(v))` is an invalid value carrying the error.
    fn render_item(
        self: &Arc<Self>,
        raw: &Json,
        path: &str,
        root: &str,
    ) -> Result<Value, Option<Value>> {
        if !has_template(raw) {
            return Ok(to_mj(raw));
        }
        let Json::String(text) = raw else {
            let keys_templated =
                matches!(raw, Json::Object(m) if m.keys().any(|k| super::has_markers(k)));
            if !keys_templated {
                return Ok(Value::from_object(LazyNode {
                    vars: Arc::downgrade(self),
                    raw: raw.clone(),
                    path: path.to_string(),
                    root: root.to_string(),
                    cache: Mutex::new(HashMap::new()),
                }));
            }
            return self.guarded(path, root, |vars| vars.templar.render_json_in(vars, raw));
        };
        self.guarded(path, root, |vars| vars.templar.render_text_in(vars, text))
    }

    /// Runs `render` for `path` under the cycle guard, mapping its outcome for `render_item`.
    fn guarded(
        self: &Arc<Self>,
        path: &str,
        root: &str,
        render: impl FnOnce(&Arc<Self>) -> Result<Json, TemplateError>,
    ) -> Result<Value, Option<Value>> {
        {
            let mut active = self.active.lock().map_err(|_| None)?;
            if active.iter().any(|n| n == path) {
                let mut chain = active.clone();
                chain.push(path.to_string());
                let err = TemplateError::new(
                    TemplateErrorKind::Recursion,
                    format!(
                        "recursive loop detected in template: {}",
                        chain.join(" -> ")
                    ),
                );
                self.record_failure(&err);
                return Err(Some(Value::from(err.into_mj())));
            }
            active.push(path.to_string());
        }
        let rendered = render(self);
        if let Ok(mut active) = self.active.lock() {
            if let Some(pos) = active.iter().rposition(|n| n == path) {
                active.remove(pos);
            }
        }
        match rendered {
            Ok(json) => Ok(to_mj(&json)),
            Err(err) if err.kind == TemplateErrorKind::Undefined => {
                self.record_failure(&err);
                // Like Ansible, a value whose template needs an undefined name is itself
                // undefined (so `x | default(...)` and `x is defined` still work).
                if let Ok(mut why) = self.why_undefined.lock() {
                    why.entry(root.to_string()).or_insert_with(|| err.clone());
                    why.insert(path.to_string(), err);
                }
                Err(None)
            }
            Err(err) => {
                self.record_failure(&err);
                Err(Some(Value::from(err.into_mj())))
            }
        }
    }
}

/// A dict or list inside a variable that holds templates; items are rendered when read.
#[derive(Debug)]
struct LazyNode {
    vars: Weak<LazyVars>,
    raw: Json,
    path: String,
    root: String,
    cache: Mutex<HashMap<String, Value>>,
}

impl Object for LazyNode {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.raw {
            Json::Array(_) => ObjectRepr::Seq,
            _ => ObjectRepr::Map,
        }
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let (item, key_text) = match &self.raw {
            Json::Object(m) => {
                let k = key.as_str()?;
                (m.get(k)?, k.to_string())
            }
            Json::Array(a) => {
                let idx = i64::try_from(key.clone()).ok()?;
                let idx = if idx < 0 { a.len() as i64 + idx } else { idx };
                (a.get(usize::try_from(idx).ok()?)?, idx.to_string())
            }
            _ => return None,
        };
        if let Some(v) = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(&key_text).cloned())
        {
            return Some(v);
        }
        let vars = self.vars.upgrade()?;
        let path = format!("{}.{}", self.path, key_text);
        let value = match vars.render_item(item, &path, &self.root) {
            Ok(v) => v,
            Err(None) => return None,
            Err(Some(invalid)) => return Some(invalid),
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key_text, value.clone());
        }
        Some(value)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match &self.raw {
            Json::Object(m) => {
                Enumerator::Values(m.keys().map(|k| Value::from(k.as_str())).collect())
            }
            Json::Array(a) => Enumerator::Seq(a.len()),
            _ => Enumerator::Empty,
        }
    }
}

impl Object for LazyVars {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.lookup(key.as_str()?)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.raw.keys().map(|k| Value::from(k.as_str())).collect())
    }
}

/// One render in progress on this thread.
struct Frame {
    vars: Arc<LazyVars>,
    native: bool,
    captured: Option<Value>,
}

thread_local! {
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// Pops its frame when dropped, so an error or panic never leaves a stale frame behind.
pub(crate) struct FrameGuard {
    depth: usize,
}

impl FrameGuard {
    /// Starts a render over `vars`; in `native` mode the printed value is captured, not written.
    pub fn push(vars: Arc<LazyVars>, native: bool) -> FrameGuard {
        let depth = FRAMES.with(|f| {
            let mut frames = f.borrow_mut();
            frames.push(Frame {
                vars,
                native,
                captured: None,
            });
            frames.len()
        });
        FrameGuard { depth }
    }

    /// The value captured by a native render.
    pub fn take_captured(&self) -> Option<Value> {
        FRAMES.with(|f| {
            f.borrow_mut()
                .get_mut(self.depth - 1)
                .and_then(|fr| fr.captured.take())
        })
    }
}

impl Drop for FrameGuard {
    fn drop(&mut self) {
        FRAMES.with(|f| f.borrow_mut().truncate(self.depth - 1));
    }
}

/// The variables of the innermost render on this thread.
pub(crate) fn current_vars() -> Option<Arc<LazyVars>> {
    FRAMES.with(|f| f.borrow().last().map(|fr| fr.vars.clone()))
}

/// Called for every `{{ }}` output: captures it (native render) or reports whether it must be
/// written as text. Returns `true` when the value was captured.
pub(crate) fn capture(value: &Value) -> bool {
    FRAMES.with(|f| match f.borrow_mut().last_mut() {
        Some(fr) if fr.native => {
            fr.captured = Some(value.clone());
            true
        }
        _ => false,
    })
}
