use serde_json::json;

use super::repo::{parse_batch, parse_ls_tree, regular_file, shown_url, Entry, Tree, TreeFile};
use super::*;
use crate::modules::files::parse_looks;

/// `git ls-tree -r -z --full-tree f2b07a62b86f` of the lab's customizations.git (lab/lib/repo.sh),
/// NULs as written by git.
const LAB_LS_TREE: &str =
    "100755 blob 9dfa78395350476edf98ac4dc4c9e5101c6608a5\tbin/wiki-healthcheck.sh\0\
100644 blob 1923c7c77f07a52578784400ea66c97f2471f12a\tconf/logging.properties\0\
100644 blob 60263fc5e0da9c7f82bca87c55960844472fd8d7\twebapps/ROOT/custom/banner.html\0\
100644 blob 926a0a8d29046980767985787b8ab5e333df33a9\twebapps/ROOT/custom/contact.txt\0";

fn entry(mode: &str, kind: &str, path: &str) -> Entry {
    Entry {
        mode: mode.into(),
        kind: kind.into(),
        object: "9dfa78395350476edf98ac4dc4c9e5101c6608a5".into(),
        path: path.into(),
    }
}

#[test]
fn the_tree_listing_is_read_with_modes_and_paths() {
    let entries = parse_ls_tree(LAB_LS_TREE.as_bytes()).unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(
        entries[0],
        Entry {
            mode: "100755".into(),
            kind: "blob".into(),
            object: "9dfa78395350476edf98ac4dc4c9e5101c6608a5".into(),
            path: "bin/wiki-healthcheck.sh".into(),
        }
    );
    let exec: Vec<bool> = entries.iter().map(|e| regular_file(e).unwrap()).collect();
    assert_eq!(exec, [true, false, false, false]);
    // A path with spaces and a tab stays whole (the first tab ends the metadata).
    let odd = parse_ls_tree(b"100644 blob abc\tdocs/a b\tc.txt\0").unwrap();
    assert_eq!(odd[0].path, "docs/a b\tc.txt");
    assert!(parse_ls_tree(b"100644 blob\tx\0").is_err());
    assert!(parse_ls_tree(b"garbage\0").is_err());
}

#[test]
fn links_submodules_and_paths_outside_the_tree_are_refused() {
    let e = regular_file(&entry("120000", "blob", "conf/current")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`conf/current` in the tree is a symbolic link; git_overlay lays regular files only"
    );
    let e = regular_file(&entry("160000", "commit", "vendor/lib")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("`vendor/lib` in the tree is a submodule"),
        "{e}"
    );
    for bad in [
        "../etc/passwd",
        "a/../../b",
        "./x",
        "a//b",
        ".git/config",
        "a/.git/hooks/x",
    ] {
        let e = regular_file(&entry("100644", "blob", bad)).unwrap_err();
        assert!(
            e.to_string().contains("cannot be laid over a directory"),
            "{bad}: {e}"
        );
    }
    let e = regular_file(&entry("100644", "blob", "a\nb")).unwrap_err();
    assert!(e.to_string().contains("control character"), "{e}");
}

#[test]
fn blobs_are_cut_from_the_batch_output_by_their_sizes() {
    let out = b"aaa blob 3\nx\ny\nbbb blob 0\n\nccc blob 5\n\0\x01\n\xff\n\n";
    let blobs = parse_batch(out, 3).unwrap();
    assert_eq!(
        blobs,
        vec![b"x\ny".to_vec(), Vec::new(), b"\0\x01\n\xff\n".to_vec()]
    );
    assert!(parse_batch(b"aaa missing\n", 1).is_err());
    assert!(parse_batch(b"aaa blob 10\nshort\n", 1).is_err());
    assert!(parse_batch(b"", 1).is_err());
}

fn file(path: &str, executable: bool) -> TreeFile {
    TreeFile {
        path: path.into(),
        executable,
        data: path.as_bytes().to_vec(),
        sha256: sha256_hex(path.as_bytes()),
    }
}

