//! The Device Shadow rules, one behaviour per test, and properties over random
//! update sequences.

use ferrocore_shadow::{Limits, Map, Shadow, ShadowError, parse_update};
use proptest::prelude::*;
use serde_json::{Value, json};

fn update(shadow: &Shadow, request: Value, now: u64) -> Result<ferrocore_shadow::Applied, ShadowError> {
    let limits = Limits::default();
    shadow.update(&parse_update(&serde_json::to_vec(&request).unwrap(), &limits)?, now, &limits)
}

fn apply(shadow: &Shadow, request: Value, now: u64) -> Shadow {
    update(shadow, request, now).unwrap().shadow
}

fn refused(request: &str) -> ShadowError {
    parse_update(request.as_bytes(), &Limits::default()).unwrap_err()
}

#[test]
fn null_deletes_a_key_and_a_null_section_removes_it() {
    let shadow =
        apply(&Shadow::default(), json!({"state": {"desired": {"a": 1, "b": {"c": 2}}, "reported": {"a": 0}}}), 10);
    let shadow = apply(&shadow, json!({"state": {"desired": {"a": null, "b": {"c": null}}}}), 11);
    assert!(shadow.desired.state.is_empty(), "emptied objects disappear: {:?}", shadow.desired);
    assert!(shadow.desired.metadata.is_empty());
    let shadow = apply(&shadow, json!({"state": {"reported": null}}), 12);
    assert_eq!(shadow.document(13, None)["state"], json!({}));
    assert_eq!(shadow.version, 3);
}

