#!/usr/bin/env python3
"""Benchmark cutover, ansible-core and pyinfra on the lab's benchmark fleet.

Run through bench/run.sh (it makes the venv, builds cutover and calls this with the venv's
python). Everything generated (inventories, logs, results.json) goes to $WORK
(/var/cache/cutover-lab/bench-work); the report is written to BENCHMARKS.md in the repository.
Never talks to anything but the lab: every tool runs inside the controller namespace.
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
WL = BENCH / "workloads"
STATE = Path(os.environ.get("CUTOVER_LAB_STATE", "/var/lib/cutover-lab"))
CACHE = Path(os.environ.get("CUTOVER_LAB_CACHE", "/var/cache/cutover-lab"))
WORK = Path(os.environ.get("BENCH_WORK", CACHE / "bench-work"))
VENV = Path(os.environ.get("BENCH_VENV", CACHE / "bench-venv"))
SSH_DIR = STATE / "ssh"
KEY = SSH_DIR / "id_ed25519"
KNOWN = SSH_DIR / "known_hosts"
SSH_CONFIG = SSH_DIR / "config"
NETNS = ["ip", "netns", "exec", "cutover-ctl"]
# cutover-kex: cutover with `ssh_options: { KexAlgorithms: curve25519-sha256 }` in the inventory
# (the key exchange paramiko, hence pyinfra, uses; OpenSSH's default is sntrup761x25519-sha512).
TOOLS = ["cutover", "cutover-kex", "ansible", "pyinfra"]
LABEL = {"cutover": "cutover", "cutover-kex": "cutover, curve25519 kex", "ansible": "ansible-core", "pyinfra": "pyinfra"}
WORKLOADS = {
    "a": "user + log file + file in home + shell command (the pyinfra performance workload, 4 steps)",
    "b": "20 small steps (a directory, then 19 small files)",
    "c": "10 templates rendered and written (after their directory; 11 steps)",
}
STEPS = {"a": 4, "b": 20, "c": 11}
RESET = {
    "a": "userdel -r benchuser >/dev/null 2>&1; rm -rf /home/benchuser /var/log/benchuser.log",
    "b": "rm -rf /var/tmp/bench-b",
    "c": "rm -rf /var/tmp/bench-c",
}
VERIFY = {
    "a": "test -f /home/benchuser/motd.txt && stat -c '%U:%G:%a' /var/log/benchuser.log /home/benchuser/motd.txt | tr '\\n' ' ' && getent passwd benchuser | cut -d: -f6,7",
    "b": "ls /var/tmp/bench-b | grep -c '^f'",
    "c": "ls /var/tmp/bench-c | grep -c 'conf$'",
}
EXPECT = {
    "a": "benchuser:benchuser:640 benchuser:benchuser:644 /home/benchuser:/bin/bash",
    "b": "19",
    "c": "10",
}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, **kw)


# ---------------------------------------------------------------- fleet


def fleet_up(n):
    log(f"fleet up {n}")
    sh([str(REPO / "lab/lab.sh"), "fleet", "up", str(n)], stdout=subprocess.DEVNULL)
    hosts = []
    for line in (STATE / "fleet/hosts.txt").read_text().split("\n"):
        if line.strip():
            name, addr = line.split()
            hosts.append((name, addr))
    install_python(hosts)
    quiet_sshd(hosts)
    return hosts


def python_tree():
    """Debian's python3 (minimal + stdlib) unpacked once; ansible needs it on the hosts."""
    root = CACHE / "bench-python/root"
    if (root / "usr/bin/python3").exists():
        return root
    debs = CACHE / "bench-python/debs"
    shutil.rmtree(root.parent, ignore_errors=True)
    debs.mkdir(parents=True)
    pkgs = ["python3-minimal", "python3.11-minimal", "libpython3.11-minimal",
            "libpython3.11-stdlib", "media-types", "libexpat1", "libffi8"]
    log("downloading python3 for the fleet hosts: apt-get download " + " ".join(pkgs))
    sh(["apt-get", "download", *pkgs], cwd=debs, stdout=subprocess.DEVNULL)
    tmp = root.parent / "tmp"
    tmp.mkdir()
    for deb in sorted(debs.glob("*.deb")):
        sh(["dpkg", "-x", str(deb), str(tmp)])
    for d in ("lib", "bin", "sbin"):  # the host tree has merged /usr
        if (tmp / d).is_dir() and not (tmp / d).is_symlink():
            sh(["cp", "-a", f"{tmp}/{d}/.", f"{tmp}/usr/{d}/"])
            shutil.rmtree(tmp / d)
    for d in ("usr/share/doc", "usr/share/man", "usr/share/lintian"):
        shutil.rmtree(tmp / d, ignore_errors=True)
    tmp.rename(root)
    return root


def install_python(hosts):
    """Fleet hosts are bare (no python3); copy it into each host's overlay (from the host side)."""
    tree = None
    for name, _ in hosts:
        root = STATE / "hosts" / name / "root"
        if (root / "usr/bin/python3").exists():
            continue
        tree = tree or python_tree()
        sh(["cp", "-an", f"{tree}/.", f"{root}/"])


