//! The NATS link: this node's side of the cluster.
//!
//! Three NATS connections: `data` (no echo) carries this node's messages out, its
//! unshared interest in and the control events; `shared` (with echo) holds the
//! queue subscriptions of shared subscriptions, so NATS picks one member's node
//! per message cluster-wide, this node included; `beats` (with echo) carries only
//! heartbeats, both ways, so a node busy with messages is not taken for dead and it
//! hears itself as its peers hear it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrocore_broker::{Forward, GatewayHandle, Peers, PeersError};
use ferrocore_message::Message;
use ferrocore_mqtt::QoS;
use ferrocore_registry::{CommittedChange, Registry};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::frame::{self, Announcement, Answer, DeleteConnection, Heartbeat, Origin, Receipts, Sent, Snapshot};
use crate::interest::{Awaited, Heard, Missing, PeerInterest, Takers};
use crate::standing::{Move, Standing};
use crate::subject;

/// How often a node says it is here, and how long its peers wait before they stop counting on it.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const PEER_SILENCE: Duration = Duration::from_secs(3);
/// How long a publisher waits for its message to leave for the other nodes.
const FORWARD_WAIT: Duration = Duration::from_secs(5);
/// Messages waiting to leave beyond which publishers wait for room, and beyond which
/// new ones are refused (NATS slower than this node's publishers, or unreachable).
const BACKLOG_SLOWS: u64 = 16 * 1024;
const BACKLOG_REFUSES: u64 = 256 * 1024;
/// ... and bytes waiting beyond which new ones are refused (large payloads).
const BACKLOG_REFUSES_BYTES: u64 = 256 * 1024 * 1024;
/// How long a claim or a DeleteConnection waits for the other nodes' answers.
const ANSWER_WAIT: Duration = Duration::from_secs(3);
/// How long a node keeps taking a subject after its last subscriber left: peers
/// that forwarded a message before they heard of it still get their receipt.
const LINGER: Duration = Duration::from_secs(2);
/// The size of the parts a node's snapshot of its subscriptions is sent in.
const SNAPSHOT_PART_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("connecting to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("subscribing to {subject}: {reason}")]
    Subscribe { subject: String, reason: String },
}

/// Credentials written in a NATS URL, which the client does not read from it.
#[derive(Debug, PartialEq, Eq)]
enum Credentials {
    UserPassword(String, String),
    Token(String),
}

/// The URL without its credentials (`nats://user:password@host:4222`,
/// `nats://token@host:4222`), and the credentials.
fn split_credentials(url: &str) -> (String, Option<Credentials>) {
    let Some((scheme, rest)) = url.split_once("://") else { return (url.to_string(), None) };
    let Some((userinfo, host)) = rest.rsplit_once('@') else { return (url.to_string(), None) };
    let decode = |text: &str| ferrocore_sigv4::percent_decode(text);
    let credentials = match userinfo.split_once(':') {
        Some((user, password)) => Credentials::UserPassword(decode(user), decode(password)),
        None => Credentials::Token(decode(userinfo)),
    };
    (format!("{scheme}://{host}"), Some(credentials))
}

/// A number for this process, different at each start, so peers tell its
/// messages from those of its earlier runs.
fn process_id() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now())
}

/// What `/health` says of the cluster.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterHealth {
    pub node: String,
    /// Whether this node is connected to NATS.
    pub bus: bool,
    /// Whether it serves devices: false while it is stepped down, cut off from the
    /// others (its own heartbeats do not come back), until it rejoins.
    pub serving: bool,
    /// Nodes heard from within the last few seconds, by id, with whether they reach the store.
    pub peers: Vec<PeerHealth>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerHealth {
    pub node: String,
    pub store: bool,
}

/// A message on its way to NATS, with its place in the order of forwards.
struct Outgoing {
    subject: String,
    frame: Bytes,
    seq: u64,
}

/// What a QoS 1 publisher on this node waits for before its PUBACK.
enum Wait {
    /// The receipts of the peers whose subscriptions match.
    Receipts(Takers),
    /// The message's flush to NATS: a live peer's subscriptions are not known yet.
    Flush,
    /// Nothing: no other node takes it.
    Nothing,
}

/// This node's subscriptions as announced to the others, with the number of the last change.
#[derive(Default)]
struct Announced {
    seq: u64,
    held: HashSet<String>,
}

/// What waits to be dropped once it has lingered: a subject's NATS subscription or a shared subscription's.
enum Lingering {
    Subject(String),
    Group(String),
}

