//! The device gateway: MQTT 3.1.1 and 5 over TLS with X.509 client certificates
//! (port 8883), and the HTTPS listener (8443/443): HTTPS publish, MQTT over
//! WebSocket with SigV4, and MQTT over TLS chosen by ALPN `x-amzn-mqtt-ca`.
//!
//! The TLS verifier accepts only registered, ACTIVE certificates (and, for
//! certificates registered with a CA, only when that ACTIVE CA signed them),
//! reading the registry's in-memory certificate snapshot.
//! Each connection computes its permissions once at CONNECT (its policies and
//! policy-variable context) and checks iot:Connect, iot:Publish, iot:Subscribe and,
//! for every delivery, the subscriber's iot:Receive.

mod authorize;
mod connection;
mod events;
mod https;
pub mod listen;
mod message;
mod negotiate;
mod outbox;
mod queue;
mod quota;
mod rechecks;
mod retained;
mod router;
mod sessions;
mod shadows;
mod verifier;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferrocore_model::{Account, ResourceKind};
use ferrocore_mqtt::QoS;
use ferrocore_registry::{
    ApiPublish, Credentials, DataPlane, MessageSink, Notification, Permissions, PublishRefused, Publisher, Registry,
    RetainedMessage, RoutedMessage,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::message::Message;
pub use crate::quota::RateQuota;
use crate::router::Router;
use crate::verifier::{RegistryVerifier, TrustSnapshot};

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub addr: SocketAddr,
    /// HTTPS publish, MQTT over WebSocket and ALPN `x-amzn-mqtt-ca`; off when `None`.
    pub https_addr: Option<SocketAddr>,
    /// The access keys WebSocket and HTTPS callers sign with, and their policies.
    pub credentials: Credentials,
    /// The TLS certificate chain (PEM) and private key (PEM) devices see.
    pub certificate_pem: String,
    pub key_pem: String,
    /// Certificates chosen by SNI (custom domains); the one above serves other names.
    pub sni_certificates: Vec<SniCertificate>,
    /// Largest MQTT packet accepted (AWS: 128 KB payloads).
    pub max_packet_size: usize,
    pub limits: Limits,
    /// Expiry of persistent sessions that do not set one (MQTT 3.1.1), in seconds.
    pub session_expiry_secs: u64,
    /// QoS 1 messages a disconnected persistent session keeps at most (the oldest go first).
    pub session_queue_limit: usize,
    /// Device connections open at once, over 8883 and the HTTPS listener together.
    pub max_connections: usize,
    pub account: Account,
}

/// A server certificate for the host names a client may ask for by SNI.
#[derive(Debug, Clone)]
pub struct SniCertificate {
    /// Exact names or `*.domain` wildcards (one level), case-insensitive.
    pub names: Vec<String>,
    pub certificate_pem: String,
    pub key_pem: String,
}

/// AWS IoT's per-connection protocol limits; an operator may raise them.
#[derive(Debug, Clone)]
pub struct Limits {
    pub subscriptions_per_connection: usize,
    pub filters_per_subscribe: usize,
    /// Topic names and filters, in bytes (the `$aws/rules/<rule>/` prefix not counted).
    pub topic_bytes: usize,
    /// Forward slashes in a topic (the `$aws/rules/<rule>/` prefix not counted).
    pub topic_slashes: usize,
    /// AWS's per-connection rate quotas (100 publishes/s, 512 KiB/s); off when `None`.
    pub rate: RateQuota,
}

