//! Condition blocks: `{"<Operator>": {"<key>": <value or list>}}`.

use std::net::IpAddr;

use serde_json::Value;

use crate::context::Context;
use crate::document::PolicyError;
use crate::pattern::{matches, tokens};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    StringEquals { ignore_case: bool },
    StringLike,
    Numeric(std::cmp::Ordering, bool),
    Date(std::cmp::Ordering, bool),
    Bool,
    ArnEquals,
    ArnLike,
    IpAddress,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetQualifier {
    Single,
    ForAnyValue,
    ForAllValues,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    kind: Kind,
    negated: bool,
    if_exists: bool,
    qualifier: SetQualifier,
    key: String,
    /// Expected values, which may contain `${...}` variables.
    expected: Vec<String>,
    variables_allowed: bool,
}

fn operator(name: &str) -> Option<(Kind, bool)> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    Some(match name {
        "StringEquals" => (Kind::StringEquals { ignore_case: false }, false),
        "StringNotEquals" => (Kind::StringEquals { ignore_case: false }, true),
        "StringEqualsIgnoreCase" => (Kind::StringEquals { ignore_case: true }, false),
        "StringNotEqualsIgnoreCase" => (Kind::StringEquals { ignore_case: true }, true),
        "StringLike" => (Kind::StringLike, false),
        "StringNotLike" => (Kind::StringLike, true),
        "NumericEquals" => (Kind::Numeric(Equal, false), false),
        "NumericNotEquals" => (Kind::Numeric(Equal, false), true),
        "NumericLessThan" => (Kind::Numeric(Less, false), false),
        "NumericLessThanEquals" => (Kind::Numeric(Less, true), false),
        "NumericGreaterThan" => (Kind::Numeric(Greater, false), false),
        "NumericGreaterThanEquals" => (Kind::Numeric(Greater, true), false),
        "DateEquals" => (Kind::Date(Equal, false), false),
        "DateNotEquals" => (Kind::Date(Equal, false), true),
        "DateLessThan" => (Kind::Date(Less, false), false),
        "DateLessThanEquals" => (Kind::Date(Less, true), false),
        "DateGreaterThan" => (Kind::Date(Greater, false), false),
        "DateGreaterThanEquals" => (Kind::Date(Greater, true), false),
        "Bool" => (Kind::Bool, false),
        "ArnEquals" => (Kind::ArnEquals, false),
        "ArnNotEquals" => (Kind::ArnEquals, true),
        "ArnLike" => (Kind::ArnLike, false),
        "ArnNotLike" => (Kind::ArnLike, true),
        "IpAddress" => (Kind::IpAddress, false),
        "NotIpAddress" => (Kind::IpAddress, true),
        "Null" => (Kind::Null, false),
        _ => return None,
    })
}

fn value_strings(value: &Value) -> Option<Vec<String>> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match value {
        Value::Array(items) if !items.is_empty() => items.iter().map(scalar).collect(),
        other => scalar(other).map(|s| vec![s]),
    }
}

pub(crate) fn parse_conditions(value: &Value, variables_allowed: bool) -> Result<Vec<Condition>, PolicyError> {
    let malformed = |m: String| PolicyError::Malformed(m);
    let block = value.as_object().ok_or_else(|| malformed("Condition must be a JSON object".into()))?;
    let mut conditions = Vec::new();
    for (name, keys) in block {
        let (qualifier, rest) = if let Some(rest) = name.strip_prefix("ForAnyValue:") {
            (SetQualifier::ForAnyValue, rest)
        } else if let Some(rest) = name.strip_prefix("ForAllValues:") {
            (SetQualifier::ForAllValues, rest)
        } else {
            (SetQualifier::Single, name.as_str())
        };
        let (base, if_exists) = match rest.strip_suffix("IfExists") {
            Some(base) => (base, true),
            None => (rest, false),
        };
        let (kind, negated) = operator(base).ok_or_else(|| malformed(format!("Unknown condition operator: {name}")))?;
        let keys = keys.as_object().ok_or_else(|| malformed(format!("Condition {name} must map keys to values")))?;
        for (key, expected) in keys {
            let expected =
                value_strings(expected).ok_or_else(|| malformed(format!("Invalid values for condition key {key}")))?;
            conditions.push(Condition {
                kind,
                negated,
                if_exists,
                qualifier,
                key: key.clone(),
                expected,
                variables_allowed,
            });
        }
    }
    Ok(conditions)
}

/// Seconds since the epoch from a number or `YYYY-MM-DDTHH:MM:SS(Z)`.
fn parse_date(text: &str) -> Option<f64> {
    if let Ok(seconds) = text.parse::<f64>() {
        return Some(seconds);
    }
    let digits = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) =
        if text.len() >= 19 { (digits(11..13)?, digits(14..16)?, digits(17..19)?) } else { (0, 0, 0) };
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some((days * 86_400 + hour * 3600 + minute * 60 + second) as f64)
}