/// This node's side of the cluster (the gateway's [`Peers`]).
pub struct Link {
    node: String,
    data: async_nats::Client,
    shared: async_nats::Client,
    beats: async_nats::Client,
    gateway: Arc<GatewayHandle>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    /// Held while a forward is numbered and queued.
    order: Mutex<()>,
    queued: AtomicU64,
    /// Bytes of frames waiting to leave.
    queued_bytes: AtomicU64,
    /// The last forward written out to NATS or given up on.
    sent: watch::Receiver<u64>,
    /// Numbers (first, last) of the batches that could not be written out lately,
    /// with when: kept while a publisher may still wait for one of them.
    failed: Mutex<VecDeque<(u64, u64, Instant)>>,
    interest: mpsc::UnboundedSender<(String, bool)>,
    noted: AtomicU64,
    /// The last interest change NATS has applied.
    settled: watch::Receiver<u64>,
    /// This process, as the origin of the messages it forwards (numbered by `queued`).
    process: u64,
    /// This node's subscriptions as the others know them, and theirs.
    announced: Mutex<Announced>,
    peer_interest: Mutex<PeerInterest>,
    /// Peers whose snapshot is being fetched.
    fetching: Mutex<HashSet<String>>,
    /// QoS 1 forwards waiting for the receipts of the peers that take them.
    awaited: Mutex<Awaited>,
    /// Receipts to send for the peers' messages this node took.
    receipts: mpsc::UnboundedSender<(Origin, Option<String>)>,
    /// Which messages from other nodes were delivered (NATS sends one copy per matching subscription).
    delivered: tokio::sync::Mutex<frame::Delivered>,
    peers: Mutex<HashMap<String, (Instant, bool)>>,
    store_reachable: AtomicBool,
    standing: Mutex<Standing>,
    /// Stepped down, or rejoining: no new connections, no sessions taken.
    out: AtomicBool,
}

impl Link {
    /// Connects this node to NATS and to its peers. `gateway` receives what the
    /// other nodes send; `registry` has its writes told to them and theirs applied.
    pub async fn join(
        url: &str,
        node: &str,
        gateway: Arc<GatewayHandle>,
        registry: Arc<Registry>,
    ) -> Result<Arc<Self>, ClusterError> {
        // Connections (again) to NATS: what was told meanwhile may be missed.
        let (reconnected, mut reconnections) = mpsc::unbounded_channel::<()>();
        let connect = |echo: bool| {
            let reconnected = reconnected.clone();
            let mut options = async_nats::ConnectOptions::new()
                .name(format!("ferrocore {node}"))
                .retry_on_initial_connect()
                .max_reconnects(None)
                .connection_timeout(Duration::from_secs(2))
                .subscription_capacity(64 * 1024)
                .event_callback(move |event| {
                    let reconnected = reconnected.clone();
                    async move {
                        match event {
                            async_nats::Event::Connected => {
                                tracing::info!(%event, "message bus");
                                let _ = reconnected.send(());
                            }
                            _ => tracing::warn!(%event, "message bus"),
                        }
                    }
                });
            if !echo {
                options = options.no_echo();
            }
            let (address, credentials) = split_credentials(url);
            options = match credentials {
                Some(Credentials::UserPassword(user, password)) => options.user_and_password(user, password),
                Some(Credentials::Token(token)) => options.token(token),
                None => options,
            };
            options.connect(address)
        };
        // Shown in errors and logs: without its credentials.
        let shown = split_credentials(url).0;
        let failed =
            |err: async_nats::ConnectError| ClusterError::Connect { url: shown.clone(), reason: err.to_string() };
        let data = tokio::time::timeout(Duration::from_secs(10), connect(false))
            .await
            .map_err(|_| ClusterError::Connect { url: shown.clone(), reason: "no answer in 10 s".into() })?
            .map_err(failed)?;
        let shared = connect(true).await.map_err(failed)?;
        let beats = connect(true).await.map_err(failed)?;
        let (outgoing, outgoing_rx) = mpsc::unbounded_channel();
        let (sent_tx, sent) = watch::channel(0);
        let (interest, interest_rx) = mpsc::unbounded_channel();
        let (settled_tx, settled) = watch::channel(0);
        let (receipts, receipts_rx) = mpsc::unbounded_channel();
        let link = Arc::new(Self {
            node: node.to_string(),
            data,
            shared,
            beats,
            gateway,
            outgoing,
            order: Mutex::new(()),
            queued: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            sent,
            failed: Mutex::default(),
            interest,
            noted: AtomicU64::new(0),
            settled,
            process: process_id(),
            announced: Mutex::default(),
            peer_interest: Mutex::default(),
            fetching: Mutex::default(),
            awaited: Mutex::default(),
            receipts,
            delivered: tokio::sync::Mutex::default(),
            peers: Mutex::default(),
            store_reachable: AtomicBool::new(true),
            standing: Mutex::new(Standing::new(Instant::now(), PEER_SILENCE + HEARTBEAT_EVERY)),
            out: AtomicBool::new(false),
        });
        tokio::spawn(link.clone().forward_loop(outgoing_rx, sent_tx));
        tokio::spawn(link.clone().interest_loop(interest_rx, settled_tx));
        tokio::spawn(link.clone().send_receipts(receipts_rx));
        // Receipts come on the connection with echo: this node may take its own
        // message for a shared subscription.
        let own_receipts = frame::receipts_for(link.process);
        let own_snapshot = frame::interest_of(node);
        for (connection, control) in [
            (&link.beats, frame::HEARTBEAT),
            (&link.data, frame::CLAIM),
            (&link.data, frame::DELETE_CONNECTION),
            (&link.data, frame::REGISTRY),
            (&link.data, frame::RETAINED),
            (&link.data, frame::INTEREST),
            (&link.data, own_snapshot.as_str()),
            (&link.shared, own_receipts.as_str()),
        ] {
            let subscriber = connection
                .subscribe(control.to_string())
                .await
                .map_err(|err| ClusterError::Subscribe { subject: control.into(), reason: err.to_string() })?;
            tokio::spawn(link.clone().control_loop(subscriber, registry.clone()));
        }
        tokio::spawn(link.clone().announce_registry(registry.clone()));
        let (resync, gateway) = (registry.clone(), link.gateway.clone());
        tokio::spawn(async move {
            // Each of the three connections reports once at start; later ones follow an outage.
            for _ in 0..3 {
                reconnections.recv().await;
            }
            while reconnections.recv().await.is_some() {
                tracing::info!("back on the message bus: reading the registry and retained messages again");
                if let Err(err) = resync.resync().await {
                    tracing::error!(error = %err, "cannot read the registry again after an outage");
                }
                gateway.reload_retained_all().await;
            }
        });
        tokio::spawn(link.clone().heartbeat_loop(registry));
        tokio::spawn(link.clone().standing_loop());
        // Hear every peer's heartbeat once before devices connect, so the first claims
        // of client ids reach every node holding one.
        tokio::time::sleep(HEARTBEAT_EVERY + HEARTBEAT_EVERY / 2).await;
        tracing::info!(node, url = %shown, peers = link.live_peers().len(), "joined the cluster");
        Ok(link)
    }

