//! Template errors: every class ends in a diagnostic with file, line and column, and none
//! crashes the process (recursion included).

use super::*;
use std::path::Path;

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

/// The one diagnostic of loading these files, as (file name, line, col, message, help).
fn load_error(files: &[(&str, &str)]) -> (String, u32, u32, String, String) {
    let dir = dir_with(files);
    let errs = Templates::load(dir.path()).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    located(&errs[0], dir.path())
}

fn located(d: &Diagnostic, dir: &Path) -> (String, u32, u32, String, String) {
    let file = d
        .pos
        .file
        .strip_prefix(dir)
        .unwrap_or(&d.pos.file)
        .display()
        .to_string();
    (
        file,
        d.pos.line,
        d.pos.col,
        d.message.clone(),
        d.help.clone().unwrap_or_default(),
    )
}

fn render_error(files: &[(&str, &str)], name: &str, vars: &Vars) -> (String, u32, u32, String) {
    let dir = dir_with(files);
    let t = Templates::load(dir.path()).unwrap();
    let e = t.render(name, vars).unwrap_err();
    let (f, l, c, m, _) = located(&e, dir.path());
    (f, l, c, m)
}

#[test]
fn an_unknown_filter_is_located_with_a_suggestion() {
    let (f, l, c, m, h) = load_error(&[("a.conf", "x\ny = {{ v | lowr }}\n")]);
    assert_eq!((f.as_str(), l, c), ("a.conf", 2, 12));
    assert_eq!(m, "unknown filter `lowr`");
    assert_eq!(h, "did you mean `lower`?");
}

#[test]
fn a_missing_include_is_named_where_it_is_included() {
    let (f, l, c, m, _) = load_error(&[("a.conf", "x\n  {% include \"parts/b.conf\" %}\n")]);
    assert_eq!((f.as_str(), l, c), ("a.conf", 2, 14));
    assert_eq!(m, "unknown template `parts/b.conf`");
}

#[test]
fn an_error_inside_an_included_template_points_there_and_names_the_includer() {
    let files = [
        ("a.conf", "top\n{% include \"b.conf\" %}\n"),
        ("b.conf", "one\ntwo {{ missing_var }}\n"),
    ];
    let (f, l, c, m) = render_error(&files, "a.conf", &Vars::new());
    assert_eq!((f.as_str(), l, c), ("b.conf", 2, 8));
    assert!(
        m.starts_with("undefined variable `missing_var` in template"),
        "{m}"
    );
    assert!(
        m.contains("included by a.conf at ") && m.ends_with("a.conf:2:12)"),
        "{m}"
    );
}

#[test]
fn an_unclosed_tag_points_at_the_line_it_opens() {
    let (f, l, c, m, h) = load_error(&[("a.conf", "a\nport = {{ port \nb\nc = 1\n")]);
    assert_eq!((f.as_str(), l, c), ("a.conf", 2, 8));
    assert!(m.contains("`{{` opened here is never closed"), "{m}");
    assert_eq!(h, "close it with `}}`");
    let (_, l, c, m, _) = load_error(&[("b.conf", "a\n\n   {% if x \nb\n")]);
    assert_eq!((l, c), (3, 4), "{m}");
}

#[test]
fn division_by_zero_fails_at_its_position() {
    let mut v = Vars::new();
    v.insert("n", &0);
    let (f, l, c, m) = render_error(&[("a.conf", "x\nq = {{ 10 / n }}\n")], "a.conf", &v);
    assert_eq!((f.as_str(), l, c), ("a.conf", 2, 13));
    assert!(m.contains("Cannot divide by 0"), "{m}");
}

#[test]
fn recursion_ends_in_a_located_error_not_a_crash() {
    // A template that includes itself.
    let (f, l, c, m, _) = load_error(&[("self.conf", "a\n {% include \"self.conf\" %}\n")]);
    assert_eq!((f.as_str(), l, c), ("self.conf", 2, 13));
    assert!(m.contains("makes a cycle: self.conf → self.conf"), "{m}");
    // Through another.
    let dir = dir_with(&[
        ("a.conf", "{% include \"b.conf\" %}"),
        ("b.conf", "x\n{% include \"a.conf\" %}"),
    ]);
    let errs = Templates::load(dir.path()).unwrap_err();
    assert!(errs.iter().all(|d| d.pos.line > 0), "{errs:?}");
    assert!(errs[0].message.contains("makes a cycle"), "{errs:?}");
    // An extends cycle.
    let dir = dir_with(&[
        ("a.conf", "{% extends \"b.conf\" %}"),
        ("b.conf", "{% extends \"a.conf\" %}"),
    ]);
    let errs = Templates::load(dir.path()).unwrap_err();
    let (f, l, c, m, _) = located(&errs[0], dir.path());
    assert_eq!((f.as_str(), l, c), ("a.conf", 1, 12), "{m}");
    assert_eq!(
        m,
        "`{% extends \"b.conf\" %}` makes a cycle: a.conf → b.conf → a.conf"
    );
    // A component that calls itself: tera stops at its depth limit, with a position.
    let src = "{% component boom(n) %}[{{ <boom n={n} /> }}]{% endcomponent boom %}\nx {{ <boom n={1} /> }}\n";
    let (f, l, c, m) = render_error(&[("c.conf", src)], "c.conf", &Vars::new());
    assert_eq!((f.as_str(), l, c), ("c.conf", 1, 29), "{m}");
    assert!(
        m.contains("component `boom`") && m.contains("recursion depth"),
        "{m}"
    );
}

#[test]
fn a_jinja_macro_says_what_to_write_instead() {
    let (_, l, c, _, h) = load_error(&[("m.conf", "a\n{% macro f(x) %}{{ x }}{% endmacro %}\n")]);
    assert_eq!((l, c), (2, 4));
    assert!(h.contains("component"), "{h}");
}

#[test]
fn a_broken_file_does_not_stop_an_unrelated_render() {
    let files = [
        (
            "good.conf",
            "port = {{ port }}\n{% include \"part.conf\" %}",
        ),
        ("part.conf", "part\n"),
        ("broken.conf", "{{ nope | nofilter }}"),
        ("user.conf", "{% include \"broken.conf\" %}"),
    ];
    let dir = dir_with(&files);
    let mut v = Vars::new();
    v.insert("port", &80);
    let t = Templates::load_used(dir.path(), ["good.conf"]).unwrap();
    assert_eq!(t.render("good.conf", &v).unwrap(), "port = 80\npart\n");
    // `check` still sees every file: the broken one, and the one including it.
    let errs = Templates::load(dir.path()).unwrap_err();
    let files: Vec<String> = errs.iter().map(|d| located(d, dir.path()).0).collect();
    assert_eq!(files, ["broken.conf", "user.conf"], "{errs:?}");
    assert_eq!(
        errs[1].help.as_deref(),
        Some("`broken.conf` has errors of its own")
    );
    // Asking for the one that includes it fails, on that include.
    let errs = Templates::load_used(dir.path(), ["user.conf"]).unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
}

#[test]
fn an_error_in_a_playbook_value_points_into_the_value() {
    let pos = Pos::new(Path::new("site.yml"), 7, 12);
    let e = render_str("echo {{ x | nope }}", &Vars::new(), &pos).unwrap_err();
    assert_eq!((e.pos.line, e.pos.col), (7, 24), "{e}");
    assert_eq!(e.message, "unknown filter `nope`");
    let e = eval_bool("a and b ==", &Vars::new(), &pos).unwrap_err();
    assert_eq!(e.pos.line, 7, "{e}");
    assert_eq!(e.pos.col, 12 + 11, "{e}");
}
