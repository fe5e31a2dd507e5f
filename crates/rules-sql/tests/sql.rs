//! AWS IoT SQL: the seed's rules, AWS's documented semantics, parse errors, and
//! properties of the parser and evaluator.

use std::sync::Arc;

use ferrocore_rules_sql::{
    Context, EvalError, Expr, Lookups, MessageProperties, Value, evaluate, evaluate_expression, output_bytes, parse,
    parse_expression, payload_value,
};
use proptest::prelude::*;
use serde_json::{Value as Json, json};

fn context(topic: &str) -> Context {
    Context {
        topic: topic.into(),
        client_id: Some("sensor-001".into()),
        principal: Some("abc123".into()),
        account_id: "000000000000".into(),
        timestamp_ms: 1_700_000_000_000,
        new_uuid: "00000000-0000-4000-8000-000000000000".into(),
        trace_id: "trace".into(),
        sql_version: "2016-03-23".into(),
        ..Default::default()
    }
}

/// The JSON result of `sql` on `payload` published to `topic`; `None` when WHERE fails.
fn run(sql: &str, topic: &str, payload: Json) -> Option<Json> {
    let query = parse(sql).unwrap_or_else(|err| panic!("{sql}: {err}"));
    // Undefined alone serializes as an empty string (AWS).
    evaluate(&query, &Value::from_json(&payload), &context(topic)).unwrap().map(|v| v.to_json().unwrap_or(json!("")))
}

#[test]
fn seed_002_rules() {
    let all = "SELECT * FROM 'sensors/+/temperature'";
    assert_eq!(parse(all).unwrap().from.as_deref(), Some("sensors/+/temperature"));
    let reading = json!({"value": 21.5, "unit": "C"});
    assert_eq!(run(all, "sensors/s1/temperature", reading.clone()), Some(reading));

    let anomalies = "SELECT *, topic(2) AS device FROM 'sensors/+/temperature' WHERE value > 40 OR value < 0";
    assert_eq!(run(anomalies, "sensors/s1/temperature", json!({"value": 21})), None);
    assert_eq!(
        run(anomalies, "sensors/s7/temperature", json!({"value": 45})),
        Some(json!({"value": 45, "device": "s7"}))
    );
    assert_eq!(run(anomalies, "sensors/s7/temperature", json!({"value": -3.5})).unwrap()["value"], json!(-3.5));
    // A missing field makes the comparison Undefined: no match.
    assert_eq!(run(anomalies, "sensors/s7/temperature", json!({"other": 99})), None);
}

#[test]
fn select_items_aliases_and_functions() {
    let sql = "SELECT temperature AS t, state.reported.mode, clientid(), timestamp() AS at, topic() AS topic, \
               upper(unit) AS unit, concat(unit, '-', 1) AS tag, missing FROM 'a/#'";
    let out = run(sql, "a/b", json!({"temperature": 20, "unit": "c", "state": {"reported": {"mode": "eco"}}})).unwrap();
    assert_eq!(
        out,
        json!({"t": 20, "mode": "eco", "clientid": "sensor-001", "at": 1_700_000_000_000i64, "topic": "a/b", "unit": "C", "tag": "c-1"})
    );
    assert_eq!(run("SELECT a AS x.y.z FROM 't'", "t", json!({"a": 1})), Some(json!({"x": {"y": {"z": 1}}})));
    assert_eq!(run("SELECT VALUE temperature FROM 't'", "t", json!({"temperature": 7})), Some(json!(7)));
    assert_eq!(
        run("SELECT VALUE {'k': a, 'u': nothing, 'l': [1, a]} FROM 't'", "t", json!({"a": 2})),
        Some(json!({"k": 2, "l": [1, 2]}))
    );
}

