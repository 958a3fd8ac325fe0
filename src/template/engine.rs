//! The tera engines: one for files, one for playbook values (whose escape function is the
//! shell's quoting, used for command strings).

use std::sync::OnceLock;

use super::{filters, scan};

/// Does tera (with cutover's additions) know this filter, test or function? Asked on the error
/// path only, by trying a one-line template that uses it.
pub(super) fn known(kind: scan::Kind, name: &str) -> bool {
    let probe = match kind {
        scan::Kind::Filter => format!("{{{{ 1 | {name} }}}}"),
        scan::Kind::Test => format!("{{{{ 1 is {name} }}}}"),
        scan::Kind::Function => format!("{{{{ {name}() }}}}"),
        scan::Kind::Template | scan::Kind::Component => return false,
    };
    match value_engine().render_str(&probe, &tera::Context::new(), false) {
        Ok(_) => true,
        Err(e) => !matches!(e.kind(), tera::ErrorKind::Msg(_)),
    }
}

/// The engine for files under `templates/`: config files, not HTML, so nothing is escaped
/// (tera 2 would HTML-escape `.html` and `.xml` files by default). Public for bench/.
pub fn file_engine() -> tera::Tera {
    let mut tera = tera::Tera::new();
    tera.autoescape_on(Vec::<&str>::new());
    filters::register(&mut tera);
    tera
}

/// The engine for playbook values, built once. Its escape function is the shell's quoting:
/// a `shell`/`command` string renders with escaping on, so every `{{ }}` output becomes one
/// shell word (tera applies the escape to each output that is not marked safe; `shell_quote`
/// and `unquoted` mark theirs safe). Other values render with escaping off.
pub(super) fn value_engine() -> &'static tera::Tera {
    static ENGINE: OnceLock<tera::Tera> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut tera = file_engine();
        tera.set_escape_fn(shell_escape);
        // `escape` still means HTML, whatever the engine's escape function is.
        tera.register_filter("escape", |s: &str, _: tera::Kwargs, _: &tera::State| {
            let mut out = Vec::new();
            tera::escape_html(s, &mut out)
                .map(|_| String::from_utf8_lossy(&out).into_owned())
                .map_err(tera::Error::from)
        });
        tera
    })
}

fn shell_escape(input: &str, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    out.write_all(crate::shell::quote(input).as_bytes())
}
