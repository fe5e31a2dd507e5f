//! `parse_time()` and `time_to_epoch()`: dates written with Joda/Java pattern
//! letters (`yyyy yy MM MMM MMMM dd d HH H hh h mm ss SSS a E G Z ZZ z V X`,
//! `'quoted text'`), in UTC or at a fixed offset. Named zones
//! ('America/Belize') need a zone database ferrocore does not carry, so they are
//! [`EvalError::Unsupported`], as are the pattern letters not listed here.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use crate::EvalError;
use crate::value::Value;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// `parse_time(pattern, epochMillis[, zone])`: the instant written in the zone
/// (UTC by default).
pub fn parse_time(pattern: &Value, epoch_ms: &Value, zone: Option<&Value>) -> Result<Value, EvalError> {
    let (Some(pattern), Some(epoch_ms)) = (pattern.to_text(), epoch_ms.to_int()) else {
        return Ok(Value::Undefined);
    };
    let offset = match zone.map(Value::to_text) {
        None => 0,
        Some(Some(zone)) => offset_seconds(&zone).ok_or_else(|| unsupported_zone(&zone))?,
        Some(None) => return Ok(Value::Undefined),
    };
    let fields = fields(&pattern)?;
    let Some(wall) = wall_clock(epoch_ms, offset) else {
        return Ok(Value::Undefined);
    };
    let text = fields
        .iter()
        .map(|field| match field {
            Field::Literal(text) => text.clone(),
            Field::Letter(letter, count) => format_letter(*letter, *count, &wall, offset),
        })
        .collect();
    Ok(Value::String(text))
}

/// `time_to_epoch(text, pattern)`: milliseconds since the epoch; UTC unless the
/// text names an offset; Undefined when the text does not fit the pattern.
pub fn time_to_epoch(text: &Value, pattern: &Value) -> Result<Value, EvalError> {
    let (Some(text), Some(pattern)) = (text.to_text(), pattern.to_text()) else {
        return Ok(Value::Undefined);
    };
    let fields = fields(&pattern)?;
    Ok(Parsed::read(&text, &fields)?.and_then(|parsed| parsed.epoch_ms()).map_or(Value::Undefined, Value::Int))
}

fn unsupported_zone(zone: &str) -> EvalError {
    EvalError::Unsupported(format!("time zone {zone} (only UTC and fixed offsets)"))
}

/// What a run of one pattern letter stands for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Letter {
    Era,
    Year,
    Month,
    Day,
    Weekday,
    HalfDay,
    Hour,
    HalfDayHour,
    Minute,
    Second,
    Fraction,
    /// z, Z, V, X or x: they differ only in how they write an offset.
    Zone(char),
}

impl Letter {
    fn from_char(c: char) -> Option<Letter> {
        Some(match c {
            'G' => Letter::Era,
            'y' | 'Y' | 'u' => Letter::Year,
            'M' => Letter::Month,
            'd' => Letter::Day,
            'E' => Letter::Weekday,
            'a' => Letter::HalfDay,
            'H' => Letter::Hour,
            'h' => Letter::HalfDayHour,
            'm' => Letter::Minute,
            's' => Letter::Second,
            'S' => Letter::Fraction,
            'z' | 'Z' | 'V' | 'X' | 'x' => Letter::Zone(c),
            _ => return None,
        })
    }

    /// Whether the field is written in digits.
    fn is_numeric(self, count: usize) -> bool {
        match self {
            Letter::Month => count <= 2,
            Letter::Era | Letter::Weekday | Letter::HalfDay | Letter::Zone(_) => false,
            _ => true,
        }
    }

    /// The most digits a numeric field takes when no numeric field follows it.
    fn widest(self) -> usize {
        if self == Letter::Year { 9 } else { 2 }
    }
}

enum Field {
    Literal(String),
    /// A letter and how many times it repeats.
    Letter(Letter, usize),
}

