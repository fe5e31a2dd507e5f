//! AWS IoT SQL values: JSON's types plus Undefined (a missing field, a failed
//! conversion) and Binary (a payload that is not JSON), with AWS's coercions.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value as Json;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Undefined,
    Null,
    Bool(bool),
    Int(i64),
    Decimal(f64),
    String(String),
    Array(Vec<Value>),
    /// Fields in document order; never holds Undefined.
    Object(Vec<(String, Value)>),
    /// Raw bytes: a payload that is not JSON, or decoded bytes that are neither
    /// JSON nor UTF-8. Only `encode()` and the hash functions turn them into text.
    Binary(Vec<u8>),
}

/// The value of a message payload as AWS sees it: the parsed JSON document, or
/// the raw bytes when the payload is not JSON.
pub fn payload_value(bytes: &[u8]) -> Value {
    serde_json::from_slice::<Json>(bytes).map_or_else(|_| Value::Binary(bytes.to_vec()), |json| Value::from_json(&json))
}

/// The bytes a rule emits for a result: raw bytes stay raw, Undefined is an empty
/// payload, anything else is its compact JSON text.
pub fn output_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::Binary(bytes) => bytes.clone(),
        other => other.to_json().map(|json| json.to_string().into_bytes()).unwrap_or_default(),
    }
}

impl Value {
    pub fn from_json(json: &Json) -> Self {
        match json {
            Json::Null => Self::Null,
            Json::Bool(b) => Self::Bool(*b),
            Json::Number(n) => n.as_i64().map_or_else(|| Self::Decimal(n.as_f64().unwrap_or(f64::NAN)), Self::Int),
            Json::String(s) => Self::String(s.clone()),
            Json::Array(items) => Self::Array(items.iter().map(Self::from_json).collect()),
            Json::Object(map) => Self::Object(map.iter().map(|(k, v)| (k.clone(), Self::from_json(v))).collect()),
        }
    }

    /// The JSON form; `None` for Undefined (which output objects drop). Binary
    /// nested in a document has no JSON form of its own: it becomes its base64 text.
    pub fn to_json(&self) -> Option<Json> {
        Some(match self {
            Self::Undefined => return None,
            Self::Null => Json::Null,
            Self::Bool(b) => Json::Bool(*b),
            Self::Int(n) => Json::from(*n),
            // A whole decimal is an Int (SQL version 2016-03-23).
            Self::Decimal(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => Json::from(*d as i64),
            Self::Decimal(d) => serde_json::Number::from_f64(*d).map_or(Json::Null, Json::Number),
            Self::String(s) => Json::String(s.clone()),
            Self::Array(items) => Json::Array(items.iter().map(|v| v.to_json().unwrap_or(Json::Null)).collect()),
            Self::Object(fields) => {
                Json::Object(fields.iter().filter_map(|(k, v)| Some((k.clone(), v.to_json()?))).collect())
            }
            Self::Binary(bytes) => Json::String(BASE64.encode(bytes)),
        })
    }

    pub fn field(&self, name: &str) -> Value {
        match self {
            Self::Object(fields) => fields.iter().find(|(k, _)| k == name).map_or(Value::Undefined, |(_, v)| v.clone()),
            _ => Value::Undefined,
        }
    }

    /// Booleans, and the strings "true"/"false" (any case).
    pub fn to_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            Self::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Self::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }

    /// A number, from numbers and numeric strings (`-?\d+(\.\d+)?([eE]-?\d+)?`).
    pub fn to_number(&self) -> Option<Value> {
        match self {
            Self::Int(_) | Self::Decimal(_) => Some(self.clone()),
            Self::String(s) if is_numeric(s) => {
                Some(s.parse::<i64>().map(Value::Int).unwrap_or_else(|_| Value::Decimal(s.parse().unwrap_or(f64::NAN))))
            }
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self.to_number()? {
            Value::Int(n) => Some(n as f64),
            Value::Decimal(d) => Some(d),
            _ => None,
        }
    }

    /// An Int from numbers and numeric strings, decimals rounded toward zero (AWS's
    /// "rounded down"); values beyond the Int range saturate.
    pub fn to_int(&self) -> Option<i64> {
        match self.to_number()? {
            Value::Int(n) => Some(n),
            Value::Decimal(d) if !d.is_nan() => Some(d.trunc() as i64),
            _ => None,
        }
    }

    /// The string form: numbers as text, booleans lowercase, arrays and objects as
    /// JSON; Null, Undefined and Binary have none.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Self::Undefined | Self::Null | Self::Binary(_) => None,
            Self::String(s) => Some(s.clone()),
            other => other.to_json().map(|json| json.to_string()),
        }
    }
}

fn is_numeric(text: &str) -> bool {
    let body = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (mantissa, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && fraction.is_none_or(digits) && exponent.is_none_or(|e| digits(e.strip_prefix('-').unwrap_or(e)))
}
