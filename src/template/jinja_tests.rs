//! Issue 16's Jinja2 habits, as an Ansible user writes them: each renders as in Jinja2, or
//! fails at its line and column saying what to write instead.

use super::*;
use std::path::Path;

fn vars() -> Vars {
    let mut v = Vars::new();
    v.insert("s", "Hello World");
    v.insert("t", &true);
    v.insert("l", &["b", "a", "b"]);
    v.insert("nums", &[3, 1, 2]);
    v.insert(
        "users",
        &serde_json::json!([{ "name": "ann", "admin": true }, { "name": "bob", "admin": false }]),
    );
    v.insert("m", &serde_json::json!({ "z": 1, "a": "é", "m": [1, 2] }));
    v.insert("path", "/etc/app/app.conf");
    v.insert("b64", "aGVsbG8=");
    v.insert("conf", "port=8080 host=db1");
    v
}

/// Render a one-line template; Err((col, help)) for an error on line 1.
fn r(src: &str) -> Result<String, (u32, u32, String, String)> {
    render_str(src, &vars(), &Pos::new(Path::new("t.j2"), 1, 1))
        .map_err(|d| (d.pos.line, d.pos.col, d.message, d.help.unwrap_or_default()))
}

fn ok(src: &str, expected: &str) {
    assert_eq!(r(src).as_deref(), Ok(expected), "{src}");
}

/// Fails at line 1, where `at` starts in `src`, with `help` in the hint.
fn instead(src: &str, at: &str, help: &str) {
    let col = src.find(at).expect("token in source") as u32 + 1;
    let (line, c, msg, h) = r(src).expect_err(src);
    assert_eq!((line, c), (1, col), "{src}: {msg} / {h}");
    assert!(h.contains(help), "{src}: {msg} / help: {h}");
}

#[test]
fn positional_arguments_say_the_named_form() {
    instead(
        "{{ y | default('x') }}",
        "'x'",
        "write `default(value='x')`",
    );
    instead("{{ l | join(',') }}", "','", "write `join(sep=',')`");
    instead(
        "{{ s | replace('a','b') }}",
        "'a'",
        "write `replace(from='a', to='b')`",
    );
    instead(
        "{{ nums | map('string') }}",
        "'s",
        "write `map(filter='string')`",
    );
    instead(
        "{{ t | ternary('on', 'off') }}",
        "'on'",
        "write `ternary(yes='on', no='off')`",
    );
    instead(
        "{{ s | hash('sha256') }}",
        "'sha",
        "write `hash(algo='sha256')`",
    );
    instead(
        "{{ s | regex_replace('o', '0') }}",
        "'o'",
        "write `regex_replace(pattern='o', replacement='0')`",
    );
    instead(
        "{{ s | regex_search('W.r') }}",
        "'W",
        "write `regex_search(pattern='W.r')`",
    );
    instead(
        "{{ l | select('defined') }}",
        "'d",
        "write `select(test='defined')`",
    );
    // A regex written as in Python: tera strings need the backslash doubled.
    instead(
        r"{{ conf | regex_replace(pattern='port=(\d+)', replacement='x') }}",
        "'port",
        r"write 'port=(\\d+)'",
    );
}

#[test]
fn the_named_forms_render_as_jinja2_does() {
    ok("{{ y | default(value='x') }}", "x");
    ok("{{ s | default(value='x') }}", "Hello World");
    ok("{{ l | join(sep=',') }}", "b,a,b");
    ok("{{ s | replace(from='World', to='all') }}", "Hello all");
    ok("{{ 'a' if t else 'b' }}", "a");
    ok("{{ 'a' if not t else 'b' }}", "b");
    ok("{% if y is defined %}d{% else %}u{% endif %}", "u");
    ok("{% if s is defined %}d{% endif %}", "d");
    ok("{{ s | lower }} {{ s | upper }}", "hello world HELLO WORLD");
    ok("{{ l | length }} {{ s | length }}", "3 11");
    ok("{{ l | first }}{{ l | last }}", "bb");
    ok("{{ l | unique | join(sep=',') }}", "b,a");
    ok("{{ nums | sort | join(sep=',') }}", "1,2,3");
    ok(
        "{{ users | map(attribute='name') | join(sep=',') }}",
        "ann,bob",
    );
    ok("{{ nums | map(filter='string') | join(sep='-') }}", "3-1-2");
    ok(
        "{{ users | select(attribute='admin') | map(attribute='name') | join(sep=',') }}",
        "ann",
    );
    ok(
        "{{ l | reject(test='equalto', value='a') | join(sep=',') }}",
        "b,b",
    );
    ok(
        "{{ l | select(test='match', value='a') | join(sep=',') }}",
        "a",
    );
    // Mappings iterate in key order, every run the same (config files must not churn).
    ok("{% for k, v in m %}{{ k }}{% endfor %}", "amz");
}

