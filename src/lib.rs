//! tend: a process supervisor for long-lived services that share one rate-limited account.
//!
//! Module map (see docs/ARCHITECTURE.md for the data flow):
//! - [`config`]: `supervisor.toml` -> validated [`config::Config`].
//! - [`logs`]: capture of service output into rotating files, a ring buffer and a broadcast.
//! - [`sim`]: `tend-sim`, the emulator of the Telethon webhook services.

pub mod config;
pub mod logs;
pub mod sim;
