//! Errors of the log module. Each variant names the file or directory and the operation that failed, so
//! the message alone tells the operator what to fix. Only opening and explicit reads/flushes return
//! errors: once a log is open, write failures are reported through `tracing` and never stop capture.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The service name cannot be used as a file name.
    #[error(
        "invalid service name {name:?} for a log file: it must be non-empty, not `.`/`..`, \
         and contain no `/` or NUL"
    )]
    InvalidName { name: String },

    #[error("cannot create log directory {}: {source}; check its permissions or change `log_dir`", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot open log file {} for appending: {source}; check permissions and free space", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot read log file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    /// Some lines accepted since the previous flush did not reach the file (they are still in the ring
    /// and were published); the writer keeps retrying with the next line.
    #[error("cannot write log file {}: {source}; is the disk full or the file no longer writable?", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot start the log writer thread for {name}: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },

    /// The writer was closed (or stopped); nothing more can be written through this handle.
    #[error("the log writer for {} is closed; open the log again to write to it", path.display())]
    Closed { path: PathBuf },
}