impl Limits {
    /// Whether a topic name or filter is within the length and depth limits.
    pub fn topic_fits(&self, topic: &str) -> bool {
        let counted = match topic.strip_prefix("$aws/rules/") {
            Some(rest) => rest.split_once('/').map_or("", |(_, tail)| tail),
            None => topic,
        };
        counted.len() <= self.topic_bytes && counted.matches('/').count() <= self.topic_slashes
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("loading the certificate registry: {0}")]
    Registry(#[from] ferrocore_model::Error),
    #[error("loading retained messages and sessions: {0}")]
    Store(#[from] ferrocore_store::StoreError),
}

/// Why a connection's permissions cannot be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PermissionsError {
    #[error("the registry cannot be read: {0}")]
    Registry(#[from] ferrocore_model::Error),
    #[error("access key {0} is no longer accepted")]
    UnknownAccessKey(String),
}

/// Counters on the message path, registered once (a lookup per message would cost more than the count).
pub(crate) struct PathMetrics {
    pub messages_in: metrics::Counter,
    pub messages_out: metrics::Counter,
}

impl PathMetrics {
    fn register() -> Self {
        Self {
            messages_in: metrics::counter!("ferrocore_mqtt_messages_in_total"),
            messages_out: metrics::counter!("ferrocore_mqtt_messages_out_total"),
        }
    }
}

/// State every connection shares.
pub(crate) struct Shared {
    metrics: PathMetrics,
    registry: Arc<Registry>,
    router: Router,
    account: Account,
    max_packet_size: usize,
    max_client_id_len: usize,
    limits: Limits,
    retained: retained::RetainedStore,
    sessions: sessions::SessionStore,
    /// Expiry of MQTT 3.1.1 persistent sessions (AWS: 1 hour), in seconds.
    session_expiry_secs: u64,
    /// The rules engine, offered every routed message once attached.
    sink: std::sync::OnceLock<Arc<dyn MessageSink>>,
    credentials: Credentials,
    /// The registered certificates, as the TLS verifiers see them.
    trust: Arc<TrustSnapshot>,
    /// Live certificate connections by what their permissions depend on.
    rechecks: rechecks::Rechecks,
}

/// Who a connection or an HTTPS publish acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A device certificate (mutual TLS), by id.
    Certificate(String),
    /// A SigV4 access key (MQTT over WebSocket, HTTPS publish).
    AccessKey(String),
}

impl Identity {
    /// The lifecycle events' `principalIdentifier` and the rules' `principal()`.
    pub fn principal_id(&self) -> &str {
        match self {
            Self::Certificate(id) | Self::AccessKey(id) => id,
        }
    }
}

/// Who published a message, for the rules engine.
#[derive(Clone, Copy, Default)]
pub(crate) struct Origin<'a> {
    pub client_id: Option<&'a str>,
    pub principal: Option<&'a str>,
    /// Rule actions that led to the message (0 for devices).
    pub hops: u8,
}

impl<'a> Origin<'a> {
    fn routed(self, topic: &'a str, message: &'a Message, qos: QoS) -> RoutedMessage<'a> {
        RoutedMessage {
            topic,
            payload: &message.payload,
            qos: qos as u8,
            client_id: self.client_id,
            principal: self.principal,
            properties: message.properties.as_deref(),
            hops: self.hops,
        }
    }
}

