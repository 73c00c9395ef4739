//! The protobuf encoding of a Swagger 2.0 document (gnostic's `openapi.v2.Document`), which
//! kubectl 1.27 asks `/openapi/v2` for: encodes the JSON document's info, paths (GET and PATCH
//! operations with their parameters, responses and vendor extensions) and definitions (every
//! Schema field the generated schemas use; vendor extensions carry their value as JSON text in
//! `Any.yaml`, which kubectl parses as YAML).

use serde_json::{Map, Value};

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn string(out: &mut Vec<u8>, field: u64, s: &str) {
    bytes(out, field, s.as_bytes());
}

fn boolean(out: &mut Vec<u8>, field: u64, b: bool) {
    if b {
        varint(out, field << 3);
        varint(out, 1);
    }
}

/// `s[key]` as a string field, if it is a string.
fn str_field(out: &mut Vec<u8>, field: u64, s: &Map<String, Value>, key: &str) {
    if let Some(v) = s.get(key).and_then(Value::as_str) {
        string(out, field, v);
    }
}

/// `s[key]` as a repeated string field (a string or an array of strings).
fn strings_field(out: &mut Vec<u8>, field: u64, s: &Map<String, Value>, key: &str) {
    match s.get(key) {
        Some(Value::String(v)) => string(out, field, v),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .for_each(|v| string(out, field, v)),
        _ => {}
    }
}

/// `Any { yaml = 2 }` holding `v` as JSON text.
fn any(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, 2, &v.to_string());
    out
}

/// Each `x-` key of `s` as a repeated `NamedAny` field.
fn extensions(out: &mut Vec<u8>, field: u64, s: &Map<String, Value>) {
    for (k, v) in s.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut named = Vec::new();
        string(&mut named, 1, k);
        bytes(&mut named, 2, &any(v));
        bytes(out, field, &named);
    }
}

/// `NamedX { name = 1; value = 2 }`.
fn named(name: &str, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, 1, name);
    bytes(&mut out, 2, value);
    out
}

/// One JSON Schema object as `openapi.v2.Schema`.
pub fn schema(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let Value::Object(s) = v else {
        return out;
    };
    str_field(&mut out, 1, s, "$ref");
    str_field(&mut out, 2, s, "format");
    str_field(&mut out, 3, s, "title");
    str_field(&mut out, 4, s, "description");
    strings_field(&mut out, 19, s, "required");
    if let Some(Value::Array(values)) = s.get("enum") {
        for e in values {
            bytes(&mut out, 20, &any(e));
        }
    }
    match s.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut item = Vec::new();
            varint(&mut item, 2 << 3);
            varint(&mut item, u64::from(*b));
            bytes(&mut out, 21, &item);
        }
        Some(sub @ Value::Object(_)) => {
            let mut item = Vec::new();
            bytes(&mut item, 1, &schema(sub));
            bytes(&mut out, 21, &item);
        }
        _ => {}
    }
    if s.contains_key("type") {
        let mut item = Vec::new();
        strings_field(&mut item, 1, s, "type");
        bytes(&mut out, 22, &item);
    }
    match s.get("items") {
        Some(sub @ Value::Object(_)) => {
            let mut item = Vec::new();
            bytes(&mut item, 1, &schema(sub));
            bytes(&mut out, 23, &item);
        }
        Some(Value::Array(subs)) => {
            let mut item = Vec::new();
            subs.iter()
                .for_each(|sub| bytes(&mut item, 1, &schema(sub)));
            bytes(&mut out, 23, &item);
        }
        _ => {}
    }
    if let Some(Value::Array(subs)) = s.get("allOf") {
        subs.iter()
            .for_each(|sub| bytes(&mut out, 24, &schema(sub)));
    }
    if let Some(Value::Object(props)) = s.get("properties") {
        let mut item = Vec::new();
        for (name, sub) in props {
            bytes(&mut item, 1, &named(name, &schema(sub)));
        }
        bytes(&mut out, 25, &item);
    }
    boolean(
        &mut out,
        27,
        s.get("readOnly").and_then(Value::as_bool) == Some(true),
    );
    extensions(&mut out, 31, s);
    out
}

