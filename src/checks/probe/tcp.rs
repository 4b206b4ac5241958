//! The `tcp` probe: does the port accept a connection? Connects, then closes at once; sends nothing.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::ProbeResult;

/// Connects to `addr` within `timeout`. Refused, unreachable or slow is `Critical`.
pub async fn probe(addr: SocketAddr, timeout: Duration) -> ProbeResult {
    let started = Instant::now();
    let result = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_elapsed) => ProbeResult::timed_out(timeout),
        Ok(Ok(_stream)) => ProbeResult::ok(format!(
            "port {} accepts connections ({} ms)",
            addr.port(),
            started.elapsed().as_millis()
        )),
        Ok(Err(err)) if err.kind() == ErrorKind::ConnectionRefused => {
            ProbeResult::critical(format!("connection refused on port {}", addr.port()))
        }
        Ok(Err(err)) => ProbeResult::critical(format!("cannot connect to {addr}: {err}")),
    };
    result.with_duration(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::probe::test_support::closed_addr;
    use crate::checks::probe::Status;

    #[tokio::test]
    async fn listening_port_is_ok() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let r = probe(addr, Duration::from_secs(5)).await;
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert!(
            r.message
                .starts_with(&format!("port {} accepts connections", addr.port())),
            "{}",
            r.message
        );
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let addr = closed_addr();
        let r = probe(addr, Duration::from_secs(5)).await;
        assert_eq!(r.status, Status::Critical);
        assert_eq!(
            r.message,
            format!("connection refused on port {}", addr.port())
        );
    }

    #[tokio::test]
    async fn full_accept_queue_hits_the_timeout() {
        // A listener that never accepts, with the smallest backlog: once its queue is full, Linux drops
        // further SYNs, so a connect hangs the way it does against a wedged service.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        let _listener = socket.listen(0).unwrap();
        let mut hung = None;
        for _ in 0..16 {
            let r = probe(addr, Duration::from_millis(200)).await;
            if r.status == Status::Critical {
                hung = Some(r);
                break;
            }
            // Each accepted-by-the-kernel connection keeps its slot in the queue even after we close it.
        }
        let r = hung.expect("the accept queue never filled up");
        assert_eq!(r.message, "no answer within 200ms");
        assert!(r.duration_ms >= 200, "{r:?}");
    }
}
