//! `lb_member`: a mod_jk load balancer member's activation (`active`, `disabled` = drain:
//! only its existing sticky sessions, `stopped` = no requests at all), changed at run time
//! through the jk status worker (`cmd=update&mime=prop&w=LB&sw=MEMBER&vwa=a|d|s`) **and**
//! persisted as `worker.MEMBER.activation=` in workers.properties, so it survives an Apache
//! restart (status-worker changes live in shared memory only:
//! https://tomcat.apache.org/connectors-doc/reference/status.html).
//!
//! Runs on the load balancer host (curl there: the status worker only answers localhost and
//! the admin networks). The probe reads `cmd=show&mime=prop&w=LB` and the one activation line
//! of the file (the file holds the AJP secret: it is never read whole). The file is rewritten
//! atomically (copy with owner and mode, edit, rename); the previous one is kept as
//! `FILE.cutover-RUN~` for the undo, which puts back the previous file and activation.
//!
//! A member that should be `active` but that mod_jk holds in its error state (`ERR`: a request
//! failed on it, e.g. while its Tomcat was down) gets no requests until the lb's
//! `recover_time` (60 s by default) has passed. lb_member recovers it at once with the status
//! worker's `cmd=recover` (the state becomes `ERR/REC`: it gets requests again, and `OK` after
//! the first one succeeds); the probe reports that as a change. `ERR/REC` and `ERR/FRC` already
//! get requests: nothing to do. Recovering needs no undo.

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value as J};

use super::contract::Module;
use super::spec::{arg, req, ArgSpec, ArgType as T, ModuleSpec, Reversibility};
use super::{args, Decision, ModCtx, Outcome, Probe, UndoAction};
use crate::overlay::Effect;
use crate::shell::quote;

pub const DEFAULT_STATUS_URL: &str = "http://localhost/jkstatus";
pub const DEFAULT_WORKERS_FILE: &str = "/etc/libapache2-mod-jk/workers.properties";

/// The arguments of an `lb_member` step (its `SPEC.args`, and the undo's `restore_from`).
#[derive(Deserialize)]
pub(crate) struct LbArgs {
    #[serde(deserialize_with = "args::required_text")]
    lb: String,
    #[serde(deserialize_with = "args::required_text")]
    member: String,
    #[serde(deserialize_with = "args::required_text")]
    activation: String,
    #[serde(default, deserialize_with = "args::text")]
    status_url: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    workers_file: Option<String>,
    /// Only in the way back: put this backup of the workers file back instead of editing it.
    #[serde(default, deserialize_with = "args::text")]
    restore_from: Option<String>,
    /// The step's map as it was given: the way back carries its `lb`, `member`, `status_url`
    /// and `workers_file` as they were.
    #[serde(skip)]
    written: Map<String, J>,
}

impl LbArgs {
    /// The balancer, the member (checked as mod_jk names) and the activation wanted.
    fn target(&self) -> Result<(&str, &str, &'static str)> {
        check_name("lb", &self.lb)?;
        check_name("member", &self.member)?;
        let want = normalize(&self.activation)
            .ok_or_else(|| anyhow!("activation must be active, disabled or stopped"))?;
        Ok((&self.lb, &self.member, want))
    }

    fn status_url(&self) -> &str {
        self.status_url.as_deref().unwrap_or(DEFAULT_STATUS_URL)
    }

    fn workers_file(&self) -> &str {
        self.workers_file.as_deref().unwrap_or(DEFAULT_WORKERS_FILE)
    }
}

/// `active|disabled|stopped` (any case, or the first letter, or ACT/DIS/STP) → the word.
pub fn normalize(a: &str) -> Option<&'static str> {
    match a.trim().to_ascii_lowercase().chars().next()? {
        'a' | '0' => Some("active"),
        'd' | '1' => Some("disabled"),
        's' | '2' => Some("stopped"),
        _ => None,
    }
}

fn vwa(a: &str) -> &'static str {
    match a {
        "disabled" => "d",
        "stopped" => "s",
        _ => "a",
    }
}

fn file_word(a: &str) -> &'static str {
    match a {
        "disabled" => "Disabled",
        "stopped" => "Stopped",
        _ => "Active",
    }
}

fn check_name(what: &str, n: &str) -> Result<()> {
    if n.is_empty()
        || !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!("lb_member: {what} `{n}` is not a mod_jk worker name (letters, digits, _ and -)");
    }
    Ok(())
}

