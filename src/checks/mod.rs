//! Health checks of services: the probes that measure, and (built by the lead) the scheduler and history
//! on top of them.
//!
//! Checks report; they never act on a service. What to do about a result is decided in `core`.

pub mod probe;
