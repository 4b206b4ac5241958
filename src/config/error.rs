//! Configuration errors: every problem found, each with file, line, column and key.
//!
//! [`Report`] is the collector the validator writes into while it walks the files (supervisor.toml, then
//! each drop-in check file); it turns byte spans into 1-based line and column of the file being read
//! and keeps diagnostics in file order, files in the order they were read. This module formats
//! problems; it does not decide what is a problem.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted key path, e.g. `services.send_text.restart`.
    pub key: Option<String>,
    pub message: String,
    /// What is allowed / how to fix it.
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    /// `file:line:col: key: message`, then `  help: ...` on its own line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Every problem found in one pass, in file order. Display prints all of them, one per line
    /// (plus its help line), so the operator can fix the whole file at once.
    #[error("{}", AllDiagnostics(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// The individual problems (empty for a read error).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid(diagnostics) => diagnostics,
        }
    }
}

struct AllDiagnostics<'a>(&'a [Diagnostic]);

impl fmt::Display for AllDiagnostics<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics while the configuration files are validated, one file at a time.
///
/// Spans are byte offsets into the file being read at the moment ([`Report::begin_file`] switches);
/// each diagnostic keeps the file it was found in, so one [`ConfigError`] can hold problems of
/// supervisor.toml and of several drop-in check files.
pub(crate) struct Report {
    /// The file being read, as messages name it.
    file: PathBuf,
    /// Its text, to turn spans into lines and to quote values.
    text: String,
    /// How many files were begun before the current one; problems sort by it first.
    file_index: usize,
    /// (file index, byte offset, problem), to sort into file order at the end.
    found: Vec<(usize, usize, Diagnostic)>,
}

impl Report {
    /// Starts a report whose current file is `file` with contents `text`.
    pub(crate) fn new(file: &Path, text: &str) -> Self {
        Report {
            file: file.to_path_buf(),
            text: text.to_string(),
            file_index: 0,
            found: Vec::new(),
        }
    }

    /// Makes `file` the current file: later spans are offsets into `text`, later diagnostics name
    /// `file`. Its problems are listed after those of the files read before it.
    pub(crate) fn begin_file(&mut self, file: &Path, text: &str) {
        self.file = file.to_path_buf();
        self.text = text.to_string();
        self.file_index += 1;
    }

    /// The current file, as messages name it.
    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    /// Records a problem at `span` (byte offsets into the current file's text).
    pub(crate) fn error(
        &mut self,
        span: Range<usize>,
        key: Option<&str>,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        let (line, column) = self.position(span.start);
        self.found.push((
            self.file_index,
            span.start,
            Diagnostic {
                file: self.file.clone(),
                line: Some(line),
                column: Some(column),
                key: key.map(str::to_string),
                message: message.into(),
                help,
            },
        ));
    }

    /// Records a problem with the current file as a whole (it cannot be read, say): no line, no key.
    pub(crate) fn file_error(&mut self, message: impl Into<String>, help: Option<String>) {
        self.found.push((
            self.file_index,
            0,
            Diagnostic {
                file: self.file.clone(),
                line: None,
                column: None,
                key: None,
                message: message.into(),
                help,
            },
        ));
    }

    /// The source text under `span`, shortened to one readable line for quoting in a message.
    pub(crate) fn snippet(&self, span: Range<usize>) -> String {
        const MAX_CHARS: usize = 60;
        let text = self.text.get(span).unwrap_or_default();
        let first_line = text.lines().next().unwrap_or_default();
        if first_line.chars().count() > MAX_CHARS || first_line.len() < text.trim_end().len() {
            let short: String = first_line.chars().take(MAX_CHARS).collect();
            format!("{short}…")
        } else {
            first_line.to_string()
        }
    }

    /// Consumes the report: `Ok(())` when nothing was found, else the diagnostics in file order.
    pub(crate) fn finish(self) -> Result<(), ConfigError> {
        if self.found.is_empty() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }

