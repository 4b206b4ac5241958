//! The status page over real HTTP against a real `tend up`: auth, sessions, CSRF, roles, every action,
//! the log search on a large generated log, path traversal attempts, hostile log lines, secrets, TLS.
//!
//! The HTTP client is a few lines over `std::net::TcpStream`, so a test can send exactly the bytes it
//! means to (raw paths, forged headers) and nothing is hidden by a client library.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tend::core::ServiceState;

use crate::helper::*;

pub(crate) const T: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map_or("", String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

pub(crate) fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            headers
                .entry(k.trim().to_ascii_lowercase())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.iter().any(|v| v.contains("chunked")))
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(nl) = rest.windows(2).position(|w| w == b"\r\n") {
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&rest[..nl]).trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + size]);
            rest = &rest[nl + 2 + size + 2..];
        }
        body = out;
    }
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub(crate) fn request_on<S: Read + Write>(
    stream: &mut S,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_reply(&raw)
}

/// A request with exactly one `Host` header, `host`.
pub(crate) fn request_with_host(port: u16, host: &str, method: &str, path: &str) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(T)).unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_reply(&raw)
}

pub(crate) fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(T)).unwrap();
    request_on(&mut stream, port, method, path, headers, body)
}

/// A logged-in client.
pub(crate) struct Client {
    pub port: u16,
    pub cookie: String,
    pub csrf: String,
}

impl Client {
    pub fn login(port: u16, user: &str, password: &str) -> Client {
        let reply = login(port, user, password);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let set = reply.header("set-cookie");
        Client {
            port,
            cookie: set.split(';').next().unwrap().to_string(),
            csrf: reply.json()["csrf"].as_str().unwrap().to_string(),
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        request(self.port, "GET", path, &[("Cookie", &self.cookie)], "")
    }

    pub fn post(&self, path: &str, body: &str) -> Reply {
        request(
            self.port,
            "POST",
            path,
            &[
                ("Cookie", &self.cookie),
                ("X-CSRF-Token", &self.csrf),
                ("Content-Type", "application/json"),
            ],
            body,
        )
    }
}

pub(crate) fn login(port: u16, user: &str, password: &str) -> Reply {
    let body = serde_json::json!({ "user": user, "password": password }).to_string();
    request(
        port,
        "POST",
        "/api/login",
        &[("Content-Type", "application/json")],
        &body,
    )
}

pub(crate) fn web_table(port: u16, extra: &str) -> String {
    let op = tend::web::hash_password("op-pass").unwrap();
    let viewer = tend::web::hash_password("view-pass").unwrap();
    format!(
        "[web]\nlisten = \"127.0.0.1:{port}\"\n{extra}\n\
         [[web.users]]\nname = \"op\"\npassword_hash = \"{op}\"\nrole = \"operator\"\n\
         [[web.users]]\nname = \"viewer\"\npassword_hash = \"{viewer}\"\nrole = \"viewer\"\n"
    )
}

pub(crate) fn sleeper(name: &str, extra: &str) -> String {
    format!(
        "[services.{name}]\ncommand = [\"sh\", \"-c\", \"echo {name} up; exec sleep 1000\"]\n\
         start_grace = \"100ms\"\nstop_timeout = \"2s\"\n{extra}\n"
    )
}

pub(crate) fn wait_web(port: u16) {
    wait_for(T, "the status page to answer", || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
}

#[test]
fn auth_csrf_roles_actions_and_audit() {
    let port = free_port();
    let body = format!(
        "{}{}",
        sleeper("a", "min_restart_interval = \"1h\""),
        web_table(port, "")
    );
    let world = World::new(&body);
    let _tend = world.up();
    wait_web(port);
    world.wait_state("a", ServiceState::Running, T);

    // The page loads without a login; every answer carries the security headers.
    let page = request(port, "GET", "/", &[], "");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("app.js"), "{}", page.body);
    let csp = page.header("content-security-policy");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.header("x-frame-options"), "DENY");
    assert_eq!(page.header("x-content-type-options"), "nosniff");

