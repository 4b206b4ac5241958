//! Every text a real service prints, character for character (TELETHON.md §1, §2 and §6).
//!
//! Telethon 1.41.2 messages, the two production scripts' own lines, gunicorn's start and stop lines and
//! the Python tracebacks. This module only builds strings: it never writes, sleeps or decides. A
//! table-driven integration test compares what the emulator prints with the texts of TELETHON.md, so an
//! edit here that drifts from the real services fails the build's tests.

/// Logger of `client/users.py`: flood sleeps and "internal issues".
pub const LOGGER_USERS: &str = "telethon.client.users";
/// Logger of `client/updates.py`: update-loop messages.
pub const LOGGER_UPDATES: &str = "telethon.client.updates";
/// Logger of `network/mtprotosender.py`: connection messages.
pub const LOGGER_SENDER: &str = "telethon.network.mtprotosender";
/// Flask app logger of the media service (request dumps).
pub const LOGGER_MEDIA_WEBHOOK: &str = "send_media_webhook";
/// The data centre the production account talks to.
pub const DC: &str = "149.154.167.51:443/TcpFull";
/// Telethon's `request_retries` default.
pub const REQUEST_RETRIES: u32 = 5;
/// Printed by Python's `threading.excepthook` when the Telethon thread dies.
pub const THREAD_EXCEPTION: &str = "Exception in thread telethon-loop:";
/// The services' start-up line after the first `iter_dialogs()`.
pub const CLIENT_STARTED: &str = "Telethon client started, dialog cache warmed up";
/// Head line of the periodic warm-up.
pub const WARMUP_STARTED: &str = "Periodic cache warmup started...";
/// `str()` of PersistentTimestampOutdatedError as Telethon raises it during update sync.
pub const PTS_OUTDATED: &str =
    "Persistent timestamp outdated (caused by GetChannelDifferenceRequest)";
/// The gunicorn version the systemd units run.
pub const GUNICORN_VERSION: &str = "23.0.0";

pub fn connecting() -> String {
    format!("Connecting to {DC}...")
}

pub fn connected() -> String {
    format!("Connection to {DC} complete!")
}

