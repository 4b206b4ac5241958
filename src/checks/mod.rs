//! Checks: what tend observes about a service, reported as values; checks never act on what they find.
//!
//! The log analysis engine lives here: [`records`] groups log lines into records, [`classify`] names
//! them with the pattern set, [`stats`] counts them per error type, [`chat`] normalises chat ids.

pub mod chat;
pub mod classify;
pub mod records;
pub mod stats;
