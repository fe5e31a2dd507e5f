//! Micro-benchmarks of the pure code on the message path: packet decode and
//! encode, topic matching against many subscriptions, policy evaluation with
//! variables, shadow merge and delta, rule SQL WHERE evaluation.
//!
//! `cargo bench -p ferrocore-bench --bench pure [-- <case>|all [iterations]]` prints
//! ns/op per case. Wall time is noisy on a shared machine; for a stable count run
//! one case under callgrind (`bench/micro.sh` does) and divide the instructions by
//! the iterations.

use std::hint::black_box;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use ferrocore_mqtt::{FilterIndex, Packet, Properties, Publish, QoS, Version, decode, encode, topic};
use ferrocore_policy::{Context, Policy, ThingFacts, evaluate};
use ferrocore_shadow::{Limits, Shadow, parse_update};

struct Case {
    name: &'static str,
    default_iterations: u64,
    run: Box<dyn FnMut()>,
}

fn publish_packet() -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "bench/bench-pub-3/in".into(),
        packet_id: Some(7),
        payload: Bytes::from(vec![b'x'; 100]),
        properties: Properties::default(),
    })
}

/// Finding the subscribers of `topic` in the router's filter index.
fn filter_index_case(name: &'static str, index: FilterIndex, topic: &'static str) -> Case {
    Case {
        name,
        default_iterations: 1_000_000,
        run: Box::new(move || {
            let mut hits = 0;
            index.for_each_match(black_box(topic), |_, names| hits += names.len());
            black_box(hits);
        }),
    }
}

fn cases() -> Vec<Case> {
    let mut encoded = BytesMut::new();
    encode(&publish_packet(), Version::V311, &mut encoded);
    let encoded = encoded.freeze();

    let filters: Vec<String> = (0..100_000).map(|i| format!("devices/{}/sensor-{i}/+", i % 100)).collect();
    // The router's index over the same filters, and over 100 of them: a publish should cost
    // about the same whatever the number of subscriptions.
    let index_of = |count: usize| {
        let mut index = FilterIndex::default();
        for (i, filter) in filters.iter().take(count).enumerate() {
            index.insert(filter, &format!("client-{i}"), ());
        }
        index
    };
    let (index_100k, index_100) = (index_of(100_000), index_of(100));

    let walled_garden = Policy::parse(
        r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:us-east-1:000000000000:client/${iot:Connection.Thing.ThingName}"},
        {"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":"arn:aws:iot:us-east-1:000000000000:topic/$aws/things/${iot:Connection.Thing.ThingName}/*"},
        {"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:us-east-1:000000000000:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/*"}]}"#,
    )
    .expect("valid policy");
    let thing = ThingFacts { name: "sensor-001".into(), type_name: None, attributes: Default::default() };
    let context = Context::for_connection("sensor-001", Some(&thing), None);
    let resource = "arn:aws:iot:us-east-1:000000000000:topic/$aws/things/sensor-001/shadow/update";

    let limits = Limits::default();
    let mut shadow = Shadow::default();
    let desired: String = (0..20).map(|i| format!(r#""k{i}":{{"v":{i},"on":true}}"#)).collect::<Vec<_>>().join(",");
    let seed = parse_update(format!(r#"{{"state":{{"desired":{{{desired}}}}}}}"#).as_bytes(), &limits).unwrap();
    shadow = shadow.update(&seed, 1, &limits).unwrap().shadow;
    let report = br#"{"state":{"reported":{"k3":{"v":3,"on":false},"temperature":21.5}},"clientToken":"abc"}"#;

    let rule = ferrocore_rules_sql::parse(
        "SELECT *, topic(2) AS device FROM 'sensors/+/temperature' WHERE value > 40 OR value < 0",
    )
    .expect("valid SQL");
    let reading =
        ferrocore_rules_sql::Value::from_json(&serde_json::json!({"value": 45.5, "unit": "C", "battery": 87}));
    let sql_context = ferrocore_rules_sql::Context { topic: "sensors/s7/temperature".into(), ..Default::default() };

    vec![
        Case {
            name: "sql_where_and_select_seed_rule",
            default_iterations: 200_000,
            run: Box::new(move || {
                black_box(ferrocore_rules_sql::evaluate(&rule, black_box(&reading), &sql_context).unwrap());
            }),
        },
        Case {
            name: "mqtt_decode_publish_100b",
            default_iterations: 1_000_000,
            run: Box::new(move || {
                let mut buffer = BytesMut::from(&encoded[..]);
                black_box(decode(&mut buffer, Some(Version::V311), 1 << 20).unwrap());
            }),
        },
        Case {
            name: "mqtt_encode_publish_100b",
            default_iterations: 1_000_000,
            run: Box::new({
                let packet = publish_packet();
                let mut out = BytesMut::with_capacity(256);
                move || {
                    out.clear();
                    encode(black_box(&packet), Version::V311, &mut out);
                }
            }),
        },
        Case {
            name: "topic_match_100k_filters",
            default_iterations: 100,
            run: Box::new(move || {
                let hits =
                    filters.iter().filter(|f| topic::matches(f, black_box("devices/42/sensor-4242/temp"))).count();
                black_box(hits);
            }),
        },
        filter_index_case("filter_index_100k_filters", index_100k, "devices/42/sensor-4242/temp"),
        filter_index_case("filter_index_100_filters", index_100, "devices/42/sensor-42/temp"),
        Case {
            name: "policy_eval_walled_garden",
            default_iterations: 200_000,
            run: Box::new(move || {
                black_box(evaluate(&[&walled_garden], "iot:Publish", black_box(resource), &context));
            }),
        },
        Case {
            name: "shadow_update_and_delta_20_keys",
            default_iterations: 50_000,
            run: Box::new(move || {
                let request = parse_update(black_box(report), &limits).unwrap();
                black_box(shadow.update(&request, 2, &limits).unwrap());
            }),
        },
    ]
}

fn main() {
    // `cargo bench` passes `--bench`; a case name (or `all`) and an iteration count may follow.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let only = args.first().cloned().filter(|name| name != "all");
    let iterations: Option<u64> = args.get(1).and_then(|n| n.parse().ok());
    for mut case in cases() {
        if only.as_deref().is_some_and(|name| name != case.name) {
            continue;
        }
        let iterations = iterations.unwrap_or(case.default_iterations);
        let started = Instant::now();
        for _ in 0..iterations {
            (case.run)();
        }
        let per_op = started.elapsed().as_nanos() as f64 / iterations as f64;
        println!("{{\"case\":\"{}\",\"iterations\":{iterations},\"ns_per_op\":{per_op:.1}}}", case.name);
    }
}