/// How long a publish waits for room in a subscriber's full queue before the
/// message is dropped for that subscriber.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(20);

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Shared {
    /// Routes a message the server itself publishes (shadow responses, rule republishes);
    /// a shadow request among them (a rule republishing to `.../shadow/update`) is answered.
    async fn publish_from_service(&self, notification: Notification) {
        let message = Message::new(notification.topic, bytes::Bytes::from(notification.payload));
        let qos = if notification.qos == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
        let origin = Origin { hops: notification.hops, ..Origin::default() };
        self.store_changed(self.route(&message, qos, false, origin)).await;
        self.answer_shadow_request(&message.topic, &message.payload, notification.hops).await;
    }

    /// What a connection (or an HTTPS caller) may do, from its identity.
    async fn permissions_of(&self, identity: &Identity, client_id: &str) -> Result<Arc<Permissions>, PermissionsError> {
        match identity {
            Identity::Certificate(id) => {
                Ok(self.registry.connection_permissions(&self.arn(ResourceKind::Certificate, id), client_id).await?)
            }
            Identity::AccessKey(key) => self
                .credentials
                .permissions(key, Some(client_id))
                .map(Arc::new)
                .ok_or_else(|| PermissionsError::UnknownAccessKey(key.clone())),
        }
    }

    /// Lets the registry forget the permissions it remembered for a connection that ended.
    fn forget_permissions(&self, identity: &Identity, client_id: &str) {
        if let Identity::Certificate(id) = identity {
            self.registry.forget_connection_permissions(&self.arn(ResourceKind::Certificate, id), client_id);
        }
    }

    /// Takes a publish whose sender was authorized: retains it when asked (durably,
    /// before anything is acknowledged), hands Basic Ingest to its rule, or routes it
    /// to subscribers and rules and answers shadow requests.
    async fn accept_publish(
        &self,
        message: &Message,
        qos: QoS,
        retain: bool,
        resource: &str,
        origin: Origin<'_>,
    ) -> Result<(), ferrocore_store::StoreError> {
        if retain {
            self.retained.set(message, qos, now_ms()).await?;
        }
        if let Some((rule, rest)) = ferrocore_mqtt::topic::basic_ingest(&message.topic) {
            self.ingest(rule, rest, message, qos, origin);
            return Ok(());
        }
        self.settle(self.route_to(message, resource, qos, retain, origin)).await?;
        self.answer_shadow_request(&message.topic, &message.payload, origin.hops).await;
        Ok(())
    }

    /// Checks a publish that arrives through an API (topic, reserved topics), then accepts it.
    async fn publish_api(&self, request: ApiPublish) -> Result<(), PublishRefused> {
        let topic = request.topic;
        self.check_topic(&topic, request.retain).map_err(|refusal| refusal.into_api(&topic))?;
        let now = now_ms();
        let message = Message {
            payload: request.payload,
            properties: request.properties.map(Arc::new),
            expires_at_ms: message::expiry_deadline(request.message_expiry_secs, now),
            topic,
        };
        let qos = if request.qos == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
        let origin = Origin { principal: Some(&request.principal), ..Origin::default() };
        self.metrics.messages_in.increment(1);
        let resource = self.arn(ResourceKind::Topic, &message.topic);
        self.accept_publish(&message, qos, request.retain, &resource, origin)
            .await
            .map_err(|err| PublishRefused::NotStored(err.to_string()))
    }

    /// Hands a routed shadow request (`$aws/things/<t>/shadow/.../get|update|delete`) to the shadow service.
    async fn answer_shadow_request(&self, topic: &str, payload: &[u8], hops: u8) {
        if let Some(request) = ferrocore_shadow::topic::parse_request(topic) {
            // Boxed: the shadow service publishes its answers through this same path.
            Box::pin(shadows::serve(self, request, payload, hops)).await;
        }
    }

    /// Delivers a message to its subscribers and offers it to the rules engine.
    fn route(&self, message: &Message, qos: QoS, retain: bool, origin: Origin<'_>) -> router::Published {
        self.route_to(message, &self.arn(ResourceKind::Topic, &message.topic), qos, retain, origin)
    }

    /// [`Self::route`] when the topic's ARN (the iot:Receive resource) is already known.
    /// `retain` is the publisher's RETAIN flag, kept for Retain As Published subscriptions.
    fn route_to(
        &self,
        message: &Message,
        resource: &str,
        qos: QoS,
        retain: bool,
        origin: Origin<'_>,
    ) -> router::Published {
        if let Some(sink) = self.sink.get() {
            sink.offer(&origin.routed(&message.topic, message, qos));
        }
        self.router.publish(message, qos, retain, origin.client_id, resource)
    }

    /// Basic Ingest (`$aws/rules/<rule>/<rest>`): straight to the rule, never to subscribers.
    fn ingest(&self, rule: &str, rest: &str, message: &Message, qos: QoS, origin: Origin<'_>) {
        if !self.sink.get().is_some_and(|sink| sink.ingest(rule, &origin.routed(rest, message, qos))) {
            metrics::counter!("ferrocore_rules_ingest_total", "outcome" => "rule_not_found").increment(1);
            tracing::debug!(rule, "basic ingest to a rule that is missing or disabled");
        }
    }

    /// Finishes a publish: waits (briefly) for room in full subscriber queues, then
    /// stores the persistent sessions it queued messages for.
    async fn settle(&self, published: router::Published) -> Result<(), ferrocore_store::StoreError> {
        let mut writes = published.writes;
        for pending in published.full {
            match pending.sender.send_timeout(pending.delivery, QUEUE_FULL_WAIT).await {
                Ok(()) => {}
                // The session was parked meanwhile: it keeps a QoS 1 message.
                Err(queue::SendTimeoutError::Closed(delivery)) if delivery.qos == QoS::AtLeastOnce => {
                    writes.extend(self.router.requeue_closed(&pending.client_id, delivery.message));
                }
                Err(_) => {
                    metrics::counter!("ferrocore_mqtt_messages_dropped_total", "reason" => "queue_full").increment(1)
                }
            }
        }
        self.sessions.apply(writes).await
    }

    /// Commits a client's session writes; a failure is logged (nothing waits on them).
    async fn store_session_writes(&self, client_id: &str, writes: Vec<sessions::SessionWrite>) {
        if let Err(err) = self.sessions.apply(writes).await {
            tracing::error!(client_id, error = %err, "cannot store a persistent session");
        }
    }

    /// [`Self::settle`] for a publish the server makes (events, wills, services).
    async fn store_changed(&self, published: router::Published) {
        if let Err(err) = self.settle(published).await {
            tracing::error!(error = %err, "cannot store queued messages of persistent sessions");
        }
    }
}