/// What the status worker says of the lb and one member (`mime=prop`).
#[derive(Debug, PartialEq)]
pub struct JkShow {
    pub members: Vec<String>,
    /// The member's activation as a word (`active`…), if listed.
    pub activation: Option<&'static str>,
    pub state: Option<String>,
    pub result_ok: bool,
    pub message: String,
}

pub fn parse_show(text: &str, lb: &str, member: &str) -> JkShow {
    let mut s = JkShow {
        members: Vec::new(),
        activation: None,
        state: None,
        result_ok: false,
        message: String::new(),
    };
    let bw = format!("worker.{lb}.balance_workers=");
    let act = format!("worker.{member}.activation=");
    let st = format!("worker.{member}.state=");
    for l in text.lines() {
        let l = l.trim();
        if let Some(v) = l.strip_prefix(&bw) {
            s.members.extend(
                v.split(',')
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty()),
            );
        } else if let Some(v) = l.strip_prefix(&act) {
            s.activation = normalize(v);
        } else if let Some(v) = l.strip_prefix(&st) {
            s.state = Some(v.to_string());
        } else if let Some(v) = l.strip_prefix("worker.result.type=") {
            s.result_ok = v == "OK";
        } else if let Some(v) = l.strip_prefix("worker.result.message=") {
            s.message = v.to_string();
        }
    }
    s
}

/// The activation `worker.MEMBER.activation=` gives in a workers.properties text (last one
/// wins, as in mod_jk); None when the line is absent (mod_jk's default: active).
pub fn file_activation(text: &str, member: &str) -> Option<&'static str> {
    let key = format!("worker.{member}.activation");
    text.lines()
        .rev()
        .filter_map(|l| {
            let l = l.trim();
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| normalize(v))?
        })
        .next()
}

fn url_of(args: &LbArgs, lb: &str, extra: &str) -> String {
    let base = args.status_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}cmd={extra}&mime=prop&w={lb}")
}

const MARK: &str = "@@cutover-workers-file@@";

/// What earlier steps of a plan leave of a member: (runtime activation, workers file present,
/// activation in the file), from what the host has (`seen`) where no earlier step changes it.
fn planned(
    ov: &crate::overlay::HostOverlay,
    lb: &str,
    member: &str,
    file: &str,
    seen: (Option<&'static str>, bool, Option<&'static str>),
) -> Result<(Option<&'static str>, bool, Option<&'static str>)> {
    use crate::overlay::{not_derivable, PathState, Planned, Seen, Val};
    let (runtime, mut file_present, mut file_act) = seen;
    if let Some(Planned { value, by }) = ov.lb_member(lb, member) {
        let Some(act) = value.as_deref().and_then(normalize) else {
            return Err(not_derivable(format!(
                "{lb}/{member} is changed by {by}; its activation after that is known only when it runs"
            )));
        };
        return Ok((Some(act), true, Some(act)));
    }
    match ov.path_besides_lb_edits(file) {
        Seen::Host => {}
        Seen::Planned(Planned {
            value: PathState::Absent,
            ..
        }) => file_present = false,
        Seen::Planned(Planned {
            value:
                PathState::File {
                    content: Val::Set(text),
                    ..
                },
            ..
        }) => {
            file_present = true;
            file_act = file_activation(&String::from_utf8_lossy(&text), member);
        }
        Seen::NotDerivable(why) => return Err(not_derivable(why)),
        Seen::Planned(Planned { by, .. }) => {
            return Err(not_derivable(format!(
                "{file} is written by {by}; its content is known only when it runs"
            )))
        }
    }
    Ok((runtime, file_present, file_act))
}

