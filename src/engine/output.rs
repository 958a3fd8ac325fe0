//! What the admin sees while a run goes: a progress display on a terminal (a line per active
//! host plus an overall bar, never more lines than the terminal has), one plain line per event
//! elsewhere (CI logs), or JSON lines; then a recap per host. Optionally a JUnit file.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Changed,
    Failed,
    Skipped,
    Unreachable,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Failed => "FAILED",
            Status::Skipped => "skipped",
            Status::Unreachable => "UNREACHABLE",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum OutputMode {
    /// Progress on a terminal, plain lines otherwise.
    Auto,
    Plain,
    Json,
}

#[derive(Default, Clone, Debug)]
pub struct Recap {
    pub ok: u32,
    pub changed: u32,
    pub failed: u32,
    pub skipped: u32,
    pub unreachable: u32,
    pub time: Duration,
}

struct Case {
    play: String,
    step: String,
    host: String,
    status: Status,
    message: String,
    duration: Duration,
}

pub struct Reporter {
    json: bool,
    progress: Option<Progress>,
    started: Instant,
    recap: Mutex<BTreeMap<String, Recap>>,
    host_order: Mutex<Vec<String>>,
    cases: Mutex<Vec<Case>>,
    junit: Option<PathBuf>,
    pub verbose: bool,
}

struct Progress {
    multi: MultiProgress,
    overall: ProgressBar,
    hosts: Mutex<BTreeMap<String, ProgressBar>>,
    max_lines: usize,
}

