//! Unit tests for the template engine: native results, lazy variables, undefined handling,
//! omit, filters, tests and lookups. Expected strings were checked against ansible-core 2.19.

use super::*;
use serde_json::json;

fn scope(v: Value) -> Scope {
    match v {
        Value::Object(m) => Scope::new(m),
        _ => panic!("scope needs a map"),
    }
}

fn r(t: &Templar, s: &Scope, text: &str) -> Value {
    t.render_str(text, s)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Renders `text` with `vars` and returns the result.
fn render(vars: Value, text: &str) -> Value {
    r(&Templar::new(), &scope(vars), text)
}

/// Renders `text` with no variables.
fn eval(text: &str) -> Value {
    render(json!({}), text)
}

fn err(vars: Value, text: &str) -> TemplateError {
    match Templar::new().render_str(text, &scope(vars)) {
        Ok(v) => panic!("{text}: expected an error, got {v}"),
        Err(e) => e,
    }
}

// ---- native types, fast path, text rendering ----

#[test]
fn single_expression_keeps_native_type() {
    let vars = json!({"l": [1, "x"], "d": {"a": 1}, "n": 5, "b": true, "z": null});
    assert_eq!(render(vars.clone(), "{{ l }}"), json!([1, "x"]));
    assert_eq!(render(vars.clone(), "{{ d }}"), json!({"a": 1}));
    assert_eq!(render(vars.clone(), "{{ n + 1 }}"), json!(6));
    assert_eq!(render(vars.clone(), "{{ b }}"), json!(true));
    assert_eq!(render(vars.clone(), "{{ z }}"), json!(null));
    assert_eq!(render(vars.clone(), "{{ '1' }}"), json!("1"));
    assert_eq!(render(vars, "{{- n -}}"), json!(5));
}

#[test]
fn mixed_text_renders_like_python_str() {
    let vars = json!({"l": [1, "x"], "d": {"a": 1}, "z": null});
    assert_eq!(render(vars.clone(), " {{ l }}"), json!(" [1, 'x']"));
    assert_eq!(
        render(vars.clone(), "a{{ true }}{{ z }}{{ d }}{{ 1.5 }}"),
        json!("aTrue{'a': 1}1.5")
    );
    assert_eq!(render(vars.clone(), "{{ 1 }}{{ 2 }}"), json!("12"));
    assert_eq!(render(vars, "{{ \"it's\" }} x"), json!("it's x"));
}

#[test]
fn fast_path_returns_text_unchanged() {
    let t = Templar::new();
    let s = scope(json!({}));
    assert_eq!(
        r(&t, &s, "plain { text } with } braces"),
        json!("plain { text } with } braces")
    );
    // Would be a syntax error if it went through the engine.
    assert_eq!(r(&t, &s, "x }} y %}"), json!("x }} y %}"));
    assert!(!has_markers("a { b"));
    assert!(has_markers("a {# c #}"));
    assert!(has_markers("{% if x %}"));
}

#[test]
fn trailing_newline_is_kept_and_blocks_trimmed() {
    assert_eq!(eval("a\n"), json!("a\n"));
    assert_eq!(eval("{% if true %}\nyes\n{% endif %}\n"), json!("yes\n"));
}

#[test]
fn render_value_walks_structures_and_drops_omit() {
    let t = Templar::new();
    let s = scope(json!({"x": "hi", "n": 3}));
    let args = json!({
        "name": "{{ x }}",
        "mode": "{{ undefined_mode | default(omit) }}",
        "count": "{{ n }}",
        "nested": {"k": "{{ x }}-{{ n }}", "gone": "{{ omit }}"},
        "list": ["{{ x }}", "{{ omit }}", 7],
        "{{ x }}_key": true
    });
    let out = t.render_value(&args, &s).unwrap();
    assert_eq!(
        out,
        json!({"name": "hi", "count": 3, "nested": {"k": "hi-3"}, "list": ["hi", 7], "hi_key": true})
    );
    // Untemplated values come back as they are.
    let plain = json!({"a": [1, 2, {"b": "c"}]});
    assert_eq!(t.render_value(&plain, &s).unwrap(), plain);
}

// ---- lazy variables ----

#[test]
fn variables_are_templated_on_access_recursively() {
    let vars = json!({
        "host": "example.org",
        "port": 6443,
        "url": "https://{{ host }}:{{ port }}",
        "endpoint": "{{ url }}/healthz",
        "cfg": {"servers": ["{{ url }}"], "port": "{{ port }}"},
        "ports": "{{ [port, port + 1] }}"
    });
    assert_eq!(
        render(vars.clone(), "{{ endpoint }}"),
        json!("https://example.org:6443/healthz")
    );
    assert_eq!(
        render(vars.clone(), "{{ cfg.servers[0] }}"),
        json!("https://example.org:6443")
    );
    assert_eq!(render(vars.clone(), "{{ cfg.port }}"), json!(6443));
    assert_eq!(render(vars.clone(), "{{ ports | sum }}"), json!(12887));
    assert_eq!(
        render(vars, "{{ vars['url'] }}"),
        json!("https://example.org:6443")
    );
}

#[test]
fn nested_variables_are_templated_per_item() {
    let vars = json!({
        "n": 2,
        "cfg": {"ok": "{{ n * 2 }}", "broken": "{{ nothing_here }}", "list": ["{{ n }}", {"deep": "{{ n + 1 }}"}],
                "self_ref": "{{ cfg.ok + 1 }}"},
    });
    // Only the items read are templated: `broken` does not spoil its siblings.
    assert_eq!(render(vars.clone(), "{{ cfg.ok }}"), json!(4));
    assert_eq!(render(vars.clone(), "{{ cfg.list[1].deep }}"), json!(3));
    assert_eq!(render(vars.clone(), "{{ cfg.list[-1].deep }}"), json!(3));
    assert_eq!(render(vars.clone(), "{{ cfg.self_ref }}"), json!(5));
    assert_eq!(render(vars.clone(), "{{ cfg.list | length }}"), json!(2));
    assert_eq!(
        render(vars.clone(), "{{ cfg.broken | default('d') }}"),
        json!("d")
    );
    assert_eq!(
        render(vars.clone(), "{{ cfg.list }}"),
        json!([2, {"deep": 3}])
    );
    assert_eq!(
        err(vars.clone(), "{{ cfg.broken }}").message,
        "'nothing_here' is undefined"
    );
    assert_eq!(
        err(vars.clone(), "{{ cfg }}").message,
        "'nothing_here' is undefined"
    );
    assert_eq!(
        err(vars, "{{ cfg.nope }}").message,
        "object of type 'dict' has no attribute 'nope'"
    );
    let e = err(json!({"a": {"x": "{{ a.x }}"}}), "{{ a.x }}");
    assert!(
        e.message
            .contains("recursive loop detected in template: a.x -> a.x"),
        "{e}"
    );
}

#[test]
fn recursive_variables_are_reported() {
    let e = err(json!({"a": "{{ b }}", "b": "x{{ a }}"}), "{{ a }}");
    assert_eq!(e.kind, TemplateErrorKind::Recursion);
    assert!(
        e.message.contains("recursive loop detected in template"),
        "{e}"
    );
    assert!(e.message.contains("a -> b -> a"), "{e}");
    let e = err(json!({"a": "{{ a }}"}), "x {{ a }}");
    assert!(e.message.contains("recursive loop detected"), "{e}");
}

#[test]
fn variable_whose_template_is_undefined_is_undefined() {
    let vars = json!({"a": "{{ foo }}"});
    assert_eq!(render(vars.clone(), "{{ a | default('z') }}"), json!("z"));
    assert_eq!(render(vars.clone(), "{{ a is defined }}"), json!(false));
    let e = err(vars, "{{ a }}");
    assert_eq!(e.message, "'foo' is undefined");
}

// ---- undefined ----

#[test]
fn undefined_chains_but_fails_when_printed() {
    let vars = json!({"d": {"a": 1}});
    assert_eq!(render(vars.clone(), "{{ foo.bar | default(3) }}"), json!(3));
    assert_eq!(
        render(vars.clone(), "{{ d.bar.baz | default(1) }}"),
        json!(1)
    );
    assert_eq!(render(vars.clone(), "{{ foo is defined }}"), json!(false));
    assert_eq!(render(vars.clone(), "{{ foo is undefined }}"), json!(true));
    assert_eq!(
        render(vars.clone(), "{{ d.bar.baz is defined }}"),
        json!(false)
    );
    assert_eq!(render(vars.clone(), "{{ foo | d('x') }}"), json!("x"));
    assert_eq!(
        render(vars.clone(), "{{ '' | default('x', true) }}"),
        json!("x")
    );
    assert_eq!(err(vars.clone(), "{{ foo }}").message, "'foo' is undefined");
    assert_eq!(
        err(vars.clone(), "a {{ foo }} b").message,
        "'foo' is undefined"
    );
    let msg = |text: &str| err(json!({"d": {"a": 1}, "l": [1]}), text).message;
    let no_bar = "object of type 'dict' has no attribute 'bar'";
    assert_eq!(msg("{{ d.bar }}"), no_bar);
    assert_eq!(msg("{{ d['bar'].x }}"), no_bar);
    assert_eq!(msg("{{ foo.bar }}"), "'foo' is undefined");
    assert_eq!(msg("{{ foo | upper }}"), "'foo' is undefined");
    assert_eq!(msg("{{ d.a + foo }}"), "'foo' is undefined");
    assert_eq!(
        msg("{% for x in [d] %}{{ x.nope }}{% endfor %}"),
        "'x.nope' is undefined"
    );
    assert_eq!(
        msg("{{ l[5] }}"),
        "object of type 'list' has no attribute 5"
    );
    assert_eq!(
        err(vars.clone(), "{{ foo | upper }}").kind,
        TemplateErrorKind::Undefined
    );
    assert_eq!(
        err(vars.clone(), "{{ foo | to_json }}").kind,
        TemplateErrorKind::Undefined
    );
    let e = err(vars, "{{ foo + 1 }}");
    assert!(e.message.contains("foo"), "{e}");
}

#[test]
fn syntax_errors_have_positions() {
    let e = err(json!({}), "line one\n{{ a b }}");
    assert_eq!(e.kind, TemplateErrorKind::Syntax);
    assert_eq!(e.line, Some(2));
    assert!(e.col.is_some());
    assert!(e.to_string().contains("line 2"), "{e}");
    let e = Templar::new()
        .evaluate("a ==", &scope(json!({})))
        .unwrap_err();
    assert_eq!(e.kind, TemplateErrorKind::Syntax);
}

#[test]
fn percent_formatting_is_explained() {
    let e = err(json!({"s": "x"}), "{{ '%s' % s }}");
    assert!(e.message.contains("use the format filter"), "{e}");
    assert_eq!(
        render(json!({"s": "x"}), "{{ '%s-%d' | format(s, 3) }}"),
        json!("x-3")
    );
}

// ---- conditionals ----

#[test]
fn evaluate_and_truthiness() {
    let t = Templar::new();
    let s = scope(
        json!({"n": 3, "yes_str": "yes", "no_str": "False", "l": [], "flag": true, "r": {"rc": 0}}),
    );
    assert_eq!(t.evaluate("n * 2", &s).unwrap(), json!(6));
    assert!(t.is_true("n > 2", &s).unwrap());
    assert!(!t.is_true("n > 5", &s).unwrap());
    assert!(t.is_true("flag", &s).unwrap());
    assert!(t.is_true("yes_str", &s).unwrap());
    assert!(!t.is_true("no_str", &s).unwrap());
    assert!(!t.is_true("l", &s).unwrap());
    assert!(t.is_true("r.rc == 0", &s).unwrap());
    assert!(t.is_true("true", &s).unwrap());
    assert!(!t.is_true("False", &s).unwrap());
    assert!(t.is_true("{{ n == 3 }}", &s).unwrap());
    assert!(t.is_true("missing is not defined", &s).unwrap());
    assert!(t.is_true_value(&json!(true), &s).unwrap());
    assert!(!t.is_true_value(&json!(false), &s).unwrap());
    assert!(t.is_true_value(&json!("n == 3"), &s).unwrap());
    let e = t.is_true("missing", &s).unwrap_err();
    assert_eq!(e.message, "'missing' is undefined");
}

// ---- filters ----

#[test]
fn json_filters() {
    let vars = json!({"d": {"b": 1, "a": [1, 2], "u": "é"}});
    assert_eq!(
        render(vars.clone(), "{{ d | to_json }}"),
        json!("{\"b\": 1, \"a\": [1, 2], \"u\": \"\\u00e9\"}")
    );
    assert_eq!(
        render(vars.clone(), "{{ d | to_nice_json }}"),
        json!("{\n    \"a\": [\n        1,\n        2\n    ],\n    \"b\": 1,\n    \"u\": \"\\u00e9\"\n}")
    );
    assert_eq!(
        render(vars.clone(), "{{ d | to_nice_json(indent=2) }}")
            .as_str()
            .unwrap()
            .lines()
            .nth(1),
        Some("  \"a\": [")
    );
    assert_eq!(
        eval("{{ '[1, {\"a\": 2}]' | from_json }}"),
        json!([1, {"a": 2}])
    );
}

#[test]
fn yaml_filters_match_pyyaml() {
    let big = json!({"b": 1, "a": [1, 2], "c": {"x": [3], "y": {"z": "s t"}}, "e": [], "f": {}, "g": "yes",
        "h": null, "i": true, "j": "1.0", "k": [{"a": 1, "b": 2}], "m": "multi\nline", "n": "", "o": "a: b",
        "p": "0755", "q": 1.5});
    let vars = json!({"big": big});
    assert_eq!(
        render(vars.clone(), "{{ big | to_nice_yaml }}"),
        json!("a:\n- 1\n- 2\nb: 1\nc:\n    x:\n    - 3\n    y:\n        z: s t\ne: []\nf: {}\ng: 'yes'\nh: null\ni: true\nj: '1.0'\nk:\n-   a: 1\n    b: 2\nm: 'multi\n\n    line'\nn: ''\no: 'a: b'\np: '0755'\nq: 1.5\n")
    );
    assert_eq!(
        render(vars.clone(), "{{ big | to_yaml }}"),
        json!("a: [1, 2]\nb: 1\nc:\n  x: [3]\n  y: {z: s t}\ne: []\nf: {}\ng: 'yes'\nh: null\ni: true\nj: '1.0'\nk:\n- {a: 1, b: 2}\nm: 'multi\n\n  line'\nn: ''\no: 'a: b'\np: '0755'\nq: 1.5\n")
    );
    assert_eq!(eval("{{ 'x' | to_yaml }}"), json!("x\n"));
    // Dumped YAML reads back to the same data.
    assert_eq!(
        render(vars.clone(), "{{ big | to_nice_yaml | from_yaml }}"),
        big
    );
    assert_eq!(render(vars, "{{ big | to_yaml | from_yaml }}"), big);
}

#[test]
fn from_yaml_uses_yaml_1_1_types() {
    let vars = json!({"y": "a: 1\nb: [1, 2]\nc: yes\nd: 0755\ne: 0o17\nf: on\ng: ~\nh: 1.5\ni: 'yes'\nbase: &b {x: 1}\nm:\n  <<: *b\n  y: 2\n"});
    assert_eq!(
        render(vars, "{{ y | from_yaml }}"),
        json!({"a": 1, "b": [1, 2], "c": true, "d": 493, "e": "0o17", "f": true, "g": null, "h": 1.5, "i": "yes",
               "base": {"x": 1}, "m": {"x": 1, "y": 2}})
    );
    assert_eq!(
        render(json!({"y": "a: 1\n---\nb: 2\n"}), "{{ y | from_yaml_all }}"),
        json!([{"a": 1}, {"b": 2}])
    );
}

#[test]
fn regex_filters() {
    assert_eq!(
        eval(r#"{{ 'foo=bar' | regex_replace('^(\\w+)=(\\w+)$', '\\2=\\1') }}"#),
        json!("bar=foo")
    );
    assert_eq!(
        eval(r#"{{ 'a-b' | regex_replace('(?P<x>a)', '\\g<x>\\g<x>') }}"#),
        json!("aa-b")
    );
    assert_eq!(
        eval("{{ 'ABC' | regex_replace('b', 'x', ignorecase=true) }}"),
        json!("AxC")
    );
    assert_eq!(
        eval("{{ 'cost $5' | regex_replace('cost', 'price') }}"),
        json!("price $5")
    );
    assert_eq!(
        eval("{{ 'aaa' | regex_replace('a', 'b', count=2) }}"),
        json!("bba")
    );
    assert_eq!(eval("{{ 'abc' | regex_search('b.') }}"), json!("bc"));
    assert_eq!(eval("{{ 'abc' | regex_search('z') }}"), json!(null));
    assert_eq!(
        eval(r#"{{ 'abc' | regex_search('(b)(c)', '\\2', '\\1') }}"#),
        json!(["c", "b"])
    );
    assert_eq!(
        eval(r#"{{ 'a1b2' | regex_findall('[a-z](\\d)') }}"#),
        json!(["1", "2"])
    );
    assert_eq!(
        eval(r#"{{ 'a1b2' | regex_findall('[a-z]\\d') }}"#),
        json!(["a1", "b2"])
    );
    assert_eq!(eval("{{ 'a.b*c' | regex_escape }}"), json!("a\\.b\\*c"));
}

#[test]
fn combine_and_dict_filters() {
    let vars =
        json!({"a": {"x": 1, "n": {"p": 1, "l": [1]}}, "b": {"y": 2, "n": {"q": 2, "l": [2]}}});
    assert_eq!(
        render(vars.clone(), "{{ a | combine(b) }}"),
        json!({"x": 1, "n": {"q": 2, "l": [2]}, "y": 2})
    );
    assert_eq!(
        render(vars.clone(), "{{ a | combine(b, recursive=true) }}"),
        json!({"x": 1, "n": {"p": 1, "l": [2], "q": 2}, "y": 2})
    );
    assert_eq!(
        render(
            vars.clone(),
            "{{ a | combine(b, recursive=true, list_merge='append') }}"
        ),
        json!({"x": 1, "n": {"p": 1, "l": [1, 2], "q": 2}, "y": 2})
    );
    assert_eq!(
        render(vars.clone(), "{{ {} | combine([a, b]) | list }}"),
        json!(["x", "n", "y"])
    );
    assert_eq!(
        render(vars.clone(), "{{ b | dict2items }}"),
        json!([{"key": "y", "value": 2}, {"key": "n", "value": {"q": 2, "l": [2]}}])
    );
    assert_eq!(
        render(
            vars.clone(),
            "{{ {'k': 'v'} | dict2items(key_name='name', value_name='val') }}"
        ),
        json!([{"name": "k", "val": "v"}])
    );
    assert_eq!(
        render(vars.clone(), "{{ b | dict2items | items2dict }}"),
        json!({"y": 2, "n": {"q": 2, "l": [2]}})
    );
    assert_eq!(
        render(vars.clone(), "{{ a.items() | list }}"),
        json!([["x", 1], ["n", {"p": 1, "l": [1]}]])
    );
    assert_eq!(
        render(vars.clone(), "{{ a.keys() | list }}"),
        json!(["x", "n"])
    );
    assert_eq!(render(vars.clone(), "{{ a.get('zz', 5) }}"), json!(5));
    assert_eq!(
        render(vars, "{{ dict(['a', 'b'] | zip([1, 2])) }}"),
        json!({"a": 1, "b": 2})
    );
    assert_eq!(eval("{{ dict(x=1) }}"), json!({"x": 1}));
}

#[test]
fn list_and_set_filters() {
    assert_eq!(
        eval("{{ [1, [2, [3, [4]]], none] | flatten }}"),
        json!([1, 2, 3, 4])
    );
    assert_eq!(eval("{{ [1, [2, [3]]] | flatten(1) }}"), json!([1, 2, [3]]));
    assert_eq!(eval("{{ [1, 2, 2, 3] | unique }}"), json!([1, 2, 3]));
    assert_eq!(eval("{{ [1, 2] | union([2, 3]) }}"), json!([1, 2, 3]));
    assert_eq!(
        eval("{{ [1, 2, 3] | intersect([2, 3, 4]) }}"),
        json!([2, 3])
    );
    assert_eq!(eval("{{ [1, 2, 3] | difference([2]) }}"), json!([1, 3]));
    assert_eq!(
        eval("{{ [1, 2] | symmetric_difference([2, 3]) }}"),
        json!([1, 3])
    );
    assert_eq!(
        eval("{{ [1, 2] | product(['a', 'b']) | list }}"),
        json!([[1, "a"], [1, "b"], [2, "a"], [2, "b"]])
    );
    assert_eq!(
        eval("{{ [1, 2] | zip(['a', 'b']) | list }}"),
        json!([[1, "a"], [2, "b"]])
    );
    assert_eq!(
        eval("{{ [[1], [2, 3]] | sum(start=[]) }}"),
        json!([1, 2, 3])
    );
    assert_eq!(eval("{{ [1, 2, 3] | sum }}"), json!(6));
    assert_eq!(eval("{{ [3, 1, 2] | min }}"), json!(1));
    assert_eq!(eval("{{ [3, 1, 2] | max }}"), json!(3));
    assert_eq!(
        eval("{{ [true, none, 'a'] | join(',') }}"),
        json!("True,None,a")
    );
    assert_eq!(eval("{{ 'a,b' | split(',') }}"), json!(["a", "b"]));
    let users = json!({"users": [{"n": "a", "on": true, "g": ["x", "y"]}, {"n": "b", "on": false, "g": ["z"]}]});
    assert_eq!(
        render(
            users.clone(),
            "{{ users | selectattr('on') | map(attribute='n') | list }}"
        ),
        json!(["a"])
    );
    assert_eq!(
        render(
            users.clone(),
            "{{ users | rejectattr('on') | map(attribute='n') | list }}"
        ),
        json!(["b"])
    );
    assert_eq!(
        render(
            users.clone(),
            "{{ users | map(attribute='n') | select('match', 'a') | list }}"
        ),
        json!(["a"])
    );
    assert_eq!(
        render(
            users,
            "{{ users | subelements('g') | map(attribute='1') | list }}"
        ),
        json!(["x", "y", "z"])
    );
    let hv = json!({"hostvars": {"h1": {"ip": "10.0.0.1"}, "h2": {"ip": "10.0.0.2"}}, "hosts": ["h1", "h2"]});
    assert_eq!(
        render(hv, "{{ hosts | map('extract', hostvars, 'ip') | list }}"),
        json!(["10.0.0.1", "10.0.0.2"])
    );
}

#[test]
fn scalar_filters() {
    assert_eq!(eval("{{ 'yes' | bool }}"), json!(true));
    assert_eq!(eval("{{ 'off' | bool }}"), json!(false));
    assert_eq!(eval("{{ 1 | bool }}"), json!(true));
    assert_eq!(eval("{{ true | ternary('a', 'b') }}"), json!("a"));
    assert_eq!(eval("{{ (1 > 2) | ternary('a', 'b') }}"), json!("b"));
    assert_eq!(eval("{{ none | ternary('a', 'b', 'n') }}"), json!("n"));
    assert_eq!(eval("{{ 'hello' | b64encode }}"), json!("aGVsbG8="));
    assert_eq!(eval("{{ 'aGVsbG8=' | b64decode }}"), json!("hello"));
    assert_eq!(eval("{{ '/a/b/c.txt' | basename }}"), json!("c.txt"));
    assert_eq!(eval("{{ '/a/b/c.txt' | dirname }}"), json!("/a/b"));
    assert_eq!(
        eval("{{ '/a/b/c.txt' | splitext }}"),
        json!(["/a/b/c", ".txt"])
    );
    assert_eq!(
        eval("{{ ['/etc', 'k8s', 'x.conf'] | path_join }}"),
        json!("/etc/k8s/x.conf")
    );
    assert_eq!(eval("{{ 'x y' | quote }}"), json!("'x y'"));
    assert_eq!(eval("{{ \"it's\" | quote }}"), json!("'it'\"'\"'s'"));
    assert_eq!(eval("{{ 'safe/path-1' | quote }}"), json!("safe/path-1"));
    assert_eq!(
        eval("{{ 'foo' | hash('md5') }}"),
        json!("acbd18db4cc2f85cedef654fccc4a4d8")
    );
    assert_eq!(
        eval("{{ 'foo' | hash('sha1') }}"),
        json!("0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33")
    );
    assert_eq!(
        eval("{{ 'foo' | checksum }}"),
        json!("0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33")
    );
    assert_eq!(
        eval("{{ 'foo' | hash('sha256') }}"),
        json!("2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae")
    );
    assert_eq!(eval("{{ 'hello' | comment }}"), json!("#\n# hello\n#"));
    assert_eq!(eval("{{ 'hi' | comment('c') }}"), json!("//\n// hi\n//"));
    assert_eq!(eval("{{ 1 | type_debug }}"), json!("int"));
    assert_eq!(eval("{{ 'a' | type_debug }}"), json!("str"));
    assert_eq!(eval("{{ {} | type_debug }}"), json!("dict"));
    assert_eq!(eval("{{ 1024 | human_readable }}"), json!("1.00 KB"));
    assert_eq!(eval("{{ '1K' | human_to_bytes }}"), json!(1024));
    assert_eq!(eval("{{ '2 MB' | human_to_bytes }}"), json!(2097152));
    assert_eq!(eval("{{ true | string }}"), json!("True"));
    assert_eq!(eval("{{ 'a' | mandatory }}"), json!("a"));
    assert_eq!(
        err(json!({}), "{{ nope | mandatory }}").kind,
        TemplateErrorKind::Undefined
    );
    assert_eq!(eval("{{ '42' | int + 1 }}"), json!(43));
    assert_eq!(eval("{{ 8 | pow(2) | int }}"), json!(64));
    assert_eq!(
        eval("{{ '~/x' | expanduser }}"),
        json!(format!("{}/x", std::env::var("HOME").unwrap()))
    );
}

#[test]
fn python_string_methods() {
    let vars = json!({"s": " a,b ", "v": "v1.28.2"});
    assert_eq!(
        render(vars.clone(), "{{ s.strip().split(',') }}"),
        json!(["a", "b"])
    );
    assert_eq!(
        render(vars.clone(), "{{ 'a b  c'.split() }}"),
        json!(["a", "b", "c"])
    );
    assert_eq!(
        render(vars.clone(), "{{ v.startswith('v1') }}"),
        json!(true)
    );
    assert_eq!(
        render(vars.clone(), "{{ v.replace('v', '') }}"),
        json!("1.28.2")
    );
    assert_eq!(render(vars.clone(), "{{ v.upper() }}"), json!("V1.28.2"));
    assert_eq!(
        render(vars.clone(), "{{ '-'.join(['a', 'b']) }}"),
        json!("a-b")
    );
    assert_eq!(
        render(vars.clone(), "{{ '{}-{}'.format('a', 1) }}"),
        json!("a-1")
    );
    assert_eq!(
        render(vars, "{{ 'a.b.c'.rsplit('.', 1) }}"),
        json!(["a.b", "c"])
    );
}

#[test]
fn ipaddr_filters() {
    let vars = json!({"net": "10.233.0.0/18", "ip": "192.168.1.5/24", "v6": "fd00::1"});
    assert_eq!(
        render(
            vars.clone(),
            "{{ net | ipaddr('net') | ipaddr(1) | ipaddr('address') }}"
        ),
        json!("10.233.0.1")
    );
    assert_eq!(
        render(vars.clone(), "{{ ip | ipaddr('address') }}"),
        json!("192.168.1.5")
    );
    assert_eq!(
        render(vars.clone(), "{{ ip | ipaddr('network') }}"),
        json!("192.168.1.0")
    );
    assert_eq!(
        render(vars.clone(), "{{ ip | ipaddr('prefix') }}"),
        json!(24)
    );
    assert_eq!(
        render(vars.clone(), "{{ ip | ipaddr('netmask') }}"),
        json!("255.255.255.0")
    );
    assert_eq!(
        render(vars.clone(), "{{ ip | ipaddr('broadcast') }}"),
        json!("192.168.1.255")
    );
    assert_eq!(
        render(vars.clone(), "{{ ip | ipaddr('network/prefix') }}"),
        json!("192.168.1.0/24")
    );
    assert_eq!(
        render(vars.clone(), "{{ 'nonsense' | ipaddr }}"),
        json!(false)
    );
    assert_eq!(
        render(vars.clone(), "{{ ['1.2.3.4', 'x', 'fd00::1'] | ipv4 }}"),
        json!(["1.2.3.4"])
    );
    assert_eq!(
        render(vars.clone(), "{{ v6 | ipwrap }}"),
        json!("[fd00::1]")
    );
    assert_eq!(
        render(vars.clone(), "{{ '1.2.3.4' | ipwrap }}"),
        json!("1.2.3.4")
    );
    assert_eq!(
        render(vars, "{{ net | ipaddr(-1) }}"),
        json!("10.233.63.255/18")
    );
}

// ---- tests ----

#[test]
fn jinja_tests() {
    let vars = json!({
        "ok": {"failed": false, "changed": true, "rc": 0},
        "bad": {"failed": true, "changed": false, "rc": 1},
        "skip": {"skipped": true, "changed": false},
        "loop": {"results": [{"changed": false}, {"changed": true}]},
        "v": "v1.28.2"
    });
    let t = |e: &str| render(vars.clone(), &format!("{{{{ {e} }}}}"));
    assert_eq!(t("ok is succeeded"), json!(true));
    assert_eq!(t("ok is success"), json!(true));
    assert_eq!(t("bad is failed"), json!(true));
    assert_eq!(t("bad is failure"), json!(true));
    assert_eq!(t("ok is changed"), json!(true));
    assert_eq!(t("bad is change"), json!(false));
    assert_eq!(t("skip is skipped"), json!(true));
    assert_eq!(t("ok is skip"), json!(false));
    assert_eq!(t("loop is changed"), json!(true));
    assert_eq!(t("v is version('v1.28.0', '>=')"), json!(true));
    assert_eq!(t("v is version('v1.9.0', '>')"), json!(true));
    assert_eq!(t("'1.10' is version('1.9', 'gt')"), json!(true));
    assert_eq!(t("'1.2' is version('1.2.0', '<')"), json!(true));
    assert_eq!(t("'1.2.3' is version('1.2.3', '==')"), json!(true));
    assert_eq!(t("'1.2.3' is version('1.2.4', 'ne')"), json!(true));
    assert_eq!(
        t("'1.0.0-rc1' is version('1.0.0', '<', version_type='semver')"),
        json!(true)
    );
    assert_eq!(t("'2.0' | version_compare('10.0', '<')"), json!(true));
    assert_eq!(t("'abc' is match('a')"), json!(true));
    assert_eq!(t("'abc' is match('b')"), json!(false));
    assert_eq!(t("'abc' is search('b')"), json!(true));
    assert_eq!(t("'abc' is regex('B', ignorecase=true)"), json!(true));
    assert_eq!(t("[1, 2] is subset([1, 2, 3])"), json!(true));
    assert_eq!(t("[1, 2, 3] is superset([1, 4])"), json!(false));
    assert_eq!(t("[1, 2] is contains(2)"), json!(true));
    assert_eq!(t("'x' is string"), json!(true));
    assert_eq!(t("1 is number"), json!(true));
    assert_eq!(t("{} is mapping"), json!(true));
    assert_eq!(t("[] is sequence"), json!(true));
    assert_eq!(t("[] is iterable"), json!(true));
    assert_eq!(t("true is boolean"), json!(true));
    assert_eq!(t("none is none"), json!(true));
    assert_eq!(t("'/' is directory"), json!(true));
    assert_eq!(t("'/' is exists"), json!(true));
    assert_eq!(t("'/etc/hostname-nope' is file"), json!(false));
    assert_eq!(t("'/proc/self/status' is file"), json!(true));
    assert!(err(vars, "{{ 'x' is failed }}")
        .message
        .contains("expects a dictionary"));
}

// ---- lookups ----

#[test]
fn lookups() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("files")).unwrap();
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    std::fs::write(dir.path().join("files/key.pub"), "ssh-ed25519 AAA\n\n").unwrap();
    std::fs::write(dir.path().join("templates/t.j2"), "name={{ name }}\n").unwrap();
    let t = Templar::new();
    let mut s = scope(json!({"name": "{{ 'n' ~ 1 }}", "other": 5}));
    s.search_paths = vec![dir.path().to_path_buf()];
    std::env::set_var("DUSTSTACK_TEST_ENV", "val");
    assert_eq!(
        r(&t, &s, "{{ lookup('env', 'DUSTSTACK_TEST_ENV') }}"),
        json!("val")
    );
    assert_eq!(
        r(&t, &s, "{{ lookup('env', 'DUSTSTACK_NOPE_ENV') }}"),
        json!("")
    );
    assert_eq!(
        r(&t, &s, "{{ lookup('file', 'key.pub') }}"),
        json!("ssh-ed25519 AAA")
    );
    assert_eq!(
        r(&t, &s, "{{ lookup('ansible.builtin.template', 't.j2') }}"),
        json!("name=n1\n")
    );
    assert_eq!(
        r(&t, &s, "{{ lookup('pipe', 'echo hi; echo there') }}"),
        json!("hi\nthere")
    );
    assert_eq!(
        r(&t, &s, "{{ query('env', 'DUSTSTACK_TEST_ENV') }}"),
        json!(["val"])
    );
    assert_eq!(r(&t, &s, "{{ q('items', [1, 2]) }}"), json!([1, 2]));
    assert_eq!(
        r(
            &t,
            &s,
            "{{ lookup('env', 'DUSTSTACK_TEST_ENV', wantlist=True) }}"
        ),
        json!(["val"])
    );
    assert_eq!(
        r(
            &t,
            &s,
            "{{ lookup('env', 'DUSTSTACK_TEST_ENV', 'DUSTSTACK_TEST_ENV') }}"
        ),
        json!("val,val")
    );
    assert_eq!(r(&t, &s, "{{ lookup('vars', 'other') }}"), json!(5));
    let found = r(
        &t,
        &s,
        "{{ lookup('first_found', ['nope.txt', 'key.pub']) }}",
    );
    assert!(
        found.as_str().unwrap().ends_with("files/key.pub"),
        "{found}"
    );
    let e = t
        .render_str("{{ lookup('file', 'missing.txt') }}", &s)
        .unwrap_err();
    assert!(e.message.contains("missing.txt"), "{e}");
    let e = t
        .render_str("{{ lookup('pipe', 'exit 3') }}", &s)
        .unwrap_err();
    assert!(e.message.contains("returned 3"), "{e}");
}

// ---- template files ----

#[test]
fn template_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("part.j2"), "part {{ x }}\n").unwrap();
    let main = dir.path().join("main.j2");
    let t = Templar::new();
    let s = scope(json!({"x": 1, "items": ["a", "b"], "ansible_managed": "Ansible managed"}));
    let src = "# {{ ansible_managed }}\n{% for i in items %}\n- {{ i }}\n{% endfor %}\n{% include 'part.j2' %}end\n";
    let out = t
        .render_template_file(src, main.to_str().unwrap(), &s)
        .unwrap();
    assert_eq!(out, "# Ansible managed\n- a\n- b\npart 1\nend\n");
    let e = t
        .render_template_file("{{ nope }}\n", "x.j2", &s)
        .unwrap_err();
    assert!(e.message.contains("'nope' is undefined"), "{e}");
}

/// Rough throughput check: `cargo test --release --lib template::tests::throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput() {
    let t = Templar::new();
    let mut vars = serde_json::Map::new();
    for i in 0..500 {
        vars.insert(format!("v{i}"), json!(format!("value {i}")));
    }
    vars.insert("host".into(), json!("example.org"));
    vars.insert("port".into(), json!(6443));
    vars.insert("url".into(), json!("https://{{ host }}:{{ port }}"));
    let s = Scope::new(vars);
    let args = json!({"dest": "/etc/{{ host }}.conf", "mode": "0644", "content": "{{ url }}/x", "when": "plain"});
    let n = 20_000;
    let start = std::time::Instant::now();
    for _ in 0..n {
        t.render_value(&args, &s).unwrap();
        assert!(t.is_true("port > 1000 and host is defined", &s).unwrap());
    }
    let el = start.elapsed();
    println!("{n} task renders in {el:?} ({:?} each)", el / n);
}
