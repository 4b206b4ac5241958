//! What a due schedule does, through the same doors as everyone else: `reload_cache` and `restart` go
//! to the core's handle (its start gate decides; a refusal is the outcome, never retried here),
//! `diagnose` is the diagnosis of `tend diagnose` (logged, and posted to the alert webhook when asked),
//! `exec` runs a command ([`super::exec`]).
//!
//! Each run is one future owned by the runner; nothing here keeps state between runs.

use futures_util::future::BoxFuture;

use super::runner::{Job, Perform, Performed, RunStatus};
use crate::checks::monitor::MonitorHandle;
use crate::clock::human_ms;
use crate::core::{CoreHandle, Outcome, ServiceState};
use crate::schedule_rules::ScheduleAction;
use crate::verbs::{self, Verb};

/// The real performer: the core, the checks and an HTTP client for the probes and the webhook.
#[derive(Clone)]
pub struct Actions {
    core: CoreHandle,
    monitor: MonitorHandle,
    http: reqwest::Client,
}

impl Actions {
    pub fn new(core: CoreHandle, monitor: MonitorHandle, http: reqwest::Client) -> Actions {
        Actions {
            core,
            monitor,
            http,
        }
    }
}

impl Perform for Actions {
    fn perform(&self, job: Job) -> BoxFuture<'static, Performed> {
        let actions = self.clone();
        Box::pin(async move {
            match &job.spec.action {
                ScheduleAction::ReloadCache => actions.reload_cache(&job).await,
                ScheduleAction::Restart => actions.restart(&job).await,
                ScheduleAction::Diagnose { alert } => actions.diagnose(&job, *alert).await,
                ScheduleAction::Exec {
                    command,
                    cwd,
                    timeout,
                } => {
                    let env = [("TEND_SCHEDULE", job.spec.name.as_str())];
                    super::exec::run(command, cwd, &env, *timeout).await
                }
            }
        })
    }
}

impl Actions {
    /// `POST /reload_cache` on each service in turn; each is gated like a start by the core.
    async fn reload_cache(&self, job: &Job) -> Performed {
        let by = job.by();
        let mut results = Vec::new();
        for name in &job.spec.services {
            let verb = Verb::ReloadCache { force: false };
            let result = match verbs::dispatch(&self.core, &verb, name, &by).await {
                Ok(action) => outcome(name, &action.outcome),
                Err(gone) => (RunStatus::Failed, format!("{name}: {gone}")),
            };
            results.push(result);
        }
        combine(results)
    }

    /// Restarts each service that runs now, in turn. A service that is down is left alone: a schedule
    /// must not start what a person stopped (a sticky stop), gave up on (fatal), or what stays down
    /// by its restart mode.
    async fn restart(&self, job: &Job) -> Performed {
        let snapshot = match self.core.status().await {
            Ok(snapshot) => snapshot,
            Err(gone) => return Performed::new(RunStatus::Failed, gone.to_string()),
        };
        let restart = Verb::ScheduledRestart {
            schedule: job.spec.name.clone(),
        };
        let mut results = Vec::new();
        for name in &job.spec.services {
            let state = snapshot
                .services
                .iter()
                .find(|s| &s.name == name)
                .map(|s| (s.state, s.sticky_stop));
            let result = match state {
                None => (RunStatus::Failed, format!("{name}: no such service")),
                Some((state, sticky))
                    if !state.has_process() || state == ServiceState::Stopping =>
                {
                    let why = if sticky { " (stopped by hand)" } else { "" };
                    (
                        RunStatus::Skipped,
                        format!(
                            "{name}: is {state}{why}; a schedule restarts only a running service"
                        ),
                    )
                }
                Some(_) => match verbs::dispatch(&self.core, &restart, name, &job.by()).await {
                    Ok(action) => outcome(name, &action.outcome),
                    Err(gone) => (RunStatus::Failed, format!("{name}: {gone}")),
                },
            };
            results.push(result);
        }
        combine(results)
    }

