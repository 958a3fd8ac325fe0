//! `cutover render` and `cutover check` on templates, through the binary: secrets derived
//! through filters stay masked (`--show-secrets` is the only way to see them), a broken file
//! does not stop an unrelated render, and every error names file, line and column.

use std::path::Path;
use std::process::Command;

fn project(templates: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("inv.yml"),
        "secret_vars: [db_password]\nhosts:\n  app1:\n    address: 10.0.0.1\n    vars:\n      db_password: \"Kp7rTopSecret!x\"\n      port: 8080\n",
    )
    .unwrap();
    for (name, text) in templates {
        let p = dir.path().join("templates").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

fn cutover(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_secret_through_filters_is_masked_unless_show_secrets() {
    let dir = project(&[(
        "a.conf",
        "url = mysql://app:{{ db_password | urlencode }}@db\nshout = {{ db_password | upper }}\nb64 = {{ db_password | b64encode }}\ncut = {{ db_password | truncate(length=8) }}\n",
    )]);
    let (rc, out, err) = cutover(
        dir.path(),
        &["render", "a.conf", "-i", "inv.yml", "--host", "app1"],
    );
    assert_eq!(rc, 0, "{err}");
    assert_eq!(
        out,
        "url = mysql://app:[secret:derived]@db\nshout = [secret:derived]\nb64 = [secret:derived]\ncut = [secret:derived]…\n"
    );
    let (rc, out, _) = cutover(
        dir.path(),
        &[
            "render",
            "a.conf",
            "-i",
            "inv.yml",
            "--host",
            "app1",
            "--show-secrets",
        ],
    );
    assert_eq!(rc, 0);
    assert!(
        out.contains("Kp7rTopSecret%21x") && out.contains("KP7RTOPSECRET!X"),
        "{out}"
    );
    assert!(
        out.contains("S3A3clRvcFNlY3JldCF4") && out.contains("Kp7rTopS…"),
        "{out}"
    );
}

#[test]
fn show_secrets_is_for_render_alone() {
    let dir = project(&[("a.conf", "x\n")]);
    let (rc, _, err) = cutover(dir.path(), &["check", "-i", "inv.yml", "--show-secrets"]);
    assert_eq!(rc, 64, "{err}");
    assert!(err.contains("--show-secrets"), "{err}");
}

#[test]
fn a_broken_template_does_not_stop_rendering_another_but_check_reports_it() {
    let dir = project(&[
        ("good.conf", "port = {{ port }}\n"),
        ("broken.conf", "a\nb = {{ port | no_such_filter }}\n"),
    ]);
    let (rc, out, err) = cutover(
        dir.path(),
        &["render", "good.conf", "-i", "inv.yml", "--host", "app1"],
    );
    assert_eq!((rc, out.as_str()), (0, "port = 8080\n"), "{err}");
    let (rc, _, err) = cutover(
        dir.path(),
        &["render", "broken.conf", "-i", "inv.yml", "--host", "app1"],
    );
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("unknown filter `no_such_filter`"), "{err}");
    assert!(err.contains("templates/broken.conf:2:15"), "{err}");
    std::fs::create_dir_all(dir.path().join("playbooks")).unwrap();
    std::fs::write(
        dir.path().join("playbooks/noop.yml"),
        "- hosts: all\n  steps: []\n",
    )
    .unwrap();
    let (rc, _, err) = cutover(
        dir.path(),
        &["check", "-i", "inv.yml", "playbooks/noop.yml"],
    );
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("templates/broken.conf:2:15"), "{err}");
}

