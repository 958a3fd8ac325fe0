//! What earlier steps of a plan leave behind on each host, as the later steps' probes see it.
//!
//! A plan probes every step against the host as it is *now*; a step that a real run would
//! meet only after earlier steps have changed the host (a file written by step 3 and edited by
//! step 5, a copy into a directory that step 1 creates, a unit that step 2 starts) has to be
//! compared with the *planned* state instead. The overlay is that planned state: a virtual
//! layer over each host's file system (paths, with content and owner/group/mode), its systemd
//! units, its load balancer members and its replication threads, filled from the conclusions of
//! earlier probes and consulted by later probes in plan mode only (`ModCtx::planned`).
//!
//! Where an earlier step's result cannot be derived (a command that names a path, a tree copied
//! from another host, the mode a new file gets from the umask), the overlay says so with the
//! step's name, and the probe that needs it reports "unknown" with that reason — never "no
//! change".

use std::collections::BTreeMap;
use std::sync::Arc;

/// The systemd units a database server runs as (Debian's MariaDB, MySQL): starting, stopping
/// or restarting one changes the planned replication state.
pub const DB_UNITS: [&str; 3] = ["mariadb", "mysql", "mysqld"];

/// A probe needed a planned state that cannot be known before the run; the plan shows the
/// step as unknown with this reason.
#[derive(Debug, Clone, PartialEq)]
pub struct NotDerivable(pub String);

impl std::fmt::Display for NotDerivable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotDerivable {}

/// Fail a probe with a [`NotDerivable`] reason.
pub fn not_derivable(reason: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(NotDerivable(reason.into()))
}

/// One planned value.
#[derive(Clone, Debug, PartialEq)]
pub enum Val<T> {
    /// As on the host now (in an effect: unchanged by the step).
    Host,
    Set(T),
    /// Changed in a way that is known only when the step runs.
    Unknown,
}

impl<T: Clone> Val<T> {
    /// This value as the effect of a step over `prev`, the value before it.
    fn over(&self, prev: &Val<T>) -> Val<T> {
        match self {
            Val::Host => prev.clone(),
            other => other.clone(),
        }
    }
    pub fn set(&self) -> Option<&T> {
        match self {
            Val::Set(v) => Some(v),
            _ => None,
        }
    }
}

/// Owner, group and mode of a planned path. Modes are four octal digits ("0640").
#[derive(Clone, Debug, PartialEq)]
pub struct Attrs {
    pub owner: Val<String>,
    pub group: Val<String>,
    pub mode: Val<String>,
}

impl Attrs {
    pub fn host() -> Attrs {
        Attrs {
            owner: Val::Host,
            group: Val::Host,
            mode: Val::Host,
        }
    }
    fn over(&self, prev: &Attrs) -> Attrs {
        Attrs {
            owner: self.owner.over(&prev.owner),
            group: self.group.over(&prev.group),
            mode: self.mode.over(&prev.mode),
        }
    }
    fn is_host(&self) -> bool {
        [&self.owner, &self.group, &self.mode]
            .iter()
            .all(|v| **v == Val::Host)
    }
}

/// What a path is after the steps planned so far.
#[derive(Clone, Debug, PartialEq)]
pub enum PathState {
    Absent,
    File {
        content: Val<Arc<Vec<u8>>>,
        attrs: Attrs,
    },
    Dir {
        attrs: Attrs,
    },
    Link {
        target: String,
    },
    /// Something happens to it that only the run will tell (the reason says what).
    Unknown {
        why: String,
    },
}

/// What a step does to everything below (and including) a directory.
#[derive(Clone, Debug, PartialEq)]
pub enum TreeState {
    /// Removed with the directory.
    Absent,
    /// Owner, group and mode set on every entry (`file: recurse: true`).
    Attrs(Attrs),
    /// Replaced or rewritten in a way known only when it runs (`sync`, a snapshot merge).
    Unknown { why: String },
}

/// A systemd unit's planned state.
#[derive(Clone, Debug, PartialEq)]
pub struct UnitState {
    pub loaded: Val<bool>,
    pub active: Val<bool>,
    /// `Some(true)` enabled, `Some(false)` disabled, `None` neither (static).
    pub enabled: Val<Option<bool>>,
    /// The unit's `.socket` is active.
    pub socket_active: Val<bool>,
}