/// Python's `str(datetime.timedelta(seconds=s))`: `0:00:27`, `1 day, 0:00:00`, `2 days, 3:04:05`.
pub fn python_timedelta(seconds: u64) -> String {
    let days = seconds / 86_400;
    let rest = seconds % 86_400;
    let hms = format!("{}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60);
    match days {
        0 => hms,
        1 => format!("1 day, {hms}"),
        d => format!("{d} days, {hms}"),
    }
}

/// `client/users.py` `_fmt_flood`: the INFO line of an auto-sleep.
pub fn sleeping(seconds: u64, request: &str, early: bool) -> String {
    let early = if early { " early" } else { "" };
    format!(
        "Sleeping{early} for {seconds}s ({}) on {request} flood wait",
        python_timedelta(seconds)
    )
}

/// `str(FloodWaitError)`.
pub fn flood_wait(seconds: u64, request: &str) -> String {
    format!("A wait of {seconds} seconds is required (caused by {request})")
}

/// The WARNING Telethon logs for each failed try of a request that hit a server error.
pub fn internal_issues() -> String {
    format!("Telegram is having internal issues PersistentTimestampOutdatedError: {PTS_OUTDATED}")
}

/// The update loop giving up on a channel's difference (bare channel id, no -100).
pub fn difference_ended(bare_channel: i64) -> String {
    format!(
        "Getting difference for channel updates {bare_channel} caused ValueError; \
         ending getting difference prematurely until server issues are resolved"
    )
}

/// The update loop noticing a ban (bare channel id).
pub fn banned_in(bare_channel: i64) -> String {
    format!("Account is now banned in {bare_channel} so we can no longer fetch updates from it")
}

pub fn warmup_done(entries: usize) -> String {
    format!("Periodic cache warmup done, {entries} entries")
}

pub fn warmup_failed(err: &str) -> String {
    format!("Periodic cache warmup failed: {err}")
}

pub fn mini_refresh_done(added: usize, total: usize) -> String {
    format!("Mini cache refresh: added/updated {added} dialogs, total cache: {total}")
}

pub fn mini_refresh_failed(err: &str) -> String {
    format!("Mini cache refresh failed: {err}")
}

/// send_text's WARNING on a miss.
pub fn cannot_find_chat(chat: i64, entries: usize) -> String {
    format!("Cannot find chat {chat} in cache ({entries} entries) even after mini-refresh.")
}

/// send_text's ValueError on a miss (Russian: "could not find chat … in dialogs").
pub fn chat_not_found(chat: i64) -> String {
    format!("Не удалось найти чат {chat} в диалогах")
}

/// send_media's WARNING on a miss.
pub fn cannot_resolve_entity(uid: i64, entries: usize) -> String {
    format!("Cannot resolve entity uid={uid}, cache has {entries} entries even after mini-refresh.")
}

/// send_media's ValueError on a miss.
pub fn entity_not_resolved(uid: i64) -> String {
    format!(
        "Cannot resolve entity from user_id={uid}. Make sure this session has an existing dialog \
         with the user/channel, or use 'username'."
    )
}

/// Telethon's `_get_entity_from_string` ValueError.
pub fn entity_not_found(given: &str) -> String {
    format!("Cannot find any entity corresponding to \"{given}\"")
}

/// Telethon's ValueError once every retry of a request failed.
pub fn unsuccessful(attempts: u32) -> String {
    format!("Request was unsuccessful {attempts} time(s)")
}

/// The handlers' ERROR line: `send_text failed: ValueError: …` (the message may be empty).
pub fn send_failed(endpoint: &str, class: &str, message: &str) -> String {
    format!("{endpoint} failed: {class}: {message}")
}

/// send_media's request dump through the Flask app logger; RAW is cut at 500 characters.
pub fn media_dump(content_type: Option<&str>, raw: &str) -> String {
    let raw: String = raw.chars().take(500).collect();
    format!(
        "[send_media] CT={} RAW={raw}",
        content_type.unwrap_or("None")
    )
}

pub mod gunicorn {
    //! gunicorn 23.0.0 `arbiter.py` / `workers/base.py` messages (without the `[date] [pid] [LEVEL]` head).

    pub fn starting() -> String {
        format!("Starting gunicorn {}", super::GUNICORN_VERSION)
    }
    pub fn listening(url: &str, pid: u32) -> String {
        format!("Listening at: {url} ({pid})")
    }
    pub fn using_worker() -> String {
        "Using worker: gevent".to_string()
    }
    pub fn booting(pid: u32) -> String {
        format!("Booting worker with pid: {pid}")
    }
    pub fn handling_term() -> String {
        "Handling signal: term".to_string()
    }
    pub fn worker_exiting(pid: u32) -> String {
        format!("Worker exiting (pid: {pid})")
    }
    pub fn shutting_down() -> String {
        "Shutting down: Master".to_string()
    }
}

/// One frame of a Python traceback.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub file: &'static str,
    pub line: u32,
    pub func: &'static str,
    pub code: &'static str,
}

const fn frame(file: &'static str, line: u32, func: &'static str, code: &'static str) -> Frame {
    Frame {
        file,
        line,
        func,
        code,
    }
}

const APP: &str = "/opt/tg-webhooks/app.py";
const THREADING: &str = "/usr/lib/python3.11/threading.py";
const BASE_EVENTS: &str = "/usr/lib/python3.11/asyncio/base_events.py";
const FUTURES: &str = "/usr/lib/python3.11/concurrent/futures/_base.py";
const TL_USERS: &str =
    "/opt/tg-webhooks/venv/lib/python3.11/site-packages/telethon/client/users.py";
const TL_DIALOGS: &str =
    "/opt/tg-webhooks/venv/lib/python3.11/site-packages/telethon/client/dialogs.py";
const TL_ITER: &str = "/opt/tg-webhooks/venv/lib/python3.11/site-packages/telethon/requestiter.py";
const TL_MESSAGES: &str =
    "/opt/tg-webhooks/venv/lib/python3.11/site-packages/telethon/client/messages.py";
