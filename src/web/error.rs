//! Errors of the status page: [`WebError`] when it cannot start (bind, TLS files, the generated
//! password file), [`AppError`] for a request, which turns into a JSON error response with the right
//! status code. Messages say what failed and what to do; they never carry a secret.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The status page could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("cannot listen on {addr} for the status page: {source}; pick another [web] listen address or stop what holds it")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the status page's TLS {what} {}: {source}", path.display())]
    TlsRead {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the status page's TLS {what} {} is unusable: {message}; give a PEM file ([web] tls_cert = certificate chain, tls_key = its private key)", path.display())]
    TlsBad {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("cannot {action} {}: {source}; check the permissions of the state dir", path.display())]
    AdminPassword {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot hash the generated admin password: {0}")]
    Hash(String),
}

/// What a request can fail with. Each variant maps to one status code.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("log in first (no valid session; it may have expired)")]
    Unauthorized,
    #[error("wrong user name or password")]
    BadLogin,
    #[error("too many failed logins from {ip}; try again in {retry_after_s} s")]
    TooManyLogins { ip: String, retry_after_s: u64 },
    #[error("too many logins are being checked right now; try again in {retry_after_s} s")]
    LoginsBusy { retry_after_s: u64 },
    #[error("this status page does not answer to host `{0}`; add the name to [web] hosts, or use the address it listens on")]
    Host(String),
    #[error("the request's body did not arrive within {0} ms ([web] body_timeout)")]
    BodyTimeout(u128),
    #[error("the request's body is over {0} bytes")]
    TooLarge(usize),
    #[error("the request's URL is over {0} bytes")]
    UriTooLong(usize),
    #[error("the request's headers are over {0} bytes")]
    HeadersTooLarge(usize),
    /// Another status from a layer below the handlers (routing, extractors), kept with its text.
    #[error("{1}")]
    Status(StatusCode, String),
    #[error("missing or wrong CSRF token: send the X-CSRF-Token header the login answered with (reload the page)")]
    Csrf,
    #[error("user `{0}` is a viewer: viewers see everything and change nothing")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("tend is shutting down")]
    Gone,
    #[error("{0}")]
    Internal(String),
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Unauthorized | AppError::BadLogin => StatusCode::UNAUTHORIZED,
            AppError::TooManyLogins { .. } | AppError::LoginsBusy { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            AppError::Host(_) => StatusCode::MISDIRECTED_REQUEST,
            AppError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            AppError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            AppError::Status(status, _) => *status,
            AppError::Csrf | AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Gone => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::core::CoreGone> for AppError {
    fn from(_: crate::core::CoreGone) -> Self {
        AppError::Gone
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "error": self.to_string(), "status": status.as_u16() });
        let mut response = (status, axum::Json(body)).into_response();
        if let AppError::TooManyLogins { retry_after_s, .. }
        | AppError::LoginsBusy { retry_after_s } = self
        {
            if let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
