//! `TemplateError`: what went wrong while templating, worded like Ansible's messages.

use std::fmt;

/// Marker detail of the undefined error raised when an undefined value is printed.
pub(crate) const UNDEFINED_OUTPUT: &str = "\u{0}undefined-output";

/// What kind of template failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateErrorKind {
    /// A variable (or attribute) used in a way that needs a value was undefined.
    Undefined,
    /// The template text does not parse.
    Syntax,
    /// Variables refer to each other in a cycle.
    Recursion,
    /// Anything else (bad filter argument, failed lookup, type errors…).
    Other,
}

/// A failure while rendering or evaluating a template.
#[derive(Debug, Clone, thiserror::Error)]
pub struct TemplateError {
    /// What kind of failure.
    pub kind: TemplateErrorKind,
    /// The message, e.g. `'foo' is undefined`.
    pub message: String,
    /// 1-based line in the template text, when known.
    pub line: Option<usize>,
    /// 1-based column in the template text, when known.
    pub col: Option<usize>,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if self.kind == TemplateErrorKind::Syntax {
            if let (Some(line), Some(col)) = (self.line, self.col) {
                write!(f, " (line {line}, column {col})")?;
            }
        }
        Ok(())
    }
}

impl TemplateError {
    /// An error of `kind` with `message` and no position.
    pub fn new(kind: TemplateErrorKind, message: impl Into<String>) -> TemplateError {
        TemplateError {
            kind,
            message: message.into(),
            line: None,
            col: None,
        }
    }

    /// The error as a minijinja error, so it can travel through the engine and come back intact.
    pub(crate) fn into_mj(self) -> minijinja::Error {
        let kind = match self.kind {
            TemplateErrorKind::Undefined => minijinja::ErrorKind::UndefinedError,
            _ => minijinja::ErrorKind::InvalidOperation,
        };
        minijinja::Error::new(kind, self.message.clone()).with_source(self)
    }

    /// Translates a minijinja error raised while rendering `source`; `shift` is how many bytes
    /// of wrapping (e.g. `{{ `) precede the user's text in `source`.
    pub(crate) fn from_mj(err: &minijinja::Error, source: &str, shift: usize) -> TemplateError {
        // An error we raised ourselves (nested variable, lookup…) comes back unchanged.
        let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
        while let Some(c) = cause {
            if let Some(te) = c.downcast_ref::<TemplateError>() {
                return te.clone();
            }
            cause = c.source();
        }
        let range = err.range();
        let snippet = range
            .clone()
            .and_then(|r| source.get(r))
            .map(|s| s.trim().to_string());
        let (line, col) = match &range {
            Some(r) => position(source, r.start, shift),
            None => (err.line(), None),
        };
        let detail = err.detail().unwrap_or("").to_string();
        match err.kind() {
            minijinja::ErrorKind::UndefinedError => {
                let message = if detail == UNDEFINED_OUTPUT || detail.is_empty() {
                    match snippet {
                        Some(expr) => format!("'{}' is undefined", expr),
                        None => "an undefined variable was used".to_string(),
                    }
                } else {
                    backticks_to_quotes(&detail)
                };
                TemplateError {
                    kind: TemplateErrorKind::Undefined,
                    message,
                    line,
                    col,
                }
            }
            minijinja::ErrorKind::SyntaxError => TemplateError {
                kind: TemplateErrorKind::Syntax,
                message: format!(
                    "template syntax error: {detail}. String: {}",
                    &source[shift.min(source.len())..source.len() - shift.min(source.len())]
                ),
                line,
                col,
            },
            kind => {
                let mut message = if detail.is_empty() {
                    kind.to_string()
                } else {
                    format!("{kind}: {}", backticks_to_quotes(&detail))
                };
                if let Some(inner) = undefined_name(&detail) {
                    // e.g. "tried to use + operator on unsupported types number and undefined
                    // (`foo` is undefined)": Ansible just says which name is undefined.
                    return TemplateError {
                        kind: TemplateErrorKind::Undefined,
                        message: format!("'{inner}' is undefined"),
                        line,
                        col,
                    };
                }
                if let Some(s) = snippet {
                    message.push_str(&format!(" (in '{s}')"));
                }
                if detail.contains("% operator") && detail.contains("string") {
                    message.push_str(
                        "; Python's '%' string formatting is not supported, use the format filter \
                         ('%s' | format(x))",
                    );
                }
                TemplateError {
                    kind: TemplateErrorKind::Other,
                    message,
                    line,
                    col,
                }
            }
        }
    }
}

/// The expression in minijinja's "`expr` is undefined" note, if any.
fn undefined_name(detail: &str) -> Option<&str> {
    let end = detail.find("` is undefined")?;
    let start = detail[..end].rfind('`')? + 1;
    Some(&detail[start..end])
}

/// minijinja names expressions in backticks (`` `foo` is undefined``); Ansible uses quotes.
fn backticks_to_quotes(s: &str) -> String {
    s.replace('`', "'")
}

/// 1-based line and column of byte `offset` in `source`, ignoring `shift` bytes of wrapping.
fn position(source: &str, offset: usize, shift: usize) -> (Option<usize>, Option<usize>) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let mut col = before[line_start..].chars().count() + 1;
    if line == 1 {
        col = col.saturating_sub(shift).max(1);
    }
    (Some(line), Some(col))
}