#[test]
fn undefined_null_and_coercions() {
    let check = |expr: &str, expected: Option<Json>| {
        let out = run(
            &format!("SELECT VALUE {expr} FROM 't'"),
            "t",
            json!({"n": null, "s": "10", "x": "abc", "b": "TRUE", "i": 3}),
        );
        assert_eq!(out.and_then(|v| if v == json!("") { None } else { Some(v) }), expected, "{expr}");
    };
    check("n = null", Some(json!(true)));
    check("n <> null", Some(json!(false)));
    check("missing = 1", None);
    check("s > 9", Some(json!(true)));
    check("x > 9", None);
    check("i = '3'", Some(json!(false)));
    check("b AND true", Some(json!(true)));
    check("NOT b", Some(json!(false)));
    check("x AND true", None);
    check("i + 1.5", Some(json!(4.5)));
    check("7 / 2", Some(json!(3)));
    check("7.0 / 2", Some(json!(3.5)));
    check("i / 0", None);
    check("'a' + 'b'", Some(json!("ab")));
    check("x + 1", Some(json!("abc1")));
    check("s + 1", Some(json!("101"))); // String + any value concatenates (AWS operator table)
    check("-i * 2 + 10 % 4", Some(json!(-4)));
    check("1 + 2 * 3 = 7 AND NOT 1 > 2", Some(json!(true)));
    check("isNull(n)", Some(json!(true)));
    check("isUndefined(missing)", Some(json!(true)));
    check("cast(s AS Int) + 1", Some(json!(11)));
    check("cast(i AS String)", Some(json!("3")));
    check("get([10, 20], 1)", Some(json!(20)));
    check("get([10, 20], 5)", None);
    check("CASE i WHEN 1 THEN 'one' WHEN 3 THEN 'three' ELSE 'many' END", Some(json!("three")));
    check("CASE missing WHEN 1 THEN 'one' END", None);
    check("substring('hello', 1, 3)", Some(json!("el")));
    check("round(2.5) + floor(-1.5) + ceil(1.2)", Some(json!(3)));
    check("{'b': 1, 'a': 2} = {'a': 2, 'b': 1}", Some(json!(true)));
}

#[test]
fn parse_errors_say_what_and_where() {
    for (sql, fragment) in [
        ("SELECT FROM 't'", "expected an expression"),
        ("SELECT * FROM t", "topic filter in single quotes"),
        ("SELECT * FROM 't' WHERE", "expected an expression"),
        ("SELECT nosuchfn(a) FROM 't'", "unknown function nosuchfn"),
        ("SELECT * FROM 't' WHERE a >", "expected an expression"),
        ("SELECT 'open FROM 't'", "unterminated string"),
        ("SELECT a FROM 't' extra", "unexpected 'extra'"),
        ("UPDATE t", "expected SELECT"),
        ("SELECT CASE a END FROM 't'", "expected WHEN"),
    ] {
        let err = parse(sql).unwrap_err();
        assert!(err.to_string().contains(fragment), "{sql}: {err}");
    }
}

#[test]
fn unsupported_functions_fail_at_evaluation_not_silently() {
    for sql in [
        "SELECT aws_lambda('arn:aws:lambda:us-east-1:1:function:f', *) AS s FROM 't'",
        "SELECT get_dynamodb('t', 'k', 1, 'arn') AS s FROM 't'",
        "SELECT get_secret('id', 'SecretString', 'k', 'arn') AS s FROM 't'",
        "SELECT machinelearning_predict('m', 'arn', *) AS s FROM 't'",
        "SELECT get_registry_data('thing', 'arn') AS s FROM 't'",
        "SELECT decode(a, 'protobuf') AS s FROM 't'",
        "SELECT cast(a AS Blob) AS s FROM 't'",
    ] {
        let query = parse(sql).unwrap();
        let err = evaluate(&query, &Value::Object(vec![]), &context("t")).unwrap_err();
        assert!(matches!(err, EvalError::Unsupported(_)), "{sql}");
    }
}

#[test]
fn case_without_a_match_or_else_is_undefined() {
    assert_eq!(run("SELECT CASE a WHEN 1 THEN 'one' END AS r FROM 't'", "t", json!({"a": 2})), Some(json!({})));
}