const TL_UPLOADS: &str =
    "/opt/tg-webhooks/venv/lib/python3.11/site-packages/telethon/client/uploads.py";
const TL_BASE: &str =
    "/opt/tg-webhooks/venv/lib/python3.11/site-packages/telethon/client/telegrambaseclient.py";
const TL_SENDER: &str =
    "/opt/tg-webhooks/venv/lib/python3.11/site-packages/telethon/network/mtprotosender.py";
const TL_SQLITE: &str =
    "/opt/tg-webhooks/venv/lib/python3.11/site-packages/telethon/sessions/sqlite.py";

/// The Telethon thread running the start-up `iter_dialogs()` until it raises.
pub const FRAMES_THREAD_SWEEP: &[Frame] = &[
    frame(THREADING, 1045, "_bootstrap_inner", "self.run()"),
    frame(THREADING, 982, "run", "self._target(*self._args, **self._kwargs)"),
    frame(APP, 58, "_telethon_thread", "_loop.run_until_complete(_startup())"),
    frame(BASE_EVENTS, 653, "run_until_complete", "return future.result()"),
    frame(APP, 49, "_startup", "async for dialog in _client.iter_dialogs():"),
    frame(TL_ITER, 58, "__anext__", "if await self._load_next_chunk():"),
    frame(TL_DIALOGS, 75, "_load_next_chunk", "r = await self.client(self.request)"),
    frame(TL_USERS, 30, "__call__", "return await self._call(self._sender, request, ordered=ordered, flood_sleep_threshold=flood_sleep_threshold)"),
    frame(TL_USERS, 87, "_call", "result = await future"),
];

/// The Telethon thread losing its connection for good (the crash_thread fault).
pub const FRAMES_THREAD_CONNECTION: &[Frame] = &[
    frame(THREADING, 1045, "_bootstrap_inner", "self.run()"),
    frame(
        THREADING,
        982,
        "run",
        "self._target(*self._args, **self._kwargs)",
    ),
    frame(
        APP,
        60,
        "_telethon_thread",
        "_loop.run_until_complete(_client.run_until_disconnected())",
    ),
    frame(
        BASE_EVENTS,
        653,
        "run_until_complete",
        "return future.result()",
    ),
    frame(
        TL_BASE,
        584,
        "_reconnect",
        "await self._sender.connect(self._connection(...))",
    ),
    frame(TL_SENDER, 122, "connect", "await self._connect()"),
    frame(
        TL_SENDER,
        244,
        "_connect",
        "raise ConnectionError('Connection to Telegram failed {} time(s)'.format(self._retries))",
    ),
];

/// A handler waiting on `run_coroutine_threadsafe(...).result(timeout)` that times out.
pub const FRAMES_HANDLER_TIMEOUT: &[Frame] = &[
    frame(
        APP,
        212,
        "handler",
        "result = run_coro(coro, timeout=timeout)",
    ),
    frame(
        APP,
        71,
        "run_coro",
        "return asyncio.run_coroutine_threadsafe(coro, _loop).result(timeout)",
    ),
    frame(FUTURES, 458, "result", "raise TimeoutError()"),
];

/// A handler whose coroutine raised a ValueError of the script's own (a cache miss).
pub const FRAMES_HANDLER_MISS: &[Frame] = &[
    frame(
        APP,
        212,
        "handler",
        "result = run_coro(coro, timeout=timeout)",
    ),
    frame(
        APP,
        71,
        "run_coro",
        "return asyncio.run_coroutine_threadsafe(coro, _loop).result(timeout)",
    ),
    frame(FUTURES, 456, "result", "return self.__get_result()"),
    frame(FUTURES, 401, "__get_result", "raise self._exception"),
    frame(APP, 131, "_send", "entity = await _resolve(chat)"),
    frame(APP, 104, "_resolve", "raise ValueError(msg)"),
];

