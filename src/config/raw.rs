//! Raw layer: supervisor.toml and the drop-in check files as written, every key and value with its byte
//! span, and the declared shape (allowed keys) of each table, including which keys belong to which
//! check kind.
//!
//! Why not `#[derive(Deserialize)]` with `deny_unknown_fields`: serde stops at the first unknown key and
//! at the first value of the wrong type, so a file with three typos would need three round trips. Here
//! TOML syntax is parsed once into a spanned [`Node`] tree, each table is read against its declared key
//! list (every undeclared key is reported, with a did-you-mean), and all type and value checks happen
//! in `validate`, which can keep going after a problem.
//!
//! Adding a table (`[web]`, `[[schedule]]`, ...) = one field in [`RawFile`], one `declare_table!` for its
//! keys, and one validation function. This module must not interpret values: no defaults, no units, no
//! paths; that is `validate`'s job.

use std::collections::BTreeMap;
use std::ops::Range;

use super::error::Report;
use super::suggest::did_you_mean;

/// Byte offsets into the configuration text.
pub(crate) type Span = Range<usize>;

/// One value in the file, with the span of the value as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub span: Span,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    /// No key of tend takes a date; the text is still available through the span.
    Datetime,
    Array(Vec<Node>),
    /// `[header]` tables, inline `{ ... }` tables and dotted keys all end up here.
    Table(Table),
}

impl Value {
    /// The TOML type, with an article, for "expected X, found Y" messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime => "a date/time",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

impl Node {
    /// The TOML type, with an article; `[[x]]` is "an array of tables", not just "an array".
    pub(crate) fn kind(&self) -> &'static str {
        match self.value {
            Value::Array(_) if self.is_table_or_array_of_tables() => "an array of tables",
            _ => self.value.kind(),
        }
    }

    /// `[x]`, `x = { ... }` or `[[x]]`: what a top-level entry usually is.
    pub(crate) fn is_table_or_array_of_tables(&self) -> bool {
        match &self.value {
            Value::Table(_) => true,
            Value::Array(items) => {
                !items.is_empty()
                    && items
                        .iter()
                        .all(|item| matches!(item.value, Value::Table(_)))
            }
            _ => false,
        }
    }
}

/// Key/value pairs in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Table {
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// The key as TOML sees it (quotes removed).
    pub key: String,
    pub key_span: Span,
    pub node: Node,
}

/// A TOML syntax error; nothing after it can be trusted, so validation stops there.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyntaxError {
    pub span: Span,
    /// toml_edit's message; may span several lines ("invalid array\nexpected `]`").
    pub message: String,
}

/// Parses TOML text into the spanned tree.
pub(crate) fn parse(text: &str) -> Result<Table, SyntaxError> {
    let doc = toml_edit::ImDocument::parse(text).map_err(|err| SyntaxError {
        span: err.span().unwrap_or(0..0),
        message: err.message().to_string(),
    })?;
    Ok(convert_table(doc.as_table(), 0..0))
}

/// `fallback` is used where toml_edit has no span of its own: implicit tables such as `services` in a
/// file that only has `[services.x]` headers, or `env` in `env.FOO = "1"`.
fn convert_table(table: &toml_edit::Table, fallback: Span) -> Table {
    let entries = table
        .iter()
        .map(|(key, item)| {
            let key_span = table
                .key(key)
                .and_then(toml_edit::Key::span)
                .unwrap_or_else(|| fallback.clone());
            Entry {
                key: key.to_string(),
                node: convert_item(item, key_span.clone()),
                key_span,
            }
        })
        .collect();
    Table { entries }
}

