//! The direct path: this host pulls from the source host with rsync over ssh, with a temporary
//! key authorised on the source for the copy only.

use anyhow::{bail, Result};
use serde_json::{json, Map, Value as J};

use super::tree::{find_pruned, swap_and_verify};
use crate::modules::{ModCtx, Outcome};
use crate::shell::quote;
use crate::transport::HostConn;

/// The name the pulling host's ssh uses for the source (`HostKeyAlias` and rsync's host part;
/// the real address is given as `HostName`).
const SRC_ALIAS: &str = "cutover-sync-src";

pub(super) struct DirectJob<'a> {
    pub(super) src_host: &'a str,
    pub(super) src: &'a str,
    pub(super) dest: &'a str,
    pub(super) excl: &'a [String],
    pub(super) from: &'a HostConn,
    /// The step's `src_address:`, where this host reaches the source's sshd.
    pub(super) src_address: Option<&'a str>,
}

pub(super) enum Direct {
    Done(Outcome),
    /// Could not copy directly; nothing changed at the destination (and nothing is left on
    /// either host).
    Unavailable(String),
}

/// Where this host reaches the source's sshd: `src_address`, else the source's inventory
/// address (`hostvars`).
fn source_address(job: &DirectJob<'_>, ctx: &ModCtx<'_>) -> Option<String> {
    if let Some(a) = job.src_address {
        return Some(a.to_string());
    }
    ctx.vars
        .get("hostvars")
        .and_then(|h| h.get(job.src_host))
        .and_then(|h| h.get("address"))
        .and_then(J::as_str)
        .map(str::to_string)
}

/// A host name or IP address that can go on an ssh command line as it is.
pub(super) fn plain_address(a: &str) -> bool {
    crate::ssh_args::address_problem(a).is_none()
}

/// A user name that can go on an ssh command line as it is.
pub(super) fn plain_user(u: &str) -> bool {
    crate::ssh_args::user_problem(u).is_none()
}

/// Why the direct path cannot be tried (read-only checks), or None.
pub(super) async fn direct_unavailable(
    job: &DirectJob<'_>,
    ctx: &ModCtx<'_>,
) -> Result<Option<String>> {
    let (src_host, from) = (job.src_host, job.from);
    if src_host == ctx.host.name {
        return Ok(Some("src_host is this host".into()));
    }
    let Some(addr) = source_address(job, ctx) else {
        return Ok(Some(format!("no address known for {src_host}")));
    };
    if addr == "local" {
        return Ok(Some(format!(
            "{src_host} is the controller (address: local)"
        )));
    }
    if !plain_address(&addr) {
        return Ok(Some(format!(
            "{src_host}'s address `{addr}` is not a plain host name or IP address"
        )));
    }
    let missing = |tools: &str| {
        format!("for c in {tools}; do command -v \"$c\" >/dev/null 2>&1 || echo \"$c\"; done")
    };
    let (need_here, need_there) = (
        missing("rsync ssh ssh-keygen mktemp flock"),
        missing("rsync flock"),
    );
    let (here, there) = tokio::join!(
        ctx.run(&need_here, None),
        from.run(&need_there, None, ctx.become_, ctx.timeout)
    );
    let (here, there) = (here?, there?);
    for (name, out) in [(&ctx.host.name, here), (&from.name, there)] {
        let lacking: Vec<String> = out
            .stdout_text()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !lacking.is_empty() {
            return Ok(Some(format!(
                "{} is not installed on {name}",
                lacking.join(", ")
            )));
        }
    }
    Ok(None)
}

/// A comment that names this one authorisation (and nothing else in authorized_keys).
pub(super) fn key_marker(run_id: &str, dest_host: &str, dest: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let salt = crate::modules::sha256_hex(
        format!("{dest_host}\0{dest}\0{nanos}\0{}", std::process::id()).as_bytes(),
    );
    let run: String = run_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!("cutover-sync-{run}-{}", &salt[..12])
}