/// A handler whose coroutine got an RPC error from `send_message`.
pub const FRAMES_HANDLER_SEND_MESSAGE: &[Frame] = &[
    frame(APP, 212, "handler", "result = run_coro(coro, timeout=timeout)"),
    frame(APP, 71, "run_coro", "return asyncio.run_coroutine_threadsafe(coro, _loop).result(timeout)"),
    frame(FUTURES, 456, "result", "return self.__get_result()"),
    frame(FUTURES, 401, "__get_result", "raise self._exception"),
    frame(APP, 138, "_send", "msg = await _client.send_message(entity, text, **kwargs)"),
    frame(TL_MESSAGES, 905, "send_message", "result = await self(request)"),
    frame(TL_USERS, 30, "__call__", "return await self._call(self._sender, request, ordered=ordered, flood_sleep_threshold=flood_sleep_threshold)"),
    frame(TL_USERS, 92, "_call", "raise last_error"),
];

/// A handler whose coroutine got an RPC error from `send_file`.
pub const FRAMES_HANDLER_SEND_MEDIA: &[Frame] = &[
    frame(APP, 212, "handler", "result = run_coro(coro, timeout=timeout)"),
    frame(APP, 71, "run_coro", "return asyncio.run_coroutine_threadsafe(coro, _loop).result(timeout)"),
    frame(FUTURES, 456, "result", "return self.__get_result()"),
    frame(FUTURES, 401, "__get_result", "raise self._exception"),
    frame(APP, 158, "_send", "msgs = await _client.send_file(entity, files, caption=caption, **kwargs)"),
    frame(TL_UPLOADS, 401, "send_file", "return await self._send_album(entity, file, caption=caption, **kwargs)"),
    frame(TL_USERS, 30, "__call__", "return await self._call(self._sender, request, ordered=ordered, flood_sleep_threshold=flood_sleep_threshold)"),
    frame(TL_USERS, 92, "_call", "raise last_error"),
];

/// The worker importing the app while another process holds the session database.
pub const FRAMES_IMPORT_SESSION: &[Frame] = &[
    frame(
        APP,
        24,
        "<module>",
        "_client = TelegramClient(SESSION, API_ID, API_HASH)",
    ),
    frame(TL_BASE, 289, "__init__", "session = SQLiteSession(session)"),
    frame(
        TL_SQLITE,
        47,
        "__init__",
        "c.execute('select name from sqlite_master '",
    ),
];

/// The exception line that ends a traceback: `module.Class: message`, or just `Class` when the message
/// is empty (Python prints `TimeoutError`, not `TimeoutError: `).
pub fn exception_line(qualname: &str, message: &str) -> String {
    if message.is_empty() {
        qualname.to_string()
    } else {
        format!("{qualname}: {message}")
    }
}

/// `traceback.format_exc()` for the given frames and exception line (no trailing newline).
pub fn traceback(frames: &[Frame], exception_line: &str) -> String {
    let mut out = String::from("Traceback (most recent call last):\n");
    for f in frames {
        out.push_str(&format!(
            "  File \"{}\", line {}, in {}\n    {}\n",
            f.file, f.line, f.func, f.code
        ));
    }
    out.push_str(exception_line);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timedelta_matches_python() {
        let table = [
            (0, "0:00:00"),
            (27, "0:00:27"),
            (60, "0:01:00"),
            (3600, "1:00:00"),
            (86_399, "23:59:59"),
            (86_400, "1 day, 0:00:00"),
            (2 * 86_400 + 3 * 3600 + 4 * 60 + 5, "2 days, 3:04:05"),
        ];
        for (secs, want) in table {
            assert_eq!(python_timedelta(secs), want, "timedelta({secs})");
        }
    }

    #[test]
    fn traceback_ends_with_exception_line_and_empty_message_drops_colon() {
        let tb = traceback(FRAMES_HANDLER_TIMEOUT, &exception_line("TimeoutError", ""));
        assert!(tb.starts_with("Traceback (most recent call last):\n  File \""));
        assert!(tb.ends_with("\n    raise TimeoutError()\nTimeoutError"));
        assert_eq!(exception_line("ValueError", "x"), "ValueError: x");
    }

    #[test]
    fn media_dump_cuts_raw_at_500_characters() {
        let raw = "й".repeat(600);
        let line = media_dump(None, &raw);
        assert_eq!(
            line.chars().count(),
            "[send_media] CT=None RAW=".len() + 500
        );
    }
}