#[test]
fn partial_updates_merge_deeply_and_keep_key_order() {
    let shadow = apply(&Shadow::default(), json!({"state": {"reported": {"z": 1, "o": {"x": 1, "y": 2}}}}), 10);
    let shadow = apply(&shadow, json!({"state": {"reported": {"o": {"y": 3, "w": 4}, "a": true}}}), 20);
    assert_eq!(serde_json::to_string(&shadow.reported.state).unwrap(), r#"{"z":1,"o":{"x":1,"y":3,"w":4},"a":true}"#);
    assert_eq!(shadow.reported.metadata["z"], json!({"timestamp": 10}));
    assert_eq!(
        shadow.reported.metadata["o"],
        json!({"x": {"timestamp": 10}, "y": {"timestamp": 20}, "w": {"timestamp": 20}})
    );
}

#[test]
fn arrays_are_replaced_whole_and_may_not_hold_null() {
    let shadow = apply(&Shadow::default(), json!({"state": {"desired": {"colors": ["RED", "GREEN", "BLUE"]}}}), 10);
    let shadow = apply(&shadow, json!({"state": {"desired": {"colors": ["RED"]}}}), 11);
    assert_eq!(shadow.desired.state["colors"], json!(["RED"]));
    assert_eq!(shadow.desired.metadata["colors"], json!([{"timestamp": 11}]));
    assert_eq!(refused(r#"{"state":{"desired":{"colors":["RED",null]}}}"#), ShadowError::InvalidJson);
}

#[test]
fn delta_holds_every_differing_desired_leaf_with_its_path() {
    let shadow = apply(
        &Shadow::default(),
        json!({"state": {"desired": {"color": "red", "light": {"on": true, "level": 5}, "list": [1, 2]}}}),
        10,
    );
    let applied = update(
        &shadow,
        json!({"state": {"reported": {"color": "red", "light": {"on": true, "level": 3}, "list": [1], "extra": 1}}}),
        20,
    )
    .unwrap();
    let delta = applied.delta.unwrap();
    assert_eq!(delta["state"], json!({"light": {"level": 5}, "list": [1, 2]}));
    assert_eq!(
        delta["metadata"],
        json!({"light": {"level": {"timestamp": 10}}, "list": [{"timestamp": 10}, {"timestamp": 10}]})
    );
    assert_eq!(delta["version"], json!(2));
    let in_sync =
        update(&applied.shadow, json!({"state": {"reported": {"light": {"level": 5}, "list": [1, 2]}}}), 30).unwrap();
    assert_eq!(in_sync.delta, None);
    assert!(in_sync.shadow.document(31, None)["state"].get("delta").is_none());
}

#[test]
fn accepted_echoes_only_the_request_and_documents_show_before_and_after() {
    let shadow = apply(&Shadow::default(), json!({"state": {"reported": {"t": 20}}}), 10);
    let applied =
        update(&shadow, json!({"state": {"desired": {"t": 25}}, "clientToken": "abc", "ignored": 1}), 20).unwrap();
    assert_eq!(
        serde_json::to_string(&applied.accepted).unwrap(),
        r#"{"state":{"desired":{"t":25}},"metadata":{"desired":{"t":{"timestamp":20}}},"version":2,"timestamp":20,"clientToken":"abc"}"#
    );
    assert_eq!(applied.documents["previous"]["version"], json!(1));
    assert_eq!(applied.documents["previous"]["state"], json!({"reported": {"t": 20}}));
    assert_eq!(applied.documents["current"]["state"], json!({"desired": {"t": 25}, "reported": {"t": 20}}));
    assert_eq!(applied.documents["clientToken"], json!("abc"));
    assert_eq!(applied.delta.unwrap()["clientToken"], json!("abc"));
}

#[test]
fn versions_are_checked_and_survive_a_delete() {
    let shadow = apply(&Shadow::default(), json!({"state": {"reported": {"a": 1}}}), 10);
    let shadow = apply(&shadow, json!({"state": {"reported": {"a": 2}}, "version": 1}), 11);
    assert_eq!(
        update(&shadow, json!({"state": {"reported": {"a": 3}}, "version": 1}), 12).unwrap_err(),
        ShadowError::VersionConflict
    );
    let deleted = shadow.deleted();
    assert!(!deleted.exists);
    let recreated = apply(&deleted, json!({"state": {"reported": {"b": 1}}}), 13);
    assert_eq!(recreated.version, 3);
    assert_eq!(recreated.reported.state, serde_json::from_value::<Map>(json!({"b": 1})).unwrap());
}

#[test]
fn invalid_requests_get_aws_messages() {
    assert_eq!(refused("{"), ShadowError::InvalidJson);
    assert_eq!(refused("[1]"), ShadowError::InvalidJson);
    assert_eq!(refused(r#"{"desired":{}}"#), ShadowError::MissingState);
    assert_eq!(refused(r#"{"state":1}"#), ShadowError::StateNotObject);
    assert_eq!(refused(r#"{"state":{"desired":[1]}}"#), ShadowError::DesiredNotObject);
    assert_eq!(refused(r#"{"state":{"reported":"x"}}"#), ShadowError::ReportedNotObject);
    assert_eq!(refused(r#"{"state":{"delta":{}}}"#), ShadowError::InvalidStateNode);
    assert_eq!(refused(r#"{"state":{},"version":"1"}"#), ShadowError::InvalidVersion);
    assert_eq!(refused(r#"{"state":{},"version":-1}"#), ShadowError::InvalidVersion);
    let long = "x".repeat(65);
    assert_eq!(refused(&format!(r#"{{"state":{{}},"clientToken":"{long}"}}"#)), ShadowError::InvalidClientToken);
    assert_eq!(parse_update(b"\xff\xfe", &Limits::default()).unwrap_err(), ShadowError::UnsupportedEncoding);
    assert_eq!(ShadowError::TooDeep.to_string(), "JSON contains too many levels of nesting; maximum is 6");
    assert_eq!(ShadowError::NoShadow("t".into()).to_string(), "No shadow exists with name: 't'");
}

#[test]
fn nesting_is_limited_per_section() {
    let nest = |levels: usize| {
        let mut value = json!(1);
        for _ in 1..levels {
            value = json!({"k": value});
        }
        format!(r#"{{"state":{{"reported":{{"k":{value}}}}}}}"#)
    };
    assert!(parse_update(nest(8).as_bytes(), &Limits::default()).is_ok());
    assert_eq!(refused(&nest(9)), ShadowError::TooDeep);
}

#[test]
fn state_over_the_size_limit_is_refused_and_metadata_does_not_count() {
    let limits = Limits { max_state_bytes: 100, max_depth: 8 };
    let request = |value: &str| {
        parse_update(format!(r#"{{"state":{{"reported":{{"v":"{value}"}}}}}}"#).as_bytes(), &limits).unwrap()
    };
    let fits = Shadow::default().update(&request(&"x".repeat(90)), 1, &limits).unwrap();
    assert!(fits.shadow.state_size() <= 100);
    assert_eq!(Shadow::default().update(&request(&"x".repeat(95)), 1, &limits).unwrap_err(), ShadowError::TooLarge);
}

#[test]
fn removed_desired_keys_are_reported_as_nulls() {
    let shadow = apply(&Shadow::default(), json!({"state": {"desired": {"a": 1, "o": {"x": 1, "y": 1}}}}), 10);
    let applied = update(&shadow, json!({"state": {"desired": {"a": null, "o": {"x": null}}}}), 20).unwrap();
    let removed = applied.removed.unwrap();
    assert_eq!(removed["state"], json!({"a": null, "o": {"x": null}}));
    assert_eq!(removed["version"], json!(2));
    let whole = update(&applied.shadow, json!({"state": {"desired": null}}), 30).unwrap();
    assert_eq!(whole.removed.unwrap()["state"], json!({"o": null}));
    assert_eq!(update(&whole.shadow, json!({"state": {"desired": {"n": 1}}}), 40).unwrap().removed, None);
}

// ---- properties ----

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i32>().prop_map(Value::from),
        "[a-z]{0,4}".prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        prop::collection::vec(0..5i32, 0..3).prop_map(|v| json!(v)),
    ]
}

fn tree(nulls: bool) -> impl Strategy<Value = Map> {
    let key = prop_oneof![Just("a"), Just("b"), Just("c"), Just("d")].prop_map(str::to_string);
    let value = leaf().prop_recursive(3, 16, 4, move |inner| {
        prop::collection::vec((prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(str::to_string), inner), 0..4)
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect()))
    });
    let value = if nulls { prop_oneof![4 => value, 1 => Just(Value::Null)].boxed() } else { value.boxed() };
    prop::collection::vec((key, value), 0..4).prop_map(|pairs| pairs.into_iter().collect())
}

fn request() -> impl Strategy<Value = Value> {
    (prop::option::of(tree(true)), prop::option::of(tree(true)), any::<bool>()).prop_map(
        |(desired, reported, clear)| {
            let mut state = Map::new();
            if let Some(desired) = desired {
                state.insert("desired".into(), Value::Object(desired));
            }
            if clear {
                state.insert("reported".into(), Value::Null);
            } else if let Some(reported) = reported {
                state.insert("reported".into(), Value::Object(reported));
            }
            json!({"state": state})
        },
    )
}

/// Metadata has exactly the shape of the state, with a timestamp at every leaf.
fn mirrors(state: &Value, metadata: &Value) -> bool {
    match (state, metadata) {
        (Value::Object(s), Value::Object(m)) if !s.is_empty() || m.is_empty() => {
            s.len() == m.len() && s.iter().all(|(k, v)| m.get(k).is_some_and(|mv| mirrors(v, mv)))
        }
        (Value::Array(s), Value::Array(m)) => s.len() == m.len() && s.iter().zip(m).all(|(sv, mv)| mirrors(sv, mv)),
        (_, Value::Object(m)) => m.len() == 1 && m.get("timestamp").is_some_and(Value::is_u64),
        _ => false,
    }
}

fn has_empty_object(map: &Map) -> bool {
    map.values().any(|v| v.as_object().is_some_and(|o| o.is_empty() || has_empty_object(o)))
}

proptest! {
    #[test]
    fn reporting_the_desired_state_empties_the_delta(requests in prop::collection::vec(request(), 0..6), desired in tree(false)) {
        let mut shadow = Shadow::default();
        for (now, request) in requests.into_iter().enumerate() {
            if let Ok(applied) = update(&shadow, request, now as u64) { shadow = applied.shadow; }
        }
        shadow = apply(&shadow, json!({"state": {"desired": desired}}), 100);
        let desired = Value::Object(shadow.desired.state.clone());
        let synced = update(&shadow, json!({"state": {"reported": desired}}), 101).unwrap();
        prop_assert_eq!(synced.delta, None);
        prop_assert!(synced.shadow.delta().is_none());
    }

    #[test]
    fn versions_increase_by_one_and_metadata_mirrors_state(requests in prop::collection::vec(request(), 1..8)) {
        let mut shadow = Shadow::default();
        for (now, request) in requests.into_iter().enumerate() {
            let applied = update(&shadow, request, now as u64).unwrap();
            prop_assert_eq!(applied.shadow.version, shadow.version + 1);
            prop_assert_eq!(&applied.accepted["version"], &json!(applied.shadow.version));
            shadow = applied.shadow;
            for section in [&shadow.desired, &shadow.reported] {
                prop_assert!(mirrors(&Value::Object(section.state.clone()), &Value::Object(section.metadata.clone())));
                prop_assert!(!has_empty_object(&section.state));
            }
        }
    }

    #[test]
    fn an_update_applied_twice_changes_only_the_version(request in request(), base in request()) {
        let shadow = apply(&Shadow::default(), base, 1);
        let once = apply(&shadow, request.clone(), 2);
        let twice = apply(&once, request, 2);
        prop_assert_eq!(&once.desired, &twice.desired);
        prop_assert_eq!(&once.reported, &twice.reported);
        prop_assert_eq!(twice.version, once.version + 1);
    }

    #[test]
    fn delta_keys_are_desired_keys_that_reported_lacks(requests in prop::collection::vec(request(), 1..6)) {
        let mut shadow = Shadow::default();
        for (now, request) in requests.into_iter().enumerate() {
            shadow = apply(&shadow, request, now as u64);
        }
        if let Some(delta) = shadow.delta() {
            for (key, value) in &delta.state {
                let desired = &shadow.desired.state[key];
                let reported = shadow.reported.state.get(key);
                prop_assert!(reported != Some(desired));
                prop_assert!(value.is_object() || value == desired);
            }
        }
    }
}
