//! Keeping secrets off the page: values of env vars whose names look secret (`*HASH*`, `*TOKEN*`,
//! `*SECRET*`, `*PASSWORD*`, `*SESSION*`, plus `[web] redact` patterns) are replaced wherever text leaves
//! tend through the web: log lines, downloads, diagnostics, status messages and the config view.
//!
//! The values are collected once, from the services' configured env (env files included) and tend's
//! own environment (which the services inherit). Pure string work; no I/O.

use std::borrow::Cow;

use crate::config::Config;

/// Always redacted, whatever the config says.
pub const DEFAULT_PATTERNS: &[&str] = &["*HASH*", "*TOKEN*", "*SECRET*", "*PASSWORD*", "*SESSION*"];
pub const MASK: &str = "[redacted]";
/// Shorter values are not searched for in text: "1" or "yes" would mangle every line.
const MIN_SECRET_LEN: usize = 4;

/// Name patterns and the secret values they matched.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    patterns: Vec<String>,
    /// Longest first, so a secret containing another is masked whole.
    secrets: Vec<String>,
}

/// `*` matches any run of characters; case-insensitive.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_uppercase().chars().collect();
    let n: Vec<char> = name.to_ascii_uppercase().chars().collect();
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl Redactor {
    pub fn new(extra: &[String], env: impl IntoIterator<Item = (String, String)>) -> Redactor {
        let mut patterns: Vec<String> = DEFAULT_PATTERNS.iter().map(|s| s.to_string()).collect();
        patterns.extend(extra.iter().cloned());
        let mut r = Redactor {
            patterns,
            secrets: Vec::new(),
        };
        for (name, value) in env {
            if r.is_secret_name(&name) && value.len() >= MIN_SECRET_LEN {
                r.secrets.push(value);
            }
        }
        r.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        r.secrets.dedup();
        r
    }

    /// From every service's env and tend's own environment.
    pub fn from_config(config: &Config, extra: &[String]) -> Redactor {
        let services = config
            .services
            .values()
            .flat_map(|s| s.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        Redactor::new(extra, services.chain(std::env::vars()))
    }

    pub fn is_secret_name(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| glob_match(p, name))
    }

    /// `text` with every known secret value masked.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            }
        }
        out
    }

    /// The value to show for env var `name`.
    pub fn env_value<'a>(&self, name: &str, value: &'a str) -> Cow<'a, str> {
        if self.is_secret_name(name) {
            Cow::Borrowed(MASK)
        } else {
            self.text(value)
        }
    }

    /// Masks secrets in every string of a JSON value (for diagnoses and other structured output).
    pub fn json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => {
                if let Cow::Owned(masked) = self.text(s) {
                    *s = masked;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.json(v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*HASH*", "TELEGRAM_API_HASH"));
        assert!(glob_match("*hash*", "api_hash_v2"));
        assert!(glob_match("*API_ID*", "API_ID"));
        assert!(glob_match("DB_*", "DB_URL"));
        assert!(!glob_match("DB_*", "MY_DB_URL"));
        assert!(!glob_match("*TOKEN*", "PYTHONUNBUFFERED"));
    }

    #[test]
    fn secrets_are_masked_in_text_json_and_env() {
        let r = Redactor::new(
            &["*API_ID*".to_string()],
            [
                ("API_HASH".to_string(), "0123456789abcdef".to_string()),
                ("API_ID".to_string(), "98765".to_string()),
                ("BOT_TOKEN".to_string(), "x".to_string()),
                ("PLAIN".to_string(), "visible".to_string()),
            ],
        );
        assert_eq!(
            r.text("hash=0123456789abcdef id=98765"),
            "hash=[redacted] id=[redacted]"
        );
        assert_eq!(
            r.env_value("BOT_TOKEN", "x"),
            MASK,
            "short values are masked by name"
        );
        assert_eq!(r.env_value("PLAIN", "visible"), "visible");
        let mut v = serde_json::json!({"a": ["id 98765"], "b": 1});
        r.json(&mut v);
        assert_eq!(v["a"][0], "id [redacted]");
    }
}
