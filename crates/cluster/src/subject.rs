//! MQTT topics and filters as NATS subjects.
//!
//! NATS subjects are dot-separated tokens that may not be empty, hold spaces or
//! be `*`/`>` unless they are wildcards; an MQTT level may be empty and hold any
//! UTF-8 but `/`, `+`, `#`. Each level becomes one token: ASCII letters, digits
//! and `-` stay, every other byte is `_` and two hex digits, and an empty level is
//! `_` alone. Distinct topics therefore give distinct subjects, the tokens never
//! collide with NATS wildcards, and a level-wise MQTT wildcard maps to a NATS one.

/// The subject prefix of routed messages.
pub const MESSAGES: &str = "ferrocore.m";

fn push_level(level: &str, subject: &mut String) {
    subject.push('.');
    if level.is_empty() {
        subject.push('_');
        return;
    }
    for byte in level.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            subject.push(byte as char);
        } else {
            subject.push('_');
            subject.push(char::from(HEX[usize::from(byte >> 4)]));
            subject.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// A text as one subject token (a node id in a control subject).
pub fn token(text: &str) -> String {
    let mut subject = String::with_capacity(text.len() + 1);
    push_level(text, &mut subject);
    subject.split_off(1)
}

/// The subject a message on `topic` is published on.
pub fn of_topic(topic: &str) -> String {
    let mut subject = String::with_capacity(MESSAGES.len() + topic.len() + 8);
    subject.push_str(MESSAGES);
    for level in topic.split('/') {
        push_level(level, &mut subject);
    }
    subject
}

/// The subjects that carry every topic an MQTT filter matches: `+` is `*`; a
/// trailing `#` is `>` plus, when it has a parent level, the parent itself (MQTT's
/// `a/#` matches `a`, NATS's `a.>` does not). The NATS subjects may also carry
/// topics the filter does not match (`#` and `$` topics): the receiving node's
/// router matches exactly.
pub fn of_filter(filter: &str) -> Vec<String> {
    let mut subject = String::from(MESSAGES);
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        match level {
            "#" if levels.peek().is_none() => {
                let parent = (subject.len() > MESSAGES.len()).then(|| subject.clone());
                subject.push_str(".>");
                return [subject].into_iter().chain(parent).collect();
            }
            "+" => subject.push_str(".*"),
            _ => push_level(level, &mut subject),
        }
    }
    vec![subject]
}

/// Whether a NATS subscription subject (with `*` and `>`) matches a subject (as
/// nats-server decides; the tests check the filter mapping against it).
#[cfg(test)]
fn matches(pattern: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for wanted in pattern.split('.') {
        match (wanted, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (wanted, Some(token)) if wanted == token => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

/// The topic of a message subject (its inverse); `None` for another subject.
pub fn topic_of(subject: &str) -> Option<String> {
    let rest = subject.strip_prefix(MESSAGES)?.strip_prefix('.')?;
    let mut bytes = Vec::with_capacity(rest.len());
    for (index, token) in rest.split('.').enumerate() {
        if index > 0 {
            bytes.push(b'/');
        }
        if token == "_" {
            continue;
        }
        let mut chars = token.bytes();
        while let Some(byte) = chars.next() {
            if byte != b'_' {
                bytes.push(byte);
                continue;
            }
            let digit = |c: Option<u8>| c.and_then(|c| (c as char).to_digit(16));
            let (high, low) = (digit(chars.next())?, digit(chars.next())?);
            bytes.push((high * 16 + low) as u8);
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn levels_become_tokens_without_wildcards_or_empties() {
        assert_eq!(of_topic("a/b"), "ferrocore.m.a.b");
        assert_eq!(of_topic("$aws/things/t 1/shadow"), "ferrocore.m._24aws.things.t_201.shadow");
        assert_eq!(of_topic("/a//"), "ferrocore.m._.a._._");
        assert_eq!(of_topic("a.b/*/>"), "ferrocore.m.a_2Eb._2A._3E");
        assert_eq!(of_topic("_"), "ferrocore.m._5F");
        assert_eq!(of_topic("é"), "ferrocore.m._C3_A9");
    }

    #[test]
    fn filters_map_level_wildcards_and_a_trailing_hash_keeps_its_parent() {
        assert_eq!(of_filter("a/+/c"), vec!["ferrocore.m.a.*.c"]);
        assert_eq!(of_filter("a/b/#"), vec!["ferrocore.m.a.b.>", "ferrocore.m.a.b"]);
        assert_eq!(of_filter("#"), vec!["ferrocore.m.>"]);
        assert_eq!(of_filter("+/#"), vec!["ferrocore.m.*.>", "ferrocore.m.*"]);
        assert!(matches("ferrocore.m.a.b", &of_topic("a/b")));
        assert!(!matches("ferrocore.m.a.b.>", &of_topic("a/b")), "NATS's > needs one more token");
        assert!(!matches("ferrocore.m.a.*", &of_topic("a/b/c")));
        assert!(!matches("ferrocore.m.a", &of_topic("a/b")));
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-z]{1,3}", "[ -~]{0,4}", "\\PC{0,3}"]
            .prop_map(|level: String| level.replace(['/', '+', '#'], ""))
    }

    fn topic() -> impl Strategy<Value = String> {
        proptest::collection::vec(level(), 1..5).prop_map(|levels| levels.join("/"))
    }

    proptest! {
        /// Every legal topic survives the trip, so distinct topics never share a subject.
        #[test]
        fn every_topic_round_trips(topic in topic()) {
            let subject = of_topic(&topic);
            prop_assert!(subject.split('.').all(|t| !t.is_empty() && t != "*" && t != ">"
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')));
            prop_assert_eq!(topic_of(&subject), Some(topic));
        }

        /// The subjects of a filter carry every topic MQTT matches it with.
        #[test]
        fn a_filter_s_subjects_carry_every_topic_it_matches(topic in topic(), cut in 0usize..5, wild in 0u8..3) {
            let levels: Vec<&str> = topic.split('/').collect();
            let cut = cut.min(levels.len());
            let mut filter: Vec<&str> = levels[..cut].to_vec();
            match wild {
                0 => filter.push("#"),
                1 if cut < levels.len() => { filter.push("+"); filter.extend(&levels[cut + 1..]); }
                _ => filter.extend(&levels[cut..]),
            }
            let filter = filter.join("/");
            if ferrocore_mqtt::topic::matches(&filter, &topic) {
                let subject = of_topic(&topic);
                prop_assert!(of_filter(&filter).iter().any(|p| matches(p, &subject)), "{} {}", filter, topic);
            }
        }
    }
}
