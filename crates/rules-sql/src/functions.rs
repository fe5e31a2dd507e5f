//! The function catalogue. Names are case-insensitive in SQL; every name AWS
//! documents parses, and those that need another service or are not built yet
//! fail at evaluation with [`EvalError::Unsupported`](crate::EvalError).

use crate::eval::Context;
use crate::value::Value;
use crate::EvalError;

const CATALOGUE: &[&str] = &[
    "abs", "acos", "asin", "atan", "atan2", "ceil", "cos", "cosh", "exp", "floor", "ln", "log", "mod", "nanvl", "power",
    "rand", "remainder", "round", "sign", "sin", "sinh", "sqrt", "tan", "tanh", "trunc", "bitand", "bitor", "bitxor",
    "bitnot", "chr", "concat", "endswith", "indexof", "length", "lower", "lpad", "ltrim", "numbytes", "regexp_matches",
    "regexp_replace", "regexp_substr", "replace", "rpad", "rtrim", "startswith", "substring", "trim", "upper", "md2",
    "md5", "sha1", "sha224", "sha256", "sha384", "sha512", "encode", "decode", "get", "isNull", "isUndefined", "transform",
    "accountid", "clientid", "principal", "topic", "traceid", "timestamp", "newuuid", "sql_version", "parse_time",
    "time_to_epoch", "aws_lambda", "get_dynamodb", "get_secret", "get_thing_shadow", "machinelearning_predict",
    "get_registry_data", "get_mqtt_property", "get_user_properties",
];

/// The catalogue's spelling of a function name, if it is one.
pub fn canonical_name(name: &str) -> Option<&'static str> {
    CATALOGUE.iter().copied().find(|known| known.eq_ignore_ascii_case(name))
}

fn number(value: &Value) -> Option<f64> {
    value.as_f64()
}

fn math(args: &[Value], f: impl Fn(f64) -> f64) -> Value {
    match args.first().and_then(number) {
        Some(x) => decimal_or_int(f(x)),
        None => Value::Undefined,
    }
}

fn decimal_or_int(x: f64) -> Value {
    if x.is_nan() || x.is_infinite() { Value::Undefined } else { Value::Decimal(x) }
}

fn text(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::to_text)
}

