//! How tend lives with whatever started it: systemd (readiness, a status line, watchdog keep-alives,
//! all over sd_notify) or a container runtime (tend as PID 1: termination signals, a second signal
//! that skips the stop grace).
//!
//! - [`notify`]: the sd_notify protocol, the environment systemd hands to tend (read once, removed so
//!   services never inherit it) and the functions the rest of tend calls: [`notify_ready`],
//!   [`notify_reloading`], [`notify_stopping`], [`notify_status`].
//! - [`watchdog`]: `WATCHDOG=1` only while the core answers.
//! - [`signals`]: SIGTERM/SIGINT/SIGQUIT → shutdown, again → `CoreHandle::hurry` (the runners SIGKILL the groups being stopped).
//! - here: the task [`spawn`]ed by [`crate::run`] that sends `READY=1` once the core has done its
//!   autostart, keeps `STATUS=` current (at most once a second) and sends `STOPPING=1`.
//!
//! This module reads the core's snapshot and asks `status()`; it must not change service state.
//! Orphan reaping (which PID 1 needs most) is the core's, on SIGCHLD (`process::reap_orphans`).

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::core::{CoreHandle, ServiceState, Snapshot};

pub mod notify;
pub mod signals;
pub mod watchdog;

pub use notify::{
    init_from_env, notify_handing_over, notify_ready, notify_reloading, notify_status,
    notify_stopping, reexec_env, SystemdEnv, HOST_VARS,
};
pub use signals::Terminations;

/// At most one `STATUS=` update per this long: a crash loop must not flood systemd's journal.
pub const STATUS_GAP: Duration = Duration::from_secs(1);

/// The one-line status for `systemctl status`: "2 running, 0 waiting, 0 failed", then the other
/// states that have members, a running recovery and a failed reload.
pub fn summary(snapshot: &Snapshot) -> String {
    let count = |f: &dyn Fn(&crate::core::ServiceStatus) -> bool| {
        snapshot.services.iter().filter(|s| f(s)).count()
    };
    let exited_badly = |s: &crate::core::ServiceStatus| {
        s.state == ServiceState::Exited && s.last_exit.as_ref().is_some_and(|e| e.code != Some(0))
    };
    let running = count(&|s| s.state == ServiceState::Running);
    let waiting = count(&|s| s.state == ServiceState::Waiting);
    let failed = count(&|s| {
        matches!(s.state, ServiceState::Backoff | ServiceState::Fatal) || exited_badly(s)
    });
    let mut text = format!("{running} running, {waiting} waiting, {failed} failed");
    let others = [
        ("starting", count(&|s| s.state == ServiceState::Starting)),
        ("stopping", count(&|s| s.state == ServiceState::Stopping)),
        (
            "stopped",
            count(&|s| {
                s.state == ServiceState::Stopped
                    || (s.state == ServiceState::Exited && !exited_badly(s))
            }),
        ),
    ];
    for (what, n) in others {
        if n > 0 {
            text.push_str(&format!(", {n} {what}"));
        }
    }
    for recovery in snapshot
        .recoveries
        .iter()
        .filter(|r| !r.recovery.is_finished())
    {
        text.push_str(&format!("; recovery: {}", recovery.summary));
    }
    if snapshot.config_error.is_some() {
        text.push_str("; configuration reload failed (see tend status)");
    }
    text
}

/// When the wanted status line should go out: never if systemd already has it, else [`STATUS_GAP`]
/// after the previous one.
pub fn next_status_at(sent: &str, sent_at: Instant, want: &str, gap: Duration) -> Option<Instant> {
    (sent != want).then(|| sent_at + gap)
}

/// Starts serving the termination signals and, under systemd, the readiness / status / watchdog /
/// stopping messages. Call it right after spawning the core; the task ends when the core is gone.
pub fn spawn(
    core: CoreHandle,
    signals: Terminations,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let signal_task = tokio::spawn(signals::serve(signals, core.clone(), shutdown.clone()));
        if crate::process::is_pid1() {
            tracing::info!(
                "tend is PID 1: it reaps every orphan of this pid namespace and stops on SIGTERM, SIGINT or SIGQUIT"
            );
        }
        if notify::host().enabled() {
            announce(core, shutdown).await;
        }
        let _ = signal_task.await;
    })
}

