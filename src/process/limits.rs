//! The open-file limit of tend itself: raised from the soft to the hard limit at start.
//!
//! Why: every service costs tend several descriptors (its two output pipes, its log file, a pidfd,
//! the check sockets), so the usual soft limit of 1024 runs out at a few hundred services ("Too many
//! open files" at spawn). The hard limit is what the administrator allows (`LimitNOFILE=` in the unit);
//! raising the soft one to it needs no privilege. This module changes only tend's own limit.

use std::io;

/// The soft and hard `RLIMIT_NOFILE` before and after: `(old_soft, new_soft)`.
pub fn raise_open_files_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let old = limit.rlim_cur;
    if limit.rlim_cur >= limit.rlim_max {
        return Ok((old, old));
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((old, limit.rlim_cur))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let (_, new) = raise_open_files_limit().unwrap();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!(limit.rlim_cur, limit.rlim_max);
        assert_eq!(new, limit.rlim_cur);
        // Idempotent: a second call changes nothing.
        assert_eq!(raise_open_files_limit().unwrap(), (new, new));
    }
}
