//! Math and bitwise functions. Arguments convert as AWS's standard conversions
//! say (numbers and numeric strings); anything else makes the result Undefined.

use crate::context::Context;
use crate::value::Value;

/// A double-precision result; NaN and infinities (imaginary or overflowing
/// results) are Undefined.
fn decimal(x: f64) -> Value {
    if x.is_finite() { Value::Decimal(x) } else { Value::Undefined }
}

/// A whole number as an Int when it fits, else as a Decimal.
fn whole(x: f64) -> Value {
    if x.abs() < 9.2e18 { Value::Int(x as i64) } else { decimal(x) }
}

/// A double-precision function of one number: acos, cos, exp, ln, log, sqrt…
pub fn real(value: &Value, f: impl Fn(f64) -> f64) -> Value {
    value.as_f64().map_or(Value::Undefined, |x| decimal(f(x)))
}

/// A double-precision function of two numbers: atan2, power.
pub fn real2(first: &Value, second: &Value, f: impl Fn(f64, f64) -> f64) -> Value {
    match (first.as_f64(), second.as_f64()) {
        (Some(x), Some(y)) => decimal(f(x, y)),
        _ => Value::Undefined,
    }
}

/// An Int stays an Int; a Decimal keeps its type.
pub fn abs(value: &Value) -> Value {
    match value.to_number() {
        Some(Value::Int(n)) => n.checked_abs().map_or(Value::Undefined, Value::Int),
        Some(Value::Decimal(d)) => Value::Decimal(d.abs()),
        _ => Value::Undefined,
    }
}

/// ceil, floor, round (halves away from zero): an Int as it is, a Decimal as the
/// Int it rounds to.
pub fn rounded(value: &Value, f: impl Fn(f64) -> f64) -> Value {
    match value.to_number() {
        Some(Value::Int(n)) => Value::Int(n),
        Some(Value::Decimal(d)) => whole(f(d)),
        _ => Value::Undefined,
    }
}

/// -1, 0 or 1, as an Int.
pub fn sign(value: &Value) -> Value {
    match value.as_f64() {
        Some(x) if x > 0.0 => Value::Int(1),
        Some(x) if x < 0.0 => Value::Int(-1),
        Some(_) => Value::Int(0),
        None => Value::Undefined,
    }
}

/// The first value, unless it is Undefined, Null or NaN.
pub fn nanvl(value: &Value, fallback: &Value) -> Value {
    match value {
        Value::Undefined | Value::Null => fallback.clone(),
        Value::Decimal(d) if d.is_nan() => fallback.clone(),
        other => other.clone(),
    }
}

/// `trunc(x, places)`: x cut (not rounded) to 0..=34 decimal places.
pub fn trunc(value: &Value, places: &Value) -> Value {
    let Some(places) = places.to_int() else {
        return Value::Undefined;
    };
    match value.to_number() {
        Some(Value::Int(n)) => Value::Int(n),
        Some(Value::Decimal(d)) => decimal(cut_decimals(d, places.clamp(0, 34) as usize)),
        _ => Value::Undefined,
    }
}

/// Cuts the decimal text of `x`, so that 2.3123 keeps exactly "2.31" (arithmetic
/// on the binary value would give 2.3099…).
fn cut_decimals(x: f64, places: usize) -> f64 {
    let text = x.to_string();
    match text.split_once('.') {
        Some((integer, fraction)) if fraction.len() > places => {
            format!("{integer}.{}", &fraction[..places]).parse().unwrap_or(x)
        }
        _ => x,
    }
}

/// bitand, bitor, bitxor on the Int conversions of both arguments.
pub fn bits(first: &Value, second: &Value, f: impl Fn(i64, i64) -> i64) -> Value {
    match (first.to_int(), second.to_int()) {
        (Some(a), Some(b)) => Value::Int(f(a, b)),
        _ => Value::Undefined,
    }
}

/// The two's-complement NOT of the Int conversion.
pub fn bitnot(value: &Value) -> Value {
    value.to_int().map_or(Value::Undefined, |n| Value::Int(!n))
}

/// A uniform double in [0, 1). It is derived from the message's uuid and
/// timestamp, so evaluation stays deterministic (and every call in one message
/// gives the same number).
pub fn rand(context: &Context) -> Value {
    // FNV-1a over the uuid, mixed with the timestamp, then one xorshift64* step.
    let hash = context
        .new_uuid
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    // An odd seed: xorshift never leaves zero.
    let mut state = (hash ^ context.timestamp_ms as u64) | 1;
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    let random = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
    Value::Decimal((random >> 11) as f64 / (1_u64 << 53) as f64)
}
