//! Tests of the whole log path with real child processes (`sh -c ...`), real files in a per-test temp
//! dir, and deadlines instead of sleeps. The pure parts (splitting, format, reading backwards) are
//! tested next to their code.

use std::future::Future;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::time::timeout;

use super::tail::{log_path, rotated_files, rotated_path};
use super::*;

/// Generous upper bound for anything to happen; tests normally finish far below it.
const DEADLINE: Duration = Duration::from_secs(30);

fn settings(dir: &Path, max_size: u64, keep: usize, ring_lines: usize) -> LogSettings {
    LogSettings {
        dir: dir.to_path_buf(),
        name: "svc".into(),
        max_size,
        keep,
        ring_lines,
    }
}

fn spawn_sh(script: &str) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sh")
}

/// Runs `script` with both pipes captured; returns once it exited and its output was drained.
async fn run_captured(log: &ServiceLog, script: &str) -> ExitStatus {
    let mut child = spawn_sh(script);
    let capture = log.capture(child.stdout.take(), child.stderr.take());
    let status = timeout(DEADLINE, child.wait())
        .await
        .expect("child exits before the deadline")
        .expect("wait for child");
    timeout(DEADLINE, capture)
        .await
        .expect("capture drains before the deadline");
    status
}

/// Polls `cond` until it holds; panics naming `what` at the deadline.
async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + DEADLINE;
    while !cond().await {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every line of every file of `svc`, oldest file first. Panics on a line that does not parse: that
/// would be a split or corrupted line.
fn lines_on_disk(dir: &Path) -> Vec<LogLine> {
    let current = log_path(dir, "svc");
    let mut files: Vec<_> = rotated_files(dir, "svc")
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    files.reverse();
    files.push(current);
    let mut lines = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => panic!("read {}: {err}", file.display()),
        };
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends mid-line",
            file.display()
        );
        for raw in text.lines() {
            lines.push(
                parse_line(raw)
                    .unwrap_or_else(|| panic!("unparsable line {raw:?} in {}", file.display())),
            );
        }
    }
    lines
}

fn texts(lines: &[LogLine], stream: Stream) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.stream == stream)
        .map(|l| l.text.clone())
        .collect()
}

fn numbers(from: usize, to: usize) -> Vec<String> {
    (from..=to).map(|i| i.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_on_both_streams_keeps_every_line_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let max_size = 1 << 20;
    let log = ServiceLog::open(settings(dir.path(), max_size, 100, 5000)).unwrap();
    let status = run_captured(&log, "seq 1 200000 & seq 1 200000 >&2; wait").await;
    assert!(status.success());
    log.flush().await.unwrap();

    let lines = lines_on_disk(dir.path());
    let expected = numbers(1, 200_000);
    assert_eq!(texts(&lines, Stream::Stdout), expected);
    assert_eq!(texts(&lines, Stream::Stderr), expected);
    assert_eq!(lines.len(), 400_000);
    let rotated = rotated_files(dir.path(), "svc").unwrap();
    assert!(
        rotated.len() >= 5,
        "14 MB at 1 MiB per file must rotate, got {} files",
        rotated.len()
    );
    for (_, file) in rotated {
        assert!(std::fs::metadata(&file).unwrap().len() <= max_size);
    }
    // The ring holds the newest `ring_lines` lines of both streams, exactly as on disk.
    let ring = log.tail(10_000, None).await;
    assert_eq!(ring, lines[lines.len() - 5000..]);
    let newest = lines.last().unwrap();
    let same_stream = log.tail(3, Some(newest.stream)).await;
    assert_eq!(
        texts(&same_stream, newest.stream),
        numbers(199_998, 200_000)
    );
}

#[tokio::test]
async fn rotation_keeps_exactly_keep_files_and_never_splits_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let max_size = 300;
    let log = ServiceLog::open(settings(dir.path(), max_size, 3, 100)).unwrap();
    run_captured(
        &log,
        "i=1; while [ $i -le 200 ]; do echo \"line number $i\"; i=$((i+1)); done",
    )
    .await;
    log.flush().await.unwrap();

    let path = log_path(dir.path(), "svc");
    let indexes: Vec<usize> = rotated_files(dir.path(), "svc")
        .unwrap()
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert_eq!(indexes, vec![1, 2, 3]);
    for file in [
        path.clone(),
        rotated_path(&path, 1),
        rotated_path(&path, 2),
        rotated_path(&path, 3),
    ] {
        let size = std::fs::metadata(&file).unwrap().len();
        assert!(
            size > 0 && size <= max_size,
            "{}: {size} bytes",
            file.display()
        );
    }
    // What is left is the newest part of the output, contiguous, every line whole.
    let kept = texts(&lines_on_disk(dir.path()), Stream::Stdout);
    let first: usize = kept[0]
        .strip_prefix("line number ")
        .unwrap()
        .parse()
        .unwrap();
    let expected: Vec<String> = (first..=200).map(|i| format!("line number {i}")).collect();
    assert_eq!(kept, expected);
    // Rotated files are full: the next line (45 bytes) would not have fit.
    for index in 1..=3 {
        let size = std::fs::metadata(rotated_path(&path, index)).unwrap().len();
        assert!(
            size + 45 > max_size,
            "NAME.log.{index} rotated early at {size} bytes"
        );
    }
}

