//! The `exec` probe: runs an external check program with the Nagios plugin convention.
//!
//! The convention: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; the first line of stdout is the message,
//! text after a `|` is perfdata (later lines may carry more perfdata after their own `|`, as in Nagios 3).
//!
//! A plugin runs as a child in its own process group, with stdin from /dev/null, under a timeout. When it
//! exits, or when its timeout elapses, or when the caller drops the future, whatever is left of its group
//! is SIGKILLed: a plugin can neither outlive its check nor hold tend up. This module owns those children
//! and nothing else.
//!
//! # Environment
//! A plugin inherits tend's environment plus [`ExecSpec::env`]. The caller sets these (a plugin should
//! treat any of them as possibly absent and say UNKNOWN if it needs one that is missing):
//! - `TEND_SERVICE`: the service's name, e.g. `send_text`;
//! - `TEND_PORT`: the service's port, e.g. `5022` (absent if the service has none);
//! - `TEND_PID`: the pid of the service's main process (absent while it is down);
//! - `TEND_CHECK`: the name of the check running the plugin.

use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use tokio::process::Command;
use tokio::time::Instant;

use super::{ProbeResult, Status};
use crate::process::{run_bounded, signal_name, BoundedError};

/// The most of a plugin's stdout that is kept; the rest is read and dropped so the plugin never blocks.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// The most of stderr kept; it only explains a plugin that printed nothing.
const MAX_STDERR_BYTES: usize = 4 * 1024;
/// Longest message kept from a plugin's first line.
const MAX_MESSAGE_CHARS: usize = 1024;

/// What to run.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// The plugin; a relative path is taken relative to `cwd` (and a relative `cwd` relative to tend's).
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Added to tend's environment; see the module docs for the `TEND_*` variables.
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub timeout: Duration,
}

/// Runs the plugin and maps its exit and output to a result. Never fails: a plugin that cannot start,
/// dies of a signal, exits with another code or times out gives `Unknown` with a message saying so.
pub async fn run(spec: &ExecSpec) -> ProbeResult {
    let started = Instant::now();
    run_plugin(spec).await.with_duration(started.elapsed())
}

async fn run_plugin(spec: &ExecSpec) -> ProbeResult {
    // The child resolves a relative program after changing into `cwd`, so a relative `cwd` would be
    // applied twice; an absolute path is unambiguous and reads well in messages.
    let program = match std::path::absolute(spec.cwd.join(&spec.program)) {
        Ok(path) => path,
        Err(err) => {
            return ProbeResult::unknown(format!(
                "cannot run plugin {}: {err}",
                spec.program.display()
            ))
        }
    };
    if !spec.cwd.is_dir() {
        return ProbeResult::unknown(format!(
            "cannot run plugin {}: working directory {} does not exist",
            program.display(),
            spec.cwd.display()
        ));
    }
    let mut command = Command::new(&program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd);
    match run_bounded(command, spec.timeout, MAX_OUTPUT_BYTES, MAX_STDERR_BYTES).await {
        Ok(finished) => judge(finished.status, &finished.stdout, &finished.stderr),
        Err(BoundedError::Spawn(err)) => ProbeResult::unknown(spawn_failure(&program, &err)),
        Err(BoundedError::TimedOut) => ProbeResult::unknown(format!(
            "plugin timed out after {} (killed)",
            crate::clock::format_duration(spec.timeout)
        )),
        Err(BoundedError::Wait(err)) => ProbeResult::unknown(format!(
            "cannot wait for plugin {}: {err}",
            program.display()
        )),
    }
}

fn spawn_failure(program: &Path, err: &std::io::Error) -> String {
    let shown = program.display();
    match err.kind() {
        ErrorKind::NotFound => {
            format!("cannot run plugin {shown}: no such file; check the check's program path")
        }
        ErrorKind::PermissionDenied => {
            format!("cannot run plugin {shown}: permission denied; make it executable (chmod +x)")
        }
        _ => format!("cannot run plugin {shown}: {err}"),
    }
}

