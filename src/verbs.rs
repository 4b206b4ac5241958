//! The operator verbs on a service or a group, and the one dispatch from a verb to the core.
//!
//! The control socket (`tend start …`), the web API (`POST /api/services/NAME/ACTION`) and the schedules
//! all act on services through [`dispatch`]: what a verb means is written once here. Each caller keeps its
//! own wire format, name checks and replies; this module never parses a request, checks a name or
//! formats an answer, and the core decides every outcome (refusals, spacing, budgets).

use crate::core::{ActionResult, CoreGone, CoreHandle};

/// One thing an operator (or a schedule) can ask of a service or a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// Start a service (`force` skips spacing and budgets).
    Start { force: bool },
    /// Stop a service; it stays down (a sticky stop).
    Stop,
    /// Stop then start a service, through the same gate as a start.
    Restart { force: bool },
    /// A restart asked for by the schedule `schedule`: never forced, recorded as a scheduled start.
    ScheduledRestart { schedule: String },
    /// `POST /reload_cache` on a service, gated like a start.
    ReloadCache { force: bool },
    /// Start a group's flood recovery.
    Recover,
    /// Cancel a group's flood recovery.
    CancelRecovery,
    /// Send a signal (a number) to a service's main process.
    Signal { signal: i32 },
}

impl Verb {
    /// The verb of a service action name (`start`, `stop`, `restart`, `reload_cache`), as the web API
    /// spells them.
    pub fn for_service(action: &str, force: bool) -> Option<Verb> {
        Some(match action {
            "start" => Verb::Start { force },
            "stop" => Verb::Stop,
            "restart" => Verb::Restart { force },
            "reload_cache" => Verb::ReloadCache { force },
            _ => return None,
        })
    }

    /// The verb of a group action name (`recover`, `cancel_recovery`).
    pub fn for_group(action: &str) -> Option<Verb> {
        Some(match action {
            "recover" => Verb::Recover,
            "cancel_recovery" => Verb::CancelRecovery,
            _ => return None,
        })
    }
}

/// Performs `verb` on the service or group `name` for `by` (who asked, for the log and the history;
/// a scheduled restart names its schedule instead).
pub async fn dispatch(
    core: &CoreHandle,
    verb: &Verb,
    name: &str,
    by: &str,
) -> Result<ActionResult, CoreGone> {
    match verb {
        Verb::Start { force } => core.start(name, *force, by).await,
        Verb::Stop => core.stop(name, by).await,
        Verb::Restart { force } => core.restart(name, *force, by).await,
        Verb::ScheduledRestart { schedule } => core.scheduled_restart(name, schedule).await,
        Verb::ReloadCache { force } => core.reload_cache(name, *force, by).await,
        Verb::Recover => core.recover(name, by).await,
        Verb::CancelRecovery => core.cancel_recovery(name, by).await,
        Verb::Signal { signal } => core.signal(name, *signal, by).await,
    }
}

/// Performs `verb` on each of `names` concurrently (a stop waits for its process, so several stops
/// overlap); the results in the order the names were given.
pub async fn dispatch_each(
    core: &CoreHandle,
    verb: &Verb,
    names: &[String],
    by: &str,
) -> Result<Vec<ActionResult>, CoreGone> {
    let mut tasks = tokio::task::JoinSet::new();
    for (index, name) in names.iter().enumerate() {
        let (core, verb, name, by) = (core.clone(), verb.clone(), name.clone(), by.to_string());
        tasks.spawn(async move { (index, dispatch(&core, &verb, &name, &by).await) });
    }
    let mut results: Vec<Option<ActionResult>> = vec![None; names.len()];
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, Ok(result))) => results[index] = Some(result),
            Ok((_, Err(gone))) => return Err(gone),
            // A panicked task: the core's reply is lost with it, as if the core were gone.
            Err(_) => return Err(CoreGone),
        }
    }
    Ok(results.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_map_to_verbs() {
        let table = [
            ("start", Some(Verb::Start { force: true })),
            ("stop", Some(Verb::Stop)),
            ("restart", Some(Verb::Restart { force: true })),
            ("reload_cache", Some(Verb::ReloadCache { force: true })),
            ("recover", None),
            ("bounce", None),
        ];
        for (action, want) in table {
            assert_eq!(Verb::for_service(action, true), want, "{action}");
        }
        assert_eq!(Verb::for_group("recover"), Some(Verb::Recover));
        assert_eq!(
            Verb::for_group("cancel_recovery"),
            Some(Verb::CancelRecovery)
        );
        assert_eq!(Verb::for_group("stop"), None);
    }
}
