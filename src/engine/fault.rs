//! Fault injection for the recovery tests: `CUTOVER_TEST_FAULT` makes the controller signal
//! itself at an exact point of a run, so a test can kill it (SIGKILL) or interrupt it (SIGINT,
//! as Ctrl-C does) at every step boundary, or in the middle of one step, deterministically.
//! The signal is a real one: what the journal and the hosts hold afterwards is what a kill from
//! outside at that instant leaves. Unset (always, outside tests), every point is a no-op.
//!
//! - `kill-after-result=N`, `int-after-result=N`: once this process has journaled its N-th
//!   step result (counting every host's result, handlers included);
//! - `kill-after-step=K:STEP`: once this process has journaled the K-th result of STEP;
//! - `pause-after-step=K:SECS:STEP`: the run waits SECS seconds after the K-th result of STEP
//!   (a test changes the cluster meanwhile, at a known point of the run);
//! - `kill-after-applying=STEP`: once the intent of STEP is journaled, before its change starts;
//! - `kill-after-apply=STEP`: once STEP's change is made, before its result is journaled;
//! - `fail-after-step=STEP`: STEP's change is made (its way back recorded), then the step
//!   fails on every host as if its check had failed: the run unwinds as on any failure. A
//!   test shows with it that each step of a procedure can be undone from the point after it.

use std::sync::OnceLock;

#[derive(Debug, PartialEq)]
enum Fault {
    Results(u32, i32),
    /// After the K-th result of the step named so.
    StepResults(u32, String),
    /// Pause this long after the K-th result of the step named so.
    Pause(u32, u64, String),
    Applying(String),
    Applied(String),
    /// The step named so fails after its change.
    Fail(String),
}

fn parse(spec: &str) -> Option<Fault> {
    let (what, arg) = spec.split_once('=')?;
    Some(match what {
        "kill-after-result" => Fault::Results(arg.trim().parse().ok()?, libc::SIGKILL),
        "int-after-result" => Fault::Results(arg.trim().parse().ok()?, libc::SIGINT),
        "kill-after-step" => {
            let (k, name) = arg.split_once(':')?;
            Fault::StepResults(k.trim().parse().ok()?, name.to_string())
        }
        "pause-after-step" => {
            let (k, rest) = arg.split_once(':')?;
            let (secs, name) = rest.split_once(':')?;
            Fault::Pause(
                k.trim().parse().ok()?,
                secs.trim().parse().ok()?,
                name.to_string(),
            )
        }
        "kill-after-applying" => Fault::Applying(arg.to_string()),
        "kill-after-apply" => Fault::Applied(arg.to_string()),
        "fail-after-step" => Fault::Fail(arg.to_string()),
        _ => return None,
    })
}

fn fault() -> Option<&'static Fault> {
    static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
    FAULT
        .get_or_init(|| {
            std::env::var("CUTOVER_TEST_FAULT")
                .ok()
                .and_then(|s| parse(&s))
        })
        .as_ref()
}

/// Signal this process — and, when it leads its own process group (as a shell's foreground job
/// does), the whole group, as a terminal's Ctrl-C would.
fn signal(sig: i32) {
    // SAFETY: getpid/getpgrp/kill(2) with a valid signal number have no memory effects.
    unsafe {
        let me = libc::getpid();
        let target = if libc::getpgrp() == me { -me } else { me };
        libc::kill(target, sig);
    }
}

/// What the run does after a fault point.
#[derive(Debug, PartialEq)]
pub enum Then {
    Go,
    /// Pause this long (`pause-after-step`).
    Pause(std::time::Duration),
    /// A SIGINT was sent: wait until the engine has seen it, so it stops at this very
    /// boundary (the signal reaches the engine asynchronously).
    AwaitInterrupt,
}

/// After this process journaled its `n`-th step result, a result of `step`.
pub fn after_result(n: u32, step: &str) -> Then {
    static SEEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nth_of_step = || SEEN.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    match fault() {
        Some(Fault::Results(at, sig)) if *at == n => {
            signal(*sig);
            return Then::AwaitInterrupt;
        }
        Some(Fault::StepResults(k, name)) if name == step && nth_of_step() == *k => {
            signal(libc::SIGKILL)
        }
        Some(Fault::Pause(k, secs, name)) if name == step && nth_of_step() == *k => {
            return Then::Pause(std::time::Duration::from_secs(*secs));
        }
        _ => {}
    }
    Then::Go
}

/// After a step's intent (`step_applying`) is journaled, before its change.
pub fn after_applying(step: &str) {
    if matches!(fault(), Some(Fault::Applying(s)) if s == step) {
        signal(libc::SIGKILL);
    }
}

/// After a step's change was made, before its result is journaled.
pub fn after_apply(step: &str) {
    if matches!(fault(), Some(Fault::Applied(s)) if s == step) {
        signal(libc::SIGKILL);
    }
}

/// After a step's change was made and judged: the failure injected into it, if any.
pub fn injected_failure(step: &str) -> Option<String> {
    matches!(fault(), Some(Fault::Fail(s)) if s == step)
        .then(|| "failure injected after the step (CUTOVER_TEST_FAULT)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            parse("kill-after-result=3"),
            Some(Fault::Results(3, libc::SIGKILL))
        );
        assert_eq!(
            parse("int-after-result=1"),
            Some(Fault::Results(1, libc::SIGINT))
        );
        assert_eq!(
            parse("kill-after-apply=Snapshot every data volume"),
            Some(Fault::Applied("Snapshot every data volume".into()))
        );
        assert_eq!(
            parse("kill-after-step=2:Start: the node"),
            Some(Fault::StepResults(2, "Start: the node".into()))
        );
        assert_eq!(
            parse("pause-after-step=1:10:No wiki JVM left"),
            Some(Fault::Pause(1, 10, "No wiki JVM left".into()))
        );
        assert_eq!(
            parse("fail-after-step=Stage: the release"),
            Some(Fault::Fail("Stage: the release".into()))
        );
        assert_eq!(parse("kill-after-result=x"), None);
        assert_eq!(parse("explode"), None);
    }
}
