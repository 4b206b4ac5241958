//! Raw serde mirror of supervisor.toml.
