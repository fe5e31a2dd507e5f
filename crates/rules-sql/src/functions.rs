//! The function catalogue. Names are case-insensitive in SQL; every name AWS
//! documents parses, and those that call other AWS services (Lambda, DynamoDB,
//! Secrets Manager, Machine Learning, the registry) fail at evaluation with
//! [`EvalError::Unsupported`](crate::EvalError).

mod codec;
mod datetime;
mod math;
mod message;
mod regexp;
mod text;

use crate::EvalError;
use crate::ast::BinaryOp;
use crate::context::Context;
use crate::eval::arithmetic;
use crate::value::Value;

const CATALOGUE: &[&str] = &[
    "abs",
    "acos",
    "asin",
    "atan",
    "atan2",
    "ceil",
    "cos",
    "cosh",
    "exp",
    "floor",
    "ln",
    "log",
    "mod",
    "nanvl",
    "power",
    "rand",
    "remainder",
    "round",
    "sign",
    "sin",
    "sinh",
    "sqrt",
    "tan",
    "tanh",
    "trunc",
    "bitand",
    "bitor",
    "bitxor",
    "bitnot",
    "chr",
    "concat",
    "endswith",
    "indexof",
    "length",
    "lower",
    "lpad",
    "ltrim",
    "numbytes",
    "regexp_matches",
    "regexp_replace",
    "regexp_substr",
    "replace",
    "rpad",
    "rtrim",
    "startswith",
    "substring",
    "trim",
    "upper",
    "md2",
    "md5",
    "sha1",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "encode",
    "decode",
    "get",
    "isNull",
    "isUndefined",
    "transform",
    "accountid",
    "clientid",
    "principal",
    "topic",
    "traceid",
    "timestamp",
    "newuuid",
    "sql_version",
    "parse_time",
    "time_to_epoch",
    "aws_lambda",
    "get_dynamodb",
    "get_secret",
    "get_thing_shadow",
    "machinelearning_predict",
    "get_registry_data",
    "get_mqtt_property",
    "get_user_properties",
];

/// A missing argument.
static UNDEFINED: Value = Value::Undefined;

/// The catalogue's spelling of a function name, if it is one.
pub fn canonical_name(name: &str) -> Option<&'static str> {
    CATALOGUE.iter().copied().find(|known| known.eq_ignore_ascii_case(name))
}

/// Functions of bytes: given `*`, they read the payload as published, not its value.
pub fn reads_payload_bytes(name: &str) -> bool {
    matches!(name, "encode" | "md2" | "md5" | "sha1" | "sha224" | "sha256" | "sha384" | "sha512")
}

