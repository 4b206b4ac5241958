//! `tend-sim`: an emulator of the two Telethon webhook services (`send_text`, `send_media`) that tend
//! supervises, failures included (TELETHON.md §6). One service per process.
//!
//! Bird's-eye view: [`run`] binds the HTTP port, builds a [`service::Sim`] and serves [`http::app`]
//! until SIGTERM. The Sim's Telethon thread ([`service::TelethonLoop`]) connects, sweeps the dialogs
//! through the emulated client ([`client`]), whose every request goes through the account file shared by
//! all processes on that account ([`account`]) where the pure flood rules ([`flood`]) decide who gets
//! FLOOD_WAIT. Every text printed comes from [`texts`]; time is scaled by [`clock`].
//!
//! Code map:
//! - `args.rs`: clap options ([`SimArgs`], embeddable) → validated [`SimConfig`].
//! - `clock.rs`: nominal seconds ↔ real time (`--time-scale`); model clock = wall clock / scale.
//! - `flood.rs`: the flood model as pure functions over [`AccountState`].
//! - `account.rs`: `DIR/<account>.json` under `DIR/<account>.lock`, and the event record
//!   `DIR/<account>.events.jsonl` ([`read_events`], [`read_account_state`] for tests).
//! - `client.rs`: Telethon's `_call` (flood memory, sleeps, retries).
//! - `service.rs`: the process: cache, stats, Telethon thread, start-up and periodic coroutines, sends.
//! - `http.rs`: endpoints, status codes, control API.
//! - `faults.rs`: fault switches (a leaf); `fault_tasks.rs`: the tasks that act them out on the running
//!   service (above `service.rs`, so no circle).
//! - `universe.rs`: the seeded chats and chat-id rules. `rpc.rs`: Telegram errors. `log.rs`: output.
//!
//! Architecture invariants:
//! - Only `flood.rs` decides whether a request floods; it never reads a clock or a file.
//! - Every change of the account state happens inside one `Account::transact`, under the flock.
//! - Every string a real service prints is built in `texts.rs`.
//! - Durations are nominal seconds everywhere except at the `clock.rs` boundary (and the two
//!   per-wall-second fault rates).

mod account;
mod args;
mod client;
mod clock;
mod error;
mod fault_tasks;
mod faults;
mod flood;
mod http;
mod log;
mod rpc;
mod service;
pub mod texts;
mod universe;

use std::future::IntoFuture;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

pub use account::{read_account_state, read_events, AccountPaths, Cause, Event, EventKind};
pub use args::{Service, SimArgs, SimCli, SimConfig, StartupFaults};
pub use error::SimError;
pub use flood::{AccountState, FloodParams};
pub use log::LogFormat;

use service::Sim;

/// How long in-flight requests may finish after SIGTERM before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// The whole `tend-sim` command: parses `args` (program name first), runs, returns the exit code.
pub fn main_with_args<I: IntoIterator<Item = String>>(args: I) -> ExitCode {
    match SimCli::try_parse_from(args) {
        Ok(cli) => run_args(cli.args),
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

/// Runs the emulator from parsed options on a runtime of its own (for `tend sim`, when the caller has
/// no tokio runtime; inside one, use [`SimArgs::into_config`] and [`run`]).
pub fn run_args(args: SimArgs) -> ExitCode {
    let config = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tend-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tend-sim: {}", SimError::Runtime(e));
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tend-sim: {e}");
            ExitCode::FAILURE
        }
    };
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

/// Runs one emulated service until SIGTERM/SIGINT (exit 0) or a fault ends the process.
pub async fn run(cfg: SimConfig) -> Result<ExitCode, SimError> {
    // Installed first: from here on SIGTERM no longer kills by default, so `--ignore-sigterm` holds
    // even for a signal that arrives while the port is still being bound.
    let signals = Signals::install().map_err(SimError::Runtime)?;
    if cfg.faults.refuse_start || faults::take_refuse_start(&cfg)? {
        return Ok(refuse_start(&cfg));
    }
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|err| SimError::Bind {
            addr: addr.clone(),
            err,
        })?;
    let port = listener
        .local_addr()
        .map_err(|err| SimError::Bind {
            addr: addr.clone(),
            err,
        })?
        .port();
    let sim = Sim::new(cfg, port)?;
    sim.account.record(vec![
        Event::new(EventKind::Start).detail(format!("port {port}"))
    ])?;
    if let Some(path) = &sim.cfg.port_file {
        write_port_file(path, port)?;
    }
    if sim.cfg.gunicorn_banner {
        print_banner(&sim);
    }
    sim.boot();
    fault_tasks::start(&sim);
    let terminated = signals.watch(sim.clone());

    let shutdown = sim.shutdown.clone();
    let serve = axum::serve(listener, http::app(sim.clone()))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .into_future();
    let drained = async {
        sim.shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = serve => served.map_err(|err| SimError::Serve { addr: addr.clone(), err })?,
        () = drained => {}
    }
    if terminated.is_cancelled() && sim.cfg.gunicorn_banner {
        sim.log
            .gunicorn(sim.pid, "INFO", &texts::gunicorn::worker_exiting(sim.pid));
        sim.log
            .gunicorn(sim.pid, "INFO", &texts::gunicorn::shutting_down());
    }
    let _ = sim.account.record(vec![
        Event::new(EventKind::Exit).detail("shutdown: exit code 0")
    ]);
    Ok(ExitCode::SUCCESS)
}

