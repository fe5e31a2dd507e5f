//! Topic names and filters: validation and matching (MQTT 3.1.1 §4.7).

/// Why a topic name or filter is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("a topic must not be empty")]
    Empty,
    #[error("a topic name must not contain wildcards")]
    WildcardInName,
    #[error("'#' must be the last level, alone")]
    MisplacedMultiLevel,
    #[error("'+' must occupy a whole level")]
    MisplacedSingleLevel,
    #[error("a topic must not contain U+0000")]
    NullCharacter,
}

pub fn validate_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.contains('\u{0}') {
        return Err(TopicError::NullCharacter);
    }
    if name.contains(['+', '#']) {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    if filter.contains('\u{0}') {
        return Err(TopicError::NullCharacter);
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (index, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || index != levels.len() - 1) {
            return Err(TopicError::MisplacedMultiLevel);
        }
        if level.contains('+') && *level != "+" {
            return Err(TopicError::MisplacedSingleLevel);
        }
    }
    Ok(())
}

/// Whether `filter` (valid) matches `name` (valid). Wildcards at the first level
/// do not match names starting with `$` (MQTT-4.7.2-1).
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut name_levels = name.split('/');
    loop {
        match (filter_levels.next(), name_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(n)) if f == n => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        for ok in ["a", "a/b", "/", "a//b", "$aws/things/t/shadow/update"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        assert_eq!(validate_name("a/+"), Err(TopicError::WildcardInName));
        for ok in ["#", "+", "a/+/b", "a/#", "+/+", "/#"] {
            assert!(validate_filter(ok).is_ok(), "{ok}");
        }
        assert_eq!(validate_filter("a/#/b"), Err(TopicError::MisplacedMultiLevel));
        assert_eq!(validate_filter("a#"), Err(TopicError::MisplacedMultiLevel));
        assert_eq!(validate_filter("a/b+"), Err(TopicError::MisplacedSingleLevel));
    }

    #[test]
    fn matching() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(!matches("a/+/c", "a/b/d"));
        assert!(matches("a/#", "a"), "# also matches the parent level");
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("+/+", "/x"));
        assert!(!matches("+", "a/b"));
        assert!(!matches("#", "$aws/things/x"));
        assert!(matches("$aws/things/+/shadow/#", "$aws/things/x/shadow/update/accepted"));
        assert!(matches("a//b", "a//b"));
    }
}