impl Shared {
    /// The ARN of a resource of this account: `client/<id>`, `topic/<t>`, `cert/<id>`, ...
    fn arn(&self, kind: ResourceKind, name: &str) -> String {
        kind.arn(name, &self.account)
    }
}

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS configuration of a device listener. On 8883 a client certificate is
/// required; on the HTTPS listener it is optional (WebSocket and SigV4 callers
/// have none) and ALPN picks the protocol.
fn tls_config(
    config: &GatewayConfig,
    snapshot: Arc<TrustSnapshot>,
    client_certificate_required: bool,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, GatewayError> {
    let tls = |e: &dyn std::fmt::Display| GatewayError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certified = |certificate_pem: &str, key_pem: &str| -> Result<Arc<CertifiedKey>, GatewayError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(certificate_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| tls(&e))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| tls(&e))?;
        let signing_key = provider.key_provider.load_private_key(key).map_err(|e| tls(&e))?;
        Ok(Arc::new(CertifiedKey::new(chain, signing_key)))
    };
    let mut resolver =
        SniResolver { default: certified(&config.certificate_pem, &config.key_pem)?, by_name: Vec::new() };
    for sni in &config.sni_certificates {
        let key = certified(&sni.certificate_pem, &sni.key_pem)?;
        resolver.by_name.extend(sni.names.iter().map(|name| (name.to_ascii_lowercase(), key.clone())));
    }
    let verifier = Arc::new(RegistryVerifier::new(snapshot, provider.clone(), client_certificate_required));
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(resolver));
    server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(server)
}

/// Picks the server certificate by SNI: an exact name, then a `*.` wildcard one
/// level up, else the default certificate.
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    by_name: Vec<(String, Arc<CertifiedKey>)>,
}

impl SniResolver {
    fn for_name(&self, name: &str) -> &Arc<CertifiedKey> {
        let name = name.to_ascii_lowercase();
        let wildcard = name.split_once('.').map(|(_, parent)| format!("*.{parent}"));
        let exact = self.by_name.iter().find(|(n, _)| *n == name);
        let wild = || self.by_name.iter().find(|(n, _)| Some(n) == wildcard.as_ref());
        exact.or_else(wild).map_or(&self.default, |(_, key)| key)
    }
}

impl rustls::server::ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(hello.server_name().map_or(&self.default, |name| self.for_name(name)).clone())
    }
}

/// A bound device gateway, ready to serve.
pub struct Gateway {
    shared: Arc<Shared>,
    listener: listen::Listener,
    acceptor: TlsAcceptor,
    https: Option<https::HttpsListener>,
}

impl Gateway {
    /// Loads the certificate snapshot, retained messages and persistent sessions,
    /// and binds the listeners.
    pub async fn bind(
        config: GatewayConfig,
        registry: Arc<Registry>,
        store: Arc<dyn ferrocore_store::RecordStore>,
    ) -> Result<Self, GatewayError> {
        registry.refresh_trust().await?;
        let snapshot = Arc::new(TrustSnapshot::new(registry.trust()));
        let acceptor = TlsAcceptor::from(Arc::new(tls_config(&config, snapshot.clone(), true, &[])?));
        let devices = listen::ConnectionLimit::new(config.max_connections);
        let tcp =
            TcpListener::bind(config.addr).await.map_err(|source| GatewayError::Bind { addr: config.addr, source })?;
        let listener = listen::Listener::new(tcp, devices.clone(), "mqtt");
        let https = match config.https_addr {
            Some(addr) => {
                let tls = tls_config(&config, snapshot.clone(), false, &https::ALPN_PROTOCOLS)?;
                let tcp = TcpListener::bind(addr).await.map_err(|source| GatewayError::Bind { addr, source })?;
                let listener = listen::Listener::new(tcp, devices, "https");
                Some(https::HttpsListener { listener, acceptor: TlsAcceptor::from(Arc::new(tls)) })
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            metrics: PathMetrics::register(),
            registry,
            router: Router::new(config.session_queue_limit),
            account: config.account.clone(),
            max_packet_size: config.max_packet_size,
            max_client_id_len: 128,
            limits: config.limits.clone(),
            retained: retained::RetainedStore::load(store.clone()).await?,
            sessions: sessions::SessionStore::new(store),
            session_expiry_secs: config.session_expiry_secs,
            sink: std::sync::OnceLock::new(),
            credentials: config.credentials.clone(),
            trust: snapshot,
            rechecks: Default::default(),
        });
        load_sessions(&shared).await?;
        Ok(Self { shared, listener, acceptor, https })
    }

