//! One emulated service process: its dialog cache, `/stats` counters, the Telethon thread and the
//! coroutines that run on it (start-up sweep, periodic warm-up, update-loop noise, sends, reloads).
//!
//! Owns the process-local state ([`Sim`]); the account-wide state belongs to `account.rs`. The Telethon
//! thread is modelled by [`TelethonLoop`]: handlers submit coroutines and wait with a timeout, like
//! `run_coroutine_threadsafe(...).result(timeout)`. When the thread dies its coroutines stop and every
//! later call times out: the "zombie" (HTTP up, `/health` ok, cache empty). This module decides no HTTP
//! status (that is `http.rs`) and knows no flood rule (that is `flood.rs`).

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::account::{Account, Cause, Event, EventKind};
use super::args::{Service, SimConfig};
use super::client::Client;
use super::clock::{wall_secs, ModelClock};
use super::error::SimError;
use super::faults::Faults;
use super::log::Logger;
use super::rpc::{Method, RpcError};
use super::texts::{self, Frame};
use super::universe::{valid_peer_id, ChatType, Peer, Universe};

/// `/stats.last_errors` keeps this many entries.
const LAST_ERRORS: usize = 10;
/// Nominal seconds between "Connecting…" and "…complete!".
const CONNECT_S: f64 = 0.2;
/// Nominal seconds between two PersistentTimestampOutdated retries (Telethon sleeps 2 s).
const PTS_RETRY_S: f64 = 2.0;
/// The mini refresh fetches one page of this many dialogs.
const MINI_PAGE: usize = 100;

/// The `run_coro` timeouts of the scripts, nominal seconds.
pub const SEND_TEXT_TIMEOUT_S: f64 = 60.0;
pub const SEND_MEDIA_TIMEOUT_S: f64 = 120.0;
pub const RELOAD_TIMEOUT_S: f64 = 300.0;

/// The private asyncio loop in the `telethon-loop` thread.
#[derive(Debug, Default)]
pub struct TelethonLoop {
    tracker: TaskTracker,
    dead: CancellationToken,
}

/// `run_coro` gave up waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoroTimeout;

impl TelethonLoop {
    /// Schedules a coroutine on the loop; it is dropped if the loop is or becomes dead.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if self.dead.is_cancelled() {
            return;
        }
        let dead = self.dead.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = dead.cancelled() => {}
                _ = fut => {}
            }
        });
    }

    /// `asyncio.run_coroutine_threadsafe(fut, loop).result(timeout)`: a coroutine that outlives the
    /// timeout keeps running, and a dead loop means waiting out the whole timeout.
    pub async fn run_coro<T, F>(&self, fut: F, timeout: Duration) -> Result<T, CoroTimeout>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let deadline = Instant::now() + timeout;
        let (tx, rx) = oneshot::channel();
        self.spawn(async move {
            let _ = tx.send(fut.await);
        });
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_never_answered)) => {
                tokio::time::sleep_until(deadline).await;
                Err(CoroTimeout)
            }
            Err(_elapsed) => Err(CoroTimeout),
        }
    }

    /// The thread died: stop every coroutine, accept no new ones.
    pub fn die(&self) {
        self.dead.cancel();
    }

    pub fn is_dead(&self) -> bool {
        self.dead.is_cancelled()
    }
}

/// Process-local mutable state.
#[derive(Debug)]
struct Inner {
    /// `_client` is assigned (after `--client-delay`).
    client_ready: bool,
    /// Entries in the dialog cache.
    cache_size: usize,
    /// A full sweep has filled the cache.
    warm: bool,
    /// Run-time joined chats this process's cache has fetched.
    joined_in_cache: HashSet<i64>,
    /// Model ms of the last mini refresh (its cooldown).
    last_mini_refresh_ms: Option<i64>,
    error_count: u64,
    /// (epoch seconds, text), newest last.
    last_errors: VecDeque<(f64, String)>,
    next_message_id: i64,
    rng: StdRng,
}