    /// This node, whether it reaches NATS, and the peers heard from lately.
    pub fn health(&self) -> ClusterHealth {
        ClusterHealth {
            node: self.node.clone(),
            bus: self.bus_connected(),
            serving: !self.out.load(Ordering::SeqCst),
            peers: self.live_peers(),
        }
    }

    /// What a QoS 1 publisher of `topic` waits for: the receipts of the live peers
    /// whose subscriptions match it; its flush when a live peer's are not known yet
    /// (it may take the message); else nothing.
    fn wait_for(&self, topic: &str) -> Wait {
        let interest = self.peer_interest.lock().unwrap_or_else(|e| e.into_inner());
        let mut takers = interest.takers(topic);
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let live = |seen: &Instant| seen.elapsed() < PEER_SILENCE;
        // Not a node already silent, whose interest goes at the next heartbeat.
        takers.nodes.retain(|node| peers.get(node).is_some_and(|(seen, _)| live(seen)));
        if !takers.is_empty() {
            Wait::Receipts(takers)
        } else if peers.iter().any(|(node, (seen, _))| live(seen) && !interest.knows(node)) {
            Wait::Flush
        } else {
            Wait::Nothing
        }
    }

    /// Waits until the forwards numbered up to `target` are out to NATS.
    async fn sent_up_to(&self, target: u64) -> Result<(), PeersError> {
        let mut sent = self.sent.clone();
        match tokio::time::timeout(FORWARD_WAIT, sent.wait_for(|sent| *sent >= target)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(PeersError::Unreachable(format!("messages did not leave for NATS within {FORWARD_WAIT:?}"))),
        }
    }

    /// Messages forwarded but not yet out to NATS.
    fn backlog(&self) -> u64 {
        self.queued.load(Ordering::SeqCst).saturating_sub(*self.sent.borrow())
    }

    fn bus_connected(&self) -> bool {
        self.data.connection_state() == async_nats::connection::State::Connected
            && self.shared.connection_state() == async_nats::connection::State::Connected
            && self.beats.connection_state() == async_nats::connection::State::Connected
    }

    fn live_peers(&self) -> Vec<PeerHealth> {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let mut live: Vec<PeerHealth> = peers
            .iter()
            .filter(|(_, (seen, _))| seen.elapsed() < PEER_SILENCE)
            .map(|(node, (_, store))| PeerHealth { node: node.clone(), store: *store })
            .collect();
        live.sort_by(|a, b| a.node.cmp(&b.node));
        live
    }

    /// Publishes forwards in order, then flushes, and says how far it got; a batch
    /// that could not be written out is remembered as failed.
    async fn forward_loop(self: Arc<Self>, mut outgoing: mpsc::UnboundedReceiver<Outgoing>, sent: watch::Sender<u64>) {
        let mut batch = Vec::with_capacity(256);
        while outgoing.recv_many(&mut batch, 256).await > 0 {
            let (first, mut last, mut written) = (batch[0].seq, 0, true);
            for Outgoing { subject, frame, seq } in batch.drain(..) {
                self.queued_bytes.fetch_sub(frame.len() as u64, Ordering::Relaxed);
                if let Err(err) = self.data.publish(subject, frame).await {
                    tracing::warn!(error = %err, "cannot hand a message to the message bus");
                    written = false;
                }
                last = seq;
            }
            if let Err(err) = self.data.flush().await {
                tracing::warn!(error = %err, "cannot flush messages to the message bus");
                written = false;
            }
            if !written {
                let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
                while failed.front().is_some_and(|(_, _, at)| at.elapsed() > 2 * FORWARD_WAIT) {
                    failed.pop_front();
                }
                failed.push_back((first, last, Instant::now()));
            }
            sent.send_replace(last);
        }
    }

