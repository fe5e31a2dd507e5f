//! String functions. Other arguments take AWS's standard string conversion
//! (numbers as text, booleans lowercase, arrays and objects as JSON); Null,
//! Undefined and raw bytes make the result Undefined.

use crate::value::Value;

/// The most spaces lpad and rpad add.
const MAX_PADDING: i64 = 1000;

/// `f` applied to the string form of `value`.
pub fn map(value: &Value, f: impl Fn(&str) -> Value) -> Value {
    value.to_text().map_or(Value::Undefined, |s| f(&s))
}

/// startswith, endswith: a test between two string forms.
pub fn compare(value: &Value, other: &Value, test: impl Fn(&str, &str) -> bool) -> Value {
    match (value.to_text(), other.to_text()) {
        (Some(s), Some(other)) => Value::Bool(test(&s, &other)),
        _ => Value::Undefined,
    }
}

/// The ASCII character of a code (decimals and numeric strings rounded down).
pub fn chr(code: &Value) -> Value {
    code.to_int()
        .and_then(|c| u8::try_from(c).ok())
        .filter(u8::is_ascii)
        .map_or(Value::Undefined, |c| Value::String(char::from(c).to_string()))
}

/// With an array among the arguments, one array of all of them (arrays spliced
/// in); otherwise the string forms joined.
pub fn concat(args: &[Value]) -> Value {
    if args.is_empty() {
        return Value::Undefined;
    }
    if args.iter().any(|v| matches!(v, Value::Array(_))) {
        let mut items = Vec::new();
        for value in args {
            match value {
                Value::Array(inner) => items.extend(inner.iter().cloned()),
                Value::Undefined => return Value::Undefined,
                other => items.push(other.clone()),
            }
        }
        return Value::Array(items);
    }
    args.iter().map(Value::to_text).collect::<Option<String>>().map_or(Value::Undefined, Value::String)
}

/// The 0-based character index of the first occurrence, or -1.
pub fn indexof(value: &Value, needle: &Value) -> Value {
    match (value.to_text(), needle.to_text()) {
        (Some(s), Some(needle)) => Value::Int(s.find(&needle).map_or(-1, |at| s[..at].chars().count() as i64)),
        _ => Value::Undefined,
    }
}

/// `count` spaces (clamped to 0..=1000) before the string.
pub fn lpad(value: &Value, count: &Value) -> Value {
    match (value.to_text(), spaces(count)) {
        (Some(s), Some(spaces)) => Value::String(spaces + &s),
        _ => Value::Undefined,
    }
}

/// `count` spaces (clamped to 0..=1000) after the string.
pub fn rpad(value: &Value, count: &Value) -> Value {
    match (value.to_text(), spaces(count)) {
        (Some(s), Some(spaces)) => Value::String(s + &spaces),
        _ => Value::Undefined,
    }
}

fn spaces(count: &Value) -> Option<String> {
    count.to_int().map(|n| " ".repeat(n.clamp(0, MAX_PADDING) as usize))
}

/// Every occurrence of `from` replaced (plain text, not a pattern).
pub fn replace(value: &Value, from: &Value, to: &Value) -> Value {
    match (value.to_text(), from.to_text(), to.to_text()) {
        (Some(s), Some(from), Some(to)) => Value::String(s.replace(&from, &to)),
        _ => Value::Undefined,
    }
}

/// Characters `start..end` (0-based, end exclusive, both clamped to the string;
/// empty when end is not after start), or `start..` without an end.
pub fn substring(value: &Value, start: &Value, end: Option<&Value>) -> Value {
    let (Some(s), Some(start)) = (value.to_text(), start.to_int()) else {
        return Value::Undefined;
    };
    let chars: Vec<char> = s.chars().collect();
    let length = chars.len() as i64;
    let from = start.clamp(0, length);
    let to = match end.map(Value::to_int) {
        None => length,
        Some(Some(end)) => end.clamp(from, length),
        Some(None) => return Value::Undefined,
    };
    Value::String(chars[from as usize..to as usize].iter().collect())
}