#[test]
fn array_indexing() {
    let payload = json!({"a": [10, 20, 30], "o": {"b": [{"c": 1}, {"c": 2}]}, "m": [[1, 2], [3, 4]], "s": "abc"});
    let check = |expr: &str, expected: Option<Json>| {
        let out = run(&format!("SELECT {expr} AS r FROM 't'"), "t", payload.clone()).unwrap();
        assert_eq!(out.get("r").cloned(), expected, "{expr}");
    };
    check("a[0]", Some(json!(10)));
    check("a[2]", Some(json!(30)));
    check("a[3]", None);
    check("a[-1]", None);
    check("a['1']", Some(json!(20)));
    check("a[1 + 1]", Some(json!(30)));
    check("o.b[1].c", Some(json!(2)));
    check("o.b[0]", Some(json!({"c": 1})));
    check("m[1][0]", Some(json!(3)));
    check("[5, 6, 7][2]", Some(json!(7)));
    check("s[0]", None);
    check("o[0]", None);
    check("missing[0]", None);
    check("a[0] + a[1]", Some(json!(30)));
    assert_eq!(run("SELECT * FROM 't' WHERE a[0] = 10", "t", payload.clone()), Some(payload.clone()));
    assert_eq!(run("SELECT * FROM 't' WHERE a[9] = 10", "t", payload), None);
}

fn sensors() -> Json {
    json!({"e": [
        {"n": "temperature", "u": "Cel", "t": 1234, "v": 22.5},
        {"n": "light", "u": "lm", "t": 1235, "v": 135},
        {"n": "acidity", "u": "pH", "t": 1235, "v": 7}
    ]})
}

#[test]
fn nested_queries_follow_awss_examples() {
    assert_eq!(
        run("SELECT (SELECT VALUE n FROM e) as sensors FROM 'my/topic'", "my/topic", sensors()),
        Some(json!({"sensors": ["temperature", "light", "acidity"]}))
    );
    assert_eq!(
        run("SELECT (SELECT v FROM e WHERE n = 'temperature') as temperature FROM 'my/topic'", "my/topic", sensors()),
        Some(json!({"temperature": [{"v": 22.5}]}))
    );
    assert_eq!(
        run(
            "SELECT get((SELECT v FROM e WHERE n = 'temperature'), 0).v as temperature FROM 'topic'",
            "topic",
            sensors()
        ),
        Some(json!({"temperature": 22.5}))
    );
}

#[test]
fn nested_queries_scope_filter_and_shape() {
    let check = |sql: &str, expected: Option<Json>| assert_eq!(run(sql, "t", sensors()), expected, "{sql}");
    // Items, aliases, `*` and functions resolve against each element.
    check(
        "SELECT VALUE (SELECT n AS name, upper(u) AS unit FROM e WHERE v > 10) FROM 't'",
        Some(json!([{"name": "temperature", "unit": "CEL"}, {"name": "light", "unit": "LM"}])),
    );
    check("SELECT VALUE (SELECT * FROM e WHERE t = 1234) FROM 't'", Some(json!([sensors()["e"][0].clone()])));
    check("SELECT VALUE (SELECT VALUE v * 2 FROM e WHERE n <> 'light') FROM 't'", Some(json!([45, 14])));
    check("SELECT VALUE (SELECT VALUE v FROM e WHERE n = 'none') FROM 't'", Some(json!([])));
    check("SELECT VALUE (SELECT VALUE e[0].n FROM *) FROM 't'", Some(json!("temperature")));
    // A SELECT VALUE whose field is missing adds nothing.
    check("SELECT VALUE (SELECT VALUE missing FROM e) FROM 't'", Some(json!([])));
    // FROM that is neither an array nor an object is Undefined.
    check("SELECT (SELECT VALUE n FROM nothing) AS r FROM 't'", Some(json!({})));
    check("SELECT (SELECT VALUE n FROM e[0].n) AS r FROM 't'", Some(json!({})));
    // Nested queries work in WHERE, and nest.
    check("SELECT VALUE 1 FROM 't' WHERE get((SELECT VALUE v FROM e WHERE n = 'light'), 0) > 100", Some(json!(1)));
    check("SELECT VALUE 1 FROM 't' WHERE get((SELECT VALUE v FROM e WHERE n = 'light'), 0) > 200", None);
    let nested = json!({"groups": [{"items": [{"x": 1}, {"x": 2}]}, {"items": [{"x": 3}]}]});
    assert_eq!(
        run("SELECT VALUE (SELECT VALUE (SELECT VALUE x FROM items WHERE x > 1) FROM groups) FROM 't'", "t", nested),
        Some(json!([[2], [3]]))
    );
}

