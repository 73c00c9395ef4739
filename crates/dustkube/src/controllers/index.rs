//! Listed objects grouped for a controller pass: by namespace, so each owner looks only at
//! its own namespace's objects without copying the whole list per owner.

use std::collections::HashMap;

use serde_json::Value;

use crate::resources::str_at;

/// Objects grouped by `metadata.namespace` (moved, not copied).
pub fn by_namespace(objs: Vec<Value>) -> HashMap<String, Vec<Value>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for o in objs {
        out.entry(str_at(&o, "/metadata/namespace").to_string())
            .or_default()
            .push(o);
    }
    out
}

/// The objects of `ns` in a grouping (empty when none).
pub fn in_namespace<'a>(groups: &'a HashMap<String, Vec<Value>>, ns: &str) -> &'a [Value] {
    groups.get(ns).map(Vec::as_slice).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn groups_by_namespace() {
        let g = by_namespace(vec![
            json!({"metadata": {"name": "a", "namespace": "x"}}),
            json!({"metadata": {"name": "b", "namespace": "y"}}),
            json!({"metadata": {"name": "c", "namespace": "x"}}),
        ]);
        assert_eq!(in_namespace(&g, "x").len(), 2);
        assert_eq!(in_namespace(&g, "y").len(), 1);
        assert!(in_namespace(&g, "z").is_empty());
    }
}
