//! Telegram chat ids: parsing the forms found in log lines into one canonical ("marked", Bot API) form, and
//! telling users, basic groups and channels apart by range.
//!
//! Owns nothing but these pure functions. It must not guess: a positive id is a user id in the services'
//! own lines but a *bare channel id* in Telethon's update logs (`Account is now banned in 3760957276`,
//! `PeerChannel(channel_id=…)`), and the two ranges overlap, so the caller says which form it holds
//! ([`normalize_chat_id`] for marked ids, [`normalize_channel_id`] for bare channel ids). The pattern file
//! says it through the capture name (`chat` or `channel`).
//!
//! Ranges (core.telegram.org/api/bots/ids, Telethon `utils.resolve_id`):
//! - user: `1..=0xffffffffff`
//! - basic group: `-999_999_999_999..=-1`
//! - channel / supergroup: `-(1_000_000_000_000 + channel_id)`, i.e. `-1_997_852_516_352..=-1_000_000_000_001`
//! - below that: secret chats and monoforums, down to `-4_000_000_000_000` ([`ChatKind::Other`]).

use serde::{Deserialize, Serialize};

/// Largest user id (and largest bare peer id Telegram hands out): 40 bits.
const MAX_USER_ID: i64 = 0xff_ffff_ffff;
/// Offset of the marked channel form: marked = -(CHANNEL_OFFSET + channel_id).
const CHANNEL_OFFSET: i64 = 1_000_000_000_000;
/// Smallest marked channel id; below it start the secret-chat ids.
const MIN_MARKED_CHANNEL: i64 = -1_997_852_516_352;
const MIN_BASIC_GROUP: i64 = -999_999_999_999;

/// What kind of peer a marked chat id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatKind {
    User,
    BasicGroup,
    Channel,
    /// Zero, secret chats, monoforums, or out of Telegram's range.
    Other,
}

/// Classifies a marked chat id by Telegram's id ranges.
pub fn chat_kind(id: i64) -> ChatKind {
    match id {
        1..=MAX_USER_ID => ChatKind::User,
        MIN_BASIC_GROUP..=-1 => ChatKind::BasicGroup,
        MIN_MARKED_CHANNEL..=-1_000_000_000_001 => ChatKind::Channel,
        _ => ChatKind::Other,
    }
}

/// Parses a chat id as the services print it (marked form): `-1003519196381` (channel), `-123456`
/// (basic group) or `123456789` (user) stay as they are.
///
/// Returns `None` when `raw` is not an integer or names no user, group or channel: aggregating such a
/// value under a made-up id would hide it, so callers keep the raw text instead.
pub fn normalize_chat_id(raw: &str) -> Option<i64> {
    let id: i64 = raw.trim().parse().ok()?;
    match chat_kind(id) {
        ChatKind::Other => None,
        _ => Some(id),
    }
}

/// Turns a bare channel id, as Telethon's update logs and `PeerChannel(channel_id=…)` print it, into the
/// marked form the services use: `3760957276` -> `-1003760957276`.
///
/// An id that is already marked (`-100…`) is returned unchanged, so both spellings of one channel
/// aggregate together whichever line they came from.
pub fn normalize_channel_id(raw: &str) -> Option<i64> {
    let id: i64 = raw.trim().parse().ok()?;
    if id < 0 {
        return (chat_kind(id) == ChatKind::Channel).then_some(id);
    }
    marked_channel_id(id)
}

/// The marked form of a bare channel id, or `None` if no channel can have that id.
pub fn marked_channel_id(bare: i64) -> Option<i64> {
    let marked = CHANNEL_OFFSET.checked_add(bare).map(|v| -v)?;
    (bare > 0 && chat_kind(marked) == ChatKind::Channel).then_some(marked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_ids_keep_their_form() {
        let cases: &[(&str, Option<i64>)] = &[
            ("-1003519196381", Some(-1003519196381)),
            (" -1003772791180 ", Some(-1003772791180)),
            ("-1009990000001", Some(-1009990000001)),
            ("-123456", Some(-123456)),
            ("123456789", Some(123456789)),
            // A positive id in a service line is a user, never silently a channel.
            ("3760957276", Some(3760957276)),
            ("0", None),
            ("1099511627776", None),
            ("-2002147483648", None), // a secret chat
            ("-4000000000000", None),
            ("@somename", None),
            ("", None),
            ("99999999999999999999", None),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_chat_id(raw), *want, "normalize_chat_id({raw:?})");
        }
    }

    #[test]
    fn bare_channel_ids_gain_the_minus_100_prefix() {
        let cases: &[(&str, Option<i64>)] = &[
            ("3760957276", Some(-1003760957276)),
            ("1645141274", Some(-1001645141274)),
            ("3519196381", Some(-1003519196381)),
            ("1", Some(-1000000000001)),
            ("997852516352", Some(-1997852516352)),
            // Already marked: the same channel from a service line.
            ("-1003760957276", Some(-1003760957276)),
            ("997852516353", None),
            ("0", None),
            ("-123456", None),
            ("9223372036854775807", None),
            ("x", None),
        ];
        for (raw, want) in cases {
            assert_eq!(
                normalize_channel_id(raw),
                *want,
                "normalize_channel_id({raw:?})"
            );
        }
    }

    #[test]
    fn kinds_follow_telegram_ranges_at_their_edges() {
        let cases: &[(i64, ChatKind)] = &[
            (1, ChatKind::User),
            (3760957276, ChatKind::User),
            (1099511627775, ChatKind::User),
            (1099511627776, ChatKind::Other),
            (0, ChatKind::Other),
            (-1, ChatKind::BasicGroup),
            (-999999999999, ChatKind::BasicGroup),
            (-1000000000000, ChatKind::Other),
            (-1000000000001, ChatKind::Channel),
            (-1003519196381, ChatKind::Channel),
            (-1997852516352, ChatKind::Channel),
            (-1997852516353, ChatKind::Other),
            (-4000000000000, ChatKind::Other),
            (i64::MIN, ChatKind::Other),
        ];
        for (id, want) in cases {
            assert_eq!(chat_kind(*id), *want, "chat_kind({id})");
        }
    }
}
