//! The examples and type tables of AWS's IoT SQL reference, collected in
//! tests/golden/aws_sql_examples.json (see the README beside it): every case is
//! parsed and evaluated as AWS would on that message, and all failures are
//! reported together.

use std::path::Path;

use ferrocore_rules_sql::{Context, evaluate, parse, payload_value};
use serde_json::{Value as Json, json};

/// Cases ferrocore knowingly answers differently, and why.
const KNOWN_GAPS: &[(&str, &str)] = &[
    ("parse_time_belize", "named time zones need a zone database"),
    ("time_to_epoch_zone_name", "named time zones need a zone database"),
];

#[test]
fn aws_documented_examples() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/aws_sql_examples.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("{} is missing: no golden cases run", path.display());
        return;
    };
    let cases: Vec<Json> = serde_json::from_str(&text).expect("the golden file is a JSON array of cases");
    let mut failures = Vec::new();
    let mut disputed = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap_or("(unnamed)");
        if KNOWN_GAPS.iter().any(|(gap, _)| *gap == name) {
            continue;
        }
        if let Err(problem) = check(case) {
            // The docs contradict themselves there: a difference is worth a look, not a failure.
            let list = if case["doc_inconsistent"] == json!(true) { &mut disputed } else { &mut failures };
            list.push(format!("{name}: {problem}"));
        }
    }
    if !disputed.is_empty() {
        eprintln!("cases where AWS's docs contradict themselves and ferrocore differs:\n  {}", disputed.join("\n  "));
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden cases fail:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}

/// Evaluates one case and compares with what AWS documents.
fn check(case: &Json) -> Result<(), String> {
    let sql = case["sql"].as_str().ok_or("the case has no sql")?;
    let query = parse(sql).map_err(|err| format!("parse error: {err}"))?;
    let published = case["topic"].as_str().unwrap_or("a/b");
    // Basic Ingest picks the rule by name, and topic() does not see the prefix.
    let (topic, routed_by_name) = match case["basic_ingest_rule"].as_str() {
        Some(rule) => (published.strip_prefix(&format!("$aws/rules/{rule}/")).unwrap_or(published), true),
        None => (published, false),
    };
    let raw = match (case["payload_raw"].as_str(), case.get("payload")) {
        (Some(raw), _) => raw.as_bytes().to_vec(),
        (None, Some(payload)) => payload.to_string().into_bytes(),
        (None, None) => b"{}".to_vec(),
    };
    let context = Context {
        topic: topic.to_string(),
        client_id: case["client_id"].as_str().map(str::to_string),
        account_id: case["account_id"].as_str().unwrap_or("123456789012").to_string(),
        timestamp_ms: 1_481_825_251_155,
        new_uuid: "123e4567-e89b-12d3-a456-426614174000".into(),
        sql_version: case["sql_version"].as_str().unwrap_or("2016-03-23").to_string(),
        raw_payload: bytes::Bytes::copy_from_slice(&raw),
        ..Default::default()
    };
    let triggered = routed_by_name || query.from.as_deref().is_none_or(|filter| topic_matches(filter, topic));
    let result = if triggered {
        evaluate(&query, &payload_value(&raw), &context).map_err(|err| format!("evaluation error: {err}"))?
    } else {
        None
    };
    let expected = &case["expected"];
    match (result, case["expected_filtered"] == json!(true)) {
        (None, true) => Ok(()),
        (Some(value), true) => Err(format!("expected no output, got {:?}", value.to_json())),
        (None, false) => Err(format!("no output, expected {expected}")),
        (Some(value), false) => {
            // Undefined alone is emitted as an empty string.
            let actual = value.to_json().unwrap_or(json!(""));
            if same(&actual, expected) { Ok(()) } else { Err(format!("expected {expected}, got {actual}")) }
        }
    }
}

/// JSON equality with numbers compared by value (1e-9 relative), so that 3 and
/// 3.0 agree and the last digit of a double may differ.
fn same(actual: &Json, expected: &Json) -> bool {
    match (actual, expected) {
        (Json::Number(a), Json::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap_or(f64::NAN), b.as_f64().unwrap_or(f64::NAN));
            a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
        }
        (Json::Array(a), Json::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)),
        (Json::Object(a), Json::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(key, x)| b.get(key).is_some_and(|y| same(x, y)))
        }
        _ => actual == expected,
    }
}

/// MQTT topic filter matching: `+` is one level, `#` all the rest.
fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut levels = topic.split('/');
    for part in filter.split('/') {
        match (part, levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (part, Some(level)) if part == level => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}
