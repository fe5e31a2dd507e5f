//! Registry behaviour through the service API, on a real SQLite store, without sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use ferrocore_model::registry::{AttributePayload, Attributes};
use ferrocore_model::{Account, Error};
use ferrocore_registry::{
    Clock, CreateThing, CreateThingGroup, CreateThingType, ListThingGroups, ListThings, ListTopicRules, PageRequest,
    Registry, RegistryConfig, UpdateThing,
};
use ferrocore_store::SqliteStore;

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

async fn registry(dir: &tempfile::TempDir, delete_wait_ms: i64) -> (Registry, Arc<TestClock>) {
    let store = SqliteStore::open(&dir.path().join("db")).await.unwrap();
    let clock = Arc::new(TestClock(AtomicI64::new(1_800_000_000_000)));
    (registry_on(Arc::new(store), delete_wait_ms, clock.clone()), clock)
}

/// A registry on `store` (several may share one, as a cluster's nodes do).
fn registry_on(store: Arc<dyn ferrocore_store::RecordStore>, delete_wait_ms: i64, clock: Arc<dyn Clock>) -> Registry {
    let config = RegistryConfig {
        account: Account::default(),
        thing_type_delete_wait_ms: delete_wait_ms,
        endpoint_host: "localhost".into(),
        policy_document_limit: 2048,
    };
    let issuer = Arc::new(ferrocore_pki::Issuer::new_root("test CA", "ferrocore", 1_800_000_000).unwrap());
    Registry::new(store, config, clock, issuer)
}

fn attrs(pairs: &[(&str, &str)]) -> Attributes {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tokio::test]
async fn create_thing_is_idempotent_only_for_identical_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _) = registry(&dir, 0).await;
    let request = CreateThing { name: "t1".into(), attributes: attrs(&[("a", "1")]), ..Default::default() };
    let first = registry.create_thing(request.clone()).await.unwrap();
    let again = registry.create_thing(request.clone()).await.unwrap();
    assert_eq!(first.id, again.id);
    let different = CreateThing { attributes: attrs(&[("a", "2")]), ..request };
    let err = registry.create_thing(different).await.unwrap_err();
    assert!(matches!(err, Error::ResourceAlreadyExists { resource_id, .. } if resource_id == first.id));
}

#[tokio::test]
async fn updates_bump_the_version_and_check_expected_version() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _) = registry(&dir, 0).await;
    registry.create_thing(CreateThing { name: "t".into(), ..Default::default() }).await.unwrap();
    let update = |expected| UpdateThing {
        name: "t".into(),
        attributes: Some(AttributePayload { attributes: attrs(&[("k", "v")]), merge: true }),
        expected_version: expected,
        ..Default::default()
    };
    registry.update_thing(update(Some(1))).await.unwrap();
    assert_eq!(registry.describe_thing("t").await.unwrap().version, 2);
    assert!(matches!(registry.update_thing(update(Some(1))).await, Err(Error::VersionConflict(_))));
    assert!(matches!(registry.delete_thing("t", Some(1)).await, Err(Error::VersionConflict(_))));
    registry.delete_thing("t", Some(2)).await.unwrap();
    registry.delete_thing("t", None).await.expect("deleting a missing thing succeeds");
}

#[tokio::test]
async fn thing_types_gate_things() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, clock) = registry(&dir, 300_000).await;
    registry.create_thing_type(CreateThingType { name: "T".into(), ..Default::default() }).await.unwrap();
    let typed = CreateThing { name: "t".into(), thing_type: Some("T".into()), ..Default::default() };
    registry.create_thing(typed.clone()).await.unwrap();
    assert!(matches!(registry.delete_thing_type("T").await, Err(Error::InvalidRequest(_))), "not deprecated");
    registry.deprecate_thing_type("T", false).await.unwrap();
    let refused = CreateThing { name: "t2".into(), ..typed };
    assert!(matches!(registry.create_thing(refused).await, Err(Error::InvalidRequest(m)) if m.contains("depreated")));
    clock.0.fetch_add(300_000, Ordering::SeqCst);
    assert!(matches!(registry.delete_thing_type("T").await, Err(Error::InvalidRequest(m)) if m.contains("associated")));
    registry.delete_thing("t", None).await.unwrap();
    registry.delete_thing_type("T").await.unwrap();
}

#[tokio::test]
async fn groups_hold_one_thing_per_hierarchy_and_release_it_on_delete() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _) = registry(&dir, 0).await;
    let group = |name: &str, parent: Option<&str>| CreateThingGroup {
        name: name.into(),
        parent: parent.map(Into::into),
        ..Default::default()
    };
    registry.create_thing_group(group("root", None)).await.unwrap();
    registry.create_thing_group(group("child", Some("root"))).await.unwrap();
    registry.create_thing_group(group("other", None)).await.unwrap();
    registry.create_thing(CreateThing { name: "t".into(), ..Default::default() }).await.unwrap();
    registry.add_thing_to_thing_group("child", "t").await.unwrap();
    assert!(registry.add_thing_to_thing_group("root", "t").await.is_err());
    registry.add_thing_to_thing_group("other", "t").await.unwrap();
    let view = registry.describe_thing_group("child").await.unwrap();
    assert_eq!(view.root_to_parent.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["root"]);
    let in_root = registry.list_things_in_thing_group("root", true, &Default::default()).await.unwrap();
    assert_eq!(in_root.items, ["t"]);
    assert!(
        matches!(registry.delete_thing_group("root", None).await, Err(Error::InvalidRequest(m)) if m.contains("child groups"))
    );
    registry.delete_thing_group("child", None).await.unwrap();
    let groups = registry.list_thing_groups_for_thing("t", &Default::default()).await.unwrap();
    assert_eq!(groups.items.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["other"]);
}