    /// Where services (the shadow API, rules, iot-data) publish into this gateway.
    pub fn publisher(&self) -> Arc<GatewayHandle> {
        Arc::new(GatewayHandle(self.shared.clone()))
    }

    /// Hands every routed message to the rules engine from now on (once).
    pub fn attach_sink(&self, sink: Arc<dyn MessageSink>) {
        if self.shared.sink.set(sink).is_err() {
            tracing::warn!("a message sink is already attached");
        }
    }

    /// Serves devices until `shutdown` completes.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), GatewayError> {
        let Self { shared, mut listener, acceptor, https } = self;
        let revalidator = tokio::spawn(rechecks::run(shared.clone()));
        let expirer = tokio::spawn(expire_sessions(shared.clone()));
        let connections = Arc::new(AtomicU64::new(0));
        let https = https.map(|https| tokio::spawn(https.serve(shared.clone(), connections.clone())));
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(addr = %addr, "device gateway listening (MQTT over TLS)");
        }
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer, permit) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            let connection = connections.fetch_add(1, Ordering::Relaxed);
            let (acceptor, shared) = (acceptor.clone(), shared.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let Some((tls, certificate_id)) = handshake(&acceptor, tcp, peer).await else {
                    return;
                };
                let Some(certificate_id) = certificate_id else {
                    return;
                };
                connection::serve(tls, Identity::Certificate(certificate_id), peer, shared, connection).await;
            });
        }
        revalidator.abort();
        expirer.abort();
        if let Some(https) = https {
            https.abort();
        }
        tracing::info!("device gateway stopped");
        Ok(())
    }
}

/// The TLS handshake of a device listener: the stream and the client certificate's id, if one was sent.
async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) -> Option<(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, Option<String>)> {
    // Small MQTT packets must not wait for Nagle's algorithm (40 ms with delayed ACKs).
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!(error = %err, "cannot disable Nagle's algorithm");
    }
    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            metrics::counter!("ferrocore_mqtt_tls_handshake_failures_total").increment(1);
            tracing::info!(peer = %peer, error = %err, "TLS handshake refused");
            return None;
        }
        Err(_) => return None,
    };
    let certificate_id = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| TrustSnapshot::id_of(c));
    Some((tls, certificate_id))
}

/// The gateway as services see it: service-made messages go through the router
/// like any publish (QoS 1, each subscriber's iot:Receive checked, queued durably
/// for offline persistent sessions), and the iot-data API's data plane.
pub struct GatewayHandle(Arc<Shared>);

impl GatewayHandle {
    /// Live connections re-checked since the start because a registry write changed
    /// a record their permissions were computed from.
    pub fn permission_rechecks(&self) -> u64 {
        self.0.rechecks.done()
    }
}

#[async_trait::async_trait]
impl Publisher for GatewayHandle {
    async fn publish(&self, notifications: Vec<Notification>) {
        for notification in notifications {
            self.0.publish_from_service(notification).await;
        }
    }
}

fn retained_view(retained: retained::Retained) -> RetainedMessage {
    RetainedMessage {
        user_properties: retained.message.properties.as_ref().map(|p| p.user_properties.clone()).unwrap_or_default(),
        topic: retained.message.topic,
        payload: retained.message.payload,
        qos: retained.qos as u8,
        last_modified_ms: retained.last_modified_ms,
    }
}

#[async_trait::async_trait]
impl DataPlane for GatewayHandle {
    async fn publish_message(&self, message: ApiPublish) -> Result<(), PublishRefused> {
        self.0.publish_api(message).await
    }

    fn retained_message(&self, topic: &str) -> Option<RetainedMessage> {
        self.0.retained.get(topic, now_ms()).map(retained_view)
    }

    fn retained_messages(&self, after: Option<&str>, limit: usize) -> Vec<RetainedMessage> {
        self.0.retained.list(after, limit, now_ms()).into_iter().map(retained_view).collect()
    }