    /// Subscribes as this node's interest changes, announces the changes to the
    /// peers, then makes a round trip through NATS so they are in force before the
    /// SUBACK. A subject nobody here wants any more lingers before it is dropped.
    async fn interest_loop(
        self: Arc<Self>,
        mut changes: mpsc::UnboundedReceiver<(String, bool)>,
        settled: watch::Sender<u64>,
    ) {
        // One NATS subscription per unshared subject (filters may share one: `a` and
        // `a/#` both need `a`), counted; one set per shared subscription, with whether
        // it is held. Each with until when it lingers once nobody here wants it.
        let mut subjects: HashMap<String, (usize, tokio::task::AbortHandle, Instant)> = HashMap::new();
        let mut groups: HashMap<String, (bool, Vec<tokio::task::AbortHandle>, Instant)> = HashMap::new();
        let mut lingering: VecDeque<(Instant, Lingering)> = VecDeque::new();
        let mut applied = 0;
        let mut batch = Vec::new();
        loop {
            let next = changes.recv_many(&mut batch, 256);
            let received = match lingering.front() {
                Some((deadline, _)) => tokio::time::timeout_at((*deadline).into(), next).await.ok(),
                None => Some(next.await),
            };
            if received == Some(0) {
                return;
            }
            let now = Instant::now();
            while lingering.front().is_some_and(|(deadline, _)| *deadline <= now) {
                let Some((_, dropped)) = lingering.pop_front() else { break };
                // Dropped only when unwanted since its last linger began (a filter may
                // have come and gone again meanwhile).
                match dropped {
                    Lingering::Subject(pattern) => {
                        if subjects.get(&pattern).is_some_and(|(count, _, until)| *count == 0 && *until <= now)
                            && let Some((_, task, _)) = subjects.remove(&pattern)
                        {
                            task.abort();
                        }
                    }
                    Lingering::Group(name) => {
                        if groups.get(&name).is_some_and(|(held, _, until)| !held && *until <= now)
                            && let Some((_, tasks, _)) = groups.remove(&name)
                        {
                            tasks.iter().for_each(tokio::task::AbortHandle::abort);
                        }
                    }
                }
            }
            if batch.is_empty() {
                continue;
            }
            let until = now + LINGER;
            for (subscription, present) in &batch {
                applied += 1;
                let shared = matches!(ferrocore_mqtt::topic::shared_subscription(subscription), Some(Ok(_)));
                match (shared, *present) {
                    (true, true) => match groups.get_mut(subscription) {
                        Some((held, _, _)) => *held = true,
                        None => {
                            let tasks = self.clone().join_group(subscription).await;
                            groups.insert(subscription.clone(), (true, tasks, now));
                        }
                    },
                    (true, false) => {
                        if let Some((held, _, lingers)) = groups.get_mut(subscription) {
                            (*held, *lingers) = (false, until);
                            lingering.push_back((until, Lingering::Group(subscription.clone())));
                        }
                    }
                    (false, true) => {
                        for pattern in subject::of_filter(subscription) {
                            if let Some((count, _, _)) = subjects.get_mut(&pattern) {
                                *count += 1;
                            } else if let Some(task) = self.clone().listen(&pattern).await {
                                subjects.insert(pattern, (1, task, now));
                            }
                        }
                    }
                    (false, false) => {
                        for pattern in subject::of_filter(subscription) {
                            let Some((count, _, lingers)) = subjects.get_mut(&pattern) else { continue };
                            *count = count.saturating_sub(1);
                            if *count == 0 {
                                *lingers = until;
                                lingering.push_back((until, Lingering::Subject(pattern)));
                            }
                        }
                    }
                }
            }
            self.announce(std::mem::take(&mut batch)).await;
            // NATS answers "no responders" once it has handled every earlier command of the connection.
            let probe = format!("ferrocore.sync.{}", self.node);
            let _ = tokio::time::timeout(Duration::from_secs(2), self.data.request(probe.clone(), Bytes::new())).await;
            let _ = tokio::time::timeout(Duration::from_secs(2), self.shared.request(probe, Bytes::new())).await;
            settled.send_replace(applied);
        }
    }

    /// Tells the peers of changes of this node's subscriptions, numbered.
    async fn announce(&self, changes: Vec<(String, bool)>) {
        let announcement = {
            let mut announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
            let changes: Vec<(String, bool)> = changes
                .into_iter()
                .filter(|(subscription, present)| match present {
                    true => announced.held.insert(subscription.clone()),
                    false => announced.held.remove(subscription),
                })
                .collect();
            if changes.is_empty() {
                return;
            }
            announced.seq += 1;
            Announcement { node: self.node.clone(), process: self.process, seq: announced.seq, changes }
        };
        let body = serde_json::to_vec(&announcement).expect("announcements serialize");
        if let Err(err) = self.data.publish(frame::INTEREST, body.into()).await {
            tracing::warn!(error = %err, "cannot tell the peers of this node's subscriptions");
        }
    }