#[tokio::test]
async fn list_things_filters_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _) = registry(&dir, 0).await;
    for i in 0..5 {
        let floor = if i % 2 == 0 { "even-1" } else { "odd" };
        let request =
            CreateThing { name: format!("t{i}"), attributes: attrs(&[("floor", floor)]), ..Default::default() };
        registry.create_thing(request).await.unwrap();
    }
    let mut request = ListThings {
        attribute_name: Some("floor".into()),
        attribute_value: Some("even".into()),
        use_prefix_attribute_value: true,
        ..Default::default()
    };
    request.page.max_results = Some(2);
    let first = registry.list_things(&request).await.unwrap();
    assert_eq!(first.items.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["t0", "t2"]);
    request.page.next_token = first.next_token;
    let second = registry.list_things(&request).await.unwrap();
    assert_eq!(second.items.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["t4"]);
    assert!(second.next_token.is_none());
}

#[tokio::test]
async fn pages_read_from_their_token_across_scan_chunks_with_and_without_a_filter() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _) = registry(&dir, 0).await;
    // More things than one scan chunk (500), so a filtered page spans chunks.
    const THINGS: usize = 1_100;
    for i in 0..THINGS {
        let every_seventh = if i % 7 == 0 { "seven" } else { "other" };
        let name = format!("t{i:05}");
        registry
            .create_thing(CreateThing { name, attributes: attrs(&[("n", every_seventh)]), ..Default::default() })
            .await
            .unwrap();
    }
    let follow = async |mut request: ListThings, size: i64| {
        request.page.max_results = Some(size);
        let mut names = Vec::new();
        let mut pages = 0;
        loop {
            let page = registry.list_things(&request).await.unwrap();
            assert!(page.items.len() <= size as usize);
            names.extend(page.items.into_iter().map(|t| t.name));
            pages += 1;
            match page.next_token {
                Some(token) => request.page.next_token = Some(token),
                None => return (names, pages),
            }
        }
    };
    let (all, pages) = follow(ListThings::default(), 250).await;
    assert_eq!(all, (0..THINGS).map(|i| format!("t{i:05}")).collect::<Vec<_>>());
    assert_eq!(pages, 5, "4 full pages and the rest");
    let (exact, pages) = follow(ListThings::default(), 100).await;
    assert_eq!((exact.len(), pages), (THINGS, 11), "a last page that ends the listing has no token");
    let sevens =
        ListThings { attribute_name: Some("n".into()), attribute_value: Some("seven".into()), ..Default::default() };
    let (filtered, _) = follow(sevens, 40).await;
    let expected: Vec<String> = (0..THINGS).filter(|i| i % 7 == 0).map(|i| format!("t{i:05}")).collect();
    assert_eq!(filtered, expected);
    let mut bad = ListThings::default();
    bad.page.next_token = Some("zz".into());
    assert!(matches!(registry.list_things(&bad).await, Err(Error::InvalidRequest(_))));
}

fn names<T>(page: ferrocore_registry::Page<T>, name: impl Fn(&T) -> &str) -> Vec<String> {
    page.items.iter().map(|item| name(item).to_string()).collect()
}

#[tokio::test]
async fn indexed_listings_follow_every_change_of_a_thing() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _) = registry(&dir, 0).await;
    for name in ["Meter", "Valve"] {
        registry.create_thing_type(CreateThingType { name: name.into(), ..Default::default() }).await.unwrap();
    }
    registry.create_thing_group(CreateThingGroup { name: "east".into(), ..Default::default() }).await.unwrap();
    registry
        .create_billing_group(ferrocore_registry::CreateBillingGroup { name: "pay".into(), ..Default::default() })
        .await
        .unwrap();
    for (name, thing_type, floor) in [("a", "Meter", "f1"), ("b", "Valve", "f1"), ("c", "Meter", "f2")] {
        let request = CreateThing {
            name: name.into(),
            thing_type: Some(thing_type.into()),
            attributes: attrs(&[("floor", floor)]),
            ..Default::default()
        };
        registry.create_thing(request).await.unwrap();
    }
    let list = async |thing_type: Option<&str>, attribute: Option<(&str, &str, bool)>| {
        let request = ListThings {
            thing_type: thing_type.map(str::to_string),
            attribute_name: attribute.map(|(n, _, _)| n.to_string()),
            attribute_value: attribute.map(|(_, v, _)| v.to_string()),
            use_prefix_attribute_value: attribute.is_some_and(|(_, _, prefix)| prefix),
            ..Default::default()
        };
        names(registry.list_things(&request).await.unwrap(), |t| t.name.as_str())
    };
    assert_eq!(list(Some("Meter"), None).await, ["a", "c"]);
    assert_eq!(list(None, Some(("floor", "f1", false))).await, ["a", "b"]);
    assert_eq!(list(Some("Meter"), Some(("floor", "f1", false))).await, ["a"], "both filters apply");
    assert_eq!(list(None, Some(("floor", "f", true))).await, ["a", "b", "c"]);
    assert_eq!(list(None, Some(("floor", "", true))).await, ["a", "b", "c"]);
    assert!(list(None, Some(("floor", "f", false))).await.is_empty(), "an exact value is not a prefix");

    // An update moves the thing between entries; a delete removes it.
    let update = UpdateThing {
        name: "a".into(),
        thing_type: Some("Valve".into()),
        attributes: Some(AttributePayload { attributes: attrs(&[("floor", "f2")]), merge: true }),
        ..Default::default()
    };
    registry.update_thing(update).await.unwrap();
    assert_eq!(list(Some("Meter"), None).await, ["c"]);
    assert_eq!(list(Some("Valve"), None).await, ["a", "b"]);
    assert_eq!(list(None, Some(("floor", "f2", false))).await, ["a", "c"]);
    registry.delete_thing("c", None).await.unwrap();
    assert!(list(Some("Meter"), None).await.is_empty());

    // Groups and billing groups, and leaving them when the group goes.
    registry.add_thing_to_thing_group("east", "b").await.unwrap();
    registry.set_thing_billing_group("a", "pay", true).await.unwrap();
    let in_group = registry.list_things_in_thing_group("east", false, &Default::default()).await.unwrap();
    assert_eq!(in_group.items, ["b"]);
    let billed = registry.list_things_in_billing_group("pay", &Default::default()).await.unwrap();
    assert_eq!(billed.items, ["a"]);
    registry.delete_thing_group("east", None).await.unwrap();
    registry.create_thing_group(CreateThingGroup { name: "east".into(), ..Default::default() }).await.unwrap();
    let regrown = registry.list_things_in_thing_group("east", false, &Default::default()).await.unwrap();
    assert!(regrown.items.is_empty(), "a deleted group's things left it, and its entries with them");
    registry.delete_billing_group("pay", None).await.unwrap();
    assert!(
        registry.list_things(&ListThings::default()).await.unwrap().items.iter().all(|t| t.billing_group.is_none())
    );
}

