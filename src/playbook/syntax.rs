//! Template syntax checked while loading, so a broken `{{ … }}` anywhere in a playbook stops
//! the run before any host is touched.

use minijinja::Environment;
use serde_json::Value;

/// A syntax error in the template string at a JSON-pointer path of the task.
pub struct SyntaxError {
    /// Where in the YAML document.
    pub ptr: String,
    /// What minijinja said.
    pub message: String,
}

fn env() -> Environment<'static> {
    Environment::new()
}

fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// Checks every template string inside `value` (recursively), reporting the first error.
pub fn check_value(value: &Value, ptr: &str) -> Result<(), SyntaxError> {
    match value {
        Value::String(s) if is_template(s) => {
            env()
                .template_from_str(s)
                .map(|_| ())
                .map_err(|e| SyntaxError {
                    ptr: ptr.to_owned(),
                    message: format!("template error while templating string: {e}"),
                })
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_value(v, &format!("{ptr}/{i}"))),
        Value::Object(map) => map
            .iter()
            .try_for_each(|(k, v)| check_value(v, &format!("{ptr}/{k}"))),
        _ => Ok(()),
    }
}

/// Checks a bare conditional (`when:`, `until:`…): an expression, or a template string.
pub fn check_condition(value: &Value, ptr: &str) -> Result<(), SyntaxError> {
    match value {
        Value::String(s) if is_template(s) => check_value(value, ptr),
        Value::String(s) => env()
            .compile_expression(s)
            .map(|_| ())
            .map_err(|e| SyntaxError {
                ptr: ptr.to_owned(),
                message: format!("conditional '{s}' is not a valid expression: {e}"),
            }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_broken_templates_and_expressions() {
        assert!(check_value(&json!({"a": ["ok {{ x }}", "{{ y | default(1) }}"]}), "").is_ok());
        let e = check_value(&json!({"a": ["fine", "{{ x "]}), "/t")
            .err()
            .unwrap();
        assert_eq!(e.ptr, "/t/a/1");
        assert!(check_condition(&json!("x is defined and y"), "").is_ok());
        assert!(check_condition(&json!("x ==="), "").is_err());
    }
}