/// The authorized_keys options of the ephemeral key: no forwarding, no pty, only from `from`
/// (when known), only until `expiry` (when sshd knows the option), and only rsync reading.
pub fn key_options(from: Option<&str>, expiry: Option<&str>) -> String {
    let mut o = vec!["restrict".to_string()];
    if let Some(f) = from {
        o.push(format!("from=\"{f}\""));
    }
    if let Some(e) = expiry {
        o.push(format!("expiry-time=\"{e}\""));
    }
    // The forced command runs the client's command only if it is rsync's sending (read-only)
    // server, word-split without globbing and never through eval.
    o.push(r#"command="/bin/sh -c 'set -f; case \"$SSH_ORIGINAL_COMMAND\" in \"rsync --server --sender \"*) exec $SSH_ORIGINAL_COMMAND ;; esac; echo cutover: only rsync --sender is allowed with this key >&2; exit 1'""#.to_string());
    o.join(",")
}

/// On the source host, as the user the copy reads as: authorise the line read from stdin
/// (under `flock`, against concurrent copies), and print that user, what had to be created
/// (`.ssh`, `authorized_keys`: removed again when empty) and the host's public keys.
fn authorise_script() -> String {
    r#"set -e
umask 077
u=$(id -un)
h=$(getent passwd "$u" | cut -d: -f6)
[ -n "$h" ] || h=$HOME
IFS= read -r line
created=
if [ ! -d "$h/.ssh" ]; then mkdir -p -- "$h/.ssh"; created="dir"; fi
ak="$h/.ssh/authorized_keys"
if [ ! -e "$ak" ]; then created="$created file"; fi
flock -w 30 "$h/.ssh" sh -c '
  ak=$1; line=$2
  if [ -s "$ak" ] && [ -n "$(tail -c1 -- "$ak")" ]; then echo >> "$ak"; fi
  printf "%s\n" "$line" >> "$ak"' _ "$ak" "$line"
echo "user $u"
echo "created $created"
for k in /etc/ssh/ssh_host_*_key.pub; do [ -r "$k" ] && echo "hostkey $(cut -d' ' -f1,2 < "$k")"; done
true"#
        .to_string()
}

/// On the source host: remove the line marked `marker` (atomically, under `flock`), and the
/// file and directory if this copy created them and they are empty now. Prints `removed`.
fn revoke_script(marker: &str, created: &str) -> String {
    format!(
        r#"set -e
m={m}
created={c}
u=$(id -un)
h=$(getent passwd "$u" | cut -d: -f6)
[ -n "$h" ] || h=$HOME
ak="$h/.ssh/authorized_keys"
if [ -f "$ak" ]; then
  flock -w 60 "$h/.ssh" sh -c '
    ak=$1; m=$2
    t=$(mktemp -- "$ak.cutover.XXXXXX")
    trap "rm -f -- "$t"" EXIT
    cp -p -- "$ak" "$t"
    grep -vF -- "$m" "$ak" > "$t" || true
    mv -f -- "$t" "$ak"
    trap - EXIT' _ "$ak" "$m"
  if grep -qF -- "$m" "$ak"; then echo "the key $m is still in $ak" >&2; exit 1; fi
  case " $created " in *" file "*) [ -s "$ak" ] || rm -f -- "$ak" ;; esac
fi
case " $created " in *" dir "*) rmdir -- "$h/.ssh" 2>/dev/null || true ;; esac
echo removed"#,
        m = quote(marker),
        c = quote(created)
    )
}