    /// Sends the whole of this node's subscriptions, in parts, to a peer that asked.
    async fn send_snapshot(&self, reply: async_nats::Subject) {
        let (seq, held) = {
            let announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
            (announced.seq, announced.held.iter().cloned().collect::<Vec<_>>())
        };
        let mut parts: Vec<Vec<String>> = vec![Vec::new()];
        let mut size = 0;
        for subscription in held {
            size += subscription.len() + 4;
            if size > SNAPSHOT_PART_BYTES {
                parts.push(Vec::new());
                size = subscription.len() + 4;
            }
            parts.last_mut().expect("one part at least").push(subscription);
        }
        let count = parts.len();
        for (index, subscriptions) in parts.into_iter().enumerate() {
            let last = index + 1 == count;
            let part = Snapshot { node: self.node.clone(), process: self.process, seq, subscriptions, last };
            let body = serde_json::to_vec(&part).expect("snapshots serialize");
            if let Err(err) = self.data.publish(reply.clone(), body.into()).await {
                tracing::warn!(error = %err, "cannot send this node's subscriptions to a peer");
                return;
            }
        }
    }

    /// Asks a peer for the whole of its subscriptions (once at a time per peer).
    fn fetch_snapshot(self: &Arc<Self>, node: &str) {
        if !self.fetching.lock().unwrap_or_else(|e| e.into_inner()).insert(node.to_string()) {
            return;
        }
        let (link, node) = (self.clone(), node.to_string());
        tokio::spawn(async move {
            match link.snapshot_of(&node).await {
                Some(snapshot) => link.peer_interest.lock().unwrap_or_else(|e| e.into_inner()).replace(snapshot),
                None => tracing::warn!(peer = %node, "a peer did not send its subscriptions"),
            }
            link.fetching.lock().unwrap_or_else(|e| e.into_inner()).remove(&node);
        });
    }

    async fn snapshot_of(&self, node: &str) -> Option<Snapshot> {
        let inbox = self.data.new_inbox();
        let mut parts = self.data.subscribe(inbox.clone()).await.ok()?;
        self.data.publish_with_reply(frame::interest_of(node), inbox, Bytes::new()).await.ok()?;
        let mut whole: Option<Snapshot> = None;
        let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
        while let Ok(Some(message)) = tokio::time::timeout_at(deadline, parts.next()).await {
            let part: Snapshot = serde_json::from_slice(&message.payload).ok()?;
            let last = part.last;
            match &mut whole {
                Some(whole) if (whole.process, whole.seq) == (part.process, part.seq) => {
                    whole.subscriptions.extend(part.subscriptions);
                }
                Some(_) => return None,
                None => whole = Some(part),
            }
            if last {
                return whole;
            }
        }
        None
    }

    /// Sends receipts for the peers' messages this node took, a batch per origin process.
    async fn send_receipts(self: Arc<Self>, mut taken: mpsc::UnboundedReceiver<(Origin, Option<String>)>) {
        let mut batch = Vec::with_capacity(256);
        while taken.recv_many(&mut batch, 256).await > 0 {
            let mut by_process: HashMap<u64, Receipts> = HashMap::new();
            for (origin, shared) in batch.drain(..) {
                let receipts = by_process
                    .entry(origin.process)
                    .or_insert_with(|| Receipts { node: self.node.clone(), ..Receipts::default() });
                match shared {
                    Some(name) => receipts.shared.push((origin.seq, name)),
                    None => receipts.seqs.push(origin.seq),
                }
            }
            for (process, receipts) in by_process {
                let body = serde_json::to_vec(&receipts).expect("receipts serialize");
                if let Err(err) = self.shared.publish(frame::receipts_for(process), body.into()).await {
                    tracing::warn!(error = %err, "cannot send receipts to a peer");
                }
            }
            let _ = self.shared.flush().await;
        }
    }

    /// Subscribes to an unshared subject, drained by a task.
    async fn listen(self: Arc<Self>, pattern: &str) -> Option<tokio::task::AbortHandle> {
        match self.data.subscribe(pattern.to_string()).await {
            Ok(subscriber) => Some(tokio::spawn(self.clone().receive_loop(subscriber, None)).abort_handle()),
            Err(err) => {
                tracing::error!(subject = %pattern, error = %err, "cannot subscribe on the message bus");
                None
            }
        }
    }

    /// Queue subscriptions for a shared subscription: one queue group per
    /// `$share/<group>/<filter>` in the whole cluster, so NATS picks one node.
    async fn join_group(self: Arc<Self>, subscription: &str) -> Vec<tokio::task::AbortHandle> {
        let Some(Ok((_, filter))) = ferrocore_mqtt::topic::shared_subscription(subscription) else { return Vec::new() };
        let queue = subject::of_topic(subscription);
        let mut tasks = Vec::new();
        for pattern in subject::of_filter(filter) {
            match self.shared.queue_subscribe(pattern.clone(), queue.clone()).await {
                Ok(subscriber) => {
                    let group = Some(subscription.to_string());
                    tasks.push(tokio::spawn(self.clone().receive_loop(subscriber, group)).abort_handle());
                }
                Err(err) => tracing::error!(subject = %pattern, error = %err, "cannot subscribe on the message bus"),
            }
        }
        tasks
    }