pub(crate) async fn probe(args: &LbArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
    let (lb, member, want) = args.target()?;
    let file = args.workers_file();
    let script = format!(
        r#"curl -sS --max-time 10 -- {url} || echo "curl-failed $?"
echo {MARK}
if [ -f {f} ]; then echo present; grep -E '^[[:space:]]*worker\.{m}\.activation[[:space:]]*=' -- {f} || true; else echo absent; fi"#,
        url = quote(&url_of(args, lb, "show")),
        f = quote(file),
        m = member,
    );
    let out = ctx.run(&script, None).await?;
    let text = out.stdout_text();
    let (show_text, file_text) = text.split_once(MARK).unwrap_or((&text, ""));
    let mut show = parse_show(show_text, lb, member);
    let mut fl = file_text.lines().filter(|l| !l.is_empty());
    let mut file_present = fl.next() == Some("present");
    let mut file_act = file_activation(&fl.collect::<Vec<_>>().join("\n"), member);
    // In a plan: what earlier steps leave (this member set by an earlier step; the workers
    // file written by one).
    if let Some(ov) = ctx.overlay() {
        let seen = (show.activation, file_present, file_act);
        (show.activation, file_present, file_act) = planned(ov, lb, member, file, seen)?;
    }
    let saw = json!({
        "runtime": show.activation,
        "state": show.state,
        "file": file_act,
        "file_present": file_present,
        "members": show.members,
    });
    if !show.result_ok || show_text.contains("curl-failed") {
        return Ok(Probe::unknown(
            format!(
                "the jk status worker at {} does not answer on {} (Apache not installed or not running yet?): {}",
                args.status_url(),
                ctx.host.name,
                show_text.lines().last().unwrap_or("").trim()
            ),
            saw,
        ));
    }
    if !show.members.iter().any(|m| m == member) {
        bail!(
            "{member} is not a member of the load balancer {lb} on {} (members: {})",
            ctx.host.name,
            show.members.join(", ")
        );
    }
    if !file_present {
        bail!("{file} does not exist on {}", ctx.host.name);
    }
    let runtime = show.activation.unwrap_or("active");
    let persisted = file_act.unwrap_or("active");
    let recover = needs_recover(want, show.state.as_deref());
    if runtime == want && persisted == want && !recover {
        return Ok(Probe::no_change(saw));
    }
    let mut parts = Vec::new();
    if runtime != want {
        parts.push(format!("runtime {runtime} → {want}"));
    }
    if persisted != want || file_act.is_none() {
        parts.push(format!(
            "{file}: activation {} → {}",
            file_act.map_or("(unset: active)".to_string(), |a| file_word(a).to_string()),
            file_word(want)
        ));
    }
    if recover {
        parts.push(format!(
            "state {} → recover now (status worker cmd=recover), not after the lb's recover_time",
            show.state.as_deref().unwrap_or("ERR")
        ));
    }
    let head = if runtime == want {
        format!("{lb}/{member}: {want}, in error state")
    } else {
        format!("{lb}/{member}: {runtime} → {want}")
    };
    Ok(
        Probe::change(format!("{head} ({})", parts.join(", ")), None, saw).with_after(vec![
            crate::overlay::Effect::LbMember {
                lb: lb.to_string(),
                member: member.to_string(),
                activation: Some(want.to_string()),
                workers_file: file.to_string(),
            },
        ]),
    )
}

/// An active member that mod_jk holds in its error state (`ERR`) is recovered. `ERR/REC`
/// (marked for recovery) and `ERR/FRC` (forced recovery) already get requests.
pub fn needs_recover(want: &str, state: Option<&str>) -> bool {
    want == "active" && state.map(str::trim) == Some("ERR")
}

/// The way back, from the probe (known before the change starts): the previous runtime
/// activation, and the file as it was before the run's first change of it. Safe when the change
/// was cut off: the backup is put back only if it was made, and the activation set is the one
/// the member had.
pub(crate) fn undo_of(args: &LbArgs, probe: &Probe, run_id: &str) -> Option<UndoAction> {
    if probe.decision == Decision::NoChange {
        return None;
    }
    let (lb, member) = (&args.lb, &args.member);
    let file = args.workers_file();
    let was = probe.state["runtime"].as_str().unwrap_or("active");
    let mut a = Map::new();
    for k in ["lb", "member", "status_url", "workers_file"] {
        if let Some(v) = args.written.get(k) {
            a.insert(k.into(), v.clone());
        }
    }
    a.insert("activation".into(), json!(was));
    if args.restore_from.is_none() {
        a.insert(
            "restore_from".into(),
            json!(format!("{file}.cutover-{run_id}~")),
        );
    }
    Some(UndoAction::Rerun {
        module: LbMember::SPEC.name.into(),
        args: a,
        what: format!("{lb}/{member} back to {was} (runtime and {file})"),
    })
}