/// Step 1 of a direct copy, on the destination: a private directory with a fresh key pair
/// (comment `marker`), the staging directory beside `dest`, and the address this host reaches
/// the source from; refuses (exit 3) when `backup` exists.
pub(super) fn prepare_script(dest: &str, backup: &str, addr: &str, marker: &str) -> String {
    format!(
        r#"set -e
d={d}; b={b}; a={a}
parent=$(dirname -- "$d"); mkdir -p -- "$parent"
if [ -e "$b" ] || [ -L "$b" ]; then echo "backup $b already exists; nothing changed" >&2; exit 3; fi
k=$(mktemp -d /tmp/cutover-sync-key.XXXXXX)
s=
trap 'rm -rf -- "$k" ${{s:+"$s"}}' EXIT
ssh-keygen -q -t ed25519 -N '' -C {m} -f "$k/id" </dev/null >/dev/null
s=$(mktemp -d -- "$parent/.cutover-sync.XXXXXX")
via=$(ip -o route get "$a" 2>/dev/null | sed -n 's/.* src \([^ ]*\).*/\1/p' | head -n1) || true
echo "keydir $k"
echo "stage $s"
echo "from $via"
echo "pub $(cat -- "$k/id.pub")"
trap - EXIT"#,
        d = quote(dest),
        b = quote(backup),
        a = quote(addr),
        m = quote(marker),
    )
}

/// Step 2's answer from the source: the port its sshd serves us on (22 if not told) and, when
/// its OpenSSH knows `expiry-time` (8.2+), the time a key authorised now expires (+15 min).
pub(super) fn source_facts(ftext: &str) -> (u16, Option<String>) {
    let port: u16 = ftext
        .lines()
        .find_map(|l| l.strip_prefix("port "))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(22);
    let expiry = ftext
        .lines()
        .last()
        .map(str::trim)
        .filter(|e| e.len() == 12 && e.chars().all(|c| c.is_ascii_digit()))
        .filter(|_| openssh_at_least(ftext, 8, 2))
        .map(str::to_string);
    (port, expiry)
}

/// Step 3's answer from the source: when the authorized_keys file was created by it (to
/// remove it again), the login user, and the host keys (only well-formed `TYPE BASE64` lines,
/// named for the alias the copy connects to).
pub(super) fn authorised(atext: &str) -> (String, String, Vec<String>) {
    let created = atext
        .lines()
        .find_map(|l| l.strip_prefix("created"))
        .unwrap_or("")
        .trim()
        .to_string();
    let user = atext
        .lines()
        .find_map(|l| l.strip_prefix("user "))
        .unwrap_or("")
        .trim()
        .to_string();
    let hostkeys: Vec<String> = atext
        .lines()
        .filter_map(|l| l.strip_prefix("hostkey "))
        .map(str::trim)
        .filter(|k| {
            let mut p = k.split(' ');
            let (t, b) = (p.next().unwrap_or(""), p.next().unwrap_or(""));
            p.next().is_none()
                && !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '@' | '.'))
                && !b.is_empty()
                && b.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
        })
        .map(|k| format!("{SRC_ALIAS} {k}"))
        .collect();
    (created, user, hostkeys)
}

/// What the source granted for a direct copy: the key pair and staging directory here, and how
/// to reach the source's sshd with it.
struct Granted<'a> {
    keydir: &'a str,
    stage: &'a str,
    addr: &'a str,
    port: u16,
    user: &'a str,
    hostkeys: &'a [String],
}

