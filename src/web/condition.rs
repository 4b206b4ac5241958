//! The named state of a card ("zombie", "held by the account's flood wait", "waiting on spacing",
//! "fatal"...) and the page's wording of the core's messages. Pure functions of a service's status,
//! its cache size and an explicit "now"; no I/O, and nothing here changes what the core decided.

use serde::Serialize;

use crate::clock::{human_ms, Millis};
use crate::core::{Hold, ServiceState, ServiceStatus};

/// What a card is, in one word for machines (`name`) and one line for people (`text`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Condition {
    /// running | starting | stopping | stopped | exited | zombie | flood_wait | held_account |
    /// waiting_spacing | waiting_queue | backoff | waiting | fatal
    pub name: &'static str,
    pub text: String,
    /// The operator should look (the page title and favicon count these).
    pub attention: bool,
}

fn named(name: &'static str, text: String, attention: bool) -> Condition {
    Condition {
        name,
        text,
        attention,
    }
}

/// The most important thing that is true of the service at `now`. `cache` is the current run's
/// dialog cache size (`None` without a process or without a cache check).
pub fn condition(s: &ServiceStatus, cache: Option<f64>, now: Millis) -> Condition {
    let flood_left = s.flood_until_ms.filter(|t| *t > now).map(|t| t - now);
    if s.state == ServiceState::Fatal {
        let text = s
            .message
            .clone()
            .unwrap_or_else(|| "crash loop: it waits for someone to press Start".into());
        return named("fatal", text, true);
    }
    if s.state == ServiceState::Running && cache.is_some_and(|v| v <= 0.0) {
        return named(
            "zombie",
            "zombie: HTTP answers but the dialog cache is empty, stuck after a FloodWait at \
             start-up; use Clear Flood Wait for its group (a plain restart fetches again too soon)"
                .into(),
            true,
        );
    }
    if let Some(left) = flood_left {
        return named(
            "flood_wait",
            format!(
                "in a Telegram flood wait: {} left (it reported it)",
                human_ms(left)
            ),
            true,
        );
    }
    if matches!(s.state, ServiceState::Waiting | ServiceState::Backoff) {
        let left = human_ms(s.next_start.at_ms - now);
        match &s.next_start.hold {
            Some(Hold::Account { group, risk }) => {
                return named(
                    "held_account",
                    format!(
                        "held by the account of {group}: {}",
                        risk.describe(s.next_start.at_ms, now)
                    ),
                    true,
                )
            }
            Some(Hold::Queue { group, behind }) => {
                return named(
                    "waiting_queue",
                    format!("waiting in the start queue of {group} behind {behind}: {left}"),
                    false,
                )
            }
            Some(
                hold @ (Hold::GroupSpacing { .. }
                | Hold::MinRestartInterval
                | Hold::GroupBudget { .. }),
            ) => {
                return named(
                    "waiting_spacing",
                    format!("waiting on the start spacing ({hold}): starts in {left}"),
                    false,
                )
            }
            Some(Hold::Backoff) | None if s.state == ServiceState::Backoff => {
                return named(
                    "backoff",
                    format!("exited; restarts in {left} (backoff)"),
                    true,
                )
            }
            _ => {}
        }
    }
    let attention = matches!(s.state, ServiceState::Exited) || s.checks.iter().any(|c| c.alerting);
    named(s.state.as_str(), s.state.as_str().to_string(), attention)
}

/// The core's words, for a web user: the CLI's flags and commands become the page's buttons, and a
/// message that already says "refused:" is not prefixed again.
pub fn web_words(text: &str) -> String {
    let mut out = text
        .replace(" (use --force to override)", " (the page offers Force)")
        .replace(", or use --force", ", or force it")
        .replace("use --force", "force it");
    // "`tend start NAME` starts it" -> "Start starts it"; other commands stay as they are.
    while let Some(at) = out.find("`tend start ") {
        let Some(end) = out[at + 1..].find('`') else {
            break;
        };
        out.replace_range(at..at + end + 2, "Start");
    }
    out
}

/// `refused: ` once, whatever the message already says.
pub fn prefixed(prefix: &str, message: &str) -> String {
    let bare = message.strip_prefix(prefix).unwrap_or(message);
    format!("{prefix}{bare}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::flood_model::RiskHold;
    use crate::core::NextStart;

    fn status(state: ServiceState) -> ServiceStatus {
        ServiceStatus {
            name: "send_text".into(),
            state,
            ..ServiceStatus::default()
        }
    }

    #[test]
    fn named_states() {
        let now = 1_000_000;
        let running = status(ServiceState::Running);
        assert_eq!(condition(&running, Some(3978.0), now).name, "running");
        assert_eq!(condition(&running, Some(0.0), now).name, "zombie");
        assert!(condition(&running, Some(0.0), now).attention);
        // A starting service has no cache yet: not a zombie.
        assert_eq!(
            condition(&status(ServiceState::Starting), Some(0.0), now).name,
            "starting"
        );
        let mut flooded = running.clone();
        flooded.flood_until_ms = Some(now + 61_000);
        let c = condition(&flooded, Some(3978.0), now);
        assert_eq!(c.name, "flood_wait");
        assert!(c.text.contains("1m"), "{}", c.text);
        flooded.flood_until_ms = Some(now - 1);
        assert_eq!(condition(&flooded, Some(3978.0), now).name, "running");

        let waiting = |hold| ServiceStatus {
            next_start: NextStart {
                at_ms: now + 5_000,
                hold: Some(hold),
            },
            ..status(ServiceState::Waiting)
        };
        let account = waiting(Hold::Account {
            group: "telegram".into(),
            risk: RiskHold::FloodWait { until: now + 5_000 },
        });
        assert_eq!(condition(&account, None, now).name, "held_account");
        let queue = waiting(Hold::Queue {
            group: "telegram".into(),
            behind: "send_media".into(),
        });
        let c = condition(&queue, None, now);
        assert_eq!(c.name, "waiting_queue");
        assert!(c.text.contains("behind send_media"), "{}", c.text);
        let spacing = waiting(Hold::GroupSpacing {
            group: "telegram".into(),
        });
        assert_eq!(condition(&spacing, None, now).name, "waiting_spacing");
        assert_eq!(
            condition(&status(ServiceState::Fatal), None, now).name,
            "fatal"
        );
        assert_eq!(
            condition(&status(ServiceState::Stopped), None, now).name,
            "stopped"
        );
    }

    #[test]
    fn web_wording() {
        assert_eq!(
            web_words("left stopped by the cancelled recovery of telegram: `tend start send_media` starts it"),
            "left stopped by the cancelled recovery of telegram: Start starts it"
        );
        let w = web_words("refused: x allows the next start in 3s (use --force to override)");
        assert!(!w.contains("--force"), "{w}");
        assert_eq!(
            prefixed("refused: ", "refused: spacing"),
            "refused: spacing"
        );
        assert_eq!(prefixed("refused: ", "spacing"), "refused: spacing");
    }
}
