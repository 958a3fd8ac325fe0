use super::{direct::*, tree::*};

#[test]
fn excludes_prune() {
    assert_eq!(find_pruned(&[]), "find .");
    assert_eq!(
        find_pruned(&["*.log".into(), "cache/".into(), "a/b c".into()]),
        r"find . \( -name '*.log' -o -name cache -o -path './a/b c' \) -prune -o"
    );
}

#[test]
fn direct_path_pieces() {
    let o = key_options(Some("10.77.0.41"), Some("202601011200"));
    assert!(
        o.starts_with(r#"restrict,from="10.77.0.41",expiry-time="202601011200",command=""#),
        "{o}"
    );
    assert!(
        o.contains(r#"in \"rsync --server --sender \"*) exec $SSH_ORIGINAL_COMMAND"#),
        "{o}"
    );
    assert_eq!(
        key_options(None, None).matches("restrict,command=").count(),
        1
    );
    let m = key_marker("20260101-000000-abcd", "staging", "/srv/x");
    assert!(
        m.starts_with("cutover-sync-20260101-000000-abcd-") && m.len() == 46,
        "{m}"
    );
    assert!(m.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    assert!(openssh_at_least(
        "OpenSSH_9.2p1 Debian-2+deb12u10, OpenSSL 3.0",
        8,
        2
    ));
    assert!(!openssh_at_least(
        "OpenSSH_7.4p1, OpenSSL 1.0.2k-fips",
        8,
        2
    ));
    assert!(openssh_at_least("port 22\nOpenSSH_8.2p1 Ubuntu", 8, 2));
    assert!(!openssh_at_least("ssh: not found", 8, 2));
    assert_eq!(
        rsync_stat(
            "Total bytes sent: 130\nTotal bytes received: 1,372\n",
            "Total bytes received"
        ),
        Some(1372)
    );
    assert!(
        plain_address("10.77.0.11") && plain_address("fe80::1%eth0") && plain_address("db1.lab")
    );
    assert!(!plain_address("-oProxyCommand=x") && !plain_address("a b") && !plain_address("a;b"));
    assert!(plain_user("root") && !plain_user("-l") && !plain_user("a b"));
}

#[test]
fn paths_checked() {
    assert!(check_paths("/a", "/b").is_ok());
    assert!(check_paths("/", "/b").is_err());
    assert!(check_paths("a", "/b").is_err());
}

/// What the step scripts of a direct copy print, read back (the shapes the scripts print;
/// the host key is shortened).
#[test]
fn direct_copy_answers_are_read_by_field() {
    let (keydir, stage, via, public) = prepared(
        "keydir /tmp/cutover-sync-key.AbC\nstage /srv/.cutover-sync.XyZ\nfrom 10.77.0.31\npub ssh-ed25519 AAAAC3 cutover-sync:r1\n",
    );
    assert_eq!(
        (
            keydir.as_str(),
            stage.as_str(),
            via.as_str(),
            public.as_str()
        ),
        (
            "/tmp/cutover-sync-key.AbC",
            "/srv/.cutover-sync.XyZ",
            "10.77.0.31",
            "ssh-ed25519 AAAAC3 cutover-sync:r1"
        )
    );
    assert_eq!(prepared("nothing").0, "");

    let (port, expiry) = source_facts(
        "port 2222\nOpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024\n202612071330\n",
    );
    assert_eq!((port, expiry.as_deref()), (2222, Some("202612071330")));
    // Before OpenSSH 8.2 there is no expiry-time; no port line: 22.
    let (port, expiry) = source_facts("OpenSSH_7.9p1, OpenSSL 1.1.1\n202612071330\n");
    assert_eq!((port, expiry), (22, None));

    let (created, user, keys) = authorised(
        "user deploy\ncreated  dir file\nhostkey ssh-ed25519 AAAAC3Nz+/=\nhostkey bad key with spaces\nhostkey ecdsa-sha2-nistp256 AAAAE2V\n",
    );
    assert_eq!((created.as_str(), user.as_str()), ("dir file", "deploy"));
    assert_eq!(
        keys,
        [
            "cutover-sync-src ssh-ed25519 AAAAC3Nz+/=",
            "cutover-sync-src ecdsa-sha2-nistp256 AAAAE2V"
        ]
    );
}

/// The address the destination reaches the source from, as the prepare script reads it from
/// `ip -o route get` (output captured on a lab host): the ephemeral key is authorised `from=`
/// it. (A control byte had replaced the sed's `\1`: the address was always empty, and the key
/// was authorised from anywhere.)
#[test]
fn the_prepare_script_reads_the_route_source_address() {
    let script = prepare_script("/srv/x", "/srv/x.old", "10.77.0.12", "m");
    let line = script
        .lines()
        .find(|l| l.starts_with("via="))
        .expect("a via= line");
    let sample = "10.77.0.12 dev host0 src 10.77.0.41 uid 0 \\    cache ";
    let line = line.replace(
        r#"ip -o route get "$a" 2>/dev/null"#,
        &format!("printf '%s\\n' '{sample}'"),
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("{line}\necho \"$via\"")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "10.77.0.41");
}

fn sync_args(v: serde_json::Value) -> anyhow::Result<SyncArgs> {
    let mut m = serde_json::json!({"src_host": "db1", "src": "/srv/a", "dest": "/srv/b"});
    for (k, v) in v.as_object().expect("a map") {
        m[k] = v.clone();
    }
    crate::modules::args::parse("sync", m.as_object().expect("a map"))
}

/// `exclude:` and `via:` read as the map readers had them; a rendered `via:` that is none of
/// the three is refused with the message the probe gave.
#[test]
fn a_sync_step_reads_its_arguments_as_before() {
    use serde_json::json;
    let a = sync_args(json!({})).unwrap();
    assert_eq!((a.via().unwrap(), a.exclude.len()), (Via::Auto, 0));
    assert_eq!(a.src_address, None);
    assert_eq!(
        (a.src_host.as_str(), a.src.as_str(), a.dest.as_str()),
        ("db1", "/srv/a", "/srv/b")
    );
    let excl = |v| sync_args(json!({ "exclude": v })).unwrap().exclude;
    assert_eq!(excl(json!("*.tmp")), ["*.tmp"]);
    assert_eq!(excl(json!("")), Vec::<String>::new());
    assert_eq!(excl(json!(["logs", 3, "cache/"])), ["logs", "cache/"]);
    let via = |v| sync_args(json!({ "via": v })).unwrap().via();
    assert_eq!(via(json!("direct")).unwrap(), Via::Direct);
    assert_eq!(via(json!("controller")).unwrap(), Via::Controller);
    assert_eq!(via(json!(7)).unwrap(), Via::Auto);
    assert_eq!(
        via(json!("sideways")).unwrap_err().to_string(),
        "sync: via must be auto, direct or controller, found `sideways`"
    );
    let addr = sync_args(json!({"src_address": "10.77.0.31"})).unwrap();
    assert_eq!(addr.src_address.as_deref(), Some("10.77.0.31"));
    assert_eq!(
        sync_args(json!({"src_host": 5})).err().unwrap().to_string(),
        "argument `src_host` is missing or not a string"
    );
}

/// As written (the engine connects to the peers before rendering), a `via:` that is still a
/// template does not hide the source host.
#[test]
fn a_sync_step_reads_its_source_host_and_replaces_its_destination() {
    use crate::overlay::Effect;
    let m = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
    let step = m(
        serde_json::json!({"src_host": "db1", "src": "/srv/a", "dest": "/srv/b",
                                    "via": "{{ sync_via }}"}),
    );
    assert_eq!(crate::modules::peer_hosts("sync", &step), ["db1"]);
    let t = crate::modules::touches("sync", &step);
    assert!(
        matches!(&t[..], [Effect::Tree { path, .. }] if path == "/srv/b"),
        "{t:?}"
    );
}
