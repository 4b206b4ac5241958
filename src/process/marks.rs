//! Marking the processes of one service run, so that those that leave its process group (`setsid`,
//! a double fork into a new session) are still found.
//!
//! Every service process gets `TEND_RUN=<mark>` in its environment; children inherit it, also across
//! `setsid`. [`marked`] lists the live processes that carry a mark, from `/proc/PID/environ`. Owns the
//! name of the variable and the scan; it decides nothing about what to do with what it finds.

use std::path::Path;

/// The environment variable that names a service process's run.
pub const RUN_MARK: &str = "TEND_RUN";

/// The mark of one run: the service, the run's own tag (unique per start), and tend's state directory
/// (one per tend instance), so two tends on one machine never mistake each other's processes.
pub fn run_mark(state_dir: &Path, service: &str, tag: &str) -> String {
    let dir = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    format!("{service}/{tag}@{}", dir.display())
}

/// The live processes (not zombies) whose environment carries `TEND_RUN=<mark>`, other than tend.
pub fn marked(mark: &str) -> Vec<u32> {
    let wanted = format!("{RUN_MARK}={mark}");
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == wanted.as_bytes()))
        })
        .filter(|&pid| !super::is_zombie(pid))
        .collect();
    pids.sort_unstable();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_process_is_found_also_in_a_new_session() {
        let dir = tempfile::tempdir().unwrap();
        let mark = run_mark(dir.path(), "svc", "1-1");
        let mut child = std::process::Command::new("setsid")
            .args(["sleep", "30"])
            .env(RUN_MARK, &mark)
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let found = loop {
            let found = marked(&mark);
            if !found.is_empty() || std::time::Instant::now() > deadline {
                break found;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert!(!found.is_empty(), "no process carries {mark}");
        assert!(marked(&run_mark(dir.path(), "svc", "other")).is_empty());
        let _ = child.kill();
        let _ = child.wait();
    }
}
