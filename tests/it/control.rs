//! The control socket: protocol robustness, permissions, absent and stale daemons, a second tend.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::helper::*;

const SERVICE: &str = "[services.web]\ncommand = \"sleep 1000\"\nstart_grace = \"50ms\"\n";

fn ask(
    stream: &mut UnixStream,
    reader: &mut BufReader<UnixStream>,
    line: &str,
) -> serde_json::Value {
    stream.write_all(line.as_bytes()).unwrap();
    stream.write_all(b"\n").unwrap();
    let mut reply = String::new();
    reader.read_line(&mut reply).unwrap();
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("reply {reply:?} is not JSON: {e}"))
}

#[test]
fn malformed_requests_get_error_replies_and_the_daemon_lives_on() {
    let world = World::new(SERVICE);
    let _tend = world.up();
    let mut stream = UnixStream::connect(world.socket()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let cases = [
        ("this is not json", "bad_request"),
        ("[]", "bad_request"),
        (r#"{"cmd":"status"}"#, "bad_request"),
        (r#"{"v":99,"cmd":"status"}"#, "unsupported_version"),
        (r#"{"v":1,"cmd":"format_disk"}"#, "bad_request"),
        (
            r#"{"v":1,"cmd":"stop","names":["ghost"]}"#,
            "unknown_service",
        ),
        (r#"{"v":1,"cmd":"stop","names":[]}"#, "bad_request"),
        ("\u{0}\u{1}\u{2}", "bad_request"),
        ("", "bad_request"),
        (r#"{"v":1,"cmd":"ping","extra":true}"#, "bad_request"),
        (r#"{"v":"one","cmd":"ping"}"#, "bad_request"),
    ];
    for (line, code) in cases {
        let reply = ask(&mut stream, &mut reader, line);
        assert_eq!(reply["reply"], "error", "{line}: {reply}");
        assert_eq!(reply["code"], code, "{line}: {reply}");
        assert_eq!(reply["v"], 1);
    }
    // The same connection still works.
    let reply = ask(&mut stream, &mut reader, r#"{"v":1,"cmd":"ping"}"#);
    assert_eq!(reply["reply"], "pong");
    // An oversized request is refused without reading it all into memory.
    let huge = format!(
        "{{\"v\":1,\"cmd\":\"status\",\"names\":[\"{}\"]}}",
        "x".repeat(200_000)
    );
    // The daemon answers and hangs up after 64 KiB, so the rest of the write may fail with EPIPE.
    let _ = stream.write_all(huge.as_bytes());
    let mut reply = String::new();
    reader.read_line(&mut reply).unwrap();
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["code"], "bad_request");
    assert!(
        reply["message"].as_str().unwrap().contains("longer than"),
        "{reply}"
    );
    // And the daemon answers new clients.
    assert!(world.tend(&["status"]).status.success());
}

#[test]
fn socket_is_private_by_default() {
    let world = World::new(SERVICE);
    let _tend = world.up();
    let mode = std::fs::metadata(world.socket())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn commands_without_a_daemon_say_so() {
    let world = World::new(SERVICE);
    let out = world.tend(&["status"]);
    assert_eq!(code(&out), 3);
    let text = stderr(&out);
    assert!(text.contains("tend is not running"), "{text}");
    assert!(text.contains("tend up"), "{text}");
}

#[test]
fn stale_socket_is_replaced_and_a_second_tend_refuses() {
    let world = World::new(SERVICE);
    std::fs::create_dir_all(world.path().join("state")).unwrap();
    // A socket file with nobody behind it, as a killed daemon leaves.
    drop(std::os::unix::net::UnixListener::bind(world.socket()).unwrap());
    assert!(world.socket().exists());
    let _tend = world.up();
    assert!(world.tend(&["status"]).status.success());

    let second = std::process::Command::new(TEND)
        .args(["-c", world.config_path().to_str().unwrap(), "up"])
        .output()
        .unwrap();
    assert_eq!(code(&second), 1);
    let text = stderr(&second);
    assert!(text.contains("another tend is already running"), "{text}");
    // The first one is unharmed.
    assert!(world.tend(&["status"]).status.success());
}
