//! Facts about a host, gathered on demand (only when a step refers to `facts`) and cached for
//! the run: no up-front cost for playbooks that never ask.

use anyhow::Result;
use serde_json::{json, Value as J};

use crate::transport::HostConn;

const SCRIPT: &str = r#"
. /etc/os-release 2>/dev/null
printf 'os_id=%s\nos_version=%s\nos_codename=%s\n' "$ID" "$VERSION_ID" "$VERSION_CODENAME"
printf 'hostname=%s\nkernel=%s\narch=%s\n' "$(hostname)" "$(uname -r)" "$(uname -m)"
printf 'cpus=%s\n' "$(nproc 2>/dev/null || echo 1)"
awk '/MemTotal/ {printf "mem_mb=%d\n", $2/1024}' /proc/meminfo
printf 'systemd=%s\n' "$(systemctl is-system-running 2>/dev/null || true)"
"#;

pub async fn gather(host: &HostConn) -> Result<J> {
    let out = host
        .run(SCRIPT, None, None, Some(std::time::Duration::from_secs(30)))
        .await?;
    let mut facts = serde_json::Map::new();
    for line in out.stdout_text().lines() {
        if let Some((k, v)) = line.split_once('=') {
            let value = v
                .parse::<i64>()
                .map_or_else(|_| J::String(v.to_string()), J::from);
            facts.insert(k.to_string(), value);
        }
    }
    facts.insert("gathered".into(), json!(true));
    Ok(J::Object(facts))
}

/// Does a step's text refer to facts? (Then they are gathered before it runs.)
pub fn mentions_facts(text: &str) -> bool {
    text.contains("facts")
}
