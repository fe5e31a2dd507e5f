//! The gateway end to end with a Rust MQTT client (ferrocore's own codec over
//! rustls): mutual TLS, authorization, delivery, and live revocation.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferrocore_broker::{GatewayConfig, Limits, RateQuota};
use ferrocore_model::Account;
use ferrocore_model::security::{CertificateStatus, ThingPrincipalType};
use ferrocore_mqtt::*;
use ferrocore_pki::Issuer;
use ferrocore_registry::{CreateThing, Registry, RegistryConfig, SystemClock};
use ferrocore_store::{RecordStore, SqliteStore};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

struct Device {
    stream: TlsStream<TcpStream>,
    buffer: BytesMut,
}

impl Device {
    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        encode(&packet, Version::V5, &mut out);
        self.stream.write_all(&out).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// Sends where the server may already have closed the connection.
    async fn send_unchecked(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        encode(&packet, Version::V5, &mut out);
        let _ = self.stream.write_all(&out).await;
        let _ = self.stream.flush().await;
    }

    /// The next packet, or `None` when the server closed the connection.
    async fn next(&mut self) -> Option<Packet> {
        loop {
            if let Some(packet) = decode(&mut self.buffer, Some(Version::V5), 1 << 20).unwrap() {
                return Some(packet);
            }
            let read =
                tokio::time::timeout(Duration::from_secs(60), self.stream.read_buf(&mut self.buffer)).await.ok()?;
            if read.ok()? == 0 {
                return None;
            }
        }
    }
}

async fn connect_device(port: u16, ca_pem: &str, cert_pem: &str, key_pem: &str, client_id: &str) -> (Device, ConnAck) {
    connect_device_with(port, ca_pem, cert_pem, key_pem, client_id, Properties::default()).await
}

async fn connect_device_with(
    port: u16,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    client_id: &str,
    properties: Properties,
) -> (Device, ConnAck) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut device = Device { stream, buffer: BytesMut::new() };
    device
        .send(Packet::Connect(Box::new(Connect {
            version: Version::V5,
            client_id: client_id.into(),
            clean_start: true,
            keep_alive: 60,
            username: None,
            password: None,
            will: None,
            properties,
        })))
        .await;
    let Some(Packet::ConnAck(ack)) = device.next().await else { panic!("no CONNACK") };
    (device, ack)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Harness {
    registry: Arc<Registry>,
    gateway: Arc<ferrocore_broker::GatewayHandle>,
    ca_pem: String,
    port: u16,
    stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<Result<(), ferrocore_broker::GatewayError>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn RecordStore> = Arc::new(SqliteStore::open(&dir.path().join("db")).await.unwrap());
        let root = Issuer::new_root("test root", "ferrocore", now()).unwrap();
        let server = root.issue_server(&["localhost".into(), "127.0.0.1".into()], now()).unwrap();
        let ca_pem = root.certificate_pem().to_string();
        let config = RegistryConfig {
            account: Account::default(),
            thing_type_delete_wait_ms: 0,
            endpoint_host: "localhost".into(),
            policy_document_limit: 2048,
        };
        let registry = Arc::new(Registry::new(store.clone(), config, Arc::new(SystemClock), Arc::new(root)));
        let port = free_port();
        let gateway = GatewayConfig {
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            https_addr: None,
            sni_certificates: Vec::new(),
            credentials: ferrocore_registry::Credentials::local_default(),
            certificate_pem: server.certificate_pem,
            key_pem: server.private_key_pem,
            max_packet_size: 128 * 1024,
            session_expiry_secs: 3600,
            session_queue_limit: 10_000,
            max_connections: 1000,
            limits: Limits {
                subscriptions_per_connection: 50,
                filters_per_subscribe: 8,
                topic_bytes: 256,
                topic_slashes: 7,
                rate: RateQuota::default(),
            },
            account: Account::default(),
            node_id: None,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shadows = ferrocore_shadow_service::ShadowService::start(
            store.clone(),
            Default::default(),
            ferrocore_shadow_service::system_seconds,
        );
        let bound = ferrocore_broker::Gateway::bind(gateway, registry.clone(), store, shadows).await.unwrap();
        let handle = bound.publisher();
        let running = tokio::spawn(bound.serve(async {
            let _ = stopped.await;
        }));
        for _ in 0..50 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { registry, gateway: handle, ca_pem, port, stop, running, _dir: dir }
    }

    /// A certificate allowed everything, and its private key.
    async fn unrestricted_certificate(&self, policy: &str) -> (ferrocore_registry::CertificateCreated, String) {
        let cert = self.registry.create_keys_and_certificate(true).await.unwrap();
        let everything = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}"#;
        self.registry.create_policy(policy, everything, &Default::default()).await.unwrap();
        self.registry.attach_policy(policy, &cert.arn).await.unwrap();
        let key = cert.key_pair.clone().unwrap().1;
        (cert, key)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.running.await.unwrap().unwrap();
    }
}

