//! The sd_notify protocol: newline-separated `KEY=value` assignments in one datagram to the Unix socket
//! named by `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket), see sd_notify(3).
//!
//! Owns the environment systemd hands to tend (read once at start and removed from tend's own
//! environment, so services never inherit it) and the one datagram socket messages leave through. The
//! process-wide [`Host`] exists because the notify socket is process-wide by nature: it came in the
//! environment, and anything in tend (a reload, a re-exec) may need to tell systemd something.
//!
//! Nothing here fails loudly: outside systemd every function is a no-op, and a send that fails is logged
//! (once per failing streak) and dropped, because a supervisor must never stop over its own status line.

use std::ffi::OsString;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// The variables systemd (or a socket-activating parent) sets for tend. They are meant for tend alone:
/// a service that inherited `NOTIFY_SOCKET` could announce itself as tend, and one that inherited
/// `WATCHDOG_USEC` would believe it is watched.
pub const HOST_VARS: [&str; 6] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
];

/// What tend found of systemd in its environment at start, before it removed those variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemdEnv {
    /// `NOTIFY_SOCKET`: where sd_notify messages go.
    pub notify_socket: Option<OsString>,
    /// `WATCHDOG_USEC`: the watchdog interval systemd enforces (`WatchdogSec=`).
    pub watchdog_usec: Option<String>,
    /// `WATCHDOG_PID`: the process the watchdog settings are meant for.
    pub watchdog_pid: Option<String>,
    /// `LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES` (socket activation; tend uses none, but a re-exec
    /// hand-over might).
    pub listen_pid: Option<String>,
    pub listen_fds: Option<String>,
    pub listen_fdnames: Option<String>,
}

impl SystemdEnv {
    /// Reads the variables from an environment lookup (the real one, or a table in tests).
    pub fn read(mut var: impl FnMut(&str) -> Option<OsString>) -> SystemdEnv {
        let notify_socket = var("NOTIFY_SOCKET").filter(|v| !v.is_empty());
        let mut text = |name: &str| var(name).map(|v| v.to_string_lossy().into_owned());
        SystemdEnv {
            notify_socket,
            watchdog_usec: text("WATCHDOG_USEC"),
            watchdog_pid: text("WATCHDOG_PID"),
            listen_pid: text("LISTEN_PID"),
            listen_fds: text("LISTEN_FDS"),
            listen_fdnames: text("LISTEN_FDNAMES"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET={addr:?} is not usable: {reason}; expected an absolute socket path or @abstract-name")]
    BadAddress { addr: String, reason: String },
    #[error("cannot create a datagram socket for sd_notify: {0}")]
    Socket(io::Error),
    #[error("cannot send to the notify socket {addr:?}: {source}")]
    Send { addr: String, source: io::Error },
}

/// Parses `$NOTIFY_SOCKET`: an absolute path, or `@name` for a socket in the abstract namespace.
pub fn parse_address(value: &std::ffi::OsStr) -> Result<SocketAddr, NotifyError> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = value.as_bytes();
    let bad = |reason: &str| NotifyError::BadAddress {
        addr: value.to_string_lossy().into_owned(),
        reason: reason.to_string(),
    };
    match bytes.first() {
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(&bytes[1..]).map_err(|e| bad(&e.to_string()))
        }
        Some(b'/') => {
            SocketAddr::from_pathname(std::path::Path::new(value)).map_err(|e| bad(&e.to_string()))
        }
        Some(_) => Err(bad(
            "not an absolute path (vsock: addresses are not supported)",
        )),
        None => Err(bad("empty")),
    }
}

/// One message: `KEY=value` lines. A value cannot span lines (a newline would start a new assignment),
/// so newlines inside a value become "; ".
pub fn message(fields: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (key, value) in fields {
        let value = value.trim_end().replace('\n', "; ");
        out.push_str(key);
        out.push('=');
        out.push_str(&value);
        out.push('\n');
    }
    out
}

/// A connected-on-demand datagram socket to the notify address.
#[derive(Debug)]
pub struct NotifySocket {
    addr: SocketAddr,
    /// For messages: the address as systemd wrote it.
    shown: String,
    socket: UnixDatagram,
}

impl NotifySocket {
    pub fn new(value: &std::ffi::OsStr) -> Result<NotifySocket, NotifyError> {
        let addr = parse_address(value)?;
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        // systemd drains its socket at once; a full queue means it is wedged, and tend must not wedge
        // with it: a message that does not fit is dropped (the next status or keep-alive follows).
        socket.set_nonblocking(true).map_err(NotifyError::Socket)?;
        Ok(NotifySocket {
            addr,
            shown: value.to_string_lossy().into_owned(),
            socket,
        })
    }