/// The script part that writes the member's activation into the workers file `$f` (keeping
/// the run's first backup of it), or, for an undo (`restore_from`), puts the backup back.
fn file_script(args: &LbArgs, backup: &str, member: &str, want: &str) -> String {
    // Undo: `restore_from` puts the previous file back instead of editing it.
    match args.restore_from.as_deref() {
        Some(b) => format!(
            r#"b={b}
if [ -f "$b" ]; then mv -f -- "$b" "$f"; fi"#,
            b = quote(b)
        ),
        None => format!(
            r#"b={b}
if [ ! -e "$b" ]; then cp -p -- "$f" "$b"; fi
tmp=$(mktemp -- "$f.cutover.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cp -p -- "$f" "$tmp"
if grep -qE "$re" -- "$f"; then
  sed -E "s/$re.*/worker.{m}.activation={w}/" -- "$f" > "$tmp"
else
  {{ cat -- "$f"; [ -z "$(tail -c1 -- "$f")" ] || echo; echo 'worker.{m}.activation={w}'; }} > "$tmp"
fi
mv -f -- "$tmp" "$f"
trap - EXIT"#,
            b = quote(backup),
            m = member,
            w = file_word(want),
        ),
    }
}

pub(crate) async fn apply(args: &LbArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
    if probe.decision == Decision::NoChange {
        return Ok(Outcome::default());
    }
    let (lb, member, want) = args.target()?;
    let file = args.workers_file();
    let was = probe.state["runtime"]
        .as_str()
        .unwrap_or("active")
        .to_string();
    let recover = needs_recover(want, probe.state["state"].as_str());
    // Only the error state to clear: the activation (at run time and in the file) is right.
    let activation_ok = was == want
        && probe.state["file"].as_str().unwrap_or("active") == want
        && args.restore_from.is_none();
    if activation_ok && recover {
        return recover_only(args, lb, member, ctx).await;
    }
    let backup = format!("{file}.cutover-{}~", ctx.run_id);
    let file_step = file_script(args, &backup, member, want);
    let script = format!(
        r#"set -e
f={f}
re='^[[:space:]]*worker\.{m}\.activation[[:space:]]*='
{file_step}
curl -sS --max-time 10 -- {update}
echo {MARK}
{recover_step}
curl -sS --max-time 10 -- {show}"#,
        recover_step = if recover {
            format!(
                "curl -sS --max-time 10 -- {} >/dev/null || true",
                quote(&format!("{}&sw={member}", url_of(args, lb, "recover")))
            )
        } else {
            String::new()
        },
        f = quote(file),
        m = member,
        update = quote(&format!(
            "{}&sw={member}&vwa={}",
            url_of(args, lb, "update"),
            vwa(want)
        )),
        show = quote(&url_of(args, lb, "show")),
    );
    let out = ctx.run(&script, None).await?;
    let text = out.stdout_text();
    if !out.ok() {
        bail!(
            "changing {lb}/{member} on {} failed: {}{}",
            ctx.host.name,
            out.stderr_text().trim(),
            text.trim()
        );
    }
    let (upd, show_text) = text.split_once(MARK).unwrap_or(("", &text));
    let upd = parse_show(upd, lb, member);
    let show = parse_show(show_text, lb, member);
    let undo = undo_of(args, probe, ctx.run_id);
    let failed = if !upd.result_ok {
        Some(format!(
            "the status worker refused the update of {lb}/{member}: {}",
            upd.message
        ))
    } else if show.activation != Some(want) {
        Some(format!(
            "{lb}/{member} reads back as {} after the update, not {want}",
            show.activation.unwrap_or("unknown")
        ))
    } else {
        None
    };
    let failed = failed.or_else(|| {
        (recover && show.state.as_deref() == Some("ERR"))
            .then(|| format!("{lb}/{member} is still in the error state (ERR) after cmd=recover"))
    });
    let mut result = Map::new();
    result.insert("activation".into(), json!(show.activation));
    result.insert("previous".into(), json!(was));
    result.insert("state".into(), json!(show.state));
    result.insert("recovered".into(), json!(recover));
    Ok(Outcome {
        changed: true,
        result,
        undo,
        failed,
    })
}

/// `cmd=recover` for a member whose activation is already right, then read back. mod_jk may
/// have recovered it on its own in the meantime (its recover_time passed): then the command
/// is refused ("not an error state") and the member is fine all the same.
async fn recover_only(args: &LbArgs, lb: &str, member: &str, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let script = format!(
        r#"curl -sS --max-time 10 -- {recover}
echo {MARK}
curl -sS --max-time 10 -- {show}"#,
        recover = quote(&format!("{}&sw={member}", url_of(args, lb, "recover"))),
        show = quote(&url_of(args, lb, "show")),
    );
    let out = ctx.run(&script, None).await?;
    let text = out.stdout_text();
    if !out.ok() {
        bail!(
            "recovering {lb}/{member} on {} failed: {}{}",
            ctx.host.name,
            out.stderr_text().trim(),
            text.trim()
        );
    }
    let (rec, show_text) = text.split_once(MARK).unwrap_or(("", &text));
    let rec = parse_show(rec, lb, member);
    let show = parse_show(show_text, lb, member);
    let failed = (show.state.as_deref() == Some("ERR")).then(|| {
        format!(
            "{lb}/{member} is still in the error state (ERR) after cmd=recover: {}",
            if rec.result_ok {
                "recovered, then failed again at once (is the node up?)".to_string()
            } else {
                format!("the status worker refused: {}", rec.message)
            }
        )
    });
    let mut result = Map::new();
    result.insert("activation".into(), json!(show.activation));
    result.insert("previous".into(), json!(show.activation));
    result.insert("state".into(), json!(show.state));
    result.insert("recovered".into(), json!(true));
    Ok(Outcome {
        changed: true,
        result,
        undo: None,
        failed,
    })
}

/// What `lb_member` may change: the member's activation, on the balancer and in its file.
fn touches(args: &LbArgs) -> Vec<Effect> {
    vec![Effect::LbMember {
        lb: args.lb.clone(),
        member: args.member.clone(),
        activation: None,
        workers_file: args.workers_file().to_string(),
    }]
}

/// The `lb_member` module (mod_jk balancer members).
pub(crate) struct LbMember;

impl Module for LbMember {
    type Args = LbArgs;

    const UNDO_ONLY: &'static [&'static str] = &["restore_from"];

    const SPEC: ModuleSpec = ModuleSpec {
        name: "lb_member",
        args: &[
            req("lb", T::Str),
            req("member", T::Str),
            ArgSpec {
                name: "activation",
                ty: T::Str,
                required: true,
                choices: &["active", "disabled", "stopped"],
            },
            arg("status_url", T::Str),
            arg("workers_file", T::Path),
        ],
        free_form: None,
        one_of: &[],
        any_of: &[],
        reversibility: Reversibility::Reversible,
    };

    fn parse_args(map: &Map<String, J>) -> Result<LbArgs> {
        let mut a: LbArgs = args::parse(Self::SPEC.name, map)?;
        a.written = map.clone();
        Ok(a)
    }

    async fn probe(args: &LbArgs, ctx: &ModCtx<'_>) -> Result<Probe> {
        probe(args, ctx).await
    }

    async fn apply(args: &LbArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(args, probe, ctx).await
    }

    fn pending_undo(args: &LbArgs, probe: &Probe, ctx: &ModCtx<'_>) -> Option<UndoAction> {
        undo_of(args, probe, ctx.run_id)
    }

    fn touches(args: &LbArgs) -> Vec<Effect> {
        touches(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from the lab's lb (mod_jk 1.2.48), shortened.
    const SHOW: &str = "worker.list=wiki_lb
worker.wiki_lb.type=lb
worker.wiki_lb.sticky_session=True
worker.wiki_lb.member_count=2
worker.wiki_lb.balance_workers=node1
worker.node1.type=ajp13
worker.node1.activation=ACT
worker.node1.route=node1
worker.node1.state=OK
worker.wiki_lb.balance_workers=node2
worker.node2.type=ajp13
worker.node2.activation=DIS
worker.node2.state=OK/IDLE
worker.result.type=OK
worker.result.message=Action finished
";

    #[test]
    fn show_parsed_per_member() {
        let s = parse_show(SHOW, "wiki_lb", "node2");
        assert_eq!(s.members, vec!["node1", "node2"]);
        assert_eq!(s.activation, Some("disabled"));
        assert_eq!(s.state.as_deref(), Some("OK/IDLE"));
        assert!(s.result_ok);
        let s = parse_show(SHOW, "wiki_lb", "node1");
        assert_eq!(s.activation, Some("active"));
        let e = parse_show(
            "worker.result.type=ERROR\nworker.result.message=Worker not found\n",
            "x",
            "y",
        );
        assert!(!e.result_ok && e.message == "Worker not found");
    }

    #[test]
    fn file_activation_lines() {
        let f = "worker.node1.type=ajp13\nworker.node1.activation=Active\n  worker.node2.activation = S\n# worker.node3.activation=Disabled\nworker.node10.activation=D\n";
        assert_eq!(file_activation(f, "node1"), Some("active"));
        assert_eq!(file_activation(f, "node2"), Some("stopped"));
        assert_eq!(file_activation(f, "node3"), None);
        assert_eq!(file_activation(f, "node"), None);
    }

    #[test]
    fn only_an_active_member_in_err_is_recovered() {
        let s = parse_show(
            &SHOW.replace("worker.node1.state=OK", "worker.node1.state=ERR"),
            "wiki_lb",
            "node1",
        );
        assert_eq!(s.state.as_deref(), Some("ERR"));
        assert!(needs_recover("active", s.state.as_deref()));
        assert!(!needs_recover("disabled", s.state.as_deref()));
        assert!(!needs_recover("stopped", Some("ERR")));
        for fine in ["OK", "OK/IDLE", "ERR/REC", "ERR/FRC"] {
            assert!(!needs_recover("active", Some(fine)), "{fine}");
        }
        assert!(!needs_recover("active", None));
    }

    fn parsed(v: J) -> Result<LbArgs> {
        LbMember::parse_args(v.as_object().unwrap())
    }

    /// The way back carries the step's own `lb`, `member`, `status_url`, `workers_file` as
    /// given, the activation the member had and the backup to put back: the journal's JSON is
    /// what it was when the module read the map. Undoing that (it has `restore_from`) adds none.
    #[test]
    fn the_way_back_keeps_the_step_s_values() {
        let a = parsed(json!({
            "lb": "wiki_lb", "member": "node1", "activation": "disabled",
            "status_url": "http://127.0.0.1/jkstatus", "workers_file": "/etc/w.properties"
        }))
        .unwrap();
        assert_eq!(a.target().unwrap(), ("wiki_lb", "node1", "disabled"));
        let probe = Probe::change("x", None, json!({"runtime": "active"}));
        let undo = undo_of(&a, &probe, "R1").unwrap();
        assert_eq!(
            serde_json::to_string(&undo).unwrap(),
            r#"{"undo":"rerun","module":"lb_member","args":{"activation":"active","lb":"wiki_lb","member":"node1","restore_from":"/etc/w.properties.cutover-R1~","status_url":"http://127.0.0.1/jkstatus","workers_file":"/etc/w.properties"},"what":"wiki_lb/node1 back to active (runtime and /etc/w.properties)"}"#
        );
        let UndoAction::Rerun { args: back, .. } = undo else {
            panic!()
        };
        let b = LbMember::parse_args(&back).unwrap();
        assert_eq!(
            b.restore_from.as_deref(),
            Some("/etc/w.properties.cutover-R1~")
        );
        let probe = Probe::change("x", None, json!({"runtime": "disabled"}));
        let UndoAction::Rerun { args: again, .. } = undo_of(&b, &probe, "R2").unwrap() else {
            panic!()
        };
        assert!(!again.contains_key("restore_from"), "{again:?}");
        assert!(undo_of(&a, &Probe::no_change(J::Null), "R1").is_none());
    }

    /// Values a template rendered wrong are refused before anything runs, as before.
    #[test]
    fn bad_rendered_values_are_refused_as_before() {
        let e = |v: J| {
            parsed(v)
                .and_then(|a| a.target().map(|_| ()))
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(
            e(json!({"lb": "wiki_lb", "member": 1, "activation": "active"})).as_deref(),
            Some("argument `member` is missing or not a string")
        );
        assert_eq!(
            e(json!({"lb": "wiki lb", "member": "n1", "activation": "active"})).as_deref(),
            Some("lb_member: lb `wiki lb` is not a mod_jk worker name (letters, digits, _ and -)")
        );
        assert_eq!(
            e(json!({"lb": "wiki_lb", "member": "n1", "activation": "paused"})).as_deref(),
            Some("activation must be active, disabled or stopped")
        );
    }

    #[test]
    fn names_and_words() {
        assert_eq!(normalize("Disabled"), Some("disabled"));
        assert_eq!(normalize("STP"), Some("stopped"));
        assert_eq!(normalize("x"), None);
        assert!(check_name("member", "node1").is_ok());
        assert!(check_name("member", "a.b").is_err());
        assert!(check_name("member", "a;b").is_err());
        assert_eq!(vwa("stopped"), "s");
    }
}
