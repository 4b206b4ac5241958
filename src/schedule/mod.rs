//! Schedules at run time: the runner (one timer per `[[schedule]]` entry, persisted last runs, the
//! schedule book the page and `tend schedules` show) and the actions it performs (restart, reload_cache
//! through the core's gate, diagnose, exec).
//!
//! The pure rules (run times, missed runs, stagger) are in [`crate::schedule_rules`], below `config`;
//! nothing here is imported by `config`.

mod actions;
mod exec;
pub mod runner;

pub use actions::Actions;
pub use runner::{RunStatus, ScheduleHandle, ScheduleRun, ScheduleView};