    pub fn send(&self, text: &str) -> Result<(), NotifyError> {
        self.socket
            .send_to_addr(text.as_bytes(), &self.addr)
            .map(|_| ())
            .map_err(|source| NotifyError::Send {
                addr: self.shown.clone(),
                source,
            })
    }
}

/// tend's side of the conversation with systemd: the inherited variables and the notify socket.
#[derive(Debug)]
pub struct Host {
    inherited: SystemdEnv,
    socket: Option<NotifySocket>,
    /// The last `STATUS=` text, repeated with a later `READY=1`.
    status: Mutex<String>,
    /// `READY=1` went out once (the first readiness is the run loop's, after autostart).
    ready: AtomicBool,
    /// Sends are failing: warn on the first failure of a streak only.
    failing: AtomicBool,
}

static HOST: OnceLock<Host> = OnceLock::new();

impl Host {
    fn new(inherited: SystemdEnv) -> Host {
        let socket =
            inherited
                .notify_socket
                .as_deref()
                .and_then(|value| match NotifySocket::new(value) {
                    Ok(socket) => Some(socket),
                    Err(err) => {
                        // Tracing may not be set up yet this early; stderr reaches the journal either way.
                        eprintln!("tend: {err}; systemd will not hear from tend");
                        None
                    }
                });
        Host {
            inherited,
            socket,
            status: Mutex::new(String::new()),
            ready: AtomicBool::new(false),
            failing: AtomicBool::new(false),
        }
    }

    pub fn inherited(&self) -> &SystemdEnv {
        &self.inherited
    }

    /// Whether anyone listens for sd_notify messages (tend runs under systemd with `Type=notify`).
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends one message; failures are logged, never returned (see the module header).
    pub fn send(&self, fields: &[(&str, &str)]) {
        let Some(socket) = &self.socket else {
            return;
        };
        let text = message(fields);
        match socket.send(&text) {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("sd_notify messages reach systemd again");
                }
                tracing::trace!(message = %text.trim_end(), "sd_notify");
            }
            Err(err) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!("{err}; systemd may consider tend hung or not ready");
                }
            }
        }
    }

    fn remember_status(&self, status: &str) {
        if let Ok(mut last) = self.status.lock() {
            last.clear();
            last.push_str(status);
        }
    }

    fn last_status(&self) -> String {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Reads [`HOST_VARS`] and removes them from tend's environment, so no service inherits them.
///
/// Call it first thing in `main`, before any thread exists: changing the environment while another
/// thread reads it is undefined behaviour in libc. Later calls return the first result. Without this
/// call, the first use of the notify functions reads the environment without changing it.
pub fn init_from_env() -> &'static Host {
    HOST.get_or_init(|| {
        let inherited = SystemdEnv::read(|name| std::env::var_os(name));
        for name in HOST_VARS {
            std::env::remove_var(name);
        }
        Host::new(inherited)
    })
}

/// The process-wide [`Host`] (see [`init_from_env`]).
pub fn host() -> &'static Host {
    HOST.get_or_init(|| Host::new(SystemdEnv::read(|name| std::env::var_os(name))))
}

