//! Command-line options of `tend-sim` (raw, as clap parses them) and their validation into [`SimConfig`].
//!
//! [`SimArgs`] is a `clap::Args` so that the main `tend` binary can embed it as `tend sim <args>`;
//! [`SimCli`] wraps it for the standalone binary. Validation collects every problem at once. This module
//! must not start anything.

use std::collections::HashSet;
use std::path::PathBuf;

use super::error::SimError;
use super::flood::FloodParams;
use super::log::LogFormat;
use super::universe::{bare_channel_id, norm_username, ChatRules};

/// Which of the two production services to emulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Service {
    /// The text service (`POST /send_text`, logger `send_text_bot`, port 5022 by default).
    #[value(name = "send_text")]
    SendText,
    /// The media service (`POST /send_media`, logger `send_media_bot`, port 5023 by default).
    #[value(name = "send_media")]
    SendMedia,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::SendText => "send_text",
            Service::SendMedia => "send_media",
        }
    }

    /// The script's logger name.
    pub fn logger(self) -> &'static str {
        match self {
            Service::SendText => "send_text_bot",
            Service::SendMedia => "send_media_bot",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Service::SendText => 5022,
            Service::SendMedia => 5023,
        }
    }
}

const AFTER_HELP: &str = "\
Durations are nominal (model) seconds: a real sleep lasts seconds × --time-scale, logs print the nominal
value. Exceptions: --grow-memory-mb-per-s and --flood-output are per wall-clock second.
Every process of one account shares DIR/<account>.json (flood state, under DIR/<account>.lock) and appends
to DIR/<account>.events.jsonl (sweeps, flood waits and their causes). Use the same --time-scale for all of them.
With EMU_CONTROL=1: GET /__emu/state and POST /__emu/fault {\"kind\": ...} (see docs/tend-sim.md).";

/// Options of the emulator, embeddable in another clap command.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct SimArgs {
    /// The service to emulate.
    #[arg(long, value_enum)]
    pub service: Service,
    /// HTTP port [default: 5022 for send_text, 5023 for send_media; 0 picks a free port].
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Write the bound port to this file once listening (useful with --port 0).
    #[arg(long, value_name = "PATH")]
    pub port_file: Option<PathBuf>,
    /// Telegram account name; processes on one account share its flood state.
    #[arg(long, default_value = "main")]
    pub account: String,
    /// Directory of the shared account files.
    #[arg(long, value_name = "DIR", default_value = "state/sim")]
    pub state_dir: PathBuf,
    /// Dialogs of the account (a sweep fetches ceil(N/100) pages).
    #[arg(long, default_value_t = 3978)]
    pub dialogs: u32,
    /// Seed of the chat universe, message ids and jitter.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Log record format on stderr.
    #[arg(long, value_enum, default_value = "basic")]
    pub log_format: LogFormat,
    /// Print gunicorn's start (and stop) lines on stdout.
    #[arg(long)]
    pub gunicorn_banner: bool,
    /// Real seconds per model second (0.001: model seconds become milliseconds).
    #[arg(long, default_value_t = 1.0, value_name = "F")]
    pub time_scale: f64,
    /// The pre-fix scripts: a full sweep on every cache miss and FloodWait answered with 500.
    #[arg(long)]
    pub legacy_refetch: bool,

    /// Chat ids (or @usernames) the account is not in, comma-separated; -100999xxxxxxx ids always are.
    #[arg(
        long,
        value_delimiter = ',',
        allow_hyphen_values = true,
        value_name = "IDS"
    )]
    pub missing_chats: Vec<String>,
    /// Chat ids where sends fail with UserBannedInChannelError.
    #[arg(
        long,
        value_delimiter = ',',
        allow_hyphen_values = true,
        value_name = "IDS"
    )]
    pub banned_chats: Vec<String>,
    /// Chat ids where sends fail with ChatWriteForbiddenError.
    #[arg(
        long,
        value_delimiter = ',',
        allow_hyphen_values = true,
        value_name = "IDS"
    )]
    pub readonly_chats: Vec<String>,
    /// Channels the account is banned in (bare or -100 ids), logged once at start-up; "" for none.
    #[arg(
        long,
        value_delimiter = ',',
        allow_hyphen_values = true,
        value_name = "IDS",
        default_value = "3760957276"
    )]
    pub banned_channels: Vec<String>,

    /// FLOOD_WINDOW_S: two sweep starts closer than this flood.
    #[arg(long, default_value_t = 600.0, value_name = "S")]
    pub flood_window: f64,
    /// FLOOD_BASE_S: the first flood of a streak; it doubles with each strike.
    #[arg(long, default_value_t = 27, value_name = "S")]
    pub flood_base: u64,
    /// FLOOD_AT_PAGE: the sweep page that gets the flood (the last page on small accounts).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub flood_at_page: u32,
    /// Telethon's flood_sleep_threshold: longer waits raise FloodWaitError.
    #[arg(long, default_value_t = 60, value_name = "S")]
    pub flood_sleep_threshold: u64,
    /// SEND_RATE: sends per 60 s per method per account before a 5-15 s flood.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub send_rate: u32,
    /// Periodic cache warm-up interval (0 = never).
    #[arg(long, default_value_t = 1800.0, value_name = "S")]
    pub warmup_interval: f64,
    /// Mean interval of PersistentTimestampOutdated bursts, ±20% jitter (0 = never).
    #[arg(long, default_value_t = 900.0, value_name = "S")]
    pub pts_noise_interval: f64,
    /// At most one mini refresh per this many seconds, per process.
    #[arg(long, default_value_t = 30.0, value_name = "S")]
    pub mini_refresh_cooldown: f64,
    /// Duration of one GetDialogs page.
    #[arg(long, default_value_t = 50.0, value_name = "MS")]
    pub page_ms: f64,
    /// Time from bind to the Telethon client existing (/health says not_ready meanwhile).
    #[arg(long, default_value_t = 0.0, value_name = "S")]
    pub client_delay: f64,

    /// Fault: exit with --exit-code after this many seconds.
    #[arg(long, value_name = "S", help_heading = "Faults")]
    pub crash_after: Option<f64>,
    /// Exit code of --crash-after, --refuse-start and the `exit`/`crash` faults.
    #[arg(
        long,
        default_value_t = 1,
        value_name = "CODE",
        help_heading = "Faults"
    )]
    pub exit_code: u8,
    /// Fault: the Telethon thread dies after this many seconds (zombie: HTTP up, sends time out).
    #[arg(long, value_name = "S", help_heading = "Faults")]
    pub crash_thread_after: Option<f64>,
    /// Fault: fail at import (sqlite3 "database is locked") and exit with --exit-code.
    #[arg(long, help_heading = "Faults")]
    pub refuse_start: bool,
    /// Fault: ignore SIGTERM (SIGINT and SIGKILL still work).
    #[arg(long, help_heading = "Faults")]
    pub ignore_sigterm: bool,
    /// Fault: spawn a grandchild (`sleep`) in the same process group that outlives this process.
    #[arg(long, help_heading = "Faults")]
    pub spawn_grandchild: bool,
    /// Fault: grow resident memory by this many MB per wall-clock second.
    #[arg(long, value_name = "MB", help_heading = "Faults")]
    pub grow_memory_mb_per_s: Option<f64>,
    /// Upper bound of the memory growth.
    #[arg(
        long,
        default_value_t = 512.0,
        value_name = "MB",
        help_heading = "Faults"
    )]
    pub grow_memory_max_mb: f64,
    /// Fault: write this many lines per wall-clock second to stdout and as many to stderr.
    #[arg(long, value_name = "N", help_heading = "Faults")]
    pub flood_output: Option<u32>,
    /// Fault: /health answers only after this many seconds.
    #[arg(long, value_name = "S", help_heading = "Faults")]
    pub health_delay: Option<f64>,
    /// Fault: /health never answers.
    #[arg(long, help_heading = "Faults")]
    pub health_hang: bool,
    /// Fault: the account is in a GetDialogs flood of this many seconds at start-up (> threshold: zombie).
    #[arg(long, value_name = "S", help_heading = "Faults")]
    pub force_flood: Option<u64>,
    /// Serve the test-only control API (/__emu/state, /__emu/fault).
    #[arg(
        long,
        env = "EMU_CONTROL",
        value_parser = clap::builder::BoolishValueParser::new(),
        help_heading = "Faults"
    )]
    pub emu_control: bool,
}