def quiet_sshd(hosts):
    """Work around a lab problem: fleet hosts run `sshd -D -e` on nspawn's passive console,
    whose pty nobody reads, so after a few hundred logins sshd blocks writing its log line and
    the host stops answering. LogLevel QUIET (a drop-in, then SIGHUP: sshd re-executes itself
    and re-reads its config) keeps sshd from writing there."""
    for name, _ in hosts:
        drain_console(name)
        root = STATE / "hosts" / name / "root"
        conf = root / "etc/ssh/sshd_config.d/zz-bench-quiet.conf"
        if conf.exists():
            continue
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("# bench/bench.py: nothing on the console nobody reads (see quiet_sshd)\nLogLevel QUIET\n")
        nspawn = int((STATE / "run" / f"{name}.pid").read_text().split()[0])
        listener = None
        for init in children(nspawn):
            for p in children(init):
                if Path(f"/proc/{p}/comm").read_text().strip() == "sshd":
                    listener = p
        if listener is None:
            raise RuntimeError(f"{name}: no sshd listener found under nspawn pid {nspawn}")
        os.kill(listener, 1)  # SIGHUP
        # sessions already stuck writing to the full console
        for p in children(listener):
            os.kill(p, 9)
    wait_ssh(hosts)


def drain_console(name):
    """Read (and drop) what is waiting on a fleet host's console: take a copy of nspawn's pty
    master with pidfd_getfd(2) and read it empty, which unblocks an sshd stuck writing to it."""
    import ctypes
    import fcntl

    nspawn = int((STATE / "run" / f"{name}.pid").read_text().split()[0])
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(nspawn)
    try:
        for fd in os.listdir(f"/proc/{nspawn}/fd"):
            try:
                if os.readlink(f"/proc/{nspawn}/fd/{fd}") != "/dev/pts/ptmx":
                    continue
            except OSError:
                continue
            mine = libc.syscall(438, pidfd, int(fd), 0)  # SYS_pidfd_getfd on x86_64
            if mine < 0:
                raise OSError(ctypes.get_errno(), f"pidfd_getfd on {name}'s console")
            try:
                fcntl.fcntl(mine, fcntl.F_SETFL, fcntl.fcntl(mine, fcntl.F_GETFL) | os.O_NONBLOCK)
                while True:
                    try:
                        if not os.read(mine, 65536):
                            break
                    except (BlockingIOError, OSError):
                        break
            finally:
                os.close(mine)
    finally:
        os.close(pidfd)


def children(pid):
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def wait_ssh(hosts, limit=30):
    t0 = time.monotonic()
    while True:
        try:
            on_hosts(hosts, "true")
            return
        except RuntimeError:
            if time.monotonic() - t0 > limit:
                raise
            time.sleep(0.5)


def on_hosts(hosts, script, check=True):
    """Run a script on every host over a fresh ssh connection (not timed)."""

    def one(h):
        r = subprocess.run(NETNS + ["ssh", "-F", str(SSH_CONFIG), "-o", "ConnectTimeout=10", h[0], script],
                           capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError(f"{h[0]}: `{script}` failed: {r.stderr.strip()}")
        return r.stdout.strip()

    with ThreadPoolExecutor(max_workers=32) as ex:
        return list(ex.map(one, hosts))


# ---------------------------------------------------------------- inventories


def write_inventories(hosts, d):
    d.mkdir(parents=True, exist_ok=True)
    n = len(hosts)
    common = {"base_port": 8000, "cluster_name": "bench", "workers": ["w1", "w2", "w3"]}

    # cutover
    lines = ["connection:", "  user: root", f"  identity_file: {KEY}", f"  known_hosts_file: {KNOWN}",
             "groups:", "  all:", "    vars:",
             f"      bench_files: {WL / 'files'}",
             f"      base_port: {common['base_port']}",
             f"      cluster_name: {common['cluster_name']}",
             f"      workers: {json.dumps(common['workers'])}",
             "hosts:"]
    for name, addr in hosts:
        lines += [f"  {name}:", f"    address: {addr}",
                  f"    vars: {{ node_name: {name}, listen_address: {addr} }}"]
    (d / "cutover.yml").write_text("\n".join(lines) + "\n")
    lines.insert(4, "  ssh_options: { KexAlgorithms: curve25519-sha256 }")
    (d / "cutover-kex.yml").write_text("\n".join(lines) + "\n")

    # ansible: YAML inventory + ansible.cfg
    lines = ["all:", "  vars:", "    ansible_user: root",
             f"    ansible_ssh_private_key_file: {KEY}",
             "    ansible_python_interpreter: /usr/bin/python3",
             f"    bench_files: {WL / 'files'}",
             f"    bench_templates: {WL / 'templates'}",
             f"    base_port: {common['base_port']}",
             f"    cluster_name: {common['cluster_name']}",
             f"    workers: {json.dumps(common['workers'])}",
             "  hosts:"]
    for name, addr in hosts:
        lines += [f"    {name}:", f"      ansible_host: {addr}",
                  f"      node_name: {name}", f"      listen_address: {addr}"]
    (d / "ansible-inventory.yml").write_text("\n".join(lines) + "\n")
    (d / "ansible.cfg").write_text(f"""[defaults]
inventory = {d / 'ansible-inventory.yml'}
forks = {max(n, 5)}
gathering = explicit
host_key_checking = True
retry_files_enabled = False
deprecation_warnings = False
interpreter_python = /usr/bin/python3
local_tmp = {WORK / 'ansible-local'}

[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o IdentitiesOnly=yes -o UserKnownHostsFile={KNOWN} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes
""")

    # pyinfra
    lines = ["# generated by bench/bench.py", "hosts = ["]
    for name, addr in hosts:
        data = {"ssh_hostname": addr, "ssh_user": "root", "ssh_key": str(KEY),
                "ssh_known_hosts_file": str(KNOWN), "ssh_strict_host_key_checking": "yes",
                "node_name": name, "listen_address": addr, **common}
        lines.append(f"    ({name!r}, {data!r}),")
    lines.append("]")
    (d / "pyinfra_inventory.py").write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------- running the tools


def tool_cmd(tool, workload, inv_dir, n, cutover_bin, extra_playbook=None, limit=None):
    if tool in ("cutover", "cutover-kex"):
        pb = extra_playbook or WL / f"{workload}_cutover.yml"
        cmd = [str(cutover_bin), "apply", "-i", str(inv_dir / f"{tool}.yml"),
               "--templates", str(WL / "templates"), "--forks", str(max(n, 1)), "--output", "json", str(pb)]
        if limit:
            cmd[2:2] = ["--limit", limit]
        return cmd
    if tool == "ansible":
        return [str(VENV / "bin/ansible-playbook"), str(WL / f"{workload}_ansible.yml")]
    if tool == "pyinfra":
        return [str(VENV / "bin/pyinfra"), "-y", "--parallel", str(max(n, 1)),
                str(inv_dir / "pyinfra_inventory.py"), str(WL / f"{workload}_pyinfra.py")]
    raise ValueError(tool)


def run_timed(cmd, env, logfile):
    """Run one tool invocation in the controller namespace under /usr/bin/time -v.
    Returns (wall seconds, max RSS in KiB, CPU seconds of the tool's process tree)."""
    timef = logfile.with_suffix(".time")
    full = NETNS + ["/usr/bin/time", "-v", "-o", str(timef)] + cmd
    with open(logfile, "w") as out:
        t0 = time.monotonic()
        r = subprocess.run(full, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(WORK))
        wall = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}); see {logfile}")
    text = timef.read_text()
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    cpu = sum(float(x) for x in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text))
    return wall, int(m.group(1)) if m else 0, cpu


