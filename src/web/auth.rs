//! Logins, sessions, CSRF tokens and the failed-login limiter of the status page; password hashing for
//! `tend hash-password` and the generated admin password of a config without users.
//!
//! Sessions live in memory only (a restart of tend logs everyone out) behind a mutex local to this
//! module; nothing here talks to the core. A session is a random 256-bit token in an HttpOnly,
//! SameSite=Strict cookie (Secure under TLS) plus a second random token the page must echo in the
//! `X-CSRF-Token` header of every state-changing request.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use argon2::password_hash::PasswordHash;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method};
use rand::Rng;
use serde::Serialize;
use tokio::time::Instant;

use super::error::{AppError, WebError};
use super::limiter::{Key, LimitSettings, Limiter};
use super::{ClientAddr, WebState};
use crate::config::{WebRole, WebUser};

pub const COOKIE: &str = "tend_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The file holding the hash of the generated admin password, in the state dir.
pub const ADMIN_HASH_FILE: &str = "web-admin.hash";
/// The longest password a login may send (argon2 takes any length; nobody types more).
const MAX_PASSWORD_LEN: usize = 1024;

pub use super::password::{hash_password, verify_password};

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
    /// Replaced as a whole by a reload ([`Auth::set_users`]).
    users: RwLock<HashMap<String, WebUser>>,
    /// For new sessions (a reload may change it).
    ttl: Mutex<Duration>,
    sessions: Mutex<HashMap<String, Session>>,
    limiter: Mutex<Limiter>,
    /// Password checks running at once (about the number of cores), bounding the CPU logins take.
    /// Attempts beyond it are refused at once, never queued.
    checks: Arc<tokio::sync::Semaphore>,
    /// argon2 memory in use, in KiB, out of [`LOGIN_MEMORY_KIB`]: each check takes its hash's `m`
    /// (all of it if `m` is larger), so at the default cost one check runs at a time whatever the
    /// cores, and a burst of logins adds at most this much to tend's resident size.
    memory: Arc<tokio::sync::Semaphore>,
    /// Verified against when the user does not exist, so a wrong name costs as long as a wrong password.
    dummy_hash: String,
    /// Bumped whenever sessions are ended before their time (a reload, a logout), so open streams of
    /// an ended session stop at once ([`Auth::session_ended`]).
    revoked: tokio::sync::watch::Sender<u64>,
}

/// The argon2 memory all password checks at once may take: 24 MiB, one check at the default cost
/// (19 MiB), so a burst of logins keeps tend within 30 MB of its idle size.
pub const LOGIN_MEMORY_KIB: u32 = 24 * 1024;

/// Password checks at once by default: the cores tend may use.
pub fn default_login_checks() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// An attempt counted on the limiter: ended by [`Reserved::finish`], or counted as a failure if the
/// request is dropped first (a client hanging up must not get a free guess).
struct Reserved<'a> {
    auth: &'a Auth,
    keys: Vec<Key>,
    done: bool,
}

impl Reserved<'_> {
    fn finish(mut self, failed: bool) {
        self.done = true;
        self.auth
            .lock_limiter()
            .finish(&self.keys, failed, Instant::now());
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.auth
                .lock_limiter()
                .finish(&self.keys, true, Instant::now());
        }
    }
}

impl Auth {
    pub fn new(users: Vec<WebUser>, ttl: Duration) -> Auth {
        Auth::with_limits(users, ttl, LimitSettings::default(), default_login_checks())
    }