impl UnitState {
    pub fn unknown() -> UnitState {
        UnitState {
            loaded: Val::Unknown,
            active: Val::Unknown,
            enabled: Val::Unknown,
            socket_active: Val::Unknown,
        }
    }
    fn over(&self, prev: &UnitState) -> UnitState {
        UnitState {
            loaded: self.loaded.over(&prev.loaded),
            active: self.active.over(&prev.active),
            enabled: self.enabled.over(&prev.enabled),
            socket_active: self.socket_active.over(&prev.socket_active),
        }
    }
}

/// A database server's planned replication state.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicationState {
    pub io_running: Val<bool>,
    pub sql_running: Val<bool>,
    pub read_only: Val<bool>,
    /// Replication set up, replaced or removed: nothing of it can be derived.
    pub reconfigured: bool,
}

impl ReplicationState {
    fn over(&self, prev: &ReplicationState) -> ReplicationState {
        ReplicationState {
            io_running: self.io_running.over(&prev.io_running),
            sql_running: self.sql_running.over(&prev.sql_running),
            read_only: self.read_only.over(&prev.read_only),
            reconfigured: self.reconfigured || prev.reconfigured,
        }
    }
}

/// What a step does, as its probe concluded (see `modules::Probe::after`).
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// The path's state after the step; `Val::Host` parts are left as they were.
    Path {
        path: String,
        state: PathState,
    },
    Tree {
        path: String,
        state: TreeState,
    },
    Unit {
        name: String,
        state: UnitState,
    },
    /// A mod_jk member's activation, runtime and persisted (`None`: not known).
    LbMember {
        lb: String,
        member: String,
        activation: Option<String>,
        workers_file: String,
    },
    Replication(ReplicationState),
    /// A command whose effect is known only when it runs: the absolute paths it names are
    /// unknown after it.
    Command {
        text: String,
    },
}

/// The planned value of something, and the step that planned it.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned<T> {
    pub value: T,
    pub by: String,
}

#[derive(Clone, Debug)]
enum Record {
    Path(String, PathState),
    Tree(String, TreeState),
    /// Paths named by a command of unknown effect.
    Command(Vec<String>),
    /// `lb_member` rewrote a line of this workers file.
    LbEdit(String),
}

/// What a lookup of a path found.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    /// Nothing planned touches it: the host's state is the planned state.
    Host,
    /// The planned state (parts of it may still be `Val::Host`: read them on the host).
    Planned(Planned<PathState>),
    /// An earlier step changes it in a way only the run will tell.
    NotDerivable(String),
}

/// One host's planned state.
#[derive(Clone, Debug, Default)]
pub struct HostOverlay {
    /// Path records in step order (later ones win).
    records: Vec<(Record, String)>,
    units: BTreeMap<String, Planned<UnitState>>,
    members: BTreeMap<(String, String), Planned<Option<String>>>,
    replication: Option<Planned<ReplicationState>>,
    /// The step that left a path's owner, group or mode to the host (a new file).
    attrs_left_by: BTreeMap<String, String>,
}

/// Every host's planned state: what a step's probes see in plan mode.
#[derive(Clone, Debug, Default)]
pub struct Overlay {
    pub hosts: BTreeMap<String, HostOverlay>,
}

impl Overlay {
    pub fn host(&self, name: &str) -> Option<&HostOverlay> {
        self.hosts.get(name)
    }
}

/// `.service` is implied in unit names.
pub fn unit_key(name: &str) -> String {
    name.strip_suffix(".service").unwrap_or(name).to_string()
}

fn clean(path: &str) -> String {
    let t = path.trim_end_matches('/');
    if t.is_empty() {
        "/".into()
    } else {
        t.to_string()
    }
}

/// Is `path` equal to `dir` or below it?
pub fn is_within(path: &str, dir: &str) -> bool {
    let (path, dir) = (clean(path), clean(dir));
    dir == "/" || path == dir || path.starts_with(&format!("{dir}/"))
}