    /// Delivers what arrives on one subscription: to this node's unshared
    /// subscribers (the first copy of each message only), or to one member of `group`.
    async fn receive_loop(self: Arc<Self>, mut subscriber: async_nats::Subscriber, group: Option<String>) {
        while let Some(delivered) = subscriber.next().await {
            let subject = delivered.subject.as_str();
            let Some(arrived) = subject::topic_of(subject).and_then(|t| frame::decode_message(t, delivered.payload))
            else {
                metrics::counter!("ferrocore_cluster_frames_invalid_total").increment(1);
                tracing::warn!(subject, "dropping a message frame that does not decode");
                continue;
            };
            metrics::counter!("ferrocore_cluster_messages_in_total").increment(1);
            let frame::Arrived { message, sent: Sent { qos, retain, receipt }, origin } = arrived;
            let kept = match &group {
                None => {
                    // Checked and routed under one lock: of two copies, the second waits
                    // until the first is in the subscribers' queues, so order holds — also
                    // for deliveries that wait for their records' commit.
                    let mut seen = self.delivered.lock().await;
                    if !seen.first(origin) {
                        continue;
                    }
                    let routed = self.gateway.route_from_peer(message, qos, retain, None);
                    let held = routed.holds_deliveries().then_some(seen);
                    let kept = self.gateway.settle_from_peer(routed).await;
                    drop(held);
                    kept
                }
                Some(group) => {
                    let routed = self.gateway.route_from_peer(message, qos, retain, Some(group));
                    self.gateway.settle_from_peer(routed).await
                }
            };
            // No receipt for what could not be stored: its publisher is not acknowledged.
            if receipt && kept {
                let _ = self.receipts.send((origin, group.clone()));
            }
        }
    }

    async fn control_loop(self: Arc<Self>, mut subscriber: async_nats::Subscriber, registry: Arc<Registry>) {
        while let Some(event) = subscriber.next().await {
            match event.subject.as_str() {
                frame::HEARTBEAT => {
                    let Ok(heartbeat) = serde_json::from_slice::<Heartbeat>(&event.payload) else { continue };
                    if heartbeat.node == self.node {
                        self.standing.lock().unwrap_or_else(|e| e.into_inner()).heard_self(Instant::now());
                        continue;
                    }
                    let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
                    if peers.insert(heartbeat.node.clone(), (Instant::now(), heartbeat.store)).is_none() {
                        tracing::info!(peer = %heartbeat.node, "a peer joined");
                    }
                    drop(peers);
                    let mut interest = self.peer_interest.lock().unwrap_or_else(|e| e.into_inner());
                    if interest.heartbeat(&heartbeat.node, heartbeat.process, heartbeat.interest) {
                        drop(interest);
                        self.fetch_snapshot(&heartbeat.node);
                    }
                }
                frame::INTEREST => {
                    let Ok(announcement) = serde_json::from_slice::<Announcement>(&event.payload) else { continue };
                    let heard = self.peer_interest.lock().unwrap_or_else(|e| e.into_inner()).announced(&announcement);
                    if heard == Heard::Gap {
                        self.fetch_snapshot(&announcement.node);
                    }
                }
                subject if subject.starts_with("ferrocore.c.receipts.") => {
                    let Ok(receipts) = serde_json::from_slice::<Receipts>(&event.payload) else { continue };
                    let mut awaited = self.awaited.lock().unwrap_or_else(|e| e.into_inner());
                    for seq in receipts.seqs {
                        awaited.receipt(seq, &receipts.node, None);
                    }
                    for (seq, name) in &receipts.shared {
                        awaited.receipt(*seq, &receipts.node, Some(name));
                    }
                }
                subject if subject.starts_with("ferrocore.c.interest-of.") => {
                    if let Some(reply) = event.reply {
                        self.send_snapshot(reply).await;
                    }
                }
                frame::REGISTRY => match serde_json::from_slice::<CommittedChange>(&event.payload) {
                    Ok(change) => registry.apply_peer_change(&change).await,
                    Err(err) => tracing::warn!(error = %err, "dropping a registry change that does not decode"),
                },
                frame::RETAINED => {
                    if let Ok(topic) = std::str::from_utf8(&event.payload) {
                        self.gateway.reload_retained(topic).await;
                    }
                }
                frame::CLAIM => {
                    let (link, client_id) = (self.clone(), String::from_utf8_lossy(&event.payload).into_owned());
                    tokio::spawn(async move {
                        let (held, version) = link.gateway.release(&client_id).await;
                        if held {
                            tracing::info!(client_id, "another node took the client id");
                        }
                        link.answer(event.reply, held, version).await;
                    });
                }
                frame::DELETE_CONNECTION => {
                    let Ok(asked) = serde_json::from_slice::<DeleteConnection>(&event.payload) else { continue };
                    let link = self.clone();
                    tokio::spawn(async move {
                        let gateway = &link.gateway;
                        let held = gateway
                            .delete_connection_here(&asked.client_id, asked.clean_session, asked.prevent_will)
                            .await;
                        link.answer(event.reply, held, 0).await;
                    });
                }
                _ => {}
            }
        }
    }

    async fn answer(&self, reply: Option<async_nats::Subject>, held: bool, version: u64) {
        let Some(reply) = reply else { return };
        let answer = Answer { node: self.node.clone(), held, version };
        let answer = serde_json::to_vec(&answer).expect("answers serialize");
        if let Err(err) = self.data.publish(reply, answer.into()).await {
            tracing::warn!(error = %err, "cannot answer a peer");
        }
    }

