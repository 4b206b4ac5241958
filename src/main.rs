//! The `tend` binary: argument parsing, tracing set-up, and mapping results to exit codes.
//! Everything else lives in the library.
//!
//! Why this file is long (~830 lines): it renders every client command's output (tables, JSON, exit
//! codes); rendering moving into its own module is the next split.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tend::clock::{human_ms, Clock};
use tend::control::protocol::{ErrorCode, Request, Response};
use tend::control::{socket_path_from_config, Client, ClientError};
use tend::core::{Outcome, ServiceStatus};
use tend::logs::{format_line, Stream};
use tokio_util::sync::CancellationToken;

/// Exit codes, documented in README.md. `tend up` (also as a container's PID 1) exits 0 after a clean
/// shutdown, 1 when it could not start or its core crashed, 5 on an invalid configuration.
mod exit {
    pub const OK: u8 = 0;
    /// A command failed (an action failed, an error reply, an I/O error).
    pub const FAILED: u8 = 1;
    // 2 is clap's usage error.
    /// No daemon answers on the control socket.
    pub const NOT_RUNNING: u8 = 3;
    /// The restart policy refused an action (spacing, budget); `--force` overrides.
    pub const REFUSED: u8 = 4;
    /// The configuration is invalid.
    pub const CONFIG: u8 = 5;
}