#[tokio::test]
async fn a_line_larger_than_max_size_goes_whole_into_a_fresh_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = ServiceLog::open(settings(dir.path(), 100, 5, 100)).unwrap();
    run_captured(
        &log,
        "echo short; head -c 500 /dev/zero | tr '\\0' x; echo; echo after",
    )
    .await;
    log.flush().await.unwrap();

    let path = log_path(dir.path(), "svc");
    let file_texts = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| parse_line(l).unwrap().text)
            .collect()
    };
    assert_eq!(file_texts(&rotated_path(&path, 2)), vec!["short"]);
    assert_eq!(file_texts(&rotated_path(&path, 1)), vec!["x".repeat(500)]);
    assert_eq!(file_texts(&path), vec!["after"]);
}

#[tokio::test]
async fn a_100_kb_line_arrives_complete_as_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let log = ServiceLog::open(settings(dir.path(), 10 << 20, 3, 100)).unwrap();
    // 100,000 bytes of 'x' and 100,000 bytes of 'é' (2 bytes each), each one line.
    run_captured(
        &log,
        "head -c 100000 /dev/zero | tr '\\0' x; echo; yes é | head -n 50000 | tr -d '\\n'; echo; echo end",
    )
    .await;
    log.flush().await.unwrap();

    let lines = texts(&lines_on_disk(dir.path()), Stream::Stdout);
    let pieces = 100_000usize.div_ceil(MAX_LINE_BYTES);
    assert_eq!(lines.len(), 2 * pieces + 1);
    let (ascii, rest) = lines.split_at(pieces);
    let (accented, end) = rest.split_at(pieces);
    assert!(ascii[..pieces - 1]
        .iter()
        .all(|p| p.len() == MAX_LINE_BYTES));
    assert_eq!(ascii.concat(), "x".repeat(100_000));
    assert!(accented
        .iter()
        .all(|p| p.len() <= MAX_LINE_BYTES && !p.contains('\u{FFFD}')));
    assert_eq!(accented.concat(), "é".repeat(50_000));
    assert_eq!(end, ["end"]);
    // The ring got the same pieces as the file.
    assert_eq!(texts(&log.tail(100, None).await, Stream::Stdout), lines);
}

#[tokio::test]
async fn invalid_utf8_crlf_and_a_partial_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = ServiceLog::open(settings(dir.path(), 10 << 20, 3, 100)).unwrap();
    run_captured(
        &log,
        "printf 'ok\\377\\376bad\\r\\nplain\\n\\nno newline at end'; printf 'err partial' >&2",
    )
    .await;
    log.flush().await.unwrap();

    let lines = lines_on_disk(dir.path());
    assert_eq!(
        texts(&lines, Stream::Stdout),
        vec!["ok\u{FFFD}\u{FFFD}bad", "plain", "", "no newline at end"]
    );
    assert_eq!(texts(&lines, Stream::Stderr), vec!["err partial"]);
    assert_eq!(log.tail(10, None).await.len(), 5);
}