    /// The diagnosis `tend diagnose` prints, into tend's log (and to the alert webhook with `alert`).
    async fn diagnose(&self, job: &Job, alert: bool) -> Performed {
        let Some(diagnosis) =
            crate::checks::diagnose::diagnose(&job.config, &self.core, &self.monitor, &self.http)
                .await
        else {
            return Performed::new(RunStatus::Failed, "tend is shutting down");
        };
        let text = crate::checks::diagnose::render(&diagnosis);
        tracing::info!(schedule = %job.spec.name, "scheduled diagnosis:\n{text}");
        let mut message = match diagnosis.advice.first() {
            Some(advice) => format!(
                "verdict {}: {} problem(s), first: {}",
                diagnosis.verdict,
                diagnosis.advice.len(),
                advice.text
            ),
            None => format!("verdict {}: all is well", diagnosis.verdict),
        };
        message.push_str("; the report is in tend's log");
        if alert {
            let mapper =
                crate::alerts::schema::Mapper::new(crate::alerts::task::context(&job.config));
            let report = mapper.diagnosis(
                &job.spec.name,
                diagnosis.verdict,
                message.clone(),
                text,
                job.at_ms,
            );
            match crate::alerts::task::send_once(&self.http, &job.config, &report) {
                0 => message.push_str(
                    "; no [alerts] receiver takes it (none configured, or all above its severity)",
                ),
                _ => message.push_str(" and posted to the alert webhook"),
            }
        }
        Performed::new(RunStatus::Ok, message)
    }
}

/// One service's outcome as a status and a line.
fn outcome(name: &str, outcome: &Outcome) -> (RunStatus, String) {
    match outcome {
        Outcome::Done { message } => (RunStatus::Ok, format!("{name}: {message}")),
        Outcome::Refused {
            hold, retry_in_ms, ..
        } => (
            RunStatus::Refused,
            format!(
                "{name}: refused by {hold} (allowed in {}); not retried, the schedule waits for its \
                 next time",
                human_ms(*retry_in_ms)
            ),
        ),
        Outcome::Failed { message } => (RunStatus::Failed, format!("{name}: {message}")),
        Outcome::NoSuchService => (RunStatus::Failed, format!("{name}: no such service")),
    }
}

fn combine(results: Vec<(RunStatus, String)>) -> Performed {
    let status = RunStatus::worst(results.iter().map(|(s, _)| *s));
    let lines: Vec<String> = results.into_iter().map(|(_, line)| line).collect();
    Performed::new(status, lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Hold;

    #[test]
    fn outcomes_combine_into_one_status_and_line_per_service() {
        let done = outcome(
            "send_text",
            &Outcome::Done {
                message: "dialog cache reload requested (counted like a start)".into(),
            },
        );
        let refused = outcome(
            "send_media",
            &Outcome::Refused {
                message: "refused: ... (use --force to override)".into(),
                retry_in_ms: 250_000,
                hold: Hold::GroupSpacing {
                    group: "telegram".into(),
                },
            },
        );
        assert_eq!(
            refused.1,
            "send_media: refused by group telegram spacing (allowed in 4m10s); not retried, the \
             schedule waits for its next time"
        );
        let both = combine(vec![done.clone(), refused]);
        assert_eq!(both.status, RunStatus::Refused);
        assert!(both
            .message
            .starts_with("send_text: dialog cache reload requested"));
        assert!(both
            .message
            .contains("; send_media: refused by group telegram spacing"));

        let failed = outcome(
            "x",
            &Outcome::Failed {
                message: "is stopped: nothing to reload".into(),
            },
        );
        assert_eq!(
            combine(vec![done.clone(), failed]).status,
            RunStatus::Failed
        );
        assert_eq!(combine(vec![done]).status, RunStatus::Ok);
        let skipped = (RunStatus::Skipped, "y: is stopped".to_string());
        assert_eq!(combine(vec![skipped]).status, RunStatus::Skipped);
    }
}
