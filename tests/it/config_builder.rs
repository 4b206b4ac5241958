//! A supervisor.toml built from parts, so a test states what it is about (a check's kind, its timing,
//! its action) instead of repeating TOML tables.
//!
//! [`Cfg`] collects service tables (from `helper::sim_service` and friends), [`Check`]s and raw TOML
//! for anything else, and renders them in order. Values go through `toml::Value`, so quoting is always
//! right. This file only writes text: it never starts anything or touches the test's directory.

use std::fmt::Write;

/// One `[checks.NAME]` table.
#[derive(Debug, Clone)]
pub struct Check {
    name: String,
    /// `key = value` lines, the value already rendered as TOML.
    keys: Vec<(String, String)>,
}

impl Check {
    /// A check of `kind` with no other key.
    pub fn new(name: &str, kind: &str) -> Check {
        Check {
            name: name.to_string(),
            keys: Vec::new(),
        }
        .key("kind", kind)
    }

    /// An `http` check of `path` on the service's own host and port.
    pub fn http(name: &str, path: &str) -> Check {
        Check::new(name, "http").key("url", format!("http://{{host}}:{{port}}{path}"))
    }

    /// A `json` check reading `pointer` from `path` on the service's own host and port.
    pub fn json(name: &str, path: &str, pointer: &str) -> Check {
        Check::new(name, "json")
            .key("url", format!("http://{{host}}:{{port}}{path}"))
            .key("pointer", pointer)
    }

    /// An `exec` check running `command` (a plugin).
    pub fn exec(name: &str, command: &str) -> Check {
        Check::new(name, "exec").key("command", command)
    }

    /// Any key; the value is rendered as TOML (strings quoted, arrays as arrays).
    pub fn key(mut self, key: &str, value: impl Into<toml::Value>) -> Check {
        self.keys.push((key.to_string(), value.into().to_string()));
        self
    }

    /// `interval` and `timeout`, the two keys every test sets.
    pub fn every(self, interval: &str, timeout: &str) -> Check {
        self.key("interval", interval).key("timeout", timeout)
    }

    pub fn grace(self, grace: &str) -> Check {
        self.key("grace", grace)
    }

    /// The check runs only on these services.
    pub fn services(self, services: &[&str]) -> Check {
        self.key("services", services.to_vec())
    }

    /// `on_fail = { after = N, action = "..." }`.
    pub fn on_fail(mut self, after: u32, action: &str) -> Check {
        let action = toml::Value::from(action);
        self.keys.push((
            "on_fail".into(),
            format!("{{ after = {after}, action = {action} }}"),
        ));
        self
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "\n[checks.{}]", self.name);
        for (key, value) in &self.keys {
            let _ = writeln!(out, "{key} = {value}");
        }
    }
}

/// A whole configuration body (what `World::new` and `World::write_config` take).
#[derive(Debug, Clone, Default)]
pub struct Cfg {
    out: String,
}

impl Cfg {
    pub fn new() -> Cfg {
        Cfg::default()
    }

    /// A service table as `helper::sim_service` (or a test's own helper) renders it.
    pub fn service(mut self, table: impl AsRef<str>) -> Cfg {
        self.out.push_str(table.as_ref());
        self
    }

    pub fn check(mut self, check: Check) -> Cfg {
        check.render(&mut self.out);
        self
    }

    /// Anything the builder has no words for (`[groups.…]`, `[alerts]`), as written.
    pub fn raw(mut self, toml: &str) -> Cfg {
        self.out.push('\n');
        self.out.push_str(toml);
        self
    }

    pub fn build(&self) -> String {
        self.out.clone()
    }
}

#[test]
fn a_built_config_renders_and_quotes_every_value() {
    let body = Cfg::new()
        .raw("[groups.acct]")
        .check(
            Check::http("health", "/health")
                .key("expect_status", vec![204])
                .every("100ms", "80ms")
                .services(&["a \"b\""])
                .on_fail(3, "none"),
        )
        .build();
    assert_eq!(
        body,
        "\n[groups.acct]\n[checks.health]\nkind = \"http\"\nurl = \"http://{host}:{port}/health\"\n\
         expect_status = [204]\ninterval = \"100ms\"\ntimeout = \"80ms\"\nservices = ['a \"b\"']\n\
         on_fail = { after = 3, action = \"none\" }\n"
    );
    let parsed: toml::Table = body.parse().unwrap();
    assert_eq!(
        parsed["checks"]["health"]["on_fail"]["after"].as_integer(),
        Some(3)
    );
}
