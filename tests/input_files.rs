//! Inputs that are not regular files, or are too big (issue 15, class 6): a FIFO with no
//! writer, a device that never ends, a file over the size limit — given as inventory,
//! playbook, imported playbook, `-e @file`, template, secrets file, saved plan or a `copy`
//! source — and a plan saved to a FIFO nobody reads or to a directory. Each is refused at once (exit 1, well within 2 s), naming the file and why; none
//! blocks or is read into memory. Every run is bounded by a deadline, so a regression fails
//! the test instead of hanging CI.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus");

/// A project with the corpus's valid inventory, playbook and templates.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["inventory.yml", "noop.yml"] {
        std::fs::copy(Path::new(CORPUS).join(f), dir.path().join(f)).unwrap();
    }
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    dir
}

fn mkfifo(path: &Path) -> PathBuf {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
    path.to_path_buf()
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// `cutover ARGS` in `dir`, killed (and the test failed) if it takes 10 s.
fn cutover(dir: &Path, args: &[&str]) -> Run {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .current_dir(dir)
        .env_remove("CUTOVER_INVENTORY")
        .env("CUTOVER_STATE_DIR", dir.join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            use std::io::Read;
            let (mut stdout, mut stderr) = (String::new(), String::new());
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut stdout)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return Run {
                code: status.code(),
                stdout,
                stderr,
                took: started.elapsed(),
            };
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cutover {args:?} hung (killed after 10 s)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Exit 1 within 2 s, with an error at `position` whose message holds `message`.
fn assert_refused(run: &Run, position: &str, message: &str) {
    assert_eq!(run.code, Some(1), "stderr:\n{}", run.stderr);
    assert!(
        run.took < Duration::from_secs(2),
        "took {:?}:\n{}",
        run.took,
        run.stderr
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    let found = lines.windows(2).any(|w| {
        w[0].starts_with("error: ") && w[0].contains(message) && w[1] == format!("  --> {position}")
    });
    assert!(
        found,
        "want an error containing `{message}` at `{position}`; stderr:\n{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

const FIFO: &str = "is a FIFO (named pipe), not a regular file";

#[test]
fn a_fifo_as_inventory_is_refused_at_once() {
    let p = project();
    mkfifo(&p.path().join("inv.fifo"));
    let run = cutover(p.path(), &["check", "-i", "inv.fifo", "noop.yml"]);
    assert_refused(&run, "inv.fifo", FIFO);
}

#[test]
fn a_fifo_as_playbook_is_refused_by_check_plan_and_apply() {
    let p = project();
    mkfifo(&p.path().join("pb.fifo"));
    for cmd in ["check", "plan", "apply"] {
        let args: Vec<&str> = if cmd == "check" {
            vec![cmd, "-i", "inventory.yml", "pb.fifo"]
        } else {
            vec![cmd, "pb.fifo", "-i", "inventory.yml"]
        };
        let run = cutover(p.path(), &args);
        assert_refused(&run, "pb.fifo", FIFO);
    }
}

#[test]
fn a_fifo_as_imported_playbook_is_refused() {
    let p = project();
    mkfifo(&p.path().join("imported.yml"));
    std::fs::write(
        p.path().join("main.yml"),
        "- import_playbook: imported.yml\n",
    )
    .unwrap();
    let run = cutover(p.path(), &["check", "-i", "inventory.yml", "main.yml"]);
    assert_refused(
        &run,
        "main.yml:1:20",
        &format!("cannot import imported.yml: {FIFO}"),
    );
}

#[test]
fn a_fifo_as_extra_vars_file_is_refused() {
    let p = project();
    mkfifo(&p.path().join("vars.fifo"));
    let run = cutover(
        p.path(),
        &[
            "check",
            "-i",
            "inventory.yml",
            "-e",
            "@vars.fifo",
            "noop.yml",
        ],
    );
    assert_refused(&run, "vars.fifo", FIFO);
}

#[test]
fn a_fifo_among_the_templates_is_refused() {
    let p = project();
    mkfifo(&p.path().join("templates/app.conf.j2"));
    let run = cutover(
        p.path(),
        &[
            "check",
            "-i",
            "inventory.yml",
            "--templates",
            "templates",
            "noop.yml",
        ],
    );
    assert_refused(&run, "templates/app.conf.j2", &format!("template: {FIFO}"));
}

#[test]
fn a_fifo_as_secrets_file_is_refused_at_the_inventory_line() {
    let p = project();
    mkfifo(&p.path().join("secrets.age"));
    std::fs::write(
        p.path().join("inv.yml"),
        "hosts:\n  app1: {}\nsecrets_file: secrets.age\n",
    )
    .unwrap();
    let run = cutover(p.path(), &["check", "-i", "inv.yml", "noop.yml"]);
    assert_refused(
        &run,
        "inv.yml:3:15",
        "secrets file secrets.age: cannot read secrets.age",
    );
    assert!(run.stderr.contains(FIFO), "{}", run.stderr);
}

#[test]
fn a_device_is_refused_not_read_forever() {
    let p = project();
    let run = cutover(p.path(), &["check", "-i", "/dev/zero", "noop.yml"]);
    assert_refused(
        &run,
        "/dev/zero",
        "is a character device, not a regular file",
    );
    let run = cutover(
        p.path(),
        &[
            "check",
            "-i",
            "inventory.yml",
            "-e",
            "@/dev/urandom",
            "noop.yml",
        ],
    );
    assert_refused(
        &run,
        "/dev/urandom",
        "is a character device, not a regular file",
    );
}

#[test]
fn a_file_over_the_limit_is_refused_naming_its_size_and_the_limit() {
    let p = project();
    let big = vec![b'#'; 4 * 1024 * 1024 + 10];
    std::fs::write(p.path().join("big.yml"), &big).unwrap();
    let run = cutover(p.path(), &["check", "-i", "big.yml", "noop.yml"]);
    assert_refused(
        &run,
        "big.yml",
        "file is 4.0 MiB (4194314 bytes); cutover reads files of at most 4 MiB (4194304 bytes)",
    );
    std::fs::write(p.path().join("templates/big.j2"), &big).unwrap();
    let run = cutover(
        p.path(),
        &[
            "check",
            "-i",
            "inventory.yml",
            "--templates",
            "templates",
            "noop.yml",
        ],
    );
    assert_refused(
        &run,
        "templates/big.j2",
        "template: file is 4.0 MiB (4194314 bytes); cutover reads files of at most 4 MiB (4194304 bytes)",
    );
}

#[test]
fn a_fifo_as_a_copy_source_is_refused_by_check_or_when_probed() {
    let p = project();
    mkfifo(&p.path().join("src.fifo"));
    std::fs::write(
        p.path().join("local.yml"),
        "hosts:\n  me: { address: local }\n",
    )
    .unwrap();
    let dest = p.path().join("dest.txt");
    let playbook = |src: &str| {
        format!(
            "- hosts: me\n  vars: {{ f: src.fifo }}\n  steps:\n    - copy: {{ src: {src}, dest: {} }}\n",
            dest.display()
        )
    };
    // A literal source is refused before anything runs, at its position.
    std::fs::write(p.path().join("copy.yml"), playbook("src.fifo")).unwrap();
    let run = cutover(p.path(), &["plan", "copy.yml", "-i", "local.yml"]);
    assert_refused(
        &run,
        "copy.yml:4:20",
        &format!("`src: src.fifo` on the controller {FIFO}"),
    );
    // One known only when rendered is refused when the step reads it: not a hang.
    std::fs::write(p.path().join("copy.yml"), playbook("\"{{ f }}\"")).unwrap();
    let run = cutover(p.path(), &["plan", "copy.yml", "-i", "local.yml"]);
    assert!(run.took < Duration::from_secs(5), "took {:?}", run.took);
    assert!(
        run.stdout
            .contains(&format!("cannot read src.fifo on the controller: {FIFO}")),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert!(!dest.exists());
}

/// Two links back to the templates directory made the walk exponential (2^40 paths before
/// the kernel's symlink limit): now no real directory is entered twice.
#[test]
fn symlink_loops_in_the_templates_directory_end_at_once() {
    let p = project();
    let t = p.path().join("templates");
    std::fs::write(t.join("app.conf.j2"), "port={{ app_port }}\n").unwrap();
    std::os::unix::fs::symlink(".", t.join("a")).unwrap();
    std::os::unix::fs::symlink(".", t.join("b")).unwrap();
    let run = cutover(
        p.path(),
        &[
            "check",
            "-i",
            "inventory.yml",
            "--templates",
            "templates",
            "noop.yml",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.took < Duration::from_secs(2), "took {:?}", run.took);
    assert!(
        run.stdout.contains("1 templates"),
        "{}{}",
        run.stdout,
        run.stderr
    );
}

/// Outputs too: a plan saved to a FIFO that nobody reads fails at once instead of waiting for
/// a reader for ever; a directory given as the plan file is refused before anything is probed.
#[test]
fn a_plan_saved_to_a_fifo_nobody_reads_or_to_a_directory_is_refused() {
    let p = project();
    let d = p.path();
    std::fs::write(d.join("local.yml"), "hosts:\n  me: { address: local }\n").unwrap();
    std::fs::write(
        d.join("read.yml"),
        "- hosts: me\n  steps:\n    - { command: \"true\", changed_when: false }\n",
    )
    .unwrap();
    mkfifo(&d.join("out.fifo"));
    let run = cutover(
        d,
        &["plan", "-i", "local.yml", "read.yml", "--out", "out.fifo"],
    );
    assert_refused(
        &run,
        "<--out>",
        "cannot write out.fifo: it is a FIFO that no process reads",
    );
    std::fs::create_dir(d.join("plans")).unwrap();
    let run = cutover(
        d,
        &["plan", "-i", "local.yml", "read.yml", "--out", "plans"],
    );
    assert_refused(&run, "<--out>", "--out plans: is a directory");
    assert!(run.stdout.is_empty(), "nothing was planned: {}", run.stdout);
}
