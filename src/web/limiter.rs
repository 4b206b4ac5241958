//! The failed-login limiter of the status page, as a pure state machine over explicit time.
//!
//! An attempt is counted *before* its password is checked: [`Limiter::reserve`] checks every key of
//! the attempt (the client's address and the user name) and reserves a slot on each in one step under
//! the caller's lock, so a burst of concurrent guesses cannot all pass the "blocked?" test while the
//! slow hash runs. [`Limiter::finish`] turns the reservation into a failure or releases it. A success
//! resets nothing: one user's good login must not clear the count of guesses made from its address
//! (or against its name) by anyone else. Reaching the limit locks the key out for
//! [`LimitSettings::lockout`], doubled at each further lockout up to [`LimitSettings::lockout_max`];
//! a key quiet for a whole `lockout_max` plus `window` is forgotten.
//!
//! Owns no lock, no clock and no I/O (the caller holds the mutex and passes `now`); must not know
//! about passwords or sessions.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// Keys kept at most; past it, expired ones are dropped, and a new key is refused while none is.
pub const MAX_RECORDS: usize = 50_000;

/// The limits, from `[web] login_*`.
pub use crate::config::LoginLimits as LimitSettings;

/// What an attempt is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// An IPv4 address, or the /64 of an IPv6 one (a single host usually holds a whole /64).
    Addr(IpAddr),
    User(String),
}

impl Key {
    pub fn addr(ip: IpAddr) -> Key {
        match ip {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                Key::Addr(IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0]))
            }
            IpAddr::V6(v6) => Key::Addr(IpAddr::V4(
                v6.to_ipv4_mapped()
                    .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
            )),
            v4 => Key::Addr(v4),
        }
    }

    /// A user name as typed, cut to what a configured name can be (64 characters).
    pub fn user(name: &str) -> Key {
        Key::User(name.chars().take(64).collect())
    }
}

#[derive(Debug, Default)]
struct Record {
    /// Failures within the window, oldest first.
    failures: VecDeque<Instant>,
    /// Attempts being checked now.
    pending: u32,
    locked_until: Option<Instant>,
    /// Lockouts so far: the next one lasts `lockout * 2^lockouts`.
    lockouts: u32,
    last: Option<Instant>,
}

/// Why an attempt is refused, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: Duration,
}

#[derive(Debug, Default)]
pub struct Limiter {
    settings: LimitSettings,
    records: HashMap<Key, Record>,
}

impl Limiter {
    pub fn new(settings: LimitSettings) -> Limiter {
        Limiter {
            settings,
            records: HashMap::new(),
        }
    }

    /// New limits (a reload); the counts so far stay.
    pub fn set_settings(&mut self, settings: LimitSettings) {
        self.settings = settings;
    }

    fn limit(&self, key: &Key) -> u32 {
        match key {
            Key::Addr(_) => self.settings.max_failures,
            Key::User(_) => self.settings.max_failures.saturating_mul(2),
        }
    }

    /// Checks every key and, when none is over its limit, reserves one attempt on each (to be ended
    /// by [`Limiter::finish`]). Nothing is reserved when one key refuses.
    pub fn reserve(&mut self, keys: &[Key], now: Instant) -> Result<(), Refused> {
        let mut wait = Duration::ZERO;
        let mut new_keys = 0;
        for key in keys {
            let limit = self.limit(key);
            let window = self.settings.window;
            let Some(record) = self.records.get_mut(key) else {
                new_keys += 1;
                continue;
            };
            expire(record, window, now);
            if let Some(until) = record.locked_until {
                wait = wait.max(until - now);
            } else if record.failures.len() as u32 + record.pending >= limit {
                // The slots are taken by checks still running: they end within a second or so.
                wait = wait.max(Duration::from_secs(1));
            }
        }
        if wait.is_zero() && new_keys > 0 && self.records.len() + new_keys > MAX_RECORDS {
            self.prune(now);
            if self.records.len() + new_keys > MAX_RECORDS {
                wait = Duration::from_secs(1);
            }
        }
        if !wait.is_zero() {
            return Err(Refused {
                retry_after: wait.max(Duration::from_secs(1)),
            });
        }
        for key in keys {
            let record = self.records.entry(key.clone()).or_default();
            record.pending += 1;
            record.last = Some(now);
        }
        Ok(())
    }

    /// Ends a reservation: a failure is counted (and may lock the key out), a success only frees it.
    pub fn finish(&mut self, keys: &[Key], failed: bool, now: Instant) {
        let settings = self.settings;
        for key in keys {
            let limit = self.limit(key);
            let Some(record) = self.records.get_mut(key) else {
                continue;
            };
            record.pending = record.pending.saturating_sub(1);
            record.last = Some(now);
            if !failed {
                continue;
            }
            expire(record, settings.window, now);
            record.failures.push_back(now);
            if record.failures.len() as u32 >= limit {
                record.failures.clear();
                let factor = 1u32.checked_shl(record.lockouts).unwrap_or(u32::MAX);
                let lockout = settings
                    .lockout
                    .saturating_mul(factor)
                    .min(settings.lockout_max.max(settings.lockout));
                record.locked_until = Some(now + lockout);
                record.lockouts = record.lockouts.saturating_add(1);
            }
        }
    }