fn fields(pattern: &str) -> Result<Vec<Field>, EvalError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut fields = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let (literal, next) = quoted(&chars, i + 1);
            fields.push(Field::Literal(literal));
            i = next;
        } else if c.is_ascii_alphabetic() {
            let start = i;
            while chars.get(i) == Some(&c) {
                i += 1;
            }
            let letter =
                Letter::from_char(c).ok_or_else(|| EvalError::Unsupported(format!("date pattern letter '{c}'")))?;
            fields.push(Field::Letter(letter, i - start));
        } else {
            fields.push(Field::Literal(c.to_string()));
            i += 1;
        }
    }
    Ok(fields)
}

/// The quoted text starting at `start` (after its opening quote), and where the
/// pattern goes on. `''` is a quote, inside quotes or out.
fn quoted(chars: &[char], start: usize) -> (String, usize) {
    if chars.get(start) == Some(&'\'') {
        return ("'".to_string(), start + 1);
    }
    let mut text = String::new();
    let mut i = start;
    while let Some(&c) = chars.get(i) {
        if c == '\'' {
            if chars.get(i + 1) != Some(&'\'') {
                return (text, i + 1);
            }
            i += 1;
        }
        text.push(c);
        i += 1;
    }
    // Unterminated: the rest is literal, as Joda reads it.
    (text, i)
}

/// The calendar fields of an instant as shown `offset` seconds east of UTC.
fn wall_clock(epoch_ms: i64, offset: i32) -> Option<OffsetDateTime> {
    let shifted_ms = i128::from(epoch_ms) + i128::from(offset) * 1000;
    OffsetDateTime::from_unix_timestamp_nanos(shifted_ms * 1_000_000).ok()
}

fn format_letter(letter: Letter, count: usize, wall: &OffsetDateTime, offset: i32) -> String {
    // Zero-padding is capped: a pattern letter repeated thousands of times must not
    // make formatting panic (widths beyond u16::MAX do) or allocate without bound.
    let width = count.min(32);
    let padded = |n: i32| format!("{n:0width$}");
    let month = usize::from(u8::from(wall.month())) - 1;
    let weekday = usize::from(wall.weekday().number_days_from_monday());
    match letter {
        Letter::Era => String::from(if wall.year() > 0 { "AD" } else { "BC" }),
        Letter::Year if count == 2 => format!("{:02}", wall.year().rem_euclid(100)),
        Letter::Year => padded(wall.year()),
        Letter::Month if count >= 4 => MONTHS[month].to_string(),
        Letter::Month if count == 3 => MONTHS[month][..3].to_string(),
        Letter::Month => padded(month as i32 + 1),
        Letter::Day => padded(wall.day().into()),
        Letter::Weekday if count >= 4 => WEEKDAYS[weekday].to_string(),
        Letter::Weekday => WEEKDAYS[weekday][..3].to_string(),
        Letter::HalfDay => String::from(if wall.hour() < 12 { "AM" } else { "PM" }),
        Letter::Hour => padded(wall.hour().into()),
        Letter::HalfDayHour => padded(((wall.hour() + 11) % 12 + 1).into()),
        Letter::Minute => padded(wall.minute().into()),
        Letter::Second => padded(wall.second().into()),
        Letter::Fraction => fraction(wall.millisecond(), count),
        Letter::Zone(c) => format_zone(c, count, offset),
    }
}

/// The milliseconds as `digits` digits of a fraction of a second.
fn fraction(millis: u16, digits: usize) -> String {
    let mut text = format!("{millis:03}");
    text.truncate(digits);
    text.push_str(&"0".repeat(digits.saturating_sub(3)));
    text
}

/// Joda's Z (+0500), ZZ (+05:00) and z/ZZZ/V (the zone's id: UTC or +05:00);
/// Java's X (Z for UTC) and x (+05, +0500, +05:00 by count).
fn format_zone(letter: char, count: usize, offset: i32) -> String {
    match (letter, count) {
        ('X', _) if offset == 0 => "Z".to_string(),
        ('X' | 'x', 1) => offset_text(offset, "")[..3].to_string(),
        ('Z', 1) | ('X' | 'x', 2) => offset_text(offset, ""),
        ('Z', 2) | ('X' | 'x', _) => offset_text(offset, ":"),
        _ if offset == 0 => "UTC".to_string(),
        _ => offset_text(offset, ":"),
    }
}