/// Step 4 of a direct copy: the source's file list, then rsync pulls it into the staging
/// directory. `Ok(Err(why))`: the copy could not run (nothing in place yet); `Ok(Ok(stats))`:
/// rsync's statistics.
async fn pull_direct(
    job: &DirectJob<'_>,
    ctx: &ModCtx<'_>,
    g: &Granted<'_>,
) -> Result<std::result::Result<String, String>> {
    let DirectJob {
        src_host,
        src,
        excl,
        from,
        ..
    } = *job;
    let (addr, port, user, here) = (g.addr, g.port, g.user, &ctx.host.name);
    // The top directory's own mode, owner and time, then the entries below it. `.` is
    // left out of rsync's list: there it would mean "the directory's contents" and bring
    // excluded entries along; its attributes are set from the stat line instead.
    let listed = from
        .run(
            &format!(
                "cd -- {src} && stat -c '%a %U %G %u %g %Y' . && {find} -print0 | LC_ALL=C sort -z",
                src = quote(src),
                find = find_pruned(excl)
            ),
            None,
            ctx.become_,
            ctx.timeout,
        )
        .await?;
    if !listed.ok() {
        bail!(
            "sync: reading {src_host}:{src} failed: {}",
            listed.stderr_text().trim()
        );
    }
    let (top, entries) = match listed.stdout.iter().position(|b| *b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&listed.stdout[..i]).to_string(),
            &listed.stdout[i + 1..],
        ),
        None => bail!("sync: unexpected listing of {src_host}:{src}"),
    };
    let top: Vec<&str> = top.split_whitespace().collect();
    if top.len() != 6 || !top[0].chars().all(|c| c.is_ascii_digit()) {
        bail!(
            "sync: unexpected stat of {src_host}:{src}: {}",
            top.join(" ")
        );
    }
    let list: Vec<u8> = entries
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty() && *e != b".")
        .flat_map(|e| e.iter().copied().chain(std::iter::once(0)))
        .collect();
    let ssh = format!(
        "ssh -F /dev/null -i {k}/id -o IdentitiesOnly=yes -o UserKnownHostsFile={k}/known_hosts -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o HostKeyAlias={SRC_ALIAS} -o CheckHostIP=no -o BatchMode=yes -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no -o ConnectTimeout=10 -o ServerAliveInterval=15 -o HostName={addr} -p {port} -l {user}",
        k = g.keydir
    );
    let pull = format!(
        r#"set -e
k={k}; s={s}
printf '%s
' {keys} > "$k/known_hosts"
rsync -a --no-recursive -H -s --from0 --files-from=- --stats -e {ssh} -- {remote} "$s/"
chmod ug-s -- "$s"; chmod -- {mode} "$s"
chown -- {owner} "$s" 2>/dev/null || chown -- {ids} "$s"
touch -d @{mtime} -- "$s""#,
        k = quote(g.keydir),
        s = quote(g.stage),
        mode = quote(top[0]),
        owner = quote(&format!("{}:{}", top[1], top[2])),
        ids = quote(&format!("{}:{}", top[3], top[4])),
        mtime = quote(top[5]),
        keys = g
            .hostkeys
            .iter()
            .map(|k| quote(k))
            .collect::<Vec<_>>()
            .join(" "),
        ssh = quote(&ssh),
        remote = quote(&format!("{SRC_ALIAS}:{}/", src.trim_end_matches('/'))),
    );
    let out = ctx.run(&pull, Some(&list)).await?;
    if !out.ok() {
        return Ok(Err(format!(
            "rsync from {src_host} ({addr}:{port}) failed on {here} (exit {}): {}",
            out.rc,
            out.stderr_text().trim()
        )));
    }
    Ok(Ok(out.stdout_text()))
}

/// Step 3 of a direct copy: authorise the key `line` on the source. If that fails midway,
/// whether the line went in is unknown: it is taken out again, and the staging here removed.
async fn authorise(
    from: &HostConn,
    ctx: &ModCtx<'_>,
    line: &str,
    marker: &str,
    cleanup_here: &str,
) -> Result<crate::transport::Output> {
    let auth = from
        .run(
            &authorise_script(),
            Some(line.as_bytes()),
            ctx.become_,
            ctx.timeout,
        )
        .await;
    match auth {
        Ok(a) => Ok(a),
        Err(e) => {
            let _ = revoke(from, ctx, marker, "").await;
            let _ = ctx.run(cleanup_here, None).await;
            Err(e)
        }
    }
}

/// The temporary key of a direct copy: its comment, whether the source's authorized_keys was
/// created for it, the key pair's directory here, and the script that removes what is staged.
struct TempKey<'a> {
    marker: &'a str,
    created: &'a str,
    keydir: &'a str,
    cleanup_here: &'a str,
}

