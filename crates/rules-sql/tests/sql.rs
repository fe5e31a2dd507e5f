//! AWS IoT SQL: the seed's rules, AWS's documented semantics, parse errors, and
//! properties of the parser and evaluator.

use ferrocore_rules_sql::{Context, Value, evaluate, parse};
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
    assert_eq!(run("SELECT VALUE {'k': a, 'u': nothing, 'l': [1, a]} FROM 't'", "t", json!({"a": 2})), Some(json!({"k": 2, "l": [1, 2]})));
}

#[test]
fn undefined_null_and_coercions() {
    let check = |expr: &str, expected: Option<Json>| {
        let out = run(&format!("SELECT VALUE {expr} FROM 't'"), "t", json!({"n": null, "s": "10", "x": "abc", "b": "TRUE", "i": 3}));
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
    check("s + 1", Some(json!(11)));
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
    let query = parse("SELECT get_thing_shadow('x', 'arn') AS s FROM 't'").unwrap();
    assert!(evaluate(&query, &Value::Object(vec![]), &context("t")).is_err());
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