def close_ansible_masters(cp_dir):
    socks = [p for p in cp_dir.iterdir()] if cp_dir.exists() else []

    def one(p):
        subprocess.run(NETNS + ["ssh", "-o", f"ControlPath={p}", "-O", "exit", "x"],
                       capture_output=True)

    with ThreadPoolExecutor(max_workers=32) as ex:
        list(ex.map(one, socks))
    shutil.rmtree(cp_dir, ignore_errors=True)


class Runner:
    def __init__(self, cutover_bin):
        self.cutover_bin = cutover_bin
        self.seq = 0

    def env(self, tool, inv_dir, cp_dir):
        env = dict(os.environ)
        env["CUTOVER_STATE_DIR"] = str(WORK / "cutover-state")
        env["BENCH_FILES"] = str(WL / "files")
        env["BENCH_TEMPLATES"] = str(WL / "templates")
        env["ANSIBLE_CONFIG"] = str(inv_dir / "ansible.cfg")
        env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = str(cp_dir)
        env["ANSIBLE_NOCOLOR"] = "1"
        env["PYINFRA_PROGRESS"] = "off"
        env["PATH"] = f"{VENV / 'bin'}:{env.get('PATH', '')}"
        return env

    def run(self, tool, workload, hosts, inv_dir, label, **kw):
        """One invocation; every invocation starts without a leftover ssh connection."""
        self.seq += 1
        cp_dir = WORK / "cp" / f"{self.seq}"
        cp_dir.mkdir(parents=True, exist_ok=True)
        logfile = WORK / "logs" / f"{self.seq:05d}-{label}-{tool}-{workload}-{len(hosts)}.log"
        cmd = tool_cmd(tool, workload, inv_dir, len(hosts), self.cutover_bin, **kw)
        try:
            return run_timed(cmd, self.env(tool, inv_dir, cp_dir), logfile)
        finally:
            close_ansible_masters(cp_dir)


