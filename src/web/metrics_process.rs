//! The standard `process_*` metrics of tend itself, read from `/proc/self` (Linux). Parsing is pure
//! ([`parse_stat`]); only [`ProcessStats::read`] touches the file system. Knows nothing of services.

use super::{Input, Sample};

/// What `/proc/self` says about tend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(in crate::web) struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
    pub max_fds: u64,
}

impl ProcessStats {
    pub(in crate::web) fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        // SAFETY: sysconf only reads a system constant.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let mut stats = parse_stat(&stat, &boot, ticks.max(1) as u64, page.max(1) as u64)?;
        stats.open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            stats.max_fds = limit.rlim_cur;
        }
        Some(stats)
    }
}

/// `/proc/self/stat` and `/proc/stat` (for `btime`) to figures; fds are left at 0.
pub(super) fn parse_stat(
    stat: &str,
    proc_stat: &str,
    ticks: u64,
    page: u64,
) -> Option<ProcessStats> {
    // The command name (field 2) may hold spaces and parentheses: fields are counted after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field N is fields[N - 3].
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let btime = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(ProcessStats {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks as f64,
        resident_bytes: field(24)? * page,
        virtual_bytes: field(23)?,
        start_time_seconds: btime as f64 + field(22)? as f64 / ticks as f64,
        open_fds: 0,
        max_fds: 0,
    })
}

/// One unlabelled sample when the figures could be read, none otherwise.
pub(super) fn sample(input: &Input, value: impl Fn(&ProcessStats) -> String) -> Vec<Sample> {
    input
        .process
        .iter()
        .map(|p| Sample {
            labels: Vec::new(),
            value: value(p),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with a space and a ')' in it; utime 250, stime 50, starttime 1000,
        // vsize 8192000, rss 300 pages.
        let stat = "4242 (te nd) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 1000 \
                    8192000 300 18446744073709551615";
        let proc_stat = "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n";
        let p = parse_stat(stat, proc_stat, 100, 4096).unwrap();
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.resident_bytes, 300 * 4096);
        assert_eq!(p.virtual_bytes, 8_192_000);
        assert_eq!(p.start_time_seconds, 1_700_000_010.0);
        assert!(parse_stat("garbage", proc_stat, 100, 4096).is_none());
    }

    #[test]
    fn this_process_can_be_read() {
        let p = ProcessStats::read().expect("/proc/self is readable on Linux");
        assert!(
            p.resident_bytes > 0 && p.open_fds > 0 && p.max_fds >= p.open_fds,
            "{p:?}"
        );
    }
}
