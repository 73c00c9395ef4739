//! The variables a template sees: `LazyVars` renders a variable's own templates when it is first
//! read (with a cycle guard), and a per-thread stack of render frames lets the output formatter
//! and lookups find the render they belong to.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

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
        }
    }

    /// The underlying reason `name` was undefined, if its own template failed on an undefined.
    pub fn undefined_reason(&self, name: &str) -> Option<TemplateError> {
        self.why_undefined.lock().ok()?.get(name).cloned()
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
        let value = if has_template(raw) {
            {
                let mut active = self.active.lock().ok()?;
                if active.iter().any(|n| n == name) {
                    let mut chain = active.clone();
                    chain.push(name.to_string());
                    let err = TemplateError::new(
                        TemplateErrorKind::Recursion,
                        format!(
                            "recursive loop detected in template: {}",
                            chain.join(" -> ")
                        ),
                    );
                    return Some(Value::from(err.into_mj()));
                }
                active.push(name.to_string());
            }
            let rendered = self.templar.render_json_in(self, raw);
            if let Ok(mut active) = self.active.lock() {
                active.retain(|n| n != name);
            }
            match rendered {
                Ok(json) => to_mj(&json),
                Err(err) if err.kind == TemplateErrorKind::Undefined => {
                    // Like Ansible, a variable whose template needs an undefined name is itself
                    // undefined (so `x | default(...)` and `x is defined` still work).
                    if let Ok(mut why) = self.why_undefined.lock() {
                        why.insert(name.to_string(), err);
                    }
                    return None;
                }
                Err(err) => return Some(Value::from(err.into_mj())),
            }
        } else {
            to_mj(raw)
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(name.to_string(), value.clone());
        }
        Some(value)
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