def bench_size(runner, hosts, workloads, runs, results, ansible_runs, ansible_cap):
    n = len(hosts)
    inv_dir = WORK / f"inv-{n}"
    write_inventories(hosts, inv_dir)
    for w in workloads:
        for rep in range(runs):
            order = TOOLS[rep % len(TOOLS):] + TOOLS[:rep % len(TOOLS)]  # alternate, and rotate who goes first
            for tool in order:
                if tool == "ansible" and (rep >= ansible_runs or STEPS[w] * n > ansible_cap):
                    continue
                on_hosts(hosts, RESET[w])
                results["meta"].setdefault("busy", []).append(machine_busy())
                first, rss1, cpu1 = runner.run(tool, w, hosts, inv_dir, "first")
                second, rss2, cpu2 = runner.run(tool, w, hosts, inv_dir, "second")
                got = on_hosts(hosts, VERIFY[w])
                bad = [h[0] for h, g in zip(hosts, got) if g != EXPECT[w]]
                if bad:
                    raise RuntimeError(f"{tool} workload {w}: wrong result on {bad[:5]}: {got[0]!r}")
                key = f"{w}/{n}/{tool}"
                r = results.setdefault(key, {"first": [], "second": [], "rss_first": [], "rss_second": [],
                                             "cpu_first": [], "cpu_second": []})
                r["cpu_first"].append(cpu1)
                r["cpu_second"].append(cpu2)
                r["first"].append(first)
                r["second"].append(second)
                r["rss_first"].append(rss1)
                r["rss_second"].append(rss2)
                log(f"hosts {n:3d} workload {w} run {rep + 1}/{runs} {tool:8s} first {first:7.2f}s  second {second:7.2f}s  cpu {cpu1:6.2f}s {cpu2:6.2f}s  maxrss {max(rss1, rss2) // 1024} MB")
        on_hosts(hosts, RESET[w])
        save(results)


# ---------------------------------------------------------------- overhead on one host


def overhead(runner, results, steps=200, runs=3, fleet=False):
    """cutover per step on one warm connection: debug steps vs `command: true` steps vs raw ssh.
    With fleet=True: the same on every host of the fleet (per step, all hosts at once)."""
    hosts = fleet_up_hosts() if fleet else fleet_up_hosts()[:1]
    inv_dir = WORK / f"inv-oh-{len(hosts)}"
    write_inventories(hosts, inv_dir)
    pbs = {}
    for kind, step in (("debug", 'debug: { msg: "step N" }'), ("command", "command: /bin/true")):
        lines = [f"- name: overhead {kind}", "  hosts: all", "  steps:"]
        for i in range(steps):
            lines += [f"    - name: s{i}", "      " + step.replace("N", str(i))]
        pbs[kind] = WORK / f"overhead-{kind}-{steps}.yml"
        pbs[kind].write_text("\n".join(lines) + "\n")
    empty = WORK / "overhead-empty.yml"
    empty.write_text('- name: overhead empty\n  hosts: all\n  steps:\n    - name: one\n      debug: { msg: "x" }\n')
    out = {"steps": steps, "hosts": len(hosts)}
    for kind, pb in (("one_step", empty), ("debug", pbs["debug"]), ("command", pbs["command"])):
        ts = []
        for _ in range(runs):
            t, _rss, _cpu = runner.run("cutover", "overhead", hosts, inv_dir, f"overhead-{kind}", extra_playbook=pb)
            ts.append(t)
        out[kind] = ts
    if fleet:
        results["overhead_fleet"] = out
        save(results)
        return
    # raw ssh: one master, then `steps` commands through it with a new ssh client each
    ctl = WORK / "raw-ssh.sock"
    name = hosts[0][0]
    base = ["ssh", "-F", str(SSH_CONFIG), "-o", f"ControlPath={ctl}"]
    sh(NETNS + base + ["-o", "ControlMaster=yes", "-o", "ControlPersist=60", "-fN", name])
    script = f'for i in $(seq {steps}); do ssh -F {SSH_CONFIG} -o ControlPath={ctl} -o ControlMaster=no {name} "exec /bin/sh -c true" || exit 1; done'
    ts = []
    for _ in range(runs):
        t0 = time.monotonic()
        sh(NETNS + ["bash", "-c", script])
        ts.append(time.monotonic() - t0)
    out["raw_ssh"] = ts
    # the host's share: `steps` times `/bin/sh -c true` in one remote shell (no ssh per command)
    ts = []
    for _ in range(runs):
        t0 = time.monotonic()
        sh(NETNS + base + ["-o", "ControlMaster=no", name, f"for i in $(seq {steps}); do /bin/sh -c true; done"])
        ts.append(time.monotonic() - t0)
    out["remote_loop"] = ts
    subprocess.run(NETNS + base + ["-O", "exit", name], capture_output=True)
    results["overhead"] = out
    save(results)
    med = {k: statistics.median(v) for k, v in out.items() if k not in ("steps", "hosts")}
    log("overhead (median of %d): one step %.3fs, %d debug %.3fs, %d command %.3fs, %d raw ssh %.3fs" % (
        runs, med["one_step"], steps, med["debug"], steps, med["command"], steps, med["raw_ssh"]))


def spawn_counts(runner, results):
    """Processes each tool makes one host start per run (the host's pid counter, from
    /proc/loadavg in its pid namespace, before and after), for the first and the second run."""
    hosts = fleet_up_hosts()[:1]
    inv_dir = WORK / "inv-oh-1"
    write_inventories(hosts, inv_dir)

    def last_pid():
        return int(on_hosts(hosts, "cat /proc/loadavg")[0].split()[-1])

    a, b = last_pid(), last_pid()
    probe_cost = b - a  # what reading the counter itself starts
    out = {}
    for w in WORKLOADS:
        for tool in ("cutover", "ansible", "pyinfra"):
            on_hosts(hosts, RESET[w])
            p0 = last_pid()
            runner.run(tool, w, hosts, inv_dir, "procs-first")
            p1 = last_pid()
            runner.run(tool, w, hosts, inv_dir, "procs-second")
            p2 = last_pid()
            out[f"{w}/{tool}"] = [p1 - p0 - probe_cost, p2 - p1 - probe_cost]
        on_hosts(hosts, RESET[w])
    results["spawns"] = out
    save(results)
    log(f"processes started on one host: {out}")


