//! CLI side of the control socket.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::protocol::{self, Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("tend is not running: no daemon answers at {} ({source}); start it with `tend up`", path.display())]
    NotRunning {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("permission denied on control socket {}: run as the user that runs tend, or set socket_group/socket_mode", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("lost the connection to tend at {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tend closed the connection without answering")]
    NoReply,
    #[error("{0}")]
    Protocol(String),
}

pub struct Client {
    path: PathBuf,
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Client {
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).await.map_err(|source| {
            if source.kind() == std::io::ErrorKind::PermissionDenied {
                ClientError::PermissionDenied {
                    path: path.to_path_buf(),
                }
            } else {
                ClientError::NotRunning {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        let (read, writer) = stream.into_split();
        Ok(Client {
            path: path.to_path_buf(),
            reader: BufReader::new(read),
            writer,
        })
    }

    fn io(&self) -> impl FnOnce(std::io::Error) -> ClientError {
        let path = self.path.clone();
        move |source| ClientError::Io { path, source }
    }

    pub async fn send(&mut self, request: &Request) -> Result<(), ClientError> {
        let line = protocol::encode(request);
        let io = self.io();
        self.writer.write_all(line.as_bytes()).await.map_err(io)
    }

    /// The next response; `None` when the daemon closed the connection.
    pub async fn next(&mut self) -> Result<Option<Response>, ClientError> {
        let mut line = String::new();
        let io = self.io();
        let n = self.reader.read_line(&mut line).await.map_err(io)?;
        if n == 0 {
            return Ok(None);
        }
        protocol::decode_response(line.trim_end())
            .map(Some)
            .map_err(ClientError::Protocol)
    }

    /// Sends one request and waits for its one response.
    pub async fn call(&mut self, request: &Request) -> Result<Response, ClientError> {
        self.send(request).await?;
        self.next().await?.ok_or(ClientError::NoReply)
    }
}

/// The control socket path a config file names, read without validating the rest of the file, so that
/// `tend status` still works while someone is editing a broken config.
pub fn socket_path_from_config(config: &Path) -> Result<PathBuf, String> {
    let text = std::fs::read_to_string(config).map_err(|e| {
        format!(
            "cannot read {} to find the control socket: {e}; pass --socket PATH or -c CONFIG",
            config.display()
        )
    })?;
    let dir = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let value: toml::Table = toml::from_str(&text).unwrap_or_default();
    let supervisor = value.get("supervisor").and_then(|s| s.as_table());
    let get = |key: &str| supervisor.and_then(|s| s.get(key)).and_then(|v| v.as_str());
    let path = match get("socket") {
        Some(socket) => dir.join(socket),
        None => dir
            .join(get("state_dir").unwrap_or("state"))
            .join("tend.sock"),
    };
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("supervisor.toml");
        std::fs::write(&cfg, "[supervisor]\nstate_dir = \"st\"\n").unwrap();
        assert_eq!(
            socket_path_from_config(&cfg).unwrap(),
            dir.path().join("st/tend.sock")
        );
        std::fs::write(&cfg, "[supervisor]\nsocket = \"/run/x.sock\"\n").unwrap();
        assert_eq!(
            socket_path_from_config(&cfg).unwrap(),
            PathBuf::from("/run/x.sock")
        );
        // A broken file still yields the default.
        std::fs::write(&cfg, "[supervisor\n").unwrap();
        assert_eq!(
            socket_path_from_config(&cfg).unwrap(),
            dir.path().join("state/tend.sock")
        );
    }
}