fn judge(exit: ExitStatus, stdout: &[u8], stderr: &[u8]) -> ProbeResult {
    let text = String::from_utf8_lossy(stdout);
    let (message, perfdata) = parse_output(&text);
    let message = match message {
        Some(m) => m,
        None => {
            let err = String::from_utf8_lossy(stderr);
            // The last line of a traceback names the exception; that is the useful one.
            match err.lines().rev().map(str::trim).find(|l| !l.is_empty()) {
                Some(line) => format!("plugin printed nothing; stderr: {}", cut(line)),
                None => "plugin printed nothing".to_string(),
            }
        }
    };
    let result = match (exit.code(), exit.signal()) {
        (Some(code), _) => match Status::from_nagios_code(code) {
            Some(status) => ProbeResult::new(status, message),
            None => ProbeResult::unknown(format!(
                "plugin exited with code {code} (expected 0-3): {message}"
            )),
        },
        (None, Some(signal)) => ProbeResult::unknown(format!(
            "plugin killed by {}: {message}",
            signal_name(signal)
        )),
        (None, None) => ProbeResult::unknown(format!("plugin ended oddly ({exit}): {message}")),
    };
    match perfdata {
        Some(p) => result.with_perfdata(p),
        None => result,
    }
}

/// Splits plugin output into the message (first line, before `|`) and perfdata (after the first line's
/// `|`, plus everything after the first `|` in the following lines).
fn parse_output(text: &str) -> (Option<String>, Option<String>) {
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let (message, mut perf) = match first.split_once('|') {
        Some((m, p)) => (m.trim(), vec![p.trim()]),
        None => (first.trim(), Vec::new()),
    };
    if let Some((_long_text, more)) = rest.split_once('|') {
        perf.extend(more.split_whitespace());
    }
    let perf = perf.join(" ");
    let perf = perf.trim();
    let message = (!message.is_empty()).then(|| cut(message));
    let perfdata = (!perf.is_empty()).then(|| perf.to_string());
    (message, perfdata)
}

