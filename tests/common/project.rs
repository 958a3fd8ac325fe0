//! A scratch project for tests that run cutover against the lab: its own playbooks, templates,
//! run state (journals, locks) and ssh control directory, so tests never see each other's runs.
//!
//! The project lives in the suite's artifacts directory (see [`super::artifacts`]) and is kept:
//! its journals, saved plans, JSON and JUnit files, and every invocation's stdout and stderr
//! (`cutover/NNN-*.stdout|stderr|cmd`), are what the secret sweep greps after the suite. Only
//! the ssh control sockets live in a temporary directory (a socket path must be short).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value as J;

pub struct Project {
    dir: PathBuf,
    /// XDG_RUNTIME_DIR of the runs: ssh control sockets.
    runtime: tempfile::TempDir,
    /// Run from the repository root, as an admin runs the shipped playbooks.
    in_repo: bool,
}

impl Default for Project {
    fn default() -> Self {
        Self::new()
    }
}

impl Project {
    pub fn new() -> Project {
        let dir = super::artifacts::case_dir();
        std::fs::create_dir_all(dir.join("templates")).unwrap();
        let runtime = tempfile::Builder::new()
            .prefix("cutover-rt")
            .tempdir()
            .unwrap();
        Project {
            dir,
            runtime,
            in_repo: false,
        }
    }

    /// For the shipped playbooks: cutover runs in the repository root (so `templates/` and
    /// `playbooks/` resolve as they do for an admin), with this project's own run state.
    pub fn in_repo() -> Project {
        Project {
            in_repo: true,
            ..Project::new()
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// The runs' XDG_RUNTIME_DIR (ssh control sockets).
    pub fn runtime(&self) -> PathBuf {
        self.runtime.path().to_path_buf()
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn templates(&self) -> String {
        self.path("templates").display().to_string()
    }

    pub fn state(&self) -> PathBuf {
        self.path("state")
    }

    /// `cutover ARGS` in the controller namespace, with this project's state and control dirs.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            "cutover-ctl",
            env!("CARGO_BIN_EXE_cutover"),
        ])
        .args(args)
        .env("CUTOVER_STATE_DIR", self.state())
        .env("XDG_RUNTIME_DIR", self.runtime.path())
        .current_dir(if self.in_repo {
            super::repo_root()
        } else {
            self.dir.clone()
        });
        c
    }