#[derive(Parser)]
#[command(
    name = "tend",
    version,
    about = "A process supervisor that never hammers a rate-limited account"
)]
struct Cli {
    /// Configuration file.
    #[arg(
        short = 'c',
        long,
        global = true,
        env = "TEND_CONFIG",
        default_value = "supervisor.toml"
    )]
    config: PathBuf,
    /// Control socket (default: the one the configuration names).
    #[arg(long, global = true, env = "TEND_SOCKET")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the supervisor in the foreground until SIGTERM/SIGINT or `tend shutdown`.
    Up,
    /// Show services: state, pid, uptime, restarts, last exit, next allowed start.
    Status {
        names: Vec<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Start services (`all` for every one). Clears a sticky stop.
    Start(ActionArgs),
    /// Stop services; they stay stopped (sticky) until started by hand.
    Stop {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Restart services; refused during a spacing window unless --force.
    Restart(ActionArgs),
    /// Show a service's captured output.
    Logs {
        name: String,
        /// Number of lines.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
        /// Only stderr.
        #[arg(long, conflicts_with = "stdout")]
        stderr: bool,
        /// Only stdout.
        #[arg(long)]
        stdout: bool,
        /// Keep printing new lines.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Stop the daemon; the services stop too unless `on_shutdown = "keep-services"` or --keep-services.
    Shutdown {
        /// Leave the services running for the next `tend up` to adopt.
        #[arg(long, conflicts_with = "stop_services")]
        keep_services: bool,
        /// Stop the services even if `on_shutdown = "keep-services"`.
        #[arg(long)]
        stop_services: bool,
    },
    /// Replace the running tend with the binary on disk (an upgrade) without restarting any service.
    Reexec,
    /// The staged flood-wait recovery of a group: stop all, cool down, start one at a time.
    Recover {
        group: String,
        /// Cancel the running recovery; services are left as they are.
        #[arg(long)]
        cancel: bool,
    },
    /// Ask services to reload their dialog cache (POST /reload_cache); gated like a start.
    ReloadCache(ActionArgs),
    /// Every check on every service with its last result.
    Checks {
        #[arg(long)]
        json: bool,
    },
    /// A full check now: state, port, health, cache, errors, failing chats, flood waits; with advice.
    Diagnose {
        #[arg(long)]
        json: bool,
    },
    /// Re-read the configuration and apply it to the running tend (prints what was done; a broken file
    /// changes nothing and exits 5).
    Reload,
    /// Re-read the configuration and show what `tend reload` would change, changing nothing.
    Reread,
    /// The `[[schedule]]` entries: cron, action, services, next run, last run and its outcome.
    Schedules {
        #[arg(long)]
        json: bool,
    },
    /// Check that the configuration is valid, print every problem.
    Check,
    /// Print an argon2id hash of a password (from stdin, or asked for twice on a terminal) for
    /// `[[web.users]] password_hash`. Passwords shorter than 12 characters are refused.
    HashPassword {
        /// Accept a password shorter than 12 characters.
        #[arg(long)]
        allow_short: bool,
    },
    /// Print a new random token for Prometheus to scrape /metrics with, and the
    /// `metrics_token_hash` line to paste under `[web]` (only the hash is kept in the file).
    MetricsToken,
    /// The Telethon service emulator (same as the `tend-sim` binary).
    #[command(hide = true)]
    Sim(Box<tend_sim::SimArgs>),
}

#[derive(Args)]
struct ActionArgs {
    #[arg(required = true)]
    names: Vec<String>,
    /// Bypass restart spacing and group budgets (recorded in the history).
    #[arg(long)]
    force: bool,
}

fn main() -> ExitCode {
    // Before any thread exists: the path to re-execute and descriptors from a previous image.
    tend::reexec::record_own_exe();
    let inherited = tend::reexec::Inherited::from_env();
    let cli = Cli::parse();
    if let Cmd::Up = cli.command {
        // Before any thread exists (changing the environment races with readers): systemd's variables
        // are tend's alone and must not reach the services, which inherit tend's environment.
        tend::host::init_from_env();
    }
    if let Cmd::Sim(args) = cli.command {
        return tend_sim::run_args(*args);
    }
    if let Cmd::MetricsToken = cli.command {
        let (token, line) = tend::web::auth::new_metrics_token();
        println!(
            "# the token, for Prometheus (authorization: credentials_file); shown once, not stored:\n\
             {token}\n# paste under [web] in the configuration:\n{line}"
        );
        return ExitCode::from(exit::OK);
    }
    if let Cmd::HashPassword { allow_short } = cli.command {
        return match hash_password(allow_short) {
            Ok(hash) => {
                println!("{hash}");
                ExitCode::from(exit::OK)
            }
            Err(err) => {
                eprintln!("tend: {err:#}");
                ExitCode::from(exit::FAILED)
            }
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("tend: cannot start the async runtime: {err}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Cmd::Up => up(&cli.config, inherited).await,
            Cmd::Check => check(&cli.config),
            command => client_command(&cli.config, cli.socket.as_deref(), command).await,
        }
    });
    ExitCode::from(code)
}

/// The shortest password `tend hash-password` hashes without `--allow-short`.
const MIN_PASSWORD_LEN: usize = 12;

/// Reads a password (the first line of stdin; on a terminal, asked twice without echo) and hashes it.
fn hash_password(allow_short: bool) -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    let read_line = |prompt: Option<&str>| -> anyhow::Result<String> {
        if let Some(prompt) = prompt {
            eprint!("{prompt}");
            let _ = std::io::stderr().flush();
        }
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        Ok(line.trim_end_matches(['\n', '\r']).to_string())
    };
    let password = if stdin.is_terminal() {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let fd = std::io::stdin();
        let saved = tcgetattr(&fd).context("reading the terminal settings")?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&fd, SetArg::TCSANOW, &quiet).context("turning off echo")?;
        let first = read_line(Some("Password: "));
        eprintln!();
        let second = read_line(Some("Again: "));
        eprintln!();
        let _ = tcsetattr(&fd, SetArg::TCSANOW, &saved);
        let (first, second) = (first?, second?);
        anyhow::ensure!(first == second, "the two passwords differ; nothing printed");
        first
    } else {
        read_line(None)?
    };
    anyhow::ensure!(
        !password.is_empty(),
        "the password is empty; type one (or pipe it: echo 'pw' | tend hash-password)"
    );
    anyhow::ensure!(
        allow_short || password.chars().count() >= MIN_PASSWORD_LEN,
        "the password has {} characters, fewer than {MIN_PASSWORD_LEN}: the status page may face \
         the network, so pick a longer one (or pass --allow-short to use it anyway)",
        password.chars().count()
    );
    tend::web::hash_password(&password).map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
}

fn check(config: &Path) -> u8 {
    match tend::config::check(config) {
        Ok((cfg, warnings)) => {
            for warning in &warnings {
                eprintln!("warning: {warning}");
            }
            let noted = match warnings.len() {
                0 => String::new(),
                1 => ", 1 warning".to_string(),
                n => format!(", {n} warnings"),
            };
            println!(
                "{}: ok ({} services, {} groups{noted})",
                config.display(),
                cfg.services.len(),
                cfg.groups.len()
            );
            exit::OK
        }
        Err(err) => {
            eprintln!("{}", render_config_error(&err));
            exit::CONFIG
        }
    }
}