impl Reporter {
    pub fn new(mode: OutputMode, junit: Option<PathBuf>, verbose: bool) -> Reporter {
        let tty = std::io::stderr().is_terminal();
        let progress = (mode == OutputMode::Auto && tty).then(|| {
            let rows = terminal_rows().unwrap_or(24);
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(0));
            overall.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} steps×hosts  {elapsed}  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            Progress {
                multi,
                overall,
                hosts: Mutex::new(BTreeMap::new()),
                max_lines: rows.saturating_sub(4).max(1),
            }
        });
        Reporter {
            json: mode == OutputMode::Json,
            progress,
            started: Instant::now(),
            recap: Mutex::new(BTreeMap::new()),
            host_order: Mutex::new(Vec::new()),
            cases: Mutex::new(Vec::new()),
            junit,
            verbose,
        }
    }

    /// A line of text for the admin (on stderr, above any progress display).
    pub fn say(&self, text: &str) {
        let text = &*crate::secrets::redact(text);
        if self.json {
            self.emit(json!({ "event": "message", "text": text }));
            return;
        }
        match &self.progress {
            Some(p) => {
                let _ = p.multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    fn emit(&self, v: serde_json::Value) {
        let v = crate::secrets::redact_json(&v);
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, &v);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    }

    pub fn play_started(&self, name: &str, hosts: &[&str], steps: usize) {
        {
            let mut order = self.host_order.lock().unwrap_or_else(|e| e.into_inner());
            for h in hosts {
                if !order.iter().any(|o| o == h) {
                    order.push(h.to_string());
                }
            }
        }
        if self.json {
            self.emit(json!({ "event": "play_started", "play": name, "hosts": hosts }));
            return;
        }
        if let Some(p) = &self.progress {
            p.overall.inc_length((hosts.len() * steps) as u64);
        }
        self.say(&format!("PLAY {name} [{}]", hosts.join(", ")));
    }

    pub fn step_started(&self, step: &str, host: &str) {
        if let Some(p) = &self.progress {
            let mut bars = p.hosts.lock().unwrap_or_else(|e| e.into_inner());
            if !bars.contains_key(host) && bars.len() < p.max_lines {
                let bar = p
                    .multi
                    .insert_before(&p.overall, ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix:12} {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.enable_steady_tick(Duration::from_millis(120));
                bar.set_prefix(host.to_string());
                bars.insert(host.to_string(), bar);
            }
            if let Some(b) = bars.get(host) {
                b.set_message(step.to_string());
            }
            if bars.len() >= p.max_lines {
                p.overall
                    .set_message(format!("(showing {} of the active hosts)", p.max_lines));
            }
        }
    }

    pub fn step_result(
        &self,
        play: &str,
        step: &str,
        host: &str,
        status: Status,
        detail: &str,
        duration: Duration,
    ) {
        let detail = &*crate::secrets::redact(detail);
        {
            let mut recap = self.recap.lock().unwrap_or_else(|e| e.into_inner());
            let r = recap.entry(host.to_string()).or_default();
            match status {
                Status::Ok => r.ok += 1,
                Status::Changed => r.changed += 1,
                Status::Failed => r.failed += 1,
                Status::Skipped => r.skipped += 1,
                Status::Unreachable => r.unreachable += 1,
            }
            r.time += duration;
        }
        self.cases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Case {
                play: play.to_string(),
                step: step.to_string(),
                host: host.to_string(),
                status,
                message: detail.to_string(),
                duration,
            });
        if self.json {
            self.emit(json!({ "event": "step_result", "play": play, "step": step, "host": host, "status": status, "detail": detail, "duration_ms": duration.as_millis() as u64 }));
            return;
        }
        let line = format!(
            "{:<12} {:<11} {step} ({:.2}s){}",
            host,
            status.word(),
            duration.as_secs_f64(),
            if detail.is_empty() {
                String::new()
            } else {
                format!(" — {detail}")
            }
        );
        match &self.progress {
            Some(p) => {
                p.overall.inc(1);
                if status != Status::Ok && status != Status::Skipped || self.verbose {
                    let _ = p.multi.println(line);
                }
                if let Some(b) = p.hosts.lock().unwrap_or_else(|e| e.into_inner()).get(host) {
                    b.set_message(format!("{step}: {}", status.word()));
                }
            }
            None => eprintln!("{line}"),
        }
    }

    /// Clear the progress display and print the recap; write the JUnit file if asked.
    pub fn finish(&self, status: &str) -> std::io::Result<()> {
        self.finish_run(status, None)
    }

    /// The recap of a run, with its maintenance window's breakdown if the page was on.
    pub fn finish_run(
        &self,
        status: &str,
        window: Option<&super::window::Window>,
    ) -> std::io::Result<()> {
        if let Some(p) = &self.progress {
            for b in p.hosts.lock().unwrap_or_else(|e| e.into_inner()).values() {
                b.finish_and_clear();
            }
            p.overall.finish_and_clear();
        }
        let recap = self.recap.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let order = self
            .host_order
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if self.json {
            let hosts: BTreeMap<_, _> = recap
                .iter()
                .map(|(h, r)| (h.clone(), json!({ "ok": r.ok, "changed": r.changed, "failed": r.failed, "skipped": r.skipped, "unreachable": r.unreachable, "time_ms": r.time.as_millis() as u64 })))
                .collect();
            let mut recap = json!({ "event": "recap", "status": status, "hosts": hosts, "elapsed_ms": self.started.elapsed().as_millis() as u64 });
            if let Some(w) = window {
                recap["maintenance_window"] = w.to_json();
            }
            self.emit(recap);
        } else {
            eprintln!(
                "\nRECAP ({status}, {:.1}s)",
                self.started.elapsed().as_secs_f64()
            );
            for h in order.iter().filter(|h| recap.contains_key(*h)) {
                let r = &recap[h];
                eprintln!(
                    "  {h:<12} ok={:<3} changed={:<3} failed={:<3} skipped={:<3} unreachable={:<3} time={:.1}s",
                    r.ok,
                    r.changed,
                    r.failed,
                    r.skipped,
                    r.unreachable,
                    r.time.as_secs_f64()
                );
            }
            if let Some(w) = window {
                eprintln!("{}", w.describe());
            }
        }
        if let Some(path) = &self.junit {
            crate::output_file::write(
                path,
                crate::secrets::redact(&self.junit_xml()).as_bytes(),
                0o644,
            )?;
        }
        Ok(())
    }

    pub fn recap(&self) -> BTreeMap<String, Recap> {
        self.recap.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn junit_xml(&self) -> String {
        let cases = self.cases.lock().unwrap_or_else(|e| e.into_inner());
        let mut by_play: BTreeMap<&str, Vec<&Case>> = BTreeMap::new();
        for c in cases.iter() {
            by_play.entry(c.play.as_str()).or_default().push(c);
        }
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let mut x = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"cutover\">\n",
        );
        for (play, cs) in by_play {
            let failures = cs
                .iter()
                .filter(|c| matches!(c.status, Status::Failed | Status::Unreachable))
                .count();
            let skipped = cs.iter().filter(|c| c.status == Status::Skipped).count();
            x.push_str(&format!("  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\">\n", esc(play), cs.len()));
            for c in cs {
                x.push_str(&format!(
                    "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                    esc(&c.host),
                    esc(&c.step),
                    c.duration.as_secs_f64()
                ));
                match c.status {
                    Status::Failed | Status::Unreachable => x.push_str(&format!(
                        ">\n      <failure message=\"{}\"/>\n    </testcase>\n",
                        esc(&c.message)
                    )),
                    Status::Skipped => x.push_str(">\n      <skipped/>\n    </testcase>\n"),
                    _ => x.push_str("/>\n"),
                }
            }
            x.push_str("  </testsuite>\n");
        }
        x.push_str("</testsuites>\n");
        x
    }
}

fn terminal_rows() -> Option<usize> {
    // SAFETY: TIOCGWINSZ fills a winsize struct we own.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_row > 0)
            .then_some(ws.ws_row as usize)
    }
}
