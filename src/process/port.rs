//! Who is listening on a TCP port, from /proc/net/tcp{,6} and the fd tables in /proc.
//!
//! Used before starting a service with a `port`: an orphaned worker of a previous run holding the port is
//! the classic supervisor failure, and the operator needs its pid, not just "address in use".

use std::fs;

/// A listener found on a port. `pid` is unknown when the socket belongs to a process we may not inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortHolder {
    pub port: u16,
    pub pid: Option<u32>,
    pub name: Option<String>,
}

impl std::fmt::Display for PortHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.pid, &self.name) {
            (Some(pid), Some(name)) => {
                write!(f, "port {} is held by pid {pid} ({name})", self.port)
            }
            (Some(pid), None) => write!(f, "port {} is held by pid {pid}", self.port),
            _ => write!(f, "port {} is held by a process tend cannot see", self.port),
        }
    }
}

const TCP_LISTEN: &str = "0A";

/// The process listening on `port` (any address, IPv4 or IPv6), if any.
pub fn port_holder(port: u16) -> Option<PortHolder> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let pid = find_socket_owner(&inodes);
    Some(PortHolder {
        port,
        pid,
        name: pid.and_then(super::process_name),
    })
}

/// Inodes of sockets in LISTEN state on `port` in one /proc/net/tcp table.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?.parse::<u64>().ok()?;
            let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (local_port == port && *state == TCP_LISTEN && inode != 0).then_some(inode)
        })
        .collect()
}

fn find_socket_owner(inodes: &[u64]) -> Option<u32> {
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = fs::read_link(fd.path()) {
                if wanted.iter().any(|w| target.as_os_str() == w.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:139E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:139E 0100007F:C000 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0\n\
   2: 00000000:139F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 0x139E), vec![12345]);
        assert_eq!(listening_inodes(table, 0x139F), vec![777]);
        assert!(listening_inodes(table, 80).is_empty());
    }

    #[test]
    fn finds_our_own_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let holder = port_holder(port).expect("listener is visible");
        assert_eq!(holder.pid, Some(std::process::id()));
        assert!(holder
            .to_string()
            .contains(&format!("port {port} is held by pid")));
        drop(listener);
        assert_eq!(port_holder(port), None);
    }
}
