//! The one reader every part of validation goes through: [`Validator`] (the report being collected and
//! the directory paths resolve against), its typed readers for single values (strings, integers,
//! durations, sizes, paths, choices, commands, names) and the uniform way their problems are worded:
//! "`key = value as written`: what is wrong", plus a help line.
//!
//! `validate.rs` (the top: supervisor, groups, services) and `checks.rs`, `schedules.rs` and `web.rs`
//! (one table each, called by it) read through this module and nothing else of each other; it imports
//! none of them. Every reader returns `None` after reporting, so callers fall back to a default and go
//! on; none of them stops validation. Only `directory` looks at the file system (it checks that `cwd`
//! exists).

use std::ops::RangeInclusive;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::duration::{suggest_duration, suggest_size, DURATION_EXPECTED, SIZE_EXPECTED};
use super::error::Report;
use super::raw;
use super::raw::{index_path, Field, Node, Table, Value};
use super::suggest::did_you_mean;
use super::{parse_duration, parse_size};

pub(super) const NAME_RULE: &str =
    "names must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$ (letters, digits, `_` \
     and `-`, starting with a letter or digit, at most 64 characters) because they become file \
     names and URLs";

/// Whether `name` may name a service, a group or a check.
pub(crate) fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Walks the raw tables, reporting problems and building the validated values (the table validators
/// are its methods too, in `validate.rs`, `checks.rs`, `schedules.rs` and `web.rs`).
pub(super) struct Validator {
    pub(super) report: Report,
    /// Relative paths in the file being read are resolved against this (the file's own directory).
    pub(super) config_dir: PathBuf,
}

impl Validator {
    /// A TOML syntax error in the file being read; `rest` says what that means for the others.
    pub(super) fn syntax_error(&mut self, err: raw::SyntaxError, rest: &str) {
        let message = err.message.lines().collect::<Vec<_>>().join(", ");
        self.report.error(
            err.span,
            None,
            format!("TOML syntax error: {message}"),
            Some(format!(
                "fix the syntax here first (strings need double quotes, e.g. start_grace = \
                 \"5s\"); {rest}"
            )),
        );
    }

    /// argv of a service or an exec check; reports an empty or malformed command.
    pub(super) fn command(&mut self, field: &Field) -> Vec<String> {
        const HELP: &str = "write the program and its arguments, e.g. command = [\"python3\", \
                            \"send_text.py\"] or command = \"python3 send_text.py\"";
        let argv = match &field.node.value {
            Value::Array(elements) => {
                let mut argv = Vec::new();
                for (index, element) in elements.iter().enumerate() {
                    match &element.value {
                        Value::String(arg) => argv.push(arg.clone()),
                        other => self.report.error(
                            element.span.clone(),
                            Some(&field.path),
                            format!(
                                "`command` element {}: expected a string, found {}",
                                index + 1,
                                other.kind()
                            ),
                            Some("quote every argument: command = [\"tend-sim\", \"--port\", \"5022\"]".to_string()),
                        ),
                    }
                }
                argv
            }
            Value::String(line) => match shell_words::split(line) {
                Ok(argv) => argv,
                Err(err) => {
                    self.value_error(field, err, Some(HELP.to_string()));
                    return Vec::new();
                }
            },
            _ => {
                self.type_error(
                    field,
                    "an array of strings or a string",
                    Some(HELP.to_string()),
                );
                return Vec::new();
            }
        };
        match argv.first() {
            None => self.value_error(field, "the command is empty", Some(HELP.to_string())),
            Some(program) if program.is_empty() => {
                self.value_error(field, "the program name is empty", Some(HELP.to_string()))
            }
            Some(_) => {}
        }
        if let Some(index) = argv.iter().position(|arg| arg.contains('\0')) {
            // The kernel takes C strings: a NUL would cut the argument short (Rust refuses to spawn).
            self.value_error(
                field,
                format!(
                    "`command` element {} contains a NUL byte (\\u0000)",
                    index + 1
                ),
                Some("remove the NUL character; arguments cannot contain one".to_string()),
            );
        }
        argv
    }

    // ----- names --------------------------------------------------------------------------------

    /// Checks a service, group or check name (the table key); reports and returns false when invalid.
    pub(super) fn check_name(&mut self, field: &Field, what: &str) -> bool {
        if is_valid_name(field.name) {
            return true;
        }
        self.report.error(
            field.key_span.clone(),
            Some(&field.path),
            format!("invalid {what} name `{}`", field.name),
            Some(NAME_RULE.to_string()),
        );
        false
    }

    /// A program path with a `/` is resolved against the directory of the file that defines `what`
    /// (a check or a schedule) and must be an executable file; a bare name is looked up in PATH when
    /// it runs, like a service's command.
    pub(super) fn exec_program(
        &mut self,
        field: &Field,
        program: &str,
        what: &str,
    ) -> Option<String> {
        if !program.contains('/') {
            return None;
        }
        let path = normalize(&self.config_dir.join(program));
        let where_from = format!(
            "relative program paths are resolved against the directory of the file that defines \
             {what} ({})",
            self.config_dir.display()
        );
        let problem = match std::fs::metadata(&path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Some((
                format!("program {} does not exist", path.display()),
                where_from,
            )),
            Err(err) => Some((
                format!("cannot use program {}: {err}", path.display()),
                where_from,
            )),
            Ok(meta) if !meta.is_file() => Some((
                format!("program {} is not a file", path.display()),
                where_from,
            )),
            Ok(meta) if meta.permissions().mode() & 0o111 == 0 => Some((
                format!("program {} is not executable", path.display()),
                format!("make it executable: chmod +x {}", path.display()),
            )),
            Ok(_) => None,
        };
        if let Some((problem, help)) = problem {
            self.value_error(field, problem, Some(help));
        }
        Some(path.to_string_lossy().into_owned())
    }

    // ----- typed values -------------------------------------------------------------------------

    /// The table under `field`; `how` shows how to write it, for the help line.
    pub(super) fn table<'f>(&mut self, field: &Field<'f>, how: &str) -> Option<&'f Table> {
        if let Value::Table(table) = &field.node.value {
            return Some(table);
        }
        self.type_error(field, "a table", Some(format!("write it as {how}")));
        None
    }

    pub(super) fn string<'f>(&mut self, field: &Field<'f>) -> Option<&'f str> {
        if let Value::String(text) = &field.node.value {
            return Some(text);
        }
        let help = match &field.node.value {
            Value::Integer(_) | Value::Float(_) | Value::Boolean(_) => {
                let raw = self.report.snippet(field.node.span.clone());
                format!("quote it: {} = \"{raw}\"", field.name)
            }
            _ => format!("write one string: {} = \"...\"", field.name),
        };
        self.type_error(field, "a string", Some(help));
        None
    }

    pub(super) fn boolean(&mut self, field: Option<&Field>) -> Option<bool> {
        let field = field?;
        if let Value::Boolean(b) = field.node.value {
            return Some(b);
        }
        let help = match &field.node.value {
            Value::String(text) if text == "true" || text == "false" => {
                format!("remove the quotes: {} = {text}", field.name)
            }
            _ => format!("write {} = true or {} = false", field.name, field.name),
        };
        self.type_error(field, "true or false", Some(help));
        None
    }

    /// An integer in `range`; `meaning` says what the key counts, for the help line.
    pub(super) fn integer(
        &mut self,
        field: Option<&Field>,
        range: RangeInclusive<i64>,
        meaning: &str,
    ) -> Option<i64> {
        let field = field?;
        let bounds = format!("between {} and {}", range.start(), range.end());
        let n = match &field.node.value {
            Value::Integer(n) => *n,
            Value::String(text) if text.trim().parse::<i64>().is_ok() => {
                let help = format!("remove the quotes: {} = {}", field.name, text.trim());
                self.type_error(field, "an integer", Some(help));
                return None;
            }
            _ => {
                self.type_error(
                    field,
                    &format!("an integer {bounds}"),
                    Some(meaning.to_string()),
                );
                return None;
            }
        };
        if !range.contains(&n) {
            self.value_error(
                field,
                format!("must be {bounds}"),
                Some(meaning.to_string()),
            );
            return None;
        }
        Some(n)
    }

    pub(super) fn duration(&mut self, field: Option<&Field>) -> Option<Duration> {
        let field = field?;
        let example = "one or more <number><unit> parts with no spaces, e.g. \"500ms\", \"10s\", \
                       \"15m\", \"1h30m\"";
        match &field.node.value {
            Value::String(text) => match parse_duration(text) {
                Ok(duration) => Some(duration),
                Err(problem) => {
                    let help = match suggest_duration(text) {
                        Some(fixed) => format!("write {} = \"{fixed}\"", field.name),
                        None => example.to_string(),
                    };
                    self.value_error(field, problem, Some(help));
                    None
                }
            },
            Value::Integer(0) => Some(Duration::ZERO),
            Value::Integer(n) => {
                self.value_error(
                    field,
                    format!("{DURATION_EXPECTED}; a bare number has no unit"),
                    Some(format!(
                        "add a unit and quotes: {} = \"{n}s\" or \"{n}m\"",
                        field.name
                    )),
                );
                None
            }
            other => {
                let problem = format!("{DURATION_EXPECTED}, found {}", other.kind());
                self.value_error(field, problem, Some(example.to_string()));
                None
            }
        }
    }

    /// A duration longer than zero; `meaning` says what it is, for the help line.
    pub(super) fn positive_duration(
        &mut self,
        field: Option<&Field>,
        meaning: &str,
    ) -> Option<Duration> {
        let duration = self.duration(field)?;
        if duration.is_zero() {
            if let Some(field) = field {
                self.value_error(field, "must be longer than 0s", Some(meaning.to_string()));
            }
            return None;
        }
        Some(duration)
    }

    /// A finite number; a TOML integer is accepted as well (`min = 1`).
    pub(super) fn number(&mut self, field: Option<&Field>, example: &str) -> Option<f64> {
        let field = field?;
        #[allow(clippy::cast_precision_loss)] // integers in thresholds are far below 2^53
        let number = match &field.node.value {
            Value::Float(f) => *f,
            Value::Integer(i) => *i as f64,
            Value::String(text) if text.trim().parse::<f64>().is_ok() => {
                let help = format!("remove the quotes: {} = {}", field.name, text.trim());
                self.type_error(field, "a number", Some(help));
                return None;
            }
            _ => {
                self.type_error(field, "a number", Some(format!("e.g. {example}")));
                return None;
            }
        };
        if !number.is_finite() {
            self.value_error(
                field,
                "must be a finite number",
                Some(format!("e.g. {example}")),
            );
            return None;
        }
        Some(number)
    }

    pub(super) fn size(&mut self, field: Option<&Field>, rule: &SizeRule) -> Option<u64> {
        let field = field?;
        let example =
            "e.g. \"512KiB\", \"10MB\", \"1GiB\" (KB/MB/GB = 1000^n, KiB/MiB/GiB = 1024^n), \
                       or a number of bytes";
        let bytes = match &field.node.value {
            Value::String(text) => match parse_size(text) {
                Ok(bytes) => bytes,
                Err(problem) => {
                    let help = match suggest_size(text) {
                        Some(fixed) => format!("write {} = \"{fixed}\"", field.name),
                        None => example.to_string(),
                    };
                    self.value_error(field, problem, Some(help));
                    return None;
                }
            },
            Value::Integer(n) => match u64::try_from(*n) {
                Ok(bytes) => bytes,
                Err(_) => {
                    self.value_error(
                        field,
                        "a size cannot be negative",
                        Some(example.to_string()),
                    );
                    return None;
                }
            },
            other => {
                let problem = format!("{SIZE_EXPECTED}, found {}", other.kind());
                self.value_error(field, problem, Some(example.to_string()));
                return None;
            }
        };
        if bytes < rule.min {
            self.value_error(
                field,
                format!("must be at least {} ({} bytes)", rule.min_text, rule.min),
                Some(rule.why.to_string()),
            );
            return None;
        }
        Some(bytes)
    }

    pub(super) fn choice<T: Copy>(
        &mut self,
        field: Option<&Field>,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let field = field?;
        let allowed: Vec<String> = choices
            .iter()
            .map(|(name, _)| format!("\"{name}\""))
            .collect();
        let help = Some(format!("allowed values: {}", allowed.join(", ")));
        let Value::String(text) = &field.node.value else {
            self.type_error(field, "a string", help);
            return None;
        };
        if let Some((_, value)) = choices.iter().find(|(name, _)| name == text) {
            return Some(*value);
        }
        let mut problem = "unknown value".to_string();
        if let Some(close) = did_you_mean(text, choices.iter().map(|(name, _)| *name)) {
            problem.push_str(&format!(", did you mean \"{close}\"?"));
        }
        self.value_error(field, problem, help);
        None
    }

    /// A path, resolved against the config file's directory. Never touches the file system.
    pub(super) fn path(&mut self, field: Option<&Field>) -> Option<PathBuf> {
        let field = field?;
        let text = self.string(field)?;
        if text.is_empty() {
            self.value_error(
                field,
                "the path is empty",
                Some("use \".\" for the config file's directory".to_string()),
            );
            return None;
        }
        if text.contains('\0') {
            self.value_error(field, "the path contains a NUL character", None);
            return None;
        }
        if text == "~" || text.starts_with("~/") {
            self.value_error(
                field,
                "`~` is not expanded (no shell is involved)",
                Some(
                    "write the full path, or a path relative to the config file's directory"
                        .to_string(),
                ),
            );
            return None;
        }
        Some(normalize(&self.config_dir.join(text)))
    }

    /// A path that must be an existing directory (`cwd`).
    pub(super) fn directory(&mut self, field: Option<&Field>) -> Option<PathBuf> {
        let path = self.path(field)?;
        let field = field?;
        if !path.is_dir() {
            let problem = if path.exists() {
                format!("{} is not a directory", path.display())
            } else {
                format!("directory {} does not exist", path.display())
            };
            self.value_error(
                field,
                problem,
                Some(format!(
                    "create it or fix the path; relative paths are resolved against the config \
                     file's directory ({})",
                    self.config_dir.display()
                )),
            );
            return None;
        }
        Some(path)
    }

    // ----- reporting ----------------------------------------------------------------------------

    /// `key = value` exactly as written in the file; for a `[header]` table, its header line.
    pub(super) fn quote(&self, field: &Field) -> String {
        let snippet = self.report.snippet(field.node.span.clone());
        if field.node.is_table_or_array_of_tables() && snippet.starts_with('[') {
            snippet.trim_end_matches('…').to_string()
        } else {
            format!("{} = {snippet}", field.name)
        }
    }

    /// A problem with the value of `field`: "`key = value`: problem".
    pub(super) fn value_error(
        &mut self,
        field: &Field,
        problem: impl std::fmt::Display,
        help: Option<String>,
    ) {
        let message = format!("`{}`: {problem}", self.quote(field));
        self.report
            .error(field.node.span.clone(), Some(&field.path), message, help);
    }

    /// The entries of an array of tables (`[[checks.x.pattern]]`, `[[schedule]]`, `[[web.users]]`), each
    /// with its dotted path (`schedule[2]`); anything that is not an array of tables is reported with
    /// `how` as the help and left out.
    pub(super) fn array_of_tables<'f>(
        &mut self,
        field: &'f Field,
        how: &str,
    ) -> Vec<(String, &'f Node, &'f Table)> {
        let Value::Array(items) = &field.node.value else {
            self.type_error(field, "an array of tables", Some(how.to_string()));
            return Vec::new();
        };
        let mut tables = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let path = index_path(&field.path, index + 1);
            match &item.value {
                Value::Table(table) => tables.push((path, item, table)),
                _ => self.report.error(
                    item.span.clone(),
                    Some(&path),
                    format!("expected a table, found {}", item.kind()),
                    Some(how.to_string()),
                ),
            }
        }
        tables
    }

    pub(super) fn type_error(&mut self, field: &Field, expected: &str, help: Option<String>) {
        let problem = format!("expected {expected}, found {}", field.node.kind());
        self.value_error(field, problem, help);
    }
}

/// The smallest size a key accepts, and why, for its message.
pub(super) struct SizeRule {
    pub min: u64,
    /// `min` as the operator would write it ("4KiB").
    pub min_text: &'static str,
    pub why: &'static str,
}

/// Removes `.` components ("./logs" -> "logs") without touching the file system. `..` is kept:
/// resolving it lexically would be wrong across symlinks.
pub(super) fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}