    async fn delete_connection(&self, client_id: &str, clean_session: bool, prevent_will: bool) -> bool {
        let shared = &self.0;
        if shared.router.kick(client_id, clean_session, prevent_will) {
            tracing::info!(client_id, clean_session, prevent_will, "disconnecting a client (DeleteConnection)");
            return true;
        }
        // Not connected: a persistent session may still be there to discard.
        if !clean_session {
            return shared.router.has_offline(client_id);
        }
        let Some(writes) = shared.router.discard_offline(client_id, now_ms()) else {
            return false;
        };
        shared.store_session_writes(client_id, writes).await;
        true
    }
}

/// Loads the persistent sessions of disconnected clients, with their permissions.
async fn load_sessions(shared: &Shared) -> Result<(), ferrocore_store::StoreError> {
    let stored = shared.sessions.load_all().await?;
    let mut loaded = Vec::new();
    for (client_id, session) in stored {
        match shared.permissions_of(&session.record.identity, &client_id).await {
            Ok(permissions) => loaded.push(router::Loaded {
                client_id,
                record: session.record,
                permissions: Arc::new(std::sync::RwLock::new(permissions)),
                queue: session.queue,
            }),
            Err(err) => {
                tracing::warn!(client_id = %client_id, error = %err, "dropping a session whose principal is gone")
            }
        }
    }
    let queued: usize = loaded.iter().map(|l| l.queue.len()).sum();
    tracing::info!(sessions = loaded.len(), queued, "loaded persistent sessions");
    shared.router.load(loaded);
    Ok(())
}

/// Removes persistent sessions whose expiry passed.
async fn expire_sessions(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let writes = shared.router.expire(now_ms());
        if let Err(err) = shared.sessions.apply(writes).await {
            tracing::warn!(error = %err, "cannot delete expired sessions");
        }
    }
}

#[cfg(test)]
mod footprint {
    //! What an idle connection holds beyond its buffers: the connection task's state,
    //! allocated once per connection. Every future a connection awaits is laid out
    //! inside it unless boxed, so a rarely taken path with a large future (a store
    //! commit, a shadow request) costs every idle connection its size.

    use super::*;
    use ferrocore_registry::{Registry, RegistryConfig, SystemClock};
    use ferrocore_store::{RecordStore, SqliteStore};

    pub(crate) async fn gateway(dir: &tempfile::TempDir) -> Gateway {
        let store: Arc<dyn RecordStore> = Arc::new(SqliteStore::open(&dir.path().join("db")).await.unwrap());
        let root = ferrocore_pki::Issuer::new_root("test root", "ferrocore", 1_800_000_000).unwrap();
        let server = root.issue_server(&["localhost".into()], 1_800_000_000).unwrap();
        let config = RegistryConfig {
            account: Account::default(),
            thing_type_delete_wait_ms: 0,
            endpoint_host: "localhost".into(),
            policy_document_limit: 2048,
            shadows: Default::default(),
        };
        let registry = Arc::new(Registry::new(store.clone(), config, Arc::new(SystemClock), Arc::new(root)));
        let gateway = GatewayConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            https_addr: None,
            sni_certificates: Vec::new(),
            credentials: Credentials::local_default(),
            certificate_pem: server.certificate_pem,
            key_pem: server.private_key_pem,
            max_packet_size: 128 * 1024,
            session_expiry_secs: 3600,
            session_queue_limit: 10_000,
            max_connections: 10,
            limits: Limits {
                subscriptions_per_connection: 50,
                filters_per_subscribe: 8,
                topic_bytes: 256,
                topic_slashes: 7,
                rate: RateQuota::default(),
            },
            account: Account::default(),
        };
        Gateway::bind(gateway, registry, store).await.unwrap()
    }

    #[tokio::test]
    async fn an_idle_connection_task_holds_its_session_and_run_loop_only() {
        let dir = tempfile::tempdir().unwrap();
        let gateway = gateway(&dir).await;
        let (stream, _peer) = tokio::io::duplex(64);
        let peer = "127.0.0.1:1".parse().unwrap();
        let serve = connection::serve(stream, Identity::Certificate("c".into()), peer, gateway.shared.clone(), 0);
        let size = std::mem::size_of_val(&serve);
        // In the test (debug) layout, with an in-memory stream; 6.5 KiB before connecting,
        // leaving and the rare paths of the run loop were boxed.
        assert!(size <= 2560, "the connection task grew to {size} bytes: box what runs rarely");
        // Positive control: the same measure sees a future that holds more.
        let heavier = async move {
            let held = [0u8; 4096];
            tokio::task::yield_now().await;
            held.len()
        };
        assert!(std::mem::size_of_val(&heavier) > 4096);
    }
}
