//! Strict human durations ("500ms", "10s", "15m", "1h30m") and sizes ("10MB", "512KiB").
//!
//! Written by hand on purpose: lenient parsers accept "10 minutes" or "10" and guess, and a guessed
//! restart spacing is exactly the kind of silent mistake that earns a flood wait. These functions only
//! parse text; where a value came from and how to report it is `validate`'s business.

use std::time::Duration;

/// The error text for a bad duration; the validator prefixes it with the offending `key = value`.
pub(crate) const DURATION_EXPECTED: &str = "expected a duration like 10m (units: ms, s, m, h, d)";

/// The error text for a bad size.
pub(crate) const SIZE_EXPECTED: &str =
    "expected a size like 10MB (units: B, KB, MB, GB, KiB, MiB, GiB) or a number of bytes";

const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Duration units, longest spelling first so that `ms` is not read as `m` followed by junk.
const DURATION_UNITS: &[(&str, u128)] = &[
    ("ms", NANOS_PER_MILLI),
    ("s", NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("h", 3_600 * NANOS_PER_SEC),
    ("d", 86_400 * NANOS_PER_SEC),
];

/// Size units, case-sensitive: `MB` is 10^6 bytes, `MiB` is 2^20; `mb` (megabit?) is refused.
const SIZE_UNITS: &[(&str, u128)] = &[
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("KB", 1_000),
    ("kB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("B", 1),
];

/// Parses a duration like `500ms`, `10s`, `15m`, `1h30m`, `2d`.
///
/// One or more `<number><unit>` parts with nothing in between; the number may have a fractional part
/// (`1.5s`). A bare `0` is the only number allowed without a unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let nanos =
        parse_quantity(text, DURATION_UNITS, true).ok_or_else(|| DURATION_EXPECTED.to_string())?;
    let nanos = u64::try_from(nanos).map_err(|_| format!("duration `{text}` is too large"))?;
    Ok(Duration::from_nanos(nanos))
}

/// Parses a size like `10MB`, `512KiB`, `1048576` (plain bytes). Fractions are rounded down to whole
/// bytes (`1.5KiB` = 1536).
pub fn parse_size(text: &str) -> Result<u64, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map_err(|_| format!("size `{text}` is too large"));
    }
    let bytes = parse_quantity(text, SIZE_UNITS, false).ok_or_else(|| SIZE_EXPECTED.to_string())?;
    u64::try_from(bytes).map_err(|_| format!("size `{text}` is too large"))
}

/// The inverse of [`parse_duration`]; tend's one duration formatter lives in [`crate::clock`].
pub use crate::clock::format_duration;

/// A fixed version of a bad duration, when the intent is clear: "10 minutes" -> "10m".
pub(crate) fn suggest_duration(text: &str) -> Option<String> {
    const WORDS: &[(&[&str], &str)] = &[
        (
            &["milliseconds", "millisecond", "millis", "msec", "msecs"],
            "ms",
        ),
        (&["seconds", "second", "secs", "sec"], "s"),
        (&["minutes", "minute", "mins", "min"], "m"),
        (&["hours", "hour", "hrs", "hr"], "h"),
        (&["days", "day"], "d"),
    ];
    let mut fixed = text.trim().to_ascii_lowercase().replace([' ', '_'], "");
    for (words, unit) in WORDS {
        for word in *words {
            fixed = replace_unit_word(&fixed, word, unit);
        }
    }
    (fixed != text && parse_duration(&fixed).is_ok()).then_some(fixed)
}

/// A fixed version of a bad size: "10 MB" -> "10MB", "10mb" -> "10MB", "512 kib" -> "512KiB".
pub(crate) fn suggest_size(text: &str) -> Option<String> {
    let compact: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '_')
        .collect();
    let split = compact.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = compact.split_at(split);
    let unit = match unit.to_ascii_lowercase().as_str() {
        "b" | "bytes" => "B",
        "k" | "kb" => "KB",
        "m" | "mb" => "MB",
        "g" | "gb" => "GB",
        "kib" => "KiB",
        "mib" => "MiB",
        "gib" => "GiB",
        _ => return None,
    };
    let fixed = format!("{number}{unit}");
    (fixed != text && parse_size(&fixed).is_ok()).then_some(fixed)
}

/// Replaces a unit word only where it directly follows a digit, so "minutes" does not eat the "m"
/// out of an unrelated word.
fn replace_unit_word(text: &str, word: &str, unit: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let follows_digit = rest[..at].ends_with(|c: char| c.is_ascii_digit())
            || (at == 0 && out.ends_with(|c: char| c.is_ascii_digit()));
        out.push_str(&rest[..at]);
        out.push_str(if follows_digit { unit } else { word });
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

/// Sums `<number><unit>` parts. `many` allows several parts ("1h30m"); sizes take exactly one.
/// Returns the value in the units' base (nanoseconds, bytes), or `None` on any syntax problem or
/// overflow of u128 (the callers narrow to u64 with their own message).
fn parse_quantity(text: &str, units: &[(&str, u128)], many: bool) -> Option<u128> {
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (number, after_number) = split_number(rest)?;
        let (unit, factor) = units
            .iter()
            .find(|(unit, _)| after_number.starts_with(unit))?;
        total = total.checked_add(number.scale(*factor)?)?;
        rest = &after_number[unit.len()..];
        if !many && !rest.is_empty() {
            return None;
        }
    }
    Some(total)
}

