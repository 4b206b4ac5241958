//! `tend check`'s warnings: what a valid configuration may still trip over on this machine (a command
//! that does not exist or is not in PATH, a `socket_group` this machine lacks), and the hints for a
//! configuration path that cannot be read as text (a directory, UTF-16, a byte-order mark).
//!
//! Warnings, not errors: PATH, the installed programs and the groups may differ where and when tend
//! runs, and one missing program must not keep the other services from starting. This module reads
//! the file system; it must not change it or start anything.

use std::path::Path;

use super::error::{ConfigError, Diagnostic, Report};
use super::raw::{self, Value};
use super::Config;

/// The warnings about `config`, read from `text` (the file it came from), each with line and key.
pub fn warnings(config: &Config, text: &str) -> Vec<Diagnostic> {
    let Ok(root) = raw::parse(text) else {
        return Vec::new();
    };
    let mut report = Report::new(&config.source, text);
    for entry in &root.entries {
        match (entry.key.as_str(), &entry.node.value) {
            ("services", Value::Table(services)) => {
                for service in &services.entries {
                    let Some(cfg) = config.services.get(&service.key) else {
                        continue;
                    };
                    let Value::Table(keys) = &service.node.value else {
                        continue;
                    };
                    let Some(command) = keys.entries.iter().find(|e| e.key == "command") else {
                        continue;
                    };
                    if let Some((message, help)) = program_problem(cfg) {
                        let key = format!("services.{}.command", service.key);
                        report.error(command.node.span.clone(), Some(&key), message, Some(help));
                    }
                }
            }
            ("supervisor", Value::Table(supervisor)) => {
                let Some(group) = &config.supervisor.socket_group else {
                    continue;
                };
                let Some(field) = supervisor.entries.iter().find(|e| e.key == "socket_group")
                else {
                    continue;
                };
                if matches!(nix::unistd::Group::from_name(group), Ok(None)) {
                    report.error(
                        field.node.span.clone(),
                        Some("supervisor.socket_group"),
                        format!("group `{group}` does not exist on this machine: `tend up` would fail to bind the control socket"),
                        Some(format!("create it (groupadd {group}) or name an existing group (getent group lists them)")),
                    );
                }
            }
            _ => {}
        }
    }
    match report.finish() {
        Ok(()) => Vec::new(),
        Err(err) => err.diagnostics().to_vec(),
    }
}

/// Why the service's program would not be found at spawn (resolved exactly as the spawn does).
fn program_problem(cfg: &super::ServiceConfig) -> Option<(String, String)> {
    let program = cfg.command.first()?;
    match crate::process::resolve_program(program, &cfg.cwd, &cfg.env) {
        Err(err) => Some((
            format!("`{program}` is not in PATH here: {err}"),
            "PATH may differ when tend runs (systemd's is short); an absolute path is safest".to_string(),
        )),
        Ok(path) if !path.exists() => Some((
            format!("{} does not exist", path.display()),
            "install the program there, or fix the path (a relative one is taken from the service's cwd)"
                .to_string(),
        )),
        Ok(path) if !is_executable(&path) => Some((
            format!("{} is not an executable file", path.display()),
            format!("chmod +x {}, or run it through its interpreter", path.display()),
        )),
        Ok(_) => None,
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Reads a configuration file as UTF-8 text, or says why it cannot be, with the fix.
pub fn read_text(path: &Path) -> Result<String, ConfigError> {
    let problem = |message: String, help: String| {
        ConfigError::Invalid(vec![Diagnostic {
            file: path.to_path_buf(),
            line: None,
            column: None,
            key: None,
            message,
            help: Some(help),
        }])
    };
    if path.is_dir() {
        return Err(problem(
            "is a directory, not a configuration file".to_string(),
            format!(
                "name the file in it: tend -c {}",
                path.join("supervisor.toml").display()
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let to_utf8 = format!(
        "save it as UTF-8 without a byte-order mark, e.g. iconv -f UTF-16 -t UTF-8 {0} > {0}.new && mv {0}.new {0}",
        path.display()
    );
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(problem(
            "is UTF-16 text (it starts with a UTF-16 byte-order mark); tend reads UTF-8"
                .to_string(),
            to_utf8,
        ));
    }
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(problem(
            "starts with a UTF-8 byte-order mark, which TOML does not allow".to_string(),
            format!(
                "save it without the mark, e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' {}",
                path.display()
            ),
        ));
    }
    // UTF-16 without a mark: ASCII text has a NUL in every other byte.
    if !bytes.is_empty() && bytes.iter().filter(|&&b| b == 0).count() * 4 >= bytes.len() {
        return Err(problem(
            "looks like UTF-16 text (every other byte is NUL); tend reads UTF-8".to_string(),
            to_utf8,
        ));
    }
    String::from_utf8(bytes).map_err(|err| {
        problem(
            format!(
                "is not UTF-8 text (invalid byte at offset {})",
                err.utf8_error().valid_up_to()
            ),
            "save it as UTF-8 (most editors: File > Save with encoding)".to_string(),
        )
    })
}
