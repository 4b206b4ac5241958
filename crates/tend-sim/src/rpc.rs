//! The emulated Telegram: request methods and the errors Telethon raises, with their exact `str()`.
//!
//! Owns the mapping from an error to its Python class, module path and message. It must not decide how
//! an error is answered over HTTP (that is `http.rs`) nor when one happens (that is `flood.rs`).

use super::texts;

/// The Telegram request kinds the flood model knows about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    GetDialogs,
    SendMessage,
    SendMedia,
}

impl Method {
    /// The key used in the account file (`flood_until`, `requests`).
    pub fn key(self) -> &'static str {
        match self {
            Method::GetDialogs => "GetDialogs",
            Method::SendMessage => "SendMessage",
            Method::SendMedia => "SendMedia",
        }
    }

    /// The request class name Telethon prints (`caused by …`, `on … flood wait`).
    pub fn request(self) -> &'static str {
        match self {
            Method::GetDialogs => "GetDialogsRequest",
            Method::SendMessage => "SendMessageRequest",
            Method::SendMedia => "SendMediaRequest",
        }
    }

    /// Accepts `GetDialogs`, `GetDialogsRequest`, `messages.GetDialogs`, any case.
    pub fn parse(text: &str) -> Option<Method> {
        let t = text.trim().to_ascii_lowercase();
        let t = t.strip_prefix("messages.").unwrap_or(&t);
        let t = t.strip_suffix("request").unwrap_or(t);
        match t {
            "getdialogs" => Some(Method::GetDialogs),
            "sendmessage" => Some(Method::SendMessage),
            "sendmedia" => Some(Method::SendMedia),
            _ => None,
        }
    }
}

/// An exception as the Python service would see it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    #[error("{}", texts::flood_wait(*seconds, request))]
    FloodWait { seconds: u64, request: &'static str },
    #[error("You're banned from sending messages in supergroups/channels (caused by {request})")]
    UserBannedInChannel { request: &'static str },
    #[error("You can't write in this chat (caused by {request})")]
    ChatWriteForbidden { request: &'static str },
    #[error("An invalid Peer was used. Make sure to pass the right peer type and that the value is valid (for instance, bots cannot start conversations) (caused by {request})")]
    PeerIdInvalid { request: &'static str },
    #[error("The provided message is empty (caused by {request})")]
    MessageEmpty { request: &'static str },
    #[error("The file reference has expired and is no longer valid or it belongs to self-destructing media and cannot be resent (caused by {request})")]
    FileReferenceExpired { request: &'static str },
    /// A username that resolves to nothing (Telethon's ValueError; send_media answers it with 404).
    #[error("{}", texts::entity_not_found(.0))]
    EntityNotFound(String),
    /// Any other ValueError (the scripts' own cache-miss errors, retries exhausted).
    #[error("{0}")]
    Value(String),
    /// `ConnectionError: Connection to Telegram failed N time(s)`.
    #[error("Connection to Telegram failed {0} time(s)")]
    Connection(u32),
    /// `run_coroutine_threadsafe(...).result(timeout)` gave up; Python's message is empty.
    #[error("")]
    Timeout,
    /// The emulator's own machinery failed (state file); shown as a RuntimeError.
    #[error("tend-sim: {0}")]
    Emulator(String),
}

impl RpcError {
    /// The Python class name, as in `send_text failed: <Class>: …`.
    pub fn class(&self) -> &'static str {
        match self {
            RpcError::FloodWait { .. } => "FloodWaitError",
            RpcError::UserBannedInChannel { .. } => "UserBannedInChannelError",
            RpcError::ChatWriteForbidden { .. } => "ChatWriteForbiddenError",
            RpcError::PeerIdInvalid { .. } => "PeerIdInvalidError",
            RpcError::MessageEmpty { .. } => "MessageEmptyError",
            RpcError::FileReferenceExpired { .. } => "FileReferenceExpiredError",
            RpcError::EntityNotFound(_) | RpcError::Value(_) => "ValueError",
            RpcError::Connection(_) => "ConnectionError",
            RpcError::Timeout => "TimeoutError",
            RpcError::Emulator(_) => "RuntimeError",
        }
    }

    /// The name a traceback's last line uses: `telethon.errors.rpcerrorlist.FloodWaitError` for RPC
    /// errors, the bare builtin name otherwise.
    pub fn qualname(&self) -> String {
        match self {
            RpcError::FloodWait { .. }
            | RpcError::UserBannedInChannel { .. }
            | RpcError::ChatWriteForbidden { .. }
            | RpcError::PeerIdInvalid { .. }
            | RpcError::MessageEmpty { .. }
            | RpcError::FileReferenceExpired { .. } => {
                format!("telethon.errors.rpcerrorlist.{}", self.class())
            }
            _ => self.class().to_string(),
        }
    }

    /// The traceback's final line.
    pub fn exception_line(&self) -> String {
        texts::exception_line(&self.qualname(), &self.to_string())
    }

    /// Is this an error of the RPC layer (as opposed to the scripts' own ValueErrors)?
    pub fn is_rpc(&self) -> bool {
        self.qualname().starts_with("telethon.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_and_class_match_telethon() {
        let table = [
            (
                RpcError::FloodWait {
                    seconds: 27,
                    request: "GetDialogsRequest",
                },
                "FloodWaitError",
                "A wait of 27 seconds is required (caused by GetDialogsRequest)",
            ),
            (
                RpcError::ChatWriteForbidden {
                    request: "SendMessageRequest",
                },
                "ChatWriteForbiddenError",
                "You can't write in this chat (caused by SendMessageRequest)",
            ),
            (RpcError::Timeout, "TimeoutError", ""),
            (
                RpcError::Value(texts::unsuccessful(5)),
                "ValueError",
                "Request was unsuccessful 5 time(s)",
            ),
        ];
        for (err, class, text) in table {
            assert_eq!(err.class(), class);
            assert_eq!(err.to_string(), text);
        }
        assert_eq!(
            RpcError::FloodWait {
                seconds: 1800,
                request: "GetDialogsRequest"
            }
            .exception_line(),
            "telethon.errors.rpcerrorlist.FloodWaitError: A wait of 1800 seconds is required (caused by GetDialogsRequest)"
        );
        assert_eq!(RpcError::Timeout.exception_line(), "TimeoutError");
    }

    #[test]
    fn method_parse_accepts_common_spellings() {
        for text in [
            "GetDialogs",
            "GetDialogsRequest",
            "messages.GetDialogs",
            "getdialogs",
        ] {
            assert_eq!(Method::parse(text), Some(Method::GetDialogs), "{text}");
        }
        assert_eq!(Method::parse("SendMediaRequest"), Some(Method::SendMedia));
        assert_eq!(Method::parse("GetHistory"), None);
    }
}