#[tokio::test]
async fn a_crashing_service_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = ServiceLog::open(settings(dir.path(), 10 << 20, 3, 100)).unwrap();
    let script = "echo 'ERROR:send_text_bot:send_text failed' >&2; \
                  printf 'Traceback (most recent call last):\\n  File \"x.py\", line 1, in f\\n' >&2; \
                  seq 1 5000; printf 'half a line'; kill -9 $$";
    let status = run_captured(&log, script).await;
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    log.marker("exited (signal 9)").await;
    log.flush().await.unwrap();

    let lines = lines_on_disk(dir.path());
    let mut expected_out = numbers(1, 5000);
    expected_out.push("half a line".into());
    assert_eq!(texts(&lines, Stream::Stdout), expected_out);
    assert_eq!(
        texts(&lines, Stream::Stderr),
        vec![
            "ERROR:send_text_bot:send_text failed",
            "Traceback (most recent call last):",
            "  File \"x.py\", line 1, in f"
        ]
    );
    assert_eq!(lines.last().unwrap().text, "exited (signal 9)");
}

#[tokio::test]
async fn markers_come_after_the_runs_lines_in_file_ring_and_broadcast() {
    let dir = tempfile::tempdir().unwrap();
    let log = ServiceLog::open(settings(dir.path(), 10 << 20, 3, 100_000)).unwrap();
    let mut rx = log.subscribe();
    log.marker("spawned pid 1 (reason: start)").await;
    // Fewer lines than the broadcast capacity, so the receiver can read them all afterwards.
    run_captured(&log, "seq 1 1500 & seq 1 1500 >&2; wait").await;
    log.marker("exited with code 0").await;
    log.flush().await.unwrap();

    let on_disk = lines_on_disk(dir.path());
    assert_eq!(on_disk.len(), 3002);
    assert_eq!(
        on_disk.first().unwrap().text,
        "spawned pid 1 (reason: start)"
    );
    assert_eq!(on_disk.last().unwrap().text, "exited with code 0");
    assert_eq!(on_disk.last().unwrap().stream, Stream::Tend);
    assert_eq!(
        log.tail(3002, None).await,
        on_disk,
        "ring and file agree line for line"
    );

    let mut published = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(line) => published.push(LogLine::clone(&line)),
            Err(TryRecvError::Empty) => break,
            Err(err) => panic!("broadcast: {err}"),
        }
    }
    assert_eq!(
        published, on_disk,
        "the broadcast saw every line, in file order"
    );
    // Timestamps never go backwards in file order within one stream.
    for stream in [Stream::Stdout, Stream::Stderr] {
        let ts: Vec<_> = on_disk
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.ts)
            .collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]));
    }
}

#[tokio::test]
async fn tail_right_after_reopening_comes_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    // Small files so that the reloaded ring spans rotated files.
    let log = ServiceLog::open(settings(dir.path(), 400, 20, 50)).unwrap();
    run_captured(&log, "seq 1 100; echo oops >&2").await;
    log.marker("stopped").await;
    let before = log.tail(50, None).await;
    log.close().await;
    assert!(rotated_files(dir.path(), "svc").unwrap().len() >= 3);

    let reopened = ServiceLog::open(settings(dir.path(), 400, 20, 50)).unwrap();
    let after = reopened.tail(1000, None).await;
    assert_eq!(after.len(), 50);
    assert_eq!(
        after, before,
        "same lines, streams and millisecond timestamps"
    );
    assert_eq!(after.last().unwrap().text, "stopped");
    assert_eq!(
        texts(
            &reopened.tail(5, Some(Stream::Stderr)).await,
            Stream::Stderr
        ),
        vec!["oops"]
    );
    // New lines continue after the reloaded ones.
    reopened.marker("started again").await;
    let newest = reopened.tail(2, None).await;
    assert_eq!(newest[0].text, "stopped");
    assert_eq!(newest[1].text, "started again");
}

#[tokio::test]
async fn read_tail_reads_across_rotated_files_written_by_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let log = ServiceLog::open(settings(dir.path(), 500, 50, 10)).unwrap();
    run_captured(&log, "seq 1 300").await;
    log.flush().await.unwrap();
    assert!(rotated_files(dir.path(), "svc").unwrap().len() > 5);

    let all = lines_on_disk(dir.path());
    assert_eq!(texts(&all, Stream::Stdout), numbers(1, 300));
    let last_120 = read_tail(dir.path(), "svc", 120).unwrap();
    assert_eq!(last_120, all[all.len() - 120..]);
    assert_eq!(read_tail(dir.path(), "svc", 10_000).unwrap(), all);
    assert!(read_tail(dir.path(), "svc", 0).unwrap().is_empty());
}

