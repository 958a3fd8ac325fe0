//! `http_check`: poll a URL until it answers the expected status code, JSON fields, headers
//! and/or a regex — or until a pattern is `absent` (a panic message must not be on a page) —
//! within `timeout`, every `interval` seconds. Also checks a file on the host (`file:`, e.g. a
//! log that must not contain `ClusterPanicListener`). Read-only.
//!
//! The URL is fetched with curl from the controller (the machine running cutover), or from the
//! step's host with `from_host: true` (for addresses only the host can reach, like a node's
//! localhost-only HTTP port).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Map, Value as J};

use super::contract::Module;
use super::spec::{arg, ArgType as T, ModuleSpec, Reversibility};
use super::{args, ModCtx, Outcome, Probe};
use crate::shell::quote;

/// One HTTP answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `curl -i` output: the last header block (after 1xx answers), then the body.
pub fn parse_curl_i(raw: &[u8]) -> Result<HttpResponse> {
    let text = String::from_utf8_lossy(raw);
    let mut rest: &str = &text;
    loop {
        let (head, body) = match rest.find("\r\n\r\n") {
            Some(i) => (&rest[..i], &rest[i + 4..]),
            None => match rest.find("\n\n") {
                Some(i) => (&rest[..i], &rest[i + 2..]),
                None => (rest, ""),
            },
        };
        let mut lines = head.lines();
        let status_line = lines.next().unwrap_or("");
        if !status_line.starts_with("HTTP/") {
            bail!(
                "not an HTTP answer: {}",
                status_line.chars().take(120).collect::<String>()
            );
        }
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad status line: {status_line}"))?;
        if (100..200).contains(&status) && body.starts_with("HTTP/") {
            rest = body;
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        return Ok(HttpResponse {
            status,
            headers,
            body: body.to_string(),
        });
    }
}

/// GET a URL with curl, from the controller (`ctx` None) or from the step's host.
pub async fn fetch(
    url: &str,
    on_host: Option<&ModCtx<'_>>,
    extra_curl: &[&str],
) -> Result<HttpResponse> {
    let mut words = vec!["curl", "-sS", "-i", "--max-time", "10"];
    words.extend_from_slice(extra_curl);
    words.push("--");
    words.push(url);
    let (ok, stdout, stderr) = match on_host {
        Some(ctx) => {
            let out = ctx.run(&crate::shell::join(&words), None).await?;
            let err = out.stderr_text();
            (out.ok(), out.stdout, err)
        }
        None => {
            let out = tokio::process::Command::new(words[0])
                .args(&words[1..])
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .map_err(|e| anyhow!("cannot run curl on the controller: {e}"))?;
            (
                out.status.success(),
                out.stdout,
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    if !ok {
        bail!("GET {url}: {}", stderr.trim());
    }
    parse_curl_i(&stdout)
}

/// A dotted path into a JSON value (`a.b.0.c`).
fn json_at<'a>(v: &'a J, path: &str) -> Option<&'a J> {
    path.split('.').try_fold(v, |cur, k| match cur {
        J::Object(m) => m.get(k),
        J::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn json_matches(actual: &J, want: &J) -> bool {
    match (actual, want) {
        (J::String(a), J::String(w)) => a == w,
        (a, J::String(w)) => {
            let text = a.to_string();
            text == *w
        }
        (a, w) => a == w,
    }
}

/// The conditions of a check.
#[derive(Debug, Default)]
pub struct Conditions {
    pub status: Option<u16>,
    pub json: Map<String, J>,
    pub headers: Vec<(String, regex::Regex)>,
    pub regex: Option<regex::Regex>,
    pub absent: Option<regex::Regex>,
}

fn re(what: &str, s: &str) -> Result<regex::Regex> {
    regex::Regex::new(s).map_err(|e| anyhow!("`{what}` is not a valid regex: {e}"))
}

/// The arguments of an `http_check` step (its `SPEC.args`).
#[derive(serde::Deserialize)]
pub(crate) struct HttpArgs {
    #[serde(default, deserialize_with = "args::text")]
    url: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    file: Option<String>,
    #[serde(default, deserialize_with = "args::uint64")]
    status: Option<u64>,
    #[serde(default, deserialize_with = "args::mapping")]
    json: Map<String, J>,
    #[serde(default, deserialize_with = "args::mapping")]
    headers: Map<String, J>,
    #[serde(default, deserialize_with = "args::text")]
    regex: Option<String>,
    #[serde(default, deserialize_with = "args::text")]
    absent: Option<String>,
    #[serde(default, deserialize_with = "args::flag")]
    from_host: Option<bool>,
    #[serde(default, deserialize_with = "args::uint64")]
    timeout: Option<u64>,
    #[serde(default, deserialize_with = "args::uint64")]
    interval: Option<u64>,
}

impl Conditions {
    pub(crate) fn from_args(args: &HttpArgs) -> Result<Conditions> {
        let file = args.file.is_some();
        let status = match args.status {
            Some(s) => Some(s as u16),
            None if !file => Some(200),
            None => None,
        };
        let headers = args
            .headers
            .iter()
            .map(|(k, v)| {
                let p = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                Ok((k.clone(), re(&format!("headers.{k}"), &p)?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Conditions {
            status,
            json: args.json.clone(),
            headers,
            regex: args.regex.as_deref().map(|s| re("regex", s)).transpose()?,
            absent: args
                .absent
                .as_deref()
                .map(|s| re("absent", s))
                .transpose()?,
        })
    }

    /// None when every condition holds, else why not.
    pub fn unmet(&self, r: &HttpResponse) -> Option<String> {
        if let Some(s) = self.status {
            if r.status != s {
                return Some(format!("status {} (want {s})", r.status));
            }
        }
        if !self.json.is_empty() {
            let v: J = match serde_json::from_str(r.body.trim()) {
                Ok(v) => v,
                Err(_) => return Some(format!("body is not JSON: {}", short(&r.body))),
            };
            for (k, want) in &self.json {
                match json_at(&v, k) {
                    Some(a) if json_matches(a, want) => {}
                    Some(a) => return Some(format!("{k} is {a} (want {want})")),
                    None => return Some(format!("{k} missing in {}", short(&r.body))),
                }
            }
        }
        for (h, p) in &self.headers {
            match r.header(h) {
                Some(v) if p.is_match(v) => {}
                Some(v) => return Some(format!("header {h}: {v} (want /{p}/)")),
                None => return Some(format!("no {h} header")),
            }
        }
        if let Some(p) = &self.regex {
            if !p.is_match(&r.body) {
                return Some(format!("/{p}/ not found in {}", short(&r.body)));
            }
        }
        if let Some(p) = &self.absent {
            if let Some(m) = p.find(&r.body) {
                return Some(format!(
                    "/{p}/ is present: {}",
                    line_around(&r.body, m.start())
                ));
            }
        }
        None
    }
}

fn short(s: &str) -> String {
    let t: String = s.trim().chars().take(200).collect();
    if s.trim().chars().count() > 200 {
        format!("{t}…")
    } else {
        t
    }
}

fn line_around(s: &str, at: usize) -> String {
    let start = s[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = s[at..].find('\n').map_or(s.len(), |i| at + i);
    short(&s[start..end])
}

pub fn probe() -> Probe {
    Probe::no_change(J::Null)
}

/// The last 1 MiB of a file on the host, as an answer with status 200 (404 when absent).
async fn read_file(ctx: &ModCtx<'_>, path: &str) -> Result<HttpResponse> {
    let out = ctx
        .run(
            &format!(
                "f={}; if [ -e \"$f\" ]; then tail -c 1048576 -- \"$f\"; else exit 44; fi",
                quote(path)
            ),
            None,
        )
        .await?;
    match out.rc {
        0 => Ok(HttpResponse {
            status: 200,
            headers: Vec::new(),
            body: out.stdout_text(),
        }),
        44 => Ok(HttpResponse {
            status: 404,
            ..Default::default()
        }),
        _ => bail!("cannot read {path}: {}", out.stderr_text().trim()),
    }
}

pub(crate) async fn apply(args: &HttpArgs, ctx: &ModCtx<'_>) -> Result<Outcome> {
    let cond = Conditions::from_args(args)?;
    let file = args.file.as_deref();
    let url = args.url.as_deref();
    if file.is_none() && url.is_none() {
        bail!("http_check needs `url` or `file`");
    }
    let timeout = Duration::from_secs(args.timeout.unwrap_or(if file.is_some() { 0 } else { 60 }));
    let interval = Duration::from_secs(args.interval.unwrap_or(2).max(1));
    let from_host = args.from_host == Some(true);
    let what = file.map_or_else(
        || format!("GET {}", url.unwrap_or_default()),
        |f| format!("{}:{f}", ctx.host.name),
    );
    let started = Instant::now();
    let mut attempts = 0u32;
    let (last, why) = loop {
        attempts += 1;
        let got = match (file, url) {
            (Some(f), _) => read_file(ctx, f).await,
            (None, Some(u)) => fetch(u, from_host.then_some(ctx), &[]).await,
            _ => unreachable!(),
        };
        let why = match &got {
            Ok(r) => match cond.unmet(r) {
                None => {
                    let mut result = Map::new();
                    result.insert("status".into(), json!(r.status));
                    result.insert("body".into(), json!(short(&r.body)));
                    result.insert("attempts".into(), json!(attempts));
                    result.insert(
                        "elapsed_ms".into(),
                        json!(started.elapsed().as_millis() as u64),
                    );
                    if let Ok(v) = serde_json::from_str::<J>(r.body.trim()) {
                        result.insert("json".into(), v);
                    }
                    return Ok(Outcome {
                        result,
                        ..Default::default()
                    });
                }
                Some(w) => w,
            },
            Err(e) => e.to_string(),
        };
        if started.elapsed() + interval > timeout {
            break (got.ok(), why);
        }
        tokio::time::sleep(interval).await;
    };
    let mut result = Map::new();
    if let Some(r) = &last {
        result.insert("status".into(), json!(r.status));
        result.insert("body".into(), json!(short(&r.body)));
    }
    result.insert("attempts".into(), json!(attempts));
    Ok(Outcome {
        changed: false,
        result,
        undo: None,
        failed: Some(format!(
            "{what}: {why} (after {attempts} attempt{} in {}s)",
            if attempts == 1 { "" } else { "s" },
            started.elapsed().as_secs()
        )),
    })
}

/// The `http_check` module.
pub(crate) struct HttpCheck;

impl Module for HttpCheck {
    type Args = HttpArgs;

    const SPEC: ModuleSpec = ModuleSpec {
        name: "http_check",
        args: &[
            arg("url", T::Str),
            arg("file", T::Path),
            arg("status", T::Int),
            arg("json", T::Map),
            arg("headers", T::Map),
            arg("regex", T::Str),
            arg("absent", T::Str),
            arg("from_host", T::Bool),
            arg("timeout", T::Int),
            arg("interval", T::Int),
        ],
        free_form: None,
        one_of: &[&["url", "file"]],
        any_of: &[],
        reversibility: Reversibility::ReadOnly,
    };

    async fn probe(_args: &HttpArgs, _ctx: &ModCtx<'_>) -> Result<Probe> {
        Ok(probe())
    }

    async fn apply(args: &HttpArgs, _probe: &Probe, ctx: &ModCtx<'_>) -> Result<Outcome> {
        apply(args, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_i_parsed_with_continue_and_lf_only() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nRetry-After: 3600\r\nContent-Type: text/html\r\n\r\n<h1>Maintenance</h1>\n";
        let r = parse_curl_i(raw).unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("3600"));
        assert_eq!(r.body, "<h1>Maintenance</h1>\n");
        let r =
            parse_curl_i(b"HTTP/2 200\ncontent-type: application/json\n\n{\"state\":\"RUNNING\"}")
                .unwrap();
        assert_eq!(r.status, 200);
        assert!(parse_curl_i(b"garbage").is_err());
    }

    #[test]
    fn conditions() {
        let mut args = Map::new();
        args.insert("json".into(), json!({"state": "RUNNING"}));
        args.insert("absent".into(), json!("ClusterPanic"));
        args.insert("headers".into(), json!({"X-Wiki-Node": "^node[12]$"}));
        let c = Conditions::from_args(&args::parse("http_check", &args).unwrap()).unwrap();
        let ok = HttpResponse {
            status: 200,
            headers: vec![("X-Wiki-Node".into(), "node1".into())],
            body: r#"{"state":"RUNNING","schema":2}"#.into(),
        };
        assert_eq!(c.unmet(&ok), None);
        let starting = HttpResponse {
            body: r#"{"state":"STARTING"}"#.into(),
            ..ok.clone()
        };
        assert_eq!(
            c.unmet(&starting).unwrap(),
            r#"state is "STARTING" (want "RUNNING")"#
        );
        let err = HttpResponse {
            status: 500,
            ..ok.clone()
        };
        assert_eq!(c.unmet(&err).unwrap(), "status 500 (want 200)");
        let panic = HttpResponse {
            body: "{\"state\":\"RUNNING\",\"schema\":2}\nERROR ClusterPanicListener here\n".into(),
            ..ok.clone()
        };
        // Not JSON any more: the JSON check says so first.
        assert!(c.unmet(&panic).unwrap().contains("not JSON"));
        let mut a2 = Map::new();
        a2.insert("file".into(), json!("/var/log/x"));
        a2.insert("absent".into(), json!("ClusterPanicListener"));
        let c2 = Conditions::from_args(&args::parse("http_check", &a2).unwrap()).unwrap();
        assert_eq!(c2.status, None);
        assert_eq!(
            c2.unmet(&panic).unwrap(),
            "/ClusterPanicListener/ is present: ERROR ClusterPanicListener here"
        );
        assert_eq!(json_at(&json!({"a": [{"b": 1}]}), "a.0.b"), Some(&json!(1)));
        assert!(
            json_matches(&json!(2), &json!("2")),
            "a number matches its text"
        );
    }
}
