//! Python-logging-shaped output: records on stderr, gunicorn lines and floods on stdout.
//!
//! Owns the record formats (`basic` = `%(levelname)s:%(name)s:%(message)s`, `asctime` =
//! `%(asctime)s - %(name)s - %(levelname)s - %(message)s`) and gunicorn's line format. A record is written
//! with a single `write_all` under the stream's lock and flushed, so records of concurrent tasks never
//! interleave and a reader sees each as soon as it is complete. Timestamps are wall-clock local time,
//! like Python's; durations inside messages are nominal (see `clock.rs`). Write errors (a closed pipe)
//! are ignored: a service does not die because nobody reads its log.

use std::io::Write;

use chrono::{DateTime, Local};

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `INFO:telethon.client.users:…` (`logging.BASIC_FORMAT`, the scripts' default).
    Basic,
    /// `2026-02-20 10:00:00,123 - telethon.client.users - INFO - …`.
    Asctime,
}

/// Python logging levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
        }
    }
}

/// Writes one process's output.
#[derive(Debug, Clone)]
pub struct Logger {
    format: LogFormat,
}

impl Logger {
    pub fn new(format: LogFormat) -> Self {
        Logger { format }
    }

    /// One record: the head line, then `extra` lines (a traceback) verbatim.
    pub fn record(&self, level: Level, name: &str, message: &str, extra: Option<&str>) {
        let mut text = format_record(self.format, level, name, message, Local::now());
        if let Some(extra) = extra {
            text.push('\n');
            text.push_str(extra);
        }
        text.push('\n');
        write_stderr(&text);
    }

    pub fn info(&self, name: &str, message: &str) {
        self.record(Level::Info, name, message, None);
    }

    pub fn warning(&self, name: &str, message: &str) {
        self.record(Level::Warning, name, message, None);
    }

    pub fn error(&self, name: &str, message: &str) {
        self.record(Level::Error, name, message, None);
    }

    /// Lines that do not come from logging (`Exception in thread …` + traceback), verbatim.
    pub fn raw_stderr(&self, text: &str) {
        let mut text = text.to_string();
        text.push('\n');
        write_stderr(&text);
    }

    /// A gunicorn line on stdout.
    pub fn gunicorn(&self, pid: u32, level: &str, message: &str) {
        let mut line = format_gunicorn(pid, level, message, Local::now());
        line.push('\n');
        write_stdout(&line);
    }
}

/// One record's head line in the given format.
pub fn format_record(
    format: LogFormat,
    level: Level,
    name: &str,
    message: &str,
    now: DateTime<Local>,
) -> String {
    match format {
        LogFormat::Basic => format!("{}:{name}:{message}", level.as_str()),
        LogFormat::Asctime => format!(
            "{} - {name} - {} - {message}",
            now.format("%Y-%m-%d %H:%M:%S,%3f"),
            level.as_str()
        ),
    }
}

/// gunicorn's `%(asctime)s [%(process)d] [%(levelname)s] %(message)s` with `[%Y-%m-%d %H:%M:%S %z]`.
pub fn format_gunicorn(pid: u32, level: &str, message: &str, now: DateTime<Local>) -> String {
    format!(
        "{} [{pid}] [{level}] {message}",
        now.format("[%Y-%m-%d %H:%M:%S %z]")
    )
}

pub fn write_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

pub fn write_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_match_python_logging_and_gunicorn() {
        let t = Local
            .with_ymd_and_hms(2026, 2, 20, 10, 0, 0)
            .single()
            .unwrap()
            + chrono::Duration::milliseconds(123);
        assert_eq!(
            format_record(LogFormat::Basic, Level::Warning, "send_text_bot", "x", t),
            "WARNING:send_text_bot:x"
        );
        assert_eq!(
            format_record(LogFormat::Asctime, Level::Info, "send_text_bot", "x", t),
            "2026-02-20 10:00:00,123 - send_text_bot - INFO - x"
        );
        let g = format_gunicorn(1234, "INFO", "Starting gunicorn 23.0.0", t);
        assert!(g.starts_with("[2026-02-20 10:00:00 "), "{g}");
        assert!(
            g.ends_with("] [1234] [INFO] Starting gunicorn 23.0.0"),
            "{g}"
        );
    }
}
