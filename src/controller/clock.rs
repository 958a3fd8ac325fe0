//! The controller's clock, as journals and plans write it.

use serde_json::Value as J;

/// Now, in RFC 3339 with milliseconds (UTC).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// The time of an event, to the second.
pub fn event_time(e: &J) -> String {
    let ts = e["ts"].as_str().unwrap_or("");
    match ts.find('.') {
        Some(dot) if ts.ends_with('Z') => format!("{}Z", &ts[..dot]),
        _ => ts.to_string(),
    }
}
