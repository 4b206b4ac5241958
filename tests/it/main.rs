//! The one integration-test binary: real `tend` processes, real services, real sockets and files.

mod adopt;
mod checks;
mod config;
mod control;
mod core;
mod helper;
mod lifecycle;
mod recovery;
mod reload;
mod schedule;
mod web;
mod web_security;
