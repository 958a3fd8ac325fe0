//! The files under `templates/`: loaded one by one, so that a broken file stops only what
//! uses it, and rendered with errors located in the right file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::engine::{file_engine, known};
use super::{bounded, report, scan, taint, Vars};
use crate::diag::{Diagnostic, Pos};

/// The templates of a project, with cutover's filters. A file with errors does not stop the
/// others: it is set aside with its diagnostics, and only rendering it (or a template that
/// includes it) fails.
pub struct Templates {
    pub dir: PathBuf,
    tera: tera::Tera,
    /// The source of every template that loaded.
    sources: BTreeMap<String, String>,
    /// Every file under the directory, loaded or not (for "not found" and suggestions).
    files: BTreeSet<String>,
    /// The templates set aside, with why.
    broken: BTreeMap<String, Vec<Diagnostic>>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Templates {
    /// No templates (for commands that need none, like `cutover rollback`).
    pub fn empty() -> Templates {
        Templates {
            dir: PathBuf::new(),
            tera: file_engine(),
            sources: BTreeMap::new(),
            files: BTreeSet::new(),
            broken: BTreeMap::new(),
        }
    }

    /// Load and validate every file under `dir` (what `check` does): every error of every
    /// file comes back, with its position.
    pub fn load(dir: &Path) -> Result<Templates, Vec<Diagnostic>> {
        let t = Templates::load_lenient(dir, None);
        let diags: Vec<Diagnostic> = t.broken.values().flatten().cloned().collect();
        if diags.is_empty() {
            Ok(t)
        } else {
            Err(diags)
        }
    }

    /// Load the templates `names` and what they include or extend, nothing else: what `render`
    /// and a run need. Errors are those of these templates only.
    pub fn load_used<'a>(
        dir: &Path,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Templates, Vec<Diagnostic>> {
        let wanted: Vec<&str> = names.into_iter().collect();
        let t = Templates::load_lenient(dir, Some(&wanted));
        let diags: Vec<Diagnostic> = t.broken.values().flatten().cloned().collect();
        if diags.is_empty() {
            Ok(t)
        } else {
            Err(diags)
        }
    }

    /// Load what loads; the rest is set aside in `broken`. `only`: these templates and what
    /// they name, instead of every file.
    fn load_lenient(dir: &Path, only: Option<&[&str]>) -> Templates {
        let paths = if dir.is_dir() {
            template_files(dir)
        } else {
            Vec::new()
        };
        let files: BTreeSet<String> = paths.iter().map(|(n, _)| n.clone()).collect();
        let by_name: BTreeMap<&str, &PathBuf> =
            paths.iter().map(|(n, p)| (n.as_str(), p)).collect();
        let mut broken: BTreeMap<String, Vec<Diagnostic>> = BTreeMap::new();
        let mut sources: BTreeMap<String, String> = BTreeMap::new();
        let mut todo: Vec<String> = match only {
            Some(names) => names.iter().map(|s| s.to_string()).collect(),
            None => files.iter().cloned().collect(),
        };
        while let Some(name) = todo.pop() {
            if sources.contains_key(&name) || broken.contains_key(&name) {
                continue;
            }
            let Some(path) = by_name.get(name.as_str()) else {
                continue;
            };
            match read_template(path) {
                Ok(text) => {
                    if only.is_some() {
                        todo.extend(scan::templates_named(&text));
                    }
                    sources.insert(name, text);
                }
                Err(e) => {
                    broken.insert(
                        name,
                        vec![Diagnostic::file_error(path, format!("template: {e}"))],
                    );
                }
            }
        }
        let mut t = Templates {
            dir: dir.to_path_buf(),
            tera: file_engine(),
            sources,
            files,
            broken,
        };
        t.build();
        t
    }

    /// Add the sources to tera; a template tera refuses is set aside with its diagnostics and
    /// the rest is tried again (a template including a refused one is then refused in turn).
    fn build(&mut self) {
        loop {
            let mut tera = file_engine();
            let Err(e) = tera.add_raw_templates(self.sources.iter()) else {
                self.tera = tera;
                return;
            };
            let culprits = self.culprits(&e);
            for (name, d) in culprits {
                self.sources.remove(&name);
                self.broken.entry(name).or_default().push(d);
            }
        }
    }

    /// Which templates an error of the whole set is about. tera names one template in a syntax
    /// error or a cycle; an unknown filter or include is looked for in each.
    fn culprits(&self, e: &tera::Error) -> Vec<(String, Diagnostic)> {
        let any = self.sources.keys().next().cloned().unwrap_or_default();
        let found = report::diagnose(e, &any, self, &known, &|_| true);
        let named: Vec<(String, Diagnostic)> = found
            .into_iter()
            .filter(|(n, d)| self.sources.contains_key(n) && d.pos.line > 0)
            .collect();
        if !named.is_empty() && !matches!(e.kind(), tera::ErrorKind::Msg(_)) {
            return named;
        }
        let mut out = Vec::new();
        for name in self.sources.keys() {
            out.extend(report::unknown_in(name, self, &known));
        }
        if out.is_empty() {
            // Nothing to point at: set everything aside rather than loop.
            let msg = crate::secrets::redact(&e.to_string()).into_owned();
            out = self
                .sources
                .keys()
                .map(|n| {
                    let d =
                        Diagnostic::file_error(&self.dir.join(n), format!("template {n}: {msg}"));
                    (n.clone(), d)
                })
                .collect();
        }
        out
    }

    /// Is there a template file of this name (loaded or not)?
    pub fn exists(&self, name: &str) -> bool {
        self.files.contains(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(String::as_str)
    }

    /// Render a template for a host. Errors name the template (and the one including it),
    /// line and column. Values derived from secrets are registered for masking (`taint`).
    pub fn render(&self, name: &str, vars: &Vars) -> Result<String, Diagnostic> {
        if let Some(d) = self.broken.get(name).and_then(|ds| ds.first()) {
            return Err(d.clone());
        }
        if !self.sources.contains_key(name) {
            return Err(Diagnostic::file_error(
                &self.dir.join(name),
                format!("template `{name}` not found in {}", self.dir.display()),
            ));
        }
        taint::render(vars, |v| {
            bounded::render(|out| self.tera.render_to(name, &v.to_tera(), out)).map_err(|f| {
                let e = match f {
                    bounded::Failed::Tera(e) => e,
                    bounded::Failed::TooLarge => {
                        let what = format!("template `{name}`");
                        return Diagnostic::file_error(
                            &self.dir.join(name),
                            bounded::too_large(&what),
                        );
                    }
                };
                let mut ds = report::diagnose(&e, name, self, &known, &|n| v.contains_key(n));
                ds.remove(0).1
            })
        })
    }
}

impl report::Sources for Templates {
    fn source(&self, name: &str) -> Option<&str> {
        self.sources.get(name).map(String::as_str)
    }
    fn pos(&self, name: &str, line: u32, col: u32) -> Pos {
        Pos::new(&self.dir.join(name), line, col)
    }
    fn label(&self, name: &str) -> String {
        format!("template {}", self.dir.join(name).display())
    }
    fn exists(&self, name: &str) -> bool {
        self.sources.contains_key(name)
    }
    fn missing_help(&self, name: &str) -> Option<String> {
        self.files
            .contains(name)
            .then(|| format!("`{name}` has errors of its own"))
    }
    /// Who includes `name` on the way from `top`: a breadth-first walk of the include graph.
    fn includer(&self, top: &str, name: &str) -> Option<(String, u32, u32)> {
        let mut seen = BTreeSet::from([top.to_string()]);
        let mut queue = std::collections::VecDeque::from([top.to_string()]);
        while let Some(t) = queue.pop_front() {
            for u in scan::uses(self.sources.get(&t)?) {
                if u.kind != scan::Kind::Template {
                    continue;
                }
                if u.name == name {
                    return Some((t, u.line, u.col));
                }
                if seen.insert(u.name.clone()) {
                    queue.push_back(u.name);
                }
            }
        }
        None
    }
}

/// A template file's text: a regular file of at most `input::MAX_INPUT_BYTES` (a FIFO or a
/// device is refused without blocking), UTF-8.
fn read_template(path: &Path) -> Result<String, String> {
    let bytes =
        crate::input::read(path, crate::input::MAX_INPUT_BYTES).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "file is not UTF-8 text".to_string())
}

/// Every file under a templates directory, by name relative to it, in name order. A
/// symlinked directory is followed, but no real directory twice: two links back to `.` would
/// otherwise make the walk exponential.
pub fn template_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    collect_files(dir, dir, &mut BTreeSet::new(), &mut out);
    out
}

fn collect_files(
    root: &Path,
    dir: &Path,
    seen: &mut BTreeSet<PathBuf>,
    out: &mut Vec<(String, PathBuf)>,
) {
    let fresh = std::fs::canonicalize(dir).is_ok_and(|real| seen.insert(real));
    if !fresh {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            collect_files(root, &p, seen, out);
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push((rel.to_string_lossy().into_owned(), p.clone()));
        }
    }
}
