//! Raw layer: supervisor.toml as written, every key and value with its byte span, and the declared
//! shape (allowed keys) of each table.
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

/// Reads the entries of `table` whose keys are in `allowed`; reports every other key, with a
/// did-you-mean when one of the allowed keys is close.
fn read_fields<'a>(
    table: &'a Table,
    path: &str,
    allowed: &'static [&'static str],
    report: &mut Report,
) -> BTreeMap<&'static str, Field<'a>> {
    let mut fields = BTreeMap::new();
    for entry in &table.entries {
        if let Some(known) = allowed.iter().find(|known| **known == entry.key) {
            fields.insert(*known, Field::from_entry(entry, path));
            continue;
        }
        let (what, place) = if !path.is_empty() {
            ("key", format!("in [{path}]"))
        } else if entry.node.is_table_or_array_of_tables() {
            ("table", "at the top level".to_string())
        } else {
            ("key", "at the top level".to_string())
        };
        let mut message = format!("unknown {what} `{}` {place}", entry.key);
        if let Some(close) = did_you_mean(&entry.key, allowed.iter().copied()) {
            message.push_str(&format!(", did you mean `{close}`?"));
        }
        let scope = if path.is_empty() {
            "top-level tables".to_string()
        } else {
            format!("keys in [{}]", generic_path(path))
        };
        report.error(
            entry.key_span.clone(),
            Some(&join_path(path, &entry.key)),
            message,
            Some(format!("allowed {scope}: {}", allowed.join(", "))),
        );
    }
    fields
}

/// `services.send_text.backoff` -> `services.NAME.backoff`: the allowed keys are the same for every
/// service, and saying so is clearer than repeating the name.
fn generic_path(path: &str) -> String {
    let mut parts: Vec<&str> = path.splitn(3, '.').collect();
    if parts.len() >= 2 && matches!(parts[0], "services" | "groups") {
        parts[1] = "NAME";
    }
    parts.join(".")
}

/// Declares a table of the file: a struct with one `Option<Field>` per allowed key, the key list,
/// and a `read` that fills it and reports undeclared keys. The field names *are* the TOML keys.
macro_rules! declare_table {
    ($(#[$meta:meta])* struct $name:ident { $($(#[$field_meta:meta])* $field:ident,)* }) => {
        $(#[$meta])*
        pub(crate) struct $name<'a> {
            $($(#[$field_meta])* pub $field: Option<Field<'a>>,)*
        }

        impl<'a> $name<'a> {
            /// Every key this table accepts.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// Reads `table` (found at dotted `path`), reporting every key not in [`Self::KEYS`].
            pub fn read(table: &'a Table, path: &str, report: &mut Report) -> Self {
                let mut fields = read_fields(table, path, Self::KEYS, report);
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
    }
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
    }
}

declare_table! {
    /// `[groups.NAME]`.
    struct RawGroup {
        min_start_spacing,
        max_starts,
        window,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn find<'a>(table: &'a Table, key: &str) -> &'a Entry {
        table.entries.iter().find(|e| e.key == key).unwrap()
    }

    #[test]
    fn header_inline_and_dotted_tables_become_the_same_tree_with_spans() {
        let text = "[services.a]\ncommand = [\"x\", \"y\"]\nenv.FOO = \"1\"\nbackoff = { initial = \"1s\" }\n";
        let root = parse(text).unwrap();
        let services = find(&root, "services");
        let Value::Table(services) = &services.node.value else {
            panic!()
        };
        let a = find(services, "a");
        assert_eq!(&text[a.key_span.clone()], "a");
        let Value::Table(a) = &a.node.value else {
            panic!()
        };
        let command = find(a, "command");
        assert_eq!(&text[command.node.span.clone()], "[\"x\", \"y\"]");
        let Value::Array(elements) = &command.node.value else {
            panic!()
        };
        assert_eq!(&text[elements[1].span.clone()], "\"y\"");
        let Value::Table(env) = &find(a, "env").node.value else {
            panic!()
        };
        assert_eq!(find(env, "FOO").node.value, Value::String("1".into()));
        let Value::Table(backoff) = &find(a, "backoff").node.value else {
            panic!()
        };
        let initial = find(backoff, "initial");
        assert_eq!(&text[initial.key_span.clone()], "initial");
        assert_eq!(&text[initial.node.span.clone()], "\"1s\"");
    }

    #[test]
    fn syntax_errors_keep_their_position() {
        let text = "a = 1\nb = \"open\n";
        let err = parse(text).unwrap_err();
        assert_eq!(err.span.start, text.find("open").unwrap() + 4);
        assert!(err.message.contains("string"), "{}", err.message);
    }

    #[test]
    fn read_reports_every_unknown_key_and_keeps_the_known_ones() {
        let text = "restrat = \"always\"\ncommand = \"x\"\nzzz = 1\n";
        let table = parse(text).unwrap();
        let mut report = Report::new(Path::new("f.toml"), text);
        let service = RawService::read(&table, "services.a", &mut report);
        assert_eq!(service.command.unwrap().path, "services.a.command");
        assert!(service.restart.is_none());
        let err = report.finish().unwrap_err();
        let [first, second] = err.diagnostics() else {
            panic!("{err}")
        };
        assert_eq!(
            first.message,
            "unknown key `restrat` in [services.a], did you mean `restart`?"
        );
        assert_eq!(first.key.as_deref(), Some("services.a.restrat"));
        assert_eq!((first.line, first.column), (Some(1), Some(1)));
        assert_eq!(second.message, "unknown key `zzz` in [services.a]");
        assert!(second
            .help
            .as_deref()
            .unwrap()
            .starts_with("allowed keys in [services.NAME]: command, cwd"));
    }

    #[test]
    fn paths_quote_keys_that_are_not_bare() {
        assert_eq!(join_path("", "services"), "services");
        assert_eq!(join_path("services", "send_text"), "services.send_text");
        assert_eq!(join_path("services", "send.text"), "services.\"send.text\"");
        assert_eq!(join_path("services", ""), "services.\"\"");
    }
}