/// A validated `/send_text` request.
#[derive(Debug, Clone)]
pub struct SendTextRequest {
    pub chat: Peer,
    pub text: String,
    /// `client_tagged_id` / `client_tagged_name` to echo (null unless `tag_client`).
    pub tagged_id: Value,
    pub tagged_name: Value,
}

#[derive(Debug, Clone)]
pub struct SendTextOk {
    pub chat_id: i64,
    pub message_id: i64,
    pub chat_type: ChatType,
    pub tagged_id: Value,
    pub tagged_name: Value,
}

/// A validated `/send_media` request.
#[derive(Debug, Clone)]
pub struct SendMediaRequest {
    pub recipient: Peer,
    /// The file references (URL, t.me link or path), at least one.
    pub files: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct SendMediaOk {
    pub message_ids: Vec<i64>,
}

/// One emulated service process.
#[derive(Debug)]
pub struct Sim {
    pub cfg: SimConfig,
    pub clock: ModelClock,
    pub log: Logger,
    pub account: Arc<Account>,
    pub client: Client,
    pub universe: Universe,
    pub telethon: TelethonLoop,
    pub faults: Faults,
    /// Cancelled to stop serving (SIGTERM, SIGINT).
    pub shutdown: CancellationToken,
    /// The bound HTTP port.
    pub port: u16,
    pub pid: u32,
    started: Instant,
    inner: Mutex<Inner>,
}

impl Sim {
    /// Opens the account and builds the process; nothing runs until [`Sim::boot`].
    pub fn new(cfg: SimConfig, port: u16) -> Result<Arc<Self>, SimError> {
        let clock = ModelClock::new(cfg.time_scale);
        let log = Logger::new(cfg.log_format);
        let account = Arc::new(Account::open(
            &cfg.state_dir,
            &cfg.account,
            cfg.service.name(),
            clock,
            cfg.flood,
        )?);
        let client = Client::new(
            account.clone(),
            clock,
            log.clone(),
            cfg.flood_sleep_threshold,
            cfg.page_s,
            super::clock::birth_wall_ms()
                .map(|born| born + clock.real(CONNECT_S).as_millis() as i64),
        );
        let universe = Universe::generate(cfg.seed, &cfg.account, cfg.dialogs);
        let service_salt = match cfg.service {
            Service::SendText => 1,
            Service::SendMedia => 2,
        };
        let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_mul(31).wrapping_add(service_salt));
        let next_message_id = rng.gen_range(1_000..100_000);
        let faults = Faults::new(&cfg.faults);
        Ok(Arc::new(Sim {
            clock,
            log,
            account,
            client,
            universe,
            telethon: TelethonLoop::default(),
            faults,
            shutdown: CancellationToken::new(),
            port,
            pid: std::process::id(),
            started: Instant::now(),
            inner: Mutex::new(Inner {
                client_ready: false,
                cache_size: 0,
                warm: false,
                joined_in_cache: HashSet::new(),
                last_mini_refresh_ms: None,
                error_count: 0,
                last_errors: VecDeque::new(),
                next_message_id,
                rng,
            }),
            cfg,
        }))
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain counters behind; keep serving them.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the process's life: the client appears after `--client-delay`, then the Telethon thread
    /// runs the start-up sequence.
    pub fn boot(self: &Arc<Self>) {
        let sim = self.clone();
        tokio::spawn(async move {
            sim.clock.sleep(sim.cfg.client_delay_s).await;
            sim.inner().client_ready = true;
            let startup = sim.clone().startup();
            sim.telethon.spawn(startup);
        });
    }

