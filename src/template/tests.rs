//! Unit tests for the template engine.

use super::*;
use serde_json::json;

fn scope(v: Value) -> Scope {
    match v {
        Value::Object(m) => Scope::new(m),
        _ => panic!("scope needs a map"),
    }
}

fn r(t: &Templar, s: &Scope, text: &str) -> Value {
    t.render_str(text, s).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn smoke() {
    let t = Templar::new();
    let s = scope(json!({"a": 1, "l": [1, "x"], "b": "{{ a + 1 }}"}));
    assert_eq!(r(&t, &s, "{{ l }}"), json!([1, "x"]));
    assert_eq!(r(&t, &s, "x{{ l }}"), json!("x[1, 'x']"));
    assert_eq!(r(&t, &s, "{{ b }}"), json!(2));
}
