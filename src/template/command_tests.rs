//! Issue 15 class 5: interpolations in `shell`/`command` strings are one shell word each.

use super::*;

fn vars() -> Vars {
    let mut v = Vars::new();
    v.insert("evil", "x; rm -rf / #");
    v.insert("dir", "/srv/my data");
    v.insert("plain", "/srv/backup");
    v.insert("flags", "-a -v");
    v.insert("names", &["a b", "c"]);
    v
}

fn cmd(text: &str) -> String {
    render_command(text, &vars(), &Pos::cli("t")).unwrap()
}

#[test]
fn every_interpolation_is_one_shell_word() {
    assert_eq!(cmd("echo {{ evil }}"), "echo 'x; rm -rf / #'");
    assert_eq!(cmd("ls {{ dir }}/x"), "ls '/srv/my data'/x");
    // Values made only of safe characters are left bare: shipped commands render as before.
    assert_eq!(cmd("mkdir -p {{ plain }}"), "mkdir -p /srv/backup");
    // Whatever the expression: filters, concatenation, a loop's variable.
    assert_eq!(cmd("echo {{ evil | upper }}"), "echo 'X; RM -RF / #'");
    assert_eq!(cmd("echo {{ 'a' ~ evil }}"), "echo 'ax; rm -rf / #'");
    assert_eq!(
        cmd("{% for n in names %}touch {{ n }};{% endfor %}"),
        "touch 'a b';touch c;"
    );
    // The template's own text is the template author's shell code, as written.
    assert_eq!(cmd("a && b | c"), "a && b | c");
}

#[test]
fn shell_quote_is_not_quoted_twice_and_unquoted_opts_out() {
    assert_eq!(cmd("echo {{ evil | shell_quote }}"), "echo 'x; rm -rf / #'");
    assert_eq!(cmd("echo {{ evil | quote }}"), "echo 'x; rm -rf / #'");
    assert_eq!(cmd("ls {{ flags | unquoted }}"), "ls -a -v");
    // Outside command strings nothing is quoted.
    assert_eq!(
        render_str("echo {{ evil }}", &vars(), &Pos::cli("t")).unwrap(),
        "echo x; rm -rf / #"
    );
}

#[test]
fn only_the_cmd_of_shell_and_command_is_a_command_string() {
    assert!(is_command_string("shell", "cmd"));
    assert!(is_command_string("command", "cmd"));
    assert!(!is_command_string("command", "argv"));
    assert!(!is_command_string("shell", "creates"));
    assert!(!is_command_string("copy", "cmd"));
    // A command's `cmd` splits into argv by shell rules: the quoted value stays one argument.
    let v = render_command_value("rm -f {{ dir }}", &vars(), &Pos::cli("t")).unwrap();
    assert_eq!(v, J::String("rm -f '/srv/my data'".into()));
}
