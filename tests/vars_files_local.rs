//! `vars_files:` on a play, run against the controller itself (`address: local`): a plain
//! file and an encrypted one (decrypted with the inventory's key file), their place in the
//! precedence (above the play's `vars:`, below `-e`), and the encrypted values masked in output,
//! plan and journal.

mod common;

use std::path::Path;

use common::local::cutover;
use common::project::text;

const SECRET: &str = "Vf-s3cret-Token-77";

/// `pb.yml` writes `data/out` from `greeting`, `release` and `api_token`: the play's `vars:`
/// say `release: play`, `vars/common.yml` overrides it and sets `greeting`, the encrypted
/// `vars/secrets.age` gives `api_token`.
fn project(d: &Path) {
    let key = d.join("test.key");
    let o = common::local::command(d, &["secrets", "keygen", "--out", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let public = text(&o)
        .split_whitespace()
        .find(|w| w.starts_with("age1"))
        .expect("keygen prints the public key")
        .to_string();
    std::fs::write(
        d.join("inv.yml"),
        "secrets_key_file: test.key\nhosts:\n  n1: { address: local }\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("playbooks/vars")).unwrap();
    std::fs::create_dir_all(d.join("data")).unwrap();
    std::fs::write(
        d.join("playbooks/vars/common.yml"),
        "greeting: hello\nrelease: from-file\n",
    )
    .unwrap();
    std::fs::write(
        d.join("plain-secrets.yml"),
        format!("api_token: {SECRET}\n"),
    )
    .unwrap();
    let o = common::local::command(
        d,
        &[
            "secrets",
            "encrypt",
            "-r",
            &public,
            "-o",
            "playbooks/vars/secrets.age",
            "plain-secrets.yml",
        ],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    std::fs::remove_file(d.join("plain-secrets.yml")).unwrap();
    std::fs::write(
        d.join("playbooks/pb.yml"),
        format!(
            r#"- hosts: n1
  vars: {{ release: play, greeting: play }}
  vars_files: [vars/common.yml, vars/secrets.age]
  steps:
    - name: Out
      copy: {{ dest: "{data}/out", content: "{{{{ greeting }}}} {{{{ release }}}} {{{{ api_token }}}}\n" }}
    - name: Say
      debug: {{ msg: "token {{{{ api_token }}}}" }}
"#,
            data = d.join("data").display()
        ),
    )
    .unwrap();
}

#[test]
fn vars_files_rank_between_play_vars_and_the_command_line_and_secrets_stay_hidden() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d);
    let plan = cutover(
        d,
        &[
            "plan",
            "-i",
            "inv.yml",
            "playbooks/pb.yml",
            "--out",
            "plan.json",
        ],
    );
    let out = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{out}");
    assert!(out.contains("+hello from-file [secret:api_token]"), "{out}");
    assert!(!out.contains(SECRET), "{out}");
    let saved = std::fs::read_to_string(d.join("plan.json")).unwrap();
    assert!(!saved.contains(SECRET), "{saved}");

    // The reviewed plan was made from these vars files: one changed since is refused.
    std::fs::write(
        d.join("playbooks/vars/common.yml"),
        "greeting: hi
",
    )
    .unwrap();
    let o = cutover(d, &["apply", "plan.json", "--output", "plain"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("playbooks/vars/common.yml"), "{out}");
    assert!(!d.join("data/out").exists(), "{out}");
    std::fs::write(
        d.join("playbooks/vars/common.yml"),
        "greeting: hello\nrelease: from-file\n",
    )
    .unwrap();

    let o = cutover(
        d,
        &[
            "apply",
            "-i",
            "inv.yml",
            "playbooks/pb.yml",
            "--output",
            "plain",
            "-e",
            "release=cli",
        ],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_eq!(
        std::fs::read_to_string(d.join("data/out")).unwrap(),
        format!("hello cli {SECRET}\n"),
        "the file's value over the play's, -e over the file's"
    );
    assert!(out.contains("token [secret:api_token]"), "{out}");
    assert!(!out.contains(SECRET), "{out}");
    for run in std::fs::read_dir(d.join("state/runs")).unwrap().flatten() {
        let journal = std::fs::read_to_string(run.path().join("journal.jsonl")).unwrap();
        assert!(!journal.contains(SECRET), "{journal}");
    }
}

#[test]
fn an_encrypted_vars_file_without_its_key_is_an_error_at_the_play() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d);
    std::fs::write(d.join("inv.yml"), "hosts:\n  n1: { address: local }\n").unwrap();
    let o = common::local::command(d, &["check", "-i", "inv.yml", "playbooks/pb.yml"])
        .env_remove("CUTOVER_SECRETS_KEY")
        .env_remove("CUTOVER_SECRETS_KEY_FILE")
        .output()
        .unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("vars file playbooks/vars/secrets.age: no key to decrypt it"),
        "{out}"
    );
    assert!(out.contains("playbooks/pb.yml:3:"), "{out}");
}
