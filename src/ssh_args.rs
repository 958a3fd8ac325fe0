//! What may reach ssh's and sudo's command lines and the ssh config cutover writes: user
//! names, addresses, ports, jump hosts, `become_user`, `ssh_options`.
//!
//! ssh reads these values in more places than one would think. The destination and `-J` are
//! parsed by ssh itself (a value starting with `-` is an option); a `-J` hop's user and host
//! are pasted into the `ProxyCommand` ssh builds for the hop, which `/bin/sh` runs on the
//! controller; `ssh_options` are lines of a config file, where a newline starts a new
//! directive and a few keywords run programs on the controller (`ProxyCommand`,
//! `LocalCommand`, `KnownHostsCommand`, `Match exec`), load libraries (`PKCS11Provider`,
//! `SecurityKeyProvider`) or open sections (`Host`, `Match`). So names and addresses are held
//! to the characters they need, and `ssh_options` keywords to an allow-list; keywords that
//! are risky but sometimes wanted are allowed only when the inventory names them in
//! `allow_unsafe_ssh_options:`. Keywords are matched case-insensitively, as ssh does.

/// Keywords whose values only tune the connection: algorithms, timeouts, keepalives,
/// authentication methods, logging, host-key checks that only add strictness.
const SAFE: &[&str] = &[
    "AddressFamily",
    "BindAddress",
    "BindInterface",
    "CASignatureAlgorithms",
    "CertificateFile",
    "CheckHostIP",
    "Ciphers",
    "ClearAllForwardings",
    "Compression",
    "ConnectionAttempts",
    "ConnectTimeout",
    "FingerprintHash",
    "GlobalKnownHostsFile",
    "GSSAPIAuthentication",
    "HashKnownHosts",
    "HostbasedAcceptedAlgorithms",
    "HostKeyAlgorithms",
    "HostKeyAlias",
    "IdentitiesOnly",
    "IdentityAgent",
    "IPQoS",
    "KbdInteractiveAuthentication",
    "KbdInteractiveDevices",
    "KexAlgorithms",
    "LogLevel",
    "LogVerbose",
    "MACs",
    "NumberOfPasswordPrompts",
    "ObscureKeystrokeTiming",
    "PasswordAuthentication",
    "PreferredAuthentications",
    "PubkeyAcceptedAlgorithms",
    "PubkeyAcceptedKeyTypes",
    "PubkeyAuthentication",
    "RekeyLimit",
    "RequiredRSASize",
    "RevokedHostKeys",
    "ServerAliveCountMax",
    "ServerAliveInterval",
    "SyslogFacility",
    "TCPKeepAlive",
];

/// Safe keywords that take more than one word (`IPQoS af21 cs1`, `RekeyLimit 1G 1h`).
const MULTI_WORD: &[&str] = &["GlobalKnownHostsFile", "IPQoS", "RekeyLimit", "LogVerbose"];