async fn announce(core: CoreHandle, shutdown: CancellationToken) {
    let mut snapshots = core.snapshot();
    // The core runs its autostart before it serves its first command, so its first answer means every
    // service is started, waiting on its gate, or adopted.
    let Ok(first) = core.status().await else {
        return;
    };
    let mut sent = summary(&first);
    notify::notify_first_ready(&sent);
    tracing::info!(status = %sent, "told systemd tend is ready");
    let mut sent_at = Instant::now();
    let mut want = sent.clone();

    let stop = CancellationToken::new();
    let watchdog = match watchdog::interval(notify::host().inherited(), std::process::id()) {
        Ok(Some(interval)) => {
            tracing::info!(
                "systemd watchdog: a keep-alive every {} while the core answers",
                crate::clock::human_ms(watchdog::ping_period(interval).as_millis() as i64)
            );
            let core = core.clone();
            Some(tokio::spawn(watchdog::keep_alive(
                interval,
                move || {
                    let core = core.clone();
                    async move { core.status().await.is_ok() }
                },
                notify::notify_watchdog,
                stop.clone(),
            )))
        }
        Ok(None) => None,
        Err(err) => {
            tracing::warn!("{err}");
            None
        }
    };

    let mut stopping = false;
    loop {
        let due = next_status_at(&sent, sent_at, &want, STATUS_GAP);
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
                want = summary(&snapshots.borrow_and_update());
                if stopping {
                    want = format!("stopping: {want}");
                }
            }
            _ = crate::clock::sleep_until_opt(due) => {
                notify_status(&want);
                sent.clone_from(&want);
                sent_at = Instant::now();
            }
            _ = shutdown.cancelled(), if !stopping && !notify::handing_over() => {
                stopping = true;
                want = format!("stopping: {}", summary(&snapshots.borrow()));
                notify_stopping(&want);
                sent.clone_from(&want);
                sent_at = Instant::now();
            }
        }
    }
    if !stopping && !notify::handing_over() {
        // The core ended without the shutdown token (`tend shutdown`): say so before tend exits.
        notify_stopping("stopping: every service is down");
    }
    stop.cancel();
    if let Some(watchdog) = watchdog {
        let _ = watchdog.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{ExitInfo, ServiceStatus};

    fn service(state: ServiceState, exit_code: Option<i32>) -> ServiceStatus {
        ServiceStatus {
            name: "s".into(),
            state,
            last_exit: exit_code.map(|code| ExitInfo {
                at_ms: 0,
                code: Some(code),
                signal: None,
                ran_ms: 0,
            }),
            ..ServiceStatus::default()
        }
    }

    fn snapshot(states: &[(ServiceState, Option<i32>)]) -> Snapshot {
        Snapshot {
            services: states.iter().map(|(s, c)| service(*s, *c)).collect(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn summaries() {
        use ServiceState::*;
        type Row<'a> = (&'a [(ServiceState, Option<i32>)], &'a str);
        let table: &[Row] = &[
            (&[], "0 running, 0 waiting, 0 failed"),
            (
                &[(Running, None), (Running, None)],
                "2 running, 0 waiting, 0 failed",
            ),
            (
                &[(Running, None), (Waiting, None)],
                "1 running, 1 waiting, 0 failed",
            ),
            (
                &[(Backoff, Some(1)), (Fatal, Some(1)), (Exited, Some(3))],
                "0 running, 0 waiting, 3 failed",
            ),
            (
                &[
                    (Starting, None),
                    (Stopping, None),
                    (Stopped, None),
                    (Exited, Some(0)),
                ],
                "0 running, 0 waiting, 0 failed, 1 starting, 1 stopping, 2 stopped",
            ),
        ];
        for (states, want) in table {
            assert_eq!(summary(&snapshot(states)), *want, "{states:?}");
        }
        let mut broken = snapshot(&[(Running, None)]);
        broken.config_error = Some("supervisor.toml:3:1: …".into());
        assert_eq!(
            summary(&broken),
            "1 running, 0 waiting, 0 failed; configuration reload failed (see tend status)"
        );
    }

    #[test]
    fn status_lines_are_spaced() {
        let t0 = Instant::now();
        let gap = Duration::from_secs(1);
        assert_eq!(next_status_at("a", t0, "a", gap), None);
        assert_eq!(next_status_at("a", t0, "b", gap), Some(t0 + gap));
    }
}
