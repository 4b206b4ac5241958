//! The on-disk line format, `2026-11-28T16:44:16.123Z out <text>`, and the timestamps that go into it.
//!
//! Owns formatting and parsing only; it must not do I/O. The writer formats the timestamp itself (cached
//! per distinct millisecond) but uses the same pieces as [`format_line`], so the two cannot drift apart.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};

use super::{LogLine, Stream};

impl Stream {
    /// The tag used on disk and in the CLI: `out`, `err` or `tend`.
    pub fn tag(self) -> &'static str {
        match self {
            Stream::Stdout => "out",
            Stream::Stderr => "err",
            Stream::Tend => "tend",
        }
    }

    /// Inverse of [`Stream::tag`].
    pub fn from_tag(tag: &str) -> Option<Stream> {
        match tag {
            "out" => Some(Stream::Stdout),
            "err" => Some(Stream::Stderr),
            "tend" => Some(Stream::Tend),
            _ => None,
        }
    }
}

/// The current time truncated to milliseconds, the precision kept on disk. Truncating at capture time
/// makes a line in the ring equal to the same line read back from the file.
pub(crate) fn now_millis() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// RFC 3339 with milliseconds and `Z`, e.g. `2026-11-28T16:44:16.123Z`.
pub(crate) fn format_timestamp(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Formats one line as stored on disk, without the trailing newline.
pub fn format_line(line: &LogLine) -> String {
    let ts = format_timestamp(line.ts);
    let tag = line.stream.tag();
    let mut out = String::with_capacity(ts.len() + tag.len() + line.text.len() + 2);
    out.push_str(&ts);
    out.push(' ');
    out.push_str(tag);
    out.push(' ');
    out.push_str(&line.text);
    out
}

/// Parses one on-disk line (a trailing `\n` is tolerated). Returns `None` for anything that is not in
/// the format written by [`format_line`], e.g. lines appended to the file by hand.
pub fn parse_line(s: &str) -> Option<LogLine> {
    let s = s.strip_suffix('\n').unwrap_or(s);
    let (ts, rest) = s.split_once(' ')?;
    let ts = DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc);
    // Empty text is written as `ts out ` (trailing space); accept it without the space too, in case
    // an editor trimmed it.
    let (tag, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let stream = Stream::from_tag(tag)?;
    Some(LogLine {
        ts,
        stream,
        text: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(ms).single().unwrap()
    }

    #[test]
    fn format_matches_the_documented_shape() {
        let line = LogLine {
            ts: Utc
                .with_ymd_and_hms(2026, 11, 28, 16, 44, 16)
                .unwrap()
                .checked_add_signed(chrono::Duration::milliseconds(123))
                .unwrap(),
            stream: Stream::Stdout,
            text: "hello world".into(),
        };
        assert_eq!(
            format_line(&line),
            "2026-11-28T16:44:16.123Z out hello world"
        );
    }

    #[test]
    fn parse_inverts_format_for_every_stream_and_awkward_text() {
        let texts = [
            "",
            " leading space",
            "trailing space ",
            "  two  spaces  ",
            "tabs\tand\rcarriage returns inside",
            "ERROR:send_text_bot:send_text failed: ValueError: Не удалось найти чат -1003519196381",
            "emoji 🚀 and \u{FFFD} replacement",
            "2026-11-28T16:44:16.123Z err looks like a line itself",
        ];
        let streams = [Stream::Stdout, Stream::Stderr, Stream::Tend];
        for (i, text) in texts.iter().enumerate() {
            for (j, stream) in streams.iter().enumerate() {
                // Millisecond timestamps around epoch, a leap year and 2026, including .000 and .999.
                for ms in [
                    0,
                    999,
                    951_782_400_001,
                    1_795_884_256_123,
                    1_795_884_256_000,
                ] {
                    let line = LogLine {
                        ts: at(ms + (i * 3 + j) as i64),
                        stream: *stream,
                        text: (*text).to_owned(),
                    };
                    let formatted = format_line(&line);
                    assert!(!formatted.contains('\n'));
                    assert_eq!(
                        parse_line(&formatted).as_ref(),
                        Some(&line),
                        "{formatted:?}"
                    );
                    assert_eq!(parse_line(&format!("{formatted}\n")), Some(line));
                }
            }
        }
    }

    #[test]
    fn parse_accepts_missing_space_after_tag_as_empty_text() {
        let line = parse_line("2026-11-28T16:44:16.123Z tend").unwrap();
        assert_eq!(line.stream, Stream::Tend);
        assert_eq!(line.text, "");
    }

    #[test]
    fn parse_rejects_lines_not_in_the_format() {
        for bad in [
            "",
            "hello",
            "INFO:send_text_bot:Telethon client started",
            "2026-11-28 16:44:16.123 out text",
            "2026-11-28T16:44:16.123Z stdout text",
            "2026-11-28T16:44:16.123Z",
            "2026-13-28T16:44:16.123Z out text",
        ] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn now_millis_has_no_sub_millisecond_part() {
        let ts = now_millis();
        assert_eq!(ts.timestamp_subsec_nanos() % 1_000_000, 0);
        assert_eq!(
            parse_line(&format_line(&LogLine {
                ts,
                stream: Stream::Tend,
                text: "x".into()
            }))
            .unwrap()
            .ts,
            ts
        );
    }
}
