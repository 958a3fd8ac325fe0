//! Does the predicted window fit what is left of the agreed one? Decided before the
//! maintenance page goes on: when a run starts (nothing touched yet) and again just before the
//! page step (staging took time).

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde_json::{json, Value as J};

use super::human;
use super::prediction::Prediction;
use crate::inventory::window::AgreedWindow;

/// The agreed window and what a production run is predicted to need of it.
#[derive(Clone, Debug)]
pub struct Agreed {
    pub window: AgreedWindow,
    /// None: no rehearsal on record; the window alone is checked.
    pub prediction: Option<Prediction>,
}

/// Where `now` stands against the agreed window and the prediction.
#[derive(Clone, Debug, PartialEq)]
pub enum Fit {
    /// Inside the window, with room for the prediction (or no prediction to compare).
    Fits {
        left: Duration,
    },
    TooShort {
        left: Duration,
        needed: Duration,
    },
    NotStarted {
        starts_in: Duration,
    },
    Over {
        ended_ago: Duration,
    },
}

impl Fit {
    pub fn fits(&self) -> bool {
        matches!(self, Fit::Fits { .. })
    }
}

/// The decision at `now`.
pub fn decide(a: &Agreed, now: SystemTime) -> Fit {
    let now: DateTime<Utc> = now.into();
    let until = |t: DateTime<Utc>, from: DateTime<Utc>| (t - from).to_std().unwrap_or_default();
    let (start, end) = (a.window.start.to_utc(), a.window.end.to_utc());
    if now < start {
        return Fit::NotStarted {
            starts_in: until(start, now),
        };
    }
    if now >= end {
        return Fit::Over {
            ended_ago: until(now, end),
        };
    }
    let left = until(end, now);
    match &a.prediction {
        Some(p) if p.total > left => Fit::TooShort {
            left,
            needed: p.total,
        },
        _ => Fit::Fits { left },
    }
}

/// The decision now, on the controller's clock.
pub fn decide_now(a: &Agreed) -> Fit {
    decide(a, SystemTime::now())
}

impl Agreed {
    /// `the maintenance window 2026-12-08T01:00:00+01:00 → 05:00…`.
    fn window_text(&self) -> String {
        format!(
            "the maintenance window {} → {}",
            self.window.start.to_rfc3339(),
            self.window.end.to_rfc3339()
        )
    }

    fn prediction_text(&self) -> String {
        match &self.prediction {
            Some(p) => format!("the predicted window is {}", p.describe()),
            None => "no rehearsal on record: the window alone is checked".to_string(),
        }
    }

    /// One line saying how the run stands, for the plan and the run's start.
    pub fn describe(&self, fit: &Fit) -> String {
        let verdict = match fit {
            Fit::Fits { left } => format!("{} left: fits", human(*left)),
            Fit::TooShort { left, needed } => format!(
                "{} left, {} needed: does NOT fit",
                human(*left),
                human(*needed)
            ),
            Fit::NotStarted { starts_in } => {
                format!("has not started (starts in {})", human(*starts_in))
            }
            Fit::Over { ended_ago } => format!("is over (ended {} ago)", human(*ended_ago)),
        };
        format!(
            "{} {verdict}; {}",
            self.window_text(),
            self.prediction_text()
        )
    }

    /// Why a run refuses to put the page on (None: it may).
    pub fn refusal(&self, fit: &Fit) -> Option<String> {
        let why = match fit {
            Fit::Fits { .. } => return None,
            Fit::TooShort { left, .. } => format!(
                "{} has {} left, shorter than the predicted window",
                self.window_text(),
                human(*left)
            ),
            Fit::NotStarted { starts_in } => format!(
                "{} has not started (starts in {})",
                self.window_text(),
                human(*starts_in)
            ),
            Fit::Over { ended_ago } => format!(
                "{} is over (ended {} ago)",
                self.window_text(),
                human(*ended_ago)
            ),
        };
        Some(format!(
            "refusing to turn the maintenance page on: {why}; {}",
            self.prediction_text()
        ))
    }

    /// What a plan shows: the record of the decision now, with its line (`text`).
    pub fn plan_json(&self) -> J {
        let fit = decide_now(self);
        let mut j = self.to_json(&fit);
        j["text"] = json!(self.describe(&fit));
        j
    }

    /// The plan's (and the journal's) record of the decision.
    pub fn to_json(&self, fit: &Fit) -> J {
        let (verdict, left) = match fit {
            Fit::Fits { left } => ("fits", Some(left)),
            Fit::TooShort { left, .. } => ("too_short", Some(left)),
            Fit::NotStarted { .. } => ("not_started", None),
            Fit::Over { .. } => ("over", None),
        };
        json!({
            "window": self.window.to_json(),
            "prediction": self.prediction.as_ref().map(Prediction::to_json),
            "fit": verdict,
            "left_s": left.map(|l| l.as_secs()),
        })
    }
}

/// The prediction, set as `window_prediction` for the steps (an `announce` may tell it), and
/// the agreed window with it when this playbook puts the maintenance page on. Called by the
/// run and the plan on the inputs they loaded, before any step is rendered.
pub fn agree(
    inv: &mut crate::inventory::Inventory,
    playbook: &crate::playbook::Playbook,
) -> Option<Agreed> {
    let paged = page_step(playbook).is_some();
    if !paged && inv.maintenance_window.is_none() {
        return None;
    }
    let prediction = super::prediction::predict(inv);
    if let Some(p) = &prediction {
        inv.controller_vars.insert(
            crate::context_names::WINDOW_PREDICTION.to_string(),
            p.to_json(),
        );
    }
    let window = inv.maintenance_window.clone().filter(|_| paged)?;
    Some(Agreed { window, prediction })
}

