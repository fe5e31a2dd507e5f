//! The shadow service on a real SQLite store, with the registry making and deleting
//! things, and a publisher that records what the gateway would route. No sockets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ferrocore_message::{Notification, Publisher};
use ferrocore_model::Account;
use ferrocore_model::registry::AttributePayload;
use ferrocore_registry::{CreateThing, Registry, RegistryConfig, SystemClock, UpdateThing};
use ferrocore_shadow::ShadowError;
use ferrocore_shadow::topic::{Operation, ShadowRequest};
use ferrocore_shadow_service::{ShadowService, ShadowSettings};
use ferrocore_store::{Collection, Record, RecordStore, SqliteStore, StoreError, Write};
use serde_json::Value;

/// The store, counting reads and commits (to see what the hot path costs).
struct Counting {
    inner: SqliteStore,
    gets: AtomicUsize,
    commits: AtomicUsize,
}

#[async_trait::async_trait]
impl RecordStore for Counting {
    async fn get(&self, collection: Collection, key: &str) -> Result<Option<Record>, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(collection, key).await
    }

    async fn list(&self, collection: Collection, after: Option<&str>, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.inner.list(collection, after, limit).await
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<i64, StoreError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.inner.commit(writes).await
    }
}

#[derive(Default)]
struct Captured(Mutex<Vec<Notification>>);

#[async_trait::async_trait]
impl Publisher for Captured {
    async fn publish(&self, notifications: Vec<Notification>) {
        self.0.lock().unwrap().extend(notifications);
    }
}

impl Captured {
    fn on(&self, suffix: &str) -> Vec<Value> {
        let published = self.0.lock().unwrap();
        published
            .iter()
            .filter(|n| n.topic.ends_with(suffix))
            .map(|n| serde_json::from_slice(&n.payload).unwrap())
            .collect()
    }
}

struct Setup {
    registry: Registry,
    store: Arc<Counting>,
    shadows: ShadowService,
    published: Arc<Captured>,
    _dir: tempfile::TempDir,
}

async fn setup(settings: ShadowSettings) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Counting {
        inner: SqliteStore::open(&dir.path().join("db")).await.unwrap(),
        gets: AtomicUsize::new(0),
        commits: AtomicUsize::new(0),
    });
    let config = RegistryConfig {
        account: Account::default(),
        thing_type_delete_wait_ms: 0,
        endpoint_host: "localhost".into(),
        policy_document_limit: 2048,
    };
    let issuer = Arc::new(ferrocore_pki::Issuer::new_root("test CA", "ferrocore", 1_800_000_000).unwrap());
    let registry = Registry::new(store.clone(), config, Arc::new(SystemClock), issuer);
    let shadows = ShadowService::start(store.clone(), settings, || 1_800_000_000);
    let published = Arc::new(Captured::default());
    shadows.attach_publisher(published.clone());
    Setup { registry, store, shadows, published, _dir: dir }
}

async fn thing(registry: &Registry, name: &str) {
    registry.create_thing(CreateThing { name: name.into(), ..Default::default() }).await.unwrap();
}

fn update_request(thing: &str) -> ShadowRequest<'_> {
    ShadowRequest { thing, shadow: None, operation: Operation::Update }
}

