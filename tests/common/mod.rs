//! Helpers shared by the integration tests: most drive the lab (see lab/README.md); `local`
//! runs cutover on this machine alone.
#![allow(dead_code)]

pub mod artifacts;
pub mod btrfs;
pub mod cluster;
pub mod local;
pub mod project;
pub mod sweep;

use std::path::PathBuf;
use std::process::{Command, Output};

/// Where `lab/lab.sh` keeps its state (keys, known_hosts, ssh config, pid files).
pub fn lab_state() -> PathBuf {
    std::env::var_os("CUTOVER_LAB_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/cutover-lab"))
}

/// The repository root, for finding lab/, playbooks/, inventory/.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run a command inside the lab's controller network namespace.
pub fn in_controller(program: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", "cutover-ctl", program])
        .args(args)
        .output()
        .expect("ip netns exec: is the lab up? (lab/lab.sh up)")
}

/// ssh to a lab host from the controller namespace with the lab's own config
/// (strict host key checking against the known_hosts file the lab wrote).
pub fn lab_ssh(host: &str, remote_command: &str) -> Output {
    let config = lab_state().join("ssh/config");
    let config = config.to_str().expect("utf-8 path");
    in_controller("ssh", &["-F", config, host, remote_command])
}

/// The LVM VM's name and address: lvm1 (10.77.0.51), or the VM that `CUTOVER_LAB_VM_NAME`
/// and `CUTOVER_LAB_VM_IP` name, as for lab/vm/vm.sh (a second VM beside lvm1).
pub fn vm_name_and_ip() -> (String, String) {
    let name = std::env::var("CUTOVER_LAB_VM_NAME").unwrap_or_else(|_| "lvm1".into());
    let ip = std::env::var("CUTOVER_LAB_VM_IP").unwrap_or_else(|_| "10.77.0.51".into());
    (name, ip)
}

/// The ssh config that `lab/vm/vm.sh up` writes for the LVM VM (a standalone file:
/// host lvm1 = 10.77.0.51, the lab key, the lab known_hosts, strict host key checking).
pub fn lvm1_ssh_config() -> PathBuf {
    lab_state().join(format!("ssh/config.d/{}.conf", vm_name_and_ip().0))
}

/// ssh to the LVM VM `lvm1` (lab/vm/vm.sh) from the controller namespace, using only
/// its own config file, so it works even before the main lab config exists.
pub fn lvm1_ssh(remote_command: &str) -> Output {
    let config = lvm1_ssh_config();
    let config = config.to_str().expect("utf-8 path");
    in_controller("ssh", &["-F", config, &vm_name_and_ip().0, remote_command])
}

/// A bash script as root in the LVM VM (`LC_ALL=C`: lvm's numbers): (exit code, stdout, stderr).
pub fn lvm1_run(script: &str) -> (i32, String, String) {
    let o = lvm1_ssh(&format!("export LC_ALL=C; {script}"));
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The six hosts of the lab (name, address), as lab/lab.sh builds them.
pub const LAB_HOSTS: [(&str, &str); 6] = [
    ("app1", "10.77.0.11"),
    ("app2", "10.77.0.12"),
    ("db1", "10.77.0.21"),
    ("db2", "10.77.0.22"),
    ("lb", "10.77.0.31"),
    ("staging", "10.77.0.41"),
];

/// Panic with a clear message unless the lab is up (controller namespace,
/// ssh config and known_hosts written by `lab/lab.sh up`).
pub fn require_lab() {
    let state = lab_state();
    let up = std::path::Path::new("/run/netns/cutover-ctl").exists()
        && state.join("ssh/config").exists()
        && state.join("ssh/known_hosts").exists();
    assert!(
        up,
        "the lab is not up (no netns cutover-ctl or no {}/ssh/config): run `lab/lab.sh up` as root first",
        state.display()
    );
}

/// ssh to a lab host as `user` (root, admin, operator) with the lab's config.
pub fn lab_ssh_as(user: &str, host: &str, remote_command: &str) -> Output {
    let config = lab_state().join("ssh/config");
    let config = config.to_str().expect("utf-8 path");
    let target = format!("{user}@{host}");
    in_controller("ssh", &["-F", config, &target, remote_command])
}

/// Like `lab_ssh`, but panics with the host's stderr unless the command succeeds;
/// returns its stdout.
pub fn lab_ssh_ok(host: &str, remote_command: &str) -> String {
    let out = lab_ssh(host, remote_command);
    assert!(
        out.status.success(),
        "on {host}: `{remote_command}` failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
