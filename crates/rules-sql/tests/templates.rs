//! Substitution templates: `${expression}` parts of action fields, evaluated
//! against the original payload.

use std::sync::Arc;

use ferrocore_rules_sql::{Context, EvalError, Lookups, Template, Value, payload_value};
use serde_json::{Value as Json, json};

fn context() -> Context {
    Context {
        topic: "sensors/s7/temperature".into(),
        client_id: Some("sensor-7".into()),
        timestamp_ms: 1_481_825_251_155,
        ..Default::default()
    }
}

fn render(template: &str, payload: Json) -> String {
    let parsed = Template::parse(template).unwrap_or_else(|err| panic!("{template}: {err}"));
    parsed.render(&Value::from_json(&payload), &context()).unwrap_or_else(|err| panic!("{template}: {err}"))
}

#[test]
fn literal_text_stays_as_it_is() {
    let template = Template::parse("plain/topic $ and } and { $x").unwrap();
    assert!(template.is_literal());
    assert!(!template.uses_lookups());
    assert_eq!(template.render(&Value::Null, &context()).unwrap(), "plain/topic $ and } and { $x");
    assert_eq!(render("", json!({})), "");
}

#[test]
fn expressions_render_their_values() {
    let payload = json!({
        "deviceid": "iot123", "temp": 54.98, "n": null, "on": true,
        "coords": {"lat": 47.6}, "list": [1, "a"], "a-b": "dash"
    });
    let check = |template: &str, expected: &str| assert_eq!(render(template, payload.clone()), expected, "{template}");
    check("${topic()}/republish", "sensors/s7/temperature/republish");
    check("devices/${topic(2)}/${deviceid}", "devices/s7/iot123");
    // Strings bare, numbers and booleans as text, documents as compact JSON, Null and Undefined as nothing.
    check("${temp}|${on}|${n}|${missing}|${coords}|${list}", "54.98|true|||{\"lat\":47.6}|[1,\"a\"]");
    check("${temp * 2} ${clientid()}-${timestamp()}", "109.96 sensor-7-1481825251155");
    check("${parse_time('yyyy', timestamp(), 'UTC')}", "2016");
    check("${list[1]}${coords.lat}", "a47.6");
    check(
        "${*}",
        r#"{"deviceid":"iot123","temp":54.98,"n":null,"on":true,"coords":{"lat":47.6},"list":[1,"a"],"a-b":"dash"}"#,
    );
}

#[test]
fn braces_and_quotes_inside_expressions() {
    let payload = json!({"a-b": "dash"});
    let check = |template: &str, expected: &str| assert_eq!(render(template, payload.clone()), expected, "{template}");
    check("${get(*, 'a-b')}", "dash");
    check("${concat('x', '}')}", "x}");
    check("${concat(\"{\", '}}')}!", "{}}!");
    check("${get({'k': {'v': 'nested'}}, 'k').v}", "nested");
    check("${'it''s'}", "it's");
    check("${'a'}${'b'}", "ab");
}

#[test]
fn expressions_see_the_original_payload_even_when_binary() {
    let bytes = [0x00, 0xff, 0x10, b'{'];
    let template = Template::parse("${encode(*, 'base64')}/${topic(1)}/${missing}").unwrap();
    assert_eq!(template.render(&payload_value(&bytes), &context()).unwrap(), "AP8Qew==/sensors/");
}

#[test]
fn malformed_templates_are_parse_errors() {
    for (text, fragment, offset) in [
        ("a/${topic()", "unterminated", Some(2)),
        ("${'}'", "unterminated", Some(0)),
        ("${'open}", "unterminated", Some(0)),
        ("x${", "unterminated", Some(1)),
        ("x${{}", "unterminated", Some(1)),
        ("${}", "expected an expression", Some(2)),
        ("${a b}", "unexpected 'b'", Some(4)),
        ("ab${nosuch(1)}", "unknown function nosuch", None),
        ("${SELECT a}", "expected an expression", Some(2)),
    ] {
        let err = Template::parse(text).unwrap_err();
        assert!(err.message.contains(fragment), "{text}: {err}");
        if let Some(offset) = offset {
            assert_eq!(err.offset, offset, "{text}: {err}");
        }
    }
}

#[test]
fn evaluation_errors_surface_at_render() {
    let template = Template::parse("${aws_lambda('arn:aws:lambda:us-east-1:1:function:f', *)}").unwrap();
    assert!(matches!(template.render(&Value::Null, &context()), Err(EvalError::Unsupported(_))));
}

struct Shadows;

impl Lookups for Shadows {
    fn thing_shadow(&self, thing: &str, _shadow: Option<&str>) -> Option<Json> {
        (thing == "lamp").then(|| json!({"state": {"reported": {"color": "red"}}}))
    }
}

#[test]
fn templates_that_read_shadows_say_so() {
    let template = Template::parse("lamps/${get_thing_shadow('lamp', 'arn').state.reported.color}").unwrap();
    assert!(template.uses_lookups());
    assert!(!template.is_literal());
    assert!(!Template::parse("${topic()}").unwrap().uses_lookups());
    let with_lookups = Context { lookups: Some(Arc::new(Shadows)), ..context() };
    assert_eq!(template.render(&Value::Null, &with_lookups).unwrap(), "lamps/red");
    assert_eq!(template.render(&Value::Null, &context()).unwrap(), "lamps/");
}