#[tokio::test]
async fn a_data_directory_from_before_the_index_is_indexed_at_start() {
    use ferrocore_store::{Collection, Expect, RecordStore, Write};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("db")).await.unwrap());
    // Things as the previous release stored them: records only, no index entries.
    let old = |name: &str, thing_type: &str| {
        let body = format!(
            r#"{{"name":"{name}","id":"id-{name}","thing_type":"{thing_type}","attributes":{{}},"version":1,"billing_group":null,"groups":[],"principals":{{}}}}"#
        );
        Write::put(Collection::Thing, name, Expect::Absent, body.into_bytes())
    };
    store.commit(vec![old("x", "Meter"), old("y", "Valve"), old("z", "Meter")]).await.unwrap();
    let clock = Arc::new(TestClock(AtomicI64::new(1_800_000_000_000)));
    let registry = registry_on(store.clone(), 0, clock);
    let by_type = ListThings { thing_type: Some("Meter".into()), ..Default::default() };
    let all = registry.list_things(&ListThings::default()).await.unwrap();
    assert_eq!(all.items.len(), 3, "positive control: the old things are there");
    assert!(registry.list_things(&by_type).await.unwrap().items.is_empty(), "not indexed yet");
    registry.prepare_indexes().await.unwrap();
    assert_eq!(names(registry.list_things(&by_type).await.unwrap(), |t| t.name.as_str()), ["x", "z"]);
    registry.prepare_indexes().await.unwrap();
    assert_eq!(registry.list_things(&by_type).await.unwrap().items.len(), 2, "built once");
}

#[tokio::test]
async fn indexes_missing_from_older_data_are_built_at_start() {
    use ferrocore_store::{Collection, Expect, RecordStore, Write};
    let dir = tempfile::tempdir().unwrap();
    let (registry, _) = registry(&dir, 0).await;
    // A second store on the same database: what the registry wrote, as the next start finds it.
    let store = SqliteStore::open(&dir.path().join("db")).await.unwrap();
    registry.create_thing_group(CreateThingGroup { name: "root".into(), ..Default::default() }).await.unwrap();
    let leaf = CreateThingGroup { name: "leaf".into(), parent: Some("root".into()), ..Default::default() };
    registry.create_thing_group(leaf).await.unwrap();
    registry.create_thing(CreateThing { name: "dev".into(), ..Default::default() }).await.unwrap();
    registry.add_thing_to_thing_group("leaf", "dev").await.unwrap();
    registry.create_policy("fleet", WALLED_GARDEN, &Default::default()).await.unwrap();
    let root_arn = "arn:aws:iot:us-east-1:000000000000:thinggroup/root";
    registry.attach_policy("fleet", root_arn).await.unwrap();

    let listings = || async {
        let recursive = registry.list_things_in_thing_group("root", true, &Default::default()).await.unwrap().items;
        let children = ListThingGroups { parent: Some("root".into()), ..Default::default() };
        let children = registry.list_thing_groups(&children).await.unwrap().items.into_iter().map(|g| g.name);
        let policies = registry.list_attached_policies(root_arn, false, &Default::default()).await.unwrap().items;
        let certificates = registry.list_certificates(None, false, &Default::default()).await.unwrap().items;
        let certificates: Vec<String> = certificates.into_iter().map(|c| c.id).collect();
        let by_topic = ListTopicRules { topic: Some("sensors/a b".into()), ..Default::default() };
        let rules: Vec<String> =
            registry.list_topic_rules(&by_topic).await.unwrap().items.into_iter().map(|r| r.name).collect();
        (recursive, children.collect::<Vec<_>>(), policies, certificates, rules)
    };
    registry.create_topic_rule("spaced", &rule_payload("sensors/a b"), &Default::default()).await.unwrap();
    let certificate = registry.create_keys_and_certificate(false).await.unwrap().id;
    let indexed = (
        vec!["dev".to_string()],
        vec!["leaf".to_string()],
        vec!["fleet".to_string()],
        vec![certificate],
        vec!["spaced".to_string()],
    );
    assert_eq!(listings().await, indexed, "positive control: the indexes answer");

    // The data as an older release left it: no index entries, only the first thing index's setting.
    let mut wipe = Vec::new();
    let indexes = [
        Collection::ThingIndex,
        Collection::PolicyTarget,
        Collection::ThingGroupChild,
        Collection::CertificateOrder,
        Collection::TopicRuleTopic,
    ];
    for index in indexes.into_iter().chain([Collection::Setting]) {
        let entries = store.list(index, None, 1000).await.unwrap();
        wipe.extend(entries.into_iter().map(|e| Write::delete(index, e.key, Expect::Anything)));
    }
    wipe.push(Write::put(Collection::Setting, "thing_index_built", Expect::Anything, b"true".to_vec()));
    store.commit(wipe).await.unwrap();
    assert_eq!(listings().await, (vec![], vec![], vec![], vec![], vec![]), "nothing indexed");
    registry.prepare_indexes().await.unwrap();
    assert_eq!(listings().await, indexed);
}

