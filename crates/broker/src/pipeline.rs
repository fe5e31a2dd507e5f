//! The publish pipeline every message takes once it is authorized, whatever its
//! transport: retained first (durably), Basic Ingest to its rule, otherwise the
//! router (subscribers, parked sessions) and the rules engine, then shadow
//! requests; the publisher waits briefly for full subscriber queues and for the
//! store writes of queued messages before it is acknowledged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ferrocore_model::ResourceKind;
use ferrocore_mqtt::QoS;
use ferrocore_registry::{ApiPublish, Notification, PublishRefused, RoutedMessage};

use crate::peers::{Forward, PeersError};
use crate::router::{Forwarded, Scope};
use crate::{Shared, now_ms, queue, router, sessions};
use ferrocore_message::{Message, expiry_deadline};

/// Who published a message, for the rules engine.
#[derive(Clone, Copy, Default)]
pub(crate) struct Origin<'a> {
    pub client_id: Option<&'a str>,
    pub principal: Option<&'a str>,
    /// Rule actions that led to the message (0 for devices).
    pub hops: u8,
}

impl<'a> Origin<'a> {
    pub(crate) fn routed(self, topic: &'a str, message: &'a Arc<Message>, qos: QoS) -> RoutedMessage<'a> {
        RoutedMessage {
            topic,
            message,
            qos: qos as u8,
            client_id: self.client_id,
            principal: self.principal,
            hops: self.hops,
        }
    }
}

/// Why a publish could not be acknowledged: what it must be kept in is unavailable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotKept {
    #[error(transparent)]
    Store(#[from] ferrocore_store::StoreError),
    #[error(transparent)]
    Peers(#[from] PeersError),
}

/// What a QoS 1 publisher still waits for once its message is routed and kept on
/// this node: the other nodes that take it. The connection reads on meanwhile and
/// acknowledges its publishes in order as these resolve.
/// (In a mutex only to be `Sync`, as the connection's state must be: it is polled
/// through `get_mut`, which never locks.)
pub(crate) struct PeersWait(std::sync::Mutex<Waiting>);

type Waiting = Pin<Box<dyn Future<Output = Result<(), PeersError>> + Send>>;

impl Future for PeersWait {
    type Output = Result<(), PeersError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        self.0.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).as_mut().poll(cx)
    }
}

/// How long a publish waits for room in a subscriber's full queue before the
/// message is dropped for that subscriber.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(20);

impl Shared {
    /// Routes a message the server itself publishes (shadow responses, rule republishes);
    /// a shadow request among them (a rule republishing to `.../shadow/update`) is answered.
    pub(crate) async fn publish_from_service(&self, notification: Notification) {
        let message = Message::new(notification.topic, bytes::Bytes::from(notification.payload));
        let qos = if notification.qos == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
        let origin = Origin { hops: notification.hops, ..Origin::default() };
        self.store_changed(self.route(&message, qos, false, origin)).await;
        self.answer_shadow_request(&message.topic, &message.payload, notification.hops).await;
    }

    /// Takes a publish whose sender was authorized: retains it when asked (durably,
    /// before anything is acknowledged), hands Basic Ingest to its rule, or routes it
    /// to subscribers and rules and answers shadow requests. Answers what the
    /// acknowledgement still waits for on other nodes.
    pub(crate) async fn accept_publish(
        &self,
        message: &Message,
        qos: QoS,
        retain: bool,
        resource: &str,
        origin: Origin<'_>,
    ) -> Result<Option<PeersWait>, NotKept> {
        if retain {
            self.set_retained(message, qos).await?;
        }
        if let Some((rule, rest)) = ferrocore_mqtt::topic::basic_ingest(&message.topic) {
            self.ingest(rule, rest, message, qos, origin);
            return Ok(None);
        }
        let waiting = self.settle_here(self.route_to(message, resource, qos, retain, origin)).await?;
        self.answer_shadow_request(&message.topic, &message.payload, origin.hops).await;
        Ok(waiting)
    }