fn convert_item(item: &toml_edit::Item, fallback: Span) -> Node {
    match item {
        toml_edit::Item::Value(value) => convert_value(value, fallback),
        toml_edit::Item::Table(table) => {
            let span = table.span().unwrap_or_else(|| fallback.clone());
            Node {
                value: Value::Table(convert_table(table, span.clone())),
                span,
            }
        }
        toml_edit::Item::ArrayOfTables(array) => {
            let span = array.span().unwrap_or_else(|| fallback.clone());
            let tables = array
                .iter()
                .map(|table| {
                    let span = table.span().unwrap_or_else(|| span.clone());
                    Node {
                        value: Value::Table(convert_table(table, span.clone())),
                        span,
                    }
                })
                .collect();
            Node {
                span,
                value: Value::Array(tables),
            }
        }
        // `Table::iter` skips removed (None) items; an empty table is the harmless reading anyway.
        toml_edit::Item::None => Node {
            span: fallback,
            value: Value::Table(Table::default()),
        },
    }
}

fn convert_value(value: &toml_edit::Value, fallback: Span) -> Node {
    let span = value.span().unwrap_or(fallback);
    let value = match value {
        toml_edit::Value::String(s) => Value::String(s.value().clone()),
        toml_edit::Value::Integer(i) => Value::Integer(*i.value()),
        toml_edit::Value::Float(f) => Value::Float(*f.value()),
        toml_edit::Value::Boolean(b) => Value::Boolean(*b.value()),
        toml_edit::Value::Datetime(_) => Value::Datetime,
        toml_edit::Value::Array(array) => Value::Array(
            array
                .iter()
                .map(|element| convert_value(element, span.clone()))
                .collect(),
        ),
        toml_edit::Value::InlineTable(table) => {
            let entries = table
                .iter()
                .map(|(key, value)| {
                    let key_span = table
                        .key(key)
                        .and_then(toml_edit::Key::span)
                        .unwrap_or_else(|| span.clone());
                    Entry {
                        key: key.to_string(),
                        node: convert_value(value, key_span.clone()),
                        key_span,
                    }
                })
                .collect();
            Value::Table(Table { entries })
        }
    };
    Node { span, value }
}

/// A key that is present in a declared table: where it is and what it holds.
#[derive(Debug, Clone)]
pub(crate) struct Field<'a> {
    /// The key itself (`restart`).
    pub name: &'a str,
    pub key_span: Span,
    /// Dotted path from the top of the file (`services.send_text.restart`).
    pub path: String,
    pub node: &'a Node,
}

impl<'a> Field<'a> {
    pub(crate) fn from_entry(entry: &'a Entry, parent: &str) -> Self {
        Field {
            name: &entry.key,
            key_span: entry.key_span.clone(),
            path: join_path(parent, &entry.key),
            node: &entry.node,
        }
    }
}

/// `parent.key`, quoting `key` the way TOML would need it (`services."send.text"`), so the path
/// shown in a message can be pasted back into the file.
pub(crate) fn join_path(parent: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`: the path of one entry of an array of tables (`checks.errors.pattern[1]`); the
/// index is 1-based, as the operator counts the `[[...]]` blocks in the file.
pub(crate) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// How a table is written in the file, for messages: `[services.a]`, or `[[checks.x.pattern]] #2`
/// for an entry of an array of tables.
pub(crate) fn table_label(path: &str) -> String {
    match split_index(path) {
        Some((array, index)) => format!("[[{array}]] #{index}"),
        None => format!("[{path}]"),
    }
}

/// `checks.x.pattern[2]` -> (`checks.x.pattern`, 2).
fn split_index(path: &str) -> Option<(&str, usize)> {
    let open = path.strip_suffix(']')?.rfind('[')?;
    let index = path.get(open + 1..path.len() - 1)?.parse().ok()?;
    Some((&path[..open], index))
}

/// For a key valid somewhere else: the message and help to report instead of "unknown key".
type Misplaced<'r> = &'r dyn Fn(&str) -> Option<(String, String)>;

/// What [`read_fields`] says about keys outside the allowed list, beyond "unknown key".
#[derive(Default)]
struct Unknown<'r> {
    /// Replaces the generic "allowed keys in [...]: ..." help line.
    help: Option<String>,
    /// For keys that are valid somewhere else (another check kind).
    misplaced: Option<Misplaced<'r>>,
}