use crate::modules::sha256_hex;

#[test]
fn directories_come_parents_first_each_once() {
    let tree = Tree {
        files: vec![
            file("bin/x.sh", true),
            file("top.txt", false),
            file("webapps/ROOT/custom/a.html", false),
            file("webapps/ROOT/custom/b.txt", false),
            file("webapps/ROOT/WEB-INF/c.xml", false),
        ],
    };
    assert_eq!(
        tree.dirs(),
        [
            "bin",
            "webapps",
            "webapps/ROOT",
            "webapps/ROOT/WEB-INF",
            "webapps/ROOT/custom"
        ]
    );
    assert!(tree.file("top.txt").is_some() && tree.file("top").is_none());
}

fn args(v: J) -> GitOverlayArgs {
    crate::modules::args::parse("git_overlay", v.as_object().unwrap()).unwrap()
}

const C1: &str = "f71622737a3b15c88f2e9a273dc148ebfbaa6d1d";

#[test]
fn the_rendered_arguments_are_checked_before_anything_is_fetched() {
    let ok = args(
        json!({"repo": "http://repo:8080/c.git", "version": C1.to_uppercase(), "dest": "/opt/wiki/w/"}),
    );
    let o = ok.checked().unwrap();
    assert_eq!((o.commit.as_str(), o.dest.as_str()), (C1, "/opt/wiki/w"));
    assert_eq!(o.path_of("conf/a"), "/opt/wiki/w/conf/a");
    let err = |v: J| {
        args(v)
            .checked()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let base = json!({"repo": "http://r/c.git", "version": C1, "dest": "/d"});
    let with = |k: &str, val: &str| {
        let mut m = base.clone();
        m[k] = json!(val);
        err(m)
    };
    for branch in ["main", "v1.0", "f716227", &format!("{C1}0"), "HEAD~1", ""] {
        let e = with("version", branch);
        assert!(e.starts_with("git_overlay.version: `"), "{branch}: {e}");
        assert!(
            e.contains("is not a commit id; expected the full 40-hex id"),
            "{e}"
        );
    }
    assert!(with("mode", "u=rw").contains("git_overlay.mode: `u=rw` is not an octal file mode"));
    assert!(with("directory_mode", "0855").contains("git_overlay.directory_mode: `0855`"));
    assert_eq!(
        with("repo", "--upload-pack=touch /tmp/x"),
        "git_overlay.repo: `--upload-pack=touch /tmp/x` starts with `-` (git would read it as an option)"
    );
    assert_eq!(
        with("dest", "opt/wiki"),
        "git_overlay.dest: `opt/wiki` is not an absolute path"
    );
    assert_eq!(
        args(json!({"repo": "r", "version": C1, "dest": "/"}))
            .checked()
            .unwrap()
            .path_of("a"),
        "/a"
    );
}

#[test]
fn a_file_git_records_as_executable_gets_execute_where_it_has_read() {
    let o = |mode: Option<&str>| {
        let mut m = json!({"repo": "r", "version": C1, "dest": "/d"});
        if let Some(mode) = mode {
            m["mode"] = json!(mode);
        }
        args(m)
    };
    let a = o(None);
    let c = a.checked().unwrap();
    assert_eq!(
        (c.file_mode(false), c.file_mode(true)),
        ("0644".into(), "0755".into())
    );
    let a = o(Some("0640"));
    let c = a.checked().unwrap();
    assert_eq!(
        (c.file_mode(false), c.file_mode(true)),
        ("0640".into(), "0750".into())
    );
    let a = o(Some("600"));
    assert_eq!(a.checked().unwrap().file_mode(true), "0700");
}

fn stat(sha: &str, owner: &str, mode: &str) -> Stat {
    Stat {
        kind: "regular file".into(),
        owner: owner.into(),
        group: "wiki".into(),
        mode: mode.into(),
        size: 3,
        sha256: Some(sha.into()),
        link_target: None,
        planned_by: None,
    }
}

fn seen(st: Option<Stat>) -> Looked {
    Looked {
        stat: st,
        content: None,
        parent_dir: true,
    }
}

#[test]
fn each_file_is_added_replaced_given_new_attributes_or_left() {
    let want = WantedAttrs {
        owner: Some("root"),
        group: Some("wiki"),
        mode: Some("0644"),
    };
    let d = |l: &Looked| decide_file("/d/a", "abc", want, l).map_err(|e| e.to_string());
    assert_eq!(d(&seen(None)), Ok(Some((true, vec![]))));
    assert_eq!(d(&seen(Some(stat("abc", "root", "0644")))), Ok(None));
    assert_eq!(
        d(&seen(Some(stat("old", "root", "0644")))),
        Ok(Some((true, vec![])))
    );
    assert_eq!(
        d(&seen(Some(stat("abc", "wiki", "0600")))),
        Ok(Some((
            false,
            vec!["owner wiki → root".into(), "mode 0600 → 0644".into()]
        )))
    );
    let mut dir = stat("", "root", "0755");
    dir.kind = "directory".into();
    assert_eq!(
        d(&seen(Some(dir.clone()))),
        Err("/d/a is a directory on the host, where the tree has a file".into())
    );
    // Directories: a missing one is made, a file where the tree has a directory is refused.
    assert!(dir_missing("/d/x", &seen(None)).unwrap());
    assert!(!dir_missing("/d/x", &seen(Some(dir))).unwrap());
    assert_eq!(
        dir_missing("/d/x", &seen(Some(stat("a", "root", "0644"))))
            .unwrap_err()
            .to_string(),
        "/d/x is a regular file on the host, where the tree has a directory"
    );
}

#[test]
fn one_round_trip_reads_every_path_with_content_only_where_it_differs() {
    // What look_many's script prints for: the install dir, a missing directory, a file with
    // other content (sent, base64), a file as wanted (not sent), a missing file.
    let out = "@0 directory|root|root|755|4096\n\
@1 absent parent-dir\n\
@2 regular file|root|root|644|6\nsha 5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03\ndata aGVsbG8K\n\
@3 regular file|root|wiki|640|3\nsha abc\n\
@4 absent\n";
    let looks = parse_looks(out, 5).unwrap();
    assert_eq!(looks[0].stat.as_ref().unwrap().kind, "directory");
    assert!(looks[1].stat.is_none() && looks[1].parent_dir);
    assert_eq!(looks[2].content.as_deref(), Some(&b"hello\n"[..]));
    assert_eq!(looks[2].stat.as_ref().unwrap().mode, "0644");
    assert_eq!(looks[3].content, None);
    assert_eq!(
        looks[3].stat.as_ref().unwrap().sha256.as_deref(),
        Some("abc")
    );
    assert!(looks[4].stat.is_none() && !looks[4].parent_dir);
    // Cut short, out of order, or garbage: an error, never a wrong verdict.
    assert!(parse_looks(out, 6).is_err());
    assert!(parse_looks("@1 absent\n@0 absent\n", 2).is_err());
    assert!(parse_looks("sha abc\n", 1).is_err());
    assert!(parse_looks("@0 regular file|root|root|644|6\ndata ***\n", 1).is_err());
}

fn undo() -> OverlayUndo {
    OverlayUndo {
        dest: "/opt/w".into(),
        commit: C1.into(),
        files: vec![
            UndoAction::RestoreFile {
                path: "/opt/w/conf/l.p".into(),
                backup: "/opt/w/conf/l.p.cutover-r1-abc~".into(),
            },
            UndoAction::RemovePath {
                path: "/opt/w/c/b.html".into(),
            },
            UndoAction::SetAttrs {
                path: "/opt/w/x".into(),
                owner: "root".into(),
                group: "root".into(),
                mode: "0600".into(),
            },
        ],
        dirs: vec!["/opt/w/c".into(), "/opt/w/c/d".into()],
    }
}

/// The journal holds this form: it must read back as the same way back, and run newest first.
#[test]
fn the_way_back_is_journaled_and_runs_newest_first() {
    let form = r#"{"undo":"git_overlay","dest":"/opt/w","commit":"f71622737a3b15c88f2e9a273dc148ebfbaa6d1d","files":[{"undo":"restore_file","path":"/opt/w/conf/l.p","backup":"/opt/w/conf/l.p.cutover-r1-abc~"},{"undo":"remove_path","path":"/opt/w/c/b.html"},{"undo":"set_attrs","path":"/opt/w/x","owner":"root","group":"root","mode":"0600"}],"dirs":["/opt/w/c","/opt/w/c/d"]}"#;
    let action = UndoAction::GitOverlay(undo());
    assert_eq!(serde_json::to_string(&action).unwrap(), form);
    assert_eq!(serde_json::from_str::<UndoAction>(form).unwrap(), action);
    assert_eq!(
        action.describe(),
        "put back 3 file(s) under /opt/w as before commit f71622737a3b (and remove 2 new directories)"
    );
    assert_eq!(
        undo().script(),
        "set -e\n\
if [ -e /opt/w/x ]; then chown -- root:root /opt/w/x; chmod -- 0600 /opt/w/x; fi\n\
rm -f -- /opt/w/c/b.html\n\
if [ -e '/opt/w/conf/l.p.cutover-r1-abc~' ] || [ -L '/opt/w/conf/l.p.cutover-r1-abc~' ]; then mv -f -- '/opt/w/conf/l.p.cutover-r1-abc~' /opt/w/conf/l.p; fi\n\
rmdir -- /opt/w/c/d 2>/dev/null || test ! -e /opt/w/c/d\n\
rmdir -- /opt/w/c 2>/dev/null || test ! -e /opt/w/c\n"
    );
    // `cutover commit` removes the backups it kept, and says so first.
    assert_eq!(
        action.kept_for_undo().as_deref(),
        Some("backups /opt/w/conf/l.p.cutover-r1-abc~")
    );
}

#[test]
fn the_way_back_is_known_from_the_probe_before_anything_is_written() {
    let found = Findings {
        dest: "/opt/w".into(),
        commit: C1.into(),
        mkdirs: vec!["/opt/w/c".into()],
        files: vec![
            FileChange {
                rel: "c/b.html".into(),
                path: "/opt/w/c/b.html".into(),
                sha256: "x".into(),
                mode: "0644".into(),
                content: true,
                stat: None,
            },
            FileChange {
                rel: "conf/l.p".into(),
                path: "/opt/w/conf/l.p".into(),
                sha256: "y".into(),
                mode: "0644".into(),
                content: true,
                stat: Some(stat("0123456789abcdef", "root", "0644")),
            },
        ],
        diffs: vec![],
    };
    assert_eq!(
        found.summary(),
        "lay commit f71622737a3b over /opt/w (1 added, 1 replaced, 1 new directory)"
    );
    let u = found.undo("r1");
    assert_eq!(
        u.files,
        [
            UndoAction::RemovePath {
                path: "/opt/w/c/b.html".into()
            },
            UndoAction::RestoreFile {
                path: "/opt/w/conf/l.p".into(),
                backup: "/opt/w/conf/l.p.cutover-r1-0123456789ab~".into()
            }
        ]
    );
    assert_eq!(u.dirs, ["/opt/w/c"]);
    // The probe's state carries the findings to the apply (and a saved plan) unchanged.
    let back: Findings = serde_json::from_value(serde_json::to_value(&found).unwrap()).unwrap();
    assert_eq!(back.files, found.files);
}

#[test]
fn credentials_in_a_repository_url_are_not_shown() {
    assert_eq!(
        shown_url("https://bob:s3cret@git.example/c.git"),
        "https://git.example/c.git"
    );
    assert_eq!(
        shown_url("https://git.example/a@b/c.git"),
        "https://git.example/a@b/c.git"
    );
    assert_eq!(shown_url("git@git.example:c.git"), "git@git.example:c.git");
}

/// The lab's customizations repository, built by lab/lib/repo.sh into `dir` (the same script
/// the lab runs, so its commit ids are the ones inventory/lab.yml pins).
fn lab_repo(dir: &std::path::Path) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = dir.join("customizations.git");
    let st = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -e; source {root}/lab/lib/common.sh; source {root}/lab/lib/repo.sh; build_customizations_repo {}",
            out.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    out.display().to_string()
}