fn rule_payload(from: &str) -> ferrocore_model::rules::TopicRulePayload {
    serde_json::from_value(serde_json::json!({"sql": format!("SELECT * FROM '{from}'"), "actions": []})).unwrap()
}

#[tokio::test]
async fn topic_rules_are_listed_by_their_from_filter_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _) = registry(&dir, 0).await;
    let none = Default::default();
    for name in ["r1", "r2", "r3", "r4", "r5"] {
        registry.create_topic_rule(name, &rule_payload("a"), &none).await.unwrap();
    }
    // Filters that would collide with `a` or with each other under a naive key.
    registry.create_topic_rule("spaced", &rule_payload("a b"), &none).await.unwrap();
    registry.create_topic_rule("escaped", &rule_payload("a%20b"), &none).await.unwrap();
    let list = |topic: &str, disabled: Option<bool>, size: i64| {
        let topic = topic.to_string();
        let registry = &registry;
        async move {
            let (mut pages, mut token) = (Vec::new(), None);
            loop {
                let page = PageRequest { next_token: token, max_results: Some(size) };
                let request = ListTopicRules { topic: Some(topic.clone()), rule_disabled: disabled, page };
                let page = registry.list_topic_rules(&request).await.unwrap();
                pages.push(page.items.into_iter().map(|r| r.name).collect::<Vec<_>>());
                match page.next_token {
                    Some(next) => token = Some(next),
                    None => return pages,
                }
            }
        }
    };
    assert_eq!(list("a", None, 2).await, [vec!["r1", "r2"], vec!["r3", "r4"], vec!["r5"]]);
    assert_eq!(list("a b", None, 10).await, [vec!["spaced"]]);
    assert_eq!(list("a%20b", None, 10).await, [vec!["escaped"]]);
    registry.set_topic_rule_enabled("r3", false).await.unwrap();
    registry.replace_topic_rule("r5", &rule_payload("b")).await.unwrap();
    registry.delete_topic_rule("r1").await.unwrap();
    assert_eq!(list("a", Some(false), 10).await, [vec!["r2", "r4"]]);
    assert_eq!(list("a", Some(true), 10).await, [vec!["r3"]]);
    assert_eq!(list("b", None, 10).await, [vec!["r5"]]);
    let everything = registry.list_topic_rules(&ListTopicRules::default()).await.unwrap().items;
    let names: Vec<String> = everything.into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["escaped", "r2", "r3", "r4", "r5", "spaced"]);
    // A token from another filter's listing is refused.
    let foreign_token = "b r5".bytes().map(|b| format!("{b:02x}")).collect();
    let foreign = PageRequest { next_token: Some(foreign_token), max_results: None };
    let request = ListTopicRules { topic: Some("a".into()), page: foreign, ..Default::default() };
    assert!(matches!(registry.list_topic_rules(&request).await, Err(Error::InvalidRequest(_))));
}

