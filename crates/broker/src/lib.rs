//! The device gateway: MQTT 3.1.1 and 5 over TLS with X.509 client certificates.
//!
//! The TLS verifier accepts only registered, ACTIVE certificates (and, for
//! certificates registered with a CA, only when that ACTIVE CA signed them),
//! reading the registry's in-memory certificate snapshot.
//! Each connection computes its permissions once at CONNECT (its policies and
//! policy-variable context) and checks iot:Connect, iot:Publish, iot:Subscribe and,
//! for every delivery, the subscriber's iot:Receive.

mod connection;
mod events;
mod quota;
mod retained;
mod router;
mod sessions;
mod shadows;
mod verifier;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferrocore_model::Account;
use ferrocore_mqtt::QoS;
use ferrocore_registry::{MessageProperties, MessageSink, Notification, Publisher, Registry, RoutedMessage};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use crate::quota::RateQuota;
use crate::router::Router;
use crate::verifier::{RegistryVerifier, TrustSnapshot};

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub addr: SocketAddr,
    /// The TLS certificate chain (PEM) and private key (PEM) devices see.
    pub certificate_pem: String,
    pub key_pem: String,
    /// Largest MQTT packet accepted (AWS: 128 KB payloads).
    pub max_packet_size: usize,
    pub limits: Limits,
    /// Expiry of persistent sessions that do not set one (MQTT 3.1.1), in seconds.
    pub session_expiry_secs: u64,
    pub account: Account,
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
    Registry(String),
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
}

/// Who published a message, for the rules engine.
#[derive(Clone, Copy, Default)]
pub(crate) struct Origin<'a> {
    pub client_id: Option<&'a str>,
    pub principal: Option<&'a str>,
    pub properties: Option<&'a MessageProperties>,
    /// Rule actions that led to the message (0 for devices).
    pub hops: u8,
}

impl<'a> Origin<'a> {
    fn message(self, topic: &'a str, payload: &'a bytes::Bytes, qos: QoS) -> RoutedMessage<'a> {
        RoutedMessage {
            topic,
            payload,
            qos: qos as u8,
            client_id: self.client_id,
            principal: self.principal,
            properties: self.properties,
            hops: self.hops,
        }
    }
}

/// How long a publish waits for room in a subscriber's full queue before the
/// message is dropped for that subscriber.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(20);

/// The longest session expiry an MQTT 5 client may ask for (AWS: 7 days).
const MAX_SESSION_EXPIRY_SECS: u64 = 7 * 24 * 3600;

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Shared {
    /// Routes a message the server itself publishes (shadow responses, rule republishes);
    /// a shadow request among them (a rule republishing to `.../shadow/update`) is answered.
    async fn publish_from_service(&self, notification: Notification) {
        let payload = bytes::Bytes::from(notification.payload);
        let qos = if notification.qos == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
        let origin = Origin { hops: notification.hops, ..Origin::default() };
        self.store_changed(self.route(&notification.topic, &payload, qos, origin)).await;
        self.answer_shadow_request(&notification.topic, &payload, notification.hops).await;
    }

    /// Hands a routed shadow request (`$aws/things/<t>/shadow/.../get|update|delete`) to the shadow service.
    async fn answer_shadow_request(&self, topic: &str, payload: &[u8], hops: u8) {
        if let Some(request) = ferrocore_shadow::topic::parse_request(topic) {
            // Boxed: the shadow service publishes its answers through this same path.
            Box::pin(shadows::serve(self, request, payload, hops)).await;
        }
    }

    /// Delivers a message to its subscribers and offers it to the rules engine.
    fn route(&self, topic: &str, payload: &bytes::Bytes, qos: QoS, origin: Origin<'_>) -> router::Published {
        self.route_to(topic, &self.arn("topic", topic), payload, qos, origin)
    }

    /// [`Self::route`] when the topic's ARN (the iot:Receive resource) is already known.
    fn route_to(
        &self,
        topic: &str,
        resource: &str,
        payload: &bytes::Bytes,
        qos: QoS,
        origin: Origin<'_>,
    ) -> router::Published {
        if let Some(sink) = self.sink.get() {
            sink.offer(&origin.message(topic, payload, qos));
        }
        self.router.publish(topic, payload, qos, resource)
    }

    /// Basic Ingest (`$aws/rules/<rule>/<rest>`): straight to the rule, never to subscribers.
    fn ingest(&self, rule: &str, rest: &str, payload: &bytes::Bytes, qos: QoS, origin: Origin<'_>) {
        if !self.sink.get().is_some_and(|sink| sink.ingest(rule, &origin.message(rest, payload, qos))) {
            metrics::counter!("ferrocore_rules_ingest_total", "outcome" => "rule_not_found").increment(1);
            tracing::debug!(rule, "basic ingest to a rule that is missing or disabled");
        }
    }

    /// Finishes a publish: waits (briefly) for room in full subscriber queues, then
    /// stores the persistent sessions it queued messages for.
    async fn settle(&self, published: router::Published) -> Result<(), ferrocore_store::StoreError> {
        for (sender, delivery) in published.full {
            if sender.send_timeout(delivery, QUEUE_FULL_WAIT).await.is_err() {
                metrics::counter!("ferrocore_mqtt_messages_dropped_total", "reason" => "queue_full").increment(1);
            }
        }
        self.sessions.save(published.changed).await
    }

    /// [`Self::settle`] for a publish the server makes (events, wills, services).
    async fn store_changed(&self, published: router::Published) {
        if let Err(err) = self.settle(published).await {
            tracing::error!(error = %err, "cannot store queued messages of persistent sessions");
        }
    }
}