const C2: &str = "f2b07a62b86f21077da0664104559cd9931174f4";

#[tokio::test]
async fn the_pinned_commit_s_tree_is_read_from_a_fetched_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = lab_repo(tmp.path());
    let cache = tmp.path().join("cache.git");
    let limit = std::time::Duration::from_secs(60);
    let t1 = super::repo::read_tree(&cache, &repo, C1, limit)
        .await
        .unwrap();
    let paths: Vec<(&str, bool)> = t1
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.executable))
        .collect();
    assert_eq!(
        paths,
        [
            ("bin/wiki-healthcheck.sh", true),
            ("conf/logging.properties", false),
            ("webapps/ROOT/custom/banner.html", false)
        ]
    );
    let banner = t1.file("webapps/ROOT/custom/banner.html").unwrap();
    assert_eq!(
        banner.data,
        b"<p class=\"banner\">Lab wiki: customizations v1</p>\n"
    );
    assert_eq!(banner.sha256, sha256_hex(&banner.data));
    // The newer commit is in the same cache: its banner, and its new file.
    let t2 = super::repo::read_tree(&cache, &repo, C2, limit)
        .await
        .unwrap();
    assert_eq!(t2.files.len(), 4);
    assert!(t2
        .file("webapps/ROOT/custom/banner.html")
        .unwrap()
        .data
        .ends_with(b"v2</p>\n"));
    // A pinned commit already in the cache is read without the repository.
    let gone = tmp.path().join("gone.git");
    std::fs::rename(&repo, &gone).unwrap();
    let again = super::repo::read_tree(&cache, &repo, C1, limit)
        .await
        .unwrap();
    assert_eq!(again.files.len(), 3);
    // A commit the repository does not have, and a repository that is not there: errors that
    // name the commit and the repository.
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let e = super::repo::read_tree(&cache, &repo, unknown, limit)
        .await
        .unwrap_err();
    assert!(
        format!("{e:#}").starts_with(&format!("cannot fetch {repo}: ")),
        "{e:#}"
    );
    std::fs::rename(&gone, &repo).unwrap();
    let e = super::repo::read_tree(&cache, &repo, unknown, limit)
        .await
        .unwrap_err();
    assert_eq!(
        format!("{e:#}"),
        format!("commit {unknown} is not in {repo} (fetched its branches and tags; pin a commit that one of them contains)")
    );
}

#[tokio::test]
async fn a_tree_with_a_symbolic_link_is_refused_before_any_host_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("w");
    let sh = |script: &str| {
        let st = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -e; export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t; {script}"
            ))
            .current_dir(tmp.path())
            .status()
            .unwrap();
        assert!(st.success(), "{script}");
    };
    sh("git init -q -b main w && cd w && echo x >a && ln -s /etc/shadow conf && git add -A && git commit -qm l");
    let out = std::process::Command::new("git")
        .args(["-C", &w.display().to_string(), "rev-parse", "HEAD"])
        .output()
        .unwrap();
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let e = super::repo::read_tree(
        &tmp.path().join("c.git"),
        &w.display().to_string(),
        &commit,
        std::time::Duration::from_secs(60),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "`conf` in the tree is a symbolic link; git_overlay lays regular files only"
    );
}
