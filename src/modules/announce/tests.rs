use std::io::{Read, Write};
use std::net::TcpListener;

use super::*;

fn args(v: J) -> AnnounceArgs {
    crate::modules::args::parse("announce", v.as_object().unwrap()).unwrap()
}

#[test]
fn a_webhook_is_shown_as_its_origin_only() {
    assert_eq!(
        shown_url("https://hooks.example/services/T0/B0/s3cr3tT0ken"),
        "https://hooks.example/…"
    );
    assert_eq!(
        shown_url("https://bob:pw@hooks.example:8443/x?token=abc"),
        "https://hooks.example:8443/…"
    );
    assert_eq!(
        shown_url("http://10.77.0.1:8081/"),
        "http://10.77.0.1:8081/"
    );
    assert_eq!(shown_url("http://h"), "http://h/");
    assert_eq!(shown_url("http://h?k=v"), "http://h/…");
    assert_eq!(shown_url("hooks.example/x"), "(not a URL)");
}

#[test]
fn bad_webhook_urls_are_refused_without_showing_their_token() {
    assert_eq!(url_problem(""), None);
    assert_eq!(url_problem("https://hooks.example/a/b?c=d"), None);
    let cases = [
        (
            "ftp://files.example/tok123",
            "`ftp://` is not http:// or https://",
        ),
        ("hooks.example/tok123", "is not an http:// or https:// URL"),
        ("https:///tok123", "names no host"),
        ("https://u:tok123@/x", "names no host"),
        (
            "https://h.example/tok123 x",
            "has a space or control character",
        ),
        (
            "https://h.example/tok123\n",
            "has a space or control character",
        ),
    ];
    for (url, want) in cases {
        let why = url_problem(url).unwrap_or_else(|| panic!("{url:?} accepted"));
        assert!(why.contains(want), "{url:?}: {why}");
        assert!(!why.contains("tok123"), "{url:?} shows its token: {why}");
    }
}

#[test]
fn the_body_is_the_message_the_run_the_host_and_the_given_fields() {
    let a = args(json!({
        "webhook": "http://sink/",
        "message": "Upgrade to 2.0.0 starts",
        "subject": "wiki upgrade",
        "fields": {
            "event": "upgrade_started",
            "planned_window": {"start": "2026-12-07T22:00:00Z", "end": "2026-12-08T00:00:00Z"},
            "prediction": "",
            "nothing": null,
            "count": 3
        }
    }));
    assert_eq!(
        body(&a, "20261207-1", "lb").unwrap(),
        json!({
            "text": "Upgrade to 2.0.0 starts",
            "subject": "wiki upgrade",
            "run": "20261207-1",
            "host": "lb",
            "event": "upgrade_started",
            "planned_window": {"start": "2026-12-07T22:00:00Z", "end": "2026-12-08T00:00:00Z"},
            "count": 3
        })
    );
    // Fields cutover sets itself cannot be overridden.
    let a = args(json!({"webhook": "http://sink/", "message": "m", "fields": {"run": "x"}}));
    let e = body(&a, "r", "h").unwrap_err().to_string();
    assert!(e.contains("`fields.run` is set by cutover itself"), "{e}");
}

#[test]
fn header_values_are_sent_but_never_shown() {
    let a = args(json!({
        "webhook": "https://hooks.example/T/B/tok123",
        "message": "go\nnow",
        "headers": {"Authorization": "Bearer tok456", "X-Retries": 2}
    }));
    assert_eq!(
        headers(&a).unwrap(),
        [
            ("Authorization".to_string(), "Bearer tok456".to_string()),
            ("X-Retries".to_string(), "2".to_string())
        ]
    );
    let channels = Channels {
        webhook: a.webhook.as_deref().unwrap(),
        mail: None,
    };
    let s = summary(&a, &channels, "lb", "would send:");
    assert_eq!(
        s,
        "would send: POST https://hooks.example/… (headers: Authorization, X-Retries): go⏎now"
            .replace('⏎', &crate::diag::one_line("\n"))
    );
    assert!(!s.contains("tok"), "{s}");
    // With mail: where the host has a sendmail, and where it has none.
    let to = ["ops@example.org".to_string()];
    let from = || "cutover@lb".to_string();
    let sendmail = Some("/usr/sbin/sendmail".to_string());
    let both = Channels {
        mail: Some((&to, from(), sendmail)),
        ..channels
    };
    assert_eq!(
        both.describe(&a, "lb"),
        "POST https://hooks.example/… (headers: Authorization, X-Retries) and mail to ops@example.org (sendmail on lb)"
    );
    let none = Channels {
        mail: Some((&to, from(), None)),
        ..both
    };
    assert_eq!(
        none.describe(&a, "lb"),
        "POST https://hooks.example/… (headers: Authorization, X-Retries); no mail to ops@example.org: lb has no sendmail"
    );
    for (h, want) in [
        (json!({"Bad Name": "v"}), "`Bad Name` is not a header name"),
        (
            json!({"X-A": "v\r\nX-Injected: 1"}),
            "header `X-A` has a line break",
        ),
        (json!({"X-A": ["v"]}), "header `X-A` must be text"),
    ] {
        let a = args(json!({"webhook": "http://h/", "message": "m", "headers": h}));
        let e = headers(&a).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
}

/// A one-request HTTP server on 127.0.0.1 answering `status`; returns its URL and a handle
/// yielding the request it received.
fn one_shot_server(status: u16) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook/tok789", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        let _ = write!(
            s,
            "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        String::from_utf8_lossy(&buf).into_owned()
    });
    (url, handle)
}

#[test]
fn a_post_sends_the_json_body_and_the_headers() {
    let (url, server) = one_shot_server(204);
    let body = json!({"text": "hello", "run": "r1"});
    let hs = [("Authorization".to_string(), "Bearer t".to_string())];
    assert_eq!(post(&url, &body, &hs, Duration::from_secs(5)).unwrap(), 204);
    let req = server.join().unwrap();
    assert!(req.starts_with("POST /hook/tok789 HTTP/1.1\r\n"), "{req}");
    let lower = req.to_ascii_lowercase();
    assert!(
        lower.contains("\r\ncontent-type: application/json\r\n"),
        "{req}"
    );
    assert!(lower.contains("\r\nauthorization: bearer t\r\n"), "{req}");
    let sent: J = serde_json::from_str(req.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(sent, body);
}

#[test]
fn a_webhook_that_is_down_fails_without_naming_its_path() {
    let (url, server) = one_shot_server(500);
    assert_eq!(
        post(&url, &json!({}), &[], Duration::from_secs(5)).unwrap(),
        500
    );
    server.join().unwrap();
    // Nothing listens any more on that port.
    let e = post(&url, &json!({}), &[], Duration::from_secs(5)).unwrap_err();
    let e = format!("{e:#}");
    assert!(e.starts_with("cannot send to http://127.0.0.1:"), "{e}");
    assert!(!e.contains("tok789"), "{e}");
}