fn publish(topic: &str, qos: QoS, id: u16, payload: &'static [u8]) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id: (qos != QoS::AtMostOnce).then_some(id),
        payload: Bytes::from_static(payload),
        properties: Properties::default(),
    })
}

async fn subscribe(device: &mut Device, filter: &str) {
    let options =
        SubscriptionOptions { qos: QoS::AtLeastOnce, no_local: false, retain_as_published: false, retain_handling: 0 };
    device
        .send(Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![(filter.into(), options)],
            properties: Properties::default(),
        }))
        .await;
    let Some(Packet::SubAck(suback)) = device.next().await else { panic!("no SUBACK") };
    assert_eq!(suback.reasons, [ReasonCode::GrantedQoS1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_stops_reading_is_closed_when_revoked_and_its_next_publish_goes_nowhere() {
    let harness = Harness::start().await;
    let (stuck_cert, stuck_key) = harness.unrestricted_certificate("stuck").await;
    let (other_cert, other_key) = harness.unrestricted_certificate("other").await;
    // Receive Maximum 1: one unacknowledged delivery fills its window, so its queues fill fast.
    let one_in_flight = Properties { receive_maximum: Some(1), ..Properties::default() };
    let (mut stuck, _) =
        connect_device_with(harness.port, &harness.ca_pem, &stuck_cert.pem, &stuck_key, "stuck", one_in_flight).await;
    subscribe(&mut stuck, "flood/#").await;
    let (mut watcher, _) = connect_device(harness.port, &harness.ca_pem, &other_cert.pem, &other_key, "watcher").await;
    subscribe(&mut watcher, "after/#").await;
    // Positive control: the stuck device's publishes reach the watcher while it may publish.
    stuck.send(publish("after/x", QoS::AtMostOnce, 0, b"before")).await;
    let Some(Packet::Publish(before)) = watcher.next().await else { panic!("the control message did not arrive") };
    assert_eq!(&before.payload[..], b"before");
    // Flood the stuck device (which never reads or acknowledges) until its queues are full.
    let (mut flooder, _) = connect_device(harness.port, &harness.ca_pem, &other_cert.pem, &other_key, "flooder").await;
    // One in flight, 1,024 waiting for the window, 1,024 in the delivery queue, then full.
    const FLOOD: u16 = 2100;
    for n in 1..=FLOOD {
        flooder.send(publish("flood/x", QoS::AtLeastOnce, n, b"x")).await;
    }
    for n in 1..=FLOOD {
        let next = flooder.next().await;
        assert!(matches!(next, Some(Packet::PubAck(_))), "the flood was taken: {n} {next:?}");
    }

    harness.registry.update_certificate(&stuck_cert.id, CertificateStatus::Inactive).await.unwrap();
    let revoked = std::time::Instant::now();
    // The stuck device reads what was buffered for it, then finds the connection closed.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut last = None;
        while let Some(packet) = stuck.next().await {
            last = Some(packet);
        }
        last
    })
    .await
    .expect("the revoked connection was not closed");
    assert!(revoked.elapsed() < Duration::from_secs(3), "closed at once, not at a later registry change");
    if let Some(Packet::Disconnect(disconnect)) = closed {
        assert_eq!(disconnect.reason, ReasonCode::NotAuthorized);
    }
    // Nothing the revoked device sends afterwards is delivered.
    stuck.send_unchecked(publish("after/x", QoS::AtMostOnce, 0, b"after")).await;
    flooder.send(publish("after/x", QoS::AtLeastOnce, 1, b"control")).await;
    let Some(Packet::Publish(next)) = watcher.next().await else { panic!("no delivery") };
    assert_eq!(&next.payload[..], b"control", "the revoked device's publish was not delivered");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_connects_publishes_receives_and_is_dropped_when_revoked() {
    let harness = Harness::start().await;
    let registry = harness.registry.clone();
    let (ca_pem, port) = (harness.ca_pem.clone(), harness.port);
    registry.create_thing(CreateThing { name: "dev".into(), ..Default::default() }).await.unwrap();
    let cert = registry.create_keys_and_certificate(true).await.unwrap();
    let own_topics = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:us-east-1:000000000000:client/${iot:Connection.Thing.ThingName}"},
        {"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":"arn:aws:iot:us-east-1:000000000000:topic/things/${iot:Connection.Thing.ThingName}/*"},
        {"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:us-east-1:000000000000:topicfilter/things/${iot:Connection.Thing.ThingName}/*"}]}"#;
    registry.create_policy("own-topics", own_topics, &Default::default()).await.unwrap();
    registry.attach_policy("own-topics", &cert.arn).await.unwrap();
    registry.attach_thing_principal("dev", &cert.arn, ThingPrincipalType::NonExclusiveThing).await.unwrap();

    let (key_public, key_private) = cert.key_pair.clone().unwrap();
    drop(key_public);

    let (_, refused) = connect_device(port, &ca_pem, &cert.pem, &key_private, "someone-else").await;
    assert_eq!(refused.reason, ReasonCode::NotAuthorized);

    let (mut device, accepted) = connect_device(port, &ca_pem, &cert.pem, &key_private, "dev").await;
    assert_eq!(accepted.reason, ReasonCode::Success);
    let options =
        SubscriptionOptions { qos: QoS::AtLeastOnce, no_local: false, retain_as_published: false, retain_handling: 0 };
    device
        .send(Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![("things/dev/#".into(), options), ("things/other/#".into(), options)],
            properties: Properties::default(),
        }))
        .await;
    let Some(Packet::SubAck(suback)) = device.next().await else { panic!("no SUBACK") };
    assert_eq!(suback.reasons, [ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized]);

    let publish = |topic: &str, id: u16| {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: topic.into(),
            packet_id: Some(id),
            payload: Bytes::from_static(b"21.5"),
            properties: Properties::default(),
        })
    };
    device.send(publish("things/dev/temperature", 2)).await;
    let (mut acked, mut delivered) = (false, false);
    while !(acked && delivered) {
        match device.next().await.expect("connection open") {
            Packet::PubAck(ack) => {
                assert_eq!((ack.packet_id, ack.reason), (2, ReasonCode::Success));
                acked = true;
            }
            Packet::Publish(message) => {
                assert_eq!((message.topic.as_str(), &message.payload[..]), ("things/dev/temperature", &b"21.5"[..]));
                device
                    .send(Packet::PubAck(Ack {
                        packet_id: message.packet_id.unwrap(),
                        reason: ReasonCode::Success,
                        properties: Properties::default(),
                    }))
                    .await;
                delivered = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    device.send(publish("things/other/temperature", 3)).await;
    let Some(Packet::PubAck(denied)) = device.next().await else { panic!("no PUBACK") };
    assert_eq!((denied.packet_id, denied.reason), (3, ReasonCode::NotAuthorized));

    registry.update_certificate(&cert.id, CertificateStatus::Inactive).await.unwrap();
    let Some(Packet::Disconnect(disconnect)) = device.next().await else { panic!("no DISCONNECT after revocation") };
    assert_eq!(disconnect.reason, ReasonCode::NotAuthorized);
    assert!(device.next().await.is_none(), "and the connection is closed");

    let remembered = registry.remembered_connection_permissions();
    drop(device);
    harness.stop().await;
    assert_eq!(remembered, 0, "the closed connection's permissions are not kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_write_rechecks_only_the_connections_whose_permissions_it_can_change() {
    let harness = Harness::start().await;
    let registry = harness.registry.clone();
    let (cert_a, key_a) = harness.unrestricted_certificate("policy-a").await;
    let (cert_b, key_b) = harness.unrestricted_certificate("policy-b").await;
    registry.create_thing(CreateThing { name: "a".into(), ..Default::default() }).await.unwrap();
    registry.attach_thing_principal("a", &cert_a.arn, ThingPrincipalType::NonExclusiveThing).await.unwrap();
    let (mut a, _) = connect_device(harness.port, &harness.ca_pem, &cert_a.pem, &key_a, "a").await;
    let (mut b, _) = connect_device(harness.port, &harness.ca_pem, &cert_b.pem, &key_b, "b").await;
    subscribe(&mut b, "news/#").await;
    a.send(publish("news/1", QoS::AtLeastOnce, 1, b"allowed")).await;
    let Some(Packet::PubAck(ack)) = a.next().await else { panic!("no PUBACK") };
    assert_eq!(ack.reason, ReasonCode::Success);
    let Some(Packet::Publish(_)) = b.next().await else { panic!("no delivery") };
    let before = harness.gateway.permission_rechecks();

    // Writes that cannot change a or b's permissions.
    registry.create_thing(CreateThing { name: "unrelated".into(), ..Default::default() }).await.unwrap();
    registry.create_keys_and_certificate(true).await.unwrap();
    let deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"iot:Publish","Resource":"*"}]}"#;
    registry.create_policy("deny-publish", deny, &Default::default()).await.unwrap();
    // One that changes a's: re-checks a alone (changes are handled in order, so the
    // writes above were handled by the time this one is).
    registry.attach_policy("deny-publish", &cert_a.arn).await.unwrap();
    let waited = std::time::Instant::now();
    while harness.gateway.permission_rechecks() == before && waited.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(harness.gateway.permission_rechecks() - before, 1, "only a was re-checked");
    // a's new permissions hold on its live connection, b's are untouched.
    a.send(publish("news/2", QoS::AtLeastOnce, 2, b"denied")).await;
    let Some(Packet::PubAck(ack)) = a.next().await else { panic!("no PUBACK") };
    assert_eq!(ack.reason, ReasonCode::NotAuthorized);
    b.send(publish("news/3", QoS::AtLeastOnce, 3, b"from b")).await;
    let (mut acked, mut delivered) = (false, false);
    while !(acked && delivered) {
        match b.next().await.expect("b stays connected") {
            Packet::PubAck(ack) => acked = ack.reason == ReasonCode::Success,
            Packet::Publish(message) => delivered = &message.payload[..] == b"from b",
            other => panic!("unexpected {other:?}"),
        }
    }

    // Revoking b's certificate re-checks and closes b alone.
    registry.update_certificate(&cert_b.id, CertificateStatus::Inactive).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async { while b.next().await.is_some() {} }).await;
    assert!(closed.is_ok(), "the revoked connection was closed");
    assert_eq!(harness.gateway.permission_rechecks() - before, 2, "only b was re-checked");
    a.send(Packet::PingReq).await;
    assert!(matches!(a.next().await, Some(Packet::PingResp)), "a stays connected");
    harness.stop().await;
}