    /// Asks every live peer and gathers their answers (those that answer within the
    /// wait), with the number of live peers asked.
    async fn ask(&self, subject: &'static str, payload: Bytes) -> (Vec<Answer>, usize) {
        let expected = self.live_peers().len();
        if expected == 0 {
            return (Vec::new(), 0);
        }
        let inbox = self.data.new_inbox();
        let mut answers = match self.data.subscribe(inbox.clone()).await {
            Ok(answers) => answers,
            Err(err) => {
                tracing::warn!(subject, error = %err, "cannot ask the peers");
                return (Vec::new(), expected);
            }
        };
        if let Err(err) = self.data.publish_with_reply(subject, inbox, payload).await {
            tracing::warn!(subject, error = %err, "cannot ask the peers");
            return (Vec::new(), expected);
        }
        let mut gathered = Vec::with_capacity(expected);
        let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
        while gathered.len() < expected {
            match tokio::time::timeout_at(deadline, answers.next()).await {
                Ok(Some(message)) => gathered.extend(serde_json::from_slice::<Answer>(&message.payload).ok()),
                _ => break,
            }
        }
        if gathered.len() < expected {
            tracing::warn!(subject, expected, answered = gathered.len(), "some peers did not answer in time");
        }
        (gathered, expected)
    }