def fleet_up_hosts():
    return [tuple(l.split()) for l in (STATE / "fleet/hosts.txt").read_text().split("\n") if l.strip()]


def plan_time(cutover_bin, results):
    pb = REPO / "playbooks/upgrade.yml"
    has_plan = subprocess.run([str(cutover_bin), "plan", "--help"], capture_output=True).returncode == 0
    if not pb.exists() or not has_plan:
        results["plan"] = {"skipped": ("no `cutover plan` command" if not has_plan else "")
                           + (" and " if not has_plan and not pb.exists() else "")
                           + ("no playbooks/upgrade.yml" if not pb.exists() else "")}
        log(f"cutover plan: skipped ({results['plan']['skipped']})")
        return
    ts = []
    env = dict(os.environ, CUTOVER_STATE_DIR=str(WORK / "cutover-state"))
    for _ in range(3):
        t0 = time.monotonic()
        r = subprocess.run(NETNS + [str(cutover_bin), "plan", "-i", str(REPO / "inventory/lab.yml"), str(pb)],
                           cwd=str(REPO), env=env, capture_output=True, text=True)
        ts.append(time.monotonic() - t0)
        if r.returncode not in (0, 2):
            results["plan"] = {"skipped": f"`cutover plan` failed ({r.returncode}): {r.stderr.strip()[-300:]}"}
            return
    results["plan"] = {"times": ts}


# ---------------------------------------------------------------- report


def save(results):
    if results.get("meta", {}).get("partial"):
        return  # --only-overhead: results.json keeps the last full run
    (WORK / "results.json").write_text(json.dumps(results, indent=1))


def versions(cutover_bin):
    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().split("\n")[0]
        except OSError:
            return "?"

    return {
        "cutover": out([str(cutover_bin), "--version"]) + " (" + out(["git", "-C", str(REPO), "describe", "--always", "--dirty"]) + ")",
        "ansible-core": out([str(VENV / "bin/python"), "-c", "import ansible.release as r; print(r.__version__)"]),
        "pyinfra": out([str(VENV / "bin/python"), "-c", "import importlib.metadata as m; print(m.version('pyinfra'))"]),
        "controller python (venv)": out([str(VENV / "bin/python"), "-c", "import platform; print(platform.python_version())"]),
        "openssh": subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip(),
        "fleet hosts": "Debian 12, sshd only (no systemd), python3 " + out(["/usr/bin/python3", "-c", "import platform; print(platform.python_version())"]) + " added for ansible",
    }


def machine():
    mem = 0
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) / 1024 / 1024
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"nproc": os.cpu_count(), "memory": f"{mem:.1f} GiB", "kernel": platform.release(), "cpu": cpu}


def fmt(v):
    return f"{v:.2f}"


def machine_busy(seconds=0.5):
    """Share of the machine's CPU in use just before a timed pair (0-100 %): what else runs.
    (The load average would mostly count the benchmark's own previous runs.)"""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 100.0 * (1 - (i1 - i0) / max(t1 - t0, 1))