#[test]
fn check_warns_on_interpolations_that_escape_quoting_without_failing() {
    let dir = project(&[("a.conf", "x\n")]);
    std::fs::create_dir_all(dir.path().join("playbooks")).unwrap();
    std::fs::write(
        dir.path().join("playbooks/pb.yml"),
        "- hosts: all\n  vars: { opts: \"-v\" }\n  steps:\n    - shell: \"echo '{{ port }}' {{ port | unquoted }} {{ opts | unquoted }} {{ port }}\"\n",
    )
    .unwrap();
    let (rc, out, err) = cutover(dir.path(), &["check", "-i", "inv.yml", "playbooks/pb.yml"]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.starts_with("ok:"), "{out}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 2, "{err}");
    assert!(warnings[0].contains("`{{ port }}` is inside '…'"), "{err}");
    assert!(err.contains("playbooks/pb.yml:4:21"), "{err}");
    assert!(
        warnings[1].contains("puts `port` into the command without quoting"),
        "{err}"
    );
    assert!(err.contains("playbooks/pb.yml:4:33"), "{err}");
}

#[test]
fn a_variable_derived_from_a_secret_is_masked_where_it_is_shown() {
    let dir = project(&[("dsn.conf", "dsn = {{ dsn }}\n")]);
    std::fs::write(
        dir.path().join("inv.yml"),
        "secret_vars: [db_password]\nhosts:\n  app1:\n    address: 10.0.0.1\n    vars:\n      db_password: \"Kp7rTopSecret!x\"\n      dsn: \"mysql://app:{{ db_password | urlencode }}@db/wiki\"\n",
    )
    .unwrap();
    let (rc, out, err) = cutover(
        dir.path(),
        &["render", "dsn.conf", "-i", "inv.yml", "--host", "app1"],
    );
    assert_eq!(rc, 0, "{err}");
    assert_eq!(out, "dsn = mysql://app:[secret:derived]@db/wiki\n");
    let (rc, out, err) = cutover(
        dir.path(),
        &["inventory", "-i", "inv.yml", "--host", "app1"],
    );
    assert_eq!(rc, 0, "{err}");
    assert!(
        !out.contains("Kp7rTopSecret") && !out.contains("%21x"),
        "{out}"
    );
}

/// Loops that multiply (tera caps one `range` at 100 000 elements, not two nested ones) stop
/// at the output bound with an error naming the template, or the playbook value where it is,
/// instead of filling the controller's memory.
#[test]
fn a_render_that_would_fill_memory_stops_with_an_error() {
    let loops =
        "{% for i in range(end=100000) %}{% for j in range(end=100000) %}x{% endfor %}{% endfor %}";
    let dir = project(&[("many.conf", &format!("{loops}\n"))]);
    let started = std::time::Instant::now();
    let (rc, out, err) = cutover(
        dir.path(),
        &["render", "many.conf", "-i", "inv.yml", "--host", "app1"],
    );
    assert_eq!(rc, 1, "{err}");
    assert!(out.is_empty());
    assert!(
        err.contains("template `many.conf` renders to more than 16 MiB; rendering stopped"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("pb.yml"),
        format!("- hosts: app1\n  steps:\n    - debug: {{ msg: \"{loops}\" }}\n"),
    )
    .unwrap();
    let (rc, _, err) = cutover(dir.path(), &["check", "-i", "inv.yml", "pb.yml"]);
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains("this value renders to more than 16 MiB") && err.contains("pb.yml:3:"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

/// A step guarded by `when: x is defined` uses `x` in its arguments; on a host without `x` it
/// never runs, so `check` does not call `x` undefined there. A `when:` true on the host still
/// has its arguments checked (an undefined name in them is an error at its position), and a
/// `when:` on a name a run registers keeps them checked on every host.
#[test]
fn arguments_of_a_step_whose_when_is_false_on_a_host_are_not_checked_there() {
    let dir = tempfile::tempdir().unwrap();
    let inv = "hosts:\n  a:\n    address: 10.0.0.1\n    vars:\n      layout: { vg: vg0 }\n  b:\n    address: 10.0.0.2\n";
    std::fs::write(dir.path().join("inv.yml"), inv).unwrap();
    let guarded = "- hosts: all\n  steps:\n    - debug: { msg: \"{{ layout.vg }}\" }\n      when: layout is defined\n";
    std::fs::write(dir.path().join("guarded.yml"), guarded).unwrap();
    let (rc, out, err) = cutover(dir.path(), &["check", "-i", "inv.yml", "guarded.yml"]);
    assert_eq!(rc, 0, "{out}{err}");
    // True on `a`: its arguments are rendered there, and a typo is found.
    let typo = guarded.replace("{{ layout.vg }}", "{{ layout.vg }}/{{ layuot }}");
    std::fs::write(dir.path().join("typo.yml"), typo).unwrap();
    let (rc, _, err) = cutover(dir.path(), &["check", "-i", "inv.yml", "typo.yml"]);
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("undefined variable `layuot`"), "{err}");
    assert!(err.contains("typo.yml:3:41"), "{err}");
    assert!(err.contains("host a"), "{err}");
    assert!(!err.contains("host b"), "{err}");
    // Without the guard, `b` lacks `layout`.
    let unguarded = guarded.replace("      when: layout is defined\n", "");
    std::fs::write(dir.path().join("unguarded.yml"), unguarded).unwrap();
    let (rc, _, err) = cutover(dir.path(), &["check", "-i", "inv.yml", "unguarded.yml"]);
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains("undefined variable `layout`") && err.contains("host b"),
        "{err}"
    );
    // A `when:` on a registered result is known only at run time: arguments stay checked.
    let registered = "- hosts: all\n  steps:\n    - command: \"true\"\n      register: r\n    - debug: { msg: \"{{ layout.vg }}\" }\n      when: r.rc == 1\n";
    std::fs::write(dir.path().join("registered.yml"), registered).unwrap();
    let (rc, _, err) = cutover(dir.path(), &["check", "-i", "inv.yml", "registered.yml"]);
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains("undefined variable `layout`") && err.contains("host b"),
        "{err}"
    );
}