/// After the pull, whatever its outcome: the key out of the source's authorized_keys (`user`'s)
/// and the key pair removed here. A key left on the source fails the step, naming it.
async fn drop_key(
    job: &DirectJob<'_>,
    ctx: &ModCtx<'_>,
    key: &TempKey<'_>,
    user: &str,
) -> Result<()> {
    let (from, src_host, here) = (job.from, job.src_host, &ctx.host.name);
    let (marker, keydir) = (key.marker, key.keydir);
    let revoked = revoke(from, ctx, marker, key.created).await;
    let removed_here = ctx.run(&format!("rm -rf -- {}", quote(keydir)), None).await;
    if let Err(e) = revoked {
        let _ = ctx.run(key.cleanup_here, None).await;
        bail!(
            "sync: the temporary key {marker} could not be removed from {src_host} (~{user}/.ssh/authorized_keys): {e:#}; remove that line by hand"
        );
    }
    match removed_here {
        Ok(o) if o.ok() => Ok(()),
        Ok(o) => bail!(
            "sync: cannot remove the temporary key pair {keydir} on {here}: {}",
            o.stderr_text().trim()
        ),
        Err(e) => bail!("sync: cannot remove the temporary key pair {keydir} on {here}: {e:#}"),
    }
}

/// Step 1's answer: (key directory, staging directory, the address this host reaches the
/// source from, the public key); empty where the script did not say.
pub(super) fn prepared(text: &str) -> (String, String, String, String) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    (field("keydir"), field("stage"), field("from"), field("pub"))
}

/// Step 2 of a direct copy, on the source: its sshd's port and version (see [`source_facts`]).
async fn read_source_facts(from: &HostConn, ctx: &ModCtx<'_>) -> Result<(u16, Option<String>)> {
    let facts = from
        .run(
            r#"echo "port ${SSH_CONNECTION##* }"; ssh -V 2>&1 | head -n1; date -d '+15 min' +%Y%m%d%H%M"#,
            None,
            None,
            ctx.timeout,
        )
        .await?;
    Ok(source_facts(&facts.stdout_text()))
}