#[test]
fn nested_query_over_an_object_runs_once() {
    // AWS's transform() example 3 selects FROM an object.
    let payload = json!({"data2": {"a": "first", "b": "second", "c": [{"y": true}, {"y": false}]}});
    assert_eq!(
        run("SELECT VALUE (SELECT a, b FROM data2) FROM 't'", "t", payload.clone()),
        Some(json!({"a": "first", "b": "second"}))
    );
    assert_eq!(
        run("SELECT VALUE (SELECT VALUE c FROM data2) FROM 't'", "t", payload.clone()),
        Some(payload["data2"]["c"].clone())
    );
    assert_eq!(run("SELECT (SELECT a FROM data2 WHERE b = 'x') AS r FROM 't'", "t", payload), Some(json!({})));
}

#[test]
fn nested_query_parse_errors() {
    for (sql, fragment) in [
        ("SELECT (SELECT a e) FROM 't'", "expected FROM"),
        ("SELECT (SELECT a FROM) FROM 't'", "expected an expression"),
        ("SELECT (SELECT a FROM e FROM 't'", "expected ')'"),
        ("SELECT (SELECT a FROM e WHERE) FROM 't'", "expected an expression"),
        ("SELECT a[ FROM 't'", "expected an expression"),
        ("SELECT a[0 FROM 't'", "expected ']'"),
    ] {
        let err = parse(sql).unwrap_err();
        assert!(err.to_string().contains(fragment), "{sql}: {err}");
    }
}

#[test]
fn parse_expression_reads_one_expression() {
    let expr = parse_expression("topic(2)").unwrap();
    assert_eq!(expr, Expr::Call("topic".into(), vec![Expr::Literal(Value::Int(2))]));
    let payload = Value::from_json(&json!({"a": {"b": [1, 2]}}));
    let value = evaluate_expression(&parse_expression("a.b[1] + 1").unwrap(), &payload, &context("t"));
    assert_eq!(value, Ok(Value::Int(3)));
    let err = parse_expression("a b").unwrap_err();
    assert!(err.to_string().contains("unexpected 'b' after the expression"), "{err}");
    assert!(parse_expression("").is_err());
    assert!(parse_expression("SELECT a").is_err());
}

#[test]
fn binary_payloads() {
    let bytes = [0x00, 0xff, 0x10, b'{'];
    let payload = payload_value(&bytes);
    assert_eq!(payload, Value::Binary(bytes.to_vec()));
    let eval = |sql: &str| evaluate(&parse(sql).unwrap(), &payload, &context("t")).unwrap();
    // `SELECT *` passes the bytes through untouched.
    let all = eval("SELECT * FROM 't'").unwrap();
    assert_eq!(output_bytes(&all), bytes);
    assert_eq!(
        eval("SELECT encode(*, 'base64') AS data, timestamp() AS ts FROM 't'").unwrap().to_json(),
        Some(json!({"data": "AP8Qew==", "ts": 1_700_000_000_000i64}))
    );
    assert_eq!(eval("SELECT VALUE md5(*) FROM 't'"), Some(Value::String("b13340dff93ff5eb9994b1e6a969c88a".into())));
    // A binary payload has no fields: a WHERE on one filters the message out.
    assert_eq!(eval("SELECT * FROM 't' WHERE kind = 'x'"), None);
    assert_eq!(eval("SELECT * FROM 't' WHERE timestamp() > 0"), Some(all));
    // Raw bytes have no string form.
    assert_eq!(eval("SELECT VALUE cast(* AS String) FROM 't'"), Some(Value::Undefined));
    assert_eq!(eval("SELECT VALUE length(*) FROM 't'"), Some(Value::Undefined));
}