    /// The diagnostics found so far: files in reading order, each file's problems in file order.
    pub(crate) fn into_error(mut self) -> ConfigError {
        // Stable: problems at the same offset keep the order they were found in.
        self.found.sort_by_key(|(file, offset, _)| (*file, *offset));
        ConfigError::Invalid(
            self.found
                .into_iter()
                .map(|(_, _, diagnostic)| diagnostic)
                .collect(),
        )
    }

    /// 1-based line and column in the current file (in characters, so a non-ASCII value does not
    /// shift the caret).
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let text = self.text.as_str();
        let offset = offset.min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.matches('\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostic_display_with_and_without_parts() {
        let full = Diagnostic {
            file: PathBuf::from("supervisor.toml"),
            line: Some(12),
            column: Some(24),
            key: Some("services.send_text.min_restart_interval".into()),
            message: "`min_restart_interval = \"10 minutes\"`: expected a duration like 10m".into(),
            help: Some("write \"10m\"".into()),
        };
        assert_eq!(
            full.to_string(),
            "supervisor.toml:12:24: services.send_text.min_restart_interval: \
             `min_restart_interval = \"10 minutes\"`: expected a duration like 10m\n  help: write \"10m\""
        );
        let bare = Diagnostic {
            line: None,
            column: None,
            key: None,
            help: None,
            message: "oops".into(),
            ..full
        };
        assert_eq!(bare.to_string(), "supervisor.toml: oops");
    }

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nname = \"é\" x\n";
        let report = Report::new(Path::new("f.toml"), text);
        assert_eq!(report.position(0), (1, 1));
        assert_eq!(report.position(4), (1, 5));
        assert_eq!(report.position(6), (2, 1));
        let x = text.find('x').unwrap();
        assert_eq!(report.position(x), (2, 12));
        assert_eq!(report.position(text.len()), (3, 1));
    }

    #[test]
    fn finish_sorts_by_position_and_display_prints_all() {
        let text = "a = 1\nb = 2\n";
        let mut report = Report::new(Path::new("f.toml"), text);
        report.error(6..7, Some("b"), "second", None);
        report.error(0..1, Some("a"), "first", Some("fix a".into()));
        let err = report.finish().unwrap_err();
        assert_eq!(err.diagnostics().len(), 2);
        assert_eq!(
            err.to_string(),
            "f.toml:1:1: a: first\n  help: fix a\nf.toml:2:1: b: second"
        );
    }

    #[test]
    fn several_files_keep_their_own_names_positions_and_order() {
        let mut report = Report::new(Path::new("supervisor.toml"), "a = 1\nb = 2\n");
        report.error(6..7, Some("b"), "main, second", None);
        report.begin_file(Path::new("checks/x.toml"), "\n\nc = 3\n");
        assert_eq!(report.file(), Path::new("checks/x.toml"));
        report.error(2..3, Some("checks.c"), "drop-in", None);
        report.file_error("unreadable", Some("fix it".into()));
        report.begin_file(Path::new("checks/y.toml"), "d = 4\n");
        report.error(4..5, Some("d"), "later in y", None);
        report.error(0..1, Some("d"), "last file", None);
        let err = report.finish().unwrap_err();
        assert_eq!(
            err.to_string(),
            "supervisor.toml:2:1: b: main, second\n\
             checks/x.toml: unreadable\n  help: fix it\n\
             checks/x.toml:3:1: checks.c: drop-in\n\
             checks/y.toml:1:1: d: last file\n\
             checks/y.toml:1:5: d: later in y"
        );
        let files: Vec<&Path> = err.diagnostics().iter().map(|d| d.file.as_path()).collect();
        assert_eq!(files[0], Path::new("supervisor.toml"));
        assert_eq!(err.diagnostics()[1].line, None);
    }

    #[test]
    fn snippets_are_shortened_to_one_line() {
        let text = "command = [\n  \"a\",\n]\nx = \"short\"";
        let report = Report::new(Path::new("f.toml"), text);
        assert_eq!(report.snippet(10..text.find("\nx").unwrap()), "[…");
        let start = text.find("\"short").unwrap();
        assert_eq!(report.snippet(start..text.len()), "\"short\"");
    }
}