/// Reads the entries of `table` whose keys are in `allowed`; reports every other key, with a
/// did-you-mean when one of the allowed keys is close.
fn read_fields<'a>(
    table: &'a Table,
    path: &str,
    allowed: &[&'static str],
    unknown: &Unknown,
    report: &mut Report,
) -> BTreeMap<&'static str, Field<'a>> {
    let mut fields = BTreeMap::new();
    for entry in &table.entries {
        if let Some(known) = allowed.iter().find(|known| **known == entry.key) {
            fields.insert(*known, Field::from_entry(entry, path));
            continue;
        }
        let key_path = join_path(path, &entry.key);
        if let Some((message, help)) = unknown
            .misplaced
            .and_then(|misplaced| misplaced(&entry.key))
        {
            report.error(entry.key_span.clone(), Some(&key_path), message, Some(help));
            continue;
        }
        let (what, place) = if !path.is_empty() {
            ("key", format!("in {}", table_label(path)))
        } else if entry.node.is_table_or_array_of_tables() {
            ("table", "at the top level".to_string())
        } else {
            ("key", "at the top level".to_string())
        };
        let mut message = format!("unknown {what} `{}` {place}", entry.key);
        if let Some(close) = did_you_mean(&entry.key, allowed.iter().copied()) {
            message.push_str(&format!(", did you mean `{close}`?"));
        }
        let help = unknown.help.clone().unwrap_or_else(|| {
            let scope = if path.is_empty() {
                "top-level tables".to_string()
            } else if split_index(path).is_some() {
                format!("keys in [[{}]]", generic_path(path))
            } else {
                format!("keys in [{}]", generic_path(path))
            };
            format!("allowed {scope}: {}", allowed.join(", "))
        });
        report.error(entry.key_span.clone(), Some(&key_path), message, Some(help));
    }
    fields
}

/// `services.send_text.backoff` -> `services.NAME.backoff`: the allowed keys are the same for every
/// service (group, check), and saying so is clearer than repeating the name. Array indices go too:
/// `checks.x.pattern[2]` -> `checks.NAME.pattern`.
pub(crate) fn generic_path(path: &str) -> String {
    let path = split_index(path).map_or(path, |(array, _)| array);
    let mut parts = split_path(path);
    if parts.len() >= 2 && matches!(parts[0], "services" | "groups" | "checks") {
        parts[1] = "NAME";
    }
    parts.join(".")
}

/// Splits a dotted path at the dots outside quoted keys (`services."a.b".port` has three parts).
fn split_path(path: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in path.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '.' if !quoted => {
                parts.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&path[start..]);
    parts
}