/// Copy with rsync, pulled by this host from the source host. `Unavailable` when the copy
/// could not be made (nothing changed, nothing left behind); errors when the source or this
/// host fail otherwise, or when the temporary key could not be removed again.
pub(super) async fn copy_direct(job: &DirectJob<'_>, ctx: &ModCtx<'_>) -> Result<Direct> {
    let DirectJob {
        src_host,
        src,
        dest,
        excl,
        from,
        ..
    } = *job;
    let here = &ctx.host.name;
    let addr = source_address(job, ctx).unwrap_or_default();
    let backup = format!("{dest}.cutover-{}~", ctx.run_id);
    let marker = key_marker(ctx.run_id, here, dest);

    // 1. Here: a private directory with the key pair, and the staging directory next to dest.
    let prepare = prepare_script(dest, &backup, &addr, &marker);
    let out = ctx.run(&prepare, None).await?;
    if out.rc == 3 {
        bail!("sync: {here}:{dest}: {}", out.stderr_text().trim());
    }
    if !out.ok() {
        return Ok(Direct::Unavailable(format!(
            "cannot prepare the copy on {here}: {}",
            out.stderr_text().trim()
        )));
    }
    let text = out.stdout_text();
    let (keydir, stage, via_addr, public) = prepared(&text);
    let cleanup_here = format!("rm -rf -- {} {}", quote(&keydir), quote(&stage));
    let public_ok = public.starts_with("ssh-ed25519 ")
        && public.split_whitespace().count() == 3
        && public.ends_with(&marker);
    if keydir.is_empty() || stage.is_empty() || !public_ok {
        let _ = ctx.run(&cleanup_here, None).await;
        return Ok(Direct::Unavailable(format!(
            "unexpected output preparing the copy on {here}: {}",
            text.trim()
        )));
    }
    let from_ip = plain_address(&via_addr).then_some(via_addr.as_str());

    // 2. There: sshd's version (for expiry-time), the port it serves us on.
    let (port, expiry) = read_source_facts(from, ctx).await?;
    let line = format!("{} {public}\n", key_options(from_ip, expiry.as_deref()));

    // 3. There: authorise the key; read the host keys and the login user.
    let auth = authorise(from, ctx, &line, &marker, &cleanup_here).await?;
    let atext = auth.stdout_text();
    let (created, user, hostkeys) = authorised(&atext);

    // 4. Here: the file list (the controller path's find), then rsync pulls it. Whatever
    // happens, the key is revoked on the source and the key pair removed here.
    let result = if !auth.ok() || !plain_user(&user) || hostkeys.is_empty() {
        Ok(Err(format!(
            "cannot authorise a temporary key on {src_host}: {}",
            if auth.ok() {
                format!("no usable user or host key in: {}", atext.trim())
            } else {
                auth.stderr_text().trim().to_string()
            }
        )))
    } else {
        let granted = Granted {
            keydir: &keydir,
            stage: &stage,
            addr: &addr,
            port,
            user: &user,
            hostkeys: &hostkeys,
        };
        pull_direct(job, ctx, &granted).await
    };
    let key = TempKey {
        marker: &marker,
        created: &created,
        keydir: &keydir,
        cleanup_here: &cleanup_here,
    };
    drop_key(job, ctx, &key, &user).await?;
    let stats = match result {
        Ok(Ok(stats)) => stats,
        Ok(Err(why)) => {
            let _ = ctx.run(&cleanup_here, None).await;
            return Ok(Direct::Unavailable(why));
        }
        Err(e) => {
            let _ = ctx.run(&cleanup_here, None).await;
            return Err(e);
        }
    };

    // 5. Here: the staged tree into place, and checked.
    let mut result = Map::new();
    result.insert("via".into(), json!("direct"));
    // The address the temporary key was limited to (`from=`); null: it was not limited.
    result.insert("key_from".into(), json!(from_ip));
    result.insert(
        "bytes".into(),
        json!(rsync_stat(&stats, "Total bytes received").unwrap_or(0)),
    );
    swap_and_verify(
        ctx,
        (from, src_host, src),
        dest,
        &backup,
        &stage,
        excl,
        result,
    )
    .await
    .map(Direct::Done)
}

/// Take the temporary key out of the source's authorized_keys again.
async fn revoke(from: &HostConn, ctx: &ModCtx<'_>, marker: &str, created: &str) -> Result<()> {
    let out = from
        .run(
            &revoke_script(marker, created),
            None,
            ctx.become_,
            ctx.timeout,
        )
        .await?;
    if !out.ok() || out.stdout_text().trim() != "removed" {
        bail!("{}", out.stderr_text().trim());
    }
    Ok(())
}

/// Does `ssh -V`'s output (somewhere in `text`) name OpenSSH `major.minor` or newer?
pub(super) fn openssh_at_least(text: &str, major: u32, minor: u32) -> bool {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .find_map(|w| w.strip_prefix("OpenSSH_"))
        .and_then(|v| {
            let mut p = v.split(|c: char| !c.is_ascii_digit());
            let a: u32 = p.next()?.parse().ok()?;
            let b: u32 = p.next()?.parse().ok()?;
            Some((a, b) >= (major, minor))
        })
        .unwrap_or(false)
}

/// A number from rsync's `--stats` (`Total bytes received: 1,234`).
pub(super) fn rsync_stat(stats: &str, name: &str) -> Option<u64> {
    stats
        .lines()
        .find_map(|l| l.trim().strip_prefix(name))
        .and_then(|r| r.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.replace(',', "").parse().ok())
}