fn render_config_error(err: &tend::config::ConfigError) -> String {
    format!("tend: {err}")
}

async fn up(config_path: &Path, mut inherited: tend::reexec::Inherited) -> u8 {
    let mut config = match tend::config::load(config_path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{}", render_config_error(&err));
            let first = err.to_string();
            let first = first.lines().next().unwrap_or_default();
            tend::host::notify_status(&format!("configuration invalid: {first}"));
            return exit::CONFIG;
        }
    };
    let mut guard = match init_tracing(&config.supervisor.log_dir) {
        Ok(guard) => Some(guard),
        Err(err) => {
            eprintln!("tend: {err:#}");
            return exit::FAILED;
        }
    };
    // Every service costs a few descriptors: 1024 runs out at a few hundred services.
    match tend::process::raise_open_files_limit() {
        Ok((old, new)) if old != new => {
            tracing::info!("open-file limit raised from {old} to the hard limit {new}")
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(
            "cannot raise the open-file limit ({err}); many services may hit \"Too many open files\""
        ),
    }
    loop {
        // SIGTERM/SIGINT/SIGQUIT are handled inside `run` (a second one needs the core's view).
        let shutdown = CancellationToken::new();
        let end = tend::run(config, shutdown, inherited).await;
        let listeners = match end {
            Ok(tend::DaemonEnd::Stopped) | Ok(tend::DaemonEnd::KeptServices) => return exit::OK,
            Err(err) => {
                tracing::error!("{err}");
                eprintln!("tend: {err}");
                tend::host::notify_status(&format!("failed: {err}"));
                return exit::FAILED;
            }
            Ok(tend::DaemonEnd::Reexec(listeners)) => listeners,
        };
        let exe = tend::reexec::own_exe();
        tracing::info!(exe = %exe.display(), "executing the new binary");
        // Flush tend's own log first: the new image starts its own writer.
        drop(guard.take());
        // systemd's variables were taken out of tend's environment at start; the new image needs them.
        let host_env: Vec<(String, String)> = tend::host::reexec_env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string_lossy().into_owned()))
            .collect();
        let err = tend::reexec::exec(&exe, &listeners, &host_env);
        tend::host::notify_ready();
        // Still here: the exec failed. The services are running and saved; adopt them again in place.
        // (tend's own log file was closed for the switch: from here on its log goes to stderr only.)
        tracing::error!("{err}; this tend carries on and adopts the services again");
        eprintln!("tend: {err}; this tend carries on and adopts the services again");
        inherited = tend::reexec::Inherited {
            control: listeners.control,
            web: listeners.web,
            reexec: true,
        };
        config = match tend::config::load(config_path) {
            Ok(config) => config,
            Err(err) => {
                // The preflight checked it a moment ago; if it broke since, the services still run.
                eprintln!("{}", render_config_error(&err));
                return exit::CONFIG;
            }
        };
    }
}

/// tend's own log: stderr and `LOG_DIR/tend.own.log`, rotated by size (10 MiB, 5 kept).
fn init_tracing(log_dir: &Path) -> anyhow::Result<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{fmt, EnvFilter};
    std::fs::create_dir_all(log_dir)
        .with_context(|| format!("cannot create log dir {}", log_dir.display()))?;
    let appender = tend::logs::OwnLog::open(
        log_dir,
        tend::logs::OWN_LOG_MAX_BYTES,
        tend::logs::OWN_LOG_KEEP,
    )
    .with_context(|| format!("cannot open tend's log file in {}", log_dir.display()))?;
    let (file, guard) = tracing_appender::non_blocking(appender);
    let filter = EnvFilter::try_from_env("TEND_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().with_writer(std::io::stderr))
        .with(fmt::layer().with_ansi(false).with_writer(file))
        .init();
    Ok(guard)
}

