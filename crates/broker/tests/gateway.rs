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
    }

    /// The next packet, or `None` when the server closed the connection.
    async fn next(&mut self) -> Option<Packet> {
        loop {
            if let Some(packet) = decode(&mut self.buffer, Some(Version::V5), 1 << 20).unwrap() {
                return Some(packet);
            }
            let read = tokio::time::timeout(Duration::from_secs(5), self.stream.read_buf(&mut self.buffer)).await.ok()?;
            if read.ok()? == 0 {
                return None;
            }
        }
    }
}

async fn connect_device(port: u16, ca_pem: &str, cert_pem: &str, key_pem: &str, client_id: &str) -> (Device, ConnAck) {
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
            properties: Properties::default(),
        })))
        .await;
    let Some(Packet::ConnAck(ack)) = device.next().await else { panic!("no CONNACK") };
    (device, ack)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_connects_publishes_receives_and_is_dropped_when_revoked() {
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
        shadows: Default::default(),
    };
    let registry = Arc::new(Registry::new(store.clone(), config, Arc::new(SystemClock), Arc::new(root)));

    registry.create_thing(CreateThing { name: "dev".into(), ..Default::default() }).await.unwrap();
    let cert = registry.create_keys_and_certificate(true).await.unwrap();
    let own_topics = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:us-east-1:000000000000:client/${iot:Connection.Thing.ThingName}"},
        {"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":"arn:aws:iot:us-east-1:000000000000:topic/things/${iot:Connection.Thing.ThingName}/*"},
        {"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:us-east-1:000000000000:topicfilter/things/${iot:Connection.Thing.ThingName}/*"}]}"#;
    registry.create_policy("own-topics", own_topics, &Default::default()).await.unwrap();
    registry.attach_policy("own-topics", &cert.arn).await.unwrap();
    registry.attach_thing_principal("dev", &cert.arn, ThingPrincipalType::NonExclusiveThing).await.unwrap();

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
        limits: Limits { subscriptions_per_connection: 50, filters_per_subscribe: 8, topic_bytes: 256, topic_slashes: 7, rate: RateQuota::default() },
        account: Account::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let bound = ferrocore_broker::Gateway::bind(gateway, registry.clone(), store).await.unwrap();
    let running = tokio::spawn(bound.serve(async {
        let _ = stopped.await;
    }));
    for _ in 0..50 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (key_public, key_private) = cert.key_pair.clone().unwrap();
    drop(key_public);

    let (_, refused) = connect_device(port, &ca_pem, &cert.pem, &key_private, "someone-else").await;
    assert_eq!(refused.reason, ReasonCode::NotAuthorized);

    let (mut device, accepted) = connect_device(port, &ca_pem, &cert.pem, &key_private, "dev").await;
    assert_eq!(accepted.reason, ReasonCode::Success);
    let options = SubscriptionOptions { qos: QoS::AtLeastOnce, no_local: false, retain_as_published: false, retain_handling: 0 };
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
                device.send(Packet::PubAck(Ack { packet_id: message.packet_id.unwrap(), reason: ReasonCode::Success, properties: Properties::default() })).await;
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

    let _ = stop.send(());
    running.await.unwrap().unwrap();
}
