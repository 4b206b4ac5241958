//! tend: a process supervisor for long-lived services that share one rate-limited account.
//!
//! Module map (docs/ARCHITECTURE.md has the data flow):
//! - [`config`]: `supervisor.toml` -> validated [`config::Config`]; every error with file, line and key.
//! - [`core`]: the supervisor actor, sole owner of service state; [`core::policy`] holds the restart rules
//!   as pure functions.
//! - [`process`]: spawning in process groups, signals, port holders, orphan reaping (system calls only).
//! - [`logs`]: capture of service output into rotating files, a ring buffer and a broadcast.
//! - [`state`]: what survives a restart of tend (start history, sticky stops), written atomically.
//! - [`control`]: the Unix control socket, its protocol and the CLI client.
//! - [`clock`]: wall-clock milliseconds that follow tokio's (pausable) clock.
//! - [`reload`]: live reload of the configuration (file watcher, SIGHUP, `tend reload`), all-or-nothing.
//! - [`schedule_rules`]: `[[schedule]]` entries and their pure rules (run times, missed runs, stagger).
//! - [`schedule`]: the runner that performs the schedules.
//! - [`verbs`]: the operator verbs (start, stop, restart, reload_cache, recover) and their one dispatch
//!   to the core, shared by the control socket, the web API and the schedules.
//! - [`web`]: the password-protected status page and its JSON API (`[web]` in the config).
//! - [`host`]: tend towards whatever started it: systemd (sd_notify readiness, status, watchdog) and
//!   container runtimes (PID 1: termination signals, a second signal skips the stop grace).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub mod alerts;
pub mod check_result;
pub mod checks;
pub mod clock;
pub mod config;
pub mod control;
pub mod core;
pub mod error_chain;
pub mod host;
pub mod logs;
pub mod process;
pub mod recovery;
pub mod reexec;
pub mod reload;
pub mod schedule;
pub mod schedule_rules;
pub mod state;
pub mod verbs;
pub mod web;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Socket(#[from] control::SocketError),
    #[error(transparent)]
    Supervisor(#[from] core::SupervisorError),
    /// A bug: the core panicked. The services were left running (a next tend adopts them).
    #[error("the supervisor core crashed: {0}; the services were left running")]
    CorePanicked(String),
}

/// How a run of the daemon ended.
#[derive(Debug)]
pub enum DaemonEnd {
    /// Every service was stopped.
    Stopped,
    /// The services were left running for the next tend to adopt.
    KeptServices,
    /// `tend reexec`: the services were handed over; exec the new binary with these listeners.
    Reexec(reexec::Listeners),
}

/// Runs the daemon until `shutdown` fires, SIGTERM/SIGINT/SIGQUIT arrives or a `shutdown` command
/// arrives, then stops every service (or leaves them running, see [`core::ShutdownMode`]; a second
/// signal SIGKILLs what is still stopping).
///
/// The control socket is bound first, so a second tend on the same socket fails before it starts anything.
/// `inherited` holds the listeners of the tend that re-executed into this process, if it did.
pub async fn run(
    config: config::Config,
    shutdown: CancellationToken,
    inherited: reexec::Inherited,
) -> Result<DaemonEnd, RunError> {
    // host: termination handlers from the very start (as PID 1, a signal without one is dropped).
    let signals = host::Terminations::install();
    let socket = match inherited.control {
        Some(fd) => control::server::inherit(&config.supervisor.socket, fd)?,
        None => control::bind(
            &config.supervisor.socket,
            config.supervisor.socket_mode,
            config.supervisor.socket_group.as_deref(),
        )?,
    };
    if inherited.reexec {
        tracing::info!("re-executed: adopting the services of the previous image");
    }
    if let Err(err) = process::become_subreaper() {
        tracing::warn!("cannot become child subreaper ({err}); orphans of services go to init");
    }
    let config = Arc::new(config);
    let clock = clock::Clock::new();
    let (supervisor, handle) = core::Supervisor::new(config.clone(), clock, shutdown.clone())?;
    tracing::info!(
        socket = %socket.path().display(),
        services = config.services.len(),
        "tend is up"
    );
    let (monitor, checks) = checks::monitor::spawn(
        config.clone(),
        handle.clone(),
        &supervisor.logs(),
        clock,
        shutdown.clone(),
    );
    let http = reqwest::Client::new();
    let (schedules, scheduler) = schedule::runner::spawn(
        config.clone(),
        schedule::Actions::new(handle.clone(), monitor.clone(), http.clone()),
        clock,
        shutdown.clone(),
    );
    let (reload, reloader) = reload::spawn(
        config.clone(),
        handle.clone(),
        monitor.clone(),
        schedules.clone(),
        shutdown.clone(),
    );
    // alerts: subscribed before the core starts, so the first events are not missed.
    let alerts = alerts::task::spawn(
        config.clone(),
        Some(reload.subscribe()),
        &handle,
        clock,
        inherited.reexec,
        shutdown.clone(),
    );
    let core = tokio::spawn(supervisor.run());
    let (reexec_tx, reexec_rx) = tokio::sync::mpsc::channel(1);
    let context = control::server::Context {
        core: handle.clone(),
        monitor,
        config: config.clone(),
        http,
        reload: Some(reload),
        reexec: Some(reexec_tx.clone()),
        schedules: Some(schedules),
    };
    let reexec_task = tokio::spawn(reexec_on_request(
        handle.clone(),
        config.clone(),
        reexec_rx,
        reexec_tx,
        shutdown.clone(),
    ));
    let mut listeners = reexec::Listeners {
        control: socket.duplicate(),
        web: None,
    };
    let keep_socket_file = socket.keep_file();
    let mut web_auth = None;
    let web = match web::bind_inherited(context.clone(), shutdown.clone(), inherited.web) {
        Ok(web) => web.map(|server| {
            listeners.web = server.duplicate();
            web_auth = Some(server.auth());
            tokio::spawn(server.serve())
        }),
        Err(err) => {
            // The services are already coming up; a broken page must not take them down with it.
            tracing::error!("status page not started: {err}");
            eprintln!("tend: status page not started: {err}");
            None
        }
    };
    let control = tokio::spawn(socket.serve(context, shutdown.clone()));
    // host: signals; under systemd READY=1 after the core's first answer, STATUS=, watchdog, STOPPING=1.
    let host = host::spawn(handle.clone(), signals, shutdown.clone());
    let core = core.await;
    let mode = match &core {
        Ok(mode) => *mode,
        // A panicked core stopped nothing: the services run on for the next tend to adopt.
        Err(_) => core::ShutdownMode::KeepServices,
    };
    if mode == core::ShutdownMode::Reexec {
        keep_socket_file.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(auth) = &web_auth {
            let path = web::sessions_handover_path(&config.supervisor.state_dir);
            if let Err(err) = auth.save_handover(&path) {
                tracing::warn!(
                    "cannot hand the status page's sign-ins over ({err}); users sign in again"
                );
            }
        }
    }
    // The core ends on a shutdown command too; make sure every other task follows.
    shutdown.cancel();
    reexec_task.abort();
    let _ = control.await;
    let _ = reloader.await;
    let _ = scheduler.await;
    if let Some(web) = web {
        let _ = web.await;
    }
    checks.wait().await;
    let _ = alerts.await;
    let _ = host.await;
    if let Err(join) = core {
        if join.is_panic() {
            return Err(RunError::CorePanicked(panic_text(join.into_panic())));
        }
    }
    Ok(match mode {
        core::ShutdownMode::Stop => DaemonEnd::Stopped,
        core::ShutdownMode::KeepServices => DaemonEnd::KeptServices,
        core::ShutdownMode::Reexec => DaemonEnd::Reexec(listeners),
    })
}

/// Turns a reexec request (`tend reexec`, already checked by the control server) or SIGUSR2 (checked
/// here) into a handover by the core.
async fn reexec_on_request(
    core: core::CoreHandle,
    config: std::sync::Arc<config::Config>,
    mut requests: tokio::sync::mpsc::Receiver<()>,
    trigger: tokio::sync::mpsc::Sender<()>,
    shutdown: CancellationToken,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut usr2 = signal(SignalKind::user_defined2()).ok();
    loop {
        tokio::select! {
            Some(()) = requests.recv() => break,
            _ = process::next_signal(&mut usr2) => {
                tracing::info!("SIGUSR2 received: re-executing");
                match reexec::preflight(&reexec::own_exe(), &config.source).await {
                    Ok(_) => {
                        let _ = trigger.try_send(());
                    }
                    Err(err) => tracing::error!("SIGUSR2: {err}"),
                }
            }
            _ = shutdown.cancelled() => return,
        }
    }
    tracing::info!("handing the services over to the new image");
    host::notify_handing_over();
    let _ = core.shutdown(core::ShutdownMode::Reexec).await;
}

fn panic_text(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
