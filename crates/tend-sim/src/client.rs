//! The emulated Telethon client of one process: how it sends requests and reacts to FLOOD_WAIT.
//!
//! Mirrors `client/users.py` `_call`: a per-process memory of flood-waited requests (`Sleeping early` or
//! an immediate FloodWaitError without sending), up to 5 attempts, waits up to `flood_sleep_threshold`
//! slept through with the `Sleeping for …` line, longer ones raised. Every request goes through the
//! shared account (`account.rs`), whose rules are in `flood.rs`. This module knows nothing about the
//! dialog cache or HTTP.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::account::{Account, Cause, Event, EventKind};
use super::clock::{wall_ms, ModelClock, Pacer};
use super::flood::{AccountState, Reply, SweepKind};
use super::log::Logger;
use super::rpc::{Method, RpcError};
use super::texts;

/// One process's Telethon client.
#[derive(Debug)]
pub struct Client {
    account: Arc<Account>,
    clock: ModelClock,
    log: Logger,
    /// Telethon's `flood_sleep_threshold`.
    threshold: u64,
    /// Nominal seconds per GetDialogs page.
    page_s: f64,
    /// Telethon's `_flood_waited_requests`: method → model ms the known flood ends.
    flood_waited: Mutex<HashMap<Method, i64>>,
    /// Wall-clock ms the start-up sweep is dated at: the process's birth plus the nominal connect time
    /// (see [`super::clock::birth_wall_ms`] for why); `None` dates it when it runs.
    startup_at_wall_ms: Option<i64>,
}

impl Client {
    pub fn new(
        account: Arc<Account>,
        clock: ModelClock,
        log: Logger,
        threshold: u64,
        page_s: f64,
        startup_at_wall_ms: Option<i64>,
    ) -> Self {
        Client {
            account,
            clock,
            log,
            threshold,
            page_s,
            flood_waited: Mutex::new(HashMap::new()),
            startup_at_wall_ms,
        }
    }

    /// `iter_dialogs()` over the whole account. Returns the chats joined at run time, which the fetched
    /// dialogs now include.
    pub async fn sweep(&self, cause: Cause, pages: u32) -> Result<Vec<i64>, RpcError> {
        let params = *self.account.params();
        // Never later than now: a birth read a tick late must not date the sweep in the future.
        let dated = match cause {
            Cause::Startup => self.startup_at_wall_ms.map(|at| at.min(wall_ms())),
            _ => None,
        };
        let plan = self
            .account
            .transact_dated(dated, |t| {
                let plan = t
                    .state
                    .begin_sweep(t.now, &params, SweepKind::Full { pages });
                t.push(
                    Event::new(EventKind::SweepStart)
                        .cause(cause)
                        .pages(pages)
                        .page(plan.flood_at_page),
                );
                plan
            })
            .map_err(emulator)?;
        let mut pacer = Pacer::new(self.clock.real(self.page_s));
        for page in 1..=pages {
            pacer.tick().await;
            let mut strike = plan.flood_at_page == Some(page);
            let result = self
                .invoke(Method::GetDialogs, cause, Some(page), |st, now| {
                    st.dialogs_page(now, &params, &mut strike)
                })
                .await;
            if let Err(err) = result {
                let seconds = match err {
                    RpcError::FloodWait { seconds, .. } => Some(seconds),
                    _ => None,
                };
                let mut ev = Event::new(EventKind::SweepFailed)
                    .cause(cause)
                    .pages(page - 1)
                    .detail(err.to_string());
                ev.seconds = seconds;
                self.account.record(vec![ev]).map_err(emulator)?;
                return Err(err);
            }
        }
        self.account
            .transact(|t| {
                t.push(Event::new(EventKind::SweepDone).cause(cause).pages(pages));
                t.state.joined.clone()
            })
            .map_err(emulator)
    }

    /// The one-page mini refresh (`get_dialogs(limit=100)`). Returns the chats joined at run time.
    pub async fn mini_refresh(&self, cause: Cause) -> Result<Vec<i64>, RpcError> {
        let params = *self.account.params();
        self.account
            .transact(|t| {
                t.state.begin_sweep(t.now, &params, SweepKind::Mini);
                t.push(Event::new(EventKind::MiniRefresh).cause(cause).pages(1));
            })
            .map_err(emulator)?;
        self.clock.sleep(self.page_s).await;
        let mut no_strike = false;
        self.invoke(Method::GetDialogs, cause, Some(1), |st, now| {
            st.dialogs_page(now, &params, &mut no_strike)
        })
        .await?;
        self.account
            .transact(|t| t.state.joined.clone())
            .map_err(emulator)
    }

