//! Diagnostics: an error about the user's input, pinned to file, line and column.
//!
//! Validation collects every diagnostic it finds instead of stopping at the first, so an admin
//! fixes a file in one pass rather than one error per run.

use std::fmt;
use std::path::{Path, PathBuf};

/// A position in an input file. Line and column are 1-based; 0 means "the file as a whole".
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub file: PathBuf,
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub fn new(file: &Path, line: u32, col: u32) -> Self {
        Pos {
            file: file.to_path_buf(),
            line,
            col,
        }
    }
    pub fn start(file: &Path) -> Self {
        Pos::new(file, 1, 1)
    }
    /// For things that come from the command line rather than a file.
    pub fn cli(what: &str) -> Self {
        Pos {
            file: PathBuf::from(format!("<{what}>")),
            line: 0,
            col: 0,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub pos: Pos,
    pub message: String,
    /// "did you mean …" or another concrete fix.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            pos,
            message: message.into(),
            help: None,
        }
    }
    pub fn file_error(file: &Path, message: impl Into<String>) -> Self {
        Diagnostic::new(
            Pos {
                file: file.to_path_buf(),
                line: 0,
                col: 0,
            },
            message,
        )
    }
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    /// A help line, unless one is already attached (a "did you mean" is more specific).
    pub fn with_help_if_none(self, help: impl Into<String>) -> Self {
        if self.help.is_some() {
            self
        } else {
            self.with_help(help)
        }
    }
    /// Attach "did you mean `x`?" when one of `candidates` is close to `wrong`.
    pub fn suggest<'a>(self, wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        match closest(wrong, candidates) {
            Some(best) => self.with_help(format!("did you mean `{best}`?")),
            None => self,
        }
    }

    /// Render for a terminal: position, message, the offending source line and a caret.
    /// This is where every error text is made, so secrets are masked here, in the message,
    /// the help and the quoted source line alike.
    pub fn render(&self) -> String {
        use crate::secrets::redact;
        let mut out = format!("error: {}\n  --> {}\n", redact(&self.message), self.pos);
        if let Some((line, caret_at)) = snippet(&self.pos) {
            let n = self.pos.line.to_string();
            let pad = " ".repeat(n.len());
            out.push_str(&format!(
                "{pad} |\n{n} | {line}\n{pad} | {}^\n",
                " ".repeat(caret_at)
            ));
        }
        if let Some(help) = &self.help {
            out.push_str(&format!("  = help: {}\n", redact(help)));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)?;
        if let Some(help) = &self.help {
            write!(f, " ({help})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// A value as it may be shown inside a one-line message: control characters (a line break
/// that would fake another message line) escaped.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The line a position points at, secrets masked, and the caret's column in it. Files are
/// re-read here on purpose: rendering is rare and keeping every source in memory for it is not
/// worth the plumbing.
fn snippet(pos: &Pos) -> Option<(String, usize)> {
    if pos.line == 0 {
        return None;
    }
    // The one bounded, non-blocking reader: a FIFO or a device is refused, never read.
    let bytes = crate::input::read(&pos.file, crate::input::MAX_INPUT_BYTES).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    // An encrypted secrets file: its lines on disk are not the ones the position counts.
    if text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----")
        || text.starts_with("age-encryption.org/")
    {
        return None;
    }
    let line = text.lines().nth(pos.line as usize - 1)?;
    let col = line
        .char_indices()
        .nth(pos.col.saturating_sub(1) as usize)
        .map_or(line.len(), |(i, _)| i);
    // Masked whole before it is cut, so a secret across the cut cannot show in part.
    let (masked, at) = crate::secrets::redact_at(line, col);
    let (masked, at) = crate::secrets::mask_assignments(&masked, at);
    let caret_at = masked[..at].chars().count();
    // Long or control-laden lines would wreck the terminal; show a clean prefix.
    let clean: String = masked
        .chars()
        .take(160)
        .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
        .collect();
    Some((clean, caret_at))
}

/// A set of diagnostics gathered during validation, sorted by position for output.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        if !self.items.contains(&d) {
            self.items.push(d);
        }
    }
    pub fn extend(&mut self, other: Diagnostics) {
        for d in other.items {
            self.push(d);
        }
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by(|a, b| a.pos.cmp(&b.pos));
        self.items
    }
}

/// The candidate closest to `wrong` by edit distance, if close enough to be a likely typo.
pub fn closest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (wrong.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&wrong.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_only_for_near_misses() {
        assert_eq!(closest("app_node", ["app_nodes", "db"]), Some("app_nodes"));
        assert_eq!(closest("hots", ["hosts", "vars"]), Some("hosts"));
        assert_eq!(closest("zzzzzz", ["hosts", "vars"]), None);
    }

    #[test]
    fn display_names_file_line_column() {
        let d = Diagnostic::new(Pos::new(Path::new("a.yml"), 3, 7), "bad").with_help("fix it");
        assert_eq!(d.to_string(), "a.yml:3:7: bad (fix it)");
    }
}