#[tokio::test]
async fn set_limits_prunes_rotated_files_and_changes_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let log = ServiceLog::open(settings(dir.path(), 200, 5, 10)).unwrap();
    run_captured(&log, "seq 1 200").await;
    log.flush().await.unwrap();
    assert_eq!(rotated_files(dir.path(), "svc").unwrap().len(), 5);

    log.set_limits(10 << 20, 2);
    log.flush().await.unwrap();
    let indexes: Vec<usize> = rotated_files(dir.path(), "svc")
        .unwrap()
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert_eq!(indexes, vec![1, 2]);
    // The larger size takes effect: no more rotations for a few more lines.
    run_captured(&log, "seq 201 400").await;
    log.flush().await.unwrap();
    assert_eq!(rotated_files(dir.path(), "svc").unwrap().len(), 2);
    assert_eq!(
        texts(&read_tail(dir.path(), "svc", 200).unwrap(), Stream::Stdout),
        numbers(201, 400)
    );
}

#[tokio::test]
async fn a_removed_log_file_or_directory_is_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let log = ServiceLog::open(settings(dir.path(), 10 << 20, 3, 10)).unwrap();
    log.marker("before").await;
    log.flush().await.unwrap();
    std::fs::remove_file(log.path()).unwrap();
    // Lines written between the removal and the writer noticing it may go to the removed file (they
    // stay in the ring); an explicit flush always notices.
    log.marker("maybe lost").await;
    log.flush().await.unwrap();
    assert!(
        log.path().exists(),
        "flush notices the removal and starts a new file"
    );
    log.marker("after").await;
    log.flush().await.unwrap();
    let texts: Vec<String> = lines_on_disk(dir.path())
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(texts.last().unwrap(), "after");
    assert!(!texts.contains(&"before".to_string()));

    std::fs::remove_dir_all(dir.path()).unwrap();
    log.marker("maybe lost too").await;
    log.flush().await.unwrap();
    log.marker("dir recreated").await;
    log.flush().await.unwrap();
    assert_eq!(
        lines_on_disk(dir.path()).last().unwrap().text,
        "dir recreated"
    );
    assert_eq!(log.tail(1, None).await[0].text, "dir recreated");
}

#[tokio::test]
async fn write_errors_are_reported_but_never_stop_capture() {
    let dir = tempfile::tempdir().unwrap();
    let log = ServiceLog::open(settings(dir.path(), 10 << 20, 3, 100)).unwrap();
    let mut rx = log.subscribe();
    log.marker("ok").await;
    log.flush().await.unwrap();
    // Make NAME.log impossible to open: a directory in its place.
    std::fs::remove_file(log.path()).unwrap();
    std::fs::create_dir(log.path()).unwrap();
    run_captured(&log, "echo while broken").await;
    let err = log
        .flush()
        .await
        .expect_err("writing into a directory must fail");
    assert!(matches!(err, LogError::Write { .. }), "{err:?}");
    assert!(err.to_string().contains("svc.log"), "{err}");
    // Lines still reach the ring and subscribers.
    assert_eq!(log.tail(1, None).await[0].text, "while broken");
    assert_eq!(rx.recv().await.unwrap().text, "ok");
    assert_eq!(rx.recv().await.unwrap().text, "while broken");

    std::fs::remove_dir(log.path()).unwrap();
    run_captured(&log, "echo repaired").await;
    log.flush()
        .await
        .expect("error was reported once and writing works again");
    let texts: Vec<String> = lines_on_disk(dir.path())
        .into_iter()
        .map(|l| l.text)
        .collect();
    // "while broken" either went to the removed file (still open) before the swap was noticed, or
    // was still buffered then and kept in memory until the file could be opened again: never twice.
    assert!(
        texts == ["repaired"] || texts == ["while broken", "repaired"],
        "{texts:?}"
    );
    assert!(log.write_failure().is_none());
}

