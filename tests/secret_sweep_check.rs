//! The secret sweep (`tests/secret_sweep.rs`, run after the whole suite) finds what it looks
//! for: secrets planted in a scratch artifacts directory, in each form an output could carry
//! them in, are reported by file, name and form (never by value); a clean directory passes; an
//! empty one, or one without any recorded cutover invocation, fails. Needs no lab: the lab's
//! secrets are decrypted from the repository with the lab key.

mod common;

use common::sweep::{forms, sweep, verdict, Secret};

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sweep-check")
        .tempdir()
        .unwrap()
}

fn write(dir: &std::path::Path, rel: &str, data: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

#[test]
fn every_form_of_a_planted_secret_is_found_and_named_without_its_value() {
    let dir = scratch();
    let value = "Pw&<7>'x\" y/z+=q";
    let secret = Secret {
        name: "db_password".into(),
        value: value.into(),
    };
    write(
        dir.path(),
        "p/1/cutover/0001-apply.cmd",
        b"cutover apply pb.yml\n",
    );
    write(
        dir.path(),
        "p/1/cutover/0001-apply.stdout",
        b"changed: password = [secret:db_password]\n",
    );
    let all = forms(value);
    assert!(
        all.len() >= 12,
        "{:?}",
        all.iter().map(|f| f.0).collect::<Vec<_>>()
    );
    for (i, (form, text)) in all.iter().enumerate() {
        // Each form inside other text, as an output would carry it.
        write(
            dir.path(),
            &format!("p/1/state/runs/r/{i:02}.log"),
            format!("before {text} after\n").as_bytes(),
        );
        let found = sweep(dir.path(), std::slice::from_ref(&secret));
        let file = dir.path().join(format!("p/1/state/runs/r/{i:02}.log"));
        assert!(
            found
                .hits
                .iter()
                .any(|h| h.file == file && h.secret == "db_password"),
            "the {form} form was not found"
        );
        std::fs::remove_file(file).unwrap();
    }
    // base64 of a longer text that contains the secret somewhere, at every alignment.
    let b64 = |d: &[u8]| {
        let o = std::process::Command::new("base64")
            .arg("-w0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(d)?;
                c.wait_with_output()
            })
            .unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    for prefix in ["", "a", "ab", "abc"] {
        let text = b64(format!("{prefix}user=wiki password={value}\n").as_bytes());
        write(dir.path(), "p/1/out/basic-auth.txt", text.as_bytes());
        let found = sweep(dir.path(), std::slice::from_ref(&secret));
        assert!(
            found.hits.iter().any(|h| h.form.starts_with("base64")),
            "base64 with prefix {prefix:?} not found"
        );
    }
    std::fs::remove_file(dir.path().join("p/1/out/basic-auth.txt")).unwrap();
    // Clean again: the verdict passes.
    let ok = verdict(dir.path(), std::slice::from_ref(&secret)).unwrap();
    assert!(ok.contains("none holds"), "{ok}");
    // One leak: the verdict fails, naming the file, the secret and the form, not the value.
    write(
        dir.path(),
        "p/1/out/plan.json",
        serde_json::json!({ "diff": format!("+password = {value}") })
            .to_string()
            .as_bytes(),
    );
    let why = verdict(dir.path(), std::slice::from_ref(&secret)).unwrap_err();
    assert!(
        why.contains("plan.json") && why.contains("db_password") && why.contains("JSON-escaped"),
        "{why}"
    );
    for (_, f) in forms(value) {
        assert!(!why.contains(&f), "the report shows the secret");
    }
}

#[test]
fn the_lab_secrets_are_decrypted_and_found() {
    let secrets = common::sweep::lab_secrets();
    let names: Vec<&str> = secrets.iter().map(|s| s.name.as_str()).collect();
    for want in ["db_password", "replication_password", "ajp_secret"] {
        assert!(names.contains(&want), "{names:?}");
    }
    let dir = scratch();
    write(
        dir.path(),
        "t/case/1/cutover/0001-apply.cmd",
        b"cutover apply\n",
    );
    write(dir.path(), "t/case/1/cutover/0001-apply.stdout", b"ok\n");
    assert!(verdict(dir.path(), &secrets).is_ok());
    // Each lab secret planted in a kept stderr: the sweep fails and names it.
    for s in secrets
        .iter()
        .filter(|s| !s.name.starts_with("lab secrets/"))
    {
        write(
            dir.path(),
            "t/case/1/cutover/0001-apply.stderr",
            format!("error: bad value {}\n", s.value).as_bytes(),
        );
        let why = verdict(dir.path(), &secrets).unwrap_err();
        assert!(why.contains(&s.name), "{} not reported: {why}", s.name);
        assert!(!why.contains(&s.value), "the report shows {}", s.name);
    }
}

#[test]
fn no_artifacts_is_a_failure_not_a_pass() {
    let secret = Secret {
        name: "x".into(),
        value: "a-long-enough-secret".into(),
    };
    let dir = scratch();
    let why = verdict(dir.path(), std::slice::from_ref(&secret)).unwrap_err();
    assert!(why.contains("no artifacts"), "{why}");
    let why = verdict(
        &dir.path().join("does-not-exist"),
        std::slice::from_ref(&secret),
    )
    .unwrap_err();
    assert!(why.contains("no artifacts"), "{why}");
    // Files, but no cutover invocation kept: also a failure.
    write(dir.path(), "t/1/state/runs/r/journal.jsonl", b"{}\n");
    let why = verdict(dir.path(), std::slice::from_ref(&secret)).unwrap_err();
    assert!(why.contains("no recorded cutover invocation"), "{why}");
    // No secrets to look for: a failure too.
    write(dir.path(), "t/1/cutover/0001-plan.cmd", b"cutover plan\n");
    assert!(verdict(dir.path(), &[]).is_err());
    assert!(verdict(dir.path(), std::slice::from_ref(&secret)).is_ok());
}