/// Keywords allowed only when the inventory lists them in `allow_unsafe_ssh_options:`, and
/// why each is unsafe.
const UNSAFE: &[(&str, &str)] = &[
    ("ProxyCommand", "runs a command on the controller"),
    ("LocalCommand", "runs a command on the controller"),
    (
        "PermitLocalCommand",
        "lets LocalCommand run a command on the controller",
    ),
    ("KnownHostsCommand", "runs a command on the controller"),
    (
        "RemoteCommand",
        "replaces the command cutover runs on the host",
    ),
    (
        "PKCS11Provider",
        "loads a library into ssh on the controller",
    ),
    (
        "SecurityKeyProvider",
        "loads a library into ssh on the controller",
    ),
    ("XAuthLocation", "runs a program on the controller"),
    ("ForwardAgent", "lets the host use your ssh agent"),
    ("ForwardX11", "exposes your X display to the host"),
    ("ForwardX11Trusted", "exposes your X display to the host"),
    ("ForwardX11Timeout", "concerns X11 forwarding"),
    (
        "GSSAPIDelegateCredentials",
        "hands your Kerberos credentials to the host",
    ),
    ("LocalForward", "opens a port forwarding"),
    ("RemoteForward", "opens a port forwarding"),
    ("DynamicForward", "opens a SOCKS proxy"),
    ("GatewayPorts", "exposes forwarded ports to the network"),
    ("PermitRemoteOpen", "concerns port forwarding"),
    ("ExitOnForwardFailure", "concerns port forwarding"),
    ("StreamLocalBindMask", "concerns socket forwarding"),
    ("StreamLocalBindUnlink", "concerns socket forwarding"),
    ("Tunnel", "opens a network tunnel"),
    ("TunnelDevice", "opens a network tunnel"),
    ("SendEnv", "sends local environment variables to the host"),
    (
        "SetEnv",
        "sets environment variables for cutover's commands on the host",
    ),
    (
        "NoHostAuthenticationForLocalhost",
        "turns off host key checks",
    ),
    ("VerifyHostKeyDNS", "trusts host keys found in DNS"),
    ("UpdateHostKeys", "adds keys the host offers to known_hosts"),
    ("HostbasedAuthentication", "runs the setuid ssh-keysign"),
    ("EnableSSHKeysign", "runs the setuid ssh-keysign"),
    ("AddKeysToAgent", "changes your ssh agent"),
    ("UseKeychain", "changes your keychain"),
    ("ProxyUseFdpass", "concerns ProxyCommand"),
    (
        "CanonicalizeHostname",
        "changes which host is connected and which config applies",
    ),
    ("CanonicalDomains", "changes which host is connected"),
    (
        "CanonicalizeFallbackLocal",
        "changes which host is connected",
    ),
    ("CanonicalizeMaxDots", "changes which host is connected"),
    (
        "CanonicalizePermittedCNAMEs",
        "changes which host is connected",
    ),
    ("Tag", "selects `Match tagged` sections of your ssh config"),
    ("IgnoreUnknown", "hides misspelt options"),
    ("RequestTTY", "breaks cutover's framing of command output"),
    ("SessionType", "breaks cutover's sessions"),
    ("StdinNull", "breaks cutover's sessions"),
    ("ForkAfterAuthentication", "breaks cutover's sessions"),
    ("EscapeChar", "concerns interactive sessions"),
    ("EnableEscapeCommandline", "concerns interactive sessions"),
    ("ChannelTimeout", "closes cutover's idle session shells"),
    ("VisualHostKey", "prints to the terminal"),
];

/// Keywords never accepted in `ssh_options`, with what to do instead.
const NEVER: &[(&str, &str)] = &[
    ("Host", "it opens a section of ssh_config; put host-specific settings in ~/.ssh/config, which cutover's ssh reads"),
    ("Match", "it opens a section of ssh_config (and `Match exec` runs commands); put it in ~/.ssh/config, which cutover's ssh reads"),
    ("Include", "it reads another config file; put the settings in ~/.ssh/config, which cutover's ssh reads"),
    ("User", "use the inventory's `user:`"),
    ("Port", "use the inventory's `port:`"),
    ("Hostname", "use the host's `address:`"),
    ("IdentityFile", "use the inventory's `identity_file:`"),
    ("UserKnownHostsFile", "use the inventory's `known_hosts_file:`"),
    ("ProxyJump", "use the inventory's `jump_host:`"),
    ("StrictHostKeyChecking", "cutover checks host keys strictly; `accept_new_host_keys: true` accepts new ones"),
    ("BatchMode", "cutover never lets ssh prompt"),
    ("ControlMaster", "cutover runs its own master connection"),
    ("ControlPath", "cutover runs its own master connection"),
    ("ControlPersist", "cutover runs its own master connection"),
];