    /// Connect, banned-channel lines, the start-up sweep; then the periodic tasks. A raising sweep kills
    /// the thread.
    async fn startup(self: Arc<Self>) {
        self.log.info(texts::LOGGER_SENDER, &texts::connecting());
        self.clock.sleep(CONNECT_S).await;
        self.log.info(texts::LOGGER_SENDER, &texts::connected());
        for &channel in &self.cfg.banned_channels {
            self.log
                .info(texts::LOGGER_UPDATES, &texts::banned_in(channel));
        }
        if let Some(mean) = self.cfg.pts_noise_interval_s {
            let noise = self.clone().pts_noise_loop(mean);
            self.telethon.spawn(noise);
        }
        if let Some(seconds) = self.cfg.faults.force_flood_s {
            if let Err(err) = self.client.force_flood(Method::GetDialogs, seconds) {
                self.thread_crash(&err, texts::FRAMES_THREAD_SWEEP);
                return;
            }
        }
        match self.full_sweep(Cause::Startup).await {
            Ok(_) => {
                self.log
                    .info(self.cfg.service.logger(), texts::CLIENT_STARTED);
                if let Some(every) = self.cfg.warmup_interval_s {
                    let warmups = self.clone().periodic_warmup(every);
                    self.telethon.spawn(warmups);
                }
            }
            Err(err) => self.thread_crash(&err, texts::FRAMES_THREAD_SWEEP),
        }
    }

    /// A full `iter_dialogs()`; on success the cache holds every dialog. Returns the cache size.
    pub async fn full_sweep(&self, cause: Cause) -> Result<usize, RpcError> {
        let joined = self.client.sweep(cause, self.cfg.pages()).await?;
        let mut inner = self.inner();
        inner.joined_in_cache = joined.into_iter().collect();
        inner.cache_size = self.universe.len() + inner.joined_in_cache.len();
        inner.warm = true;
        Ok(inner.cache_size)
    }

    async fn periodic_warmup(self: Arc<Self>, every: f64) {
        let logger = self.cfg.service.logger();
        loop {
            self.clock.sleep(every).await;
            self.log.info(logger, texts::WARMUP_STARTED);
            match self.full_sweep(Cause::Periodic).await {
                Ok(n) => self.log.info(logger, &texts::warmup_done(n)),
                Err(err) => {
                    let text = err.to_string();
                    self.log.error(logger, &texts::warmup_failed(&text));
                    self.record_error(format!("periodic_warmup: {text}"));
                }
            }
        }
    }

    async fn pts_noise_loop(self: Arc<Self>, mean: f64) {
        loop {
            let jitter = self.inner().rng.gen_range(0.8..=1.2);
            self.clock.sleep(mean * jitter).await;
            self.pts_burst().await;
        }
    }

    /// Five PersistentTimestampOutdated warnings 2 s apart, then the update loop gives up on a channel.
    pub async fn pts_burst(&self) {
        for _ in 0..texts::REQUEST_RETRIES {
            self.log
                .warning(texts::LOGGER_USERS, &texts::internal_issues());
            self.clock.sleep(PTS_RETRY_S).await;
        }
        let channel = {
            let mut inner = self.inner();
            self.universe.pick_channel(&mut inner.rng)
        };
        self.log
            .warning(texts::LOGGER_UPDATES, &texts::difference_ended(channel));
        let _ = self.account.record(vec![
            Event::new(EventKind::PtsNoise).detail(channel.to_string())
        ]);
    }

    /// The Telethon thread dies with `err`: Python's `Exception in thread …` report, then the zombie.
    pub fn thread_crash(&self, err: &RpcError, frames: &[Frame]) {
        let report = format!(
            "{}\n{}",
            texts::THREAD_EXCEPTION,
            texts::traceback(frames, &err.exception_line())
        );
        self.log.raw_stderr(&report);
        let _ = self.account.record(vec![
            Event::new(EventKind::ThreadDied).detail(err.exception_line())
        ]);
        self.telethon.die();
    }

    /// Fault `crash_thread`: the connection is lost for good.
    pub fn crash_thread(&self) -> Result<(), String> {
        if self.telethon.is_dead() {
            return Err("the Telethon thread is already dead".into());
        }
        self.thread_crash(&RpcError::Connection(5), texts::FRAMES_THREAD_CONNECTION);
        Ok(())
    }

