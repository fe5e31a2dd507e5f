//! regexp_matches, regexp_replace, regexp_substr. AWS runs Java's regular
//! expressions; Rust's `regex` shares their common syntax (no look-around or
//! backreferences). An invalid pattern or replacement makes the result Undefined.

use std::cell::RefCell;
use std::collections::HashMap;
use std::iter::Peekable;
use std::str::Chars;

use regex::{Captures, Regex};

use crate::value::Value;

/// Patterns compiled per thread, so a rule's regex is compiled once, not per message.
const CACHED_PATTERNS: usize = 64;

/// Compiled patterns are bounded: a pattern taken from message data must not grow
/// without end, nor take long to build.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

thread_local! {
    static PATTERNS: RefCell<HashMap<String, Option<Regex>>> = RefCell::new(HashMap::new());
}

fn compile(pattern: &Value) -> Option<Regex> {
    let text = pattern.to_text()?;
    PATTERNS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(compiled) = cache.get(&text) {
            return compiled.clone();
        }
        if cache.len() >= CACHED_PATTERNS {
            cache.clear();
        }
        let compiled = regex::RegexBuilder::new(&text).size_limit(PATTERN_SIZE_LIMIT).build().ok();
        cache.insert(text, compiled.clone());
        compiled
    })
}

/// Whether the pattern matches anywhere in the string.
pub fn matches(value: &Value, pattern: &Value) -> Value {
    match (value.to_text(), compile(pattern)) {
        (Some(s), Some(regex)) => Value::Bool(regex.is_match(&s)),
        _ => Value::Undefined,
    }
}

/// The first match; Undefined when there is none.
pub fn substr(value: &Value, pattern: &Value) -> Value {
    match (value.to_text(), compile(pattern)) {
        (Some(s), Some(regex)) => regex.find(&s).map_or(Value::Undefined, |m| Value::String(m.as_str().to_string())),
        _ => Value::Undefined,
    }
}

/// Every match replaced; the replacement refers to groups as Java's does.
pub fn replace(value: &Value, pattern: &Value, replacement: &Value) -> Value {
    let (Some(s), Some(regex), Some(replacement)) = (value.to_text(), compile(pattern), replacement.to_text()) else {
        return Value::Undefined;
    };
    let Some(pieces) = java_replacement(&replacement, &regex) else {
        return Value::Undefined;
    };
    Value::String(regex.replace_all(&s, |captures: &Captures| expand(&pieces, captures)).into_owned())
}

/// A part of a replacement string.
enum Piece {
    Char(char),
    Group(usize),
    Named(String),
}

/// Reads a replacement with Java's rules: `$n` and `${name}` name groups, `\x`
/// is a literal x, any other `$` is an error.
fn java_replacement(replacement: &str, regex: &Regex) -> Option<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        pieces.push(match c {
            '\\' => Piece::Char(chars.next()?),
            '$' => group_reference(&mut chars, regex)?,
            other => Piece::Char(other),
        });
    }
    Some(pieces)
}

/// After `$`: `{name}`, or the longest run of digits that still names a group
/// (Java's rule: with two groups, `$12` is group 1 then the text "2").
fn group_reference(chars: &mut Peekable<Chars<'_>>, regex: &Regex) -> Option<Piece> {
    if chars.next_if_eq(&'{').is_some() {
        let mut name = String::new();
        loop {
            match chars.next()? {
                '}' => break,
                c => name.push(c),
            }
        }
        return regex.capture_names().flatten().any(|n| n == name).then_some(Piece::Named(name));
    }
    let groups = regex.captures_len() - 1;
    let mut group = chars.next()?.to_digit(10)? as usize;
    if group > groups {
        return None;
    }
    while let Some(digit) = chars.peek().and_then(|c| c.to_digit(10)) {
        let longer = group * 10 + digit as usize;
        if longer > groups {
            break;
        }
        group = longer;
        chars.next();
    }
    Some(Piece::Group(group))
}

/// The replacement for one match; a group that did not take part is empty.
fn expand(pieces: &[Piece], captures: &Captures<'_>) -> String {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Char(c) => out.push(*c),
            Piece::Group(n) => out.push_str(captures.get(*n).map_or("", |m| m.as_str())),
            Piece::Named(name) => out.push_str(captures.name(name).map_or("", |m| m.as_str())),
        }
    }
    out
}