#[test]
fn payloads_in_and_out() {
    assert_eq!(payload_value(br#"{"a": [1, 2.5, null]}"#).to_json(), Some(json!({"a": [1, 2.5, null]})));
    assert_eq!(payload_value(b"42"), Value::Int(42));
    assert_eq!(payload_value(b"not json"), Value::Binary(b"not json".to_vec()));
    assert_eq!(payload_value(b""), Value::Binary(Vec::new()));
    assert_eq!(output_bytes(&Value::Undefined), b"");
    assert_eq!(output_bytes(&Value::String("red".into())), br#""red""#);
    assert_eq!(output_bytes(&Value::from_json(&json!({"a": [1, true]}))), br#"{"a":[1,true]}"#);
    assert_eq!(output_bytes(&Value::Binary(vec![1, 2])), [1, 2]);
}

#[test]
fn star_in_functions_of_bytes_reads_the_payload_as_published() {
    let raw = br#"{ "a" : 1 }"#;
    let payload = payload_value(raw);
    let sql = parse("SELECT encode(*, 'base64') AS b, md5(*) AS h FROM 't'").unwrap();
    let with_raw = Context { raw_payload: bytes::Bytes::from_static(raw), ..context("t") };
    assert_eq!(
        evaluate(&sql, &payload, &with_raw).unwrap().unwrap().to_json(),
        Some(json!({"b": "eyAiYSIgOiAxIH0=", "h": "3578519ce226de270c08039ae3ee3c2e"}))
    );
    // Without the raw bytes, the payload's compact JSON stands in.
    assert_eq!(
        evaluate(&sql, &payload, &context("t")).unwrap().unwrap().to_json(),
        Some(json!({"b": "eyJhIjoxfQ==", "h": "bb6cb5c68df4652941caf652a366f2d8"}))
    );
}

struct Shadows;

impl Lookups for Shadows {
    fn thing_shadow(&self, thing: &str, shadow: Option<&str>) -> Option<Json> {
        match (thing, shadow) {
            ("lamp", None) => Some(json!({"state": {"reported": {"on": true}}})),
            ("lamp", Some("power")) => Some(json!({"state": {"reported": {"watts": 9}}})),
            _ => None,
        }
    }
}

#[test]
fn get_thing_shadow_reads_through_lookups() {
    let query = parse(
        "SELECT get_thing_shadow('lamp', 'arn:aws:iam::1:role/r').state.reported.on AS on, \
         get_thing_shadow('lamp', 'power', 'arn:aws:iam::1:role/r').state.reported.watts AS watts, \
         get_thing_shadow('nope', 'arn:aws:iam::1:role/r') AS missing FROM 't' \
         WHERE get_thing_shadow(thing, 'arn').state.reported.on = true",
    )
    .unwrap();
    assert!(query.uses_lookups());
    assert!(!parse("SELECT topic() FROM 't'").unwrap().uses_lookups());
    assert!(parse("SELECT VALUE (SELECT VALUE get_thing_shadow(n, 'r') FROM e) FROM 't'").unwrap().uses_lookups());
    let payload = Value::from_json(&json!({"thing": "lamp"}));
    let with_lookups = Context { lookups: Some(Arc::new(Shadows)), ..context("t") };
    assert_eq!(
        evaluate(&query, &payload, &with_lookups).unwrap().and_then(|v| v.to_json()),
        Some(json!({"on": true, "watts": 9}))
    );
    // Without lookups the shadow is Undefined, so the WHERE fails.
    assert_eq!(evaluate(&query, &payload, &context("t")).unwrap(), None);
    assert!(format!("{with_lookups:?}").contains("Lookups"));
}

#[test]
fn mqtt5_properties() {
    let properties = MessageProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        response_topic: Some("replies/1".into()),
        correlation_data: Some(vec![0xde, 0xad].into()),
        user_properties: vec![("k".into(), "a".into()), ("j".into(), "x".into()), ("k".into(), "b".into())],
    };
    let with_properties = Context { properties: Some(properties.into()), ..context("t") };
    let eval = |expr: &str, context: &Context| {
        evaluate_expression(&parse_expression(expr).unwrap(), &Value::Null, context).unwrap().to_json()
    };
    assert_eq!(eval("get_mqtt_property('content_type')", &with_properties), Some(json!("application/json")));
    assert_eq!(eval("get_mqtt_property('format_indicator')", &with_properties), Some(json!("UTF8_DATA")));
    assert_eq!(eval("get_mqtt_property('response_topic')", &with_properties), Some(json!("replies/1")));
    assert_eq!(eval("get_mqtt_property('correlation_data')", &with_properties), Some(json!("3q0=")));
    assert_eq!(eval("get_mqtt_property('other')", &with_properties), None);
    assert_eq!(eval("get_user_properties()", &with_properties), Some(json!({"k": ["a", "b"], "j": ["x"]})));
    assert_eq!(eval("get_user_properties('k')", &with_properties), Some(json!(["a", "b"])));
    assert_eq!(eval("get_user_properties('none')", &with_properties), None);
    let bytes = Context {
        properties: Some(MessageProperties { payload_format_indicator: Some(0), ..Default::default() }.into()),
        ..context("t")
    };
    assert_eq!(eval("get_mqtt_property('format_indicator')", &bytes), Some(json!("UNSPECIFIED_BYTES")));
    assert_eq!(eval("get_mqtt_property('content_type')", &bytes), None);
    assert_eq!(eval("get_user_properties()", &bytes), None);
    // MQTT 3.1.1 and HTTP messages have no properties.
    assert_eq!(eval("get_mqtt_property('content_type')", &context("t")), None);
    assert_eq!(eval("get_user_properties()", &context("t")), None);
}

proptest! {
    #[test]
    fn parsing_never_panics(sql in "[ -~]{0,60}") {
        let _ = parse(&sql);
    }

    #[test]
    fn select_star_returns_the_payload(fields in prop::collection::btree_map("[a-z]{1,6}", any::<i32>(), 0..6)) {
        let payload = Json::Object(fields.into_iter().map(|(k, v)| (k, json!(v))).collect());
        prop_assert_eq!(run("SELECT * FROM '#'", "x", payload.clone()), Some(payload));
    }

    #[test]
    fn where_is_a_filter_on_the_comparison(value in -100i64..100, threshold in -100i64..100) {
        let out = run(&format!("SELECT value FROM 't' WHERE value > {threshold}"), "t", json!({"value": value}));
        prop_assert_eq!(out.is_some(), value > threshold);
    }
}

#[test]
fn hostile_statements_fail_cleanly() {
    let deep = format!("SELECT {}1{} AS r FROM 'a'", "(".repeat(5_000), ")".repeat(5_000));
    assert!(parse(&deep).unwrap_err().message.contains("nests deeper"));
    let nots = format!("SELECT * FROM 'a' WHERE {} true", "NOT ".repeat(5_000));
    assert!(parse(&nots).is_err());
    let minus = format!("SELECT {}1 AS r FROM 'a'", "- ".repeat(5_000));
    assert!(parse(&minus).is_err());
    let nested_ok = format!("SELECT {}1{} AS r FROM 'a'", "(".repeat(50), ")".repeat(50));
    assert_eq!(run(&nested_ok, "a", json!({})), Some(json!({"r": 1})));
    // A huge pattern letter run formats without panicking.
    let pattern = "d".repeat(70_000);
    let sql = format!("SELECT parse_time('{pattern}', 0) AS r FROM 'a'");
    assert!(run(&sql, "a", json!({})).is_some());
}

#[test]
fn plus_concatenates_whenever_a_string_is_involved_and_strings_do_not_order() {
    assert_eq!(run("SELECT '5' + 3 AS r FROM 'a'", "a", json!({})), Some(json!({"r": "53"})));
    assert_eq!(run("SELECT 3 + '5' AS r FROM 'a'", "a", json!({})), Some(json!({"r": "35"})));
    assert_eq!(run("SELECT 'abc' < 'abd' AS r FROM 'a'", "a", json!({})), Some(json!({})));
    assert_eq!(run("SELECT '10' > '9' AS r FROM 'a'", "a", json!({})), Some(json!({"r": true})));
}

#[test]
fn select_star_over_a_wide_payload_keeps_every_key_once() {
    let wide: serde_json::Map<String, Json> = (0..20_000).map(|i| (format!("k{i}"), json!(i))).collect();
    let out = run("SELECT *, 1 AS k0 FROM 'a'", "a", Json::Object(wide)).unwrap();
    assert_eq!(out.as_object().unwrap().len(), 20_000);
    assert_eq!(out["k0"], json!(1));
}