/// `--refuse-start` / fault `refuse_start`: the import fails, as when another process holds the session.
fn refuse_start(cfg: &SimConfig) -> ExitCode {
    let clock = clock::ModelClock::new(cfg.time_scale);
    if let Ok(account) = account::Account::open(
        &cfg.state_dir,
        &cfg.account,
        cfg.service.name(),
        clock,
        cfg.flood,
    ) {
        let _ = account.record(vec![
            Event::new(EventKind::Start),
            Event::new(EventKind::Exit)
                .detail(format!("refuse_start: exit code {}", cfg.faults.exit_code)),
        ]);
    }
    log::Logger::new(cfg.log_format).raw_stderr(&texts::traceback(
        texts::FRAMES_IMPORT_SESSION,
        "sqlite3.OperationalError: database is locked",
    ));
    ExitCode::from(cfg.faults.exit_code)
}

fn write_port_file(path: &std::path::Path, port: u16) -> Result<(), SimError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{port}\n"))
        .map_err(|e| SimError::io("writing port file", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| SimError::io("writing port file", path, e))
}

fn print_banner(sim: &Sim) {
    let url = format!("http://{}:{}", sim.cfg.host, sim.port);
    let g = texts::gunicorn::starting();
    sim.log.gunicorn(sim.pid, "INFO", &g);
    sim.log
        .gunicorn(sim.pid, "INFO", &texts::gunicorn::listening(&url, sim.pid));
    sim.log
        .gunicorn(sim.pid, "INFO", &texts::gunicorn::using_worker());
    sim.log
        .gunicorn(sim.pid, "INFO", &texts::gunicorn::booting(sim.pid));
}

/// The signal streams of the process, registered before anything else happens.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// SIGTERM (unless ignored) and SIGINT cancel `sim.shutdown`. The returned token is cancelled when
    /// it was SIGTERM, for gunicorn's goodbye lines.
    fn watch(self, sim: Arc<Sim>) -> tokio_util::sync::CancellationToken {
        let Signals { mut term, mut int } = self;
        let terminated = tokio_util::sync::CancellationToken::new();
        let by_term = terminated.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => {
                        let ignored = sim.faults.ignore_sigterm();
                        let detail = if ignored { "SIGTERM ignored" } else { "SIGTERM" };
                        let _ = sim.account.record(vec![Event::new(EventKind::Signal).detail(detail)]);
                        if ignored {
                            continue;
                        }
                        if sim.cfg.gunicorn_banner {
                            sim.log.gunicorn(sim.pid, "INFO", &texts::gunicorn::handling_term());
                        }
                        by_term.cancel();
                        break;
                    }
                    _ = int.recv() => {
                        let _ = sim.account.record(vec![Event::new(EventKind::Signal).detail("SIGINT")]);
                        break;
                    }
                }
            }
            sim.shutdown.cancel();
        });
        terminated
    }
}