fn offset_text(offset: i32, separator: &str) -> String {
    let sign = if offset < 0 { '-' } else { '+' };
    let minutes = offset.abs() / 60;
    format!("{sign}{:02}{separator}{:02}", minutes / 60, minutes % 60)
}

/// Seconds east of UTC of 'UTC', 'GMT', 'Z', '+05:00', '-0800', '+5' or
/// 'UTC+01:00'; `None` for anything else (a named zone).
fn offset_seconds(zone: &str) -> Option<i32> {
    if zone == "Z" {
        return Some(0);
    }
    let offset = zone.strip_prefix("UTC").or_else(|| zone.strip_prefix("GMT")).unwrap_or(zone);
    if offset.is_empty() {
        return (!zone.is_empty()).then_some(0);
    }
    let (sign, digits) =
        if let Some(digits) = offset.strip_prefix('+') { (1, digits) } else { (-1, offset.strip_prefix('-')?) };
    let (hours, minutes) = match digits.split_once(':') {
        Some(parts) => parts,
        None if digits.len() == 4 && digits.is_ascii() => digits.split_at(2),
        None => (digits, "0"),
    };
    let (hours, minutes) = (small_number(hours)?, small_number(minutes)?);
    (hours <= 18 && minutes < 60).then_some(sign * (hours * 3600 + minutes * 60))
}

/// One or two ASCII digits.
fn small_number(text: &str) -> Option<i32> {
    let valid = (1..=2).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
    if valid { text.parse().ok() } else { None }
}

/// A cursor over the text `time_to_epoch` reads.
struct Reader<'t> {
    rest: &'t str,
}

impl Reader<'_> {
    fn literal(&mut self, literal: &str) -> Option<()> {
        self.rest = self.rest.strip_prefix(literal)?;
        Some(())
    }

    /// Between `min` and `max` ASCII digits.
    fn number(&mut self, min: usize, max: usize) -> Option<u32> {
        let length = self.rest.bytes().take(max).take_while(u8::is_ascii_digit).count();
        if length < min {
            return None;
        }
        let (digits, rest) = self.rest.split_at(length);
        self.rest = rest;
        digits.parse().ok()
    }

    /// The index of the name that comes next (any case).
    fn one_of<'n>(&mut self, names: impl IntoIterator<Item = &'n str>) -> Option<usize> {
        for (index, name) in names.into_iter().enumerate() {
            if let Some(head) = self.rest.get(..name.len())
                && head.eq_ignore_ascii_case(name)
            {
                self.rest = &self.rest[name.len()..];
                return Some(index);
            }
        }
        None
    }

    /// A zone written as an offset or 'UTC'/'GMT'/'Z' (optionally followed by
    /// one), in seconds east of UTC.
    fn zone(&mut self) -> Result<Option<i32>, EvalError> {
        let length =
            self.rest.find(|c: char| !(c.is_ascii_alphanumeric() || "+-:/_".contains(c))).unwrap_or(self.rest.len());
        let (token, rest) = self.rest.split_at(length);
        self.rest = rest;
        match offset_seconds(token) {
            Some(seconds) => Ok(Some(seconds)),
            None if token.starts_with(|c: char| c.is_ascii_alphabetic()) => Err(unsupported_zone(token)),
            None => Ok(None),
        }
    }
}

/// The fields `time_to_epoch` read; what the pattern leaves out is taken from
/// 1970-01-01T00:00:00.000 UTC.
struct Parsed {
    year: i32,
    month: u8,
    day: u8,
    hour: u8,
    /// An `h` hour (1–12), made a day's hour by the `a` marker.
    half_day_hour: Option<u8>,
    pm: bool,
    minute: u8,
    second: u8,
    millis: u16,
    offset_seconds: i32,
}

