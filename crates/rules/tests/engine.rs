//! The rules engine end to end without sockets: rules stored in a real registry
//! (SQLite in a temp dir), messages offered as the gateway offers them, output
//! captured by a publisher standing in for the gateway.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferrocore_model::Account;
use ferrocore_model::rules::TopicRulePayload;
use ferrocore_registry::{MessageSink, Notification, Publisher, Registry, RegistryConfig, RoutedMessage, SystemClock};
use ferrocore_rules::{Engine, RulesConfig};
use ferrocore_shadow_service::ShadowService;
use serde_json::{Value, json};

#[derive(Default)]
struct Captured(Mutex<Vec<Notification>>);

#[async_trait::async_trait]
impl Publisher for Captured {
    async fn publish(&self, notifications: Vec<Notification>) {
        self.0.lock().unwrap().extend(notifications);
    }
}

impl Captured {
    /// The payloads published on `topic`, waiting up to 5 s for at least `count`.
    async fn on(&self, topic: &str, count: usize) -> Vec<Value> {
        for _ in 0..500 {
            let found: Vec<Value> = self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|n| n.topic == topic)
                .map(|n| serde_json::from_slice(&n.payload).unwrap_or(Value::Null))
                .collect();
            if found.len() >= count {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Vec::new()
    }
}

struct Setup {
    registry: Arc<Registry>,
    engine: Arc<Engine>,
    published: Arc<Captured>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = ferrocore_store::SqliteStore::open(&dir.path().join("db")).await.unwrap();
    let config = RegistryConfig {
        account: Account::default(),
        thing_type_delete_wait_ms: 0,
        endpoint_host: "localhost".into(),
        policy_document_limit: 2048,
    };
    let issuer = Arc::new(ferrocore_pki::Issuer::new_root("test CA", "ferrocore", 1_800_000_000).unwrap());
    let store: Arc<dyn ferrocore_store::RecordStore> = Arc::new(store);
    let registry = Arc::new(Registry::new(store.clone(), config, Arc::new(SystemClock), issuer));
    let shadows = ShadowService::start(store, Default::default(), ferrocore_shadow_service::system_seconds);
    let engine = Engine::start(registry.clone(), shadows, RulesConfig { max_attempts: 2, ..Default::default() }).await;
    let published = Arc::new(Captured::default());
    engine.attach_publisher(published.clone());
    Setup { registry, engine, published, _dir: dir }
}

impl Setup {
    async fn rule(&self, name: &str, payload: Value) {
        let payload: TopicRulePayload = serde_json::from_value(payload).unwrap();
        self.registry.create_topic_rule(name, &payload, &Default::default()).await.unwrap();
        self.engine.reload().await;
    }

    fn publish(&self, topic: &str, payload: Value, client_id: &str) {
        let published = published(topic, Bytes::from(payload.to_string()));
        self.engine.offer(&message(topic, &published, Some(client_id)));
    }
}

fn published(topic: &str, payload: Bytes) -> Arc<ferrocore_message::Message> {
    Arc::new(ferrocore_message::Message::new(topic, payload))
}

fn message<'a>(
    topic: &'a str,
    message: &'a Arc<ferrocore_message::Message>,
    client_id: Option<&'a str>,
) -> RoutedMessage<'a> {
    RoutedMessage { topic, message, qos: 1, client_id, principal: Some("abc123"), hops: 0 }
}

