//! The alerts task: subscribes to the core's events and snapshots, turns them into alerts
//! ([`super::schema::Mapper`]) and fans each out to every receiver whose `min_severity` it meets. It
//! follows the running configuration, so a reload that changes `[alerts]` switches receivers at once
//! (the old ones deliver what they already queued, then end). It never touches service state.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::schema::{Alert, Context, Mapper};
use super::{Sender, WebhookOptions};
use crate::clock::Clock;
use crate::config::{AlertReceiver, Config};
use crate::core::CoreHandle;

/// How long, at shutdown, queued alerts may still take to go out.
const DRAIN: Duration = Duration::from_secs(5);

/// Posts one alert to every receiver of `config` it passes the filter of, in tasks of their own that
/// end once it is delivered (a scheduled diagnosis; the running alerts use their long-lived queues).
pub fn send_once(http: &reqwest::Client, config: &Config, alert: &Alert) -> usize {
    let receivers = Receivers::build(http, config);
    receivers.send(alert);
    receivers
        .list
        .iter()
        .filter(|(r, _, _)| alert.severity >= r.min_severity)
        .count()
}

struct Receivers {
    list: Vec<(AlertReceiver, Sender, JoinHandle<()>)>,
    /// What they were built from, to rebuild only when it changes.
    built_from: (Vec<AlertReceiver>, u32, Duration),
}

impl Receivers {
    fn build(http: &reqwest::Client, config: &Config) -> Receivers {
        let a = &config.alerts;
        let options = WebhookOptions {
            retries: a.retries,
            backoff: a.retry_delay,
            ..WebhookOptions::default()
        };
        let list = a
            .all_receivers()
            .into_iter()
            .map(|r| {
                let (sender, task) =
                    Sender::spawn_with(http.clone(), r.url.clone(), options.clone());
                (r, sender, task)
            })
            .collect();
        Receivers {
            list,
            built_from: (a.all_receivers(), a.retries, a.retry_delay),
        }
    }

    fn send(&self, alert: &Alert) {
        let Ok(payload) = serde_json::to_value(alert) else {
            return;
        };
        for (receiver, sender, _) in &self.list {
            if alert.severity >= receiver.min_severity {
                sender.send(payload.clone());
            }
        }
    }

    /// Drops the senders and gives their tasks `DRAIN` to deliver what is queued.
    async fn close(self) {
        let tasks: Vec<JoinHandle<()>> = self.list.into_iter().map(|(_, _, t)| t).collect();
        let _ = tokio::time::timeout(DRAIN, futures_util::future::join_all(tasks)).await;
    }
}

/// This machine's name, for the `host` field when `[alerts] host` is not set.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The fields every alert of this configuration carries.
pub fn context(config: &Config) -> Context {
    let a = &config.alerts;
    let page_url = a.page_url.clone().or_else(|| {
        config.web.as_ref().map(|web| {
            let scheme = if web.tls.is_some() { "https" } else { "http" };
            format!("{scheme}://{}/", web.listen)
        })
    });
    Context {
        host: a.host.clone().unwrap_or_else(host_name),
        page_url,
        settings: a.clone(),
        groups: config
            .services
            .iter()
            .filter_map(|(name, s)| s.group.clone().map(|g| (name.clone(), g)))
            .collect(),
    }
}

/// Starts the alerts task. `configs` follows reloads (`None`: the configuration never changes).
/// Subscribe before the core starts anything, so the first events are not missed.
pub fn spawn(
    config: Arc<Config>,
    configs: Option<watch::Receiver<Arc<Config>>>,
    core: &CoreHandle,
    clock: Clock,
    reexec: bool,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let events = core.subscribe();
    let snapshots = core.snapshot();
    tokio::spawn(run(
        config, configs, events, snapshots, clock, reexec, shutdown,
    ))
}

async fn run(
    config: Arc<Config>,
    mut configs: Option<watch::Receiver<Arc<Config>>>,
    mut events: broadcast::Receiver<crate::core::Event>,
    mut snapshots: watch::Receiver<crate::core::Snapshot>,
    clock: Clock,
    reexec: bool,
    shutdown: CancellationToken,
) {
    let http = reqwest::Client::builder()
        .user_agent(concat!("tend/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default();
    let mut receivers = Receivers::build(&http, &config);
    let mut mapper = Mapper::new(context(&config));
    receivers.send(&mapper.started(reexec, clock.now_ms()));
    loop {
        let alerts = tokio::select! {
            event = events.recv() => match event {
                Ok(event) => mapper.on_event(&event),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("the alerts task fell {n} events behind; some alerts were not sent");
                    Vec::new()
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
                let snapshot = snapshots.borrow_and_update().clone();
                mapper.on_snapshot(&snapshot)
            }
            Some(new) = next_config(&mut configs) => {
                let a = &new.alerts;
                if receivers.built_from != (a.all_receivers(), a.retries, a.retry_delay) {
                    let old = std::mem::replace(&mut receivers, Receivers::build(&http, &new));
                    tokio::spawn(old.close());
                    tracing::info!(receivers = receivers.list.len(), "alerts: receivers replaced");
                }
                mapper.context = context(&new);
                Vec::new()
            }
            _ = shutdown.cancelled() => break,
        };
        for alert in &alerts {
            tracing::debug!(id = %alert.id, status = ?alert.status, "alert");
            receivers.send(alert);
        }
    }
    receivers.close().await;
}

/// The next applied configuration; pending forever without a watch (or once it is closed).
async fn next_config(configs: &mut Option<watch::Receiver<Arc<Config>>>) -> Option<Arc<Config>> {
    match configs {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(rx.borrow_and_update().clone()),
            Err(_) => {
                *configs = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}