async fn client_command(config: &Path, socket: Option<&Path>, command: Cmd) -> u8 {
    let socket = match socket {
        Some(s) => s.to_path_buf(),
        None => match socket_path_from_config(config) {
            Ok(s) => s,
            Err(err) => {
                eprintln!("tend: {err}");
                return exit::NOT_RUNNING;
            }
        },
    };
    let mut client = match Client::connect(&socket).await {
        Ok(client) => client,
        Err(err) => {
            eprintln!("tend: {err}");
            return match err {
                ClientError::NotRunning { .. } => exit::NOT_RUNNING,
                _ => exit::FAILED,
            };
        }
    };
    let reexec = matches!(command, Cmd::Reexec);
    match run_client(&mut client, command).await {
        Ok(code) if reexec && code == exit::OK => {
            // The old image closes this connection when it executes the new one; only then is a
            // ping sure to be answered by the new image.
            let closed = async { while let Ok(Some(_)) = client.next().await {} };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(60), closed).await;
            wait_for_new_image(&socket).await
        }
        Ok(code) => code,
        Err(err) => {
            eprintln!("tend: {err:#}");
            exit::FAILED
        }
    }
}

/// After `tend reexec` was accepted: waits until the new image answers on the same socket.
async fn wait_for_new_image(socket: &Path) -> u8 {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match Client::connect(socket).await {
            Ok(mut client) => {
                if client.send(&Request::Ping).await.is_ok() {
                    if let Ok(Some(Response::Pong { version, pid })) = client.next().await {
                        println!("tend {version} (pid {pid}) is running; services adopted");
                        return exit::OK;
                    }
                }
            }
            // The listening socket lives on through a switch, so a refused connection means the new
            // image died (and closed it).
            Err(ClientError::NotRunning { .. }) => {
                eprintln!(
                    "tend: the new binary died after taking over (see tend's log or journal). The \
                     services keep running, untouched: start tend again (`tend up`, or let systemd \
                     restart it) and it adopts them."
                );
                return exit::FAILED;
            }
            Err(_) => {}
        }
        if tokio::time::Instant::now() > deadline {
            eprintln!(
                "tend: the new image did not answer within 60 s; the services keep running. \
                 Check tend's log; `tend up` adopts them."
            );
            return exit::FAILED;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn run_client(client: &mut Client, command: Cmd) -> anyhow::Result<u8> {
    let mut json_out = false;
    let request = match command {
        Cmd::Status { names, json } => {
            json_out = json;
            Request::Status { names }
        }
        Cmd::Start(a) => Request::Start {
            names: a.names,
            force: a.force,
        },
        Cmd::Stop { names } => Request::Stop { names },
        Cmd::Restart(a) => Request::Restart {
            names: a.names,
            force: a.force,
        },
        Cmd::Logs {
            name,
            lines,
            stderr,
            stdout,
            follow,
        } => Request::Logs {
            name,
            lines,
            stream: if stderr {
                Some(Stream::Stderr)
            } else if stdout {
                Some(Stream::Stdout)
            } else {
                None
            },
            follow,
        },
        Cmd::Shutdown {
            keep_services,
            stop_services,
        } => Request::Shutdown {
            keep_services: match (keep_services, stop_services) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
        },
        Cmd::Reexec => Request::Reexec,
        Cmd::Recover { group, cancel } => Request::Recover { group, cancel },
        Cmd::ReloadCache(a) => Request::ReloadCache {
            names: a.names,
            force: a.force,
        },
        Cmd::Checks { json } => {
            json_out = json;
            Request::Checks
        }
        Cmd::Diagnose { json } => {
            json_out = json;
            Request::Diagnose
        }
        Cmd::Reload => Request::Reload,
        Cmd::Reread => Request::Reread,
        Cmd::Schedules { json } => {
            json_out = json;
            Request::Schedules
        }
        Cmd::Up | Cmd::Check | Cmd::HashPassword { .. } | Cmd::MetricsToken | Cmd::Sim(_) => {
            unreachable!("handled before connecting")
        }
    };
    let follow = matches!(request, Request::Logs { follow: true, .. });
    client.send(&request).await?;
    let mut out = std::io::stdout().lock();
    loop {
        let Some(reply) = client.next().await? else {
            if follow {
                return Ok(exit::OK);
            }
            anyhow::bail!("tend closed the connection without answering");
        };
        match reply {
            Response::Line { line } => {
                writeln!(out, "{}", format_line(&line))?;
                out.flush()?;
                continue;
            }
            Response::Status { snapshot } => {
                if json_out {
                    serde_json::to_writer_pretty(&mut out, &snapshot)?;
                    writeln!(out)?;
                } else {
                    let now = Clock::new().now_ms();
                    if let Some(error) = &snapshot.config_error {
                        writeln!(out, "config error (running the last good configuration):")?;
                        writeln!(out, "{error}")?;
                    }
                    if let Some(warning) = &snapshot.state_warning {
                        writeln!(out, "state file: {warning}")?;
                    }
                    for s in &snapshot.services {
                        if let Some(loss) = &s.log_loss {
                            writeln!(
                                out,
                                "{}: log writes failing since {} ({}): {} lines lost, {} waiting",
                                s.name,
                                loss.since.format("%Y-%m-%d %H:%M:%S UTC"),
                                loss.error,
                                loss.lines_lost,
                                loss.lines_waiting
                            )?;
                        }
                    }
                    if !snapshot.pending_removals.is_empty() {
                        writeln!(
                            out,
                            "{}",
                            tend::reload::pending_text(&snapshot.pending_removals)
                        )?;
                    }
                    write!(out, "{}", render_status(&snapshot.services, now))?;
                    for r in snapshot
                        .recoveries
                        .iter()
                        .filter(|r| !r.recovery.is_finished())
                    {
                        writeln!(out, "recovery: {}", r.summary)?;
                    }
                    for a in &snapshot.accounts {
                        writeln!(out, "account {}: {}", a.group, a.summary)?;
                    }
                }
                return Ok(exit::OK);
            }
            Response::Actions { results } => {
                let mut code = exit::OK;
                for r in results {
                    let (text, c) = match &r.outcome {
                        Outcome::Done { message } => (message.clone(), exit::OK),
                        Outcome::Refused { message, .. } => (message.clone(), exit::REFUSED),
                        Outcome::Failed { message } => (message.clone(), exit::FAILED),
                        Outcome::NoSuchService => ("no such service".into(), exit::FAILED),
                    };
                    writeln!(out, "{}: {}", r.name, text)?;
                    if code == exit::OK {
                        code = c;
                    }
                }
                return Ok(code);
            }
            Response::Lines { lines } => {
                for line in lines {
                    writeln!(out, "{}", format_line(&line))?;
                }
                return Ok(exit::OK);
            }
            Response::Ok { message } => {
                writeln!(out, "{message}")?;
                return Ok(exit::OK);
            }
            Response::Checks { checks } => {
                if json_out {
                    serde_json::to_writer_pretty(&mut out, &checks)?;
                    writeln!(out)?;
                } else {
                    let now = Clock::new().now_ms();
                    write!(out, "{}", render_checks(&checks, now))?;
                }
                return Ok(exit::OK);
            }
            Response::Diagnosis { diagnosis } => {
                if json_out {
                    serde_json::to_writer_pretty(&mut out, &diagnosis)?;
                    writeln!(out)?;
                } else {
                    write!(out, "{}", tend::checks::diagnose::render(&diagnosis))?;
                }
                return Ok(match diagnosis.verdict {
                    tend::checks::probe::Status::Ok => exit::OK,
                    _ => exit::FAILED,
                });
            }
            Response::Schedules { at_ms, schedules } => {
                if json_out {
                    serde_json::to_writer_pretty(&mut out, &schedules)?;
                    writeln!(out)?;
                } else {
                    write!(out, "{}", render_schedules(&schedules, at_ms))?;
                }
                return Ok(exit::OK);
            }
            Response::Pong { version, pid } => {
                writeln!(out, "tend {version} (pid {pid})")?;
                return Ok(exit::OK);
            }
            Response::Error { code, message } => {
                eprintln!("tend: {message}");
                if follow && code == ErrorCode::BadRequest {
                    continue;
                }
                if code == ErrorCode::ConfigInvalid {
                    return Ok(exit::CONFIG);
                }
                if code == ErrorCode::ReexecRefused {
                    return Ok(exit::REFUSED);
                }
                return Ok(exit::FAILED);
            }
        }
    }
}

fn render_checks(rows: &[tend::control::protocol::CheckRow], now: i64) -> String {
    let header = [
        "CHECK", "SERVICE", "KIND", "EVERY", "ON FAIL", "STATUS", "FAILS", "AGE", "MESSAGE",
    ];
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let (status, fails, age, message) = match &r.last {
                Some(v) => (
                    v.status.to_string(),
                    format!("{}{}", v.failures, if v.alerting { " ALERT" } else { "" }),
                    human_ms(now - v.at_ms),
                    v.message.clone(),
                ),
                None => ("-".into(), "-".into(), "-".into(), "no result yet".into()),
            };
            vec![
                r.check.clone(),
                r.service.clone(),
                r.kind.clone(),
                human_ms(r.interval_ms as i64),
                r.action.clone(),
                status,
                fails,
                age,
                message,
            ]
        })
        .collect();
    render_table(&header, &table)
}