    /// Stores (or clears) a topic's retained message, for every node.
    pub(crate) async fn set_retained(&self, message: &Message, qos: QoS) -> Result<(), ferrocore_store::StoreError> {
        self.retained.set(message, qos, now_ms()).await?;
        if let Some(peers) = self.peers.get() {
            peers.retained_changed(&message.topic);
        }
        Ok(())
    }

    /// Checks a publish that arrives through an API (topic, reserved topics), then accepts it.
    pub(crate) async fn publish_api(&self, request: ApiPublish) -> Result<(), PublishRefused> {
        let topic = request.topic;
        self.check_topic(&topic, request.retain).map_err(|refusal| refusal.into_api(&topic))?;
        let now = now_ms();
        let message = Message {
            payload: request.payload,
            properties: request.properties.map(Arc::new),
            expires_at_ms: expiry_deadline(request.message_expiry_secs, now),
            topic,
        };
        let qos = if request.qos == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
        let origin = Origin { principal: Some(&request.principal), ..Origin::default() };
        self.metrics.messages_in.increment(1);
        let resource = self.arn(ResourceKind::Topic, &message.topic);
        let kept = async {
            if let Some(waiting) = self.accept_publish(&message, qos, request.retain, &resource, origin).await? {
                waiting.await?;
            }
            Ok::<_, NotKept>(())
        };
        kept.await.map_err(|err| PublishRefused::NotStored(err.to_string()))
    }

    /// Queues a routed shadow request (`$aws/things/<t>/shadow/.../get|update|delete`)
    /// with the shadow service, in order behind the thing's earlier requests; the
    /// service publishes the answer once it is durable, so the publisher's next
    /// packets are read meanwhile.
    pub(crate) async fn answer_shadow_request(&self, topic: &str, payload: &[u8], hops: u8) {
        if let Some(request) = ferrocore_shadow::topic::parse_request(topic) {
            self.shadows.submit(request, payload, hops).await;
        }
    }

    /// Delivers a message to its subscribers and offers it to the rules engine.
    pub(crate) fn route(&self, message: &Message, qos: QoS, retain: bool, origin: Origin<'_>) -> router::Published {
        self.route_to(message, &self.arn(ResourceKind::Topic, &message.topic), qos, retain, origin)
    }

    /// [`Self::route`] when the topic's ARN (the iot:Receive resource) is already known.
    /// `retain` is the publisher's RETAIN flag, kept for Retain As Published subscriptions.
    pub(crate) fn route_to(
        &self,
        message: &Message,
        resource: &str,
        qos: QoS,
        retain: bool,
        origin: Origin<'_>,
    ) -> router::Published {
        // One copy for every subscriber, the rules engine and the other nodes.
        let message = Arc::new(message.clone());
        if let Some(sink) = self.sink.get() {
            sink.offer(&origin.routed(&message.topic, &message, qos));
        }
        let Some(peers) = self.peers.get() else {
            return self.router.publish(&message, qos, retain, origin.client_id, resource, Scope::All);
        };
        let mut published = self.router.publish(&message, qos, retain, origin.client_id, resource, Scope::Unshared);
        published.forwarded = match peers.forward(&message, qos, retain) {
            Forward::Refused => Forwarded::Refused { qos },
            Forward::Awaited(number) if qos == QoS::AtLeastOnce => Forwarded::QueuedAtLeastOnce { number },
            Forward::Awaited(_) | Forward::Queued => Forwarded::Queued,
        };
        published
    }

    /// Routes a message another node accepted (its rules ran there) to this node's
    /// unshared subscribers, or to one member of the shared subscription `group`;
    /// what is left (parked sessions' writes) goes to [`Self::store_changed`].
    pub(crate) fn route_from_peer(
        &self,
        message: Message,
        qos: QoS,
        retain: bool,
        group: Option<&str>,
    ) -> router::Published {
        let message = Arc::new(message);
        let resource = self.arn(ResourceKind::Topic, &message.topic);
        let scope = group.map_or(Scope::Unshared, Scope::Group);
        let mut published = self.router.publish(&message, qos, retain, None, &resource, scope);
        // No wait for room in full queues: one stream from the peers serves every
        // subscriber of its subject in turn, and the publisher is on another node.
        let dropped = published.full.len() as u64;
        published.full.clear();
        if dropped > 0 {
            metrics::counter!("ferrocore_mqtt_messages_dropped_total", "reason" => "queue_full").increment(dropped);
        }
        published
    }