    // No session, wrong password, unknown user.
    let anon = request(port, "GET", "/api/status", &[], "");
    assert_eq!(anon.status, 401);
    assert_eq!(anon.header("x-frame-options"), "DENY");
    assert_eq!(login(port, "op", "wrong").status, 401);
    assert_eq!(login(port, "nobody", "op-pass").status, 401);
    assert_eq!(request(port, "GET", "/metrics", &[], "").status, 401);

    let reply = login(port, "op", "op-pass");
    assert_eq!(reply.status, 200);
    let cookie = reply.header("set-cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "no Secure on plain loopback HTTP: {cookie}"
    );
    let op = Client::login(port, "op", "op-pass");

    let status = op.get("/api/status").json();
    assert_eq!(status["services"][0]["name"], "a");
    assert_eq!(status["services"][0]["color"], "green");
    assert_eq!(status["me"]["role"], "operator");

    // CSRF: no token, a wrong token, a foreign Origin; nothing happens.
    let no_token = request(
        port,
        "POST",
        "/api/services/a/stop",
        &[("Cookie", &op.cookie)],
        "",
    );
    assert_eq!(no_token.status, 403, "{}", no_token.body);
    let wrong = request(
        port,
        "POST",
        "/api/services/a/stop",
        &[("Cookie", &op.cookie), ("X-CSRF-Token", "0000")],
        "",
    );
    assert_eq!(wrong.status, 403);
    let foreign = request(
        port,
        "POST",
        "/api/services/a/stop",
        &[
            ("Cookie", &op.cookie),
            ("X-CSRF-Token", &op.csrf),
            ("Origin", "http://evil.example"),
        ],
        "",
    );
    assert_eq!(foreign.status, 403);
    // Actions are POSTs: a GET does nothing.
    assert_eq!(op.get("/api/services/a/stop").status, 405);
    assert_eq!(world.service("a").state, ServiceState::Running);

    // A viewer sees everything and changes nothing.
    let viewer = Client::login(port, "viewer", "view-pass");
    assert_eq!(viewer.get("/api/status").status, 200);
    let denied = viewer.post("/api/services/a/stop", "");
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert!(denied.body.contains("viewer"), "{}", denied.body);