fn main_pid() -> String {
    std::process::id().to_string()
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares `MONOTONIC_USEC=` against.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

/// `READY=1` with `MAINPID=` and a `STATUS=` line: tend's services are started (or waiting on their
/// gate, or adopted). The run loop sends the first one after the core's autostart; afterwards, call it
/// to end a [`notify_reloading`] (the reload task does; `tend reexec` must when it falls back to the
/// old binary). Before the first readiness it does nothing, so a reload during start-up cannot
/// announce readiness early.
pub fn notify_ready() {
    let host = host();
    if host.ready.load(Ordering::Relaxed) {
        send_ready(host);
    }
}

/// The first `READY=1`, from the run loop once autostart is done.
pub(crate) fn notify_first_ready(status: &str) {
    let host = host();
    host.remember_status(status);
    host.ready.store(true, Ordering::Relaxed);
    send_ready(host);
}

fn send_ready(host: &Host) {
    let pid = main_pid();
    let status = host.last_status();
    if status.is_empty() {
        host.send(&[("READY", "1"), ("MAINPID", &pid)]);
    } else {
        host.send(&[("READY", "1"), ("MAINPID", &pid), ("STATUS", &status)]);
    }
}

/// `RELOADING=1` with `MONOTONIC_USEC=`: systemd shows the unit as reloading until the next
/// [`notify_ready`]. For a configuration reload and for `tend reexec` (the re-executed tend sends
/// `READY=1` itself once its autostart or adoption is done). Does nothing before the first readiness.
pub fn notify_reloading() {
    let host = host();
    if host.ready.load(Ordering::Relaxed) {
        let usec = monotonic_usec().to_string();
        host.send(&[
            ("RELOADING", "1"),
            ("MONOTONIC_USEC", &usec),
            ("STATUS", "reloading"),
        ]);
    }
}

/// Set once this image hands its services to a new one (`tend reexec`): from then on it is reloading,
/// not stopping, whatever its tasks see ending.
static HANDING_OVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// This image is about to hand over to a new one: `RELOADING=1` now, and no `STOPPING=1` later.
pub fn notify_handing_over() {
    HANDING_OVER.store(true, Ordering::SeqCst);
    notify_reloading();
}

/// Whether [`notify_handing_over`] was called.
pub fn handing_over() -> bool {
    HANDING_OVER.load(Ordering::SeqCst)
}

/// `STOPPING=1`: tend is shutting down (stopping its services, or leaving them for the next tend).
/// Safe to send more than once.
pub fn notify_stopping(status: &str) {
    let host = host();
    host.remember_status(status);
    host.send(&[("STOPPING", "1"), ("STATUS", status)]);
}

/// A `STATUS=` line for `systemctl status` (one line; newlines become "; ").
pub fn notify_status(status: &str) {
    let host = host();
    host.remember_status(status);
    host.send(&[("STATUS", status)]);
}

/// `WATCHDOG=1`: the keep-alive (see [`super::watchdog`]).
pub fn notify_watchdog() {
    host().send(&[("WATCHDOG", "1")]);
}

/// The systemd variables as tend received them, for a `tend reexec` to put back into the environment of
/// the new image (tend removed them from its own at start). The pid stays the same across `execve`, so
/// `WATCHDOG_PID`/`LISTEN_PID` stay valid. Empty outside systemd.
pub fn reexec_env() -> Vec<(&'static str, OsString)> {
    let inherited = host().inherited();
    let mut env = Vec::new();
    if let Some(socket) = &inherited.notify_socket {
        env.push(("NOTIFY_SOCKET", socket.clone()));
    }
    let text = [
        ("WATCHDOG_USEC", &inherited.watchdog_usec),
        ("WATCHDOG_PID", &inherited.watchdog_pid),
    ];
    for (name, value) in text {
        if let Some(value) = value {
            env.push((name, OsString::from(value)));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn addresses() {
        assert!(parse_address(OsStr::new("/run/systemd/notify")).is_ok());
        let abstract_addr = parse_address(OsStr::new("@tend/notify")).unwrap();
        {
            use std::os::linux::net::SocketAddrExt;
            assert_eq!(abstract_addr.as_abstract_name(), Some(&b"tend/notify"[..]));
        }
        let relative = parse_address(OsStr::new("run/notify")).unwrap_err();
        assert!(
            relative.to_string().contains("not an absolute path"),
            "{relative}"
        );
        assert!(parse_address(OsStr::new("")).is_err());
        let long = format!("/{}", "x".repeat(200));
        let err = parse_address(OsStr::new(&long)).unwrap_err();
        assert!(err.to_string().contains("NOTIFY_SOCKET="), "{err}");
    }

    #[test]
    fn messages_are_one_assignment_per_line() {
        assert_eq!(
            message(&[("READY", "1"), ("STATUS", "2 running\n1 failed\n")]),
            "READY=1\nSTATUS=2 running; 1 failed\n"
        );
    }

    #[test]
    fn inherited_variables() {
        let table = [
            ("NOTIFY_SOCKET", "@sd"),
            ("WATCHDOG_USEC", "30000000"),
            ("LISTEN_FDS", "2"),
        ];
        let inherited = SystemdEnv::read(|name| {
            table
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| OsString::from(v))
        });
        assert_eq!(inherited.notify_socket.as_deref(), Some(OsStr::new("@sd")));
        assert_eq!(inherited.watchdog_usec.as_deref(), Some("30000000"));
        assert_eq!(inherited.watchdog_pid, None);
        assert_eq!(inherited.listen_fds.as_deref(), Some("2"));
        // An empty NOTIFY_SOCKET means "no systemd", as in sd_notify(3).
        let empty = SystemdEnv::read(|name| (name == "NOTIFY_SOCKET").then(OsString::new));
        assert_eq!(empty.notify_socket, None);
    }

    #[test]
    fn datagrams_reach_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let socket = NotifySocket::new(path.as_os_str()).unwrap();
        socket.send("READY=1\n").unwrap();
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("tend-notify-unit-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&addr).unwrap();
        let socket = NotifySocket::new(OsStr::new(&format!("@{name}"))).unwrap();
        socket.send("WATCHDOG=1\n").unwrap();
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1\n");
    }

    #[test]
    fn a_missing_listener_is_an_error_naming_the_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nobody.sock");
        let socket = NotifySocket::new(path.as_os_str()).unwrap();
        let err = socket.send("READY=1\n").unwrap_err();
        assert!(err.to_string().contains("nobody.sock"), "{err}");
    }

    #[test]
    fn monotonic_clock_moves() {
        let a = monotonic_usec();
        let b = monotonic_usec();
        assert!(a > 0 && b >= a);
    }
}
