//! Error classification: a compiled, ordered set of named regex patterns that turns a log [`Record`] (or a
//! `/stats` `last_errors` entry) into an error type with severity, captures, flood-wait seconds and a
//! normalised group key.
//!
//! Owns the pattern file format (`[[pattern]]` entries, see `checks/patterns/telethon.toml` for the rules)
//! and the shipped pattern set. It must not count, store or act: [`super::stats`] counts, the caller decides.
//!
//! Matching is two-stage so that the common case, a line no pattern cares about, costs one pass of a
//! [`RegexSet`]; only a hit runs the one winning [`Regex`] again for its captures.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

use super::chat::{normalize_channel_id, normalize_chat_id};
use super::records::Record;

/// The shipped pattern file, compiled into tend.
const SHIPPED: &str = include_str!("../../checks/patterns/telethon.toml");

static SHIPPED_SET: LazyLock<PatternSet> = LazyLock::new(|| {
    // A unit test compiles this exact text, so failing here means the binary was built untested.
    PatternSet::from_toml(SHIPPED)
        .unwrap_or_else(|e| panic!("checks/patterns/telethon.toml is invalid: {e}"))
});

/// How bad a matched record is. `Info` marks known harmless noise (e.g. PersistentTimestampOutdated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    /// Orders severities: `Info` < `Warning` < `Error`.
    pub fn rank(self) -> u8 {
        match self {
            Severity::Info => 0,
            Severity::Warning => 1,
            Severity::Error => 2,
        }
    }

    /// The more severe of the two.
    pub fn worst(self, other: Severity) -> Severity {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// One `[[pattern]]` entry as written in a pattern file or a check's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternSpec {
    /// The error type shown in the UI; entries may share a name to count as one type.
    pub name: String,
    pub regex: String,
    pub severity: Severity,
    /// A named capture of `regex` whose value keys this type's table (chat ids normalised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
}

/// A pattern file: `[[pattern]]` entries in precedence order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternFile {
    #[serde(default)]
    pattern: Vec<PatternSpec>,
}

/// What is wrong with one pattern entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternProblem {
    /// 0-based position in the list (shown 1-based).
    pub index: usize,
    pub name: String,
    pub message: String,
}

impl fmt::Display for PatternProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pattern #{} `{}`: {}",
            self.index + 1,
            self.name,
            self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("cannot parse the pattern file: {0}")]
    Parse(#[from] toml::de::Error),
    /// Every problem found, not just the first.
    #[error("invalid log patterns:\n{}", list(.0))]
    Invalid(Vec<PatternProblem>),
    #[error(
        "the {count} log patterns are too large to compile as one set ({message}); use fewer or simpler patterns"
    )]
    TooLarge { count: usize, message: String },
}

fn list(problems: &[PatternProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// How a `group_by` capture's value becomes a group key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyForm {
    /// `chat`: a marked chat id.
    Chat,
    /// `channel`: a bare channel id, turned into the marked `-100…` form.
    Channel,
    /// Anything else: the text as captured.
    Raw,
}

impl KeyForm {
    fn of(capture: &str) -> KeyForm {
        match capture {
            "chat" => KeyForm::Chat,
            "channel" => KeyForm::Channel,
            _ => KeyForm::Raw,
        }
    }

    fn key(self, raw: &str) -> String {
        let id = match self {
            KeyForm::Chat => normalize_chat_id(raw),
            KeyForm::Channel => normalize_channel_id(raw),
            KeyForm::Raw => None,
        };
        // An id out of Telegram's ranges is kept as written rather than dropped.
        id.map_or_else(|| raw.to_owned(), |id| id.to_string())
    }
}

/// The result of classifying one record or entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Classified {
    /// The pattern's name: the error type.
    pub pattern: String,
    pub severity: Severity,
    /// The named captures that took part in the match, as written.
    pub captures: BTreeMap<String, String>,
    /// The flood wait Telegram asked for (a `seconds` capture).
    pub seconds: Option<u64>,
    /// The `group_by` capture's value; chat ids in marked form.
    pub group_key: Option<String>,
}

