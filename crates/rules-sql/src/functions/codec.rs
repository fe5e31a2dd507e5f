//! Hashes, encode and decode: functions of bytes. Raw bytes are read as they
//! are, anything else as the UTF-8 of its string form.

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use sha2::Digest;

use crate::EvalError;
use crate::value::{Value, payload_value};

/// Base64 as Java's decoder (which AWS runs) reads it: padding optional.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Binary(bytes) => Some(bytes.clone()),
        other => other.to_text().map(String::into_bytes),
    }
}

/// The lowercase hex digest of the value's bytes.
pub fn hash<D: Digest>(value: &Value) -> Value {
    bytes(value).map_or(Value::Undefined, |bytes| Value::String(hex(&D::digest(bytes))))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `encode(value, 'base64')`.
pub fn encode(value: &Value, scheme: &Value) -> Result<Value, EvalError> {
    if !is_base64("encode", scheme)? {
        return Ok(Value::Undefined);
    }
    Ok(bytes(value).map_or(Value::Undefined, |bytes| Value::String(STANDARD.encode(bytes))))
}

/// `decode(value, 'base64')`: a JSON document when the bytes are one, else their
/// text, else the raw bytes; Null when the value is not base64 (AWS).
pub fn decode(value: &Value, scheme: &Value) -> Result<Value, EvalError> {
    if !is_base64("decode", scheme)? {
        return Ok(Value::Undefined);
    }
    let Some(text) = value.to_text() else {
        return Ok(Value::Undefined);
    };
    Ok(LENIENT_BASE64.decode(text).map_or(Value::Null, |bytes| decoded(&bytes)))
}

fn decoded(bytes: &[u8]) -> Value {
    match payload_value(bytes) {
        Value::Binary(raw) => String::from_utf8(raw).map_or_else(|err| Value::Binary(err.into_bytes()), Value::String),
        document => document,
    }
}

/// Whether the scheme is base64, the one built; another named scheme (AWS also
/// decodes protobuf, with a descriptor set) is Unsupported.
fn is_base64(function: &str, scheme: &Value) -> Result<bool, EvalError> {
    match scheme {
        Value::String(name) if name.eq_ignore_ascii_case("base64") => Ok(true),
        Value::String(name) => Err(EvalError::Unsupported(format!("{function}() with scheme '{name}'"))),
        _ => Ok(false),
    }
}
