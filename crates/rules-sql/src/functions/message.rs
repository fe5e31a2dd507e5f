//! Functions about the message rather than its payload: the topic, the MQTT 5
//! properties, and the thing shadows the caller's [`Lookups`](crate::Lookups) read.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::context::{Context, MessageProperties};
use crate::value::Value;

/// `topic()`: the whole topic; `topic(n)`: its n-th level, counted from 1.
pub fn topic(level: Option<&Value>, topic: &str) -> Value {
    let Some(level) = level else {
        return Value::String(topic.to_string());
    };
    level
        .to_int()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n >= 1)
        .and_then(|n| topic.split('/').nth(n - 1))
        .map_or(Value::Undefined, |segment| Value::String(segment.to_string()))
}

/// `get_mqtt_property(name)`; Undefined for a message without MQTT 5 properties.
pub fn mqtt_property(name: &Value, properties: Option<&MessageProperties>) -> Value {
    let (Value::String(name), Some(properties)) = (name, properties) else {
        return Value::Undefined;
    };
    let text = match name.to_ascii_lowercase().as_str() {
        "content_type" => properties.content_type.clone(),
        // An absent indicator means 0, unspecified bytes (MQTT 5, 3.3.2.3.2).
        "format_indicator" => Some(match properties.payload_format_indicator {
            Some(1) => "UTF8_DATA".to_string(),
            _ => "UNSPECIFIED_BYTES".to_string(),
        }),
        "response_topic" => properties.response_topic.clone(),
        "correlation_data" => properties.correlation_data.as_ref().map(|data| STANDARD.encode(data)),
        _ => None,
    };
    text.map_or(Value::Undefined, Value::String)
}

/// `get_user_properties()`: every key with the array of its values, in the order
/// sent; `get_user_properties(key)`: that key's values. Undefined when there are none.
pub fn user_properties(key: Option<&Value>, properties: Option<&MessageProperties>) -> Value {
    let Some(properties) = properties else {
        return Value::Undefined;
    };
    let pairs = &properties.user_properties;
    match key {
        None if pairs.is_empty() => Value::Undefined,
        None => {
            let mut grouped: Vec<(String, Vec<Value>)> = Vec::new();
            for (name, value) in pairs {
                let value = Value::String(value.clone());
                match grouped.iter().position(|(k, _)| k == name) {
                    Some(at) => grouped[at].1.push(value),
                    None => grouped.push((name.clone(), vec![value])),
                }
            }
            Value::Object(grouped.into_iter().map(|(name, values)| (name, Value::Array(values))).collect())
        }
        Some(Value::String(wanted)) => {
            let values: Vec<Value> =
                pairs.iter().filter(|(k, _)| k == wanted).map(|(_, v)| Value::String(v.clone())).collect();
            if values.is_empty() { Value::Undefined } else { Value::Array(values) }
        }
        Some(_) => Value::Undefined,
    }
}

/// `get_thing_shadow(thing, roleArn)` or `get_thing_shadow(thing, shadow,
/// roleArn)`. The role is not assumed: ferrocore reads its own shadows.
pub fn thing_shadow(args: &[Value], context: &Context) -> Value {
    let (thing, shadow) = match args {
        [thing, _role] => (thing, None),
        [thing, shadow, _role] => (thing, Some(shadow)),
        _ => return Value::Undefined,
    };
    let (Some(lookups), Some(thing)) = (&context.lookups, thing.to_text()) else {
        return Value::Undefined;
    };
    let shadow = match shadow.map(Value::to_text) {
        None => None,
        Some(Some(name)) => Some(name),
        Some(None) => return Value::Undefined,
    };
    lookups.thing_shadow(&thing, shadow.as_deref()).map_or(Value::Undefined, |json| Value::from_json(&json))
}
