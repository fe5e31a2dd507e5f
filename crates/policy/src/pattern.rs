//! IAM-style patterns: `*` matches any sequence (across `/`), `?` one character.
//! MQTT's `+` and `#` are ordinary characters here.

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Char(char),
    AnySequence,
    AnyChar,
}

/// Tokens of `text`, where `*` and `?` are wildcards.
pub(crate) fn tokens(text: &str) -> Vec<Token> {
    text.chars()
        .map(|c| match c {
            '*' => Token::AnySequence,
            '?' => Token::AnyChar,
            c => Token::Char(c),
        })
        .collect()
}

/// Matches `text` against `pattern`, optionally ignoring ASCII case.
pub(crate) fn matches(pattern: &[Token], text: &str, ignore_case: bool) -> bool {
    let same = |a: char, b: char| {
        if ignore_case { a.eq_ignore_ascii_case(&b) } else { a == b }
    };
    // Iterative wildcard matching with backtracking to the last `*`; `t` is a byte
    // offset into `text`, so nothing is allocated.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(c) = text[t..].chars().next() {
        match pattern.get(p) {
            Some(Token::Char(expected)) if same(*expected, c) => {
                p += 1;
                t += c.len_utf8();
            }
            Some(Token::AnyChar) => {
                p += 1;
                t += c.len_utf8();
            }
            Some(Token::AnySequence) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    let skipped = text[star_t..].chars().next().map_or(1, char::len_utf8);
                    p = star_p + 1;
                    t = star_t + skipped;
                    star = Some((star_p, t));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|token| *token == Token::AnySequence)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        matches(&tokens(pattern), text, false)
    }

    #[test]
    fn wildcards() {
        assert!(m("topic/a/*", "topic/a/b/c"));
        assert!(m("*", ""));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("*/shadow/*", "x/y/shadow/update"));
        assert!(!m("topic/a/+", "topic/a/b"));
        assert!(m("topic/a/+", "topic/a/+"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(matches(&tokens("iot:pub*"), "iot:Publish", true));
    }
}