fn republish(topic: &str) -> Value {
    json!({"republish": {"topic": topic, "roleArn": "arn:aws:iam::000000000000:role/r"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_filters_and_select_shapes_the_output() {
    let s = setup().await;
    s.rule("Anomalies", json!({
        "sql": "SELECT value, topic(2) AS device, clientid() AS client FROM 'sensors/+/temperature' WHERE value > 40 OR value < 0",
        "awsIotSqlVersion": "2016-03-23",
        "actions": [republish("alerts/${topic(2)}")],
    }))
    .await;
    for value in [22, 45, -3, 40] {
        s.publish("sensors/s1/temperature", json!({"value": value, "unit": "C"}), "dev-1");
    }
    s.publish("sensors/s1/humidity", json!({"value": 99}), "dev-1");
    s.publish("sensors/s2/temperature", json!({"unit": "C"}), "dev-2");
    let out = s.published.on("alerts/s1", 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut values: Vec<i64> = out.iter().map(|v| v["value"].as_i64().unwrap()).collect();
    values.sort();
    assert_eq!(values, [-3, 45]);
    assert_eq!(out[0], json!({"value": out[0]["value"], "device": "s1", "client": "dev-1"}));
    assert!(s.published.on("alerts/s2", 1).await.is_empty(), "a missing field makes WHERE Undefined, so false");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_action_reaches_the_error_action_with_awss_payload() {
    let s = setup().await;
    s.rule("Fails", json!({
        "sql": "SELECT * FROM 'in/#'",
        "actions": [
            {"kafka": {"destinationArn": "arn:aws:iot:us-east-1:000000000000:ruledestination/vpc/x", "topic": "t", "clientProperties": {}}},
            republish("out/ok"),
        ],
        "errorAction": republish("errors"),
    }))
    .await;
    s.publish("in/a", json!({"n": 1}), "dev-9");
    let ok = s.published.on("out/ok", 1).await;
    assert_eq!(ok, [json!({"n": 1})]);
    let errors = s.published.on("errors", 1).await;
    assert_eq!(errors.len(), 1);
    let report = &errors[0];
    assert_eq!(report["ruleName"], "Fails");
    assert_eq!(report["topic"], "in/a");
    assert_eq!(report["clientId"], "dev-9");
    assert_eq!(report["base64OriginalPayload"], "eyJuIjoxfQ==");
    assert_eq!(report["failures"].as_array().unwrap().len(), 1);
    assert_eq!(report["failures"][0]["failedAction"], "KafkaAction");
    assert!(report["cloudwatchTraceId"].as_str().is_some_and(|t| !t.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_ingest_reaches_only_its_rule_and_disabled_rules_do_nothing() {
    let s = setup().await;
    s.rule("Ingest", json!({"sql": "SELECT *, topic() AS t FROM 'ignored/never'", "actions": [republish("ingested")]}))
        .await;
    s.rule("Other", json!({"sql": "SELECT * FROM '#'", "actions": [republish("everything")]})).await;
    // Published to `$aws/rules/Ingest/factory/line1`: the rule sees the rest as its topic.
    let bytes = published("$aws/rules/Ingest/factory/line1", Bytes::from_static(br#"{"x":1}"#));
    assert!(s.engine.ingest("Ingest", &message("factory/line1", &bytes, Some("c"))));
    assert!(!s.engine.ingest("Missing", &message("factory/line1", &bytes, Some("c"))));
    let ingested = s.published.on("ingested", 1).await;
    assert_eq!(ingested, [json!({"x": 1, "t": "factory/line1"})]);
    assert!(s.published.on("everything", 1).await.is_empty(), "Basic Ingest skips other rules' FROM filters");
    s.registry.set_topic_rule_enabled("Ingest", false).await.unwrap();
    s.engine.reload().await;
    assert!(!s.engine.ingest("Ingest", &message("factory/line1", &bytes, Some("c"))), "disabled rules take no ingest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republish_unescapes_reserved_topics() {
    let s = setup().await;
    s.rule(
        "Shadowing",
        json!({
            "sql": "SELECT VALUE {'state': {'reported': {'temp': temp}}} FROM 'raw/+'",
            "awsIotSqlVersion": "2016-03-23",
            "actions": [republish("$$aws/things/${topic(2)}/shadow/update")],
        }),
    )
    .await;
    s.publish("raw/pump7", json!({"temp": 71}), "pump7");
    let out = s.published.on("$aws/things/pump7/shadow/update", 1).await;
    assert_eq!(out, [json!({"state": {"reported": {"temp": 71}}})]);
}
