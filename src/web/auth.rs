//! Logins, sessions, CSRF tokens and the failed-login limiter of the status page; password hashing for
//! `tend hash-password` and the generated admin password of a config without users.
//!
//! Sessions live in memory only (a restart of tend logs everyone out) behind a mutex local to this
//! module; nothing here talks to the core. A session is a random 256-bit token in an HttpOnly,
//! SameSite=Strict cookie (Secure under TLS) plus a second random token the page must echo in the
//! `X-CSRF-Token` header of every state-changing request.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method};
use rand::Rng;
use serde::Serialize;
use tokio::time::Instant;

use super::error::{AppError, WebError};
use super::{ClientAddr, WebState};
use crate::config::{WebRole, WebUser};

pub const COOKIE: &str = "tend_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Failed logins per client address within [`FAILURE_WINDOW`] before further attempts are refused.
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(5 * 60);
/// The file holding the hash of the generated admin password, in the state dir.
pub const ADMIN_HASH_FILE: &str = "web-admin.hash";

/// Hashes `password` with argon2id and a random salt; the PHC string `[[web.users]]` takes.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = argon2::password_hash::SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `hash`. A malformed hash matches nothing.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

fn random_token(bytes: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.gen::<u8>()))
        .collect()
}

/// The `admin` user of a config without `[[web.users]]`: its hash is kept in the state dir; the
/// password itself is generated on the first start and printed once on the terminal, never stored.
pub fn generated_admin(
    state_dir: &Path,
    listen: SocketAddr,
    tls: bool,
) -> Result<WebUser, WebError> {
    let path = state_dir.join(ADMIN_HASH_FILE);
    let err = |action: &'static str| {
        let path = path.clone();
        move |source| WebError::AdminPassword {
            action,
            path,
            source,
        }
    };
    let user = |password_hash: String| WebUser {
        name: "admin".into(),
        password_hash,
        role: WebRole::Operator,
    };
    match std::fs::read_to_string(&path) {
        Ok(hash) if PasswordHash::new(hash.trim()).is_ok() => {
            return Ok(user(hash.trim().to_string()))
        }
        Ok(_) => tracing::warn!(
            "{} holds no valid hash; generating a new admin password",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err("read")(e)),
    }
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    let password: String = (0..20)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    let hash = hash_password(&password).map_err(WebError::Hash)?;
    std::fs::create_dir_all(state_dir).map_err(err("create the directory of"))?;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(err("write"))?;
        file.write_all(format!("{hash}\n").as_bytes())
            .map_err(err("write"))?;
    }
    let scheme = if tls { "https" } else { "http" };
    // The one place the password appears: the terminal of the first `tend up`.
    eprintln!(
        "tend: status page {scheme}://{listen}/  user: admin  password: {password}\n\
         tend: (shown once; only its hash is kept in {}; delete that file for a new password, or \
         add [[web.users]] with `tend hash-password`)",
        path.display()
    );
    tracing::info!(
        "generated the status page's admin password (hash in {})",
        path.display()
    );
    Ok(user(hash))
}

/// A logged-in user.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    pub user: String,
    pub role: WebRole,
    pub csrf: String,
    #[serde(skip)]
    pub token: String,
    #[serde(skip)]
    pub expires: Instant,
}

/// Users, sessions and the limiter.
pub struct Auth {
    users: HashMap<String, WebUser>,
    ttl: Duration,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
    /// Verified against when the user does not exist, so a wrong name costs as long as a wrong password.
    dummy_hash: String,
}