impl Parsed {
    /// The fields of `text` read by the pattern; `None` when it does not fit.
    fn read(text: &str, fields: &[Field]) -> Result<Option<Parsed>, EvalError> {
        let mut parsed = Parsed {
            year: 1970,
            month: 1,
            day: 1,
            hour: 0,
            half_day_hour: None,
            pm: false,
            minute: 0,
            second: 0,
            millis: 0,
            offset_seconds: 0,
        };
        let mut reader = Reader { rest: text };
        for (index, field) in fields.iter().enumerate() {
            let read = match field {
                Field::Literal(literal) => reader.literal(literal),
                Field::Letter(letter, count) => {
                    // A numeric field right before another takes exactly its width ("yyyyMMdd").
                    let adjacent = matches!(fields.get(index + 1), Some(Field::Letter(next, n)) if next.is_numeric(*n));
                    let widest = if adjacent { *count } else { (*count).max(letter.widest()) };
                    parsed.read_field(&mut reader, *letter, *count, widest)?
                }
            };
            if read.is_none() {
                return Ok(None);
            }
        }
        Ok(reader.rest.is_empty().then_some(parsed))
    }

    /// Reads one field; numbers take `count` to `widest` digits (a fraction
    /// exactly `count`).
    fn read_field(
        &mut self,
        reader: &mut Reader<'_>,
        letter: Letter,
        count: usize,
        widest: usize,
    ) -> Result<Option<()>, EvalError> {
        Ok(match letter {
            Letter::Era => reader.one_of(["AD", "BC"]).map(drop),
            // Two-digit years are 2000–2099, as java.time reads them.
            Letter::Year if count == 2 => reader.number(2, 2).map(|n| self.year = 2000 + n as i32),
            Letter::Year => reader.number(count, widest).map(|n| self.year = n as i32),
            Letter::Month if count >= 4 => reader.one_of(MONTHS).map(|i| self.month = i as u8 + 1),
            Letter::Month if count == 3 => reader.one_of(MONTHS.map(|m| &m[..3])).map(|i| self.month = i as u8 + 1),
            Letter::Month => reader.number(count, widest).map(|n| self.month = n as u8),
            Letter::Day => reader.number(count, widest).map(|n| self.day = n as u8),
            Letter::Weekday if count >= 4 => reader.one_of(WEEKDAYS).map(drop),
            Letter::Weekday => reader.one_of(WEEKDAYS.map(|d| &d[..3])).map(drop),
            Letter::HalfDay => reader.one_of(["AM", "PM"]).map(|i| self.pm = i == 1),
            Letter::Hour => reader.number(count, widest).map(|n| self.hour = n as u8),
            Letter::HalfDayHour => reader.number(count, widest).map(|n| self.half_day_hour = Some(n as u8)),
            Letter::Minute => reader.number(count, widest).map(|n| self.minute = n as u8),
            Letter::Second => reader.number(count, widest).map(|n| self.second = n as u8),
            Letter::Fraction => reader.number(count, count).map(|n| self.millis = millis(n, count)),
            Letter::Zone(_) => reader.zone()?.map(|seconds| self.offset_seconds = seconds),
        })
    }

    fn epoch_ms(&self) -> Option<i64> {
        let hour = match self.half_day_hour {
            Some(hour) => hour % 12 + if self.pm { 12 } else { 0 },
            None => self.hour,
        };
        let date = Date::from_calendar_date(self.year, Month::try_from(self.month).ok()?, self.day).ok()?;
        let time = Time::from_hms_milli(hour, self.minute, self.second, self.millis).ok()?;
        let utc_ms = PrimitiveDateTime::new(date, time).assume_utc().unix_timestamp_nanos() / 1_000_000;
        Some(i64::try_from(utc_ms).ok()? - i64::from(self.offset_seconds) * 1000)
    }
}

/// A fraction of a second written with `digits` digits, as milliseconds (cut,
/// not rounded, past three digits).
fn millis(fraction: u32, digits: usize) -> u16 {
    let digits = digits as u32;
    let scaled =
        if digits <= 3 { fraction * 10_u32.pow(3 - digits) } else { fraction / 10_u32.saturating_pow(digits - 3) };
    scaled as u16
}
