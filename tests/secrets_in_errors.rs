//! A secret's value never shows in an error, whichever file declares it secret and whichever
//! file's error quotes it: `-e @file`, the inventory (`secret_vars:` and its values, the
//! encrypted secrets file), playbooks and templates, in any order they are read. Each case
//! asserts the exit code, the error's position and message, and that its quoted source line
//! shows the marker (with the caret still under the reported column) instead of the value.

use std::path::Path;
use std::process::{Command, Output};

const SECRET: &str = "hunter2-Xq9";

fn cutover(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .current_dir(dir)
        .env_remove("CUTOVER_INVENTORY")
        .env_remove("CUTOVER_SECRETS_KEY")
        .env_remove("CUTOVER_SECRETS_KEY_FILE")
        .args(args)
        .output()
        .expect("run the cutover binary")
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A project: an inventory declaring `db_password` secret, a valid playbook, a template dir.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "inv.yml",
        "secret_vars: [db_password]\nhosts:\n  app1: { address: 127.0.0.1, port: 1 }\n",
    );
    write(
        dir.path(),
        "ok.yml",
        "- hosts: app1\n  steps:\n    - command: echo hi\n",
    );
    write(dir.path(), "templates/ok.j2", "fine\n");
    dir
}

/// Encrypt `plain` into `name` with a new key `key.txt`, as `cutover secrets` does.
fn encrypted_secrets(dir: &Path, name: &str, plain: &str) {
    let o = cutover(dir, &["secrets", "keygen", "-o", "key.txt"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let public = String::from_utf8_lossy(&o.stdout).trim().to_string();
    write(dir, "plain.yml", plain);
    let o = cutover(
        dir,
        &["secrets", "encrypt", "plain.yml", "-r", &public, "-o", name],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    std::fs::remove_file(dir.join("plain.yml")).unwrap();
}

/// Exit 1; an error at `pos` with `message`; its source line shows `shown` (the marker where
/// the secret was) with the caret under `caret_under`; the secret nowhere in the output.
fn assert_masked(out: &Output, pos: &str, message: &str, shown: &str, caret_under: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(!all.contains(SECRET), "the secret shows:\n{all}");
    assert!(!all.contains("hunter2"), "part of the secret shows:\n{all}");
    let lines: Vec<&str> = stderr.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == format!("  --> {pos}"))
        .unwrap_or_else(|| panic!("no error at {pos}:\n{stderr}"));
    assert!(
        lines[at - 1].starts_with("error: ") && lines[at - 1].contains(message),
        "error at {pos} is not `{message}`:\n{stderr}"
    );
    let source = lines[at + 2];
    let caret = lines[at + 3];
    assert!(
        source.contains(shown),
        "source line `{source}` lacks `{shown}`"
    );
    let col = caret.find('^').expect("a caret line");
    assert!(
        source[col..].starts_with(caret_under),
        "caret not under `{caret_under}`:\n{source}\n{caret}"
    );
}

#[test]
fn a_playbook_error_does_not_quote_a_secret_from_an_extra_vars_file() {
    let p = project();
    let d = p.path();
    write(d, "vars.yml", &format!("db_password: {SECRET}\n"));
    write(
        d,
        "pb.yml",
        &format!("- hosts: app1\n  steps:\n    - {{ command: \"echo {SECRET}\", regster: x }}\n"),
    );
    for cmd in ["check", "plan", "apply"] {
        let out = cutover(d, &[cmd, "-i", "inv.yml", "-e", "@vars.yml", "pb.yml"]);
        assert_masked(
            &out,
            "pb.yml:3:38",
            "unknown key `regster` in step",
            "echo [secret:db_password]\", regster",
            "regster",
        );
    }
}

#[test]
fn an_extra_vars_file_error_does_not_quote_a_secret_from_the_secrets_file() {
    let p = project();
    let d = p.path();
    encrypted_secrets(d, "sec.age", &format!("vault_pw: \"{SECRET}\"\n"));
    write(
        d,
        "inv2.yml",
        "secrets_file: sec.age\nsecrets_key_file: key.txt\nhosts:\n  app1: { address: 127.0.0.1, port: 1 }\n",
    );
    // The -e file is read before the inventory by every command; its error must still mask.
    write(d, "vars.yml", &format!("ok: 1\nbad-name: {SECRET}\n"));
    for args in [
        vec!["check", "-i", "inv2.yml", "-e", "@vars.yml", "ok.yml"],
        vec!["plan", "-i", "inv2.yml", "-e", "@vars.yml", "ok.yml"],
        vec!["apply", "-i", "inv2.yml", "-e", "@vars.yml", "ok.yml"],
        vec!["inventory", "-i", "inv2.yml", "-e", "@vars.yml"],
    ] {
        let out = cutover(d, &args);
        assert_masked(
            &out,
            "vars.yml:2:1",
            "variable name `bad-name` is not usable",
            "bad-name: [secret:vault_pw]",
            "bad-name",
        );
    }
}

#[test]
fn an_extra_vars_file_error_does_not_quote_a_secret_set_later_in_it() {
    let p = project();
    let d = p.path();
    write(
        d,
        "vars.yml",
        &format!("bad-name: \"{SECRET}\"\ndb_password: \"{SECRET}\"\n"),
    );
    let out = cutover(d, &["check", "-i", "inv.yml", "-e", "@vars.yml", "ok.yml"]);
    assert_masked(
        &out,
        "vars.yml:1:1",
        "variable name `bad-name`",
        "bad-name: \"[secret:db_password]\"",
        "bad-name",
    );
}

#[test]
fn an_inventory_error_does_not_quote_a_secret_from_an_extra_vars_file() {
    let p = project();
    let d = p.path();
    write(d, "vars.yml", &format!("db_password: {SECRET}\n"));
    write(
        d,
        "bad.yml",
        &format!("secret_vars: [db_password]\nhosts:\n  app1: {{ adress: {SECRET}, port: 1 }}\n"),
    );
    for args in [
        vec!["check", "-i", "bad.yml", "-e", "@vars.yml", "ok.yml"],
        vec!["inventory", "-i", "bad.yml", "-e", "@vars.yml"],
        vec!["apply", "-i", "bad.yml", "-e", "@vars.yml", "ok.yml"],
    ] {
        let out = cutover(d, &args);
        assert_masked(
            &out,
            "bad.yml:3:11",
            "unknown key `adress` in host `app1`",
            "adress: [secret:db_password], port",
            "adress",
        );
    }
}

#[test]
fn an_inventory_error_does_not_quote_a_secret_declared_at_its_end() {
    // `secret_vars:` after the hosts, and the host whose vars hold the value fails itself.
    let p = project();
    let d = p.path();
    write(
        d,
        "bad.yml",
        &format!(
            "hosts:\n  app1: {{ port: 1, vars: {{ db_password: {SECRET} }}, become: {SECRET} }}\nsecret_vars: [db_password]\n"
        ),
    );
    let out = cutover(d, &["check", "-i", "bad.yml", "ok.yml"]);
    assert_masked(
        &out,
        "bad.yml:2:64",
        "expected a boolean",
        "become: [secret:db_password] }",
        "[secret:db_password] }",
    );
}

#[test]
fn a_template_error_does_not_quote_a_secret_from_play_vars() {
    let p = project();
    let d = p.path();
    write(
        d,
        "pb.yml",
        &format!("- hosts: app1\n  vars: {{ db_password: \"{SECRET}\" }}\n  steps:\n    - command: echo hi\n"),
    );
    write(
        d,
        "templates/bad.j2",
        &format!("pw={SECRET} {{% if x %}}\n"),
    );
    let out = cutover(d, &["check", "-i", "inv.yml", "pb.yml"]);
    assert_masked(
        &out,
        "templates/bad.j2:1:16",
        "is never closed",
        "pw=[secret:db_password] {% if",
        "{% if",
    );
}

#[test]
fn a_secret_across_the_cut_of_a_long_line_does_not_show_in_part() {
    let p = project();
    let d = p.path();
    write(d, "vars.yml", &format!("db_password: {SECRET}\n"));
    // The secret starts at column 157: a snippet cut at 160 characters before masking would
    // show its first characters.
    let pad = "x".repeat(140);
    write(
        d,
        "pb.yml",
        &format!("- hosts: app1\n  steps:\n    - {{ regster: y, command: \"{pad} {SECRET}\" }}\n"),
    );
    let out = cutover(d, &["check", "-i", "inv.yml", "-e", "@vars.yml", "pb.yml"]);
    assert_masked(
        &out,
        "pb.yml:3:9",
        "unknown key `regster` in step",
        "{ regster: y",
        "regster",
    );
}

#[test]
fn a_broken_saved_plan_does_not_quote_a_secret_from_the_secrets_file() {
    let p = project();
    let d = p.path();
    encrypted_secrets(d, "sec.age", &format!("vault_pw: \"{SECRET}\"\n"));
    write(
        d,
        "inv2.yml",
        "secrets_file: sec.age\nsecrets_key_file: key.txt\nhosts:\n  app1: { address: 127.0.0.1, port: 1 }\n",
    );
    write(
        d,
        "plan.json",
        &format!("{{\n  \"schema\": \"cutover.plan/v1\",\n  \"note\": \"{SECRET}\" ]\n}}\n"),
    );
    let out = cutover(d, &["apply", "-i", "inv2.yml", "plan.json"]);
    assert_masked(
        &out,
        "plan.json:3:25",
        "plan.json is not valid JSON",
        "\"note\": \"[secret:vault_pw]\" ]",
        "]",
    );
}

#[test]
fn a_line_of_a_multi_line_secret_is_masked_where_an_error_quotes_it() {
    let p = project();
    let d = p.path();
    let line = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC";
    write(
        d,
        "key.yml",
        &format!("db_password: |\n  -----BEGIN PRIVATE KEY-----\n  {line}\n  -----END PRIVATE KEY-----\n"),
    );
    write(
        d,
        "pb.yml",
        &format!("- hosts: app1\n  steps:\n    - {{ regster: y, command: \"echo {line}\" }}\n"),
    );
    let out = cutover(d, &["check", "-i", "inv.yml", "-e", "@key.yml", "pb.yml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("  --> pb.yml:3:9\n"), "{stderr}");
    assert!(!stderr.contains(line), "{stderr}");
    assert!(
        stderr.contains("command: \"echo [secret:db_password]\" }"),
        "{stderr}"
    );
}

#[test]
fn an_extra_vars_file_error_does_not_quote_a_secret_from_play_vars() {
    let p = project();
    let d = p.path();
    write(
        d,
        "pb.yml",
        &format!("- hosts: app1\n  vars: {{ db_password: \"{SECRET}\" }}\n  steps:\n    - command: echo hi\n"),
    );
    write(d, "vars.yml", &format!("bad-name: {SECRET}\n"));
    for cmd in ["check", "plan", "apply"] {
        let out = cutover(d, &[cmd, "-i", "inv.yml", "-e", "@vars.yml", "pb.yml"]);
        assert_masked(
            &out,
            "vars.yml:1:1",
            "variable name `bad-name`",
            "bad-name: [secret:db_password]",
            "bad-name",
        );
    }
}

/// A file that does not parse: the value on the quoted line was never read, so it is not known
/// as a secret's — but its name is declared secret (`-e @file` against the inventory's
/// `secret_vars:`), or says it is one (an inventory that fails before its own declarations).
/// The rest of the line after `NAME:` is hidden.
#[test]
fn a_line_that_does_not_parse_hides_what_it_assigns_to_a_secret_name() {
    let p = project();
    let d = p.path();
    write(
        d,
        "vars.yml",
        &format!("db_password: \"{SECRET}\nother: 1\n"),
    );
    let out = cutover(d, &["check", "-i", "inv.yml", "-e", "@vars.yml", "ok.yml"]);
    assert_masked(
        &out,
        "vars.yml:1:14",
        "unclosed quote",
        "db_password: [secret:db_password]",
        "[secret:db_password]",
    );
    write(
        d,
        "bad.yml",
        &format!(
            "hosts:\n  app1: {{ port: 1, vars: {{ api_token: \"{SECRET} }} }}\nsecret_vars: [api_token]\n"
        ),
    );
    let out = cutover(d, &["check", "-i", "bad.yml", "ok.yml"]);
    assert_masked(
        &out,
        "bad.yml:2:39",
        "unclosed quote",
        "api_token: [secret:api_token]",
        "[secret:api_token]",
    );
}