#[tokio::test]
async fn abort_ends_a_capture_whose_pipe_never_closes() {
    let dir = tempfile::tempdir().unwrap();
    let log = ServiceLog::open(settings(dir.path(), 10 << 20, 3, 100)).unwrap();
    // The shell's pipe stays open as long as `sleep` runs, like a grandchild holding it. One printf is
    // one write, so once "hi" is visible the partial line is already held by the reader.
    let mut child = spawn_sh("printf 'hi\\nno newline yet'; exec sleep 60");
    let capture = log.capture(child.stdout.take(), child.stderr.take());
    wait_for("the first line", || async {
        !log.tail(1, None).await.is_empty()
    })
    .await;
    assert!(!capture.is_drained());
    capture.abort();
    timeout(DEADLINE, capture)
        .await
        .expect("abort ends the capture");
    let lines = texts(&log.tail(10, None).await, Stream::Stdout);
    assert_eq!(
        lines,
        vec!["hi", "no newline yet"],
        "the held partial line is delivered on abort"
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn an_existing_file_without_final_newline_stays_parseable() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(dir.path(), "svc");
    std::fs::write(&path, "2026-11-28T16:44:16.123Z out cut off by a cra").unwrap();
    let log = ServiceLog::open(settings(dir.path(), 10 << 20, 3, 100)).unwrap();
    assert_eq!(log.tail(10, None).await[0].text, "cut off by a cra");
    log.marker("tend restarted").await;
    log.flush().await.unwrap();
    let texts: Vec<String> = lines_on_disk(dir.path())
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(texts, vec!["cut off by a cra", "tend restarted"]);
}

#[tokio::test]
async fn close_writes_everything_then_refuses_more() {
    let dir = tempfile::tempdir().unwrap();
    let log = ServiceLog::open(settings(dir.path(), 10 << 20, 3, 100)).unwrap();
    let other_handle = log.clone();
    run_captured(&log, "seq 1 1000").await;
    other_handle.marker("multi\r\nline\nmarker").await;
    log.close().await;
    let lines = lines_on_disk(dir.path());
    assert_eq!(lines.len(), 1003, "close flushes what was accepted");
    assert_eq!(texts(&lines, Stream::Tend), vec!["multi", "line", "marker"]);

    assert!(matches!(
        other_handle.flush().await,
        Err(LogError::Closed { .. })
    ));
    assert!(other_handle.tail(10, None).await.is_empty());
    other_handle.marker("ignored").await;
    other_handle.close().await; // a second close returns too
    assert_eq!(lines_on_disk(dir.path()).len(), 1003);
}

#[tokio::test]
async fn capture_reader_and_either_pipe_missing() {
    let dir = tempfile::tempdir().unwrap();
    let log = ServiceLog::open(settings(dir.path(), 10 << 20, 3, 100)).unwrap();
    log.capture_reader(&b"from memory\nsecond"[..], Stream::Stderr)
        .await;
    let mut child = spawn_sh("echo only stdout; echo lost >&2");
    log.capture(child.stdout.take(), None).await;
    log.capture(None, None).await; // nothing to read resolves at once
    child.wait().await.unwrap();
    let lines = log.tail(10, None).await;
    assert_eq!(texts(&lines, Stream::Stderr), vec!["from memory", "second"]);
    assert_eq!(texts(&lines, Stream::Stdout), vec!["only stdout"]);
}

#[test]
fn open_rejects_names_that_are_not_file_names() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["", ".", "..", "a/b", "../escape"] {
        let mut s = settings(dir.path(), 100, 1, 1);
        s.name = name.into();
        let err = ServiceLog::open(s).unwrap_err();
        assert!(
            matches!(err, LogError::InvalidName { .. }),
            "{name:?}: {err:?}"
        );
    }
}

#[test]
fn open_reports_an_uncreatable_directory() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    let err = ServiceLog::open(settings(&blocker.join("logs"), 100, 1, 1)).unwrap_err();
    assert!(matches!(err, LogError::CreateDir { .. }), "{err:?}");
    assert!(err.to_string().contains("logs"), "{err}");
}