/// The absolute paths a command's text names (`/srv/x`, `'/etc/a b'` is `/etc/a`), as words.
pub fn named_paths(text: &str) -> Vec<String> {
    let is_path_char =
        |c: char| c.is_ascii_alphanumeric() || "._-+@%:,/~".contains(c) || c == '{' || c == '}';
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (start, c) = chars[i];
        let prev = if i == 0 { None } else { Some(chars[i - 1].1) };
        if c == '/' && prev.is_none_or(|p| !is_path_char(p)) {
            let mut j = i;
            while j < chars.len() && is_path_char(chars[j].1) {
                j += 1;
            }
            let end = chars.get(j).map_or(text.len(), |(k, _)| *k);
            let p = clean(text[start..end].trim_end_matches(['.', ',', ':']));
            if p != "/" && !out.contains(&p) {
                out.push(p);
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// How many components a path has (`/srv/x` has 2).
fn depth(path: &str) -> usize {
    path.split('/').filter(|c| !c.is_empty()).count()
}

impl HostOverlay {
    /// Record what a step (`by`) does.
    pub fn record(&mut self, effects: &[Effect], by: &str) {
        let name = |why: &str| why.replace("{by}", by);
        for e in effects {
            let e = match e {
                Effect::Path {
                    path,
                    state: PathState::Unknown { why },
                } => Effect::Path {
                    path: path.clone(),
                    state: PathState::Unknown { why: name(why) },
                },
                Effect::Tree {
                    path,
                    state: TreeState::Unknown { why },
                } => Effect::Tree {
                    path: path.clone(),
                    state: TreeState::Unknown { why: name(why) },
                },
                other => other.clone(),
            };
            match &e {
                Effect::Path { path, state } => self.record_path(path, state, by),
                Effect::Tree { path, state } => {
                    self.records
                        .push((Record::Tree(clean(path), state.clone()), by.to_string()));
                }
                Effect::Command { text } => {
                    let paths = named_paths(text);
                    if !paths.is_empty() {
                        self.records.push((Record::Command(paths), by.to_string()));
                    }
                }
                Effect::Unit { name, state } => self.record_unit(name, state, by),
                Effect::LbMember {
                    lb,
                    member,
                    activation,
                    workers_file,
                } => {
                    self.members.insert(
                        (lb.clone(), member.clone()),
                        Planned {
                            value: activation.clone(),
                            by: by.to_string(),
                        },
                    );
                    self.records
                        .push((Record::LbEdit(clean(workers_file)), by.to_string()));
                }
                Effect::Replication(r) => {
                    let merged = match &self.replication {
                        Some(p) => r.over(&p.value),
                        None => r.clone(),
                    };
                    self.replication = Some(Planned {
                        value: merged,
                        by: by.to_string(),
                    });
                }
            }
        }
    }

    /// A path written, created or removed: merged over what earlier steps planned for it.
    fn record_path(&mut self, path: &str, state: &PathState, by: &str) {
        let path = clean(path);
        let merged = match (state, self.lookup(&path, &|_| false)) {
            (
                PathState::File { content, attrs },
                Seen::Planned(Planned {
                    value:
                        PathState::File {
                            content: c0,
                            attrs: a0,
                        },
                    ..
                }),
            ) => PathState::File {
                content: content.over(&c0),
                attrs: attrs.over(&a0),
            },
            (
                PathState::Dir { attrs },
                Seen::Planned(Planned {
                    value: PathState::Dir { attrs: a0 },
                    ..
                }),
            ) => PathState::Dir {
                attrs: attrs.over(&a0),
            },
            _ => state.clone(),
        };
        match state {
            PathState::File { attrs, .. } | PathState::Dir { attrs }
                if [&attrs.owner, &attrs.group, &attrs.mode]
                    .iter()
                    .any(|v| **v == Val::Unknown) =>
            {
                self.attrs_left_by.insert(path.clone(), by.to_string());
            }
            PathState::File { .. } | PathState::Dir { .. } => {}
            _ => {
                self.attrs_left_by.remove(&path);
            }
        }
        self.records
            .push((Record::Path(path, merged), by.to_string()));
    }

    /// A unit started, stopped, enabled…: merged over what earlier steps planned for it.
    fn record_unit(&mut self, name: &str, state: &UnitState, by: &str) {
        let key = unit_key(name);
        // A database server started, stopped or restarted starts its replication
        // threads as configured, and reads read_only from its configuration.
        if DB_UNITS.contains(&key.as_str()) && state.active != Val::Host {
            self.replication = Some(Planned {
                value: ReplicationState {
                    io_running: Val::Unknown,
                    sql_running: Val::Unknown,
                    read_only: Val::Unknown,
                    reconfigured: false,
                },
                by: by.to_string(),
            });
        }
        let merged = match self.units.get(&key) {
            Some(p) => state.over(&p.value),
            None => state.clone(),
        };
        self.units.insert(
            key,
            Planned {
                value: merged,
                by: by.to_string(),
            },
        );
    }

    /// The planned state of a path.
    pub fn path(&self, path: &str) -> Seen {
        self.lookup(&clean(path), &|_| false)
    }

    /// As [`path`](Self::path), for `lb_member`, which knows its own edits of a workers file
    /// (each member's line) and reads the file's other lines itself.
    pub fn path_besides_lb_edits(&self, path: &str) -> Seen {
        self.lookup(&clean(path), &|r| matches!(r, Record::LbEdit(_)))
    }

    fn lookup(&self, path: &str, skip: &dyn Fn(&Record) -> bool) -> Seen {
        // Newest first: attribute overrides of a tree apply to what is found below them.
        let mut tree_attrs: Vec<(&Attrs, &String)> = Vec::new();
        for (rec, by) in self.records.iter().rev() {
            if skip(rec) {
                continue;
            }
            let found = match rec {
                Record::Path(p, state) if p == path => Some(state.clone()),
                Record::Path(..) => None,
                Record::LbEdit(p) if p == path => Some(PathState::Unknown {
                    why: format!("{by} rewrites a line of {path}; its whole content is known only when it runs"),
                }),
                Record::LbEdit(_) => None,
                Record::Tree(t, state) if is_within(path, t) => match state {
                    TreeState::Absent => Some(PathState::Absent),
                    TreeState::Unknown { why } => Some(PathState::Unknown { why: why.clone() }),
                    TreeState::Attrs(a) => {
                        tree_attrs.push((a, by));
                        None
                    }
                },
                Record::Tree(..) => None,
                Record::Command(named) => named
                    .iter()
                    .find(|n| *n == path || (depth(n) >= 2 && is_within(path, n)))
                    .map(|n| PathState::Unknown {
                        why: format!("{by} runs a command that names {n}; what it does there is known only when it runs"),
                    }),
            };
            let Some(state) = found else { continue };
            return match state {
                PathState::Unknown { why } => Seen::NotDerivable(why),
                mut state => {
                    let mut by = by.clone();
                    if let (
                        Some((_, newest)),
                        PathState::File { attrs, .. } | PathState::Dir { attrs },
                    ) = (tree_attrs.first(), &mut state)
                    {
                        for (a, _) in tree_attrs.iter().rev() {
                            *attrs = a.over(attrs);
                        }
                        by = (*newest).clone();
                    }
                    Seen::Planned(Planned { value: state, by })
                }
            };
        }
        match tree_attrs.first() {
            // Only attributes below a tree are planned: the rest is the host's.
            Some((_, by)) => {
                let mut attrs = Attrs::host();
                for (a, _) in tree_attrs.iter().rev() {
                    attrs = a.over(&attrs);
                }
                Seen::Planned(Planned {
                    value: PathState::File {
                        content: Val::Host,
                        attrs,
                    },
                    by: (*by).clone(),
                })
            }
            None => Seen::Host,
        }
    }

    /// The newest step that plans anything at or below `dir` (for probes that read a whole
    /// tree: `sync`, recursive attributes).
    pub fn anything_within(&self, dir: &str) -> Option<&str> {
        let dir = clean(dir);
        self.records.iter().rev().find_map(|(rec, by)| {
            let hit = match rec {
                Record::Path(p, _) | Record::LbEdit(p) => is_within(p, &dir),
                Record::Tree(t, _) => is_within(t, &dir) || is_within(&dir, t),
                Record::Command(named) => named
                    .iter()
                    .any(|n| is_within(n, &dir) || (depth(n) >= 2 && is_within(&dir, n))),
            };
            hit.then_some(by.as_str())
        })
    }

    /// The step that left a planned path's owner, group or mode to the host.
    pub fn attrs_left_by(&self, path: &str) -> Option<&str> {
        self.attrs_left_by.get(&clean(path)).map(String::as_str)
    }

    pub fn unit(&self, name: &str) -> Option<&Planned<UnitState>> {
        self.units.get(&unit_key(name))
    }

    pub fn lb_member(&self, lb: &str, member: &str) -> Option<&Planned<Option<String>>> {
        self.members.get(&(lb.to_string(), member.to_string()))
    }

    pub fn replication(&self) -> Option<&Planned<ReplicationState>> {
        self.replication.as_ref()
    }
}

/// Whether a planned path state is a regular file with all of its parts unchanged from the
/// host (only then can a probe read it on the host as it is).
pub fn attrs_all_host(state: &PathState) -> bool {
    match state {
        PathState::File { content, attrs } => *content == Val::Host && attrs.is_host(),
        PathState::Dir { attrs } => attrs.is_host(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &str) -> PathState {
        PathState::File {
            content: Val::Set(Arc::new(content.as_bytes().to_vec())),
            attrs: Attrs {
                owner: Val::Set("root".into()),
                group: Val::Host,
                mode: Val::Unknown,
            },
        }
    }

    #[test]
    fn later_records_win_and_merge_with_earlier_ones() {
        let mut o = HostOverlay::default();
        assert_eq!(o.path("/srv/a/x.conf"), Seen::Host);
        o.record(
            &[Effect::Path {
                path: "/srv/a/x.conf".into(),
                state: file("one\n"),
            }],
            "step 3 (write)",
        );
        // An edit that changes only the content keeps the earlier step's attributes.
        o.record(
            &[Effect::Path {
                path: "/srv/a/x.conf".into(),
                state: PathState::File {
                    content: Val::Set(Arc::new(b"two\n".to_vec())),
                    attrs: Attrs {
                        owner: Val::Host,
                        group: Val::Host,
                        mode: Val::Set("0640".into()),
                    },
                },
            }],
            "step 5 (edit)",
        );
        match o.path("/srv/a/x.conf/") {
            Seen::Planned(Planned {
                value: PathState::File { content, attrs },
                by,
            }) => {
                assert_eq!(content, Val::Set(Arc::new(b"two\n".to_vec())));
                assert_eq!(attrs.owner, Val::Set("root".into()));
                assert_eq!(attrs.group, Val::Host);
                assert_eq!(attrs.mode, Val::Set("0640".into()));
                assert_eq!(by, "step 5 (edit)");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn trees_cover_what_is_below_them_until_something_newer() {
        let mut o = HostOverlay::default();
        o.record(
            &[Effect::Tree {
                path: "/srv/data".into(),
                state: TreeState::Absent,
            }],
            "step 1 (remove)",
        );
        assert!(matches!(
            o.path("/srv/data/a/b"),
            Seen::Planned(Planned {
                value: PathState::Absent,
                ..
            })
        ));
        assert_eq!(o.path("/srv/database"), Seen::Host);
        o.record(
            &[Effect::Path {
                path: "/srv/data/a".into(),
                state: PathState::Dir {
                    attrs: Attrs::host(),
                },
            }],
            "step 2 (mkdir)",
        );
        assert!(matches!(
            o.path("/srv/data/a"),
            Seen::Planned(Planned {
                value: PathState::Dir { .. },
                ..
            })
        ));
        assert!(matches!(
            o.path("/srv/data/a/b"),
            Seen::Planned(Planned {
                value: PathState::Absent,
                ..
            })
        ));
        o.record(
            &[Effect::Tree {
                path: "/srv/data/a".into(),
                state: TreeState::Unknown {
                    why: "step 3 (sync) replaces /srv/data/a".into(),
                },
            }],
            "step 3 (sync)",
        );
        assert_eq!(
            o.path("/srv/data/a/b"),
            Seen::NotDerivable("step 3 (sync) replaces /srv/data/a".into())
        );
        assert_eq!(o.anything_within("/srv/data/a/b"), Some("step 3 (sync)"));
        assert_eq!(o.anything_within("/srv/other"), None);
    }

    #[test]
    fn recursive_attributes_apply_to_what_is_below() {
        let mut o = HostOverlay::default();
        o.record(
            &[Effect::Path {
                path: "/srv/t/a".into(),
                state: file("x"),
            }],
            "step 1",
        );
        o.record(
            &[Effect::Tree {
                path: "/srv/t".into(),
                state: TreeState::Attrs(Attrs {
                    owner: Val::Set("wiki".into()),
                    group: Val::Host,
                    mode: Val::Host,
                }),
            }],
            "step 2",
        );
        match o.path("/srv/t/a") {
            Seen::Planned(Planned {
                value: PathState::File { attrs, content },
                by,
            }) => {
                assert_eq!(attrs.owner, Val::Set("wiki".into()));
                assert_eq!(content, Val::Set(Arc::new(b"x".to_vec())));
                assert_eq!(by, "step 2");
            }
            other => panic!("{other:?}"),
        }
        // A file only the host has: its content is the host's, its owner planned.
        match o.path("/srv/t/b") {
            Seen::Planned(Planned {
                value: PathState::File { attrs, content },
                ..
            }) => {
                assert_eq!(attrs.owner, Val::Set("wiki".into()));
                assert_eq!(content, Val::Host);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn commands_make_the_paths_they_name_unknown() {
        assert_eq!(
            named_paths("cd /srv/app/dist && tar xf '/tmp/a b.tgz' -C /srv/app/x/."),
            ["/srv/app/dist", "/tmp/a", "/srv/app/x"]
        );
        assert_eq!(named_paths("echo a/b 1/2"), Vec::<String>::new());
        let mut o = HostOverlay::default();
        o.record(
            &[Effect::Command {
                text: "rm -rf /srv/app/cache; ls /srv".into(),
            }],
            "step 4 (clean)",
        );
        match o.path("/srv/app/cache/x") {
            Seen::NotDerivable(why) => {
                assert!(why.contains("step 4 (clean)") && why.contains("/srv/app/cache"))
            }
            other => panic!("{other:?}"),
        }
        // A one-component path is named, not everything below it.
        assert!(matches!(o.path("/srv"), Seen::NotDerivable(_)));
        assert_eq!(o.path("/srv/other"), Seen::Host);
        // Something written after the command is known again.
        o.record(
            &[Effect::Path {
                path: "/srv/app/cache/x".into(),
                state: PathState::Absent,
            }],
            "step 5",
        );
        assert!(matches!(o.path("/srv/app/cache/x"), Seen::Planned(_)));
    }

    #[test]
    fn lb_edits_hide_a_workers_file_from_everyone_but_lb_member() {
        let mut o = HostOverlay::default();
        o.record(
            &[Effect::LbMember {
                lb: "lb".into(),
                member: "node1".into(),
                activation: Some("disabled".into()),
                workers_file: "/etc/w.properties".into(),
            }],
            "step 1 (drain)",
        );
        assert!(matches!(o.path("/etc/w.properties"), Seen::NotDerivable(_)));
        assert_eq!(o.path_besides_lb_edits("/etc/w.properties"), Seen::Host);
        assert_eq!(
            o.lb_member("lb", "node1").map(|p| p.value.clone()),
            Some(Some("disabled".into()))
        );
    }

    #[test]
    fn units_merge() {
        let mut o = HostOverlay::default();
        o.record(
            &[Effect::Unit {
                name: "wiki.service".into(),
                state: UnitState {
                    loaded: Val::Host,
                    active: Val::Set(true),
                    enabled: Val::Host,
                    socket_active: Val::Host,
                },
            }],
            "step 1",
        );
        o.record(
            &[Effect::Unit {
                name: "wiki".into(),
                state: UnitState {
                    loaded: Val::Host,
                    active: Val::Host,
                    enabled: Val::Set(Some(true)),
                    socket_active: Val::Host,
                },
            }],
            "step 2",
        );
        let u = o.unit("wiki").unwrap();
        assert_eq!(u.value.active, Val::Set(true));
        assert_eq!(u.value.enabled, Val::Set(Some(true)));
        assert_eq!(u.by, "step 2");
    }
}