    /// Drops the records with nothing left to remember.
    fn prune(&mut self, now: Instant) {
        let settings = self.settings;
        let forget = settings.window + settings.lockout_max.max(settings.lockout);
        self.records.retain(|_, record| {
            expire(record, settings.window, now);
            record.pending > 0
                || record.locked_until.is_some()
                || record.last.is_some_and(|last| now - last < forget)
        });
    }

    /// Keys remembered now (for tests and the bound on memory).
    pub fn keys(&self) -> usize {
        self.records.len()
    }

    #[cfg(test)]
    fn pending(&self, key: &Key) -> u32 {
        self.records.get(key).map_or(0, |r| r.pending)
    }
}

/// Drops failures older than `window` and a lockout that has ended.
fn expire(record: &mut Record, window: Duration, now: Instant) {
    while record
        .failures
        .front()
        .is_some_and(|t| now.duration_since(*t) >= window)
    {
        record.failures.pop_front();
    }
    if record.locked_until.is_some_and(|until| until <= now) {
        record.locked_until = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn limiter() -> Limiter {
        Limiter::new(LimitSettings {
            max_failures: 3,
            window: 60 * S,
            lockout: 10 * S,
            lockout_max: 35 * S,
            checks: None,
        })
    }

    fn keys(ip: [u8; 4], user: &str) -> Vec<Key> {
        vec![Key::addr(IpAddr::from(ip)), Key::user(user)]
    }

    #[test]
    fn a_concurrent_burst_reserves_only_up_to_the_limit() {
        let mut l = limiter();
        let t = Instant::now();
        let k = keys([10, 0, 0, 1], "op");
        // 100 attempts arrive before any check ends: only 3 get a slot.
        let granted = (0..100).filter(|_| l.reserve(&k, t).is_ok()).count();
        assert_eq!(granted, 3);
        assert_eq!(l.pending(&k[0]), 3);
        assert_eq!(l.reserve(&k, t), Err(Refused { retry_after: S }));
        for _ in 0..3 {
            l.finish(&k, true, t);
        }
        // The third failure locked the address out for the first lockout.
        assert_eq!(l.reserve(&k, t + S), Err(Refused { retry_after: 9 * S }));
    }

    #[test]
    fn a_success_resets_nothing_and_lockouts_grow_to_the_cap() {
        let mut l = limiter();
        let mut t = Instant::now();
        let attacker = keys([10, 0, 0, 1], "op");
        let viewer = keys([10, 0, 0, 1], "viewer");
        // Table: (what happens, expected lockout after the third failure).
        for expected in [10, 20, 35, 35] {
            for i in 0..3 {
                l.reserve(&attacker, t).unwrap();
                l.finish(&attacker, true, t);
                if i == 1 {
                    // The viewer's good login from the same address in between changes nothing.
                    l.reserve(&viewer, t).unwrap();
                    l.finish(&viewer, false, t);
                }
            }
            let refused = l.reserve(&attacker, t).unwrap_err();
            assert_eq!(refused.retry_after, expected * S, "lockout {expected}");
            t += expected * S;
        }
    }

    #[test]
    fn user_names_are_limited_across_addresses_at_twice_the_address_limit() {
        let mut l = limiter();
        let t = Instant::now();
        for i in 0..6u8 {
            let k = keys([10, 0, 1, i], "op");
            l.reserve(&k, t).unwrap();
            l.finish(&k, true, t);
        }
        assert!(l.reserve(&keys([10, 0, 2, 1], "op"), t).is_err());
        assert!(l.reserve(&keys([10, 0, 2, 1], "other"), t).is_ok());
    }

    #[test]
    fn failures_expire_with_the_window_and_quiet_keys_are_forgotten() {
        let mut l = limiter();
        let t = Instant::now();
        let k = keys([10, 0, 0, 1], "op");
        for _ in 0..2 {
            l.reserve(&k, t).unwrap();
            l.finish(&k, true, t);
        }
        // The third failure lands after the first two left the window: no lockout.
        l.reserve(&k, t + 61 * S).unwrap();
        l.finish(&k, true, t + 61 * S);
        assert!(l.reserve(&k, t + 61 * S).is_ok());
        l.finish(&k, false, t + 61 * S);
        l.prune(t + 61 * S + 96 * S);
        assert_eq!(l.keys(), 0);
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(Key::addr(a), Key::addr(b));
        assert_eq!(Key::addr(c), Key::addr(IpAddr::from([10, 0, 0, 1])));
    }
}