/// One parameter as `openapi.v2.ParametersItem` (body, query, path or header).
fn parameter(p: &Map<String, Value>) -> Vec<u8> {
    let required = p.get("required").and_then(Value::as_bool) == Some(true);
    let location = p.get("in").and_then(Value::as_str).unwrap_or("");
    let mut param = Vec::new();
    if location == "body" {
        let mut body = Vec::new();
        str_field(&mut body, 1, p, "description");
        str_field(&mut body, 2, p, "name");
        str_field(&mut body, 3, p, "in");
        boolean(&mut body, 4, required);
        if let Some(s) = p.get("schema") {
            bytes(&mut body, 5, &schema(s));
        }
        bytes(&mut param, 1, &body);
    } else {
        // Query and header sub-schemas put `type` at 6 (after allow_empty_value), path at 5.
        let (which, type_field, unique_field) = match location {
            "query" => (3, 6, 20),
            "path" => (4, 5, 19),
            _ => (1, 5, 19),
        };
        let mut sub = Vec::new();
        boolean(&mut sub, 1, required);
        str_field(&mut sub, 2, p, "in");
        str_field(&mut sub, 3, p, "description");
        str_field(&mut sub, 4, p, "name");
        str_field(&mut sub, type_field, p, "type");
        boolean(
            &mut sub,
            unique_field,
            p.get("uniqueItems").and_then(Value::as_bool) == Some(true),
        );
        let mut non_body = Vec::new();
        bytes(&mut non_body, which, &sub);
        bytes(&mut param, 2, &non_body);
    }
    let mut item = Vec::new();
    bytes(&mut item, 1, &param);
    item
}

fn parameters(out: &mut Vec<u8>, field: u64, s: &Map<String, Value>) {
    if let Some(Value::Array(ps)) = s.get("parameters") {
        for p in ps.iter().filter_map(Value::as_object) {
            bytes(out, field, &parameter(p));
        }
    }
}

/// One operation as `openapi.v2.Operation`.
fn operation(op: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::new();
    str_field(&mut out, 3, op, "description");
    str_field(&mut out, 5, op, "operationId");
    strings_field(&mut out, 6, op, "produces");
    strings_field(&mut out, 7, op, "consumes");
    parameters(&mut out, 8, op);
    if let Some(Value::Object(codes)) = op.get("responses") {
        let mut responses = Vec::new();
        for (code, r) in codes {
            let Some(r) = r.as_object() else { continue };
            let mut response = Vec::new();
            str_field(&mut response, 1, r, "description");
            if let Some(s) = r.get("schema") {
                let mut item = Vec::new();
                bytes(&mut item, 1, &schema(s));
                bytes(&mut response, 2, &item);
            }
            let mut value = Vec::new();
            bytes(&mut value, 1, &response);
            bytes(&mut responses, 1, &named(code, &value));
        }
        bytes(&mut out, 9, &responses);
    }
    extensions(&mut out, 13, op);
    out
}

/// A whole Swagger 2.0 JSON document as `openapi.v2.Document`.
pub fn document(doc: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let Value::Object(d) = doc else {
        return out;
    };
    str_field(&mut out, 1, d, "swagger");
    if let Some(Value::Object(info)) = d.get("info") {
        let mut i = Vec::new();
        str_field(&mut i, 1, info, "title");
        str_field(&mut i, 2, info, "version");
        bytes(&mut out, 2, &i);
    }
    if let Some(Value::Object(paths)) = d.get("paths") {
        let mut p = Vec::new();
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            let mut pi = Vec::new();
            for (verb, field) in [
                ("get", 2),
                ("put", 3),
                ("post", 4),
                ("delete", 5),
                ("patch", 8),
            ] {
                if let Some(Value::Object(op)) = item.get(verb) {
                    bytes(&mut pi, field, &operation(op));
                }
            }
            parameters(&mut pi, 9, item);
            bytes(&mut p, 2, &named(path, &pi));
        }
        bytes(&mut out, 8, &p);
    }
    if let Some(Value::Object(defs)) = d.get("definitions") {
        let mut item = Vec::new();
        for (name, s) in defs {
            bytes(&mut item, 1, &named(name, &schema(s)));
        }
        bytes(&mut out, 9, &item);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_a_schema_field_by_field() {
        let s = json!({"description": "d", "type": "object", "required": ["a"],
            "properties": {"a": {"$ref": "#/definitions/X"}}, "x-k": [1]});
        let expect = [
            &[0x22, 1, b'd'][..],      // description = 4
            &[0x9a, 0x01, 1, b'a'],    // required = 19
            &[0xb2, 0x01, 8, 0x0a, 6], // type = 22: TypeItem { value = 1 }
            b"object",
            &[0xca, 0x01, 24, 0x0a, 22], // properties = 25: Properties { NamedSchema = 1 }
            &[0x0a, 1, b'a', 0x12, 17, 0x0a, 15],
            b"#/definitions/X",
            &[0xfa, 0x01, 12, 0x0a, 3], // vendor_extension = 31: NamedAny { name, Any { yaml = 2 } }
            b"x-k",
            &[0x12, 5, 0x12, 3],
            b"[1]",
        ]
        .concat();
        assert_eq!(schema(&s), expect);
    }
}