impl Shared {
    /// The ARN of a data-plane resource: `client/<id>`, `topic/<t>`, `topicfilter/<f>`, `cert/<id>`.
    fn arn(&self, kind: &str, name: &str) -> String {
        format!("arn:aws:iot:{}:{}:{kind}/{name}", self.account.region, self.account.id)
    }
}

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn tls_config(config: &GatewayConfig, snapshot: Arc<TrustSnapshot>) -> Result<rustls::ServerConfig, GatewayError> {
    let tls = |e: &dyn std::fmt::Display| GatewayError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(config.certificate_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| tls(&e))?;
    let key = PrivateKeyDer::from_pem_slice(config.key_pem.as_bytes()).map_err(|e| tls(&e))?;
    let verifier = Arc::new(RegistryVerifier::new(snapshot, provider.clone()));
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls(&e))
}

/// A bound device gateway, ready to serve.
pub struct Gateway {
    shared: Arc<Shared>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    snapshot: Arc<TrustSnapshot>,
}

impl Gateway {
    /// Loads the certificate snapshot, retained messages and persistent sessions,
    /// and binds the listener.
    pub async fn bind(
        config: GatewayConfig,
        registry: Arc<Registry>,
        store: Arc<dyn ferrocore_store::RecordStore>,
    ) -> Result<Self, GatewayError> {
        registry.refresh_trust().await.map_err(|e| GatewayError::Registry(e.to_string()))?;
        let snapshot = Arc::new(TrustSnapshot::new(registry.trust()));
        let acceptor = TlsAcceptor::from(Arc::new(tls_config(&config, snapshot.clone())?));
        let listener =
            TcpListener::bind(config.addr).await.map_err(|source| GatewayError::Bind { addr: config.addr, source })?;
        let shared = Arc::new(Shared {
            metrics: PathMetrics::register(),
            registry,
            router: Router::default(),
            account: config.account.clone(),
            max_packet_size: config.max_packet_size,
            max_client_id_len: 128,
            limits: config.limits.clone(),
            retained: retained::RetainedStore::load(store.clone()).await.map_err(|e| GatewayError::Registry(e.to_string()))?,
            sessions: sessions::SessionStore::new(store),
            session_expiry_secs: config.session_expiry_secs,
            sink: std::sync::OnceLock::new(),
        });
        load_sessions(&shared).await.map_err(GatewayError::Registry)?;
        Ok(Self { shared, listener, acceptor, snapshot })
    }

    /// Where services (the shadow API) publish into this gateway.
    pub fn publisher(&self) -> Arc<dyn Publisher> {
        Arc::new(GatewayPublisher(self.shared.clone()))
    }