    // Stop, start, restart (refused by spacing, then forced), reload cache, unknown names.
    let stop = op.post("/api/services/a/stop", r#"{"reason":"maintenance window"}"#);
    assert_eq!(stop.status, 200, "{}", stop.body);
    assert_eq!(stop.json()["outcome"], "done");
    world.wait_state("a", ServiceState::Stopped, T);
    // A start inside the spacing window is refused with the time left; force overrides it.
    let start = op.post("/api/services/a/start", "");
    assert_eq!(start.status, 409, "{}", start.body);
    let start = op.post("/api/services/a/start", r#"{"force":true}"#);
    assert_eq!(start.status, 200, "{}", start.body);
    world.wait_state("a", ServiceState::Running, T);
    let refused = op.post("/api/services/a/restart", "");
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(refused.json()["outcome"], "refused");
    assert!(refused.json()["retry_in_ms"].as_i64().unwrap() > 0);
    let forced = op.post(
        "/api/services/a/restart",
        r#"{"force":true,"reason":"stuck"}"#,
    );
    assert_eq!(forced.status, 200, "{}", forced.body);
    world.wait_state("a", ServiceState::Running, T);
    // `a` has no port, so there is no /reload_cache to call: a clear failure, not a 403 or a 500.
    let reload = op.post("/api/services/a/reload_cache", "");
    assert!(
        [200, 409, 502].contains(&reload.status),
        "{} {}",
        reload.status,
        reload.body
    );
    assert!(reload.json()["outcome"].is_string(), "{}", reload.body);
    assert_eq!(op.post("/api/services/ghost/stop", "").status, 404);
    assert_eq!(op.post("/api/services/a/format_disk", "").status, 404);
    assert_eq!(op.post("/api/groups/nope/recover", "").status, 404);
    let log = world.read_log("a");
    assert!(
        log.contains("web:op@127.0.0.1"),
        "the service log says who: {log}"
    );

    // The audit log: who, from where, what, why.
    let audit = op.get("/api/audit").json();
    let entries = audit.as_array().unwrap();
    let stop_entry = entries
        .iter()
        .find(|e| e["action"] == "stop" && e["target"] == "a")
        .unwrap_or_else(|| panic!("no stop entry: {audit}"));
    assert_eq!(stop_entry["user"], "op");
    assert_eq!(stop_entry["ip"], "127.0.0.1");
    assert_eq!(stop_entry["reason"], "maintenance window");
    assert!(entries
        .iter()
        .any(|e| e["action"] == "restart --force" && e["reason"] == "stuck"));
    assert!(entries
        .iter()
        .any(|e| e["action"] == "login" && e["user"] == "op" && e["outcome"] != "ok"));

    // Metrics need the login (metrics_public is off) and show the service.
    let metrics = op.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("tend_service_up{service=\"a\"} 1"),
        "{}",
        metrics.body
    );
    assert!(metrics
        .body
        .contains("tend_service_restarts_total{service=\"a\"}"));

    // Logout ends the session.
    assert_eq!(op.post("/api/logout", "").status, 200);
    assert_eq!(op.get("/api/status").status, 401);
    assert_eq!(
        viewer.get("/api/status").status,
        200,
        "other sessions live on"
    );
}

#[test]
fn sessions_expire_and_failed_logins_are_limited() {
    let port = free_port();
    let body = format!(
        "{}{}",
        sleeper("a", ""),
        web_table(port, "session_ttl = \"300ms\"")
    );
    let world = World::new(&body);
    let _tend = world.up();
    wait_web(port);
    let op = Client::login(port, "op", "op-pass");
    assert_eq!(op.get("/api/session").status, 200);
    wait_for(T, "the session to expire", || {
        (op.get("/api/session").status == 401).then_some(())
    });
    for _ in 0..5 {
        assert_eq!(login(port, "op", "guess").status, 401);
    }
    let limited = login(port, "op", "op-pass");
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited.header("retry-after").parse::<u64>().unwrap() > 0);
}

