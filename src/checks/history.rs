//! Check history: every result of every check on every service, for the last hours, persisted.
//!
//! One task owns it; the scheduler sends results in, the web page and `tend diagnose` ask for series.
//! Saved to `STATE_DIR/check-history.json` every few seconds when something changed and at shutdown, so
//! a restart of tend keeps the health strip.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::probe::Status;
use crate::clock::{Clock, Millis};

/// How far back the history reaches (the page shows 2 hours).
pub const KEEP_MS: Millis = 3 * 60 * 60 * 1000;
/// Points kept per series at most (a 1 s interval for 3 hours would be 10,800).
pub const MAX_POINTS: usize = 4000;
const SAVE_EVERY: Duration = Duration::from_secs(5);

/// One result, small.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub at_ms: Millis,
    pub status: Status,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The results of one check on one service, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub check: String,
    pub service: String,
    pub points: Vec<Point>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    version: u32,
    series: Vec<Series>,
}

enum Msg {
    Add {
        check: String,
        service: String,
        point: Point,
    },
    Query {
        since_ms: Millis,
        reply: oneshot::Sender<Vec<Series>>,
    },
}

/// Handle to the history task.
#[derive(Debug, Clone)]
pub struct History {
    tx: mpsc::UnboundedSender<Msg>,
}

impl History {
    /// Loads `state_dir/check-history.json` (a corrupt file is moved aside) and starts the task, which
    /// saves a last time when `shutdown` fires.
    pub fn spawn(
        state_dir: PathBuf,
        clock: Clock,
        shutdown: CancellationToken,
    ) -> (History, tokio::task::JoinHandle<()>) {
        let path = state_dir.join("check-history.json");
        let mut series: BTreeMap<(String, String), VecDeque<Point>> = BTreeMap::new();
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Stored>(&bytes) {
                Ok(stored) => {
                    for s in stored.series {
                        series.insert((s.check, s.service), s.points.into());
                    }
                }
                Err(err) => {
                    let aside = path.with_extension(format!("json.corrupt-{}", clock.now_ms()));
                    tracing::warn!(
                        "check history {} is unreadable ({err}); moved to {}",
                        path.display(),
                        aside.display()
                    );
                    let _ = std::fs::rename(&path, &aside);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => tracing::warn!("cannot read check history {}: {err}", path.display()),
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut dirty = false;
            let mut save_tick = tokio::time::interval(SAVE_EVERY);
            save_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    msg = rx.recv() => match msg {
                        Some(Msg::Add { check, service, point }) => {
                            let now = clock.now_ms();
                            let points = series.entry((check, service)).or_default();
                            points.push_back(point);
                            while points.len() > MAX_POINTS
                                || points.front().is_some_and(|p| now - p.at_ms > KEEP_MS)
                            {
                                points.pop_front();
                            }
                            dirty = true;
                        }
                        Some(Msg::Query { since_ms, reply }) => {
                            let out = series
                                .iter()
                                .map(|((check, service), points)| Series {
                                    check: check.clone(),
                                    service: service.clone(),
                                    points: points.iter().filter(|p| p.at_ms >= since_ms).cloned().collect(),
                                })
                                .collect();
                            let _ = reply.send(out);
                        }
                        None => break,
                    },
                    _ = save_tick.tick(), if dirty => {
                        save(&path, &series);
                        dirty = false;
                    }
                    _ = shutdown.cancelled() => break,
                }
            }
            if dirty {
                save(&path, &series);
            }
        });
        (History { tx }, task)
    }

    pub fn add(&self, check: &str, service: &str, point: Point) {
        let _ = self.tx.send(Msg::Add {
            check: check.to_string(),
            service: service.to_string(),
            point,
        });
    }

    /// Every series, with the points at or after `since_ms`.
    pub async fn query(&self, since_ms: Millis) -> Vec<Series> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Query { since_ms, reply }).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

fn save(path: &std::path::Path, series: &BTreeMap<(String, String), VecDeque<Point>>) {
    let stored = Stored {
        version: 1,
        series: series
            .iter()
            .map(|((check, service), points)| Series {
                check: check.clone(),
                service: service.clone(),
                points: points.iter().cloned().collect(),
            })
            .collect(),
    };
    let bytes = serde_json::to_vec(&stored).expect("history serializes");
    if let Err(err) = crate::state::write_atomically(path, &bytes) {
        tracing::warn!("cannot save check history: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at_ms: Millis, status: Status) -> Point {
        Point {
            at_ms,
            status,
            duration_ms: 1,
            value: None,
            message: String::new(),
        }
    }

    #[tokio::test]
    async fn keeps_prunes_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::new();
        let now = clock.now_ms();
        let token = CancellationToken::new();
        let (history, task) = History::spawn(dir.path().to_path_buf(), clock, token.clone());
        history.add("health", "a", point(now - KEEP_MS - 1000, Status::Ok));
        history.add("health", "a", point(now - 1000, Status::Critical));
        history.add("health", "a", point(now, Status::Ok));
        let series = history.query(0).await;
        assert_eq!(series.len(), 1);
        assert_eq!(
            series[0].points.len(),
            2,
            "the point older than KEEP_MS is pruned"
        );
        assert_eq!(history.query(now).await[0].points.len(), 1);
        token.cancel();
        task.await.unwrap();

        let token = CancellationToken::new();
        let (history, _task) = History::spawn(dir.path().to_path_buf(), clock, token);
        let series = history.query(0).await;
        assert_eq!(
            series[0]
                .points
                .iter()
                .map(|p| p.status)
                .collect::<Vec<_>>(),
            vec![Status::Critical, Status::Ok]
        );
    }
}
