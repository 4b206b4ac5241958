//! "Did you mean ...?" for misspelled keys, group names and enum values.

/// Below this Jaro-Winkler similarity a suggestion is more confusing than helpful ("port" for "log").
const MIN_SIMILARITY: f64 = 0.8;

/// The candidate closest to `word`, if it is close enough to be the likely intent.
///
/// Case and `-`/`_` differences count as exact (`stop-signal` -> `stop_signal`, `On-Failure` ->
/// `on-failure` is caught by the caller's own exact match first).
pub(crate) fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let normalize = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let wanted = normalize(word);
    let mut best: Option<(f64, &'c str)> = None;
    for candidate in candidates {
        let score = if normalize(candidate) == wanted {
            1.0
        } else {
            strsim::jaro_winkler(&wanted, &normalize(candidate))
        };
        if score >= MIN_SIMILARITY && best.is_none_or(|(top, _)| score > top) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[&str] = &[
        "command",
        "cwd",
        "env",
        "env_file",
        "restart",
        "stop_signal",
        "port",
    ];

    #[test]
    fn close_words_find_their_key() {
        assert_eq!(
            did_you_mean("restrat", KEYS.iter().copied()),
            Some("restart")
        );
        assert_eq!(
            did_you_mean("stop-signal", KEYS.iter().copied()),
            Some("stop_signal")
        );
        assert_eq!(
            did_you_mean("Command", KEYS.iter().copied()),
            Some("command")
        );
        assert_eq!(
            did_you_mean("envfile", KEYS.iter().copied()),
            Some("env_file")
        );
        assert_eq!(
            did_you_mean("environment", KEYS.iter().copied()),
            Some("env")
        );
    }

    #[test]
    fn unrelated_words_get_no_suggestion() {
        assert_eq!(did_you_mean("banana", KEYS.iter().copied()), None);
        assert_eq!(did_you_mean("x", KEYS.iter().copied()), None);
        assert_eq!(did_you_mean("anything", std::iter::empty()), None);
    }
}