/// What an `ssh_options` keyword is.
#[derive(Debug, PartialEq)]
pub enum Keyword {
    Safe(&'static str),
    /// Allowed through `allow_unsafe_ssh_options:`; the reason it is unsafe.
    Unsafe(&'static str, &'static str),
    /// Never allowed; what to do instead.
    Never(&'static str, &'static str),
    Unknown,
}

/// Classify a keyword (case-insensitively); the canonical spelling comes back.
pub fn keyword(name: &str) -> Keyword {
    let eq = |k: &str| k.eq_ignore_ascii_case(name);
    if let Some(k) = SAFE.iter().find(|k| eq(k)) {
        return Keyword::Safe(k);
    }
    if let Some((k, why)) = UNSAFE.iter().find(|(k, _)| eq(k)) {
        return Keyword::Unsafe(k, why);
    }
    if let Some((k, why)) = NEVER.iter().find(|(k, _)| eq(k)) {
        return Keyword::Never(k, why);
    }
    Keyword::Unknown
}

/// Every keyword `ssh_options` can hold, for "did you mean".
pub fn known_keywords() -> impl Iterator<Item = &'static str> {
    SAFE.iter().copied().chain(UNSAFE.iter().map(|(k, _)| *k))
}

/// Why a value of a safe keyword is refused, or None. One word (a few for `MULTI_WORD`
/// keywords) of characters that mean nothing special to ssh's config parser: no quotes, `=`,
/// `#`, backslash, whitespace or control characters.
pub fn safe_value_problem(keyword: &str, value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("is empty".into());
    }
    let multi = MULTI_WORD.contains(&keyword);
    let words: Vec<&str> = if multi {
        value.split(' ').collect()
    } else {
        vec![value]
    };
    let plain = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '.' | '_' | '-' | '+' | ',' | ':' | '/' | '@' | '~' | '%' | '*' | '!' | '?' | '^'
            )
    };
    match value.chars().find(|c| !(plain(*c) || (multi && *c == ' '))) {
        Some(c) => Some(format!("contains {}", describe(c))),
        None if words.iter().any(|w| w.is_empty()) => Some("has an empty word".into()),
        None => shape_problem(keyword, value),
    }
}

/// Safe keywords whose value is a time (`10`, `30s`, `1m30s`), a count or yes/no: a value of
/// another shape is refused here, not by ssh on the first connection of a run.
const TIMES: &[&str] = &["ConnectTimeout", "ServerAliveInterval"];
const COUNTS: &[&str] = &[
    "ConnectionAttempts",
    "NumberOfPasswordPrompts",
    "RequiredRSASize",
    "ServerAliveCountMax",
];
const YES_NO: &[&str] = &[
    "CheckHostIP",
    "ClearAllForwardings",
    "Compression",
    "GSSAPIAuthentication",
    "HashKnownHosts",
    "IdentitiesOnly",
    "KbdInteractiveAuthentication",
    "PasswordAuthentication",
    "TCPKeepAlive",
];

fn shape_problem(keyword: &str, value: &str) -> Option<String> {
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let is = |list: &[&str]| list.iter().any(|k| k.eq_ignore_ascii_case(keyword));
    if is(TIMES) {
        // ssh's time format: numbers, each with an optional unit.
        let ok = value
            .split_inclusive(|c: char| "sSmMhHdDwW".contains(c))
            .all(|part| {
                digits(
                    part.strip_suffix(|c: char| "sSmMhHdDwW".contains(c))
                        .unwrap_or(part),
                )
            });
        return (!ok).then(|| "is not a time (seconds, or like `30s`, `1m30s`)".into());
    }
    if is(COUNTS) {
        return (!digits(value)).then(|| "is not a whole number of 0 or more".into());
    }
    if is(YES_NO) {
        let ok = ["yes", "no"].iter().any(|w| w.eq_ignore_ascii_case(value));
        return (!ok).then(|| "is neither `yes` nor `no`".into());
    }
    None
}

/// Why a value of an explicitly allowed unsafe keyword is refused: it must stay one line.
pub fn unsafe_value_problem(value: &str) -> Option<String> {
    if value.trim().is_empty() {
        return Some("is empty".into());
    }
    value
        .chars()
        .find(|c| c.is_control())
        .map(|c| format!("contains {}", describe(c)))
}

fn describe(c: char) -> String {
    match c {
        '\n' => "a line break".into(),
        '\r' => "a carriage return".into(),
        '\t' => "a tab".into(),
        ' ' => "a space".into(),
        c if c.is_control() => format!("a control character (U+{:04X})", c as u32),
        c => format!("`{c}`"),
    }
}