pub fn call(name: &str, args: &[Value], context: &Context) -> Result<Value, EvalError> {
    let arg = |i: usize| args.get(i).unwrap_or(&UNDEFINED);
    Ok(match name {
        "abs" => math::abs(arg(0)),
        "acos" => math::real(arg(0), f64::acos),
        "asin" => math::real(arg(0), f64::asin),
        "atan" => math::real(arg(0), f64::atan),
        "atan2" => math::real2(arg(0), arg(1), f64::atan2),
        "ceil" => math::rounded(arg(0), f64::ceil),
        "cos" => math::real(arg(0), f64::cos),
        "cosh" => math::real(arg(0), f64::cosh),
        "exp" => math::real(arg(0), f64::exp),
        "floor" => math::rounded(arg(0), f64::floor),
        "ln" => math::real(arg(0), f64::ln),
        "log" => math::real(arg(0), f64::log10),
        "mod" | "remainder" => arithmetic(BinaryOp::Mod, arg(0), arg(1)),
        "nanvl" => math::nanvl(arg(0), arg(1)),
        "power" => math::real2(arg(0), arg(1), f64::powf),
        "rand" => math::rand(context),
        "round" => math::rounded(arg(0), f64::round),
        "sign" => math::sign(arg(0)),
        "sin" => math::real(arg(0), f64::sin),
        "sinh" => math::real(arg(0), f64::sinh),
        "sqrt" => math::real(arg(0), f64::sqrt),
        "tan" => math::real(arg(0), f64::tan),
        "tanh" => math::real(arg(0), f64::tanh),
        "trunc" => math::trunc(arg(0), arg(1)),
        "bitand" => math::bits(arg(0), arg(1), |a, b| a & b),
        "bitor" => math::bits(arg(0), arg(1), |a, b| a | b),
        "bitxor" => math::bits(arg(0), arg(1), |a, b| a ^ b),
        "bitnot" => math::bitnot(arg(0)),
        "chr" => text::chr(arg(0)),
        "concat" => text::concat(args),
        "endswith" => text::compare(arg(0), arg(1), |s, suffix| s.ends_with(suffix)),
        "indexof" => text::indexof(arg(0), arg(1)),
        "length" => text::map(arg(0), |s| Value::Int(s.chars().count() as i64)),
        "lower" => text::map(arg(0), |s| Value::String(s.to_lowercase())),
        "lpad" => text::lpad(arg(0), arg(1)),
        "ltrim" => text::map(arg(0), |s| Value::String(s.trim_start().to_string())),
        "numbytes" => text::map(arg(0), |s| Value::Int(s.len() as i64)),
        "regexp_matches" => regexp::matches(arg(0), arg(1)),
        "regexp_replace" => regexp::replace(arg(0), arg(1), arg(2)),
        "regexp_substr" => regexp::substr(arg(0), arg(1)),
        "replace" => text::replace(arg(0), arg(1), arg(2)),
        "rpad" => text::rpad(arg(0), arg(1)),
        "rtrim" => text::map(arg(0), |s| Value::String(s.trim_end().to_string())),
        "startswith" => text::compare(arg(0), arg(1), |s, prefix| s.starts_with(prefix)),
        "substring" => text::substring(arg(0), arg(1), args.get(2)),
        "trim" => text::map(arg(0), |s| Value::String(s.trim().to_string())),
        "upper" => text::map(arg(0), |s| Value::String(s.to_uppercase())),
        "md2" => codec::hash::<md2::Md2>(arg(0)),
        "md5" => codec::hash::<md5::Md5>(arg(0)),
        "sha1" => codec::hash::<sha1::Sha1>(arg(0)),
        "sha224" => codec::hash::<sha2::Sha224>(arg(0)),
        "sha256" => codec::hash::<sha2::Sha256>(arg(0)),
        "sha384" => codec::hash::<sha2::Sha384>(arg(0)),
        "sha512" => codec::hash::<sha2::Sha512>(arg(0)),
        "encode" => codec::encode(arg(0), arg(1))?,
        "decode" => codec::decode(arg(0), arg(1))?,
        "get" => get(arg(0), arg(1)),
        "isNull" => Value::Bool(*arg(0) == Value::Null),
        "isUndefined" => Value::Bool(*arg(0) == Value::Undefined),
        "transform" => transform(arg(0), arg(1), arg(2)),
        "accountid" => Value::String(context.account_id.clone()),
        "clientid" => context.client_id.clone().map_or(Value::Undefined, Value::String),
        "principal" => context.principal.clone().map_or(Value::Undefined, Value::String),
        "topic" => message::topic(args.first(), &context.topic),
        "traceid" => Value::String(context.trace_id.clone()),
        "timestamp" => Value::Int(context.timestamp_ms),
        "newuuid" => Value::String(context.new_uuid.clone()),
        "sql_version" => Value::String(context.sql_version.clone()),
        "parse_time" => datetime::parse_time(arg(0), arg(1), args.get(2))?,
        "time_to_epoch" => datetime::time_to_epoch(arg(0), arg(1))?,
        "get_thing_shadow" => message::thing_shadow(args, context),
        "get_mqtt_property" => message::mqtt_property(arg(0), context.properties.as_deref()),
        "get_user_properties" => message::user_properties(args.first(), context.properties.as_deref()),
        other => return Err(EvalError::Unsupported(other.to_string())),
    })
}

/// An array's element at a 0-based index (converted to an Int); Undefined out of range.
pub fn element(items: &[Value], index: &Value) -> Value {
    index.to_int().and_then(|i| usize::try_from(i).ok()).and_then(|i| items.get(i)).cloned().unwrap_or(Value::Undefined)
}

/// `get(collection, key)`: an array element or a string's character by 0-based
/// index, or an object's field by key.
fn get(collection: &Value, key: &Value) -> Value {
    match (collection, key) {
        (Value::Array(items), index) => element(items, index),
        (Value::String(s), index) => index
            .to_int()
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| s.chars().nth(i))
            .map_or(Value::Undefined, |c| Value::String(c.to_string())),
        (Value::Object(_), Value::String(name)) => collection.field(name),
        _ => Value::Undefined,
    }
}

/// `transform('enrichArray', object, array)`, the one mode AWS documents: every
/// object of the array with the object's attributes added (they win on a clash).
fn transform(mode: &Value, attributes: &Value, array: &Value) -> Value {
    let (Value::String(mode), Value::Object(attributes), Value::Array(elements)) = (mode, attributes, array) else {
        return Value::Undefined;
    };
    if mode != "enrichArray" {
        return Value::Undefined;
    }
    let enrich = |fields: &Vec<(String, Value)>| {
        let mut enriched: Vec<(String, Value)> =
            fields.iter().filter(|(key, _)| !attributes.iter().any(|(k, _)| k == key)).cloned().collect();
        enriched.extend(attributes.iter().cloned());
        Value::Object(enriched)
    };
    Value::Array(
        elements
            .iter()
            .filter_map(|element| match element {
                Value::Object(fields) => Some(enrich(fields)),
                _ => None,
            })
            .collect(),
    )
}