pub fn call(name: &str, args: &[Value], context: &Context) -> Result<Value, EvalError> {
    let arg = |i: usize| args.get(i).cloned().unwrap_or(Value::Undefined);
    Ok(match name {
        "abs" => match arg(0).to_number() {
            Some(Value::Int(n)) => Value::Int(n.abs()),
            Some(Value::Decimal(d)) => Value::Decimal(d.abs()),
            _ => Value::Undefined,
        },
        "ceil" => math(args, f64::ceil).into_int(),
        "floor" => math(args, f64::floor).into_int(),
        "round" => math(args, f64::round).into_int(),
        "trunc" => match (arg(0).as_f64(), arg(1).as_f64()) {
            (Some(x), Some(places)) => {
                let scale = 10f64.powi(places as i32);
                decimal_or_int((x * scale).trunc() / scale)
            }
            _ => Value::Undefined,
        },
        "sqrt" => math(args, f64::sqrt),
        "exp" => math(args, f64::exp),
        "ln" => math(args, f64::ln),
        "sin" => math(args, f64::sin),
        "cos" => math(args, f64::cos),
        "tan" => math(args, f64::tan),
        "sign" => math(args, f64::signum).into_int(),
        "power" => match (arg(0).as_f64(), arg(1).as_f64()) {
            (Some(x), Some(y)) => decimal_or_int(x.powf(y)),
            _ => Value::Undefined,
        },
        "mod" => match (arg(0).to_number(), arg(1).to_number()) {
            (Some(Value::Int(a)), Some(Value::Int(b))) if b != 0 => Value::Int(a.rem_euclid(b)),
            _ => Value::Undefined,
        },
        "lower" => text(args.first()).map_or(Value::Undefined, |s| Value::String(s.to_lowercase())),
        "upper" => text(args.first()).map_or(Value::Undefined, |s| Value::String(s.to_uppercase())),
        "trim" => text(args.first()).map_or(Value::Undefined, |s| Value::String(s.trim().to_string())),
        "ltrim" => text(args.first()).map_or(Value::Undefined, |s| Value::String(s.trim_start().to_string())),
        "rtrim" => text(args.first()).map_or(Value::Undefined, |s| Value::String(s.trim_end().to_string())),
        "length" => match arg(0) {
            Value::String(s) => Value::Int(s.chars().count() as i64),
            Value::Array(items) => Value::Int(items.len() as i64),
            _ => Value::Undefined,
        },
        "concat" => concat(args),
        "startswith" => match (text(args.first()), text(args.get(1))) {
            (Some(s), Some(prefix)) => Value::Bool(s.starts_with(&prefix)),
            _ => Value::Undefined,
        },
        "endswith" => match (text(args.first()), text(args.get(1))) {
            (Some(s), Some(suffix)) => Value::Bool(s.ends_with(&suffix)),
            _ => Value::Undefined,
        },
        "indexof" => match (text(args.first()), text(args.get(1))) {
            (Some(s), Some(needle)) => Value::Int(s.find(&needle).map_or(-1, |at| s[..at].chars().count() as i64)),
            _ => Value::Undefined,
        },
        "replace" => match (text(args.first()), text(args.get(1)), text(args.get(2))) {
            (Some(s), Some(from), Some(to)) => Value::String(s.replace(&from, &to)),
            _ => Value::Undefined,
        },
        "substring" => substring(&arg(0), &arg(1), args.get(2)),
        "get" => match (arg(0), arg(1)) {
            (Value::Array(items), index) => match index.to_number() {
                Some(Value::Int(i)) if i >= 0 => items.get(i as usize).cloned().unwrap_or(Value::Undefined),
                _ => Value::Undefined,
            },
            (object @ Value::Object(_), Value::String(key)) => object.field(&key),
            _ => Value::Undefined,
        },
        "isNull" => Value::Bool(arg(0) == Value::Null),
        "isUndefined" => Value::Bool(arg(0) == Value::Undefined),
        "topic" => match args.first() {
            None => Value::String(context.topic.clone()),
            Some(index) => match index.to_number() {
                Some(Value::Int(n)) if n >= 1 => {
                    context.topic.split('/').nth(n as usize - 1).map_or(Value::Undefined, |s| Value::String(s.to_string()))
                }
                _ => Value::Undefined,
            },
        },
        "clientid" => context.client_id.clone().map_or(Value::Undefined, Value::String),
        "principal" => context.principal.clone().map_or(Value::Undefined, Value::String),
        "accountid" => Value::String(context.account_id.clone()),
        "timestamp" => Value::Int(context.timestamp_ms),
        "newuuid" => Value::String(context.new_uuid.clone()),
        "traceid" => Value::String(context.trace_id.clone()),
        "sql_version" => Value::String(context.sql_version.clone()),
        other => return Err(EvalError::Unsupported(other.to_string())),
    })
}

fn concat(args: &[Value]) -> Value {
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
    let mut out = String::new();
    for value in args {
        match value.to_text() {
            Some(text) => out.push_str(&text),
            None => return Value::Undefined,
        }
    }
    Value::String(out)
}

fn substring(value: &Value, start: &Value, end: Option<&Value>) -> Value {
    let (Some(s), Some(Value::Int(start))) = (value.to_text(), start.to_number()) else { return Value::Undefined };
    let chars: Vec<char> = s.chars().collect();
    let from = (start.max(0) as usize).min(chars.len());
    let to = match end.and_then(Value::to_number) {
        Some(Value::Int(end)) => (end.max(0) as usize).clamp(from, chars.len()),
        Some(_) => return Value::Undefined,
        None => chars.len(),
    };
    Value::String(chars[from..to].iter().collect())
}

impl Value {
    /// Whole decimals from rounding functions become Ints.
    fn into_int(self) -> Value {
        match self {
            Value::Decimal(d) if d.fract() == 0.0 && d.abs() < 9.0e18 => Value::Int(d as i64),
            other => other,
        }
    }
}
