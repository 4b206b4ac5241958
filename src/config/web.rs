//! Validation of `[web]` and its `[[web.users]]`: the listen address and the rule that keeps plain HTTP
//! on loopback, the TLS file pair, session length, redaction patterns, and users whose password hashes
//! must be argon2 PHC strings (a plain password in the file is refused, never silently accepted).
//!
//! Also the server's timeouts and cap, the login limiter's keys, the Host allow-list, the metrics
//! token's hash, and the cost bounds of a stored password hash (an absurd `m` would cost that much
//! memory on every login).
//!
//! Like the rest of `validate`, nothing here touches the file system: the TLS files are read when the
//! web server starts and again at every reload, so a certificate renewed in place is picked up by
//! `tend reload`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use super::raw::{index_path, Field, RawWeb, RawWebUser, Table, Value};
use super::reader::{SizeRule, Validator};
use super::{LoginLimits, TlsFiles, WebLimits, WebRole, WebSettings, WebUser};

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);
const DEFAULT_AUDIT_MAX_SIZE: u64 = 10 * 1024 * 1024;
const AUDIT_SIZE_RULE: SizeRule = SizeRule {
    min: 4 * 1024,
    min_text: "4KiB",
    why: "a smaller audit file would rotate away the entries it is kept for",
};
const HASH_HELP: &str =
    "run `tend hash-password`, type the password, and paste the line it prints \
                         (it starts with $argon2id$)";