fn cut(line: &str) -> String {
    if line.chars().count() <= MAX_MESSAGE_CHARS {
        return line.to_string();
    }
    let kept: String = line.chars().take(MAX_MESSAGE_CHARS).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::probe::test_support::{closed_addr, serve, wait_for};
    use std::os::unix::fs::PermissionsExt;

    struct Dir(tempfile::TempDir);

    impl Dir {
        fn new() -> Dir {
            Dir(tempfile::Builder::new()
                .prefix("tend-exec-")
                .tempdir()
                .unwrap())
        }

        fn path(&self) -> &Path {
            self.0.path()
        }

        /// Writes an executable shell script and returns its spec (1 s timeout).
        fn script(&self, name: &str, body: &str) -> ExecSpec {
            let path = self.path().join(name);
            crate::process::write_executable(&path, format!("#!/bin/sh\n{body}\n").as_bytes())
                .unwrap();
            ExecSpec {
                program: PathBuf::from(name),
                args: Vec::new(),
                env: Vec::new(),
                cwd: self.path().to_path_buf(),
                timeout: Duration::from_secs(5),
            }
        }

        fn read_pid(&self, name: &str) -> Option<u32> {
            std::fs::read_to_string(self.path().join(name))
                .ok()?
                .trim()
                .parse()
                .ok()
        }
    }

    fn alive(pid: u32) -> bool {
        crate::process::process_state(pid).is_some_and(|s| s != 'Z')
    }

    #[tokio::test]
    async fn exit_codes_map_to_the_four_states() {
        let dir = Dir::new();
        let table = [
            (0, Status::Ok),
            (1, Status::Warning),
            (2, Status::Critical),
            (3, Status::Unknown),
        ];
        for (code, status) in table {
            let spec = dir.script(
                &format!("check_{code}"),
                &format!("echo 'state {code}'\nexit {code}"),
            );
            let r = run(&spec).await;
            assert_eq!(
                (r.status, r.message.as_str()),
                (status, &*format!("state {code}"))
            );
            assert_eq!(r.perfdata, None);
        }
        let r = run(&dir.script("check_7", "echo huh\nexit 7")).await;
        assert_eq!(r.status, Status::Unknown);
        assert_eq!(r.message, "plugin exited with code 7 (expected 0-3): huh");

        let r = run(&dir.script("check_segv", "kill -SEGV $$")).await;
        assert_eq!(r.status, Status::Unknown);
        assert_eq!(
            r.message,
            "plugin killed by SIGSEGV: plugin printed nothing"
        );
    }

    #[tokio::test]
    async fn message_and_perfdata_are_split() {
        let dir = Dir::new();
        let spec = dir.script(
            "check_perf",
            "echo 'WARNING - cache 3850 | cache_size=3850;3900;1'\n\
             echo 'long text line'\n\
             echo 'more long text | errors=7'\n\
             echo 'uptime=1234s'\n\
             exit 1",
        );
        let r = run(&spec).await;
        assert_eq!(r.status, Status::Warning);
        assert_eq!(r.message, "WARNING - cache 3850");
        assert_eq!(
            r.perfdata.as_deref(),
            Some("cache_size=3850;3900;1 errors=7 uptime=1234s")
        );

        let r = run(&dir.script(
            "check_quiet",
            "echo 'Traceback...\nValueError: bad' >&2\nexit 2",
        ))
        .await;
        assert_eq!(r.status, Status::Critical);
        assert_eq!(r.message, "plugin printed nothing; stderr: ValueError: bad");
    }

    #[tokio::test]
    async fn missing_or_unexecutable_program_is_unknown() {
        let dir = Dir::new();
        let mut spec = dir.script("check_x", "exit 0");
        spec.program = PathBuf::from("no_such_plugin");
        let r = run(&spec).await;
        assert_eq!(r.status, Status::Unknown);
        assert_eq!(
            r.message,
            format!(
                "cannot run plugin {}/no_such_plugin: no such file; check the check's program path",
                dir.path().display()
            )
        );

        let spec = dir.script("check_noexec", "exit 0");
        std::fs::set_permissions(
            dir.path().join("check_noexec"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let r = run(&spec).await;
        assert_eq!(r.status, Status::Unknown);
        assert!(r.message.contains("chmod +x"), "{}", r.message);
    }

    #[tokio::test]
    async fn hung_plugin_is_killed_with_its_grandchild() {
        let dir = Dir::new();
        let mut spec = dir.script("check_hang", "sleep 1000 &\necho $! > grandchild.pid\nwait");
        spec.timeout = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let r = run(&spec).await;
        assert_eq!(r.status, Status::Unknown);
        assert_eq!(r.message, "plugin timed out after 300ms (killed)");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        let grandchild = dir.read_pid("grandchild.pid").expect("the plugin ran");
        wait_for(Duration::from_secs(5), "grandchild killed", || {
            (!alive(grandchild)).then_some(())
        })
        .await;
    }

    #[tokio::test]
    async fn leftovers_of_a_finished_plugin_are_killed_and_do_not_hold_it_up() {
        let dir = Dir::new();
        let spec = dir.script(
            "check_leaves",
            "sleep 1000 &\necho $! > leftover.pid\necho 'OK - done'",
        );
        let r = run(&spec).await;
        assert_eq!((r.status, r.message.as_str()), (Status::Ok, "OK - done"));
        assert!(r.duration_ms < 3000, "{r:?}");
        let leftover = dir.read_pid("leftover.pid").unwrap();
        wait_for(Duration::from_secs(5), "leftover killed", || {
            (!alive(leftover)).then_some(())
        })
        .await;
    }

    #[tokio::test]
    async fn environment_and_arguments_reach_the_plugin() {
        let dir = Dir::new();
        let mut spec = dir.script(
            "check_env",
            "echo \"$TEND_SERVICE $TEND_PORT $TEND_PID $TEND_CHECK $1 $(pwd)\"",
        );
        spec.env = vec![
            ("TEND_SERVICE".into(), "send_text".into()),
            ("TEND_PORT".into(), "5022".into()),
            ("TEND_PID".into(), "4242".into()),
            ("TEND_CHECK".into(), "ready".into()),
        ];
        spec.args = vec!["-w".into()];
        let r = run(&spec).await;
        let cwd = dir.path().canonicalize().unwrap();
        assert_eq!(
            r.message,
            format!("send_text 5022 4242 ready -w {}", cwd.display())
        );
    }

    #[tokio::test]
    async fn relative_working_directory_and_program() {
        let dir = Dir::new();
        let mut spec = dir.script("check_rel", "echo \"OK - in $(pwd)\"");
        // The same directory, spelled relative to the test's own working directory.
        let here = std::env::current_dir().unwrap();
        let up = "../".repeat(here.components().count() - 1);
        spec.cwd = PathBuf::from(format!("{up}{}", dir.path().display()).replace("//", "/"));
        assert!(spec.cwd.is_relative());
        let r = run(&spec).await;
        let real = dir.path().canonicalize().unwrap();
        assert_eq!(
            (r.status, r.message.as_str()),
            (Status::Ok, &*format!("OK - in {}", real.display()))
        );
    }

    #[tokio::test]
    async fn huge_output_is_capped_without_blocking_the_plugin() {
        let dir = Dir::new();
        // 256 KiB on one line, far past both the pipe buffer and the cap.
        let spec = dir.script(
            "check_loud",
            "head -c 262144 /dev/zero | tr '\\0' 'x'\necho\nexit 0",
        );
        let r = run(&spec).await;
        assert_eq!(r.status, Status::Ok);
        assert_eq!(r.message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(r.message.ends_with('…'));
    }

    #[test]
    fn output_parsing() {
        assert_eq!(parse_output(""), (None, None));
        assert_eq!(
            parse_output("OK|a=1\n"),
            (Some("OK".into()), Some("a=1".into()))
        );
        assert_eq!(parse_output("  | a=1"), (None, Some("a=1".into())));
        assert_eq!(parse_output("OK - x |"), (Some("OK - x".into()), None));
    }

    // The shipped example plugin, against a stand-in for the service's /stats.

    const PLUGIN: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/checks/plugins/check_send_text_ready.sh"
    );

    fn plugin(port: &str) -> ExecSpec {
        ExecSpec {
            program: PathBuf::from(PLUGIN),
            args: Vec::new(),
            env: vec![
                ("TEND_SERVICE".into(), "send_text".into()),
                ("TEND_PORT".into(), port.into()),
            ],
            cwd: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            timeout: Duration::from_secs(10),
        }
    }

    async fn stats_server(body: &'static str) -> String {
        use axum::routing::get;
        let app = axum::Router::new().route("/stats", get(move || async move { body }));
        serve(app).await.port().to_string()
    }

    #[tokio::test]
    async fn shipped_plugin_reads_cache_size() {
        let table = [
            (
                r#"{"cache_size":3978,"error_count":0,"last_errors":[]}"#,
                Status::Ok,
                "dialog cache holds 3978 entities",
            ),
            (
                r#"{"cache_size":3850}"#,
                Status::Warning,
                "dialog cache holds 3850 entities, below 3900",
            ),
            (
                r#"{"cache_size":0}"#,
                Status::Critical,
                "dialog cache is empty: not ready (or stuck in a flood wait)",
            ),
            (
                r#"{"status":"ok"}"#,
                Status::Unknown,
                "/stats has no numeric cache_size",
            ),
            ("<html>", Status::Unknown, "/stats did not answer JSON"),
        ];
        for (body, status, message) in table {
            let port = stats_server(body).await;
            let r = run(&plugin(&port)).await;
            assert_eq!(
                (r.status, r.message.as_str()),
                (status, &*format!("{status} - {message}")),
                "{body}"
            );
        }
        let r = run(&plugin(&stats_server(r#"{"cache_size":3978}"#).await)).await;
        assert_eq!(r.perfdata.as_deref(), Some("cache_size=3978;3900:;1:;0"));
    }

    #[tokio::test]
    async fn shipped_plugin_without_a_service_or_with_bad_input() {
        let r = run(&plugin(&closed_addr().port().to_string())).await;
        assert_eq!(r.status, Status::Critical);
        assert!(
            r.message
                .starts_with("CRITICAL - no answer from http://127.0.0.1:"),
            "{}",
            r.message
        );

        let r = run(&plugin("abc")).await;
        assert_eq!(r.status, Status::Unknown);
        assert_eq!(
            r.message,
            "UNKNOWN - TEND_PORT must be a port number, got \"abc\""
        );

        let mut spec = plugin(&stats_server(r#"{"cache_size":3800}"#).await);
        spec.args = vec!["-w".into(), "3700".into()];
        assert_eq!(
            run(&spec).await.status,
            Status::Ok,
            "-w moves the threshold"
        );
        spec.args = vec!["-w".into(), "lots".into()];
        let r = run(&spec).await;
        assert_eq!(r.status, Status::Unknown);
        assert!(r.message.starts_with("UNKNOWN - usage:"), "{}", r.message);
    }
}