#[test]
fn the_first_up_without_users_prints_a_generated_admin_password() {
    let port = free_port();
    let body = format!("{}[web]\nlisten = \"127.0.0.1:{port}\"\n", sleeper("a", ""));
    let world = World::new(&body);
    let tend = world.up();
    wait_web(port);
    let stderr = wait_for(T, "the password line", || {
        let s = tend.stderr();
        s.contains("password: ").then_some(s)
    });
    let password = stderr
        .split("password: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(password.len() >= 16, "{password}");
    let hash = std::fs::read_to_string(world.path().join("state/web-admin.hash")).unwrap();
    assert!(hash.starts_with("$argon2id$") && !hash.contains(&password));
    let admin = Client::login(port, "admin", &password);
    assert_eq!(admin.get("/api/session").json()["role"], "operator");
    assert_eq!(
        login(port, "admin", "admin").status,
        401,
        "no default credentials"
    );
}

/// `big.log.1` (~12 MB, rotated) and `big.log`: a needle, error types, and times to filter on.
fn write_big_log(world: &World) -> usize {
    let dir = world.path().join("logs");
    std::fs::create_dir_all(&dir).unwrap();
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut old = String::new();
    let n = 120_000;
    for i in 0..n {
        let ts = base + chrono::Duration::milliseconds(i as i64 * 10);
        let ts = ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let text = if i == 777 {
            "INFO:big:needle-in-the-haystack".to_string()
        } else if i % 10_000 == 5 {
            "INFO:telethon.client.users:Sleeping for 27s (0:00:27) on GetDialogsRequest flood wait"
                .to_string()
        } else {
            format!("INFO:big:request {i} sent ok, nothing to see here, padding padding")
        };
        old.push_str(&format!("{ts} out {text}\n"));
    }
    std::fs::write(dir.join("big.log.1"), old).unwrap();
    n
}

#[test]
fn log_search_filters_pages_redacts_and_refuses_traversal() {
    let port = free_port();
    // A service whose output is hostile: markup payloads, a failing chat, and a secret it echoes.
    // The failing chat repeats: the analyzer subscribes to the log a moment after the first start.
    let script = "echo '<script>alert(1)</script>'; echo '<img src=x onerror=alert(2)>'; \
                  echo \"token is $API_HASH\"; \
                  for i in 1 2 3 4 5 6 7 8 9 10; do \
                  echo 'ERROR:send_text_bot:send_text failed: ValueError: Не удалось найти чат -1003519196381 в диалогах' >&2; \
                  sleep 0.3; done; exec sleep 1000";
    let body = format!(
        "[services.evil]\ncommand = [\"sh\", \"-c\", {script:?}]\nstart_grace = \"100ms\"\n\
         env = {{ API_HASH = \"s3cr3t-hash-value\" }}\n\
         [services.big]\ncommand = \"sleep 1000\"\nstart_grace = \"100ms\"\n{}",
        web_table(port, "")
    );
    let world = World::new(&body);
    let total = write_big_log(&world);
    let _tend = world.up();
    wait_web(port);
    wait_for(T, "evil's output in its log", || {
        world.read_log("evil").contains("token is").then_some(())
    });
    let op = Client::login(port, "op", "op-pass");

    // Newest first, paged with a cursor across the rotated file; every line exactly once.
    let mut cursor = String::new();
    let mut seen = 0;
    let mut pages = 0;
    let started = std::time::Instant::now();
    loop {
        let reply = op.get(&format!("/api/logs?service=big&limit=5000&cursor={cursor}"));
        assert_eq!(reply.status, 200, "{}", reply.body);
        let page = reply.json();
        let lines = page["lines"].as_array().unwrap();
        seen += lines.iter().filter(|l| l["stream"] == "out").count();
        pages += 1;
        match page["cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert!(pages >= total / 5000, "{pages} pages");
    assert!(seen >= total, "{seen} of {total} lines");
    assert!(started.elapsed() < Duration::from_secs(60));

    // Text search, error type, time range; done by the server.
    let found = op.get("/api/logs?service=big&q=NEEDLE-in").json();
    let lines = found["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "{found}");
    assert!(lines[0]["text"]
        .as_str()
        .unwrap()
        .contains("needle-in-the-haystack"));
    let flood = op
        .get("/api/logs?service=big&type=FloodSleep&limit=100")
        .json();
    let n = flood["lines"].as_array().unwrap().len();
    assert_eq!(n, total / 10_000, "{flood}");
    let ranged = op
        .get("/api/logs?service=big&from=2026-11-28T10:00:01Z&to=2026-11-28T10:00:01.990Z&limit=1000")
        .json();
    assert_eq!(ranged["lines"].as_array().unwrap().len(), 100, "{ranged}");
    assert!(
        ranged["cursor"].is_null(),
        "the range ends the search: {ranged}"
    );

    // Hostile lines come back as JSON strings (the page renders them as text), and the secret
    // never leaves: not in the search, the download, the config view.
    let evil = op.get("/api/logs?service=evil&limit=100");
    assert!(evil.header("content-type").starts_with("application/json"));
    assert!(
        evil.body.contains("<script>alert(1)</script>"),
        "kept verbatim as data"
    );
    assert!(!evil.body.contains("s3cr3t-hash-value"), "{}", evil.body);
    assert!(evil.body.contains("token is [redacted]"), "{}", evil.body);
    let errors_only = op.get("/api/logs?service=evil&errors=1").json();
    let kinds: Vec<&str> = errors_only["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["kind"].as_str())
        .collect();
    assert!(!kinds.is_empty(), "{errors_only}");
    assert!(
        kinds.iter().all(|k| *k == "Cannot find chat"),
        "{errors_only}"
    );
    let download = op.get("/api/logs/download?service=evil");
    assert_eq!(download.status, 200);
    assert!(download
        .header("content-disposition")
        .starts_with("attachment"));
    assert!(download.header("content-type").starts_with("text/plain"));
    assert!(download.body.contains("evil ") && download.body.contains("token is [redacted]"));
    assert!(!download.body.contains("s3cr3t"));
    let config = op.get("/api/config");
    assert!(!config.body.contains("s3cr3t"), "{}", config.body);
    assert!(
        config.body.contains("\"API_HASH\":\"[redacted]\""),
        "{}",
        config.body
    );

    // The failing chat shows in the chat table once the analyzer has seen it.
    let chats = wait_for(T, "the failing chat in /api/chats", || {
        let c = op.get("/api/chats").json();
        (!c["rows"].as_array().unwrap().is_empty()).then_some(c)
    });
    assert_eq!(chats["rows"][0]["chat_id"], "-1003519196381");
    assert!(chats["advice"].as_str().unwrap().contains("not a bug"));

    // Traversal: names, cursors, raw paths. Nothing outside the log dir is reachable.
    for path in [
        "/api/logs?service=../../../../etc/passwd",
        "/api/logs?service=big%2F..%2F..%2Fetc%2Fpasswd",
        "/api/logs?service=%2Fetc%2Fpasswd",
        "/api/logs/download?service=..%2Fstate%2Fweb-audit",
        "/api/logs?service=big.log.1",
    ] {
        let reply = op.get(path);
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
    }
    for cursor in ["big:..%2F..%2Fetc%2Fpasswd", "big:1:2:3", "big:x:1"] {
        let reply = op.get(&format!("/api/logs?service=big&cursor={cursor}"));
        assert_eq!(reply.status, 400, "{cursor}: {}", reply.body);
    }
    for path in [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/web/../Cargo.toml",
    ] {
        let reply = op.get(path);
        assert_eq!(reply.status, 404, "{path}");
        assert!(!reply.body.contains("root:"), "{path}");
    }
}

#[test]
fn live_updates_over_sse() {
    let port = free_port();
    let body = format!("{}{}", sleeper("a", ""), web_table(port, ""));
    let world = World::new(&body);
    let mut tend = world.up();
    wait_web(port);
    world.wait_state("a", ServiceState::Running, T);
    let op = Client::login(port, "op", "op-pass");
    let mut sse = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sse.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(
        sse,
        "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {}\r\n\r\n",
        op.cookie
    )
    .unwrap();
    let mut seen = String::new();
    let mut read_until = |what: &str, seen: &mut String| {
        wait_for(T, what, || {
            let mut buf = [0u8; 65536];
            if let Ok(n) = sse.read(&mut buf) {
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            seen.contains(what).then_some(())
        })
    };
    read_until("\"color\":\"green\"", &mut seen);
    assert!(seen.contains("text/event-stream"), "{seen}");
    seen.clear();
    assert_eq!(op.post("/api/services/a/stop", "").status, 200);
    read_until("\"color\":\"red\"", &mut seen);
    assert!(seen.contains("event: status"), "{seen}");
    // An open event stream does not hold up a graceful shutdown.
    tend.signal(libc::SIGTERM);
    let status = tend.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
}

#[test]
fn flood_recovery_from_the_page_and_its_cancel() {
    let port = free_port();
    let group = "[groups.g]\nmin_start_spacing = \"0s\"\nmax_starts = 100\nwindow = \"1h\"\n\
                 [groups.g.recovery]\ncooldown = \"1h\"\nauto = false\n";
    let body = format!(
        "{group}{}{}{}",
        sleeper("a", "group = \"g\""),
        sleeper("b", "group = \"g\""),
        web_table(port, "")
    );
    let world = World::new(&body);
    let _tend = world.up();
    wait_web(port);
    world.wait_state("a", ServiceState::Running, T);
    world.wait_state("b", ServiceState::Running, T);
    let viewer = Client::login(port, "viewer", "view-pass");
    assert_eq!(viewer.post("/api/groups/g/recover", "").status, 403);
    let op = Client::login(port, "op", "op-pass");
    let started = op.post(
        "/api/groups/g/recover",
        r#"{"reason":"both in flood wait"}"#,
    );
    assert_eq!(started.status, 200, "{}", started.body);
    let cooldown = wait_for(T, "the recovery's cooldown", || {
        let s = op.get("/api/status").json();
        (s["recoveries"][0]["recovery"]["stage"]["stage"] == "cooldown").then_some(s)
    });
    assert!(
        cooldown["recoveries"][0]["until_ms"].as_i64().unwrap()
            > cooldown["at_ms"].as_i64().unwrap()
    );
    assert_eq!(world.service("a").state, ServiceState::Stopped);
    let metrics = op.get("/metrics").body;
    assert!(
        metrics.contains("tend_recovery_active{group=\"g\"} 1"),
        "{metrics}"
    );
    let cancelled = op.post("/api/groups/g/cancel_recovery", "");
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    wait_for(T, "the recovery cancelled", || {
        let s = op.get("/api/status").json();
        (s["recoveries"][0]["recovery"]["stage"]["stage"] == "cancelled").then_some(())
    });
    let audit = op.get("/api/audit").json();
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "recover" && e["reason"] == "both in flood wait"));
}

#[test]
fn a_taken_port_leaves_the_services_running_and_says_why() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let body = format!("{}{}", sleeper("a", ""), web_table(port, ""));
    let world = World::new(&body);
    let tend = world.up();
    world.wait_state("a", ServiceState::Running, T);
    let stderr = wait_for(T, "the status page error", || {
        let s = tend.stderr();
        s.contains("status page not started").then_some(s)
    });
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[test]
fn a_service_added_by_a_reload_is_on_the_page_with_its_secret_redacted() {
    let port = free_port();
    let web = web_table(port, "");
    let world = World::new(&format!("{}{web}", sleeper("first", "")));
    let _tend = world.up();
    wait_web(port);
    let op = Client::login(port, "op", "op-pass");
    // Add a service that prints its secret, by editing the file (the watcher reloads it).
    world.write_config(&format!(
        "{}[services.added]\ncommand = [\"sh\", \"-c\", \"echo \\\"token is $API_TOKEN\\\"; exec sleep 1000\"]\n\
         start_grace = \"100ms\"\nenv = {{ API_TOKEN = \"added-s3cr3t\" }}\n{web}",
        sleeper("first", "")
    ));
    wait_for(T, "the added service's output", || {
        world.read_log("added").contains("token is").then_some(())
    });
    // The reload task tells the page about the new configuration a moment after the core started it.
    let logs = wait_for(T, "the page to know the added service", || {
        let logs = op.get("/api/logs?service=added&limit=100");
        (logs.status == 200 && logs.body.contains("token is")).then_some(logs)
    });
    assert!(!logs.body.contains("added-s3cr3t"), "{}", logs.body);
    assert!(logs.body.contains("token is [redacted]"), "{}", logs.body);

    // A broken edit changes nothing and the page says why, until it is fixed.
    world.write_config(&format!(
        "{}restrat = \"always\"\n{web}",
        sleeper("first", "")
    ));
    let error = wait_for(T, "the config error on the page", || {
        op.get("/api/status").json()["config_error"]
            .as_str()
            .map(str::to_string)
    });
    assert!(error.contains("did you mean `restart`"), "{error}");
    assert!(
        world.service("added").pid.is_some(),
        "a broken edit stops nothing"
    );
}

#[test]
fn a_reexec_keeps_everyone_signed_in_and_leaves_no_tokens_on_disk() {
    let port = free_port();
    let body = format!("{}{}", sleeper("a", ""), web_table(port, ""));
    let world = World::new(&body);
    let _tend = world.up();
    wait_web(port);
    let op = Client::login(port, "op", "op-pass");
    assert_eq!(op.get("/api/session").status, 200);

    let out = world.tend(&["reexec"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    // The same cookie and CSRF token work with the new image: a state-changing request succeeds.
    assert_eq!(op.get("/api/session").status, 200);
    let stop = op.post("/api/services/a/stop", "");
    assert_eq!(stop.status, 200, "{}", stop.body);
    assert!(
        !world
            .path()
            .join("state/web-sessions.handover.json")
            .exists(),
        "session tokens left on disk after the switch"
    );
}