/// The standalone `tend-sim` command.
#[derive(Debug, clap::Parser)]
#[command(
    name = "tend-sim",
    version,
    about = "Emulates one Telethon webhook service (send_text or send_media), failures included",
    long_about = "Emulates one of the two Telethon webhook services tend supervises: the same HTTP \
                  endpoints, JSON shapes, status codes and log lines, and an account-wide flood model \
                  shared by every emulated process on one account."
)]
pub struct SimCli {
    #[command(flatten)]
    pub args: SimArgs,
}

/// Start-up faults, from the flags.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartupFaults {
    pub crash_after_s: Option<f64>,
    pub exit_code: u8,
    pub crash_thread_after_s: Option<f64>,
    pub refuse_start: bool,
    pub ignore_sigterm: bool,
    pub spawn_grandchild: bool,
    pub grow_memory_mb_per_s: Option<f64>,
    pub grow_memory_max_mb: f64,
    pub flood_output: Option<u32>,
    pub health_delay_s: Option<f64>,
    pub health_hang: bool,
    pub force_flood_s: Option<u64>,
}

/// Validated options.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub service: Service,
    pub host: String,
    /// 0 means "pick a free port".
    pub port: u16,
    pub port_file: Option<PathBuf>,
    pub account: String,
    pub state_dir: PathBuf,
    pub dialogs: u32,
    pub seed: u64,
    pub log_format: LogFormat,
    pub gunicorn_banner: bool,
    pub time_scale: f64,
    pub legacy_refetch: bool,
    pub chats: ChatRules,
    /// Bare ids.
    pub banned_channels: Vec<i64>,
    pub flood: FloodParams,
    pub flood_sleep_threshold: u64,
    pub warmup_interval_s: Option<f64>,
    pub pts_noise_interval_s: Option<f64>,
    pub mini_refresh_cooldown_s: f64,
    /// Nominal seconds per GetDialogs page.
    pub page_s: f64,
    pub client_delay_s: f64,
    pub faults: StartupFaults,
    pub control: bool,
}

