//! The emulated account's chats: the seeded dialog list, chat-id formats and the per-chat rules.
//!
//! Owns which chats exist, what type they are and which ones fail (missing, banned, read-only). It does
//! not own the dialog *cache* of a process (that is `service.rs`) nor any timing.
//!
//! Resolution rule: every chat id resolves (the account is taken to be in every chat a caller names)
//! except the `--missing-chats` ids and the synthetic range `-1009990000000..=-1009999999999`, which are
//! always missing unless the account joined them at run time (fault `join`).

use std::collections::{HashMap, HashSet};
use std::ops::RangeInclusive;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Synthetic chat ids that are always missing: `-100999` followed by 7 digits.
pub const SYNTHETIC_MISSING: RangeInclusive<i64> = -1_009_999_999_999..=-1_009_990_000_000;
/// Marked ids below this are channels (`-100` prefix).
const CHANNEL_OFFSET: i64 = 1_000_000_000_000;

/// What a chat is, as the send_text response reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatType {
    User,
    /// A basic group or a supergroup.
    Group,
    /// A broadcast channel.
    Channel,
}

impl ChatType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatType::User => "user",
            ChatType::Group => "group",
            ChatType::Channel => "channel",
        }
    }
}

/// A chat as a caller names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    Id(i64),
    /// As given, `@` included if it was.
    Username(String),
}

/// Reads a chat from JSON the way the scripts do: ints, numeric strings (`"-100…"`), else usernames.
pub fn parse_peer(value: &serde_json::Value) -> Option<Peer> {
    match value {
        serde_json::Value::Number(n) => n.as_i64().map(Peer::Id),
        serde_json::Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                None
            } else if let Ok(id) = s.parse::<i64>() {
                Some(Peer::Id(id))
            } else {
                Some(Peer::Username(s.to_string()))
            }
        }
        _ => None,
    }
}

/// Is `id` inside Bot-API's marked id range (core.telegram.org/api/bots/ids)?
pub fn valid_peer_id(id: i64) -> bool {
    id != 0 && (-4_000_000_000_000..=1_099_511_627_775).contains(&id)
}

/// `-1003760957276` → `3760957276`; bare ids pass through.
pub fn bare_channel_id(id: i64) -> i64 {
    if id < -CHANNEL_OFFSET {
        -id - CHANNEL_OFFSET
    } else {
        id.abs()
    }
}

/// The type a chat id implies when the dialog list does not know it.
pub fn type_by_range(id: i64) -> ChatType {
    if id > 0 {
        ChatType::User
    } else {
        ChatType::Group
    }
}

/// A username, normalised for comparison (`@Name` → `name`).
pub fn norm_username(name: &str) -> String {
    name.trim_start_matches('@').to_ascii_lowercase()
}

/// The seeded dialog list of one account.
#[derive(Debug, Clone)]
pub struct Universe {
    types: HashMap<i64, ChatType>,
    /// Bare ids of the channels and supergroups (for update-loop noise).
    channels: Vec<i64>,
}

impl Universe {
    /// About 40% users, 5% basic groups, the rest `-100` channels and supergroups. The same seed and
    /// account always give the same dialogs, in every process of that account.
    pub fn generate(seed: u64, account: &str, dialogs: u32) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ fnv1a(account.as_bytes()));
        let mut types = HashMap::with_capacity(dialogs as usize);
        let mut channels = Vec::new();
        while types.len() < dialogs as usize {
            let roll = rng.gen_range(0..100);
            let (id, ty) = if roll < 40 {
                (rng.gen_range(10_000_000..=7_999_999_999), ChatType::User)
            } else if roll < 45 {
                (-rng.gen_range(100_000..=999_999_999), ChatType::Group)
            } else {
                // Below the synthetic missing range (bare 999xxxxxxx).
                let bare = rng.gen_range(1_000_000_000..=9_899_999_999);
                let ty = if rng.gen_bool(0.6) {
                    ChatType::Group
                } else {
                    ChatType::Channel
                };
                (-(CHANNEL_OFFSET + bare), ty)
            };
            if types.insert(id, ty).is_none() && id < -CHANNEL_OFFSET {
                channels.push(bare_channel_id(id));
            }
        }
        Universe { types, channels }
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// The type of a chat: from the dialog list, else by id range.
    pub fn chat_type(&self, id: i64) -> ChatType {
        self.types
            .get(&id)
            .copied()
            .unwrap_or_else(|| type_by_range(id))
    }

    /// A bare channel id for update-loop noise (the story's channel if the account has none).
    pub fn pick_channel(&self, rng: &mut StdRng) -> i64 {
        if self.channels.is_empty() {
            1_645_141_274
        } else {
            self.channels[rng.gen_range(0..self.channels.len())]
        }
    }

    /// A stable user id for a username (so repeated sends report the same `chat_id`).
    pub fn username_id(name: &str) -> i64 {
        1_000_000_000 + (fnv1a(norm_username(name).as_bytes()) % 6_000_000_000) as i64
    }
}

/// Which chats fail and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatRules {
    pub missing_ids: HashSet<i64>,
    /// Normalised (see [`norm_username`]).
    pub missing_usernames: HashSet<String>,
    pub banned: HashSet<i64>,
    pub readonly: HashSet<i64>,
}

impl ChatRules {
    /// Is this chat absent from the account's dialogs (before any run-time join)?
    pub fn is_missing(&self, id: i64) -> bool {
        self.missing_ids.contains(&id) || SYNTHETIC_MISSING.contains(&id)
    }

    pub fn is_missing_username(&self, name: &str) -> bool {
        self.missing_usernames.contains(&norm_username(name))
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn peers_parse_like_the_scripts() {
        let table = [
            (json!(-1003519196381i64), Some(Peer::Id(-1003519196381))),
            (json!("-1003519196381"), Some(Peer::Id(-1003519196381))),
            (json!(" 42 "), Some(Peer::Id(42))),
            (json!("@somename"), Some(Peer::Username("@somename".into()))),
            (json!(""), None),
            (json!(null), None),
            (json!(true), None),
            (json!(1.5), None),
        ];
        for (value, want) in table {
            assert_eq!(parse_peer(&value), want, "{value}");
        }
    }

    #[test]
    fn universe_is_seeded_and_has_the_documented_mix() {
        let a = Universe::generate(42, "main", 3978);
        let b = Universe::generate(42, "main", 3978);
        assert_eq!(a.len(), 3978);
        assert_eq!(a.types, b.types, "same seed, same dialogs");
        let users = a.types.values().filter(|t| **t == ChatType::User).count();
        assert!((1400..1800).contains(&users), "about 40% users: {users}");
        assert!(a.types.keys().all(|id| !SYNTHETIC_MISSING.contains(id)));
        let other = Universe::generate(42, "other", 3978);
        assert_ne!(a.types, other.types, "accounts differ");
    }

    #[test]
    fn ids_classify_by_range() {
        assert_eq!(bare_channel_id(-1003760957276), 3760957276);
        assert_eq!(bare_channel_id(3760957276), 3760957276);
        assert!(valid_peer_id(-1003519196381));
        assert!(!valid_peer_id(0));
        assert!(!valid_peer_id(-5_000_000_000_000));
        let rules = ChatRules::default();
        assert!(rules.is_missing(-1009990000001));
        assert!(!rules.is_missing(-1003519196381));
    }
}