    /// Does the cache know this chat?
    fn lookup(&self, id: i64) -> bool {
        let inner = self.inner();
        inner.joined_in_cache.contains(&id) || (inner.warm && !self.cfg.chats.is_missing(id))
    }

    /// Resolves a chat id through the cache, refreshing once on a miss; logs the script's WARNING and
    /// returns its ValueError when the chat stays unknown.
    async fn resolve_id(&self, id: i64) -> Result<(), RpcError> {
        if self.lookup(id) {
            return Ok(());
        }
        self.refresh_on_miss().await?;
        if self.lookup(id) {
            return Ok(());
        }
        let entries = self.inner().cache_size;
        let logger = self.cfg.service.logger();
        match self.cfg.service {
            Service::SendText => {
                self.log
                    .warning(logger, &texts::cannot_find_chat(id, entries));
                Err(RpcError::Value(texts::chat_not_found(id)))
            }
            Service::SendMedia => {
                self.log
                    .warning(logger, &texts::cannot_resolve_entity(id, entries));
                Err(RpcError::Value(texts::entity_not_resolved(id)))
            }
        }
    }

    /// The fixed scripts: one mini refresh per cooldown, failures only logged. Legacy: a full sweep on
    /// every miss, failures raised.
    async fn refresh_on_miss(&self) -> Result<(), RpcError> {
        if self.cfg.legacy_refetch {
            self.full_sweep(Cause::Miss).await?;
            return Ok(());
        }
        let now = self.clock.now_ms();
        let cooldown_ms = (self.cfg.mini_refresh_cooldown_s * 1000.0) as i64;
        {
            let mut inner = self.inner();
            if let Some(last) = inner.last_mini_refresh_ms {
                if now - last < cooldown_ms {
                    return Ok(());
                }
            }
            inner.last_mini_refresh_ms = Some(now);
        }
        let logger = self.cfg.service.logger();
        match self.client.mini_refresh(Cause::Miss).await {
            Ok(joined) => {
                let (added, total) = {
                    let mut inner = self.inner();
                    inner.joined_in_cache.extend(joined);
                    let page = MINI_PAGE.min(self.universe.len() + inner.joined_in_cache.len());
                    inner.cache_size = if inner.warm {
                        self.universe.len() + inner.joined_in_cache.len()
                    } else {
                        inner.cache_size.max(page)
                    };
                    (page, inner.cache_size)
                };
                self.log
                    .info(logger, &texts::mini_refresh_done(added, total));
            }
            Err(err) => self
                .log
                .warning(logger, &texts::mini_refresh_failed(&err.to_string())),
        }
        Ok(())
    }

    /// A random 5–15 s wait for the send bucket.
    fn send_wait(&self) -> u64 {
        self.inner().rng.gen_range(5..=15)
    }

    /// The `/send_text` coroutine.
    pub async fn send_text(self: Arc<Self>, req: SendTextRequest) -> Result<SendTextOk, RpcError> {
        let request = Method::SendMessage.request();
        let (chat_id, chat_type) = match &req.chat {
            Peer::Username(name) => {
                if self.cfg.chats.is_missing_username(name) {
                    return Err(RpcError::EntityNotFound(name.clone()));
                }
                (Universe::username_id(name), ChatType::User)
            }
            Peer::Id(id) => {
                if !valid_peer_id(*id) {
                    return Err(RpcError::PeerIdInvalid { request });
                }
                self.resolve_id(*id).await?;
                (*id, self.universe.chat_type(*id))
            }
        };
        let wait = self.send_wait();
        self.client.send(Method::SendMessage, wait).await?;
        self.check_writable(chat_id, request)?;
        if req.text.trim().is_empty() {
            return Err(RpcError::MessageEmpty { request });
        }
        let message_id = self.next_message_ids(1)[0];
        Ok(SendTextOk {
            chat_id,
            message_id,
            chat_type,
            tagged_id: req.tagged_id,
            tagged_name: req.tagged_name,
        })
    }