/// A compiled pattern list: first match in list order wins.
#[derive(Debug, Clone)]
pub struct PatternSet {
    specs: Vec<PatternSpec>,
    /// All patterns at once: rejects non-matching text in one pass and names the candidates.
    set: RegexSet,
    /// The same patterns one by one, for the winner's captures.
    regexes: Vec<Regex>,
    key_forms: Vec<Option<KeyForm>>,
}

impl PatternSet {
    /// Compiles the patterns, reporting every invalid one (its name, position and regex's message).
    pub fn compile(specs: &[PatternSpec]) -> Result<PatternSet, PatternError> {
        let mut problems = Vec::new();
        let mut regexes = Vec::with_capacity(specs.len());
        let mut key_forms = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            let mut problem = |message: String| {
                problems.push(PatternProblem {
                    index,
                    name: spec.name.clone(),
                    message,
                })
            };
            if spec.name.trim().is_empty() {
                problem("the name is empty; give the error type shown in the UI".into());
            }
            let re = match Regex::new(&spec.regex) {
                Ok(re) => re,
                Err(e) => {
                    problem(format!("invalid regex `{}`:\n{e}", spec.regex));
                    continue;
                }
            };
            if re.is_match("") {
                problem(format!(
                    "regex `{}` matches the empty string, so it would classify every line; make it require some text",
                    spec.regex
                ));
            }
            let form = match &spec.group_by {
                None => None,
                Some(g) if re.capture_names().flatten().any(|n| n == g) => Some(KeyForm::of(g)),
                Some(g) => {
                    let names: Vec<&str> = re.capture_names().flatten().collect();
                    problem(format!(
                        "group_by = \"{g}\" names no capture of the regex (its named captures: {}); add (?P<{g}>…) or fix group_by",
                        if names.is_empty() { "none".to_owned() } else { names.join(", ") }
                    ));
                    None
                }
            };
            regexes.push(re);
            key_forms.push(form);
        }
        if !problems.is_empty() {
            return Err(PatternError::Invalid(problems));
        }
        let set =
            RegexSet::new(specs.iter().map(|s| &s.regex)).map_err(|e| PatternError::TooLarge {
                count: specs.len(),
                message: e.to_string(),
            })?;
        Ok(PatternSet {
            specs: specs.to_vec(),
            set,
            regexes,
            key_forms,
        })
    }

    /// Parses a pattern file (`[[pattern]]` entries) and compiles it.
    pub fn from_toml(text: &str) -> Result<PatternSet, PatternError> {
        let file: PatternFile = toml::from_str(text)?;
        PatternSet::compile(&file.pattern)
    }

    /// The shipped Telethon pattern set (`checks/patterns/telethon.toml`, embedded at build time).
    pub fn shipped() -> PatternSet {
        SHIPPED_SET.clone()
    }

    /// The text of the shipped pattern file, e.g. to show or export it.
    pub fn shipped_toml() -> &'static str {
        SHIPPED
    }

    /// The entries in precedence order.
    pub fn specs(&self) -> &[PatternSpec] {
        &self.specs
    }

    /// Distinct error type names in first-appearance order (e.g. for a filter menu).
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for s in &self.specs {
            if !names.contains(&s.name.as_str()) {
                names.push(&s.name);
            }
        }
        names
    }

    /// Classifies a record: first matching pattern in file order wins; the key line (a traceback's final
    /// exception line, else the head) is tried first, then the whole text.
    pub fn classify(&self, record: &Record) -> Option<Classified> {
        let key = record.key_line();
        if let Some(c) = self.classify_text(key) {
            return Some(c);
        }
        if record.lines.len() > 1 {
            return self.classify_text(&record.text());
        }
        None
    }

    /// Classifies a single text, e.g. a `/stats` `last_errors` entry's `error`.
    pub fn classify_text(&self, text: &str) -> Option<Classified> {
        // is_match may stop at the first hit and use prefilters; most text matches nothing.
        if !self.set.is_match(text) {
            return None;
        }
        let index = self.set.matches(text).iter().next()?;
        let spec = &self.specs[index];
        let caps = self.regexes[index].captures(text)?;
        let captures: BTreeMap<String, String> = self.regexes[index]
            .capture_names()
            .flatten()
            .filter_map(|n| caps.name(n).map(|m| (n.to_owned(), m.as_str().to_owned())))
            .collect();
        let seconds = captures.get("seconds").and_then(|s| s.parse().ok());
        let group_key = match (&spec.group_by, self.key_forms[index]) {
            (Some(g), Some(form)) => captures.get(g).map(|raw| form.key(raw)),
            _ => None,
        };
        Some(Classified {
            pattern: spec.name.clone(),
            severity: spec.severity,
            captures,
            seconds,
            group_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::checks::records::{RecordAssembler, RecordLimits};
    use crate::logs::{LogLine, Stream};

    /// (text, pattern, severity, seconds, group key); `None` pattern = unclassified.
    type Case = (
        &'static str,
        Option<&'static str>,
        Severity,
        Option<u64>,
        Option<&'static str>,
    );

    use super::Severity::{Error as E, Info as I, Warning as W};

    fn check(cases: &[Case]) {
        let set = PatternSet::shipped();
        for (text, pattern, severity, seconds, key) in cases {
            let got = set.classify_text(text);
            match pattern {
                None => assert_eq!(got, None, "{text:?} should be unclassified"),
                Some(p) => {
                    let got = got.unwrap_or_else(|| panic!("{text:?} was not classified"));
                    assert_eq!(got.pattern, *p, "{text:?}: {got:?}");
                    assert_eq!(got.severity, *severity, "{text:?}");
                    assert_eq!(got.seconds, *seconds, "{text:?}");
                    assert_eq!(got.group_key.as_deref(), *key, "{text:?}");
                }
            }
        }
    }

    #[test]
    #[rustfmt::skip] // one row per line keeps the tables readable
    fn telethon_texts_are_classified() {
        check(&[
            ("telethon.errors.rpcerrorlist.FloodWaitError: A wait of 27 seconds is required (caused by GetDialogsRequest)", Some("FloodWait"), E, Some(27), None),
            ("A wait of 1 seconds is required", Some("FloodWait"), E, Some(1), None),
            ("A wait of 27 seconds is required (caused by SendMediaRequest)", Some("FloodWait"), E, Some(27), None),
            ("A wait of 27 seconds is required before sending another message in this chat (caused by SendMessageRequest)", Some("SlowModeWait"), W, None, None),
            ("INFO:telethon.client.users:Sleeping for 27s (0:00:27) on GetDialogsRequest flood wait", Some("FloodSleep"), W, Some(27), None),
            ("INFO:telethon.client.users:Sleeping early for 25s (0:00:25) on GetDialogsRequest flood wait", Some("FloodSleep"), W, Some(25), None),
            ("INFO:telethon.client.users:Sleeping for 12s (0:00:12) on SendMessageRequest flood wait", Some("FloodSleep"), W, Some(12), None),
            ("telethon.errors.rpcerrorlist.PersistentTimestampOutdatedError: Persistent timestamp outdated (caused by GetChannelDifferenceRequest)", Some("PersistentTimestamp"), I, None, None),
            ("WARNING:telethon.client.users:Telegram is having internal issues PersistentTimestampOutdatedError: Persistent timestamp outdated (caused by GetChannelDifferenceRequest)", Some("PersistentTimestamp"), I, None, None),
            ("WARNING:telethon.client.updates:Getting difference for channel updates 1645141274 caused ValueError; ending getting difference prematurely until server issues are resolved", Some("PersistentTimestamp"), I, None, Some("-1001645141274")),
            ("INFO:telethon.client.updates:Account is now banned in 3760957276 so we can no longer fetch updates from it", Some("Banned"), W, None, Some("-1003760957276")),
            ("telethon.errors.rpcerrorlist.ChannelPrivateError: The channel specified is private and you lack permission to access it. Another reason may be that you were banned from it (caused by SendMessageRequest)", Some("Banned"), E, None, None),
            ("telethon.errors.rpcerrorlist.UserBannedInChannelError: You're banned from sending messages in supergroups/channels (caused by SendMessageRequest)", Some("Banned"), E, None, None),
            ("telethon.errors.rpcerrorlist.ChatWriteForbiddenError: You can't write in this chat (caused by SendMessageRequest)", Some("WriteForbidden"), E, None, None),
            ("telethon.errors.rpcerrorlist.PeerIdInvalidError: An invalid Peer was used. Make sure to pass the right peer type and that the value is valid (for instance, bots cannot start conversations) (caused by SendMessageRequest)", Some("PeerIdInvalid"), E, None, None),
            ("ValueError: Could not find the input entity for PeerChannel(channel_id=3519196381) (PeerChannel). Please read https://docs.telethon.dev/en/stable/concepts/entities.html to find out more details.", Some("Could not find the input entity"), E, None, Some("-1003519196381")),
            ("ValueError: Could not find the input entity for PeerUser(user_id=5123456789) (PeerUser). Please read", Some("Could not find the input entity"), E, None, Some("5123456789")),
            ("ValueError: Could not find the input entity for PeerChat(chat_id=123) (PeerChat).", Some("Could not find the input entity"), E, None, None),
            ("ValueError: Cannot find any entity corresponding to \"somename\"", Some("Cannot resolve"), E, None, Some("somename")),
            ("ERROR:send_text_bot:send_text failed: ValueError: Request was unsuccessful 5 time(s)", Some("Error"), E, None, None),
            ("INFO:telethon.network.mtprotosender:Connecting to 149.154.167.51:443/TcpFull...", None, I, None, None),
            ("INFO:telethon.network.mtprotosender:Connection to 149.154.167.51:443/TcpFull complete!", None, I, None, None),
        ]);
    }

    #[test]
    #[rustfmt::skip] // one row per line keeps the tables readable
    fn the_services_own_lines_are_classified() {
        check(&[
            ("INFO:send_text_bot:Telethon client started, dialog cache warmed up", None, I, None, None),
            ("INFO:send_text_bot:Periodic cache warmup started...", None, I, None, None),
            ("INFO:send_text_bot:Periodic cache warmup done, 3978 entries", None, I, None, None),
            ("ERROR:send_text_bot:Periodic cache warmup failed: Request was unsuccessful 5 time(s)", Some("WarmupFailed"), E, None, None),
            ("ERROR:send_text_bot:Periodic cache warmup failed: A wait of 1800 seconds is required (caused by GetDialogsRequest)", Some("FloodWait"), E, Some(1800), None),
            ("INFO:send_text_bot:Mini cache refresh: added/updated 100 dialogs, total cache: 3978", None, I, None, None),
            ("WARNING:send_text_bot:Mini cache refresh failed: Request was unsuccessful 5 time(s)", Some("MiniRefreshFailed"), W, None, None),
            ("WARNING:send_text_bot:Cannot find chat -1003519196381 in cache (3978 entries) even after mini-refresh.", Some("CacheMiss"), I, None, Some("-1003519196381")),
            ("ERROR:send_text_bot:send_text failed: ValueError: Не удалось найти чат -1003519196381 в диалогах", Some("Cannot find chat"), E, None, Some("-1003519196381")),
            ("WARNING:send_media_bot:Cannot resolve entity uid=-1003772791180, cache has 3978 entries even after mini-refresh.", Some("CacheMiss"), I, None, Some("-1003772791180")),
            ("ERROR:send_media_bot:send_media failed: ValueError: Cannot resolve entity from user_id=-1003772791180. Make sure this session has an existing dialog with the user/channel, or use 'username'.", Some("Cannot resolve"), E, None, Some("-1003772791180")),
            ("ERROR:send_media_bot:send_media failed: ValueError: Cannot resolve entity from user_id=5123456789. Make sure", Some("Cannot resolve"), E, None, Some("5123456789")),
            ("WARNING:send_text_bot:Attempt 1/3 failed (PersistentTimestamp): Persistent timestamp outdated (caused by GetChannelDifferenceRequest)", Some("PersistentTimestamp"), I, None, None),
            ("WARNING:send_text_bot:Attempt 2/3 failed (network): OSError: [Errno 101] Network is unreachable", Some("Reconnect"), W, None, None),
            ("WARNING:send_text_bot:Reconnecting Telethon client...", Some("Reconnect"), W, None, None),
            ("INFO:send_text_bot:Reconnect successful", None, I, None, None),
            ("ERROR:send_text_bot:Reconnect failed: OSError: [Errno 111] Connect call failed ('149.154.167.51', 443)", Some("ReconnectFailed"), E, None, None),
            ("INFO:send_media_webhook:[send_media] CT=application/json RAW={\"user_id\": -1003519196381, \"files\": [\"https://example.com/a.jpg\"]}", None, I, None, None),
            ("ERROR:send_text_bot:send_text failed: TimeoutError: ", Some("Timeout"), E, None, None),
            ("ERROR:send_text_bot:send_text failed: UserBannedInChannelError: You're banned from sending messages in supergroups/channels (caused by SendMessageRequest)", Some("Banned"), E, None, None),
            ("ERROR:send_text_bot:send_text failed: ChatWriteForbiddenError: You can't write in this chat (caused by SendMessageRequest)", Some("WriteForbidden"), E, None, None),
            ("[2026-02-20 10:00:00 +0000] [1234] [INFO] Starting gunicorn 23.0.0", None, I, None, None),
            ("[2026-02-20 10:00:00 +0000] [1234] [INFO] Listening at: http://0.0.0.0:5022 (1234)", None, I, None, None),
            ("[2026-02-20 10:00:00 +0000] [1234] [INFO] Booting worker with pid: 1235", None, I, None, None),
            ("[2026-02-20 10:02:00 +0000] [1234] [CRITICAL] WORKER TIMEOUT (pid:1235)", Some("WorkerTimeout"), E, None, None),
            ("[2026-02-20 10:02:00 +0000] [1235] [INFO] Worker exiting (pid: 1235)", None, I, None, None),
            ("[2026-02-20 10:02:00 +0000] [1235] [ERROR] Exception in worker process", Some("Error"), E, None, None),
            ("2026-02-20 10:00:00,123 - send_text_bot - ERROR - something odd", Some("Error"), E, None, None),
            ("[ERROR/2026-02-20 10:00:00,123] send_text_bot: something odd", Some("Error"), E, None, None),
            ("CRITICAL:send_text_bot:something odd", Some("Error"), E, None, None),
            ("WARNING:send_text_bot:an unknown warning", None, I, None, None),
        ]);
    }

    #[test]
    #[rustfmt::skip] // one row per line keeps the tables readable
    fn stats_last_errors_entries_are_classified() {
        check(&[
            ("FloodWait: 27s", Some("FloodWait"), E, Some(27), None),
            (
                "ValueError: Не удалось найти чат -1003850591916 в диалогах",
                Some("Cannot find chat"),
                E,
                None,
                Some("-1003850591916"),
            ),
            (
                "periodic_warmup: Request was unsuccessful 5 time(s)",
                Some("WarmupFailed"),
                E,
                None,
                None,
            ),
            (
                "periodic_warmup: A wait of 54 seconds is required (caused by GetDialogsRequest)",
                Some("FloodWait"),
                E,
                Some(54),
                None,
            ),
            ("TimeoutError: ", Some("Timeout"), E, None, None),
            ("TimeoutError", Some("Timeout"), E, None, None),
            ("concurrent.futures._base.TimeoutError", Some("Timeout"), E, None, None),
            ("asyncio.exceptions.TimeoutError", Some("Timeout"), E, None, None),
            ("ERROR:bot:a TimeoutErrorHandler was registered", Some("Error"), E, None, None),
        ]);
    }

    fn record(text: &str) -> Record {
        let mut asm = RecordAssembler::new(RecordLimits::default());
        let ts = Utc
            .timestamp_millis_opt(1_771_581_600_000)
            .single()
            .unwrap();
        let mut done: Vec<Record> = text
            .lines()
            .filter_map(|l| {
                asm.push(&LogLine {
                    ts,
                    stream: Stream::Stderr,
                    text: l.to_owned(),
                })
            })
            .collect();
        done.extend(asm.flush());
        assert_eq!(done.len(), 1, "{done:#?}");
        done.remove(0)
    }

    #[test]
    fn records_are_classified_by_their_final_exception_then_their_text() {
        let set = PatternSet::shipped();
        let cases: &[(&str, &str, &str, Option<u64>)] = &[
            (
                "thread crash ending in a flood wait is a FloodWait",
                "Exception in thread telethon-loop:\n\
                 Traceback (most recent call last):\n\
                 \x20 File \"/usr/lib/python3.11/threading.py\", line 1045, in _bootstrap_inner\n\
                 \x20   self.run()\n\
                 telethon.errors.rpcerrorlist.FloodWaitError: A wait of 108 seconds is required (caused by GetDialogsRequest)",
                "FloodWait",
                Some(108),
            ),
            (
                "thread crash with an unknown exception",
                "Exception in thread telethon-loop:\n\
                 Traceback (most recent call last):\n\
                 \x20 File \"/app/send_text.py\", line 30, in _run_loop\n\
                 RuntimeError: Event loop is closed",
                "ThreadCrash",
                None,
            ),
            (
                "logger.exception with an unknown exception",
                "ERROR:send_text_bot:send_text failed\n\
                 Traceback (most recent call last):\n\
                 \x20 File \"/app/send_text.py\", line 50, in send\n\
                 KeyError: 'chat'",
                "Traceback",
                None,
            ),
            (
                "a timeout traceback",
                "ERROR:send_text_bot:send_text failed\n\
                 Traceback (most recent call last):\n\
                 \x20 File \"/usr/lib/python3.11/concurrent/futures/_base.py\", line 458, in result\n\
                 TimeoutError",
                "Timeout",
                None,
            ),
            (
                "PTS traceback is harmless",
                "ERROR:asyncio:Task exception was never retrieved\n\
                 future: <Task finished name='Task-9' coro=<_updates() done> exception=PersistentTimestampOutdatedError()>\n\
                 Traceback (most recent call last):\n\
                 \x20 File \"/app/x.py\", line 1, in f\n\
                 telethon.errors.rpcerrorlist.PersistentTimestampOutdatedError: Persistent timestamp outdated (caused by GetChannelDifferenceRequest)",
                "PersistentTimestamp",
                None,
            ),
            (
                "chained: the escaping exception decides",
                "ERROR:send_text_bot:send_text failed\n\
                 Traceback (most recent call last):\n\
                 \x20 File \"/app/send_text.py\", line 60, in resolve\n\
                 KeyError: -1003519196381\n\
                 \n\
                 During handling of the above exception, another exception occurred:\n\
                 \n\
                 Traceback (most recent call last):\n\
                 \x20 File \"/app/send_text.py\", line 70, in send\n\
                 ValueError: Не удалось найти чат -1003519196381 в диалогах",
                "Cannot find chat",
                None,
            ),
        ];
        for (name, text, pattern, seconds) in cases {
            let c = set
                .classify(&record(text))
                .unwrap_or_else(|| panic!("{name}: unclassified"));
            assert_eq!(c.pattern, *pattern, "{name}: {c:?}");
            assert_eq!(c.seconds, *seconds, "{name}");
        }
        let info = record("INFO:send_text_bot:Periodic cache warmup done, 3978 entries");
        assert_eq!(set.classify(&info), None);
    }

    #[test]
    fn captures_and_group_keys_are_reported() {
        let c = PatternSet::shipped()
            .classify_text("INFO:telethon.client.users:Sleeping for 27s (0:00:27) on GetDialogsRequest flood wait")
            .unwrap();
        assert_eq!(
            c.captures,
            BTreeMap::from([
                ("method".to_owned(), "GetDialogsRequest".to_owned()),
                ("seconds".to_owned(), "27".to_owned()),
            ])
        );
        // An id out of Telegram's range keeps its written form instead of vanishing.
        let set = PatternSet::compile(&[PatternSpec {
            name: "Odd".into(),
            regex: r"chat (?P<chat>-?\d+)".into(),
            severity: Severity::Warning,
            group_by: Some("chat".into()),
        }])
        .unwrap();
        let c = set.classify_text("chat -4000000000001").unwrap();
        assert_eq!(c.group_key.as_deref(), Some("-4000000000001"));
    }

    #[test]
    fn first_pattern_in_file_order_wins() {
        let spec = |name: &str, regex: &str| PatternSpec {
            name: name.into(),
            regex: regex.into(),
            severity: Severity::Error,
            group_by: None,
        };
        let set = PatternSet::compile(&[
            spec("Specific", "disk full on /var"),
            spec("Generic", "disk full"),
        ])
        .unwrap();
        assert_eq!(
            set.classify_text("ERROR: disk full on /var")
                .unwrap()
                .pattern,
            "Specific"
        );
        assert_eq!(
            set.classify_text("ERROR: disk full on /tmp")
                .unwrap()
                .pattern,
            "Generic"
        );
        assert_eq!(set.names(), ["Specific", "Generic"]);
    }

    #[test]
    fn invalid_patterns_are_all_reported_with_name_and_reason() {
        let specs = [
            PatternSpec {
                name: "Fine".into(),
                regex: "ok".into(),
                severity: Severity::Info,
                group_by: None,
            },
            PatternSpec {
                name: "Broken".into(),
                regex: r"Cannot find chat (?P<chat>-?\d+".into(),
                severity: Severity::Error,
                group_by: Some("chat".into()),
            },
            PatternSpec {
                name: "NoSuchCapture".into(),
                regex: r"Cannot find chat (?P<chat>-?\d+)".into(),
                severity: Severity::Error,
                group_by: Some("chat_id".into()),
            },
            PatternSpec {
                name: "Everything".into(),
                regex: r"x*".into(),
                severity: Severity::Error,
                group_by: None,
            },
            PatternSpec {
                name: " ".into(),
                regex: "y".into(),
                severity: Severity::Error,
                group_by: None,
            },
        ];
        let err = PatternSet::compile(&specs).unwrap_err();
        let PatternError::Invalid(problems) = &err else {
            panic!("{err}");
        };
        let at: Vec<usize> = problems.iter().map(|p| p.index).collect();
        assert_eq!(at, [1, 2, 3, 4]);
        let text = err.to_string();
        assert!(
            text.contains("pattern #2 `Broken`: invalid regex"),
            "{text}"
        );
        assert!(
            text.contains("unclosed group"),
            "regex's own message: {text}"
        );
        assert!(
            text.contains("pattern #3 `NoSuchCapture`: group_by = \"chat_id\" names no capture of the regex (its named captures: chat)"),
            "{text}"
        );
        assert!(
            text.contains("pattern #4 `Everything`: regex `x*` matches the empty string"),
            "{text}"
        );
        assert!(text.contains("pattern #5 ` `: the name is empty"), "{text}");
    }

    #[test]
    fn pattern_files_reject_unknown_fields_and_bad_severities() {
        let err = PatternSet::from_toml(
            "[[pattern]]\nname = \"A\"\nregex = \"a\"\nseverity = \"error\"\ngroupby = \"x\"\n",
        )
        .unwrap_err();
        assert!(matches!(err, PatternError::Parse(_)), "{err}");
        assert!(err.to_string().contains("unknown field `groupby`"), "{err}");
        let err = PatternSet::from_toml(
            "[[pattern]]\nname = \"A\"\nregex = \"a\"\nseverity = \"fatal\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("fatal"), "{err}");
        let ok = PatternSet::from_toml(
            "[[pattern]]\nname = \"A\"\nregex = \"a(?P<n>\\\\d)\"\nseverity = \"warning\"\ngroup_by = \"n\"\n",
        )
        .unwrap();
        assert_eq!(
            ok.classify_text("a7").unwrap().group_key.as_deref(),
            Some("7")
        );
    }

    #[test]
    fn the_shipped_file_compiles_and_ends_with_the_fallbacks() {
        let set = PatternSet::from_toml(PatternSet::shipped_toml()).expect("shipped file compiles");
        let names = set.names();
        assert_eq!(names.first(), Some(&"FloodWait"));
        assert_eq!(
            &names[names.len() - 3..],
            ["ThreadCrash", "Traceback", "Error"]
        );
        for required in [
            "FloodWait",
            "SlowModeWait",
            "FloodSleep",
            "PersistentTimestamp",
            "Cannot find chat",
            "Cannot resolve",
            "Could not find the input entity",
            "Banned",
            "WriteForbidden",
            "PeerIdInvalid",
            "Timeout",
            "Reconnect",
            "WorkerTimeout",
        ] {
            assert!(
                names.contains(&required),
                "{required} missing from {names:?}"
            );
        }
        // Only flood waits may capture `seconds`: it drives the recovery cooldown.
        for s in set.specs() {
            if s.regex.contains("(?P<seconds>") {
                assert!(s.name.starts_with("Flood"), "{} captures seconds", s.name);
            }
        }
    }
}
