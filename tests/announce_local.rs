//! `announce` and `after_run:` against the controller itself (`address: local`) and a webhook
//! served by the test: a plan shows what would be sent and sends nothing; a run sends the start
//! and, once it has ended, the end — the success, or the failure with its reason after the
//! unwind; a failing `after_run` play does not change the run's outcome; bad values are located
//! errors.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::local::cutover;
use common::project::text;
use serde_json::{json, Value as J};

/// What the webhook received: (path, body), in order.
type Received = Arc<Mutex<Vec<(String, J)>>>;

/// A webhook on 127.0.0.1 recording every POST; paths under /fail answer 500.
fn webhook() -> (u16, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Received = Arc::default();
    let record = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let path = line.split(' ').nth(1).unwrap_or("").to_string();
            let mut len = 0;
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let status = if path.starts_with("/fail") { 500 } else { 204 };
            let body = serde_json::from_slice(&body).unwrap_or(J::Null);
            record.lock().unwrap().push((path, body));
            let mut w = conn;
            let _ = write!(
                w,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (port, got)
}

/// The token in the webhook's path: it must never show.
const TOKEN: &str = "tok-8f3a1c";

fn project(d: &Path, port: u16) {
    std::fs::write(d.join("inv.yml"), "hosts:\n  n1: { address: local }\n").unwrap();
    std::fs::create_dir_all(d.join("templates")).unwrap();
    let hook = format!("http://127.0.0.1:{port}/hooks/{TOKEN}");
    std::fs::write(
        d.join("pb.yml"),
        format!(
            r#"- name: Start
  hosts: n1
  defaults: &d {{ hook: "{hook}", end_hook: "{hook}", release: "2.0", fail: false }}
  steps:
    - name: Announce the start
      announce:
        webhook: "{{{{ hook }}}}"
        message: "Starting {{{{ release }}}}"
        fields: {{ event: started, release: "{{{{ release }}}}", window: "{{{{ planned | default(value='') }}}}" }}
- name: Work
  hosts: n1
  on_failure: unwind
  defaults: *d
  steps:
    - name: Make a file
      copy: {{ content: "x\n", dest: "{data}" }}
    - name: The app starts
      fail: {{ msg: it does not }}
      when: fail | bool
- name: End - succeeded
  hosts: n1
  after_run: succeeded
  defaults: *d
  steps:
    - name: Announce the success
      announce: {{ webhook: "{{{{ end_hook }}}}", message: "Done: {{{{ run.status }}}}", fields: {{ event: done, outcome: "{{{{ run }}}}" }} }}
- name: End - failed
  hosts: n1
  after_run: failed
  defaults: *d
  steps:
    - name: Announce the failure
      announce:
        webhook: "{{{{ end_hook }}}}"
        message: "Failed: {{{{ run.failed.step }}}} on {{{{ run.failed.host }}}}: {{{{ run.failed.message }}}}"
        fields: {{ event: failed, outcome: "{{{{ run }}}}" }}
- name: End - always
  hosts: n1
  after_run: always
  steps:
    - debug: {{ msg: "after the run: {{{{ run.status }}}}" }}
"#,
            data = d.join("made").display()
        ),
    )
    .unwrap();
}

/// The run id `apply` printed first (`run ID: …`).
fn run_id(out: &str) -> String {
    let line = out.lines().find(|l| l.starts_with("run ")).unwrap();
    line["run ".len()..line.find(':').unwrap()].to_string()
}

#[test]
fn a_plan_shows_what_would_be_sent_and_sends_nothing() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (port, got) = webhook();
    project(d, port);
    std::fs::write(
        d.join("vars.yml"),
        "planned: { start: \"22:00\", end: \"23:00\" }\n",
    )
    .unwrap();
    let o = cutover(d, &["plan", "-i", "inv.yml", "pb.yml", "-e", "@vars.yml"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("would send: POST"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        line.trim(),
        format!("n1           change would send: POST http://127.0.0.1:{port}/…: Starting 2.0")
    );
    // The body as it would be sent, the planned window a mapping.
    assert!(out.contains(r#""event": "started","#), "{out}");
    assert!(out.contains(r#""start": "22:00""#), "{out}");
    assert!(!out.contains("[irreversible]"), "{out}");
    // The after_run plays are not part of the plan's walk: listed after it, not planned.
    let listed = "After the run (not planned: what they do depends on how the run ends):
  PLAY End - succeeded (after_run: succeeded): Announce the success
  PLAY End - failed (after_run: failed): Announce the failure
  PLAY End - always (after_run: always): ";
    assert!(out.contains(listed), "{out}");
    assert_eq!(out.matches("Announce the success").count(), 1, "{out}");
    let md = text(&cutover(
        d,
        &["plan", "-i", "inv.yml", "pb.yml", "--format", "markdown"],
    ));
    assert!(
        md.contains("## After the run\n\nNot planned: what these plays do depends on how the run ends.\n\n- play _End - succeeded_ (`after_run: succeeded`): Announce the success\n"),
        "{md}"
    );
    assert!(!out.contains(TOKEN), "{out}");
    assert!(
        got.lock().unwrap().is_empty(),
        "a plan sent {:?}",
        got.lock().unwrap()
    );
    assert!(!d.join("made").exists());
    assert!(out.contains(r#""run": "RUN-ID","#), "{out}");
    // The reviewed plan applies as reviewed: the message is sent, with the run's id.
    let o = cutover(
        d,
        &["plan", "-i", "inv.yml", "pb.yml", "--out", "plan.json"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = cutover(d, &["apply", "plan.json", "--output", "plain"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].1["run"], run_id(&out));
}

#[test]
fn a_run_announces_its_start_and_then_its_success() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (port, got) = webhook();
    project(d, port);
    let o = cutover(
        d,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let id = run_id(&out);
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, format!("/hooks/{TOKEN}"));
    assert_eq!(
        got[0].1,
        json!({"text": "Starting 2.0", "run": id, "host": "n1", "event": "started", "release": "2.0"})
    );
    assert_eq!(got[1].1["text"], "Done: ok");
    assert_eq!(got[1].1["event"], "done");
    assert_eq!(
        got[1].1["outcome"],
        json!({"id": id, "status": "ok", "succeeded": true, "unwound": false, "unwind_ok": null, "failed": null, "window": null})
    );
    assert!(
        out.contains(&format!(
            "sent: POST http://127.0.0.1:{port}/… (answered 204)"
        )),
        "{out}"
    );
    assert!(out.contains("after the run: ok"), "{out}");
    assert!(!out.contains("Announce the failure"), "{out}");
    assert!(!out.contains(TOKEN), "{out}");
    let journal =
        std::fs::read_to_string(d.join(format!("state/runs/{id}/journal.jsonl"))).unwrap();
    assert!(!journal.contains(TOKEN), "{journal}");
    // The after_run plays are journaled after the run's steps, before its end.
    let events: Vec<J> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    let at = |k: &str| {
        kinds
            .iter()
            .position(|x| *x == k)
            .unwrap_or_else(|| panic!("{kinds:?}"))
    };
    assert!(
        at("after_run_started") < at("after_run_finished"),
        "{kinds:?}"
    );
    assert!(at("after_run_finished") < at("run_finished"), "{kinds:?}");
    assert_eq!(events[at("after_run_started")]["status"], "ok");
    assert_eq!(events[at("after_run_finished")]["ok"], true);
    assert_eq!(events[at("run_finished")]["status"], "ok");
}

#[test]
fn a_failed_run_announces_the_reason_after_its_unwind() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (port, got) = webhook();
    project(d, port);
    let o = cutover(
        d,
        &[
            "apply",
            "-i",
            "inv.yml",
            "pb.yml",
            "-e",
            "fail=true",
            "--output",
            "plain",
        ],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(!d.join("made").exists(), "unwound: {out}");
    let id = run_id(&out);
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[1].1["text"],
        "Failed: The app starts on n1: it does not"
    );
    assert_eq!(got[1].1["event"], "failed");
    assert_eq!(
        got[1].1["outcome"],
        json!({"id": id, "status": "failed", "succeeded": false, "unwound": true, "unwind_ok": true,
               "failed": {"step": "The app starts", "host": "n1", "message": "it does not"}, "window": null})
    );
    // After the unwind: the announcement comes after the way back in the output too.
    // The copy is undone; the message sent needs no undo and is not in the unwind.
    let undo_at = out
        .find("UNWIND: undoing 1 change(s), newest first")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(!out.contains("undo: Announce the start"), "{out}");
    let after_at = out
        .find("AFTER RUN (the run ended failed)")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(undo_at < after_at, "{out}");
    assert!(out.contains("after the run: failed"), "{out}");
    assert!(!out.contains("Announce the success"), "{out}");
    // `cutover show` replays them where they ran: after the unwind, before the end.
    let shown = text(&cutover(d, &["show", &id]));
    let at = |what: &str| {
        shown
            .find(what)
            .unwrap_or_else(|| panic!("{what}: {shown}"))
    };
    assert!(
        at("unwind finished") < at("AFTER RUN (the run ended failed): 2 play(s)"),
        "{shown}"
    );
    assert!(
        at("AFTER RUN (the run ended failed)") < at("finished: failed"),
        "{shown}"
    );
}

#[test]
fn a_failing_after_run_play_leaves_the_run_s_outcome_alone() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (port, got) = webhook();
    project(d, port);
    let end = format!("end_hook=http://127.0.0.1:{port}/fail/{TOKEN}");
    let o = cutover(
        d,
        &[
            "apply", "-i", "inv.yml", "pb.yml", "-e", &end, "--output", "plain",
        ],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "the webhook http://127.0.0.1:{port}/… answered 500: the message was not accepted"
        )),
        "{out}"
    );
    // Nothing was unwound for it, and the later after_run play still ran.
    assert!(d.join("made").exists(), "{out}");
    assert!(!out.contains("UNWIND"), "{out}");
    assert!(out.contains("after the run: ok"), "{out}");
    assert_eq!(got.lock().unwrap().len(), 2);
    assert!(!out.contains(TOKEN), "{out}");
    let id = run_id(&out);
    let journal =
        std::fs::read_to_string(d.join(format!("state/runs/{id}/journal.jsonl"))).unwrap();
    let last: J = serde_json::from_str(journal.lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["event"].as_str(), last["status"].as_str()),
        (Some("run_finished"), Some("ok"))
    );
    let finished = journal
        .lines()
        .map(|l| serde_json::from_str::<J>(l).unwrap())
        .find(|e| e["event"] == "after_run_finished")
        .unwrap();
    assert_eq!(finished["ok"], false, "{journal}");
}

#[test]
fn bad_after_run_and_webhook_values_are_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("inv.yml"), "hosts:\n  n1: { address: local }\n").unwrap();
    std::fs::create_dir_all(d.join("templates")).unwrap();
    std::fs::write(
        d.join("pb.yml"),
        "- hosts: n1\n  after_run: succeded\n  steps:\n    - announce: { webhook: \"ftp://files.example/tok-1\", message: hi }\n- hosts: n1\n  after_run: [always]\n  steps:\n    - announce: { message: hi, mail: x }\n",
    )
    .unwrap();
    let o = cutover(d, &["check", "-i", "inv.yml", "pb.yml"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("`after_run` is `succeeded`, `failed` or `always` (when the play runs, once the run has ended), not `succeded`"), "{out}");
    assert!(out.contains("pb.yml:2:14"), "{out}");
    assert!(out.contains("did you mean `succeeded`?"), "{out}");
    assert!(
        out.contains("(when the play runs, once the run has ended), not a list"),
        "{out}"
    );
    assert!(out.contains("pb.yml:6:14"), "{out}");
    assert!(
        out.contains("`announce.webhook`: `ftp://` is not http:// or https://"),
        "{out}"
    );
    assert!(out.contains("pb.yml:4:28"), "{out}");
    assert!(
        out.contains("unknown key `mail` in arguments of `announce`"),
        "{out}"
    );
    assert!(
        out.contains("module `announce` needs at least one of: webhook, mail_to"),
        "{out}"
    );
}

/// A recipient that could add a header or a second recipient, or is no address at all, is an
/// error `check` locates where it is written, or where a template renders it.
#[test]
fn bad_mail_recipients_are_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("inv.yml"),
        "hosts:\n  n1: { address: local, vars: { team: \"ops@example.org, boss@example.org\" } }\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("templates")).unwrap();
    let located = |pb: &str, want: &[(&str, &str)]| {
        std::fs::write(d.join("pb.yml"), pb).unwrap();
        let o = cutover(d, &["check", "-i", "inv.yml", "pb.yml"]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{out}");
        for (what, at) in want {
            let lines: Vec<&str> = out.lines().collect();
            let i = lines
                .iter()
                .position(|l| l.starts_with("error: ") && l.contains(what))
                .unwrap_or_else(|| panic!("{what}\n{out}"));
            assert_eq!(lines[i + 1].trim(), format!("--> pb.yml:{at}"), "{out}");
        }
        out
    };
    let out = located(
        "- hosts: n1\n  steps:\n    - announce: { mail_to: \"ops@example.org\\nBcc: all@example.org\", message: hi }\n    - announce: { mail_to: [ops@example.org, not an address], message: hi }\n    - announce: { mail_to: [\"Ops <ops@example.org>\"], message: fine }\n",
        &[
            ("`announce.mail_to`: `ops@example.org\\nBcc: all@example.org` has a line break or control character", "3:28"),
            ("`announce.mail_to`: `not an address` is not a mail address", "4:46"),
        ],
    );
    assert_eq!(
        out.matches("error: ").count(),
        2,
        "the good one is no error:\n{out}"
    );
    located(
        "- hosts: n1\n  steps:\n    - announce: { mail_to: \"{{ team }}\", message: hi }\n",
        &[("`announce.mail_to` as rendered: `ops@example.org, boss@example.org` is not a mail address", "3:28")],
    );
}

/// Mail goes through the step host's own sendmail; this controller has none: the plan says no
/// mail will go out, the run sends the webhook, says why it mailed nothing, and succeeds; with
/// mail as the only way, the step fails before anything is sent.
#[test]
fn a_host_without_sendmail_sends_the_webhook_and_says_no_mail_went_out() {
    let _g = common::local::one_at_a_time();
    assert!(
        !Path::new("/usr/sbin/sendmail").exists() && !Path::new("/usr/lib/sendmail").exists(),
        "this test needs a controller without a sendmail"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (port, got) = webhook();
    std::fs::write(d.join("inv.yml"), "hosts:\n  n1: { address: local }\n").unwrap();
    std::fs::create_dir_all(d.join("templates")).unwrap();
    let hook = format!("http://127.0.0.1:{port}/hooks/{TOKEN}");
    std::fs::write(
        d.join("pb.yml"),
        format!("- hosts: n1\n  steps:\n    - name: Tell\n      announce: {{ webhook: \"{hook}\", mail_to: ops@example.org, subject: Up, message: going }}\n"),
    )
    .unwrap();
    let o = cutover(d, &["plan", "-i", "inv.yml", "pb.yml", "--format", "text"]);
    let out = text(&o);
    assert!(
        out.contains("would send: POST http://127.0.0.1:")
            && out.contains("/…; no mail to ops@example.org: n1 has no sendmail: going"),
        "{out}"
    );
    assert!(got.lock().unwrap().is_empty(), "a plan sent nothing");
    let o = cutover(
        d,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("(answered 204); no mail: n1 has no sendmail"),
        "{out}"
    );
    assert_eq!(got.lock().unwrap().len(), 1, "the webhook got it");
    assert!(!out.contains(TOKEN), "{out}");

    std::fs::write(
        d.join("pb.yml"),
        "- hosts: n1\n  steps:\n    - name: Tell\n      announce: { mail_to: [ops@example.org], message: going }\n",
    )
    .unwrap();
    let o = cutover(
        d,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    );
    let out = text(&o);
    assert_ne!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("announce: mail to ops@example.org needs a sendmail on n1, which it has not, and no webhook is set"),
        "{out}"
    );
    assert_eq!(got.lock().unwrap().len(), 1, "nothing more was sent");
}

#[test]
fn ctrl_c_in_the_after_run_plays_of_a_run_that_succeeded_is_resumed_there() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (port, got) = webhook();
    project(d, port);
    // Results: the start, the file, the skipped failure; the 4th is the success announced.
    let o = common::local::command(
        d,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    )
    .env("CUTOVER_TEST_FAULT", "int-after-result=4")
    .process_group(0)
    .output()
    .unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(130), "{out}");
    assert_eq!(got.lock().unwrap().len(), 2, "start and success sent");
    assert!(
        !out.contains("after the run: ok"),
        "stopped before the next play: {out}"
    );
    let id = run_id(&out);
    let journal =
        std::fs::read_to_string(d.join(format!("state/runs/{id}/journal.jsonl"))).unwrap();
    let events: Vec<J> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let n = events.len();
    assert_eq!(events[n - 2]["event"], "run_interrupted", "{journal}");
    assert_eq!(events[n - 1]["status"], "interrupted", "{journal}");
    // The resume runs the rest of the after_run plays; what was sent is not sent again.
    let o = cutover(d, &["resume", "-i", "inv.yml", &id, "--output", "plain"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("after the run: ok"), "{out}");
    assert_eq!(got.lock().unwrap().len(), 2, "{:?}", got.lock().unwrap());
}

#[test]
fn a_token_from_a_secret_reaches_the_webhook_and_shows_nowhere() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (port, got) = webhook();
    std::fs::write(
        d.join("inv.yml"),
        "secret_vars: [hook_token, api_key]\nhosts:\n  n1: { address: local }\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("templates")).unwrap();
    std::fs::write(
        d.join("vars.yml"),
        "hook_token: Hk-51e7\napi_key: Ak-90d2\n",
    )
    .unwrap();
    std::fs::write(
        d.join("pb.yml"),
        format!(
            r#"- hosts: n1
  vars: {{ path: hooks }}
  steps:
    - name: Tell
      announce:
        webhook: "http://127.0.0.1:{port}/{{{{ path }}}}/{{{{ hook_token }}}}"
        message: "key {{{{ api_key }}}}"
        headers: {{ Authorization: "Bearer {{{{ api_key }}}}" }}
      register: told
"#
        ),
    )
    .unwrap();
    let args = ["-i", "inv.yml", "-e", "@vars.yml", "pb.yml"];
    let plan = cutover(d, &[&["plan"][..], &args].concat());
    let apply = cutover(d, &[&["apply"][..], &args, &["--output", "plain"]].concat());
    let (plan, out) = (text(&plan), text(&apply));
    assert_eq!(apply.status.code(), Some(0), "{out}");
    assert!(
        plan.contains(&format!(
            "would send: POST http://127.0.0.1:{port}/… (headers: Authorization): key [secret:api_key]"
        )),
        "{plan}"
    );
    // What the webhook got: the real values.
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "the plan sent nothing, the run once: {got:?}");
    assert_eq!(got[0].0, "/hooks/Hk-51e7");
    assert_eq!(got[0].1["text"], "key Ak-90d2");
    // Shown nowhere: the plan, the run's output, its journal (the registered body included).
    let id = run_id(&out);
    let journal =
        std::fs::read_to_string(d.join(format!("state/runs/{id}/journal.jsonl"))).unwrap();
    assert!(
        journal.contains(r#""text":"key [secret:api_key]""#),
        "{journal}"
    );
    for shown in [&plan, &out, &journal] {
        assert!(
            !shown.contains("Hk-51e7") && !shown.contains("Ak-90d2"),
            "{shown}"
        );
    }
}

#[test]
fn start_at_step_cannot_name_a_step_of_an_after_run_play() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (port, got) = webhook();
    project(d, port);
    let o = cutover(
        d,
        &[
            "apply",
            "-i",
            "inv.yml",
            "pb.yml",
            "--start-at-step",
            "Announce the success",
        ],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("--start-at-step `Announce the success` names no step of pb.yml"),
        "{out}"
    );
    assert!(out.contains("<--start-at-step>"), "{out}");
    assert!(got.lock().unwrap().is_empty());
    // A step of the run's walk is fine.
    let o = cutover(
        d,
        &[
            "apply",
            "-i",
            "inv.yml",
            "pb.yml",
            "--start-at-step",
            "Make a file",
            "--output",
            "plain",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        got.lock().unwrap().len(),
        1,
        "only the end: the start was skipped"
    );
}

/// The start announcement of playbooks/upgrade.yml, as written there, on the controller.
fn upgrade_start_step(d: &Path, port: u16) {
    let upgrade =
        std::fs::read_to_string(common::repo_root().join("playbooks/upgrade.yml")).unwrap();
    let from = upgrade.find("    - name: Announce the start").unwrap();
    let end = "      when: announce_webhook != \"\" or announce_mail_to | length > 0\n";
    let to = from + upgrade[from..].find(end).unwrap() + end.len();
    std::fs::write(
        d.join("inv.yml"),
        format!("hosts:\n  lb: {{ address: local, vars: {{ app_release: 2.0.0, announce_webhook: \"http://127.0.0.1:{port}/a\", announce_mail_to: [] }} }}\n"),
    )
    .unwrap();
    std::fs::create_dir_all(d.join("templates")).unwrap();
    std::fs::write(
        d.join("pb.yml"),
        format!("- hosts: lb\n  steps:\n{}", &upgrade[from..to]),
    )
    .unwrap();
}

#[test]
fn the_upgrade_s_start_names_the_planned_window_when_there_is_one() {
    let _g = common::local::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (port, got) = webhook();
    upgrade_start_step(d, port);
    // The agreed window is the inventory's; with no rehearsal on record there is no
    // prediction (tests/window_enforced_local.rs has one: the steps see it as here).
    let inventory = std::fs::read_to_string(d.join("inv.yml")).unwrap();
    std::fs::write(
        d.join("window-inv.yml"),
        format!("{inventory}maintenance_window: {{ start: \"2026-12-01T22:00:00Z\", end: \"2099-12-09T00:00:00Z\" }}\n"),
    )
    .unwrap();
    let o = cutover(
        d,
        &[
            "apply",
            "-i",
            "window-inv.yml",
            "pb.yml",
            "--output",
            "plain",
        ],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let id = run_id(&out);
    let o = cutover(
        d,
        &["apply", "-i", "inv.yml", "pb.yml", "--output", "plain"],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let id2 = run_id(&out);
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    let lead = "The wiki cluster is being upgraded to 2.0.0 (run {}); users get the maintenance page until it is done.";
    assert_eq!(
        got[0].1,
        json!({
            "text": format!("{} Planned window: 2026-12-01T22:00:00+00:00 to 2099-12-09T00:00:00+00:00.", lead.replace("{}", &id)),
            "subject": "wiki upgrade to 2.0.0: starting",
            "run": id, "host": "lb", "event": "upgrade_started", "release": "2.0.0",
            "planned_window": {"start": "2026-12-01T22:00:00+00:00", "end": "2099-12-09T00:00:00+00:00"}
        })
    );
    // Neither defined: both left out, of the text and of the fields.
    assert_eq!(
        got[1].1,
        json!({
            "text": lead.replace("{}", &id2),
            "subject": "wiki upgrade to 2.0.0: starting",
            "run": id2, "host": "lb", "event": "upgrade_started", "release": "2.0.0"
        })
    );
}
