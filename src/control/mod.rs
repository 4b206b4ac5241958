//! The control socket: a Unix socket where `tend status`, `tend restart …` and scripts talk to the daemon.
//!
//! `protocol` holds the typed messages both sides share; `server` accepts connections and turns requests
//! into [`crate::core::CoreHandle`] calls; `client` is what the CLI uses. This module never touches service
//! state itself: every answer comes from the core.

pub mod client;
pub mod protocol;
pub mod server;

pub use client::{socket_path_from_config, Client, ClientError};
pub use server::{bind, ControlSocket, SocketError};
