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
    #[error("a shared subscription is $share/<group>/<filter>, the group without '/', '+' or '#'")]
    SharedSubscription,
}

/// The longest share name of a shared subscription (AWS: 128 characters).
const MAX_SHARE_NAME: usize = 128;

/// A shared subscription `$share/<group>/<filter>`: its group and filter (not yet
/// validated). `None` for other filters.
pub fn shared_subscription(filter: &str) -> Option<Result<(&str, &str), TopicError>> {
    let rest = filter.strip_prefix("$share/")?;
    let Some((group, inner)) = rest.split_once('/') else {
        return Some(Err(TopicError::SharedSubscription));
    };
    let group_ok = !group.is_empty() && group.chars().count() <= MAX_SHARE_NAME && !group.contains(['+', '#']);
    Some(if group_ok && !inner.is_empty() { Ok((group, inner)) } else { Err(TopicError::SharedSubscription) })
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

/// AWS's reserved `$aws/` topics: the only ones a client may publish to are the
/// request topics of AWS features (shadows, jobs, Basic Ingest, fleet provisioning,
/// Device Defender, streams); responses and events are the service's to publish.
/// A Basic Ingest topic `$aws/rules/<rule>/<rest>`: the rule and `<rest>`.
pub fn basic_ingest(name: &str) -> Option<(&str, &str)> {
    let (rule, rest) = name.strip_prefix("$aws/rules/")?.split_once('/')?;
    (!rule.is_empty() && !rest.is_empty()).then_some((rule, rest))
}

pub fn client_may_publish(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("$aws/") else {
        return true;
    };
    let levels: Vec<&str> = rest.split('/').collect();
    let format = |level: &&str| matches!(*level, "json" | "cbor");
    match levels.as_slice() {
        ["things", _, "shadow", "get" | "update" | "delete"] => true,
        ["things", _, "shadow", "name", _, "get" | "update" | "delete"] => true,
        ["things", _, "jobs", "get" | "start-next"] => true,
        ["things", _, "jobs", _, "get" | "update"] => true,
        ["things", _, "defender", "metrics", f] => format(f),
        ["things", _, "streams", _, "get" | "describe", f] => format(f),
        ["rules", rule, _, ..] => !rule.is_empty(),
        ["certificates", "create" | "create-from-csr", f] => format(f),
        ["provisioning-templates", _, "provision", f] => format(f),
        _ => false,
    }
}

/// Basic Ingest topics (`$aws/rules/...`) cannot be subscribed to.
pub fn client_may_subscribe(filter: &str) -> bool {
    !filter.starts_with("$aws/rules/")
}

#[cfg(test)]
mod reserved_tests {
    use super::*;

    #[test]
    fn shared_subscriptions() {
        assert_eq!(shared_subscription("$share/g1/a/+"), Some(Ok(("g1", "a/+"))));
        assert_eq!(shared_subscription("a/b"), None);
        assert_eq!(shared_subscription("$sharex/g/a"), None);
        for bad in ["$share/g", "$share//a", "$share/a+b/t", "$share/a#/t", "$share/g/"] {
            assert_eq!(shared_subscription(bad), Some(Err(TopicError::SharedSubscription)), "{bad}");
        }
        let long = format!("$share/{}/t", "g".repeat(129));
        assert!(matches!(shared_subscription(&long), Some(Err(_))));
    }

    #[test]
    fn reserved_topics() {
        for allowed in [
            "sensors/1",
            "$aws/things/t/shadow/update",
            "$aws/things/t/shadow/name/config/get",
            "$aws/things/t/jobs/start-next",
            "$aws/things/t/jobs/job-1/update",
            "$aws/rules/my_rule/sensors/1",
            "$aws/certificates/create/json",
            "$aws/provisioning-templates/tpl/provision/cbor",
            "$aws/things/t/defender/metrics/json",
        ] {
            assert!(client_may_publish(allowed), "{allowed}");
        }
        for refused in [
            "$aws/things/t/shadow/update/accepted",
            "$aws/things/t/shadow/update/delta",
            "$aws/events/presence/connected/c",
            "$aws/things/t/jobs/notify",
            "$aws/rules/r",
            "$aws/anything",
            "$aws/certificates/create/xml",
        ] {
            assert!(!client_may_publish(refused), "{refused}");
        }
        assert!(client_may_subscribe("$aws/things/t/shadow/#"));
        assert!(!client_may_subscribe("$aws/rules/r/#"));
    }
}