impl Validator {
    pub(super) fn web(&mut self, field: Option<&Field>) -> Option<WebSettings> {
        let field = field?;
        let table = self.table(field, "a [web] header followed by its keys")?;
        let raw = RawWeb::read(table, "web", &mut self.report);
        let listen = raw.listen.as_ref().and_then(|f| self.listen(f));
        let listen = listen.unwrap_or_else(|| {
            DEFAULT_LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)))
        });
        let cert = self.path(raw.tls_cert.as_ref());
        let key = self.path(raw.tls_key.as_ref());
        let tls = match (cert, key, &raw.tls_cert, &raw.tls_key) {
            (Some(cert), Some(key), _, _) => Some(TlsFiles { cert, key }),
            (Some(_), None, Some(f), None) | (None, Some(_), None, Some(f)) => {
                let missing = if f.name == "tls_cert" {
                    "tls_key"
                } else {
                    "tls_cert"
                };
                self.value_error(
                    f,
                    format!("TLS needs both tls_cert and tls_key; `{missing}` is missing"),
                    Some(
                        "add the other one (PEM files: the certificate chain and its private \
                         key), or remove this one to serve plain HTTP on loopback"
                            .to_string(),
                    ),
                );
                None
            }
            _ => None,
        };
        let allow_plain_http = self.boolean(raw.allow_plain_http.as_ref()).unwrap_or(false);
        if tls.is_none() && !allow_plain_http && !listen.ip().is_loopback() {
            if let Some(f) = &raw.listen {
                self.value_error(
                    f,
                    "a non-loopback address needs TLS: passwords and session cookies would cross \
                     the network in clear text",
                    Some(
                        "set tls_cert and tls_key, or listen on 127.0.0.1 behind a TLS proxy, or \
                         (on a trusted network only) set allow_plain_http = true"
                            .to_string(),
                    ),
                );
            }
        }
        let session_ttl = self
            .positive_duration(
                raw.session_ttl.as_ref(),
                "session_ttl is how long a login lasts, e.g. session_ttl = \"12h\"",
            )
            .unwrap_or(DEFAULT_SESSION_TTL);
        let metrics_public = self.boolean(raw.metrics_public.as_ref()).unwrap_or(false);
        let redact = raw
            .redact
            .as_ref()
            .map(|f| self.redact(f))
            .unwrap_or_default();
        let users = raw
            .users
            .as_ref()
            .map(|f| self.web_users(f))
            .unwrap_or_default();
        let hosts = raw
            .hosts
            .as_ref()
            .map(|f| self.hosts(f))
            .unwrap_or_default();
        let metrics_token_hash = raw
            .metrics_token_hash
            .as_ref()
            .and_then(|f| self.token_hash(f));
        let defaults = WebLimits::default();
        let timeout = |v: &mut Validator, f: &Option<Field>, what: &str, default: Duration| {
            v.positive_duration(f.as_ref(), what).unwrap_or(default)
        };
        let limits = WebLimits {
            header_timeout: timeout(
                self,
                &raw.header_timeout,
                "header_timeout bounds the wait for a request's headers, e.g. \"10s\"",
                defaults.header_timeout,
            ),
            idle_timeout: timeout(
                self,
                &raw.idle_timeout,
                "idle_timeout closes a kept-alive connection with no request, e.g. \"60s\"",
                defaults.idle_timeout,
            ),
            body_timeout: timeout(
                self,
                &raw.body_timeout,
                "body_timeout bounds the wait for a request's body, e.g. \"30s\"",
                defaults.body_timeout,
            ),
            max_connections: self
                .integer(
                    raw.max_connections.as_ref(),
                    1..=100_000,
                    "max_connections is how many connections the page serves at once",
                )
                .map_or(defaults.max_connections, |n| n as usize),
        };
        let login_defaults = LoginLimits::default();
        let login = LoginLimits {
            max_failures: self
                .integer(
                    raw.login_max_failures.as_ref(),
                    1..=1_000_000,
                    "login_max_failures is how many failed logins from one address lock it out",
                )
                .map_or(login_defaults.max_failures, |n| n as u32),
            window: timeout(
                self,
                &raw.login_window,
                "login_window is how long a failed login counts, e.g. \"5m\"",
                login_defaults.window,
            ),
            lockout: timeout(
                self,
                &raw.login_lockout,
                "login_lockout is the first lockout, e.g. \"1m\"",
                login_defaults.lockout,
            ),
            lockout_max: timeout(
                self,
                &raw.login_lockout_max,
                "login_lockout_max caps the doubling lockouts, e.g. \"1h\"",
                login_defaults.lockout_max,
            ),
            checks: self
                .integer(
                    raw.login_checks.as_ref(),
                    1..=64,
                    "login_checks is how many password checks run at once (default: the cores)",
                )
                .map(|n| n as usize),
        };
        let audit_max_size = self
            .size(raw.audit_max_size.as_ref(), &AUDIT_SIZE_RULE)
            .unwrap_or(DEFAULT_AUDIT_MAX_SIZE);
        Some(WebSettings {
            listen,
            tls,
            allow_plain_http,
            session_ttl,
            metrics_public,
            redact,
            users,
            hosts,
            metrics_token_hash,
            limits,
            login,
            audit_max_size,
        })
    }

    fn hosts(&mut self, field: &Field) -> Vec<String> {
        const HELP: &str = "list the host names the page is reached by, e.g. hosts = \
                            [\"status.example.org\"] (IP addresses are always accepted)";
        let Value::Array(items) = &field.node.value else {
            self.type_error(field, "an array of strings", Some(HELP.to_string()));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let ok = match &item.value {
                Value::String(s) => {
                    let name = s.trim().trim_end_matches('.').to_ascii_lowercase();
                    let valid = !name.is_empty()
                        && name.len() <= 253
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
                    if valid {
                        out.push(name);
                    }
                    valid
                }
                _ => false,
            };
            if !ok {
                self.report.error(
                    item.span.clone(),
                    Some(&index_path(&field.path, index + 1)),
                    format!(
                        "`hosts` element {}: expected a host name (letters, digits, `-`, `.`; no \
                         port, no scheme)",
                        index + 1
                    ),
                    Some(HELP.to_string()),
                );
            }
        }
        out
    }

    fn token_hash(&mut self, field: &Field) -> Option<[u8; 32]> {
        const HELP: &str = "run `tend metrics-token` and paste the metrics_token_hash line it \
                            prints (the token itself goes to Prometheus, not here)";
        let text = self.string(field)?;
        let parsed = text
            .strip_prefix("sha256:")
            .filter(|hex| hex.len() == 64)
            .and_then(|hex| {
                let mut out = [0u8; 32];
                for (i, byte) in out.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
                }
                Some(out)
            });
        if parsed.is_none() {
            // Never echo the value: it may be the token itself pasted by mistake.
            self.report.error(
                field.node.span.clone(),
                Some(&field.path),
                "metrics_token_hash is not `sha256:` and 64 hex digits".to_string(),
                Some(HELP.to_string()),
            );
        }
        parsed
    }

    fn listen(&mut self, field: &Field) -> Option<SocketAddr> {
        let text = self.string(field)?;
        match text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.value_error(
                    field,
                    "not an IP address with a port",
                    Some(
                        "write ip:port, e.g. listen = \"127.0.0.1:8080\" (IPv6: \"[::1]:8080\"); \
                         host names are not resolved"
                            .to_string(),
                    ),
                );
                None
            }
        }
    }

    fn redact(&mut self, field: &Field) -> Vec<String> {
        const HELP: &str = "list env-name patterns, `*` matching anything, e.g. redact = \
                            [\"*API_ID*\", \"DB_URL\"]";
        let Value::Array(items) = &field.node.value else {
            self.type_error(field, "an array of strings", Some(HELP.to_string()));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (index, item) in items.iter().enumerate() {
            match &item.value {
                Value::String(s) if !s.trim().is_empty() => out.push(s.trim().to_string()),
                other => self.report.error(
                    item.span.clone(),
                    Some(&index_path(&field.path, index + 1)),
                    format!(
                        "`redact` element {}: expected a non-empty pattern, found {}",
                        index + 1,
                        if matches!(other, Value::String(_)) {
                            "an empty string"
                        } else {
                            other.kind()
                        }
                    ),
                    Some(HELP.to_string()),
                ),
            }
        }
        out
    }

    fn web_users(&mut self, field: &Field) -> Vec<WebUser> {
        let how = "write each user as a [[web.users]] block with name, password_hash and role";
        let mut users = Vec::new();
        let mut seen = BTreeSet::new();
        for (path, item, table) in self.array_of_tables(field, how) {
            if let Some(user) = self.web_user(&path, item.span.clone(), table) {
                if !seen.insert(user.name.clone()) {
                    self.report.error(
                        item.span.clone(),
                        Some(&path),
                        format!("user `{}` is defined twice", user.name),
                        Some("user names must be unique; remove or rename one".to_string()),
                    );
                    continue;
                }
                users.push(user);
            }
        }
        users
    }

    fn web_user(
        &mut self,
        path: &str,
        span: std::ops::Range<usize>,
        table: &Table,
    ) -> Option<WebUser> {
        let raw = RawWebUser::read(table, path, &mut self.report);
        let missing = |v: &mut Validator, key: &str, help: &str| {
            v.report.error(
                span.clone(),
                Some(path),
                format!("[[web.users]] needs `{key}`"),
                Some(help.to_string()),
            );
        };
        let name = match &raw.name {
            Some(f) => self.string(f).map(str::to_string).and_then(|name| {
                let ok = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.@".contains(c));
                if !ok {
                    self.value_error(
                        f,
                        "user names are 1 to 64 letters, digits, `_`, `-`, `.` or `@`",
                        Some("e.g. name = \"admin\"".to_string()),
                    );
                    return None;
                }
                Some(name)
            }),
            None => {
                missing(self, "name", "e.g. name = \"admin\"");
                None
            }
        };
        let password_hash = match &raw.password_hash {
            Some(f) => self.string(f).and_then(|hash| {
                match argon2::password_hash::PasswordHash::new(hash) {
                    Ok(parsed) if parsed.algorithm.as_str().starts_with("argon2") => {
                        match crate::web::password::check_hash_cost(hash) {
                            Ok(()) => Some(hash.to_string()),
                            Err(problem) => {
                                self.report.error(
                                    f.node.span.clone(),
                                    Some(&f.path),
                                    format!("password_hash: {problem}"),
                                    Some(HASH_HELP.to_string()),
                                );
                                None
                            }
                        }
                    }
                    Ok(parsed) => {
                        self.value_error(
                            f,
                            format!(
                                "`{}` hashes are not accepted, only argon2",
                                parsed.algorithm
                            ),
                            Some(HASH_HELP.to_string()),
                        );
                        None
                    }
                    Err(_) => {
                        // Never echo the value: it may be a password typed in by mistake.
                        self.report.error(
                            f.node.span.clone(),
                            Some(&f.path),
                            "password_hash is not an argon2 PHC string (a plain password is never \
                             accepted here)"
                                .to_string(),
                            Some(HASH_HELP.to_string()),
                        );
                        None
                    }
                }
            }),
            None => {
                missing(self, "password_hash", HASH_HELP);
                None
            }
        };
        let role = match &raw.role {
            Some(f) => self.choice(
                Some(f),
                &[("operator", WebRole::Operator), ("viewer", WebRole::Viewer)],
            ),
            None => Some(WebRole::Viewer),
        };
        Some(WebUser {
            name: name?,
            password_hash: password_hash?,
            role: role?,
        })
    }
}

