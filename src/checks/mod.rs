//! Checks: what tend observes about a service, reported as values. Checks never act on what they find;
//! what to do about a result is decided in `core`.
//!
//! - [`probe`]: one measurement each (http, json, tcp, process, exec) and the alert webhook sender;
//! - the log analysis engine: [`records`] groups log lines into records, [`classify`] names them with the
//!   pattern set, [`stats`] counts them per error type, [`chat`] normalises chat ids;
//! - [`monitor`]: the runtime: a task per (check, service), a log analyzer per service, alerts to the
//!   webhook; [`history`]: every result of the last hours, persisted.

pub mod chat;
pub mod classify;
pub mod diagnose;
pub mod history;
pub mod monitor;
pub mod probe;
pub mod records;
pub mod spec;
pub mod stats;
