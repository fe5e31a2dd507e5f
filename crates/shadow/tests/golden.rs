//! AWS's documented shadow examples (tests/golden/aws_examples.json, vocabulary in
//! tests/golden/NOTES.md), replayed from an empty shadow: each documented output
//! must equal ours byte for byte (compact JSON, keys in the documented order)
//! except for the values of `timestamp` keys.

use ferrocore_shadow::{Limits, Shadow, ShadowError, delete_document, error_document, parse_update, request_token};
use serde_json::Value;

/// Every numeric `"timestamp"` value set to 0, so only timestamps may differ.
fn without_timestamps(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    (k.clone(), if k == "timestamp" && v.is_number() { Value::from(0) } else { without_timestamps(v) })
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_timestamps).collect()),
        other => other.clone(),
    }
}

fn text(value: &Value) -> String {
    serde_json::to_string(&without_timestamps(value)).unwrap()
}

/// What one step produced.
#[derive(Default)]
struct Produced {
    accepted: Option<Value>,
    rejected: Option<Value>,
    delta: Option<Value>,
    documents: Option<Value>,
}

struct Replay {
    shadow: Shadow,
    thing: String,
    shadow_name: Option<String>,
    now: u64,
    limits: Limits,
}

impl Replay {
    fn step(&mut self, step: &Value) -> Produced {
        self.now += 1;
        let missing = || ShadowError::NoShadow(self.shadow_name.clone().unwrap_or_else(|| self.thing.clone()));
        let reject = |error: &ShadowError, token: Option<&str>| Produced {
            rejected: Some(error_document(error, token)),
            ..Default::default()
        };
        let token = step.get("clientToken").and_then(Value::as_str);
        match step["op"].as_str().unwrap() {
            "update" => {
                let payload = payload_of(step);
                let token = request_token(&payload).ok().flatten();
                match parse_update(&payload, &self.limits).and_then(|r| self.shadow.update(&r, self.now, &self.limits))
                {
                    Ok(applied) => {
                        self.shadow = applied.shadow;
                        Produced {
                            accepted: Some(applied.accepted),
                            delta: applied.delta,
                            documents: Some(applied.documents),
                            rejected: None,
                        }
                    }
                    Err(err) => reject(&err, token.as_deref()),
                }
            }
            "get" if self.shadow.exists => {
                Produced { accepted: Some(self.shadow.document(self.now, token)), ..Default::default() }
            }
            "delete" if self.shadow.exists => {
                let document = delete_document(self.shadow.version, self.now, token);
                self.shadow = self.shadow.deleted();
                Produced { accepted: Some(document), ..Default::default() }
            }
            "get" | "delete" => reject(&missing(), token),
            other => panic!("unknown op {other}"),
        }
    }
}

fn payload_of(step: &Value) -> Vec<u8> {
    if let Some(raw) = step.get("request_raw") {
        return raw.as_str().unwrap().as_bytes().to_vec();
    }
    if let Some(encoded) = step.get("request_raw_base64") {
        return base64_decode(encoded.as_str().unwrap());
    }
    serde_json::to_vec(&step["request"]).unwrap()
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.bytes().filter(|b| *b != b'=') {
        bits = (bits << 6) | ALPHABET.iter().position(|a| *a == byte).expect("base64") as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

fn check_pointers(label: &str, document: Option<&Value>, pointers: &Value) {
    let document = document.unwrap_or_else(|| panic!("{label}: no such response"));
    for (pointer, expected) in pointers.as_object().unwrap() {
        let actual = document.pointer(pointer).unwrap_or_else(|| panic!("{label}: {pointer} missing in {document}"));
        assert_eq!(text(actual), text(expected), "{label}: {pointer}");
    }
}

fn check(label: &str, expect: &Value, produced: &Produced) {
    let whole = |what: &str, actual: Option<&Value>| {
        if let Some(expected) = expect.get(what).filter(|e| !e.is_null()) {
            let actual = actual.unwrap_or_else(|| panic!("{label}: no {what}; rejected: {:?}", produced.rejected));
            assert_eq!(text(actual), text(expected), "{label}: {what}");
        }
    };
    whole("accepted", produced.accepted.as_ref());
    whole("rejected", produced.rejected.as_ref());
    whole("documents", produced.documents.as_ref());
    whole("delta", produced.delta.as_ref());
    if expect.get("delta").is_some_and(Value::is_null) {
        assert!(produced.delta.is_none(), "{label}: no delta expected, got {:?}", produced.delta);
    }
    if expect.get("delta_published") == Some(&Value::Bool(true)) {
        assert!(produced.delta.is_some(), "{label}: a delta was expected");
    }
    if let Some(pointers) = expect.get("accepted_pointers") {
        check_pointers(label, produced.accepted.as_ref(), pointers);
    }
    if let Some(pointers) = expect.get("rejected_pointers") {
        check_pointers(label, produced.rejected.as_ref(), pointers);
    }
    if let Some(pointers) = expect.get("delta_pointers") {
        check_pointers(label, produced.delta.as_ref(), pointers);
    }
    for pointer in expect.get("absent_pointers").and_then(Value::as_array).into_iter().flatten() {
        let accepted = produced.accepted.as_ref().unwrap_or_else(|| panic!("{label}: not accepted"));
        assert!(
            accepted.pointer(pointer.as_str().unwrap()).is_none(),
            "{label}: {pointer} should be absent in {accepted}"
        );
    }
    if let Some(floor) = expect.get("version_greater_than").and_then(Value::as_u64) {
        let version = produced.accepted.as_ref().and_then(|a| a["version"].as_u64());
        assert!(version.is_some_and(|v| v > floor), "{label}: version {version:?} not above {floor}");
    }
    let checks_acceptance = ["accepted", "documents", "accepted_pointers", "absent_pointers", "version_greater_than"]
        .iter()
        .any(|key| expect.get(key).is_some());
    if checks_acceptance {
        assert!(produced.rejected.is_none(), "{label}: rejected {:?}", produced.rejected);
    }
}

#[test]
fn aws_documented_examples() {
    let fixtures =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/aws_examples.json")).unwrap();
    let cases: Vec<Value> = serde_json::from_str(&fixtures).unwrap();
    assert!(cases.len() >= 30);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let mut replay = Replay {
            shadow: Shadow::default(),
            thing: case.get("thing").and_then(Value::as_str).unwrap_or("thing").to_string(),
            shadow_name: case.get("shadowName").and_then(Value::as_str).map(str::to_string),
            now: 1_000,
            limits: Limits::default(),
        };
        for (index, step) in case["steps"].as_array().unwrap().iter().enumerate() {
            let produced = replay.step(step);
            check(&format!("{name} step {index}"), &step["expect"], &produced);
        }
    }
}