    /// Tells the peers of each registry write this node commits.
    async fn announce_registry(self: Arc<Self>, registry: Arc<Registry>) {
        let mut committed = registry.committed_changes();
        loop {
            match committed.recv().await {
                Ok(change) => {
                    let body = serde_json::to_vec(&*change).expect("changes serialize");
                    if let Err(err) = self.data.publish(frame::REGISTRY, body.into()).await {
                        tracing::error!(error = %err, "cannot tell the peers of a registry change");
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    metrics::counter!("ferrocore_cluster_registry_changes_missed_total").increment(missed);
                    tracing::error!(missed, "registry changes were not told to the peers");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Checks this node's standing four times a heartbeat, so it steps down well
    /// before its peers, who look once a heartbeat, count it dead.
    async fn standing_loop(self: Arc<Self>) {
        let mut every = tokio::time::interval(HEARTBEAT_EVERY / 4);
        loop {
            every.tick().await;
            let decided = self.standing.lock().unwrap_or_else(|e| e.into_inner()).tick(Instant::now());
            match decided {
                Some(Move::StepDown) => {
                    self.out.store(true, Ordering::SeqCst);
                    let connections = self.gateway.step_down();
                    tracing::error!(
                        connections,
                        "cut off from the cluster (this node's heartbeats do not come back through NATS): \
                         stepped down, every connection closed and every session left to the other nodes"
                    );
                }
                Some(Move::Rejoin) => {
                    let sessions = self.gateway.rejoin().await;
                    self.out.store(false, Ordering::SeqCst);
                    tracing::info!(sessions, "rejoined the cluster");
                }
                None => {}
            }
        }
    }

    /// Says "here" every second on the heartbeats' own connection, and notices
    /// peers that went silent.
    async fn heartbeat_loop(self: Arc<Self>, registry: Arc<Registry>) {
        let probe = self.clone();
        tokio::spawn(async move {
            loop {
                probe.store_reachable.store(registry.store_answers().await, Ordering::Relaxed);
                tokio::time::sleep(HEARTBEAT_EVERY).await;
            }
        });
        let mut every = tokio::time::interval(HEARTBEAT_EVERY);
        let mut known: HashSet<String> = HashSet::new();
        loop {
            every.tick().await;
            let heartbeat = Heartbeat {
                node: self.node.clone(),
                store: self.store_reachable.load(Ordering::Relaxed),
                process: self.process,
                interest: self.announced.lock().unwrap_or_else(|e| e.into_inner()).seq,
            };
            let body = serde_json::to_vec(&heartbeat).expect("heartbeats serialize");
            let _ = self.beats.publish(frame::HEARTBEAT, body.into()).await;
            let live: HashSet<String> = self.live_peers().into_iter().map(|p| p.node).collect();
            for gone in known.difference(&live) {
                self.peer_interest.lock().unwrap_or_else(|e| e.into_inner()).forget(gone);
                self.awaited.lock().unwrap_or_else(|e| e.into_inner()).gone(gone);
                // One node takes the silent node's parked sessions: the first by id of
                // those alive, and only while it is in the cluster (else every peer seems silent).
                let first = live.iter().chain([&self.node]).min().is_some_and(|first| *first == self.node);
                let adopter = first && self.bus_connected() && !self.out.load(Ordering::SeqCst);
                tracing::warn!(peer = %gone, adopting = adopter, "a peer went silent");
                if adopter {
                    let (gateway, gone) = (self.gateway.clone(), gone.clone());
                    tokio::spawn(async move {
                        let taken = gateway.adopt_sessions(&gone).await;
                        tracing::info!(peer = %gone, sessions = taken, "took the parked sessions of a silent peer");
                    });
                }
            }
            known = live;
        }
    }
}

#[async_trait::async_trait]
impl Peers for Link {
    fn forward(&self, message: &Arc<Message>, qos: QoS, retain: bool) -> Forward {
        if self.backlog() >= BACKLOG_REFUSES || self.queued_bytes.load(Ordering::Relaxed) >= BACKLOG_REFUSES_BYTES {
            return Forward::Refused;
        }
        let wait = if qos == QoS::AtLeastOnce { self.wait_for(&message.topic) } else { Wait::Nothing };
        let sent = Sent { qos, retain, receipt: matches!(wait, Wait::Receipts(_)) };
        let mut frame = frame::encode_message(message, sent, Origin { process: self.process, seq: 0 });
        let subject = subject::of_topic(&message.topic);
        // Numbered and queued under one lock, so the forward loop sees them in order
        // and its watermark never passes a message still waiting.
        let order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        let seq = self.queued.fetch_add(1, Ordering::SeqCst) + 1;
        frame::set_seq(&mut frame, seq);
        let forward = match wait {
            Wait::Receipts(takers) => {
                let mut awaited = self.awaited.lock().unwrap_or_else(|e| e.into_inner());
                awaited.expect(seq, takers, Instant::now(), 2 * FORWARD_WAIT);
                Forward::Awaited(seq)
            }
            Wait::Flush => Forward::Awaited(seq),
            Wait::Nothing => Forward::Queued,
        };
        self.queued_bytes.fetch_add(frame.len() as u64, Ordering::Relaxed);
        let queued = self.outgoing.send(Outgoing { subject, frame: frame.freeze(), seq }).is_ok();
        drop(order);
        if queued { forward } else { Forward::Refused }
    }

    async fn room(&self) -> Result<(), PeersError> {
        if self.backlog() < BACKLOG_SLOWS {
            return Ok(());
        }
        self.sent_up_to(self.queued.load(Ordering::SeqCst).saturating_sub(BACKLOG_SLOWS / 2)).await
    }

    async fn forwarded(&self, number: u64) -> Result<(), PeersError> {
        self.sent_up_to(number).await?;
        let failed = self
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(first, last, _)| (*first..=*last).contains(&number));
        if failed {
            return Err(PeersError::Unreachable("the message could not be written out to NATS".into()));
        }
        let due = self.awaited.lock().unwrap_or_else(|e| e.into_inner()).outcome(number);
        let Some(due) = due else { return Ok(()) };
        let missing = match tokio::time::timeout(FORWARD_WAIT, due).await {
            Ok(Ok(Ok(()))) => return Ok(()),
            Ok(Ok(Err(missing))) => missing,
            _ => {
                let missing = self.awaited.lock().unwrap_or_else(|e| e.into_inner()).give_up(number);
                missing.unwrap_or_else(|| Missing("a peer".into()))
            }
        };
        metrics::counter!("ferrocore_cluster_receipts_missing_total").increment(1);
        Err(PeersError::NotTaken(missing.to_string()))
    }

    fn interest(&self, subscription: &str, present: bool) {
        self.noted.fetch_add(1, Ordering::SeqCst);
        let _ = self.interest.send((subscription.to_string(), present));
    }

    async fn interest_settled(&self) {
        let target = self.noted.load(Ordering::SeqCst);
        let mut settled = self.settled.clone();
        let _ = tokio::time::timeout(FORWARD_WAIT, settled.wait_for(|applied| *applied >= target)).await;
    }

    async fn claim(&self, client_id: &str) -> Result<u64, PeersError> {
        let (answers, expected) = self.ask(frame::CLAIM, Bytes::copy_from_slice(client_id.as_bytes())).await;
        for answer in answers.iter().filter(|a| a.held) {
            tracing::info!(client_id, from = %answer.node, "took the client id from another node");
        }
        match expected.saturating_sub(answers.len()) {
            0 => Ok(answers.iter().map(|a| a.version).max().unwrap_or(0)),
            missing => Err(PeersError::Unanswered { missing }),
        }
    }

    async fn delete_connection(&self, client_id: &str, clean_session: bool, prevent_will: bool) -> bool {
        let asked = DeleteConnection { client_id: client_id.to_string(), clean_session, prevent_will };
        let body = serde_json::to_vec(&asked).expect("requests serialize");
        self.ask(frame::DELETE_CONNECTION, body.into()).await.0.iter().any(|a| a.held)
    }

    fn retained_changed(&self, topic: &str) {
        let (data, topic) = (self.data.clone(), topic.to_string());
        tokio::spawn(async move {
            if let Err(err) = data.publish(frame::RETAINED, topic.into()).await {
                tracing::warn!(error = %err, "cannot tell the peers of a retained message");
            }
        });
    }

    fn reachable(&self) -> bool {
        self.bus_connected() && self.store_reachable.load(Ordering::Relaxed) && !self.out.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_url_are_taken_out_of_it() {
        let user = split_credentials("nats://ferro:p%40ss@10.0.0.5:4222");
        let expected = Some(Credentials::UserPassword("ferro".into(), "p@ss".into()));
        assert_eq!(user, ("nats://10.0.0.5:4222".to_string(), expected));
        let token = split_credentials("tls://s3cret@nats.internal:4222");
        assert_eq!(token, ("tls://nats.internal:4222".to_string(), Some(Credentials::Token("s3cret".into()))));
        assert_eq!(split_credentials("nats://127.0.0.1:4222"), ("nats://127.0.0.1:4222".to_string(), None));
    }
}