#[tokio::test]
async fn ca_certificates_are_found_by_subject_and_listed_in_creation_order() {
    use ferrocore_model::security::{CertificateMode, CertificateStatus};
    use ferrocore_registry::RegisterCaCertificate;
    use ferrocore_store::{Collection, Expect, RecordStore, Write};
    let dir = tempfile::tempdir().unwrap();
    let (registry, clock) = registry(&dir, 0).await;
    let now = 1_800_000_000;
    // Two CAs share a subject (AWS allows several), a third has its own.
    let twins = [
        ferrocore_pki::Issuer::new_root("fleet CA", "ferrocore", now).unwrap(),
        ferrocore_pki::Issuer::new_root("fleet CA", "ferrocore", now).unwrap(),
    ];
    let other = ferrocore_pki::Issuer::new_root("other CA", "ferrocore", now).unwrap();
    let mut ids = Vec::new();
    for issuer in twins.iter().chain([&other]) {
        let request = RegisterCaCertificate {
            ca_pem: issuer.certificate_pem().to_string(),
            verification_pem: None,
            mode: CertificateMode::SniOnly,
            set_as_active: true,
            allow_auto_registration: false,
            registration_config: Default::default(),
            tags: Default::default(),
        };
        ids.push(registry.register_ca_certificate(request).await.unwrap().0);
        clock.0.fetch_add(1000, Ordering::SeqCst);
    }
    let order = |ascending: bool| {
        let registry = &registry;
        async move {
            let (mut listed, mut token) = (Vec::new(), None);
            loop {
                let page = PageRequest { next_token: token, max_results: Some(2) };
                let page = registry.list_ca_certificates(ascending, &page).await.unwrap();
                listed.extend(page.items.into_iter().map(|ca| ca.id));
                match page.next_token {
                    Some(next) => token = Some(next),
                    None => return listed,
                }
            }
        }
    };
    assert_eq!(order(true).await, ids);
    assert_eq!(order(false).await, ids.iter().rev().cloned().collect::<Vec<_>>());
    // A device of the second twin is registered under it, found among the CAs of its issuer's name.
    let device = twins[1].issue_device("dev", now).unwrap().certificate_pem;
    let created = registry.register_certificate(&device, None, CertificateStatus::Active).await.unwrap();
    let described = registry.describe_certificate(&created.id).await.unwrap();
    assert_eq!(described.ca_certificate_id.as_deref(), Some(ids[1].as_str()));
    let stranger = ferrocore_pki::Issuer::new_root("fleet CA", "ferrocore", now).unwrap();
    let unknown = stranger.issue_device("dev2", now).unwrap().certificate_pem;
    let refused = registry.register_certificate(&unknown, None, CertificateStatus::Active).await;
    assert!(matches!(refused, Err(Error::CertificateValidation(_))), "{refused:?}");

    // Data from before the index: the entries are built at start.
    let store = SqliteStore::open(&dir.path().join("db")).await.unwrap();
    let entries = store.list(Collection::CaCertificateIndex, None, 100).await.unwrap();
    assert_eq!(entries.len(), 9, "two order entries and one subject entry per CA");
    let mut wipe: Vec<Write> =
        entries.into_iter().map(|e| Write::delete(Collection::CaCertificateIndex, e.key, Expect::Anything)).collect();
    wipe.push(Write::delete(Collection::Setting, "ca_certificate_index_built", Expect::Anything));
    store.commit(wipe).await.unwrap();
    assert!(order(true).await.is_empty(), "nothing indexed");
    registry.prepare_indexes().await.unwrap();
    assert_eq!(order(true).await, ids);
    let again = twins[0].issue_device("dev3", now).unwrap().certificate_pem;
    let created = registry.register_certificate(&again, None, CertificateStatus::Active).await.unwrap();
    let described = registry.describe_certificate(&created.id).await.unwrap();
    assert_eq!(described.ca_certificate_id.as_deref(), Some(ids[0].as_str()));
}

