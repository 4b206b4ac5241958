//! tend's integration-test binary (the emulator's are in crates/tend-sim/tests): real `tend` processes, real services, real sockets and files.

mod adopt;
mod checks;
mod config;
mod config_builder;
mod control;
mod core;
mod helper;
mod lifecycle;
mod queue;
mod recovery;
mod reload;
mod schedule;
mod web;
mod web_security;
