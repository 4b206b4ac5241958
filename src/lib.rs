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
//! - [`sim`]: `tend-sim`, the emulator of the Telethon webhook services.
//! - [`reload`]: live reload of the configuration (file watcher, SIGHUP, `tend reload`), all-or-nothing.
//! - [`schedule`]: `[[schedule]]` cron entries: run times (pure) and the runner that performs them.
//! - [`web`]: the password-protected status page and its JSON API (`[web]` in the config).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub mod checks;
pub mod clock;
pub mod config;
pub mod control;
pub mod core;
pub mod logs;
pub mod process;
pub mod recovery;
pub mod reload;
pub mod schedule;
pub mod sim;
pub mod state;
pub mod web;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Socket(#[from] control::SocketError),
    #[error(transparent)]
    Supervisor(#[from] core::SupervisorError),
}

/// Runs the daemon until `shutdown` fires or a `shutdown` command arrives, then stops every service.
///
/// The control socket is bound first, so a second tend on the same socket fails before it starts anything.
pub async fn run(config: config::Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let socket = control::bind(
        &config.supervisor.socket,
        config.supervisor.socket_mode,
        config.supervisor.socket_group.as_deref(),
    )?;
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
    let core = tokio::spawn(supervisor.run());
    let context = control::server::Context {
        core: handle.clone(),
        monitor,
        config: config.clone(),
        http,
        reload: Some(reload),
        schedules: Some(schedules),
    };
    let web = match web::bind(context.clone(), shutdown.clone()) {
        Ok(web) => web.map(|server| tokio::spawn(server.serve())),
        Err(err) => {
            // The services are already coming up; a broken page must not take them down with it.
            tracing::error!("status page not started: {err}");
            eprintln!("tend: status page not started: {err}");
            None
        }
    };
    let control = tokio::spawn(socket.serve(context, shutdown.clone()));
    let _ = core.await;
    // The core ends on a shutdown command too; make sure every other task follows.
    shutdown.cancel();
    let _ = control.await;
    let _ = reloader.await;
    let _ = scheduler.await;
    if let Some(web) = web {
        let _ = web.await;
    }
    checks.wait().await;
    Ok(())
}