#[tokio::test]
async fn a_groups_children_are_listed_in_pages_from_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _) = registry(&dir, 0).await;
    registry.create_thing_group(CreateThingGroup { name: "site".into(), ..Default::default() }).await.unwrap();
    registry.create_thing_group(CreateThingGroup { name: "site2".into(), ..Default::default() }).await.unwrap();
    for (name, parent) in [("c1", "site"), ("c2", "site"), ("x1", "site"), ("c3", "site"), ("c4", "site2")] {
        let child = CreateThingGroup { name: name.into(), parent: Some(parent.into()), ..Default::default() };
        registry.create_thing_group(child).await.unwrap();
    }
    let (mut pages, mut token) = (Vec::new(), None);
    loop {
        let page = PageRequest { next_token: token, max_results: Some(2) };
        let request =
            ListThingGroups { parent: Some("site".into()), name_prefix: Some("c".into()), page, ..Default::default() };
        let listed = registry.list_thing_groups(&request).await.unwrap();
        pages.push(listed.items.into_iter().map(|g| g.name).collect::<Vec<_>>());
        match listed.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, [vec!["c1", "c2"], vec!["c3"]]);
    // Without a parent, a name prefix seeks to its first group (the one named exactly so included).
    let all_named = |prefix: &str, token: Option<String>| ListThingGroups {
        name_prefix: Some(prefix.into()),
        page: PageRequest { next_token: token, max_results: Some(2) },
        ..Default::default()
    };
    let first = registry.list_thing_groups(&all_named("c", None)).await.unwrap();
    let second = registry.list_thing_groups(&all_named("c", first.next_token.clone())).await.unwrap();
    let names = |page: &ferrocore_registry::Page<ferrocore_registry::GroupRef>| {
        page.items.iter().map(|g| g.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(
        (names(&first), names(&second), second.next_token),
        (vec!["c1".into(), "c2".into()], vec!["c3".into(), "c4".into()], None)
    );
    let sites = registry.list_thing_groups(&all_named("site", None)).await.unwrap();
    assert_eq!((names(&sites), sites.next_token), (vec!["site".to_string(), "site2".to_string()], None));
}

const WALLED_GARDEN: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:us-east-1:000000000000:client/${iot:Connection.Thing.ThingName}"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"], "Resource": "arn:aws:iot:us-east-1:000000000000:topic/$aws/things/${iot:Connection.Thing.ThingName}/*"},
    {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": "arn:aws:iot:us-east-1:000000000000:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/*"}
  ]
}"#;

fn check(action: &str, resource: &str) -> ferrocore_registry::AuthCheck {
    ferrocore_registry::AuthCheck {
        action_type: action.into(),
        resources: vec![format!("arn:aws:iot:us-east-1:000000000000:{resource}")],
    }
}

#[tokio::test]
async fn certificate_lifecycle_and_walled_garden_authorization() {
    use ferrocore_model::security::{CertificateStatus, ThingPrincipalType};
    use ferrocore_policy::Decision;

    let dir = tempfile::tempdir().unwrap();
    let (registry, _) = registry(&dir, 0).await;
    let cert = registry.create_keys_and_certificate(true).await.unwrap();
    assert!(cert.key_pair.as_ref().unwrap().1.contains("PRIVATE KEY"));
    registry.create_thing(CreateThing { name: "dev1".into(), ..Default::default() }).await.unwrap();
    registry.create_policy("garden", WALLED_GARDEN, &Default::default()).await.unwrap();
    registry.attach_policy("garden", &cert.arn).await.unwrap();
    registry.attach_thing_principal("dev1", &cert.arn, ThingPrincipalType::NonExclusiveThing).await.unwrap();

    let request = ferrocore_registry::TestAuthorization {
        principal: Some(cert.arn.clone()),
        client_id: Some("dev1".into()),
        checks: vec![
            check("CONNECT", "client/dev1"),
            check("PUBLISH", "topic/$aws/things/dev1/shadow/update"),
            check("PUBLISH", "topic/$aws/things/dev2/shadow/update"),
            check("SUBSCRIBE", "topicfilter/$aws/things/dev1/shadow/#"),
        ],
        ..Default::default()
    };
    let decisions: Vec<Decision> =
        registry.test_authorization(&request).await.unwrap().iter().map(|r| r.decision).collect();
    assert_eq!(decisions, [Decision::Allowed, Decision::Allowed, Decision::ImplicitDeny, Decision::Allowed]);
    let as_other = ferrocore_registry::TestAuthorization { client_id: Some("dev2".into()), ..request.clone() };
    let results = registry.test_authorization(&as_other).await.unwrap();
    assert_eq!(
        results[0].decision,
        Decision::ImplicitDeny,
        "thing variables resolve only for the thing's own client id"
    );

    assert!(matches!(registry.delete_thing("dev1", None).await, Err(Error::InvalidRequest(_))));
    assert!(matches!(registry.delete_certificate(&cert.id, false).await, Err(Error::CertificateState(_))));
    registry.update_certificate(&cert.id, CertificateStatus::Inactive).await.unwrap();
    assert!(
        matches!(registry.delete_certificate(&cert.id, true).await, Err(Error::DeleteConflict(_))),
        "thing attached"
    );
    registry.detach_thing_principal("dev1", &cert.arn).await.unwrap();
    assert!(
        matches!(registry.delete_certificate(&cert.id, false).await, Err(Error::DeleteConflict(_))),
        "policy attached"
    );
    registry.delete_certificate(&cert.id, true).await.unwrap();
    assert!(registry.get_policy("garden").await.unwrap().targets.is_empty(), "force delete detaches policies");
}

#[tokio::test]
async fn policy_versions_follow_aws_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _) = registry(&dir, 0).await;
    registry.create_policy("p", WALLED_GARDEN, &Default::default()).await.unwrap();
    for expected in 2..=5 {
        assert_eq!(registry.create_policy_version("p", WALLED_GARDEN, false).await.unwrap(), expected);
    }
    assert!(matches!(
        registry.create_policy_version("p", WALLED_GARDEN, true).await,
        Err(Error::VersionsLimitExceeded(_))
    ));
    assert!(matches!(registry.delete_policy_version("p", 1).await, Err(Error::InvalidRequest(_))), "default version");
    assert!(matches!(registry.delete_policy("p").await, Err(Error::DeleteConflict(_))), "versions remain");
    registry.set_default_policy_version("p", 5).await.unwrap();
    for version in 1..=4 {
        registry.delete_policy_version("p", version).await.unwrap();
    }
    assert_eq!(registry.create_policy_version("p", WALLED_GARDEN, false).await.unwrap(), 6, "ids are not reused");
    registry.delete_policy_version("p", 6).await.unwrap();
    registry.delete_policy("p").await.unwrap();
    let too_big = format!(r#"{{"Statement":{{"Effect":"Allow","Action":"iot:*","Resource":"{}"}}}}"#, "x".repeat(2048));
    assert!(matches!(
        registry.create_policy("big", &too_big, &Default::default()).await,
        Err(Error::InvalidRequest(_))
    ));
    assert!(matches!(registry.create_policy("bad", "{}", &Default::default()).await, Err(Error::MalformedPolicy(_))));
}

#[tokio::test]
async fn a_write_names_the_records_it_changed_and_forgets_only_the_permissions_that_read_them() {
    use ferrocore_model::security::ThingPrincipalType;
    use ferrocore_registry::Dependency;

    let dir = tempfile::tempdir().unwrap();
    let (registry, _) = registry(&dir, 0).await;
    let everything = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}"#;
    registry.create_policy("fleet", everything, &Default::default()).await.unwrap();
    registry.create_policy("floor", everything, &Default::default()).await.unwrap();
    registry.create_thing_group(CreateThingGroup { name: "site".into(), ..Default::default() }).await.unwrap();
    let floor = CreateThingGroup { name: "floor-1".into(), parent: Some("site".into()), ..Default::default() };
    registry.create_thing_group(floor).await.unwrap();
    let site_arn = registry.arn(ferrocore_model::ResourceKind::ThingGroup, "site");
    registry.attach_policy("floor", &site_arn).await.unwrap();
    let (a, b) = (
        registry.create_keys_and_certificate(true).await.unwrap(),
        registry.create_keys_and_certificate(true).await.unwrap(),
    );
    for (cert, thing) in [(&a, "a"), (&b, "b")] {
        registry.create_thing(CreateThing { name: thing.into(), ..Default::default() }).await.unwrap();
        registry.attach_thing_principal(thing, &cert.arn, ThingPrincipalType::NonExclusiveThing).await.unwrap();
        registry.attach_policy("fleet", &cert.arn).await.unwrap();
    }
    registry.add_thing_to_thing_group("floor-1", "a").await.unwrap();

    let of_a = registry.connection_permissions(&a.arn, "a").await.unwrap();
    let mut expected = vec![
        Dependency::Certificate(a.id.clone()),
        Dependency::Policy("fleet".into()),
        Dependency::Policy("floor".into()),
        Dependency::Thing("a".into()),
        Dependency::ThingGroup("floor-1".into()),
        Dependency::ThingGroup("site".into()),
    ];
    expected.sort();
    assert_eq!(&of_a.dependencies()[..], expected);
    let of_b = registry.connection_permissions(&b.arn, "b").await.unwrap();
    assert_eq!(registry.remembered_connection_permissions(), 2);

    let mut changes = registry.permission_changes();
    let generation = registry.permission_generation();
    // Another thing: announced as itself, and both connections' permissions are kept.
    registry.create_thing(CreateThing { name: "c".into(), ..Default::default() }).await.unwrap();
    let created = changes.try_recv().unwrap();
    assert_eq!(&created[..], [Dependency::Thing("c".into())]);
    assert!(Arc::ptr_eq(&registry.connection_permissions(&a.arn, "a").await.unwrap(), &of_a));
    assert!(Arc::ptr_eq(&registry.connection_permissions(&b.arn, "b").await.unwrap(), &of_b));
    // A write to a's group's parent: a's permissions are computed anew, b's are kept.
    let floor_policy =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"iot:Publish","Resource":"*"}]}"#;
    registry.create_policy_version("floor", floor_policy, true).await.unwrap();
    assert_eq!(
        &changes.try_recv().unwrap()[..],
        [Dependency::Policy("floor".into()), Dependency::ThingGroup("site".into())]
    );
    assert_eq!(registry.permission_generation(), generation + 2);
    let renewed = registry.connection_permissions(&a.arn, "a").await.unwrap();
    assert!(!Arc::ptr_eq(&renewed, &of_a));
    assert!(!renewed.allows("iot:Publish", "arn:aws:iot:us-east-1:000000000000:topic/x"));
    assert!(Arc::ptr_eq(&registry.connection_permissions(&b.arn, "b").await.unwrap(), &of_b));
    assert!(of_b.allows("iot:Publish", "arn:aws:iot:us-east-1:000000000000:topic/x"));
    // Rewrites of a's group that leave what policies read as it was announce nothing.
    registry.tag_resource(&site_arn, &[("k".into(), "v".into())].into_iter().collect()).await.unwrap();
    registry.update_thing_group("site", Some("the site".into()), None, None).await.unwrap();
    assert!(matches!(changes.try_recv(), Err(tokio::sync::broadcast::error::TryRecvError::Empty)));
    assert_eq!(registry.permission_generation(), generation + 2);
    assert!(Arc::ptr_eq(&registry.connection_permissions(&a.arn, "a").await.unwrap(), &renewed));
}

#[tokio::test]
async fn group_hierarchies_serve_recursive_listings_and_connection_policies_from_indexes() {
    use ferrocore_model::security::ThingPrincipalType;
    use ferrocore_policy::Decision;

    let dir = tempfile::tempdir().unwrap();
    let (registry, _) = registry(&dir, 0).await;
    for (name, parent) in [("world", None), ("east", Some("world")), ("shop", Some("east")), ("west", Some("world"))] {
        let request = CreateThingGroup { name: name.into(), parent: parent.map(str::to_string), ..Default::default() };
        registry.create_thing_group(request).await.unwrap();
    }
    for (thing, group) in [("a", "shop"), ("b", "east"), ("c", "west"), ("d", "shop")] {
        registry.create_thing(CreateThing { name: thing.into(), ..Default::default() }).await.unwrap();
        registry.add_thing_to_thing_group(group, thing).await.unwrap();
    }
    let recursive =
        async |group: &str| registry.list_things_in_thing_group(group, true, &Default::default()).await.unwrap().items;
    assert_eq!(recursive("world").await, ["a", "b", "c", "d"]);
    assert_eq!(recursive("east").await, ["a", "b", "d"]);
    assert_eq!(registry.list_things_in_thing_group("east", false, &Default::default()).await.unwrap().items, ["b"]);
    // Pages of one across the tree's entries.
    let mut paged = Vec::new();
    let mut page = ferrocore_registry::PageRequest { max_results: Some(1), ..Default::default() };
    loop {
        let found = registry.list_things_in_thing_group("world", true, &page).await.unwrap();
        paged.extend(found.items);
        match found.next_token {
            Some(token) => page.next_token = Some(token),
            None => break,
        }
    }
    assert_eq!(paged, ["a", "b", "c", "d"]);

    registry.remove_thing_from_thing_group("shop", "d").await.unwrap();
    registry.delete_thing("c", None).await.unwrap();
    assert_eq!(recursive("world").await, ["a", "b"], "leaving a group and deletion remove the tree entries");
    let err = registry.delete_thing_group("east", None).await.unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "a group with children stays: {err:?}");

    // A policy on the root reaches a device whose thing sits three levels down.
    let cert = registry.create_keys_and_certificate(true).await.unwrap();
    registry.attach_thing_principal("a", &cert.arn, ThingPrincipalType::NonExclusiveThing).await.unwrap();
    registry.create_policy("fleet", WALLED_GARDEN, &Default::default()).await.unwrap();
    let connect = ferrocore_registry::TestAuthorization {
        principal: Some(cert.arn.clone()),
        client_id: Some("a".into()),
        checks: vec![check("CONNECT", "client/a")],
        ..Default::default()
    };
    let decision = async || registry.test_authorization(&connect).await.unwrap()[0].decision;
    assert_eq!(decision().await, Decision::ImplicitDeny, "no policy attached yet");
    registry.attach_policy("fleet", "arn:aws:iot:us-east-1:000000000000:thinggroup/world").await.unwrap();
    assert_eq!(decision().await, Decision::Allowed);
    registry.remove_thing_from_thing_group("shop", "a").await.unwrap();
    assert_eq!(decision().await, Decision::ImplicitDeny, "out of the tree, out of its policies");

    registry.delete_thing_group("shop", None).await.unwrap();
    let children = ListThingGroups { parent: Some("world".into()), recursive: true, ..Default::default() };
    let below: Vec<String> =
        registry.list_thing_groups(&children).await.unwrap().items.into_iter().map(|g| g.name).collect();
    assert_eq!(below, ["east", "west"]);
}

#[tokio::test]
async fn many_things_join_one_type_and_one_group_at_once_without_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _) = registry(&dir, 0).await;
    let registry = Arc::new(registry);
    registry.create_thing_type(CreateThingType { name: "Meter".into(), ..Default::default() }).await.unwrap();
    registry.create_thing_group(CreateThingGroup { name: "fleet".into(), ..Default::default() }).await.unwrap();
    // Each operation holds the shared type or group; none writes it, so none conflicts with another.
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..64 {
        let registry = registry.clone();
        joins.spawn(async move {
            let name = format!("meter-{i:02}");
            let thing = CreateThing { name: name.clone(), thing_type: Some("Meter".into()), ..Default::default() };
            registry.create_thing(thing).await?;
            registry.add_thing_to_thing_group("fleet", &name).await
        });
    }
    while let Some(outcome) = joins.join_next().await {
        outcome.unwrap().unwrap();
    }
    let request = ferrocore_registry::PageRequest { max_results: Some(250), ..Default::default() };
    assert_eq!(registry.list_things_in_thing_group("fleet", false, &request).await.unwrap().items.len(), 64);
    // Deleting the group takes its members out of it.
    registry.delete_thing_group("fleet", None).await.unwrap();
    let listing = ListThings { page: request.clone(), ..Default::default() };
    let things = registry.list_things(&listing).await.unwrap().items;
    assert_eq!(things.len(), 64);
    assert!(things.iter().all(|t| t.groups.is_empty()));
}

#[tokio::test]
async fn racing_attachments_never_exceed_a_targets_policy_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _) = registry(&dir, 0).await;
    let registry = Arc::new(registry);
    registry.create_thing_group(CreateThingGroup { name: "fleet".into(), ..Default::default() }).await.unwrap();
    let target = "arn:aws:iot:us-east-1:000000000000:thinggroup/fleet";
    let mut attaches = tokio::task::JoinSet::new();
    for i in 0..8 {
        registry.create_policy(&format!("p{i}"), WALLED_GARDEN, &Default::default()).await.unwrap();
        let registry = registry.clone();
        attaches.spawn(async move { registry.attach_policy(&format!("p{i}"), target).await });
    }
    let mut attached = 0;
    while let Some(outcome) = attaches.join_next().await {
        match outcome.unwrap() {
            Ok(()) => attached += 1,
            Err(err) => assert!(matches!(err, Error::LimitExceeded(_)), "{err:?}"),
        }
    }
    // A thing group takes two policies (AWS's limit): exactly two of the eight land.
    assert_eq!(attached, 2);
    let listed = registry.list_attached_policies(target, false, &Default::default()).await.unwrap().items;
    assert_eq!(listed.len(), 2);
}

#[tokio::test]
async fn a_resync_reads_writes_another_node_made_and_asks_for_rechecks() {
    let dir = tempfile::tempdir().unwrap();
    let (here, _) = registry(&dir, 0).await;
    let store = SqliteStore::open(&dir.path().join("db")).await.unwrap();
    let elsewhere = registry_on(Arc::new(store), 0, Arc::new(ferrocore_registry::SystemClock));
    here.refresh_trust().await.unwrap();
    let created = elsewhere.create_keys_and_certificate(true).await.unwrap();
    let trusted = |registry: &Registry| registry.trust().read().unwrap().device(&created.id).is_some_and(|d| d.active);
    assert!(!trusted(&here), "a write by another node is not seen without its announcement");
    let resyncs = here.resyncs();
    let generation = here.permission_generation();
    here.resync().await.unwrap();
    assert!(trusted(&here), "read again");
    assert!(resyncs.has_changed().unwrap(), "live connections are told to re-check");
    assert!(here.permission_generation() > generation);
    elsewhere.update_certificate(&created.id, ferrocore_model::security::CertificateStatus::Inactive).await.unwrap();
    here.resync().await.unwrap();
    assert!(!trusted(&here), "a deactivation made elsewhere is read too");
}