    /// The `/send_media` coroutine.
    pub async fn send_media(
        self: Arc<Self>,
        req: SendMediaRequest,
    ) -> Result<SendMediaOk, RpcError> {
        let request = Method::SendMedia.request();
        let chat_id = match &req.recipient {
            Peer::Username(name) => {
                if self.cfg.chats.is_missing_username(name) {
                    return Err(RpcError::EntityNotFound(name.clone()));
                }
                Universe::username_id(name)
            }
            Peer::Id(id) => {
                if !valid_peer_id(*id) {
                    return Err(RpcError::PeerIdInvalid { request });
                }
                self.resolve_id(*id).await?;
                *id
            }
        };
        let wait = self.send_wait();
        self.client.send(Method::SendMedia, wait).await?;
        self.check_writable(chat_id, request)?;
        if req.files.iter().any(|f| f.contains("expired")) {
            return Err(RpcError::FileReferenceExpired { request });
        }
        Ok(SendMediaOk {
            message_ids: self.next_message_ids(req.files.len()),
        })
    }

    fn check_writable(&self, chat_id: i64, request: &'static str) -> Result<(), RpcError> {
        if self.cfg.chats.banned.contains(&chat_id) {
            return Err(RpcError::UserBannedInChannel { request });
        }
        if self.cfg.chats.readonly.contains(&chat_id) {
            return Err(RpcError::ChatWriteForbidden { request });
        }
        Ok(())
    }

    fn next_message_ids(&self, n: usize) -> Vec<i64> {
        let mut inner = self.inner();
        (0..n)
            .map(|_| {
                inner.next_message_id += 1;
                inner.next_message_id
            })
            .collect()
    }

    /// Counts an error for `/stats` (`error_count`, `last_errors`).
    pub fn record_error(&self, text: String) {
        let mut inner = self.inner();
        inner.error_count += 1;
        inner.last_errors.push_back((wall_secs(), text));
        while inner.last_errors.len() > LAST_ERRORS {
            inner.last_errors.pop_front();
        }
    }

    pub fn client_ready(&self) -> bool {
        self.inner().client_ready
    }

    /// `GET /stats`.
    pub fn stats_json(&self) -> Value {
        let inner = self.inner();
        let uptime = (self.clock.nominal_since(self.started) * 10.0).round() / 10.0;
        let last: Vec<Value> = inner
            .last_errors
            .iter()
            .map(|(ts, e)| json!({"ts": (ts * 100.0).round() / 100.0, "error": e}))
            .collect();
        json!({
            "cache_size": inner.cache_size,
            "uptime_seconds": uptime,
            "error_count": inner.error_count,
            "last_errors": last,
        })
    }

    /// `GET /__emu/state` (without the events, which `http.rs` adds).
    pub fn state_json(&self) -> Result<Value, SimError> {
        let (account, now) = self.account.snapshot()?;
        let inner = self.inner();
        let paths = self.account.paths();
        Ok(json!({
            "account": self.account.name(),
            "service": self.cfg.service.name(),
            "pid": self.pid,
            "port": self.port,
            "time_scale": self.cfg.time_scale,
            "model_now_ms": now,
            "flood_until": account.flood_until,
            "strikes": account.strikes,
            "sweep_count": account.sweep_count,
            "requests": account.requests,
            "joined": account.joined,
            "cache_size": inner.cache_size,
            "warm": inner.warm,
            "zombie": self.telethon.is_dead(),
            "client_ready": inner.client_ready,
            "error_count": inner.error_count,
            "legacy_refetch": self.cfg.legacy_refetch,
            "faults": self.faults.to_json(),
            "files": {
                "state": paths.state,
                "events": paths.events,
            },
        }))
    }

    /// Exits the process at once (a crash, not a shutdown), recording why.
    pub fn exit_now(&self, code: u8, reason: &str) -> ! {
        let _ = self.account.record(vec![
            Event::new(EventKind::Exit).detail(format!("{reason}: exit code {code}"))
        ]);
        super::log::write_stdout("");
        super::log::write_stderr("");
        std::process::exit(i32::from(code))
    }
}