impl SimConfig {
    /// Pages of a full sweep: `ceil(dialogs / 100)`.
    pub fn pages(&self) -> u32 {
        self.dialogs.div_ceil(100)
    }
}

impl SimArgs {
    /// Checks every option and lists all problems at once.
    pub fn into_config(self) -> Result<SimConfig, SimError> {
        let mut errors = Vec::new();
        let mut seconds = |name: &str, v: f64, allow_zero: bool| {
            if !v.is_finite() || v < 0.0 || (!allow_zero && v == 0.0) {
                errors.push(format!(
                    "--{name} {v}: expected a {} number of seconds",
                    if allow_zero {
                        "non-negative"
                    } else {
                        "positive"
                    }
                ));
            }
        };
        seconds("flood-window", self.flood_window, false);
        seconds("warmup-interval", self.warmup_interval, true);
        seconds("pts-noise-interval", self.pts_noise_interval, true);
        seconds("mini-refresh-cooldown", self.mini_refresh_cooldown, true);
        seconds("page-ms", self.page_ms, true);
        seconds("client-delay", self.client_delay, true);
        for (name, v) in [
            ("crash-after", self.crash_after),
            ("crash-thread-after", self.crash_thread_after),
            ("health-delay", self.health_delay),
            ("grow-memory-mb-per-s", self.grow_memory_mb_per_s),
        ] {
            if let Some(v) = v {
                seconds(name, v, true);
            }
        }
        seconds("grow-memory-max-mb", self.grow_memory_max_mb, true);
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            errors.push(format!(
                "--time-scale {}: expected a positive factor such as 1 or 0.001",
                self.time_scale
            ));
        }
        if self.account.is_empty()
            || !self
                .account
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            || self.account.starts_with('.')
        {
            errors.push(format!(
                "--account {:?}: use letters, digits, '_', '-' or '.' (it names files in the state dir)",
                self.account
            ));
        }
        if self.send_rate == 0 {
            errors.push("--send-rate 0: at least one send per minute must be allowed".into());
        }
        if self.flood_at_page == 0 {
            errors.push("--flood-at-page 0: pages count from 1".into());
        }