    /// Basic Ingest (`$aws/rules/<rule>/<rest>`): straight to the rule, never to subscribers.
    pub(crate) fn ingest(&self, rule: &str, rest: &str, message: &Message, qos: QoS, origin: Origin<'_>) {
        let message = Arc::new(message.clone());
        if !self.sink.get().is_some_and(|sink| sink.ingest(rule, &origin.routed(rest, &message, qos))) {
            metrics::counter!("ferrocore_rules_ingest_total", "outcome" => "rule_not_found").increment(1);
            tracing::debug!(rule, "basic ingest to a rule that is missing or disabled");
        }
    }

    /// Finishes a publish: waits (briefly) for room in full subscriber queues, stores
    /// the persistent sessions it queued messages for, then waits for the other nodes.
    pub(crate) async fn settle(&self, published: router::Published) -> Result<(), NotKept> {
        if let Some(waiting) = self.settle_here(published).await? {
            waiting.await?;
        }
        Ok(())
    }

    /// [`Self::settle`] up to the wait for the other nodes, which it answers.
    async fn settle_here(&self, published: router::Published) -> Result<Option<PeersWait>, NotKept> {
        let mut writes = published.writes;
        for pending in published.full {
            writes.extend(self.hand_over(pending).await);
        }
        self.sessions.apply(writes).await?;
        if !published.stored_first.is_empty() {
            // Their records are durable now.
            let mut writes = Vec::new();
            for pending in published.stored_first {
                writes.extend(self.hand_over(pending).await);
            }
            self.sessions.apply(writes).await?;
        }
        let Some(peers) = self.peers.get() else { return Ok(None) };
        match published.forwarded {
            Forwarded::No => {}
            Forwarded::Queued => peers.room().await?,
            Forwarded::QueuedAtLeastOnce { number } => {
                peers.room().await?;
                let peers = peers.clone();
                let wait = Box::pin(async move { peers.forwarded(number).await });
                return Ok(Some(PeersWait(std::sync::Mutex::new(wait))));
            }
            Forwarded::Refused { qos: QoS::AtLeastOnce } => {
                return Err(PeersError::Unreachable(
                    "too many messages are waiting to leave for the other nodes".into(),
                )
                .into());
            }
            Forwarded::Refused { .. } => {
                metrics::counter!("ferrocore_cluster_messages_dropped_total").increment(1);
            }
        }
        Ok(None)
    }

    /// Commits a client's session writes; a failure is logged (nothing waits on them).
    pub(crate) async fn store_session_writes(&self, client_id: &str, writes: Vec<sessions::SessionWrite>) {
        if let Err(err) = self.sessions.apply(writes).await {
            tracing::error!(client_id, error = %err, "cannot store a persistent session");
        }
    }

    /// Queues a delivery once its subscriber's queue has room (waiting briefly); one
    /// whose session was parked meanwhile is kept by it when QoS 1, else it is dropped
    /// (with its stored record). Answers the store writes that leaves.
    async fn hand_over(&self, pending: router::Pending) -> Vec<sessions::SessionWrite> {
        match pending.sender.send_timeout(pending.delivery, QUEUE_FULL_WAIT).await {
            Ok(()) => Vec::new(),
            Err(queue::SendTimeoutError::Closed(delivery)) if delivery.qos == QoS::AtLeastOnce => {
                self.router.requeue_closed(&pending.client_id, delivery)
            }
            Err(queue::SendTimeoutError::Closed(delivery) | queue::SendTimeoutError::Timeout(delivery)) => {
                metrics::counter!("ferrocore_mqtt_messages_dropped_total", "reason" => "queue_full").increment(1);
                sessions::SessionWrite::dequeues(&pending.client_id, delivery.stored).collect()
            }
        }
    }

    /// [`Self::settle`] for a publish the server makes (events, wills, services).
    pub(crate) async fn store_changed(&self, published: router::Published) {
        if let Err(err) = self.settle(published).await {
            tracing::error!(error = %err, "cannot keep a message the server published");
        }
    }
}