#[tokio::test]
async fn concurrent_updates_lose_nothing() {
    let setup = setup(ShadowSettings::default()).await;
    thing(&setup.registry, "t").await;
    let writers: Vec<_> = (0..64)
        .map(|i| {
            let shadows = setup.shadows.clone();
            tokio::spawn(async move {
                let update = format!(r#"{{"state":{{"reported":{{"k{i}":{i}}}}}}}"#);
                let shadow = (i % 2 == 0).then_some("named");
                shadows.update("t", shadow, update.as_bytes()).await.unwrap()
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    for (shadow, parity) in [(None, 1), (Some("named"), 0)] {
        let document = setup.shadows.get("t", shadow, None).await.unwrap();
        assert_eq!(document["version"], 32);
        let reported = document["state"]["reported"].as_object().unwrap();
        assert_eq!(reported.len(), 32);
        assert!((0..64).filter(|i| i % 2 == parity).all(|i| reported[&format!("k{i}")] == i));
    }
}

#[tokio::test]
async fn pipelined_mqtt_updates_are_answered_in_order_with_few_writes_and_no_reads() {
    let setup = setup(ShadowSettings::default()).await;
    thing(&setup.registry, "dev").await;
    // The first update reads the thing and the shadow into the lane's cache.
    setup.shadows.update("dev", None, br#"{"state":{"reported":{"n":0}}}"#).await.unwrap();
    let (gets, commits) = (setup.store.gets.load(Ordering::SeqCst), setup.store.commits.load(Ordering::SeqCst));
    for n in 1..=200 {
        let update = format!(r#"{{"state":{{"reported":{{"n":{n}}}}},"clientToken":"c{n}"}}"#);
        setup.shadows.submit(update_request("dev"), update.as_bytes(), 0).await;
    }
    // A caller's request queued behind them returns once they are answered.
    let last = setup.shadows.update("dev", None, br#"{"state":{"reported":{"n":201}}}"#).await.unwrap();
    assert_eq!(last["version"], 202);
    let accepted = setup.published.on("/update/accepted");
    let versions: Vec<u64> = accepted.iter().map(|d| d["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, (1..=202).collect::<Vec<_>>(), "every update accepted once, in order");
    assert_eq!(accepted[5]["clientToken"], "c5");
    assert_eq!(accepted[5]["state"]["reported"]["n"], 5);
    assert_eq!(setup.published.on("/update/documents").len(), 202);
    assert_eq!(setup.store.gets.load(Ordering::SeqCst), gets, "cached: no store reads on the update path");
    let rounds = setup.store.commits.load(Ordering::SeqCst) - commits;
    assert!((1..=201).contains(&rounds), "{rounds} commits for 201 updates");
    // Durable: a fresh service over the same store reads the last one.
    let fresh = ShadowService::start(setup.store.clone(), ShadowSettings::default(), || 1_800_000_000);
    let document = fresh.get("dev", None, None).await.unwrap();
    assert_eq!((document["version"].as_u64(), document["state"]["reported"]["n"].as_u64()), (Some(202), Some(201)));
}

#[tokio::test]
async fn a_write_by_another_process_is_not_lost_behind_the_cache() {
    let setup = setup(ShadowSettings::default()).await;
    thing(&setup.registry, "t").await;
    // A second node over the same store.
    let other = ShadowService::start(setup.store.clone(), ShadowSettings::default(), || 1_800_000_000);
    for i in 0..10 {
        let (mine, theirs) = (
            format!(r#"{{"state":{{"reported":{{"a{i}":1}}}}}}"#),
            format!(r#"{{"state":{{"reported":{{"b{i}":1}}}}}}"#),
        );
        setup.shadows.update("t", None, mine.as_bytes()).await.unwrap();
        other.update("t", None, theirs.as_bytes()).await.unwrap();
    }
    let document = setup.shadows.get("t", None, None).await.unwrap();
    assert_eq!(document["version"], 20);
    assert_eq!(document["state"]["reported"].as_object().unwrap().len(), 20);
    // An expected version is checked against the shadow as stored, not as cached.
    let stale = setup.shadows.update("t", None, br#"{"state":{"reported":{"x":1}},"version":19}"#).await;
    assert_eq!(stale.unwrap_err(), ShadowError::VersionConflict);
    let current = setup.shadows.update("t", None, br#"{"state":{"reported":{"x":1}},"version":20}"#).await;
    assert_eq!(current.unwrap()["version"], 21);
}

#[tokio::test]
async fn a_refusal_is_checked_against_the_store_not_the_cache() {
    let setup = setup(ShadowSettings::default()).await;
    thing(&setup.registry, "t").await;
    let other = ShadowService::start(setup.store.clone(), ShadowSettings::default(), || 1_800_000_000);
    // This node learns the shadow is absent; another node then makes it.
    assert_eq!(setup.shadows.get("t", None, None).await.unwrap_err(), ShadowError::NoShadow("t".into()));
    other.update("t", None, br#"{"state":{"reported":{"a":1}}}"#).await.unwrap();
    let deleted = setup.shadows.delete("t", None, None).await.unwrap();
    assert_eq!(deleted["version"], 1, "the delete reached the stored shadow");
    // The other node writes again; an update expecting the stored version is accepted here.
    other.update("t", None, br#"{"state":{"reported":{"a":2}}}"#).await.unwrap();
    let expected = setup.shadows.update("t", None, br#"{"state":{"reported":{"a":3}},"version":2}"#).await;
    assert_eq!(expected.unwrap()["version"], 3);
    // Positive control: a version that is really stale is still refused.
    let stale = setup.shadows.update("t", None, br#"{"state":{"reported":{"a":4}},"version":2}"#).await;
    assert_eq!(stale.unwrap_err(), ShadowError::VersionConflict);
}

#[tokio::test]
async fn shadows_belong_to_an_existing_thing_and_go_with_it() {
    let setup = setup(ShadowSettings::default()).await;
    let (registry, shadows) = (&setup.registry, &setup.shadows);
    let update = br#"{"state":{"desired":{"on":true}}}"#;
    assert_eq!(shadows.update("ghost", None, update).await.unwrap_err(), ShadowError::ThingNotFound);
    thing(registry, "t").await;
    shadows.update("t", None, update).await.unwrap();
    shadows.update("t", Some("config"), update).await.unwrap();
    // UpdateThing moves the thing's revision under the cached one: still served.
    let attributes = AttributePayload { attributes: [("k".to_string(), "v".to_string())].into(), merge: true };
    let changed = UpdateThing { name: "t".into(), attributes: Some(attributes), ..Default::default() };
    registry.update_thing(changed).await.unwrap();
    assert_eq!(shadows.update("t", None, update).await.unwrap()["version"], 2);
    registry.delete_thing("t", None).await.unwrap();
    // The lane still caches the thing: the store's hold on it refuses the write.
    assert_eq!(shadows.update("t", None, update).await.unwrap_err(), ShadowError::ThingNotFound);
    thing(registry, "t").await;
    assert_eq!(shadows.get("t", None, None).await.unwrap_err(), ShadowError::NoShadow("t".into()));
    assert_eq!(shadows.get("t", Some("config"), None).await.unwrap_err(), ShadowError::NoShadow("config".into()));
    assert_eq!(shadows.update("t", None, update).await.unwrap()["version"], 1);
}

#[tokio::test]
async fn mqtt_requests_are_answered_on_accepted_and_rejected() {
    let setup = setup(ShadowSettings::default()).await;
    thing(&setup.registry, "t").await;
    let request = |operation| ShadowRequest { thing: "t", shadow: Some("cfg"), operation };
    setup.shadows.submit(request(Operation::Get), br#"{"clientToken":"g1"}"#, 0).await;
    setup.shadows.submit(request(Operation::Update), b"not json", 0).await;
    setup.shadows.submit(request(Operation::Update), br#"{"state":{"desired":{"on":1}},"clientToken":"u1"}"#, 3).await;
    setup.shadows.submit(request(Operation::Get), br#"{"clientToken":7}"#, 0).await;
    setup.shadows.submit(request(Operation::Get), br#"{"clientToken":"g2"}"#, 0).await;
    setup.shadows.submit(request(Operation::Delete), b"", 0).await;
    setup.shadows.get("t", Some("cfg"), None).await.unwrap_err();
    let published = setup.published.0.lock().unwrap().clone();
    let topics: Vec<&str> =
        published.iter().map(|n| n.topic.strip_prefix("$aws/things/t/shadow/name/cfg/").unwrap()).collect();
    assert_eq!(
        topics,
        [
            "get/rejected",
            "update/rejected",
            "update/accepted",
            "update/delta",
            "update/documents",
            "get/rejected",
            "get/accepted",
            "delete/accepted"
        ]
    );
    let body = |i: usize| serde_json::from_slice::<Value>(&published[i].payload).unwrap();
    assert_eq!((body(0)["code"].as_u64(), body(0)["clientToken"].as_str()), (Some(404), Some("g1")));
    assert_eq!(body(1)["code"], 400);
    assert!(published[2..5].iter().all(|n| n.hops == 3), "hops travel with the answers");
    assert_eq!(body(5)["message"], "Invalid clientToken");
    assert_eq!((body(6)["version"].as_u64(), body(6)["clientToken"].as_str()), (Some(1), Some("g2")));
}

#[tokio::test]
async fn named_shadows_are_listed_in_pages_without_deleted_ones() {
    let setup = setup(ShadowSettings::default()).await;
    let shadows = &setup.shadows;
    thing(&setup.registry, "t").await;
    thing(&setup.registry, "t2").await;
    let update = br#"{"state":{"reported":{"x":1}}}"#;
    shadows.update("t", None, update).await.unwrap();
    shadows.update("t2", Some("other"), update).await.unwrap();
    for name in ["a", "b", "c", "d", "e"] {
        shadows.update("t", Some(name), update).await.unwrap();
    }
    shadows.delete("t", Some("c"), None).await.unwrap();
    let first = shadows.list_named("t", None, Some(2)).await.unwrap();
    assert_eq!(first.names, ["a", "b"]);
    let second = shadows.list_named("t", first.next_token.as_deref(), Some(2)).await.unwrap();
    assert_eq!(second.names, ["d", "e"]);
    assert_eq!(second.next_token, None);
    assert!(matches!(shadows.list_named("t", None, Some(101)).await, Err(ShadowError::InvalidRequest(_))));
    assert_eq!(shadows.list_named("nope", None, None).await.unwrap_err(), ShadowError::ThingNotFound);
}

#[tokio::test]
async fn history_keeps_the_last_versions() {
    let setup = setup(ShadowSettings { history_versions: 2, ..Default::default() }).await;
    let shadows = &setup.shadows;
    thing(&setup.registry, "t").await;
    for i in 1..=4 {
        let update = format!(r#"{{"state":{{"reported":{{"i":{i}}}}}}}"#);
        shadows.submit(update_request("t"), update.as_bytes(), 0).await;
    }
    shadows.get("t", None, None).await.unwrap();
    assert!(matches!(shadows.version("t", None, 2).await, Err(ShadowError::VersionNotKept { version: 2, kept: 2 })));
    let third = shadows.version("t", None, 3).await.unwrap();
    assert_eq!((third["state"]["reported"]["i"].as_u64(), third["version"].as_u64()), (Some(3), Some(3)));
    shadows.delete("t", None, None).await.unwrap();
    assert_eq!(shadows.version("t", None, 4).await.unwrap()["version"], 4);
}

#[tokio::test]
async fn removal_notifications_are_opt_in() {
    for opted_in in [false, true] {
        let setup = setup(ShadowSettings { removal_notifications: opted_in, ..Default::default() }).await;
        thing(&setup.registry, "t").await;
        setup.shadows.update("t", None, br#"{"state":{"desired":{"a":1,"b":2}}}"#).await.unwrap();
        setup.shadows.update("t", None, br#"{"state":{"desired":{"a":null}}}"#).await.unwrap();
        // Positive control in both runs: the update's documents were published.
        assert_eq!(setup.published.on("/update/documents").len(), 2);
        let removed = setup.published.on("/update/removed");
        if opted_in {
            assert_eq!(removed.len(), 1);
            assert_eq!(removed[0]["state"], serde_json::json!({"a": null}));
        } else {
            assert!(removed.is_empty());
        }
    }
}