#[cfg(test)]
mod tests {
    fn web(extra: &str, user: &str) -> Result<crate::config::Config, String> {
        let text = format!(
            "[services.a]\ncommand = \"sleep 1\"\n[web]\nlisten = \"127.0.0.1:8080\"\n{extra}\n{user}"
        );
        // A directory of its own: no shipped check files apply.
        let dir = tempfile::tempdir().unwrap();
        crate::config::parse(&dir.path().join("supervisor.toml"), &text).map_err(|e| e.to_string())
    }

    fn user(hash: &str) -> String {
        format!("[[web.users]]\nname = \"op\"\npassword_hash = \"{hash}\"\n")
    }

    #[test]
    fn absurd_argon2_costs_tokens_and_hosts_are_refused_with_a_clear_error() {
        let bomb = "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";
        let err = web("", &user(bomb)).unwrap_err();
        assert!(err.contains("m=4194304 KiB"), "{err}");
        assert!(err.contains("every login would take"), "{err}");
        let fine = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";
        let config = web(
            "hosts = [\"Status.Example.org.\"]\nheader_timeout = \"250ms\"\nlogin_checks = 3",
            &user(fine),
        )
        .unwrap();
        let settings = config.web.unwrap();
        assert_eq!(settings.hosts, vec!["status.example.org".to_string()]);
        assert_eq!(settings.limits.header_timeout.as_millis(), 250);
        assert_eq!(settings.login.checks, Some(3));

        let err = web("metrics_token_hash = \"hunter2\"", &user(fine)).unwrap_err();
        assert!(err.contains("sha256:"), "{err}");
        assert!(!err.contains("hunter2\n"), "the value is not echoed: {err}");
        let err = web("hosts = [\"https://x.example\"]", &user(fine)).unwrap_err();
        assert!(err.contains("no scheme"), "{err}");
    }
}
