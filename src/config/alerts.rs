//! Validation of `[alerts]` and its `[[alerts.receivers]]`: webhook URLs, retries, the severity each
//! kind of check result alerts with, and the page URL / host put into every alert. Only turns the file
//! into [`AlertSettings`]; what is sent, when, and how is `crate::alerts`' business.

use std::ops::RangeInclusive;
use std::time::Duration;

use super::raw::{Field, RawAlerts, RawReceiver};
use super::reader::Validator;
use super::{AlertReceiver, AlertSettings};
use crate::alerts::Severity;

const DEFAULT_ALERT_RETRIES: u32 = 3;
const ALERT_RETRIES_RANGE: RangeInclusive<i64> = 0..=100;
const DEFAULT_ALERT_RETRY_DELAY: Duration = Duration::from_secs(2);

const SEVERITIES: &[(&str, Option<Severity>)] = &[
    ("info", Some(Severity::Info)),
    ("warning", Some(Severity::Warning)),
    ("critical", Some(Severity::Critical)),
    ("off", None),
];

impl AlertSettings {
    /// What an absent `[alerts]` means: no receiver; checks alert WARNING/UNKNOWN as warnings and
    /// CRITICAL/timeouts as critical (Nagios counts a plugin timeout as CRITICAL).
    pub fn defaults() -> AlertSettings {
        AlertSettings {
            webhook: None,
            retries: DEFAULT_ALERT_RETRIES,
            retry_delay: DEFAULT_ALERT_RETRY_DELAY,
            receivers: Vec::new(),
            page_url: None,
            host: None,
            check_warning: Some(Severity::Warning),
            check_unknown: Some(Severity::Warning),
            check_timeout: Some(Severity::Critical),
            check_critical: Some(Severity::Critical),
        }
    }
}

impl Validator {
    pub(super) fn alerts(&mut self, field: Option<&Field>) -> AlertSettings {
        let defaults = AlertSettings::defaults();
        let Some(table) =
            field.and_then(|f| self.table(f, "an [alerts] header followed by its keys"))
        else {
            return defaults;
        };
        let raw = RawAlerts::read(table, "alerts", &mut self.report);
        let severity = |v: &mut Validator, f: Option<&Field>, default: Option<Severity>| match f {
            Some(_) => v.choice(f, SEVERITIES).unwrap_or(default),
            None => default,
        };
        AlertSettings {
            webhook: raw.webhook.as_ref().and_then(|f| self.webhook(f)),
            retries: self
                .integer(
                    raw.retries.as_ref(),
                    ALERT_RETRIES_RANGE,
                    "retries is how many more times a failed alert delivery is tried",
                )
                .map_or(defaults.retries, |n| {
                    u32::try_from(n).unwrap_or(defaults.retries)
                }),
            retry_delay: self
                .positive_duration(
                    raw.retry_delay.as_ref(),
                    "retry_delay is the wait before the first retry; it doubles after each, e.g. \
                     retry_delay = \"2s\"",
                )
                .unwrap_or(defaults.retry_delay),
            receivers: raw
                .receivers
                .as_ref()
                .map(|f| self.receivers(f))
                .unwrap_or_default(),
            page_url: raw.page_url.as_ref().and_then(|f| self.webhook(f)),
            host: raw
                .host
                .as_ref()
                .and_then(|f| self.string(f))
                .map(str::to_string),
            check_warning: severity(self, raw.check_warning.as_ref(), defaults.check_warning),
            check_unknown: severity(self, raw.check_unknown.as_ref(), defaults.check_unknown),
            check_timeout: severity(self, raw.check_timeout.as_ref(), defaults.check_timeout),
            check_critical: severity(self, raw.check_critical.as_ref(), defaults.check_critical),
        }
    }

    fn receivers(&mut self, field: &Field) -> Vec<AlertReceiver> {
        let how = "write each receiver as an [[alerts.receivers]] block with url and, optionally, \
                   min_severity = \"info\" | \"warning\" | \"critical\"";
        let mut out = Vec::new();
        for (path, item, table) in self.array_of_tables(field, how) {
            let raw = RawReceiver::read(table, &path, &mut self.report);
            let Some(url_field) = raw.url.as_ref() else {
                self.report.error(
                    item.span.clone(),
                    Some(&path),
                    "[[alerts.receivers]] needs `url`".to_string(),
                    Some(how.to_string()),
                );
                continue;
            };
            let Some(url) = self.webhook(url_field) else {
                continue;
            };
            let min_severity = raw
                .min_severity
                .as_ref()
                .and_then(|f| self.choice(Some(f), &SEVERITIES[..3]))
                .flatten()
                .unwrap_or(Severity::Info);
            out.push(AlertReceiver { url, min_severity });
        }
        out
    }

    fn webhook(&mut self, field: &Field) -> Option<String> {
        const HELP: &str = "write the full URL of the receiver, e.g. webhook = \
                            \"https://n8n.example.com/webhook/tend\"; remove the key to keep alerts \
                            in tend's log and status page only";
        let text = self.string(field)?;
        match reqwest::Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                Some(text.to_string())
            }
            Ok(url) => {
                self.value_error(
                    field,
                    format!("`{}:` URLs cannot receive alerts", url.scheme()),
                    Some(format!("use an http:// or https:// URL; {HELP}")),
                );
                None
            }
            Err(err) => {
                self.value_error(
                    field,
                    format!("not a valid URL: {err}"),
                    Some(HELP.to_string()),
                );
                None
            }
        }
    }
}