#[test]
fn the_ansible_filters_render_as_ansible_does() {
    ok(
        "{{ m | to_json }}",
        r#"{"a": "\u00e9", "m": [1, 2], "z": 1}"#,
    );
    ok(
        "{{ m | to_nice_json }}",
        "{\n    \"a\": \"\\u00e9\",\n    \"m\": [\n        1,\n        2\n    ],\n    \"z\": 1\n}",
    );
    ok("{{ {'a': 1, 'b': 'x'} | to_yaml }}", "a: 1\nb: x\n");
    ok("{{ 'hello' | b64encode }}", "aGVsbG8=");
    ok("{{ b64 | b64decode }}", "hello");
    ok(
        r"{{ conf | regex_replace(pattern='port=(\\d+)', replacement='port=<\\1>') }}",
        "port=<8080> host=db1",
    );
    ok(
        r"{{ conf | regex_search(pattern='host=\\w+') }}",
        "host=db1",
    );
    ok("{{ s | quote }}", "'Hello World'");
    ok("{{ s | mandatory }}", "Hello World");
    ok("{{ t | ternary(yes='on', no='off') }}", "on");
    ok(
        "{{ path | basename }} {{ path | dirname }}",
        "app.conf /etc/app",
    );
    ok(
        "{{ 'abc' | hash(algo='sha256') }}",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
    ok(
        "{{ {'a': 1} | dict2items | to_json }}",
        r#"[{"key": "a", "value": 1}]"#,
    );
    ok(
        "{{ [{'key': 'a', 'value': 1}] | items2dict | to_json }}",
        r#"{"a": 1}"#,
    );
    ok("{{ 'yes' | bool }} {{ 'off' | bool }}", "true false");
    ok("{% if 'abc' is match(pat='a') %}m{% endif %}", "m");
}

#[test]
fn mandatory_fails_at_the_filter_with_the_authors_message() {
    let src = "x {{ nope | mandatory(msg='set nope with -e') }}";
    let (line, col, msg, _) = r(src).unwrap_err();
    assert_eq!(
        (line, col),
        (1, src.find("mandatory").unwrap() as u32 + 1),
        "{msg}"
    );
    assert!(msg.ends_with("set nope with -e"), "{msg}");
}

#[test]
fn jinja_habits_tera_lacks_say_what_to_write() {
    instead(
        "{{ users | selectattr('admin') }}",
        "'admin'",
        "`selectattr` is not a tera filter: write `select(attribute=\"name\", value=…)`",
    );
    let (_, col, msg, help) = r("{{ users | selectattr }}").unwrap_err();
    assert_eq!(col, 12, "{msg}");
    assert_eq!(msg, "unknown filter `selectattr`");
    assert!(help.contains("select(attribute="), "{help}");
    let (_, col, _, help) = r("{{ lookup(name='env') }}").unwrap_err();
    assert_eq!(col, 4);
    assert!(help.contains("no lookups"), "{help}");
    // An inline if needs its else in tera.
    instead("{{ 'x' if t }}", "}}", "");
}

#[test]
fn group_by_is_the_same_at_every_run() {
    let src = "{% for k, us in users | group_by(attribute='admin') %}{{ k }}={{ us | map(attribute='name') | join(sep=',') }};{% endfor %}";
    for _ in 0..20 {
        ok(src, "false=bob;true=ann;");
    }
}