    pub fn with_limits(
        users: Vec<WebUser>,
        ttl: Duration,
        limits: LimitSettings,
        checks: usize,
    ) -> Auth {
        Auth {
            users: RwLock::new(users.into_iter().map(|u| (u.name.clone(), u)).collect()),
            ttl: Mutex::new(ttl),
            sessions: Mutex::new(HashMap::new()),
            limiter: Mutex::new(Limiter::new(limits)),
            checks: Arc::new(tokio::sync::Semaphore::new(checks.max(1))),
            memory: Arc::new(tokio::sync::Semaphore::new(LOGIN_MEMORY_KIB as usize)),
            dummy_hash: hash_password("not a password").unwrap_or_default(),
            revoked: tokio::sync::watch::channel(0).0,
        }
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding it cannot leave the map half-updated (every update is one insert or
        // remove), so a poisoned lock is still usable.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn user(&self, name: &str) -> Option<WebUser> {
        self.users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The users of a reloaded configuration. Sessions of a user that is gone, or whose password
    /// changed, end now; a changed role applies to open sessions at once. Returns the sessions ended.
    pub fn set_users(&self, users: Vec<WebUser>, ttl: Duration, limits: LimitSettings) -> usize {
        let users: HashMap<String, WebUser> =
            users.into_iter().map(|u| (u.name.clone(), u)).collect();
        let mut current = self.users.write().unwrap_or_else(|p| p.into_inner());
        let mut sessions = self.lock_sessions();
        let before = sessions.len();
        sessions.retain(|_, session| {
            let (Some(old), Some(new)) = (current.get(&session.user), users.get(&session.user))
            else {
                return false;
            };
            session.role = new.role;
            old.password_hash == new.password_hash
        });
        let ended = before - sessions.len();
        *current = users;
        drop(sessions);
        drop(current);
        self.lock_limiter().set_settings(limits);
        *self.ttl.lock().unwrap_or_else(|p| p.into_inner()) = ttl;
        if ended > 0 {
            self.revoked.send_modify(|n| *n += 1);
        }
        ended
    }

    /// Checks the password (off the runtime: argon2 is deliberately slow) and opens a session. The
    /// attempt is counted against the address and the user name before the hash is checked; over
    /// the limit, or with every check slot busy, it is refused at once (429).
    pub async fn login(&self, user: &str, password: &str, ip: IpAddr) -> Result<Session, AppError> {
        let keys = vec![Key::addr(ip), Key::user(user)];
        if let Err(refused) = self.lock_limiter().reserve(&keys, Instant::now()) {
            return Err(AppError::TooManyLogins {
                ip: ip.to_string(),
                retry_after_s: refused.retry_after.as_secs_f64().ceil() as u64,
            });
        }
        let mut reserved = Reserved {
            auth: self,
            keys,
            done: false,
        };
        let known = self.user(user);
        let hash = known
            .as_ref()
            .map_or(self.dummy_hash.clone(), |u| u.password_hash.clone());
        let memory = super::password::memory_kib(&hash).min(LOGIN_MEMORY_KIB);
        let permit = Arc::clone(&self.checks)
            .try_acquire_owned()
            .and_then(|count| {
                Arc::clone(&self.memory)
                    .try_acquire_many_owned(memory)
                    .map(|memory| (count, memory))
            });
        let Ok(permit) = permit else {
            // Not an attempt: nothing was checked.
            reserved.done = true;
            self.lock_limiter()
                .finish(&reserved.keys, false, Instant::now());
            return Err(AppError::LoginsBusy { retry_after_s: 1 });
        };
        let password: String = password.chars().take(MAX_PASSWORD_LEN).collect();
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify_password(&hash, &password)
        })
        .await
        .unwrap_or(false);
        let Some(known) = known.filter(|_| ok) else {
            reserved.finish(true);
            return Err(AppError::BadLogin);
        };
        reserved.finish(false);
        let session = Session {
            user: known.name.clone(),
            role: known.role,
            csrf: random_token(32),
            token: random_token(32),
            expires: Instant::now() + self.ttl(),
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
        self.revoked.send_modify(|n| *n += 1);
    }

    /// Resolves when the session of `token` is over: ended by a reload or a logout, or expired. An
    /// open stream (SSE) of that session ends with it.
    pub async fn session_ended(self: Arc<Self>, token: String) {
        let mut revoked = self.revoked.subscribe();
        loop {
            let Some(session) = self.session(&token) else {
                return;
            };
            tokio::select! {
                _ = tokio::time::sleep_until(session.expires) => {}
                changed = revoked.changed() => if changed.is_err() { return },
            }
        }
    }

    pub fn ttl(&self) -> Duration {
        *self.ttl.lock().unwrap_or_else(|p| p.into_inner())
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
        let ttl = self.ttl();
        // The users are looked up before the sessions are locked: `set_users` takes the two locks in
        // that order.
        let saved: Vec<(HandedOver, WebUser)> = saved
            .into_iter()
            .filter_map(|s| self.user(&s.user).map(|user| (s, user)))
            .collect();
        let mut sessions = self.lock_sessions();
        let mut taken = 0;
        for (s, user) in saved {
            let session = Session {
                user: user.name.clone(),
                role: user.role,
                csrf: s.csrf,
                token: s.token,
                expires: now + Duration::from_millis(s.remaining_ms).min(ttl),
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
                let caller = Caller {
                    session,
                    ip: client_ip(parts),
                };
                return Err(refused(state, &caller, parts, AppError::Csrf));
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
            let err = AppError::Forbidden(caller.session.user.clone());
            return Err(refused(state, &caller, parts, err));
        }
        Ok(Operator(caller))
    }
}

/// SHA-256 of a metrics token, as `[web] metrics_token_hash` stores it.
pub fn token_hash(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.trim().as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// A new random metrics token (32 bytes, hex) and the `metrics_token_hash` line to paste under
/// `[web]`. One SHA-256 per scrape checks it: the token is random, so no slow hash is needed.
pub fn new_metrics_token() -> (String, String) {
    let token = random_token(32);
    let hex: String = token_hash(&token)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (
        token.clone(),
        format!("metrics_token_hash = \"sha256:{hex}\""),
    )
}

/// Whether the request carries `Authorization: Bearer <token>` with a token whose hash is
/// `expected` (compared in constant time).
pub fn bearer_matches(parts: &Parts, expected: &[u8; 32]) -> bool {
    parts
        .headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.strip_prefix("Bearer "))
        .any(|token| constant_time_eq(&token_hash(token), expected))
}

/// Records a refused request of a signed-in user (a viewer's action, a failed CSRF check) in the
/// audit log, and returns the error.
fn refused(state: &WebState, caller: &Caller, parts: &Parts, err: AppError) -> AppError {
    state.audit.record(super::audit::AuditEntry {
        at: chrono::Utc::now(),
        user: caller.session.user.clone(),
        ip: caller.ip.to_string(),
        action: format!("{} {}", parts.method, parts.uri.path())
            .chars()
            .take(200)
            .collect(),
        target: String::new(),
        reason: String::new(),
        outcome: format!("refused ({}): {err}", err.status().as_u16()),
    });
    err
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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

    #[tokio::test]
    async fn failed_logins_are_limited_per_client_and_sessions_expire() {
        let auth = Auth::new(
            vec![user("ann", "pw", WebRole::Viewer)],
            Duration::from_millis(200),
        );
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..LimitSettings::default().max_failures {
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

    #[tokio::test]
    async fn a_reload_ends_the_sessions_of_removed_users_and_changed_passwords() {
        let ttl = Duration::from_secs(60);
        let ann = user("ann", "pw", WebRole::Viewer);
        let bob = user("bob", "pw", WebRole::Viewer);
        let cid = user("cid", "pw", WebRole::Viewer);
        let auth = Auth::new(vec![ann.clone(), bob.clone(), cid.clone()], ttl);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let a = auth.login("ann", "pw", ip).await.unwrap();
        let b = auth.login("bob", "pw", ip).await.unwrap();
        let c = auth.login("cid", "pw", ip).await.unwrap();
        let cid_operator = WebUser {
            role: WebRole::Operator,
            ..cid
        };
        let bob_new = user("bob", "new", WebRole::Viewer);
        let ended = auth.set_users(vec![bob_new, cid_operator], ttl, LimitSettings::default());
        assert_eq!(ended, 2);
        assert!(auth.session(&a.token).is_none(), "ann was removed");
        assert!(auth.session(&b.token).is_none(), "bob's password changed");
        assert_eq!(auth.session(&c.token).unwrap().role, WebRole::Operator);
        assert!(matches!(
            auth.login("ann", "pw", [10, 0, 0, 2].into()).await,
            Err(AppError::BadLogin)
        ));
        assert!(auth.login("bob", "new", [10, 0, 0, 2].into()).await.is_ok());
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