        let mut chats = ChatRules::default();
        for item in self
            .missing_chats
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            match item.parse::<i64>() {
                Ok(id) => {
                    chats.missing_ids.insert(id);
                }
                Err(_) => {
                    chats.missing_usernames.insert(norm_username(item));
                }
            }
        }
        chats.banned = ids("banned-chats", &self.banned_chats, &mut errors);
        chats.readonly = ids("readonly-chats", &self.readonly_chats, &mut errors);
        let mut banned_channels: Vec<i64> =
            ids("banned-channels", &self.banned_channels, &mut errors)
                .into_iter()
                .map(bare_channel_id)
                .collect();
        banned_channels.sort_unstable();

        if !errors.is_empty() {
            return Err(SimError::Invalid(errors));
        }
        let positive = |v: f64| (v > 0.0).then_some(v);
        Ok(SimConfig {
            port: self.port.unwrap_or(self.service.default_port()),
            service: self.service,
            host: self.host,
            port_file: self.port_file,
            account: self.account,
            state_dir: self.state_dir,
            dialogs: self.dialogs,
            seed: self.seed,
            log_format: self.log_format,
            gunicorn_banner: self.gunicorn_banner,
            time_scale: self.time_scale,
            legacy_refetch: self.legacy_refetch,
            chats,
            banned_channels,
            flood: FloodParams {
                window_ms: (self.flood_window * 1000.0).round() as i64,
                base_s: self.flood_base,
                flood_at_page: self.flood_at_page,
                send_rate: self.send_rate,
                send_window_ms: 60_000,
            },
            flood_sleep_threshold: self.flood_sleep_threshold,
            warmup_interval_s: positive(self.warmup_interval),
            pts_noise_interval_s: positive(self.pts_noise_interval),
            mini_refresh_cooldown_s: self.mini_refresh_cooldown,
            page_s: self.page_ms / 1000.0,
            client_delay_s: self.client_delay,
            faults: StartupFaults {
                crash_after_s: self.crash_after,
                exit_code: self.exit_code,
                crash_thread_after_s: self.crash_thread_after,
                refuse_start: self.refuse_start,
                ignore_sigterm: self.ignore_sigterm,
                spawn_grandchild: self.spawn_grandchild,
                grow_memory_mb_per_s: self.grow_memory_mb_per_s,
                grow_memory_max_mb: self.grow_memory_max_mb,
                flood_output: self.flood_output,
                health_delay_s: self.health_delay,
                health_hang: self.health_hang,
                force_flood_s: self.force_flood,
            },
            control: self.emu_control,
        })
    }
}

fn ids(option: &str, items: &[String], errors: &mut Vec<String>) -> HashSet<i64> {
    let mut out = HashSet::new();
    for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        match item.parse::<i64>() {
            Ok(id) => {
                out.insert(id);
            }
            Err(_) => errors.push(format!("--{option} {item:?}: expected a numeric chat id")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<SimConfig, String> {
        let mut all = vec!["tend-sim"];
        all.extend_from_slice(args);
        let cli = SimCli::try_parse_from(all).map_err(|e| e.to_string())?;
        cli.args.into_config().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = parse(&["--service", "send_media"]).unwrap();
        assert_eq!(c.port, 5023);
        assert_eq!(c.pages(), 40);
        assert_eq!(c.banned_channels, vec![3760957276]);
        assert_eq!(c.flood, FloodParams::default());
        assert_eq!(c.warmup_interval_s, Some(1800.0));
        assert_eq!(c.log_format, LogFormat::Basic);
    }

    #[test]
    fn chat_lists_take_negative_ids_and_usernames() {
        let c = parse(&[
            "--service",
            "send_text",
            "--missing-chats",
            "-1003519196381,@Gone",
            "--banned-chats",
            "-1001,-1002",
            "--banned-channels",
            "-1003760957276",
        ])
        .unwrap();
        assert!(c.chats.is_missing(-1003519196381));
        assert!(c.chats.is_missing_username("gone"));
        assert_eq!(c.chats.banned.len(), 2);
        assert_eq!(c.banned_channels, vec![3760957276]);
    }

    #[test]
    fn every_bad_option_is_reported_at_once() {
        let err = parse(&[
            "--service",
            "send_text",
            "--time-scale",
            "0",
            "--flood-window=-1",
            "--account",
            "../x",
            "--banned-chats",
            "abc",
        ])
        .unwrap_err();
        for needle in [
            "--time-scale",
            "--flood-window",
            "--account",
            "--banned-chats",
        ] {
            assert!(err.contains(needle), "{needle} missing in: {err}");
        }
    }
}