/// Does a `maintenance` step (its arguments as written or rendered) turn the page on? A state
/// written as a template counts as on: what it renders to is known only when the step runs.
pub fn turns_page_on(module: &str, args: &serde_json::Map<String, J>) -> bool {
    module == "maintenance"
        && !matches!(
            args.get("state"),
            Some(J::String(s)) if matches!(s.as_str(), "off" | "absent" | "false")
        )
        && args.get("state") != Some(&J::Bool(false))
}

/// The playbook's first step (or handler) that turns the maintenance page on, if any: the runs
/// the agreed window applies to.
pub fn page_step(pb: &crate::playbook::Playbook) -> Option<&crate::playbook::Step> {
    pb.plays
        .iter()
        .flat_map(|p| p.steps.iter().chain(&p.handlers))
        .find(|s| turns_page_on(&s.action.module, &s.action.args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Pos;

    fn agreed(start: &str, end: &str, needed_s: Option<u64>) -> Agreed {
        let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap();
        Agreed {
            window: AgreedWindow {
                start: t(start),
                end: t(end),
                pos: Pos::cli("test"),
            },
            prediction: needed_s.map(|s| Prediction {
                run: "R1".into(),
                measured: Duration::from_secs(s),
                scaled: Duration::from_secs(s),
                app_nodes: 1,
                margin_percent: 0.0,
                total: Duration::from_secs(s),
            }),
        }
    }

    fn at(s: &str) -> SystemTime {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().into()
    }

    #[test]
    fn decisions_at_every_point_of_the_window() {
        let a = agreed(
            "2026-12-08T01:00:00+01:00",
            "2026-12-08T02:00:00+01:00",
            Some(600),
        );
        let mins = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(
            decide(&a, at("2026-12-07T23:30:00Z")),
            Fit::NotStarted {
                starts_in: mins(30)
            }
        );
        assert_eq!(
            decide(&a, at("2026-12-08T00:00:00Z")),
            Fit::Fits { left: mins(60) }
        );
        assert_eq!(
            decide(&a, at("2026-12-08T00:50:00Z")),
            Fit::Fits { left: mins(10) }
        );
        assert_eq!(
            decide(&a, at("2026-12-08T00:50:01Z")),
            Fit::TooShort {
                left: Duration::from_secs(599),
                needed: mins(10)
            }
        );
        assert_eq!(
            decide(&a, at("2026-12-08T01:00:00Z")),
            Fit::Over { ended_ago: mins(0) }
        );
        assert_eq!(
            decide(&a, at("2026-12-08T03:00:00Z")),
            Fit::Over {
                ended_ago: mins(120)
            }
        );
    }

    #[test]
    fn without_a_rehearsal_the_window_alone_decides() {
        let a = agreed("2026-12-08T00:00:00Z", "2026-12-08T00:00:05Z", None);
        assert!(decide(&a, at("2026-12-08T00:00:04Z")).fits());
        assert!(!decide(&a, at("2026-12-08T00:00:06Z")).fits());
        let fit = decide(&a, at("2026-12-07T00:00:00Z"));
        let why = a.refusal(&fit).unwrap();
        assert!(why.contains("has not started (starts in 24h00m)"), "{why}");
        assert!(
            why.ends_with("no rehearsal on record: the window alone is checked"),
            "{why}"
        );
    }

    #[test]
    fn a_refusal_names_the_window_the_prediction_and_the_margin() {
        let mut a = agreed("2026-12-08T00:00:00Z", "2026-12-08T01:00:00Z", Some(3000));
        if let Some(p) = &mut a.prediction {
            p.margin_percent = 20.0;
            p.total = Duration::from_secs(3600);
        }
        let fit = decide(&a, at("2026-12-08T00:10:00Z"));
        assert_eq!(a.refusal(&fit).unwrap(), "refusing to turn the maintenance page on: the maintenance window 2026-12-08T00:00:00+00:00 → 2026-12-08T01:00:00+00:00 has 50m00s left, shorter than the predicted window; the predicted window is 1h00m (rehearsal R1 measured 50m00s, scaled to 1 app node 50m00s, + 20 % margin)");
        assert_eq!(a.to_json(&fit)["fit"], "too_short");
        assert_eq!(a.to_json(&fit)["left_s"], 3000);
        assert_eq!(a.refusal(&decide(&a, at("2026-12-08T00:00:00Z"))), None);
    }

    #[test]
    fn page_steps_are_found_by_their_state() {
        let args = |v: J| v.as_object().unwrap().clone();
        assert!(turns_page_on(
            "maintenance",
            &args(json!({ "state": "on" }))
        ));
        assert!(turns_page_on(
            "maintenance",
            &args(json!({ "state": "{{ s }}" }))
        ));
        assert!(turns_page_on(
            "maintenance",
            &args(json!({ "state": true }))
        ));
        assert!(!turns_page_on(
            "maintenance",
            &args(json!({ "state": "off" }))
        ));
        assert!(!turns_page_on(
            "maintenance",
            &args(json!({ "state": false }))
        ));
        assert!(!turns_page_on("command", &args(json!({ "state": "on" }))));
    }
}
