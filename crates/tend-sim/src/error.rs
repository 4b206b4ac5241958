//! Errors of the emulator's own machinery: files, locks, sockets, options.
//!
//! The errors of the *emulated* Telegram (FloodWaitError and friends) are not here: they are part of the
//! model and live in `rpc.rs`. Nothing in this module decides what to do about an error.

use std::path::PathBuf;

/// A failure of tend-sim itself (not of the service it emulates).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A file operation failed; `action` says what the emulator was doing.
    #[error("{action} {}: {err}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        err: std::io::Error,
    },
    /// `flock` on the account lock file failed.
    #[error("locking account state {}: {err}; the state dir must be on a local filesystem that supports flock", path.display())]
    Lock {
        path: PathBuf,
        err: nix::errno::Errno,
    },
    /// The shared account file exists but is not ours or got damaged.
    #[error("account state {} is not valid JSON ({err}); delete the file to reset the account", path.display())]
    Corrupt {
        path: PathBuf,
        err: serde_json::Error,
    },
    /// The HTTP port could not be bound.
    #[error("binding {addr}: {err}; is another service on that port? choose another --port (0 picks a free one)")]
    Bind { addr: String, err: std::io::Error },
    /// The HTTP server stopped with an error.
    #[error("serving HTTP on {addr}: {err}")]
    Serve { addr: String, err: std::io::Error },
    /// Command-line options that parse but make no sense; every problem is listed at once.
    #[error("invalid options: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The tokio runtime could not be built.
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl SimError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        SimError::Io {
            action,
            path: path.into(),
            err,
        }
    }
}