    /// One SendMessage/SendMedia request; `wait_s` is the flood Telegram imposes if the bucket is full.
    pub async fn send(&self, method: Method, wait_s: u64) -> Result<(), RpcError> {
        let params = *self.account.params();
        self.invoke(method, Cause::Send, None, |st, now| {
            st.send(method.key(), now, &params, wait_s)
        })
        .await
    }

    /// Puts the account in a flood from outside the model (fault `flood`, `--force-flood`).
    pub fn force_flood(&self, method: Method, seconds: u64) -> Result<(), RpcError> {
        self.account
            .transact(|t| {
                t.state.force_flood(method.key(), t.now, seconds);
                t.push(
                    Event::new(EventKind::FloodWait)
                        .method(method)
                        .seconds(seconds)
                        .cause(Cause::Forced)
                        .fresh(true),
                );
            })
            .map_err(emulator)
    }

    /// `_call`: the local flood memory, then up to 5 attempts against the shared account.
    async fn invoke(
        &self,
        method: Method,
        cause: Cause,
        page: Option<u32>,
        mut server: impl FnMut(&mut AccountState, i64) -> Reply + Send,
    ) -> Result<(), RpcError> {
        self.check_flood_waited(method, cause, page).await?;
        for _attempt in 0..texts::REQUEST_RETRIES {
            let (reply, now) = self
                .account
                .transact(|t| {
                    let reply = server(t.state, t.now);
                    if let Reply::FloodWait { seconds, fresh } = reply {
                        t.push(
                            Event::new(EventKind::FloodWait)
                                .method(method)
                                .seconds(seconds)
                                .cause(cause)
                                .fresh(fresh)
                                .page(page),
                        );
                    }
                    (reply, t.now)
                })
                .map_err(emulator)?;
            let seconds = match reply {
                Reply::Ok => return Ok(()),
                Reply::FloodWait { seconds, .. } => seconds.max(1),
            };
            self.remember(method, now + seconds as i64 * 1000);
            if seconds > self.threshold {
                return Err(RpcError::FloodWait {
                    seconds,
                    request: method.request(),
                });
            }
            self.sleep_through(method, cause, seconds, false).await?;
        }
        Err(RpcError::Value(texts::unsuccessful(texts::REQUEST_RETRIES)))
    }

    /// Telethon refuses to send a request it knows is flood-waited: waits ≤ 3 s are forgotten, waits up
    /// to the threshold slept early, longer ones raised without a request.
    async fn check_flood_waited(
        &self,
        method: Method,
        cause: Cause,
        page: Option<u32>,
    ) -> Result<(), RpcError> {
        let due = self.known_flood(method);
        let Some(due) = due else { return Ok(()) };
        let diff = ((due - self.clock.now_ms()) as f64 / 1000.0).round() as i64;
        if diff <= 3 {
            self.forget(method);
            return Ok(());
        }
        let diff = diff as u64;
        if diff <= self.threshold {
            self.sleep_through(method, cause, diff, true).await?;
            self.forget(method);
            return Ok(());
        }
        self.account
            .record(vec![Event::new(EventKind::FloodWait)
                .method(method)
                .seconds(diff)
                .cause(cause)
                .fresh(false)
                .page(page)
                .detail("local")])
            .map_err(emulator)?;
        Err(RpcError::FloodWait {
            seconds: diff,
            request: method.request(),
        })
    }

    async fn sleep_through(
        &self,
        method: Method,
        cause: Cause,
        seconds: u64,
        early: bool,
    ) -> Result<(), RpcError> {
        self.log.info(
            texts::LOGGER_USERS,
            &texts::sleeping(seconds, method.request(), early),
        );
        let mut ev = Event::new(EventKind::Sleep)
            .method(method)
            .seconds(seconds)
            .cause(cause);
        if early {
            ev = ev.detail("early");
        }
        self.account.record(vec![ev]).map_err(emulator)?;
        self.clock.sleep(seconds as f64).await;
        Ok(())
    }

    fn known_flood(&self, method: Method) -> Option<i64> {
        self.flood_waited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&method)
            .copied()
    }

    fn remember(&self, method: Method, due: i64) {
        self.flood_waited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(method, due);
    }

    fn forget(&self, method: Method) {
        self.flood_waited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&method);
    }
}

fn emulator(err: super::error::SimError) -> RpcError {
    RpcError::Emulator(err.to_string())
}