/// Throughput against plain redirection (`seq > file`). Not part of the normal run; the lead's
/// benchmarks own the real numbers: `cargo test --release --lib logs::tests::throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_compared_to_redirecting_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let n: u64 = 5_000_000;
    let plain = dir.path().join("plain.out");
    let children_before = cpu_time(libc::RUSAGE_CHILDREN);
    let started = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("seq 1 {n} > {}", plain.display()))
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let redirect = started.elapsed();
    println!(
        "seq > file: CPU time {:?}",
        cpu_time(libc::RUSAGE_CHILDREN) - children_before
    );

    let log = ServiceLog::open(settings(&dir.path().join("logs"), 1 << 30, 2, 5000)).unwrap();
    let cpu_before = cpu_time(libc::RUSAGE_SELF);
    let started = Instant::now();
    run_captured(&log, &format!("seq 1 {n}")).await;
    log.flush().await.unwrap();
    let captured = started.elapsed();
    let tend_cpu = cpu_time(libc::RUSAGE_SELF) - cpu_before;
    let ratio = redirect.as_secs_f64() / captured.as_secs_f64();
    println!(
        "{n} lines: redirect {redirect:?}, through tend {captured:?} ({:.0}% of redirect speed); \
         tend's own CPU time {tend_cpu:?}",
        ratio * 100.0
    );
    assert_eq!(log.tail(1, None).await[0].text, n.to_string());

    // Again with a subscriber draining the broadcast, as the log-pattern checks will.
    let mut rx = log.subscribe();
    let counter = tokio::spawn(async move {
        let (mut received, mut skipped) = (0u64, 0u64);
        loop {
            match rx.recv().await {
                Ok(_) => received += 1,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => skipped += k,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
            if received + skipped == n {
                break;
            }
        }
        (received, skipped)
    });
    let started = Instant::now();
    run_captured(&log, &format!("seq 1 {n}")).await;
    log.flush().await.unwrap();
    let with_subscriber = started.elapsed();
    let (received, skipped) = timeout(DEADLINE, counter).await.unwrap().unwrap();
    println!(
        "with a subscriber: {with_subscriber:?} ({:.0}% of redirect speed); it received {received} lines, lagged over {skipped}",
        redirect.as_secs_f64() / with_subscriber.as_secs_f64() * 100.0
    );
    assert_eq!(
        received + skipped,
        n,
        "every line is either received or reported as skipped"
    );
}

/// User + system CPU time of this process (`RUSAGE_SELF`) or its waited-for children.
fn cpu_time(who: libc::c_int) -> Duration {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(who, &mut usage), 0);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Unmounts (lazily) on drop.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_lines_counted_and_marked_never_silently() {
    const N: usize = 40_000;
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&mnt)
        .output();
    match mounted {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs here (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return;
        }
        Err(err) => {
            eprintln!("SKIPPED: cannot run mount: {err}");
            return;
        }
    }
    let _unmount = Mounted(mnt.clone());
    let log = ServiceLog::open(settings(&mnt, 64 * 1024 * 1024, 1, 100)).unwrap();
    // Fill the disk to the last byte.
    let filler = mnt.join("filler");
    let full = std::fs::write(&filler, vec![0u8; 8 * 1024 * 1024]).unwrap_err();
    assert_eq!(full.raw_os_error(), Some(libc::ENOSPC));

    for i in 0..N {
        log.try_marker(format!("line {i:05} of the burst while the disk is full"));
    }
    assert!(
        log.flush().await.is_err(),
        "a failed write must be reported"
    );
    let during = log
        .write_failure()
        .expect("the condition is exposed while it lasts");
    assert_eq!(during.error, "no space left on device");
    assert!(
        during.lines_lost > 0 && during.lines_waiting > 0,
        "{during:?}"
    );

    // Space again: the next lines bring the marker and the kept lines to the file.
    std::fs::remove_file(&filler).unwrap();
    let mut after = 0;
    wait_for("the log to recover", || {
        after += 1;
        log.try_marker(format!("after {after}"));
        let recovered = log.write_failure().is_none();
        async move { recovered }
    })
    .await;
    log.flush().await.unwrap();
    let text = std::fs::read_to_string(log_path(&mnt, "svc")).unwrap();
    let markers: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" bytes lost: "))
        .collect();
    assert_eq!(markers.len(), 1, "one marker: {markers:?}");
    let marker = markers[0];
    assert!(
        marker.contains("lines, ") && marker.contains("bytes lost: no space left on device, from "),
        "{marker}"
    );
    let lost: usize = marker
        .split(" tend ")
        .nth(1)
        .and_then(|m| m.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    let kept = text.lines().filter(|l| l.contains(" tend line ")).count();
    assert_eq!(kept + lost, N, "every line written or counted: {marker}");
    // The kept lines are the newest, in order, ending with the last of the burst.
    let last_kept = text.lines().rfind(|l| l.contains(" tend line ")).unwrap();
    assert!(
        last_kept.contains(&format!("line {:05}", N - 1)),
        "{last_kept}"
    );
    log.close().await;
}