def report(results, args_line):
    meta = results.get("meta", {})
    L = ["# Benchmarks: cutover vs ansible-core vs pyinfra", "",
         "Generated by `" + meta.get("command", args_line) + "` (bench/run.sh → bench/bench.py); do not edit by hand — the",
         "analysis at the end comes from bench/findings.md.", "",
         f"Run: {meta.get('date', '?')}, took {meta.get('duration_s', '?')} s. Runs per tool, workload and run kind, by fleet size: "
         + ", ".join(f"{k} hosts: {v}" for k, v in meta.get("runs", {}).items()) + ".", "",
         "## Machine and versions", ""]
    if meta.get("busy"):
        b = sorted(meta["busy"])
        L[-2:-2] = [f"Machine CPU in use in the half second before each timed pair (other work on the machine adds noise): "
                    f"median {statistics.median(b):.0f} %, max {b[-1]:.0f} %.", ""]
    elif meta.get("load"):
        ld = sorted(meta["load"])
        L[-2:-2] = [f"1-minute load average before each timed pair: median {statistics.median(ld):.1f}, max {ld[-1]:.1f}"
                    " (it mostly counts the benchmark's own previous runs).", ""]
    for k, v in meta.get("machine", {}).items():
        L.append(f"- {k}: {v}")
    for k, v in meta.get("versions", {}).items():
        L.append(f"- {k}: {v}")
    L += ["", "## How it is measured", "",
          "- Same hosts for every tool: the lab's benchmark fleet (`lab/lab.sh fleet up N`: sshd-only",
          "  nspawn containers on the lab bridge), every tool run inside the controller namespace.",
          "- Tools alternate: for each repetition the three tools run one after the other (the one",
          "  going first rotates). Before each tool's *first* run the hosts are reset (what the workload",
          "  created is removed), so the first run has everything to change and the *second* run right",
          "  after it has nothing to change. After each pair the result is checked on every host.",
          "- Wall time of the whole tool process (`/usr/bin/time -v`, which also gives the peak RSS).",
          "  No run reuses an ssh connection of an earlier run (ansible's ControlPersist masters are",
          "  closed after every invocation; cutover and pyinfra close theirs).",
          "- cutover: `cutover apply --forks N --output json` (the journal is fsync'ed as in production).",
          "- cutover, curve25519 kex: the same, with `ssh_options: { KexAlgorithms: curve25519-sha256 }` in",
          "  its inventory — the key exchange paramiko (pyinfra) uses; see finding 1 below.",
          "- ansible-core: `ansible-playbook`, forks = N, pipelining on, ControlMaster/ControlPersist=60s,",
          "  `gather_facts: false`, strict host key checking against the lab's known_hosts.",
          "- pyinfra: `pyinfra -y --parallel N inventory.py deploy.py` (its own deploy-file idiom, paramiko),",
          "  strict host key checking against the same known_hosts.",
          "- Workloads (bench/workloads/, the same operations in each tool's idiom):"]
    for w, d in WORKLOADS.items():
        L.append(f"  - **{w}**: {d}")
    L.append("- Fleet hosts have no python3 (ansible needs it): bench copies Debian's python3.11 (minimal +")
    L.append("  stdlib) into each fleet host's overlay. useradd/userdel exist; no systemd is needed.")
    L += ["", "## Results", "",
          "Median wall time in seconds (min–max), and the ratio of the median to cutover's (in brackets: to",
          "cutover with the curve25519 key exchange, see the analysis).", ""]
    sizes = sorted({int(k.split("/")[1]) for k in results if k.count("/") == 2})
    for w in WORKLOADS:
        if not any(k.startswith(w + "/") for k in results):
            continue
        L += [f"### Workload {w}: {WORKLOADS[w]}", "",
              "| hosts | run | cutover | cutover, curve25519 kex | ansible-core | ratio | pyinfra | ratio |",
              "|---|---|---|---|---|---|---|---|"]
        for n in sizes:
            for kind in ("first", "second"):
                row = [str(n), kind]
                c = results.get(f"{w}/{n}/cutover", {}).get(kind)
                if not c:
                    continue
                cm = statistics.median(c)
                for tool in TOOLS:
                    v = results.get(f"{w}/{n}/{tool}", {}).get(kind)
                    if not v:
                        row += ["not run"] + ([] if tool.startswith("cutover") else ["–"])
                        continue
                    m = statistics.median(v)
                    row.append(f"**{fmt(m)}** ({fmt(min(v))}–{fmt(max(v))})")
                    if not tool.startswith("cutover"):
                        k = results.get(f"{w}/{n}/cutover-kex", {}).get(kind)
                        row.append(f"{m / cm:.1f}×" + (f" ({m / statistics.median(k):.1f}×)" if k else ""))
                L.append("| " + " | ".join(row) + " |")
        L.append("")
    L += ["Ansible-core ran " + ", ".join(f"{v}× at {k} hosts" for k, v in meta.get("ansible_runs", {}).items())
          + f" per cell, and not at all where steps × hosts > {meta.get('ansible_cap', '?')} (\"not run\"): on this",
          "machine one ansible run costs about 0.3 s per step and host, see the analysis below.", "",
          "### Controller CPU", "",
          "CPU seconds (user + system, median) of the tool's process tree (ansible: including its forks and",
          "ssh clients). The fleet hosts share the same 2 cores, so everything a tool makes the *hosts*",
          "compute (ansible: a python interpreter per step and host) also slows the wall times above.", "",
          "| hosts | workload | run | cutover | cutover, curve25519 kex | ansible-core | pyinfra |", "|---|---|---|---|---|---|---|"]
    for n in sizes:
        for w in WORKLOADS:
            for kind in ("first", "second"):
                if f"{w}/{n}/cutover" not in results:
                    continue
                row = [str(n), w, kind]
                for tool in TOOLS:
                    r = results.get(f"{w}/{n}/{tool}")
                    row.append(fmt(statistics.median(r["cpu_" + kind])) if r and r.get("cpu_" + kind) else "–")
                L.append("| " + " | ".join(row) + " |")
    L.append("")
    L += ["### Peak memory", "",
          "Maximum resident set size from `/usr/bin/time -v` (MB), the largest over all runs of that size",
          "and workload. It is the largest *single* process of the tool's tree (for ansible: the",
          "controller or one fork; for cutover: the one process); the ssh master processes that cutover and",
          "ansible start are detached and not counted (pyinfra has none: paramiko runs in-process).", "",
          "| hosts | workload | cutover | cutover, curve25519 kex | ansible-core | pyinfra |", "|---|---|---|---|---|---|"]
    for n in sizes:
        for w in WORKLOADS:
            row = [str(n), w]
            if f"{w}/{n}/cutover" not in results:
                continue
            for tool in TOOLS:
                r = results.get(f"{w}/{n}/{tool}")
                row.append(str(max(r["rss_first"] + r["rss_second"]) // 1024) if r else "–")
            L.append("| " + " | ".join(row) + " |")
    L.append("")
    o = results.get("overhead")
    if o:
        s = o["steps"]
        med = {k: statistics.median(v) for k, v in o.items() if k not in ("steps", "hosts")}
        per_debug = (med["debug"] - med["one_step"]) / (s - 1) * 1000
        per_cmd = (med["command"] - med["one_step"]) / (s - 1) * 1000
        per_ssh = med["raw_ssh"] / s * 1000
        per_remote = med.get("remote_loop", 0) / s * 1000
        L += ["### cutover's own overhead per step (one host, warm connection)", "",
              f"Median of {len(o['debug'])} runs each. A run of 1 `debug` step measures start-up, connecting and",
              f"the host lock; {s} `debug` steps add the engine's per-step cost without touching the host;",
              f"{s} `command: /bin/true` steps add one remote command per step. The raw line is {s}",
              "`ssh -S ctl host 'exec /bin/sh -c true'` through one already open master (a new ssh client",
              "process per command, so it is an upper bound of what ssh itself costs; cutover uses the",
              "master's mux protocol in-process).", "",
              "| what | total (s) | per step (ms) |", "|---|---|---|",
              f"| cutover, 1 debug step | {fmt(med['one_step'])} | – |",
              f"| cutover, {s} debug steps | {fmt(med['debug'])} | {per_debug:.2f} |",
              f"| cutover, {s} command steps | {fmt(med['command'])} | {per_cmd:.2f} |",
              f"| raw ssh through a master, {s} commands | {fmt(med['raw_ssh'])} | {per_ssh:.2f} |",
              f"| the host alone: {s} × `/bin/sh -c true` in one remote shell | {fmt(med.get('remote_loop', 0))} | {per_remote:.2f} |",
              "",
              f"So a `command` step costs cutover {per_cmd:.2f} ms on a warm connection, of which about {per_remote:.2f} ms",
              f"is the host starting the shell; the rest ({per_cmd - per_remote:.2f} ms) is the round trip through",
              "the host's session shell (one per host, no channel or sshd session per command), the engine and",
              "the journal together. The engine alone",
              f"(a step that does not touch the host) costs {per_debug:.2f} ms; a new ssh client per",
              f"command (what a tool without a mux client pays) would cost {per_ssh:.2f} ms.", ""]
    of = results.get("overhead_fleet")
    if of:
        s, n = of["steps"], of["hosts"]
        med = {k: statistics.median(v) for k, v in of.items() if k not in ("steps", "hosts")}
        pd = (med["debug"] - med["one_step"]) / (s - 1) * 1000
        pc = (med["command"] - med["one_step"]) / (s - 1) * 1000
        L += [f"On all {n} hosts at once ({s} steps, median of {len(of['debug'])}): 1 debug step {fmt(med['one_step'])} s"
              f" (start-up, {n} connections, locks); a debug step {pd:.2f} ms; a `command: /bin/true` step {pc:.1f} ms"
              f" for all {n} hosts, i.e. {pc / n:.2f} ms per step per host (the 2 cores are shared with the {n} sshds).", ""]
    sp = results.get("spawns")
    if sp:
        L += ["### Processes started on a host per run", "",
              "One host (bench001), counted with the host's pid counter before and after each run: every",
              "process the run made the host start (sshd session processes, shells, stat, python…).", "",
              "| workload | run | cutover | ansible-core | pyinfra |", "|---|---|---|---|---|"]
        for w in WORKLOADS:
            for i, kind in enumerate(("first", "second")):
                L.append(f"| {w} | {kind} | " + " | ".join(str(sp.get(f"{w}/{t}", ["–", "–"])[i]) for t in ("cutover", "ansible", "pyinfra")) + " |")
        L.append("")
    p = results.get("plan")
    if p:
        L += ["### `cutover plan` of playbooks/upgrade.yml on the six-host lab", ""]
        if "times" in p:
            L.append(f"Median {fmt(statistics.median(p['times']))} s (min {fmt(min(p['times']))}, max {fmt(max(p['times']))}).")
        else:
            L.append(f"Not measured: {p['skipped']}.")
        L.append("")
    L += ["## Targets (issue 8)", ""]
    L += targets(results, sizes)
    f = BENCH / "findings.md"
    if f.exists():
        L += ["", f.read_text().rstrip()]
    (REPO / "BENCHMARKS.md").write_text("\n".join(L) + "\n")
    log(f"wrote {REPO / 'BENCHMARKS.md'}")


def targets(results, sizes):
    L = ["| target | hosts | workload | run | measured | met | with curve25519 kex |", "|---|---|---|---|---|---|---|"]
    for n in (25, 50):
        if n not in sizes:
            continue
        for w in WORKLOADS:
            for kind in ("first", "second"):
                c = results.get(f"{w}/{n}/cutover", {}).get(kind)
                if not c:
                    continue
                cm = statistics.median(c)
                k = results.get(f"{w}/{n}/cutover-kex", {}).get(kind)
                for tool, goal in (("ansible", 10), ("pyinfra", 3)):
                    v = results.get(f"{w}/{n}/{tool}", {}).get(kind)
                    if v:
                        ratio = statistics.median(v) / cm
                        kr = f"{statistics.median(v) / statistics.median(k):.1f}×" if k else "–"
                        L.append(f"| ≥ {goal}× below {tool} | {n} | {w} | {kind} | {ratio:.1f}× | {'yes' if ratio >= goal else '**no**'} | {kr} |")
    o = results.get("overhead")
    if o:
        s = o["steps"]
        med = {k: statistics.median(v) for k, v in o.items() if k not in ("steps", "hosts")}
        own = (med["command"] - med["one_step"]) / (s - 1) * 1000 - med.get("remote_loop", 0) / s * 1000
        L.append(f"| own overhead ≤ 5 ms per step per host (command step − host's shell start) | 1 | {s} commands | warm | {own:.2f} ms | {'yes' if own <= 5 else '**no**'} | |")
    return L


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fleet sizes 6 and 25, 2 runs each")
    ap.add_argument("--sizes", help="comma-separated fleet sizes (default 6,25,50,100)")
    ap.add_argument("--runs", type=int, help="runs per tool, workload, size (default 5; 3 at 100 hosts)")
    ap.add_argument("--workloads", default="a,b,c")
    ap.add_argument("--ansible-runs", type=int, help="cap on ansible-core runs per cell (default 2 at <= 6 hosts, else 1)")
    ap.add_argument("--ansible-cap", type=int,
                    help="skip ansible-core where steps x hosts exceeds this (default 300; its remote python "
                         "makes a run cost ~0.3 s per step and host on the shared 2 cores; --quick: 150)")
    ap.add_argument("--cutover-bin", required=True)
    ap.add_argument("--report-only", action="store_true", help="rewrite BENCHMARKS.md from results.json")
    ap.add_argument("--keep-fleet", action="store_true", help="leave the fleet up at the end")
    ap.add_argument("--only-spawns", action="store_true", help="only count processes per run on one host, into results.json")
    ap.add_argument("--only-overhead", action="store_true",
                    help="only measure cutover's own per-step overhead (6 hosts), into overhead.json; BENCHMARKS.md is left as it is")
    ap.add_argument("--command-line", default="bench/run.sh")
    a = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "logs").mkdir(exist_ok=True)
    if a.report_only:
        report(json.loads((WORK / "results.json").read_text()), a.command_line)
        return
    if a.only_overhead:
        results = {"meta": {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(),
                            "versions": versions(Path(a.cutover_bin)), "partial": True}}
        fleet_up(6)
        try:
            overhead(Runner(Path(a.cutover_bin)), results)
            overhead(Runner(Path(a.cutover_bin)), results, steps=50, runs=2, fleet=True)
        finally:
            if not a.keep_fleet:
                subprocess.run([str(REPO / "lab/lab.sh"), "fleet", "down"], stdout=subprocess.DEVNULL)
        (WORK / "overhead.json").write_text(json.dumps(results, indent=1))
        print(json.dumps(results, indent=1))
        return
    if a.only_spawns:
        results = json.loads((WORK / "results.json").read_text())
        hosts = fleet_up(6)
        spawn_counts(Runner(Path(a.cutover_bin)), results)
        if not a.keep_fleet:
            subprocess.run([str(REPO / "lab/lab.sh"), "fleet", "down"], stdout=subprocess.DEVNULL)
        report(results, a.command_line)
        return
    sizes = [int(s) for s in a.sizes.split(",")] if a.sizes else ([6, 25] if a.quick else [6, 25, 50])
    workloads = a.workloads.split(",")
    cutover_bin = Path(a.cutover_bin)
    results = {"meta": {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(),
                        "versions": versions(cutover_bin), "sizes": sizes,
                        "command": a.command_line + (f" (BENCH_CUTOVER_BIN={os.environ['BENCH_CUTOVER_BIN']})"
                                                     if os.environ.get("BENCH_CUTOVER_BIN") else "")}}
    runner = Runner(cutover_bin)
    t0 = time.monotonic()
    try:
        for n in sizes:
            avail = int([l for l in open("/proc/meminfo") if l.startswith("MemAvailable")][0].split()[1]) // 1024
            if n * 15 + 4096 > avail:
                log(f"skipping {n} hosts: {avail} MB available")
                continue
            runs = a.runs or (2 if a.quick else (5 if n <= 6 else 3))
            results["meta"].setdefault("runs", {})[str(n)] = runs
            hosts = fleet_up(n)
            ansible_runs = min(runs, a.ansible_runs or (2 if n <= 6 and not a.quick else 1))
            cap = a.ansible_cap or (150 if a.quick else 300)
            results["meta"].setdefault("ansible_runs", {})[str(n)] = ansible_runs
            results["meta"]["ansible_cap"] = cap
            bench_size(runner, hosts, workloads, runs, results, ansible_runs, cap)
        overhead(runner, results, runs=2 if a.quick else 3)
        overhead(runner, results, steps=50, runs=2, fleet=True)
        spawn_counts(runner, results)
        plan_time(cutover_bin, results)
    finally:
        save(results)
        if not a.keep_fleet:
            log("fleet down")
            subprocess.run([str(REPO / "lab/lab.sh"), "fleet", "down"], stdout=subprocess.DEVNULL)
    results["meta"]["duration_s"] = round(time.monotonic() - t0)
    save(results)
    report(results, a.command_line)
    log(f"done in {results['meta']['duration_s']} s")


if __name__ == "__main__":
    sys.exit(main())
