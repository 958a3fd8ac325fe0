//! A saved plan against the hosts and inputs now: which hosts it covers, and what differs.

use std::collections::{BTreeMap, BTreeSet};

use super::{saved, Entry, Outcome, Plan};
use crate::inventory::{pattern, Inventory};
use crate::playbook::Playbook;

/// The hosts a plan of `pb` covers, as `plan` lists them: each play's hosts within `limit`,
/// in the order they first appear. Known without contacting any host.
pub fn hosts_covered(pb: &Playbook, inv: &Inventory, limit: Option<&str>) -> Vec<String> {
    let limited: Option<BTreeSet<&str>> = limit.map(|p| {
        pattern::select(inv, p)
            .unwrap_or_default()
            .into_iter()
            .collect()
    });
    let mut out: Vec<String> = Vec::new();
    for play in &pb.plays {
        for h in pattern::select(inv, &play.hosts).unwrap_or_default() {
            if limited.as_ref().is_none_or(|l| l.contains(h)) && !out.iter().any(|o| o == h) {
                out.push(h.to_string());
            }
        }
    }
    out
}

/// Why a saved plan may no longer be applied.
pub fn drift(saved: &Plan, now: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in &saved.inputs {
        match now.inputs.get(k) {
            Some(n) if n == v => {}
            Some(_) => out.push(format!("input changed: {k}")),
            None => out.push(format!("input gone: {k}")),
        }
    }
    for k in now.inputs.keys().filter(|k| !saved.inputs.contains_key(*k)) {
        out.push(format!("new input: {k}"));
    }
    // The hosts a reviewer read at the top of the plan are the hosts the run covers.
    if saved.hosts != now.hosts {
        out.push(format!(
            "the plan covers {}; this run would cover {}",
            host_list(&saved.hosts),
            host_list(&now.hosts)
        ));
    }
    let key = |e: &Entry| (e.play, e.step, e.handler, e.item, e.host.clone());
    let before: BTreeMap<_, &Entry> = saved.entries.iter().map(|e| (key(e), e)).collect();
    let after: BTreeMap<_, &Entry> = now.entries.iter().map(|e| (key(e), e)).collect();
    for (k, e) in &before {
        match after.get(k) {
            Some(n) if n.fingerprint == e.fingerprint => {}
            Some(n) => {
                let mut what = format!(
                    "{}: step \"{}\" was planned as {} and would now be {}",
                    e.host,
                    e.name,
                    describe(e),
                    describe(n)
                );
                if let Some(d) = saved::content_drift(e, n) {
                    what.push_str(":\n");
                    what.extend(d.lines().map(|l| format!("      {l}\n")));
                }
                out.push(what.trim_end().to_string());
            }
            None => out.push(format!(
                "{}: step \"{}\" is no longer part of the plan",
                e.host, e.name
            )),
        }
    }
    for (k, n) in &after {
        if !before.contains_key(k) {
            out.push(format!(
                "{}: step \"{}\" is new in the plan",
                n.host, n.name
            ));
        }
    }
    let hosts_then: BTreeSet<&String> = saved.unreachable.iter().map(|u| &u.host).collect();
    for u in &now.unreachable {
        if !hosts_then.contains(&u.host) {
            out.push(format!("{} is now unreachable: {}", u.host, u.error));
        }
    }
    out
}

fn host_list(hosts: &[String]) -> String {
    if hosts.is_empty() {
        "no host".into()
    } else {
        format!("hosts {}", hosts.join(", "))
    }
}

fn describe(e: &Entry) -> String {
    match e.outcome {
        Outcome::NoChange => "no change".into(),
        Outcome::Change => format!("change ({})", e.summary),
        Outcome::Unknown => format!("unknown ({})", e.reason.as_deref().unwrap_or("")),
        Outcome::Skipped => "skipped".into(),
    }
}
