//! The status page under attack, over real HTTP against a real `tend up`: a burst of concurrent logins
//! (memory stays bounded and the excess is answered 429 at once), the limiter against a concurrent
//! burst, `[web]` changes applied by a reload (sessions revoked), slow and idle connections closed,
//! the connection cap with the control socket still answering, the Host allow-list, JSON errors,
//! refused actions in the audit log, the Prometheus bearer token, TLS (HSTS, the certificate re-read on
//! reload) and `tend hash-password`'s minimum length.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helper::*;
use crate::web::{
    login, parse_reply, request, request_on, request_with_host, sleeper, wait_web, web_table,
    Client, Reply, T,
};

/// tend's resident size in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The status code of one login over its own connection, or 0 if the connection was reset.
fn login_status(port: u16, user: &str, password: &str) -> u16 {
    let body = serde_json::json!({ "user": user, "password": password }).to_string();
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let req = format!(
        "POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `n` logins at once (each on its own thread and connection); the status codes.
fn burst(port: u16, n: usize, user: impl Fn(usize) -> String) -> Vec<u16> {
    let start = Arc::new(std::sync::Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let start = Arc::clone(&start);
            let user = user(i);
            std::thread::spawn(move || {
                start.wait();
                login_status(port, &user, "not the password")
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn count(codes: &[u16], code: u16) -> usize {
    codes.iter().filter(|c| **c == code).count()
}

#[test]
fn a_thousand_concurrent_logins_keep_memory_bounded_and_get_429_at_once() {
    let port = free_port();
    // The limiter is opened wide so the burst reaches the password checks: what bounds it here is
    // the checks' memory budget (one check at a time at the default cost of 19 MiB) and nothing
    // else: the connection cap is out of the way too.
    let body = format!(
        "{}{}",
        sleeper("a", ""),
        web_table(port, "login_max_failures = 1000000\nmax_connections = 2000")
    );
    let world = World::new(&body);
    let tend = world.up();
    wait_web(port);
    // Settle: one full login (the first hash maps and unmaps its memory) and its answer.
    assert_eq!(login(port, "op", "op-pass").status, 200);
    let idle = rss_kib(tend.pid());

    let peak = Arc::new(Mutex::new(idle));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (Arc::clone(&peak), Arc::clone(&done), tend.pid());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let now = rss_kib(pid);
                let mut peak = peak.lock().unwrap();
                *peak = (*peak).max(now);
                drop(peak);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let started = Instant::now();
    let codes = burst(port, 1000, |i| format!("ghost{i}"));
    let took = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    sampler.join().unwrap();
    let peak = *peak.lock().unwrap();

    // Every attempt got an answer; the excess was refused (not queued: the burst ends in about the
    // time of the few checks that ran, not 1000 of them).
    assert_eq!(count(&codes, 0), 0, "no connection was dropped: {codes:?}");
    assert_eq!(count(&codes, 200), 0);
    assert!(
        count(&codes, 429) >= 900,
        "429s: {} of {}",
        count(&codes, 429),
        codes.len()
    );
    assert_eq!(count(&codes, 401) + count(&codes, 429), 1000, "{codes:?}");
    const BOUND_KIB: u64 = 30 * 1024;
    assert!(
        peak <= idle + BOUND_KIB,
        "RSS peaked at {peak} KiB from {idle} KiB idle during the burst (took {took:?})"
    );
    // And it goes back: argon2's memory is unmapped after each check.
    let after = wait_for(T, "RSS back near idle", || {
        let now = rss_kib(tend.pid());
        (now <= idle + 10 * 1024).then_some(now)
    });
    eprintln!(
        "1000 concurrent logins: idle {idle} KiB, peak {peak} KiB, after {after} KiB, {took:?}"
    );
    // The page still works.
    assert_eq!(login(port, "op", "op-pass").status, 200);
}

#[test]
fn the_limiter_holds_against_a_concurrent_burst_and_a_success_resets_nothing() {
    let port = free_port();
    let body = format!("{}{}", sleeper("a", ""), web_table(port, ""));
    let world = World::new(&body);
    let _tend = world.up();
    wait_web(port);

    // The viewer signing in between guesses against the operator does not clear the count.
    for _ in 0..2 {
        assert_eq!(login_status(port, "op", "guess"), 401);
    }
    let _viewer = Client::login(port, "viewer", "view-pass");
    for _ in 0..2 {
        assert_eq!(login_status(port, "op", "guess"), 401);
    }
    // 100 guesses at once: only the one slot left gets a check, everything else is refused.
    let codes = burst(port, 100, |_| "op".to_string());
    assert!(count(&codes, 401) <= 1, "{codes:?}");
    assert_eq!(count(&codes, 401) + count(&codes, 429), 100, "{codes:?}");
    let locked = login(port, "op", "op-pass");
    assert_eq!(locked.status, 429, "{}", locked.body);
    let retry: u64 = locked.header("retry-after").parse().unwrap();
    assert!(
        retry > 1 && retry <= 60,
        "the first lockout is a minute: {retry}"
    );
    assert!(locked.json()["error"]
        .as_str()
        .unwrap()
        .contains("try again"));
}

/// The `[web]` table of the reload test, with `viewer` present or not and `op`'s password.
fn reload_web(port: u16, op_hash: &str, viewer_hash: Option<&str>, extra: &str) -> String {
    let mut text = format!(
        "[web]\nlisten = \"127.0.0.1:{port}\"\n{extra}\n\
         [[web.users]]\nname = \"op\"\npassword_hash = \"{op_hash}\"\nrole = \"operator\"\n"
    );
    if let Some(hash) = viewer_hash {
        text.push_str(&format!(
            "[[web.users]]\nname = \"viewer\"\npassword_hash = \"{hash}\"\nrole = \"viewer\"\n"
        ));
    }
    text
}

#[test]
fn a_reload_applies_web_users_metrics_public_and_says_what_needs_a_restart() {
    let port = free_port();
    let op_old = tend::web::hash_password("op-pass").unwrap();
    let op_new = tend::web::hash_password("op-new-pass").unwrap();
    let viewer = tend::web::hash_password("view-pass").unwrap();
    let services = sleeper("a", "");
    let world = World::new(&format!(
        "{services}{}",
        reload_web(port, &op_old, Some(&viewer), "")
    ));
    // Reloads only on `tend reload`, so its answer is the one that applied the change.
    let _tend = world.up_with_env(&[("TEND_WATCH_CONFIG", "0")]);
    wait_web(port);
    let op = Client::login(port, "op", "op-pass");
    let view = Client::login(port, "viewer", "view-pass");
    assert_eq!(request(port, "GET", "/metrics", &[], "").status, 401);
    // The viewer's live stream is open.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(
            format!(
                "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {}\r\n\
                 Connection: close\r\n\r\n",
                view.cookie
            )
            .as_bytes(),
        )
        .unwrap();
    stream.set_read_timeout(Some(T)).unwrap();
    let mut first = [0u8; 512];
    let n = stream.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));

    // Remove the viewer, change op's password, open /metrics.
    world.write_config(&format!(
        "{services}{}",
        reload_web(port, &op_new, None, "metrics_public = true")
    ));
    let out = world.tend(&["reload"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("web: changed (metrics_public, users), applies live"),
        "{}",
        stdout(&out)
    );
    // At once: both sessions are gone, the removed user cannot sign in, the new password works.
    assert_eq!(view.get("/api/session").status, 401);
    assert_eq!(op.get("/api/session").status, 401);
    assert!(
        closed_within(&mut stream, T),
        "the removed user's live stream ends"
    );
    assert_eq!(login(port, "viewer", "view-pass").status, 401);
    assert_eq!(login(port, "op", "op-pass").status, 401);
    let op = Client::login(port, "op", "op-new-pass");
    assert_eq!(request(port, "GET", "/metrics", &[], "").status, 200);

    // A new listen address waits for a restart, and both `tend reload` and the page say so.
    let other = free_port();
    world.write_config(&format!(
        "{services}{}",
        reload_web(port, &op_new, None, "metrics_public = true")
            .replace(&format!("127.0.0.1:{port}"), &format!("127.0.0.1:{other}"))
    ));
    let out = world.tend(&["reload"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let expected = format!(
        "[web] listen: 127.0.0.1:{port} -> 127.0.0.1:{other} (takes effect when tend restarts)"
    );
    assert!(stdout(&out).contains(&expected), "{}", stdout(&out));
    let notices = op.get("/api/status").json()["web_notices"].clone();
    assert!(
        notices
            .to_string()
            .contains("takes effect when tend restarts"),
        "{notices}"
    );
    assert_eq!(
        op.get("/api/session").status,
        200,
        "still served where it was"
    );
}

/// Reads until the peer closes; true if it closed (EOF or reset) before `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn slow_and_idle_connections_are_closed_after_their_timeouts() {
    let port = free_port();
    let body = format!(
        "{}{}",
        sleeper("a", ""),
        web_table(
            port,
            "header_timeout = \"300ms\"\nidle_timeout = \"400ms\"\nbody_timeout = \"300ms\""
        )
    );
    let world = World::new(&body);
    let _tend = world.up();
    wait_web(port);

    // Headers that never end.
    let started = Instant::now();
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /api/session HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    assert!(closed_within(&mut slow, T), "a slow head is closed");
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A connection that says nothing at all.
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(
        closed_within(&mut silent, T),
        "a silent connection is closed"
    );

    // A body that never arrives: a JSON 408.
    let mut body = TcpStream::connect(("127.0.0.1", port)).unwrap();
    body.write_all(
        format!(
            "POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{{\"user\":"
        )
        .as_bytes(),
    )
    .unwrap();
    body.set_read_timeout(Some(T)).unwrap();
    let mut raw = Vec::new();
    let _ = body.read_to_end(&mut raw);
    let reply = parse_reply(&raw);
    assert_eq!(reply.status, 408, "{}", reply.body);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("body_timeout"));

    // A kept-alive connection after its answer: closed once idle.
    let mut kept = TcpStream::connect(("127.0.0.1", port)).unwrap();
    kept.write_all(
        format!("GET /api/session HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    kept.set_read_timeout(Some(T)).unwrap();
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 401");
    assert!(closed_within(&mut kept, T), "an idle keep-alive is closed");
}

#[test]
fn the_connection_cap_holds_and_the_control_socket_still_answers() {
    let port = free_port();
    let body = format!(
        "{}{}",
        sleeper("a", ""),
        web_table(port, "max_connections = 4\nheader_timeout = \"60s\"")
    );
    let world = World::new(&body);
    let tend = world.up();
    wait_web(port);
    // wait_web's probe connection must be gone before the cap is filled.
    wait_for(T, "the probe to be closed", || {
        (login(port, "op", "op-pass").status == 200).then_some(())
    });
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // Accepted in order: the fifth finds four open and is answered 503 (or reset) at once.
    let mut fifth = TcpStream::connect(("127.0.0.1", port)).unwrap();
    fifth.set_read_timeout(Some(T)).unwrap();
    let mut raw = Vec::new();
    let _ = fifth.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 503"),
        "{text}"
    );
    let stderr_has_cap = || tend.stderr().contains("max_connections cap");
    wait_for(T, "the cap's log line", || stderr_has_cap().then_some(()));
    // The control socket is not affected by the page's clients (`--json`: exit 0 whatever the states).
    let out = world.tend(&["status", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("\"a\""), "{}", stdout(&out));
    drop(held);
    wait_for(T, "the page to serve again", || {
        (login(port, "op", "op-pass").status == 200).then_some(())
    });
}

#[test]
fn hosts_json_errors_and_refused_actions_in_a_private_audit_log() {
    let port = free_port();
    let body = format!(
        "{}{}",
        sleeper("a", ""),
        web_table(port, "hosts = [\"status.example.org\"]")
    );
    let world = World::new(&body);
    let _tend = world.up();
    wait_web(port);

    // A DNS-rebinding shaped request: the page's address under a foreign name.
    let body = r#"{"user":"op","password":"op-pass"}"#;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(T)).unwrap();
    let raw = format!(
        "POST /api/login HTTP/1.1\r\nHost: evil.example:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(raw.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let rebinding = parse_reply(&answer);
    assert_eq!(rebinding.status, 421, "{}", rebinding.body);
    assert!(rebinding.header("set-cookie").is_empty());
    // A second Host header is no way around it.
    let doubled = request(port, "GET", "/api/session", &[("Host", "evil.example")], "");
    assert_eq!(doubled.status, 421, "{}", doubled.body);
    assert!(rebinding.json()["error"]
        .as_str()
        .unwrap()
        .contains("[web] hosts"));
    for host in ["status.example.org", "localhost", "127.0.0.1"] {
        let reply = request_with_host(port, host, "GET", "/api/session");
        assert_eq!(reply.status, 401, "{host}: {}", reply.body);
    }

    // Every error under /api is JSON, the ones from below the handlers included.
    let long_uri = format!("/api/logs?q={}", "x".repeat(9000));
    let big_header = "y".repeat(40 * 1024);
    let big_body = "z".repeat(20 * 1024);
    let cases: Vec<(u16, Reply)> = vec![
        (404, request(port, "GET", "/api/nope", &[], "")),
        (405, request(port, "GET", "/api/login", &[], "")),
        (413, request(port, "POST", "/api/login", &[], &big_body)),
        (414, request(port, "GET", &long_uri, &[], "")),
        (
            431,
            request(port, "GET", "/api/status", &[("X-Big", &big_header)], ""),
        ),
    ];
    for (status, reply) in cases {
        assert_eq!(reply.status, status, "{}", reply.body);
        assert!(
            reply.header("content-type").starts_with("application/json"),
            "{status}: {:?}",
            reply.headers
        );
        assert_eq!(reply.json()["status"], status);
        assert!(
            reply.header("strict-transport-security").is_empty(),
            "no HSTS on plain HTTP"
        );
    }

    // A viewer's action and a missing CSRF token are refused and audited.
    let viewer = Client::login(port, "viewer", "view-pass");
    assert_eq!(viewer.post("/api/services/a/stop", "").status, 403);
    let op = Client::login(port, "op", "op-pass");
    let no_csrf = request(
        port,
        "POST",
        "/api/services/a/stop",
        &[("Cookie", &op.cookie)],
        "",
    );
    assert_eq!(no_csrf.status, 403);
    let audit = op.get("/api/audit").json();
    let refused: Vec<&serde_json::Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["outcome"]
                .as_str()
                .unwrap_or("")
                .starts_with("refused (403)")
        })
        .collect();
    assert!(
        refused
            .iter()
            .any(|e| e["user"] == "viewer" && e["action"] == "POST /api/services/a/stop"),
        "{audit}"
    );
    assert!(refused.iter().any(|e| e["user"] == "op"), "{audit}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(world.path().join("state/web-audit.jsonl"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn prometheus_scrapes_with_a_bearer_token() {
    let out = std::process::Command::new(TEND)
        .arg("metrics-token")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let (token, line) = (lines[0], lines[1]);
    assert_eq!(token.len(), 64, "{text}");
    assert!(line.starts_with("metrics_token_hash = \"sha256:"), "{text}");
    assert!(!line.contains(token), "only the hash goes in the file");

    let port = free_port();
    let body = format!("{}{}", sleeper("a", ""), web_table(port, line));
    let world = World::new(&body);
    let _tend = world.up();
    wait_web(port);
    let bearer = format!("Bearer {token}");
    let scrape = request(port, "GET", "/metrics", &[("Authorization", &bearer)], "");
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    assert!(scrape.body.contains("tend_"), "{}", scrape.body);
    let wrong = format!("Bearer {}", "0".repeat(64));
    for headers in [vec![("Authorization", wrong.as_str())], vec![]] {
        let reply = request(port, "GET", "/metrics", &headers, "");
        assert_eq!(reply.status, 401, "{}", reply.body);
    }
    // The token opens /metrics only.
    let status = request(
        port,
        "GET",
        "/api/status",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(status.status, 401);
}

#[test]
fn tls_with_a_test_certificate() {
    use std::sync::Arc;
    let port = free_port();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let body = format!(
        "{}{}",
        sleeper("a", ""),
        web_table(
            port,
            "tls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"\n"
        )
    );
    let world = World::new(&body);
    std::fs::create_dir_all(world.path().join("tls")).unwrap();
    std::fs::write(world.path().join("tls/cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(
        world.path().join("tls/key.pem"),
        cert.key_pair.serialize_pem(),
    )
    .unwrap();
    let _tend = world.up();
    wait_web(port);

    // A renewed certificate, trusted too: a reload re-reads the files in place.
    let renewed =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    roots.add(renewed.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let tls_request = |method: &str, path: &str, headers: &[(&str, &str)], body: &str| {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(T)).unwrap();
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        let reply = request_on(&mut stream, port, method, path, headers, body);
        let served = stream.conn.peer_certificates().unwrap()[0].to_vec();
        (reply, served)
    };
    let (anon, served) = tls_request("GET", "/api/session", &[], "");
    assert_eq!(anon.status, 401);
    assert_eq!(served, cert.cert.der().to_vec());
    assert!(
        anon.header("strict-transport-security")
            .contains("max-age="),
        "HSTS under TLS: {:?}",
        anon.headers
    );
    let body = r#"{"user":"op","password":"op-pass"}"#;
    let (reply, _) = tls_request(
        "POST",
        "/api/login",
        &[("Content-Type", "application/json")],
        body,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.header("set-cookie").contains("; Secure"),
        "Secure under TLS"
    );
    std::fs::write(world.path().join("tls/cert.pem"), renewed.cert.pem()).unwrap();
    std::fs::write(
        world.path().join("tls/key.pem"),
        renewed.key_pair.serialize_pem(),
    )
    .unwrap();
    let out = world.tend(&["reload"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let (_, served) = tls_request("GET", "/api/session", &[], "");
    assert_eq!(
        served,
        renewed.cert.der().to_vec(),
        "the renewed certificate is served"
    );
    // Plain HTTP on the TLS port gets no page.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET /api/session HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw);
    assert!(!String::from_utf8_lossy(&raw).contains("HTTP/1.1 401"));
}

#[test]
fn hash_password_prints_a_verifiable_argon2id_hash() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(TEND)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let hash = stdout(&out).trim().to_string();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(tend::web::verify_password(&hash, "correct horse"));
    assert!(!tend::web::verify_password(&hash, "correct horse\n"));
    // An empty password is refused.
    let out = Command::new(TEND)
        .arg("hash-password")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("empty"), "{}", stderr(&out));
    // A short one is refused unless asked for.
    let short = |args: &[&str]| {
        let mut child = Command::new(TEND)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"short pw\n")
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = short(&["hash-password"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("fewer than 12"), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "nothing printed");
    let out = short(&["hash-password", "--allow-short"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(tend::web::verify_password(stdout(&out).trim(), "short pw"));
}