/// Why a login user (`user:`, the user of a jump host) is refused, or None.
pub fn user_problem(u: &str) -> Option<String> {
    name_problem(u, 64)
}

/// Why a `become_user` (sudo `-u`) is refused, or None: a user name, or `#UID`.
pub fn become_user_problem(u: &str) -> Option<String> {
    if let Some(uid) = u.strip_prefix('#') {
        if !uid.is_empty() && uid.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    name_problem(u, 64)
}

fn name_problem(s: &str, max: usize) -> Option<String> {
    if s.is_empty() {
        return Some("is empty".into());
    }
    if s.starts_with('-') {
        return Some("starts with `-` (it would be read as an option)".into());
    }
    if s.len() > max {
        return Some(format!("is longer than {max} characters"));
    }
    s.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .map(|c| {
            format!(
                "contains {}; use letters, digits, `.`, `_` and `-`",
                describe(c)
            )
        })
}

/// Why an address (a host name, an IPv4 address, or an IPv6 address with an optional
/// `%zone`) is refused, or None.
pub fn address_problem(a: &str) -> Option<String> {
    if a.is_empty() {
        return Some("is empty".into());
    }
    if a.starts_with('-') {
        return Some("starts with `-` (it would be read as an option)".into());
    }
    if a.contains(':') {
        let (ip, zone) = a.split_once('%').unwrap_or((a, "x"));
        let ip_ok = ip.parse::<std::net::Ipv6Addr>().is_ok();
        let zone_ok = !zone.is_empty()
            && zone
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        return (!(ip_ok && zone_ok)).then(|| {
            "is neither a host name nor an IP address (an IPv6 address is written without brackets)".into()
        });
    }
    if a.len() > 253 {
        return Some("is longer than 253 characters".into());
    }
    a.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .map(|c| {
            format!(
                "contains {}; a host name uses letters, digits, `.`, `_` and `-`",
                describe(c)
            )
        })
}

/// Why a path that ssh reads (`identity_file`, `known_hosts_file`) is refused, or None: it
/// becomes a line of ssh's config, so no line breaks, control characters or `"`.
pub fn path_problem(p: &str) -> Option<String> {
    if p.is_empty() {
        return Some("is empty".into());
    }
    if p.starts_with('-') {
        return Some("starts with `-` (it would be read as an option)".into());
    }
    p.chars()
        .find(|c| c.is_control() || *c == '"')
        .map(|c| format!("contains {}", describe(c)))
}

/// One hop of `jump_host:`.
#[derive(Debug, PartialEq)]
pub struct Hop {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// The hops of a `jump_host:` value (`[user@]host[:port]`, `ssh://…`, `[ipv6]:port`, joined by
/// `,`), each part checked; or why it is refused.
pub fn parse_jump(s: &str) -> Result<Vec<Hop>, String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    let hops: Vec<&str> = s.split(',').collect();
    hops.iter()
        .enumerate()
        .map(|(i, hop)| {
            parse_hop(hop).map_err(|e| match hops.len() {
                1 => e,
                _ => format!("(hop {} `{}`) {e}", i + 1, crate::diag::one_line(hop)),
            })
        })
        .collect()
}

fn parse_hop(hop: &str) -> Result<Hop, String> {
    let rest = hop.strip_prefix("ssh://").unwrap_or(hop);
    let (user, rest) = match rest.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, rest),
    };
    if let Some(why) = user.and_then(user_problem) {
        return Err(format!("has a user that {why}"));
    }
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (h, after) = inner
            .split_once(']')
            .ok_or("has a `[` that is never closed")?;
        (h, after.strip_prefix(':'))
    } else if rest.matches(':').count() > 1 {
        return Err("has an IPv6 address: write it in brackets, `[addr]:port`".into());
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if let Some(why) = address_problem(host) {
        return Err(format!("has a host that {why}"));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.chars().all(|c| c.is_ascii_digit()) => Some(n),
            _ => {
                return Err(format!(
                    "has port `{p}`; a port is a number from 1 to 65535"
                ))
            }
        },
    };
    Ok(Hop {
        user: user.map(str::to_string),
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_classified_case_insensitively() {
        assert_eq!(keyword("connecttimeout"), Keyword::Safe("ConnectTimeout"));
        assert!(matches!(
            keyword("proxycommand"),
            Keyword::Unsafe("ProxyCommand", _)
        ));
        assert!(matches!(keyword("MATCH"), Keyword::Never("Match", _)));
        assert_eq!(keyword("ConectTimeout"), Keyword::Unknown);
        // No keyword sits in two lists.
        let all: Vec<&str> = known_keywords()
            .chain(NEVER.iter().map(|(k, _)| *k))
            .collect();
        for k in &all {
            assert_eq!(
                all.iter().filter(|o| o.eq_ignore_ascii_case(k)).count(),
                1,
                "{k}"
            );
        }
    }

    #[test]
    fn safe_values_are_one_plain_word() {
        assert_eq!(safe_value_problem("ConnectTimeout", "10"), None);
        assert_eq!(
            safe_value_problem(
                "KexAlgorithms",
                "-diffie-hellman-group1-sha1,+curve25519-sha256"
            ),
            None
        );
        assert_eq!(safe_value_problem("IPQoS", "af21 cs1"), None);
        for bad in [
            "10 ProxyCommand=x",
            "10\nProxyCommand x",
            "a=b",
            "\"x\"",
            "x#y",
            "a\tb",
            "",
        ] {
            assert!(
                safe_value_problem("ConnectTimeout", bad).is_some(),
                "{bad:?}"
            );
        }
        assert!(safe_value_problem("IPQoS", "af21  cs1").is_some());
        for (k, good, bad) in [
            ("ConnectTimeout", "1m30s", "-1"),
            ("ServerAliveInterval", "15", "15x"),
            ("ServerAliveCountMax", "3", "-3"),
            ("Compression", "no", "sometimes"),
        ] {
            assert_eq!(safe_value_problem(k, good), None, "{k} {good}");
            assert!(safe_value_problem(k, bad).is_some(), "{k} {bad}");
        }
        assert_eq!(unsafe_value_problem("ssh -W %h:%p bastion"), None);
        assert!(unsafe_value_problem("x\nLocalCommand y").is_some());
    }

    #[test]
    fn names_and_addresses() {
        for ok in ["root", "deploy_1", "a.b-c"] {
            assert_eq!(user_problem(ok), None, "{ok}");
        }
        for bad in ["-oProxyCommand=x", "a b", "a;b", "a@b", "a\nb", "", "$(id)"] {
            assert!(user_problem(bad).is_some(), "{bad:?}");
        }
        assert_eq!(become_user_problem("#1000"), None);
        assert!(become_user_problem("#x").is_some());
        for ok in ["10.0.0.1", "db1.lab", "fe80::1%eth0", "::1", "app_1"] {
            assert_eq!(address_problem(ok), None, "{ok}");
        }
        for bad in [
            "-oProxyCommand=x",
            "a b",
            "a;b",
            "[::1]",
            "x@y",
            "a:b",
            "ssh://x",
            "a\u{7f}",
        ] {
            assert!(address_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn jump_hosts_are_parsed_and_checked() {
        assert_eq!(
            parse_jump("admin@bastion:2222,[fe80::1]:22,ssh://u@h").unwrap(),
            vec![
                Hop {
                    user: Some("admin".into()),
                    host: "bastion".into(),
                    port: Some(2222)
                },
                Hop {
                    user: None,
                    host: "fe80::1".into(),
                    port: Some(22)
                },
                Hop {
                    user: Some("u".into()),
                    host: "h".into(),
                    port: None
                },
            ]
        );
        for bad in [
            "-oProxyCommand=x",
            "a,,b",
            "x;touch /tmp/p@bastion",
            "bastion:0",
            "bastion:70000",
            "bastion:22x",
            "a b",
            "$(id)@b",
            "fe80::1",
            "b\nProxyCommand x",
        ] {
            assert!(parse_jump(bad).is_err(), "{bad:?}");
        }
    }
}