/// A decimal number as written: integer digits and fraction digits.
struct Number<'a> {
    int: &'a str,
    frac: &'a str,
}

impl Number<'_> {
    /// `self * factor`, exactly for the integer part and rounded down for the fraction.
    fn scale(&self, factor: u128) -> Option<u128> {
        let int: u128 = self.int.parse().ok()?;
        let mut value = int.checked_mul(factor)?;
        // Digits past the 18th cannot change a nanosecond or byte count; ignoring them keeps the
        // arithmetic inside u128.
        let frac = &self.frac[..self.frac.len().min(18)];
        if !frac.is_empty() {
            let digits: u128 = frac.parse().ok()?;
            let scale = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
            value = value.checked_add(digits.checked_mul(factor)? / scale)?;
        }
        Some(value)
    }
}

/// Splits a leading `digits[.digits]` off `text`. A dot must have digits on both sides.
fn split_number(text: &str) -> Option<(Number<'_>, &str)> {
    let int_len = text.bytes().take_while(u8::is_ascii_digit).count();
    if int_len == 0 || int_len > 30 {
        return None;
    }
    let (int, rest) = text.split_at(int_len);
    let Some(after_dot) = rest.strip_prefix('.') else {
        return Some((Number { int, frac: "" }, rest));
    };
    let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
    if frac_len == 0 {
        return None;
    }
    let (frac, rest) = after_dot.split_at(frac_len);
    Some((Number { int, frac }, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations_in_every_unit_and_combined() {
        let table = [
            ("0", ms(0)),
            ("0s", ms(0)),
            ("500ms", ms(500)),
            ("10s", ms(10_000)),
            ("15m", ms(15 * 60_000)),
            ("2h", ms(2 * 3_600_000)),
            ("1d", ms(86_400_000)),
            ("1h30m", ms(90 * 60_000)),
            ("1m30s500ms", ms(90_500)),
            ("1.5s", ms(1_500)),
            ("0.25m", ms(15_000)),
            ("1.0000000001s", Duration::from_nanos(1_000_000_000)),
        ];
        for (text, want) in table {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn durations_that_are_refused() {
        for text in [
            "",
            "10",
            "10 minutes",
            "10 m",
            " 10s",
            "10s ",
            "1.5.s",
            "1.s",
            ".5s",
            "s",
            "10x",
            "10S",
            "-5s",
            "+5s",
            "1h 30m",
            "10sec",
            "1e3s",
            "0x10s",
        ] {
            assert_eq!(
                parse_duration(text),
                Err(DURATION_EXPECTED.to_string()),
                "{text:?} should be refused"
            );
        }
    }

    #[test]
    fn formatted_durations_read_back() {
        let table = [
            (ms(0), "0s"),
            (ms(500), "500ms"),
            (ms(1_500), "1.5s"),
            (ms(1_250), "1.25s"),
            (ms(60_000), "1m"),
            (ms(90 * 60_000), "1h30m"),
            (ms(86_400_000 + 5_000), "1d5s"),
        ];
        for (duration, want) in table {
            assert_eq!(format_duration(duration), want);
            assert_eq!(parse_duration(want), Ok(duration));
        }
    }

    #[test]
    fn overflowing_durations_say_too_large() {
        let err = parse_duration("99999999999999999999d").unwrap_err();
        assert!(err.contains("too large"), "{err}");
    }

    #[test]
    fn duration_suggestions_fix_only_clear_intent() {
        assert_eq!(suggest_duration("10 minutes").as_deref(), Some("10m"));
        assert_eq!(suggest_duration("1 hour 30 min").as_deref(), Some("1h30m"));
        assert_eq!(suggest_duration("500 ms").as_deref(), Some("500ms"));
        assert_eq!(suggest_duration("10S").as_deref(), Some("10s"));
        assert_eq!(suggest_duration("10"), None);
        assert_eq!(suggest_duration("soon"), None);
    }

    #[test]
    fn sizes_decimal_binary_and_plain_bytes() {
        let table = [
            ("1048576", 1_048_576),
            ("0", 0),
            ("100B", 100),
            ("512KB", 512_000),
            ("512kB", 512_000),
            ("10MB", 10_000_000),
            ("1GB", 1_000_000_000),
            ("4KiB", 4_096),
            ("10MiB", 10 * 1_048_576),
            ("1GiB", 1_073_741_824),
            ("1.5KiB", 1_536),
        ];
        for (text, want) in table {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn sizes_that_are_refused() {
        for text in [
            "", "10 MB", "10mb", "MB", "10M", "10MBB", "1.MB", "-1KB", "10KiB5B",
        ] {
            assert_eq!(parse_size(text), Err(SIZE_EXPECTED.to_string()), "{text:?}");
        }
        assert!(parse_size("99999999999999999999999")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("99999999999GiB")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn size_suggestions() {
        assert_eq!(suggest_size("10 MB").as_deref(), Some("10MB"));
        assert_eq!(suggest_size("10mb").as_deref(), Some("10MB"));
        assert_eq!(suggest_size("512 kib").as_deref(), Some("512KiB"));
        assert_eq!(suggest_size("10MB"), None);
        assert_eq!(suggest_size("lots"), None);
    }
}
