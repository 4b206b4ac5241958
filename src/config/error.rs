//! Configuration errors: every problem found, each with file, line, column and key.
//!
//! [`Report`] is the collector the validator writes into while it walks the file; it turns byte spans
//! into 1-based line and column and keeps diagnostics in file order. This module formats problems; it
//! does not decide what is a problem.

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

/// Collects diagnostics for one file while it is being validated.
pub(crate) struct Report<'a> {
    file: &'a Path,
    text: &'a str,
    /// Byte offset of each problem, to sort them into file order at the end.
    found: Vec<(usize, Diagnostic)>,
}

impl<'a> Report<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        Report {
            file,
            text,
            found: Vec::new(),
        }
    }

    /// Records a problem at `span` (byte offsets into the file text).
    pub(crate) fn error(
        &mut self,
        span: Range<usize>,
        key: Option<&str>,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        let (line, column) = self.position(span.start);
        self.found.push((
            span.start,
            Diagnostic {
                file: self.file.to_path_buf(),
                line: Some(line),
                column: Some(column),
                key: key.map(str::to_string),
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

    /// The diagnostics found so far, in file order.
    pub(crate) fn into_error(mut self) -> ConfigError {
        // Stable: problems at the same offset keep the order they were found in.
        self.found.sort_by_key(|(offset, _)| *offset);
        ConfigError::Invalid(
            self.found
                .into_iter()
                .map(|(_, diagnostic)| diagnostic)
                .collect(),
        )
    }

    /// 1-based line and column (in characters, so a non-ASCII value does not shift the caret).
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
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
    fn snippets_are_shortened_to_one_line() {
        let text = "command = [\n  \"a\",\n]\nx = \"short\"";
        let report = Report::new(Path::new("f.toml"), text);
        assert_eq!(report.snippet(10..text.find("\nx").unwrap()), "[…");
        let start = text.find("\"short").unwrap();
        assert_eq!(report.snippet(start..text.len()), "\"short\"");
    }
}