    /// The arguments of a cutover command made by [`command`](Self::command).
    fn args_of(cmd: &Command) -> Vec<String> {
        // ip netns exec cutover-ctl CUTOVER ARGS…
        cmd.get_args()
            .skip(4)
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// Run a cutover command under `/usr/bin/time`: its output (kept with the artifacts) and
    /// the peak resident memory of the cutover process, in KiB.
    pub fn output_with_peak_memory(&self, cmd: Command) -> (Output, u64) {
        let mut t = Command::new("/usr/bin/time");
        t.args(["-f", "maxrss_kb=%M"])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                t.env(k, v);
            }
        }
        if let Some(d) = cmd.get_current_dir() {
            t.current_dir(d);
        }
        let o = t.output().expect("run cutover under /usr/bin/time");
        self.record(&Self::args_of(&cmd), &o);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let kb = err
            .lines()
            .find_map(|l| l.strip_prefix("maxrss_kb="))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no maxrss from /usr/bin/time: {err}"));
        (o, kb)
    }

    /// Keep an invocation's output with the project's artifacts.
    pub fn record(&self, args: &[String], out: &Output) {
        super::artifacts::record(&self.dir, args, out);
    }

    /// Run a command made by [`command`](Self::command) (or `apply_command`) to its end,
    /// keeping its output with the project's artifacts.
    pub fn output(&self, mut cmd: Command) -> Output {
        let args = Self::args_of(&cmd);
        let o = cmd.output().expect("run cutover");
        self.record(&args, &o);
        o
    }

    /// Start a command made by [`command`](Self::command) with its stdout and stderr going to
    /// files among the project's artifacts (for tests that signal it and do not read them as
    /// it runs). Returns the child and the path of its stderr file.
    pub fn spawn_logged(&self, mut cmd: Command) -> (Child, PathBuf) {
        let args = Self::args_of(&cmd);
        let (out, err, err_path) = super::artifacts::output_files(&self.dir, &args);
        let child = cmd
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start cutover");
        (child, err_path)
    }

    /// Wait for a spawned command whose stdout and stderr are piped, keeping its output.
    pub fn wait_logged(&self, args: &[&str], child: Child) -> Output {
        let o = child.wait_with_output().expect("wait for cutover");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        self.record(&args, &o);
        o
    }

    pub fn command_strings(&self, args: &[String]) -> Command {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.command(&refs)
    }

    /// Run cutover against the whole cluster; hosts locked by another run (another test
    /// binary, or one a test killed) are waited for, at most 5 minutes. A refused attempt's run
    /// directory is removed, so that `new_run` sees only the run that really ran.
    pub fn run_cluster(&self, args: &[String]) -> Output {
        self.run_cluster_with(args, &[])
    }

    /// As `run_cluster`, with extra environment variables for cutover.
    pub fn run_cluster_with(&self, args: &[String], env: &[(&str, &str)]) -> Output {
        for _ in 0..150 {
            let before = self.run_ids();
            let mut c = self.command_strings(args);
            if !env.is_empty() {
                // Its own process group, as a shell's foreground job: a test fault signals the
                // group as a terminal's Ctrl-C does (src/engine/fault.rs).
                std::os::unix::process::CommandExt::process_group(&mut c, 0);
            }
            c.envs(env.iter().copied());
            let o = self.output(c);
            let t = text(&o);
            if o.status.code() != Some(5)
                && !t.contains("locked by run")
                && !t.contains("stale lock left by run")
            {
                return o;
            }
            for id in self.run_ids().into_iter().filter(|i| !before.contains(i)) {
                let _ = std::fs::remove_dir_all(self.state().join("runs").join(id));
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        panic!("hosts stayed locked by other runs for 5 minutes");
    }

    /// The ids of this project's runs, oldest first.
    pub fn run_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.state().join("runs"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// The raw journal of one run.
    pub fn journal_text(&self, id: &str) -> String {
        std::fs::read_to_string(self.state().join("runs").join(id).join("journal.jsonl"))
            .unwrap_or_default()
    }

    /// The one run started since `before` was taken.
    pub fn new_run(&self, before: &[String]) -> String {
        let ids: Vec<String> = self
            .run_ids()
            .into_iter()
            .filter(|i| !before.contains(i))
            .collect();
        assert_eq!(ids.len(), 1, "expected one new run, found {ids:?}");
        ids[0].clone()
    }

    /// Run cutover. A host held by another test binary's run (when test binaries overlap) is
    /// waited for rather than counted as a failure.
    pub fn run(&self, args: &[&str]) -> Output {
        for _ in 0..90 {
            let o = self.output(self.command(args));
            // Exit 5: the controller lock; "locked by run": a host's lock.
            if o.status.code() != Some(5) && !text(&o).contains("locked by run") {
                return o;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        panic!("hosts stayed locked by other runs for 3 minutes");
    }

    /// The `cutover apply` command for one of this project's playbooks, not yet run (for tests
    /// that signal it, or that expect a lock refusal).
    pub fn apply_command(&self, inventory: &Path, playbook: &str, extra: &[&str]) -> Command {
        let mut args: Vec<String> = vec![
            "apply".into(),
            "-i".into(),
            inventory.display().to_string(),
            "--templates".into(),
            self.templates(),
        ];
        args.push(self.path(playbook).display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.command(&refs)
    }

    /// `cutover apply` of one of this project's playbooks.
    pub fn apply_with(&self, inventory: &Path, playbook: &str, extra: &[&str]) -> Output {
        let inv = inventory.display().to_string();
        let pb = self.path(playbook).display().to_string();
        let templates = self.templates();
        let mut args = vec!["apply", "-i", &inv, "--templates", &templates, &pb];
        args.extend(extra);
        self.run(&args)
    }

    /// `cutover CMD` (apply or plan) of a playbook given as text, on the lab inventory.
    pub fn run_text(&self, cmd: &str, playbook: &str) -> Output {
        let pb = self.write("pb.yml", playbook).display().to_string();
        let inv = lab_inventory().display().to_string();
        let templates = self.templates();
        self.run(&[cmd, "-i", &inv, "--templates", &templates, &pb])
    }

    pub fn apply_text(&self, playbook: &str) -> Output {
        self.run_text("apply", playbook)
    }

    /// As `apply_text`, asserting success; returns the output.
    pub fn apply_text_ok(&self, playbook: &str) -> String {
        let o = self.apply_text(playbook);
        assert!(o.status.success(), "cutover apply failed:\n{}", text(&o));
        text(&o)
    }

    pub fn apply(&self, playbook: &str, extra: &[&str]) -> Output {
        self.apply_with(&lab_inventory(), playbook, extra)
    }

    /// Every event of every run of this project, in order.
    pub fn journal(&self) -> Vec<J> {
        let mut out = Vec::new();
        let mut ids: Vec<PathBuf> = std::fs::read_dir(self.state().join("runs"))
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        ids.sort();
        for d in ids {
            let t = std::fs::read_to_string(d.join("journal.jsonl")).unwrap_or_default();
            out.extend(t.lines().filter_map(|l| serde_json::from_str::<J>(l).ok()));
        }
        out
    }

    /// The step results of the last run.
    pub fn last_run_results(&self) -> Vec<J> {
        let j = self.journal();
        let start = j
            .iter()
            .rposition(|e| e["event"] == "run_started")
            .unwrap_or(0);
        j[start..]
            .iter()
            .filter(|e| e["event"] == "step_result")
            .cloned()
            .collect()
    }

    /// The id of the project's only run.
    pub fn only_run_id(&self) -> String {
        let ids: Vec<String> = std::fs::read_dir(self.state().join("runs"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(ids.len(), 1, "{ids:?}");
        ids[0].clone()
    }
}

/// A file of the repository, as a string argument.
pub fn repo_file(rel: &str) -> String {
    super::repo_root().join(rel).display().to_string()
}

/// The lab inventory. With `CUTOVER_LAB_VM_IP` set (a second LVM VM, lab/vm/README.md), a
/// copy beside it whose host lvm1 has that address, so that the VM tests run against that VM
/// under lvm1's name (the copy sits in inventory/ so its relative paths still resolve).
pub fn lab_inventory() -> PathBuf {
    let lab = super::repo_root().join("inventory/lab.yml");
    let (name, ip) = super::vm_name_and_ip();
    if ip == "10.77.0.51" {
        return lab;
    }
    let text = std::fs::read_to_string(&lab).unwrap();
    let lvm1 = "  lvm1:\n    address: 10.77.0.51\n";
    assert!(
        text.contains(lvm1),
        "inventory/lab.yml: no lvm1 at 10.77.0.51"
    );
    let copy = super::repo_root().join(format!("inventory/.lab-vm-{name}.yml"));
    let text = text.replace(lvm1, &format!("  lvm1:\n    address: {ip}\n"));
    std::fs::write(&copy, text).unwrap();
    copy
}

/// The lab inventory's text with its relative paths made absolute, for tests that write a
/// variant of it elsewhere.
pub fn lab_inventory_text() -> String {
    let dir = super::repo_root().join("inventory");
    std::fs::read_to_string(lab_inventory())
        .unwrap()
        .replace(
            "secrets_file: lab-secrets.age",
            &format!("secrets_file: {}", dir.join("lab-secrets.age").display()),
        )
        .replace(
            "secrets_key_file: lab.key",
            &format!("secrets_key_file: {}", dir.join("lab.key").display()),
        )
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