/// `tend schedules`: one row per schedule, its latest outcome's message on a line of its own.
fn render_schedules(schedules: &[tend::schedule::ScheduleView], now: i64) -> String {
    use tend::schedule::runner::utc_time;
    if schedules.is_empty() {
        return "no schedules ([[schedule]] entries in the configuration)\n".to_string();
    }
    let header = [
        "NAME", "CRON", "ACTION", "SERVICES", "NEXT RUN", "LAST RUN", "OUTCOME",
    ];
    let rows: Vec<Vec<String>> = schedules
        .iter()
        .map(|s| {
            let next = match (s.enabled, s.next_ms) {
                (false, _) => "disabled".to_string(),
                (true, None) => "never".to_string(),
                (true, Some(at)) => format!("{} (in {})", utc_time(at), human_ms(at - now)),
            };
            let (last, outcome) = match (s.running_since_ms, s.last()) {
                (Some(since), _) => (utc_time(since), "running".to_string()),
                (None, Some(run)) => (utc_time(run.at_ms), run.status.to_string()),
                (None, None) => ("-".to_string(), "-".to_string()),
            };
            let services = match (&s.detail, s.services.is_empty()) {
                (Some(detail), true) => detail.clone(),
                (_, true) => "-".to_string(),
                (_, false) => s.services.join(","),
            };
            vec![
                s.name.clone(),
                s.cron.clone(),
                s.action.clone(),
                services,
                next,
                last,
                outcome,
            ]
        })
        .collect();
    let table = render_table(&header, &rows);
    let mut out = String::new();
    for (line, s) in table
        .lines()
        .zip(std::iter::once(None).chain(schedules.iter().map(Some)))
    {
        out.push_str(line);
        out.push('\n');
        if let Some(run) = s.and_then(|s| s.last()) {
            out.push_str(&format!("  └ {}\n", run.message));
        }
    }
    out
}

fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// The supervisorctl-like table.
fn render_status(services: &[ServiceStatus], now: i64) -> String {
    let header = [
        "NAME",
        "STATE",
        "PID",
        "UPTIME",
        "RESTARTS",
        "LAST EXIT",
        "LAST START",
        "NEXT START",
    ];
    let rows: Vec<[String; 8]> = services
        .iter()
        .map(|s| {
            let next = if s.next_start.at_ms <= now {
                "now".to_string()
            } else {
                let hold = s
                    .next_start
                    .hold
                    .as_ref()
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                format!("in {}{hold}", human_ms(s.next_start.at_ms - now))
            };
            let state = if s.sticky_stop && s.state == tend::core::ServiceState::Stopped {
                "stopped*".to_string()
            } else {
                s.state.to_string()
            };
            [
                s.name.clone(),
                state,
                s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                s.since_ms
                    .map(|t| human_ms(now - t))
                    .unwrap_or_else(|| "-".into()),
                s.restarts.to_string(),
                s.last_exit
                    .as_ref()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "-".into()),
                s.last_start
                    .as_ref()
                    .map(|r| format!("{}{}", r.reason, if r.forced { " (forced)" } else { "" }))
                    .unwrap_or_else(|| "-".into()),
                next,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for (row, s) in rows.iter().zip(services) {
        line(row.iter().map(String::as_str).collect(), &mut out);
        if let Some(until) = s.flood_until_ms.filter(|t| *t > now) {
            out.push_str(&format!("  └ flood wait, {} left\n", human_ms(until - now)));
        }
        if let Some(message) = &s.message {
            out.push_str(&format!("  └ {message}\n"));
        }
    }
    if services.iter().any(|s| s.sticky_stop) {
        out.push_str("* stopped by hand: nothing restarts it until `tend start NAME`\n");
    }
    out
}
