//! Hostile values in the arguments of every module reach the host as data, never as code.
//!
//! Each step gets values carrying `$(…)`, backticks, quotes, `;`, newlines and leading dashes,
//! each of which would create a canary file if a shell ever interpreted it. Steps may fail
//! (a user named `$(touch …)` is refused by useradd, a package of that name does not exist);
//! what must never happen is a canary on any host or on the controller.

mod common;

use common::project::{text, Project};

const HOSTS: [&str; 3] = ["staging", "db2", "lb"];

/// Hostile variants of a value, each creating /tmp/cutover-inj-<tag>-<n> if executed.
fn hostile(tag: &str) -> Vec<String> {
    let c = |n: usize| format!("/tmp/cutover-inj-{tag}-{n}");
    vec![
        format!("$(touch {})", c(1)),
        format!("`touch {}`", c(2)),
        format!("x'; touch {}; echo '", c(3)),
        format!("x\"; touch {}; echo \"", c(4)),
        format!("x\ntouch {}", c(5)),
        format!("-x;touch {}", c(6)),
        format!("x && touch {}", c(7)),
        format!("x | touch {}", c(8)),
    ]
}

fn canaries(host: &str) -> String {
    String::from_utf8_lossy(&common::lab_ssh(host, "ls /tmp/cutover-inj-* 2>/dev/null").stdout)
        .into_owned()
}

/// Steps for every module that takes free text, each argument fed a hostile value. Template
/// expressions are avoided on purpose: the values go in as YAML strings (JSON-quoted).
fn steps(values: &[String]) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        let name = v.replace(['\n', '/'], "_");
        let d = format!("/srv/cutover-inj/{}", name.replace('\'', "_"));
        for (module, args) in [
            (
                "copy",
                format!("{{ content: {}, dest: {} }}", q(v), q(&format!("{d}-copy"))),
            ),
            (
                "file",
                format!("{{ path: {}, state: directory }}", q(&format!("{d}-dir"))),
            ),
            (
                "file",
                format!(
                    "{{ path: {}, state: link, src: {} }}",
                    q(&format!("{d}-link")),
                    q(v)
                ),
            ),
            (
                "lineinfile",
                format!(
                    "{{ path: {}, line: {}, create: true }}",
                    q(&format!("{d}-lines")),
                    q(v)
                ),
            ),
            (
                "lineinfile",
                format!(
                    "{{ path: /srv/cutover-inj/lines, regexp: {}, line: x, create: true }}",
                    q(&regex_escape(v))
                ),
            ),
            ("command", format!("{{ argv: [printf, '%s', {}] }}", q(v))),
            (
                "command",
                format!("{{ argv: [ls, {}], chdir: /srv/cutover-inj }}", q(v)),
            ),
            ("package", format!("{{ name: {}, state: present }}", q(v))),
            ("service", format!("{{ name: {}, state: stopped }}", q(v))),
            ("user", format!("{{ name: {}, state: present }}", q(v))),
            ("group", format!("{{ name: {}, state: present }}", q(v))),
            (
                "wait_for",
                format!(
                    "{{ path: {}, state: absent, timeout: 1 }}",
                    q(&format!("{d}-wait"))
                ),
            ),
            (
                "wait_for",
                format!(
                    "{{ path: /etc/hostname, search: {}, state: present, timeout: 1 }}",
                    q(v)
                ),
            ),
            ("debug", format!("{{ msg: {} }}", q(v))),
            ("fail", format!("{{ msg: {} }}", q(v))),
        ] {
            out.push_str(&format!(
                "    - name: {module} {i}\n      {module}: {args}\n      ignore_errors: true\n"
            ));
        }
    }
    out
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                format!("\\{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[test]
fn hostile_arguments_of_every_module_execute_nothing() {
    let p = Project::new();
    for h in HOSTS {
        common::lab_ssh(
            h,
            "rm -rf /tmp/cutover-inj-* /srv/cutover-inj && mkdir -p /srv/cutover-inj",
        );
    }
    let values = hostile("arg");
    p.write(
        "pb.yml",
        &format!("- hosts: staging:db2:lb\n  steps:\n{}", steps(&values)),
    );
    // --break-lock: a lock left by another test binary's killed run must not hide this test.
    let o = p.apply("pb.yml", &["--output", "plain", "--break-lock"]);
    // Some steps fail by design; the run itself must have gone through every step.
    assert!(matches!(o.status.code(), Some(0) | Some(3)), "{}", text(&o));
    let results = p.last_run_results();
    assert_eq!(
        results.len(),
        3 * values.len() * 15,
        "every step ran on every host: {}",
        text(&o)
    );
    for h in HOSTS {
        assert_eq!(canaries(h), "", "a hostile value was executed on {h}");
    }
    assert!(
        std::fs::read_dir("/tmp")
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with("cutover-inj-")),
        "executed on the controller"
    );
    // Data arrived as data: the copied content is byte for byte the value.
    let copied = common::lab_ssh(
        "staging",
        "cat /srv/cutover-inj/x\\\"*-copy 2>/dev/null | head -c 100",
    );
    assert!(
        String::from_utf8_lossy(&copied.stdout).contains("touch /tmp/cutover-inj-arg-4"),
        "{}",
        text(&copied)
    );
    for h in HOSTS {
        common::lab_ssh(h, "rm -rf /srv/cutover-inj /tmp/cutover-inj-*");
    }
}

#[test]
fn hostile_host_names_and_variable_names_are_refused_before_anything_runs() {
    let p = Project::new();
    let inv = common::project::lab_inventory_text().replacen(
        "hosts:\n",
        "hosts:\n  \"$(touch /tmp/cutover-inj-host)\": { address: 10.77.0.41 }\n",
        1,
    );
    let inv = p.write("inventory.yml", &inv);
    p.write("pb.yml", "- hosts: all\n  steps:\n    - command: 'true'\n");
    let o = p.apply_with(&inv, "pb.yml", &["--output", "plain"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("is not a valid host name"),
        "{}",
        text(&o)
    );
    assert!(!std::path::Path::new("/tmp/cutover-inj-host").exists());
    p.write("vars.yml", "\"$(touch /tmp/cutover-inj-var)\": 1\n");
    let o = p.apply(
        "pb.yml",
        &["-e", &format!("@{}", p.path("vars.yml").display())],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not usable in templates"), "{}", text(&o));
}
