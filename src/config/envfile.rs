//! `env_file` parsing: the `KEY=VALUE` format of `.env` files, read once at load time.
//!
//! Supported: blank lines, `#` comment lines, an optional `export ` prefix, unquoted values (the rest
//! of the line, trimmed; `#` inside is kept), `'single'` quotes (literal) and `"double"` quotes (with
//! `\"`, `\\`, `\n`, `\t` escapes). Not supported: multi-line values and `$VAR` expansion, because no
//! shell is involved anywhere else either.
//!
//! Problems never quote the value: env files hold API keys and tokens, and errors end up in logs.

/// One bad line of an env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvFileProblem {
    /// 1-based line number in the env file.
    pub line: usize,
    pub message: String,
}

/// Parses env file text into `(key, value)` pairs in file order (a later duplicate wins when the
/// caller collects them into a map, as in a shell). Reports every bad line.
pub(crate) fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, Vec<EnvFileProblem>> {
    let mut pairs = Vec::new();
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some(pair)) => pairs.push(pair),
            Ok(None) => {}
            Err(message) => problems.push(EnvFileProblem {
                line: index + 1,
                message,
            }),
        }
    }
    if problems.is_empty() {
        Ok(pairs)
    } else {
        Err(problems)
    }
}

/// Whether `name` is a portable environment variable name: letters, digits and `_`, not starting
/// with a digit. Shared with the `env` table so both sources follow one rule.
pub(crate) fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_line(line: &str) -> Result<Option<(String, String)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = line
        .strip_prefix("export")
        .filter(|rest| rest.starts_with(char::is_whitespace))
        .map_or(line, str::trim_start);
    let Some((key, value)) = line.split_once('=') else {
        return Err("expected KEY=VALUE, found no `=`".to_string());
    };
    let key = key.trim_end();
    if !is_env_name(key) {
        return Err(format!(
            "`{key}` is not a valid variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    let value = value.trim();
    let value = if let Some(quoted) = value.strip_prefix('"') {
        double_quoted(quoted)?
    } else if let Some(quoted) = value.strip_prefix('\'') {
        let (inner, rest) = quoted
            .split_once('\'')
            .ok_or("the value has no closing single quote")?;
        expect_line_end(rest)?;
        inner.to_string()
    } else {
        value.to_string()
    };
    Ok(Some((key.to_string(), value)))
}

fn double_quoted(quoted: &str) -> Result<String, String> {
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => {
                expect_line_end(&quoted[at + 1..])?;
                return Ok(value);
            }
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some(other @ ('"' | '\\' | '$' | '\'')) => value.push(other),
                Some(other) => {
                    value.push('\\');
                    value.push(other);
                }
                None => break,
            },
            other => value.push(other),
        }
    }
    Err("the value has no closing double quote".to_string())
}

/// After a closing quote only a comment may follow.
fn expect_line_end(rest: &str) -> Result<(), String> {
    let rest = rest.trim_start();
    if rest.is_empty() || rest.starts_with('#') {
        Ok(())
    } else {
        Err("unexpected text after the closing quote".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse_env_file(text).unwrap()
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn plain_exported_quoted_and_commented_lines() {
        let text = "# Telegram credentials\n\nAPI_ID=12345\nexport API_HASH = abc#def \n\
                    NAME=\"a \\\"b\\\"\\n\" # trailing comment\nRAW='x\\ny'\nEMPTY=\nexporter=1\n";
        assert_eq!(
            pairs(text),
            vec![
                pair("API_ID", "12345"),
                pair("API_HASH", "abc#def"),
                pair("NAME", "a \"b\"\n"),
                pair("RAW", "x\\ny"),
                pair("EMPTY", ""),
                pair("exporter", "1"),
            ]
        );
    }

    #[test]
    fn every_bad_line_is_reported_without_its_value() {
        let text = "OK=1\nsecret-token-without-equals\n1BAD=x\nQ=\"open\nS='x' y\n";
        let problems = parse_env_file(text).unwrap_err();
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5]);
        assert_eq!(problems[0].message, "expected KEY=VALUE, found no `=`");
        assert!(problems[1]
            .message
            .contains("`1BAD` is not a valid variable name"));
        assert!(problems[2].message.contains("no closing double quote"));
        assert!(problems[3].message.contains("after the closing quote"));
        assert!(problems.iter().all(|p| !p.message.contains("secret")));
    }

    #[test]
    fn env_names() {
        for good in ["A", "_x", "API_ID2"] {
            assert!(is_env_name(good), "{good}");
        }
        for bad in ["", "1A", "A-B", "A.B", "A B", "É"] {
            assert!(!is_env_name(bad), "{bad}");
        }
    }
}