    /// Hands every routed message to the rules engine from now on (once).
    pub fn attach_sink(&self, sink: Arc<dyn MessageSink>) {
        if self.shared.sink.set(sink).is_err() {
            tracing::warn!("a message sink is already attached");
        }
    }

    /// Serves devices until `shutdown` completes.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), GatewayError> {
        let Self { shared, listener, acceptor, snapshot } = self;
        let revalidator = tokio::spawn(revalidate_on_changes(shared.clone(), snapshot));
        let expirer = tokio::spawn(expire_sessions(shared.clone()));
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(addr = %addr, "device gateway listening (MQTT over TLS)");
        }
        let connections = AtomicU64::new(0);
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(error = %err, "accept failed");
                        continue;
                    }
                },
            };
            // Small MQTT packets must not wait for Nagle's algorithm (40 ms with delayed ACKs).
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(error = %err, "cannot disable Nagle's algorithm");
            }
            let (acceptor, shared) = (acceptor.clone(), shared.clone());
            let connection = connections.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(err)) => {
                        metrics::counter!("ferrocore_mqtt_tls_handshake_failures_total").increment(1);
                        tracing::info!(peer = %peer, error = %err, "TLS handshake refused");
                        return;
                    }
                    Err(_) => return,
                };
                let certificate_id = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                    Some(cert) => verifier::TrustSnapshot::id_of(cert),
                    None => return,
                };
                connection::serve(tls, certificate_id, peer, shared, connection).await;
            });
        }
        revalidator.abort();
        expirer.abort();
        tracing::info!("device gateway stopped");
        Ok(())
    }
}

/// Service-made messages go through the router like any publish: QoS 1, each
/// subscriber's iot:Receive checked, queued durably for offline persistent sessions.
struct GatewayPublisher(Arc<Shared>);

#[async_trait::async_trait]
impl Publisher for GatewayPublisher {
    async fn publish(&self, notifications: Vec<Notification>) {
        for notification in notifications {
            self.0.publish_from_service(notification).await;
        }
    }
}

/// Loads the persistent sessions of disconnected clients, with their permissions.
async fn load_sessions(shared: &Shared) -> Result<(), String> {
    let stored = shared.sessions.load_all().await.map_err(|e| e.to_string())?;
    let mut loaded = Vec::new();
    for (client_id, session) in stored {
        let principal = shared.arn("cert", &session.certificate_id);
        match shared.registry.connection_permissions(&principal, &client_id).await {
            Ok(permissions) => {
                let cell: router::PermissionsCell = Arc::new(std::sync::RwLock::new(permissions));
                loaded.push((client_id, session, cell));
            }
            Err(err) => tracing::warn!(client_id = %client_id, error = %err, "dropping a session whose certificate is gone"),
        }
    }
    tracing::info!(sessions = loaded.len(), "loaded persistent sessions");
    shared.router.load_offline(loaded);
    Ok(())
}

/// Removes persistent sessions whose expiry passed.
async fn expire_sessions(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let expired = shared.router.expire(now_ms());
        if !expired.is_empty()
            && let Err(err) = shared.sessions.delete(expired).await
        {
            tracing::warn!(error = %err, "cannot delete expired sessions");
        }
    }
}

/// After every registry change, re-checks each live connection: its certificate
/// must still be trusted and its policies must still allow iot:Connect; the
/// connection keeps the new permissions, or is closed.
async fn revalidate_on_changes(shared: Arc<Shared>, snapshot: Arc<TrustSnapshot>) {
    let mut changes = shared.registry.changes();
    while changes.changed().await.is_ok() {
        for client in shared.router.clients() {
            let principal = shared.arn("cert", &client.certificate_id);
            let still_allowed = snapshot.still_trusted(&client.certificate_id)
                && match shared.registry.connection_permissions(&principal, &client.client_id).await {
                    Ok(permissions) => {
                        let allowed = permissions.allows("iot:Connect", &shared.arn("client", &client.client_id));
                        *client.permissions.write().unwrap_or_else(|e| e.into_inner()) = permissions;
                        allowed
                    }
                    Err(err) => {
                        tracing::warn!(client_id = %client.client_id, error = %err, "cannot re-check permissions");
                        true
                    }
                };
            if !still_allowed {
                let _ = client.sender.try_send(router::Outgoing::Revoked);
            }
        }
    }
}