fn ip_in(actual: &str, cidr: &str) -> bool {
    let (network, bits) = cidr.split_once('/').unwrap_or((cidr, ""));
    let (Ok(actual), Ok(network)) = (actual.parse::<IpAddr>(), network.parse::<IpAddr>()) else {
        return false;
    };
    let (actual, network, width) = match (actual, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u128::from(u32::from(a)), u128::from(u32::from(n)), 32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(n), 128),
        _ => return false,
    };
    let bits: u32 = if bits.is_empty() { width } else { bits.parse().unwrap_or(u32::MAX) };
    if bits > width {
        return false;
    }
    let shift = width - bits;
    shift >= 128 || (actual >> shift) == (network >> shift)
}

impl Kind {
    /// The positive (not negated) comparison of one actual value with one expected value.
    fn compare(self, actual: &str, expected: &str) -> bool {
        match self {
            Kind::StringEquals { ignore_case: false } | Kind::ArnEquals => actual == expected,
            Kind::StringEquals { ignore_case: true } => actual.eq_ignore_ascii_case(expected),
            Kind::StringLike | Kind::ArnLike => matches(&tokens(expected), actual, false),
            Kind::Bool => actual.eq_ignore_ascii_case(expected),
            Kind::Numeric(order, or_equal) => match (actual.parse::<f64>(), expected.parse::<f64>()) {
                (Ok(a), Ok(e)) => a.partial_cmp(&e).is_some_and(|o| o == order || (or_equal && o.is_eq())),
                _ => false,
            },
            Kind::Date(order, or_equal) => match (parse_date(actual), parse_date(expected)) {
                (Some(a), Some(e)) => a.partial_cmp(&e).is_some_and(|o| o == order || (or_equal && o.is_eq())),
                _ => false,
            },
            Kind::IpAddress => ip_in(actual, expected),
            Kind::Null => false,
        }
    }
}

impl Condition {
    /// An expected value with its variables substituted; `Err` carries the
    /// literal text when a variable cannot be resolved.
    /// The context names this condition reads: its key and the variables of its values.
    pub(crate) fn names<'a>(&'a self, out: &mut impl Extend<&'a str>) {
        out.extend([self.key.as_str()]);
        if self.variables_allowed {
            for value in &self.expected {
                out.extend(variables(value));
            }
        }
    }

    fn resolve(&self, expected: &str, context: &Context) -> Result<String, String> {
        if !self.variables_allowed || !expected.contains("${") {
            return Ok(expected.to_string());
        }
        let (mut out, mut resolved) = (String::new(), true);
        let mut rest = expected;
        while let Some(start) = rest.find("${") {
            let Some(length) = rest[start..].find('}') else {
                break;
            };
            out.push_str(&rest[..start]);
            let name = &rest[start + 2..start + length];
            match context.substitution(name) {
                Some(value) => out.push_str(value),
                None => {
                    resolved = false;
                    out.push_str(&rest[start..start + length + 1]);
                }
            }
            rest = &rest[start + length + 1..];
        }
        out.push_str(rest);
        if resolved { Ok(out) } else { Err(out) }
    }

    /// Whether the condition holds; in an Allow statement (`allow`), a value with an
    /// unresolvable variable makes it fail rather than match by accident.
    pub(crate) fn holds(&self, context: &Context, allow: bool) -> bool {
        let actual = context.values(&self.key);
        if self.kind == Kind::Null {
            let want_absent = self.expected.iter().any(|e| e.eq_ignore_ascii_case("true"));
            return actual.is_none() == want_absent;
        }
        let Some(actual) = actual else {
            return match self.qualifier {
                SetQualifier::ForAllValues => true,
                SetQualifier::ForAnyValue => self.if_exists,
                SetQualifier::Single => self.if_exists || self.negated,
            };
        };
        let mut expected = Vec::new();
        for value in &self.expected {
            match self.resolve(value, context) {
                Ok(value) => expected.push(value),
                Err(_) if allow => return false,
                Err(literal) => expected.push(literal),
            }
        }
        let hit = |value: &String| expected.iter().any(|e| self.kind.compare(value, e));
        let passes = |value: &String| hit(value) != self.negated;
        match self.qualifier {
            SetQualifier::Single => {
                if self.negated {
                    !actual.iter().any(hit)
                } else {
                    actual.iter().any(hit)
                }
            }
            SetQualifier::ForAnyValue => actual.iter().any(passes),
            SetQualifier::ForAllValues => actual.iter().all(passes),
        }
    }
}

/// The names of the `${...}` variables in `text`.
pub(crate) fn variables(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices("${").filter_map(move |(start, _)| {
        let length = text[start..].find('}')?;
        Some(&text[start + 2..start + length])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_and_dates() {
        assert!(ip_in("10.1.2.3", "10.0.0.0/8"));
        assert!(!ip_in("11.1.2.3", "10.0.0.0/8"));
        assert!(ip_in("::1", "::1/128"));
        assert!(ip_in("1.2.3.4", "0.0.0.0/0"));
        assert_eq!(parse_date("1970-01-02T00:00:00Z"), Some(86_400.0));
        assert_eq!(parse_date("2020-01-01T00:00:00Z"), Some(1_577_836_800.0));
    }
}