impl Auth {
    pub fn new(users: Vec<WebUser>, ttl: Duration) -> Auth {
        Auth {
            users: users.into_iter().map(|u| (u.name.clone(), u)).collect(),
            ttl,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            dummy_hash: hash_password("not a password").unwrap_or_default(),
        }
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding it cannot leave the map half-updated (every update is one insert or
        // remove), so a poisoned lock is still usable.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, VecDeque<Instant>>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seconds until `ip` may try again, if it is over the limit.
    fn blocked_for(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let mut failures = self.lock_failures();
        let list = failures.get_mut(&ip)?;
        while list
            .front()
            .is_some_and(|t| now.duration_since(*t) >= FAILURE_WINDOW)
        {
            list.pop_front();
        }
        if list.len() < MAX_FAILURES {
            return None;
        }
        let oldest = *list.front()?;
        Some(
            (FAILURE_WINDOW - now.duration_since(oldest))
                .as_secs()
                .max(1),
        )
    }

    /// Checks the password (off the runtime: argon2 is deliberately slow) and opens a session.
    pub async fn login(&self, user: &str, password: &str, ip: IpAddr) -> Result<Session, AppError> {
        let now = Instant::now();
        if let Some(retry_after_s) = self.blocked_for(ip, now) {
            return Err(AppError::TooManyLogins {
                ip: ip.to_string(),
                retry_after_s,
            });
        }
        let known = self.users.get(user);
        let hash = known.map_or(self.dummy_hash.clone(), |u| u.password_hash.clone());
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
            .await
            .unwrap_or(false);
        let Some(known) = known.filter(|_| ok) else {
            self.lock_failures().entry(ip).or_default().push_back(now);
            return Err(AppError::BadLogin);
        };
        self.lock_failures().remove(&ip);
        let session = Session {
            user: known.name.clone(),
            role: known.role,
            csrf: random_token(32),
            token: random_token(32),
            expires: Instant::now() + self.ttl,
        };
        let mut sessions = self.lock_sessions();
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(session.token.clone(), session.clone());
        Ok(session)
    }

    /// The live session of `token`; an expired one is removed.
    pub fn session(&self, token: &str) -> Option<Session> {
        let mut sessions = self.lock_sessions();
        let session = sessions.get(token)?;
        if session.expires <= Instant::now() {
            sessions.remove(token);
            return None;
        }
        Some(session.clone())
    }

    pub fn logout(&self, token: &str) {
        self.lock_sessions().remove(token);
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Writes the live sessions to `path` (0600, replaced atomically) for the image a `tend reexec`
    /// starts, so nobody signed in is signed out by an upgrade. The file lives only for the switch:
    /// [`Auth::take_handover`] deletes it.
    pub fn save_handover(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let now = Instant::now();
        let saved: Vec<HandedOver> = self
            .lock_sessions()
            .values()
            .filter(|s| s.expires > now)
            .map(|s| HandedOver {
                token: s.token.clone(),
                user: s.user.clone(),
                csrf: s.csrf.clone(),
                remaining_ms: (s.expires - now).as_millis() as u64,
            })
            .collect();
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&serde_json::to_vec(&saved).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// Reads and deletes what [`Auth::save_handover`] wrote; sessions of users that no longer exist (or
    /// whose role is looked up anew) are dropped. Returns how many were taken over.
    pub fn take_handover(&self, path: &Path) -> usize {
        let Ok(bytes) = std::fs::read(path) else {
            return 0;
        };
        let _ = std::fs::remove_file(path);
        let Ok(saved) = serde_json::from_slice::<Vec<HandedOver>>(&bytes) else {
            return 0;
        };
        let now = Instant::now();
        let mut sessions = self.lock_sessions();
        let mut taken = 0;
        for s in saved {
            let Some(user) = self.users.get(&s.user) else {
                continue;
            };
            let session = Session {
                user: user.name.clone(),
                role: user.role,
                csrf: s.csrf,
                token: s.token,
                expires: now + Duration::from_millis(s.remaining_ms).min(self.ttl),
            };
            sessions.insert(session.token.clone(), session);
            taken += 1;
        }
        taken
    }
}

/// A session as handed to the next image at `tend reexec`.
#[derive(Serialize, serde::Deserialize)]
struct HandedOver {
    token: String,
    user: String,
    csrf: String,
    remaining_ms: u64,
}

/// The `Set-Cookie` value of a new session (or of its removal, with `max_age = 0`).
pub fn cookie(token: &str, max_age: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        max_age.as_secs()
    )
}

fn cookie_token(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The client's address: the TCP peer (proxy headers are not trusted).
pub fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<ClientAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0 .0.ip())
}

/// Whether a browser-sent `Origin` (if any) is this site. Requests without `Origin` (scripts, curl)
/// pass; the CSRF token still protects them.
pub fn same_origin(parts: &Parts) -> bool {
    let Some(origin) = parts.headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(host) = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    origin.to_str().is_ok_and(|o| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
            == Some(host)
    })
}

/// A request from a logged-in user. On anything but GET/HEAD it also proves the CSRF token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub session: Session,
    pub ip: IpAddr,
}

impl Caller {
    /// `web:<user>@<ip>`: what the core records as the start reason and writes to the service log.
    pub fn by(&self) -> String {
        format!("web:{}@{}", self.session.user, self.ip)
    }
}

impl FromRequestParts<WebState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, AppError> {
        let session = cookie_token(parts)
            .and_then(|token| state.auth.session(&token))
            .ok_or(AppError::Unauthorized)?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !constant_time_eq(sent.as_bytes(), session.csrf.as_bytes()) || !same_origin(parts) {
                return Err(AppError::Csrf);
            }
        }
        Ok(Caller {
            session,
            ip: client_ip(parts),
        })
    }
}

/// A caller with the operator role.
#[derive(Debug, Clone)]
pub struct Operator(pub Caller);

impl FromRequestParts<WebState> for Operator {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, AppError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.session.role != WebRole::Operator {
            return Err(AppError::Forbidden(caller.session.user));
        }
        Ok(Operator(caller))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, password: &str, role: WebRole) -> WebUser {
        WebUser {
            name: name.into(),
            password_hash: hash_password(password).unwrap(),
            role,
        }
    }

    #[test]
    fn hashes_verify_only_their_password() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "correct horse "));
        assert!(!verify_password("not a hash", "x"));
    }

    #[tokio::test]
    async fn failed_logins_are_limited_per_client_and_sessions_expire() {
        let auth = Auth::new(
            vec![user("ann", "pw", WebRole::Viewer)],
            Duration::from_millis(200),
        );
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..MAX_FAILURES {
            assert!(matches!(
                auth.login("ann", "nope", ip).await,
                Err(AppError::BadLogin)
            ));
        }
        // Even the right password is refused while the limit holds; another client is unaffected.
        assert!(matches!(
            auth.login("ann", "pw", ip).await,
            Err(AppError::TooManyLogins { .. })
        ));
        let session = auth.login("ann", "pw", [10, 0, 0, 2].into()).await.unwrap();
        assert_eq!(session.role, WebRole::Viewer);
        assert!(auth.session(&session.token).is_some());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(auth.session(&session.token).is_none(), "expired");
        assert!(matches!(
            auth.login("nobody", "pw", [10, 0, 0, 3].into()).await,
            Err(AppError::BadLogin)
        ));
    }

    #[test]
    fn generated_admin_is_printed_once_and_kept_as_a_hash() {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let first = generated_admin(dir.path(), addr, false).unwrap();
        let stored = std::fs::read_to_string(dir.path().join(ADMIN_HASH_FILE)).unwrap();
        assert_eq!(stored.trim(), first.password_hash);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(ADMIN_HASH_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let second = generated_admin(dir.path(), addr, false).unwrap();
        assert_eq!(
            first.password_hash, second.password_hash,
            "reused, not regenerated"
        );
    }
}
