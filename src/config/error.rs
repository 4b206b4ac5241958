//! Configuration errors: every problem found, each with file, line, column and key.
use std::path::PathBuf;

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

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration ({} problem(s))", .0.len())]
    Invalid(Vec<Diagnostic>),
}