/// Declares a table of the file: a struct with one `Option<Field>` per allowed key, the key list,
/// and a `read` that fills it and reports undeclared keys. The field names *are* the TOML keys.
/// An optional `help = EXPR;` after the body replaces the generic help line for unknown keys.
macro_rules! declare_table {
    (
        $(#[$meta:meta])* struct $name:ident { $($(#[$field_meta:meta])* $field:ident,)* }
        $(help = $help:expr;)?
    ) => {
        $(#[$meta])*
        pub(crate) struct $name<'a> {
            $($(#[$field_meta])* pub $field: Option<Field<'a>>,)*
        }

        impl<'a> $name<'a> {
            /// Every key this table accepts.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// Reads `table` (found at dotted `path`), reporting every key not in [`Self::KEYS`].
            pub fn read(table: &'a Table, path: &str, report: &mut Report) -> Self {
                #[allow(unused_mut)]
                let mut unknown = Unknown::default();
                $(unknown.help = Some($help.to_string());)?
                let mut fields = read_fields(table, path, Self::KEYS, &unknown, report);
                Self::take(&mut fields)
            }

            fn take(fields: &mut BTreeMap<&'static str, Field<'a>>) -> Self {
                $name { $($field: fields.remove(stringify!($field)),)* }
            }
        }
    };
}

declare_table! {
    /// The top level of supervisor.toml. Unknown top-level tables are errors like unknown keys.
    struct RawFile {
        supervisor,
        groups,
        services,
        checks,
        alerts,
        web,
        schedule,
    }
}

declare_table! {
    /// The top level of a drop-in check file (`checks_dir/*.toml`): checks and nothing else.
    struct RawCheckFile {
        checks,
    }
    help = "a file in checks_dir holds only [checks.NAME] tables; [supervisor], [groups], \
            [services], [alerts] and [[schedule]] belong in supervisor.toml";
}

declare_table! {
    /// `[supervisor]`.
    struct RawSupervisor {
        socket,
        socket_mode,
        socket_group,
        state_dir,
        log_dir,
        max_log_size,
        log_keep,
        log_ring_lines,
        checks_dir,
        on_shutdown,
        output_time_scale,
        watch_settle,
        watch_removes,
    }
}

declare_table! {
    /// `[groups.NAME]`.
    struct RawGroup {
        min_start_spacing,
        max_starts,
        window,
        flood_tolerance,
        sweep_after,
        recovery,
    }
}

declare_table! {
    /// `[groups.NAME.recovery]` or `recovery = { ... }`.
    struct RawRecovery {
        cooldown,
        margin,
        pause,
        ready_timeout,
        auto,
    }
}

declare_table! {
    /// `[services.NAME]`.
    struct RawService {
        command,
        cwd,
        env,
        env_file,
        autostart,
        restart,
        start_grace,
        stop_signal,
        stop_timeout,
        group,
        port,
        min_restart_interval,
        max_log_size,
        log_keep,
        priority,
        backoff,
    }
}

declare_table! {
    /// `[services.NAME.backoff]` or `backoff = { ... }`.
    struct RawBackoff {
        initial,
        max,
        factor,
        give_up_after,
        on_give_up,
    }
}

declare_table! {
    /// `[alerts]`.
    struct RawAlerts {
        webhook,
        retries,
        retry_delay,
    }
}

declare_table! {
    /// `[web]`: the status page.
    struct RawWeb {
        listen,
        tls_cert,
        tls_key,
        allow_plain_http,
        session_ttl,
        metrics_public,
        redact,
        users,
        hosts,
        metrics_token_hash,
        header_timeout,
        idle_timeout,
        body_timeout,
        max_connections,
        login_max_failures,
        login_window,
        login_lockout,
        login_lockout_max,
        login_checks,
        audit_max_size,
    }
}

declare_table! {
    /// One `[[schedule]]`: the keys of every action; `config::schedules` reports a key of another
    /// action (see [`SCHEDULE_ACTION_KEYS`]).
    struct RawSchedule {
        name,
        cron,
        action,
        services,
        command,
        timeout,
        alert,
        enabled,
    }
}

/// Keys every `[[schedule]]` accepts, whatever its action.
pub(crate) const SCHEDULE_COMMON_KEYS: &[&str] = &["name", "cron", "action", "enabled"];

/// The actions of `[[schedule]]`, in the order the reference lists them, with the keys each adds.
pub(crate) const SCHEDULE_ACTION_KEYS: &[(&str, &[&str])] = &[
    ("reload_cache", &["services"]),
    ("restart", &["services"]),
    ("diagnose", &["alert"]),
    ("exec", &["command", "timeout"]),
];

declare_table! {
    /// One `[[web.users]]`.
    struct RawWebUser {
        name,
        password_hash,
        role,
    }
}

/// Keys every check accepts, whatever its kind.
pub(crate) const CHECK_COMMON_KEYS: &[&str] = &[
    "kind",
    "services",
    "interval",
    "timeout",
    "grace",
    "readiness",
    "on_fail",
];

/// The check kinds, in the order the reference lists them, with the keys each adds to the common ones.
pub(crate) const CHECK_KIND_KEYS: &[(&str, &[&str])] = &[
    ("http", &["url", "method", "expect_status", "body_contains"]),
    (
        "json",
        &[
            "url",
            "method",
            "pointer",
            "min",
            "max",
            "warn_below",
            "warn_above",
            "events",
        ],
    ),
    (
        "log",
        &["shipped_patterns", "critical", "window", "pattern"],
    ),
    ("tcp", &["address"]),
    ("process", &["max_rss", "max_cpu"]),
    ("exec", &["command"]),
];

declare_table! {
    /// `[checks.NAME]`: the common keys, then every kind's own (the union of [`CHECK_KIND_KEYS`]).
    /// Read with [`RawCheck::read_kind`] once the kind is known, so that a key of another kind gets
    /// its own message; [`RawCheck::read`] (any kind's key) is for a missing or unknown kind.
    struct RawCheck {
        kind,
        services,
        interval,
        timeout,
        grace,
        readiness,
        on_fail,
        url,
        method,
        expect_status,
        body_contains,
        pointer,
        min,
        max,
        warn_below,
        warn_above,
        events,
        shipped_patterns,
        critical,
        window,
        pattern,
        address,
        max_rss,
        max_cpu,
        command,
    }
    help = check_keys_help(None);
}

impl<'a> RawCheck<'a> {
    /// Reads a `[checks.NAME]` table of kind `kind` (one of [`CHECK_KIND_KEYS`]): keys of other
    /// kinds are reported as such ("`pointer` is a key of json checks"), other keys as unknown with
    /// a did-you-mean among the keys this kind accepts.
    pub fn read_kind(table: &'a Table, path: &str, kind: &str, report: &mut Report) -> Self {
        let own = CHECK_KIND_KEYS
            .iter()
            .find(|(name, _)| *name == kind)
            .map_or(&[][..], |(_, keys)| *keys);
        let allowed: Vec<&'static str> = CHECK_COMMON_KEYS.iter().chain(own).copied().collect();
        let misplaced = |key: &str| {
            let owners: Vec<&str> = CHECK_KIND_KEYS
                .iter()
                .filter(|(_, keys)| keys.contains(&key))
                .map(|(name, _)| *name)
                .collect();
            if owners.is_empty() {
                return None;
            }
            let message = format!(
                "`{key}` is a key of {} checks, this check is kind = \"{kind}\"",
                owners.join(" and ")
            );
            Some((message, check_keys_help(Some(kind))))
        };
        let unknown = Unknown {
            help: Some(check_keys_help(Some(kind))),
            misplaced: Some(&misplaced),
        };
        let mut fields = read_fields(table, path, &allowed, &unknown, report);
        Self::take(&mut fields)
    }
}

/// The help line listing the keys of a check of `kind`, or of every kind.
pub(crate) fn check_keys_help(kind: Option<&str>) -> String {
    let common = CHECK_COMMON_KEYS.join(", ");
    match kind.and_then(|kind| CHECK_KIND_KEYS.iter().find(|(name, _)| *name == kind)) {
        Some((name, keys)) => format!(
            "keys of {name} checks: {}; keys of every check: {common}",
            keys.join(", ")
        ),
        None => {
            let by_kind: Vec<String> = CHECK_KIND_KEYS
                .iter()
                .map(|(name, keys)| format!("{name}: {}", keys.join(", ")))
                .collect();
            format!(
                "keys of every check: {common}; and by kind, {}",
                by_kind.join("; ")
            )
        }
    }
}

declare_table! {
    /// `on_fail = { after = 3, action = "alert" }` of a check.
    struct RawOnFail {
        after,
        action,
    }
}

declare_table! {
    /// One `[[checks.NAME.pattern]]` of a log check.
    struct RawPattern {
        name,
        regex,
        severity,
        group_by,
    }
}

#[cfg(test)]
#[path = "raw_tests.rs"]
mod tests;
