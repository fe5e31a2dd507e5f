//! The Device Shadow service: one classic and any number of named shadows per
//! thing, stored in the record store with optimistic revisions and gone with their
//! thing (DeleteThing removes the `<thing>/` records in its own batch).
//!
//! Every request for a shadow (from MQTT, the HTTP API or a rule) goes through the
//! *lane* that owns the shadow's thing ([`lane`]): a task that takes the requests
//! waiting for it in arrival order, applies them one after another to the shadow
//! as it knows it, commits everything it changed in one store batch and only then
//! publishes the answers, in order. So a device may keep several updates in flight
//! (the gateway does not wait for one to finish before reading the next), updates
//! of one shadow are never lost or reordered, and a busy shadow costs one store
//! write per round rather than one per update.
//!
//! Each lane keeps a bounded write-through cache of the shadows and thing ids it
//! served. A cached entry is trusted only through the store's expectations: every
//! write expects the shadow at its cached revision and holds the thing at its
//! cached revision, so a write by another process, an UpdateThing or a DeleteThing
//! turns into a conflict, after which the lane reloads and applies again. GETs read
//! the store.
//!
//! Boundary: this crate knows shadows, the thing record's id and revision, and the
//! store; it does not know the registry's other records, policies or MQTT
//! connections. Whoever receives its notifications ([`Publisher`]) routes them.

mod cache;
mod lane;

use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock};

use ferrocore_message::{Notification, Publisher};
use ferrocore_shadow::topic::{self, Operation, ShadowRequest};
use ferrocore_shadow::{Limits, Shadow, ShadowError, request_token};
use ferrocore_store::{Collection, RecordStore};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use lane::{Job, Op, Reply};

/// How shadows behave; AWS fixes the limits, the extensions are ferrocore's and off by default.
#[derive(Debug, Clone, Default)]
pub struct ShadowSettings {
    pub limits: Limits,
    /// Past versions kept per shadow for operators (0: none, as AWS).
    pub history_versions: u64,
    /// Publish `<shadow>/update/removed` when an update removes desired keys.
    pub removal_notifications: bool,
}

/// One page of a thing's named shadows.
#[derive(Debug, Clone)]
pub struct NamedShadows {
    pub names: Vec<String>,
    pub next_token: Option<String>,
    pub timestamp: u64,
}

pub const DEFAULT_LIST_PAGE_SIZE: usize = 25;
const MAX_LIST_PAGE_SIZE: usize = 100;
/// Lanes, each a task owning the shadows of the things that hash to it.
const LANES: usize = 8;
/// Requests that may wait for one lane; a full lane holds its senders back.
const LANE_QUEUE: usize = 1024;
/// Shadows (and, separately, things) cached over all lanes.
const CACHED_SHADOWS: usize = 32_768;

/// A shadow record: the shadow and the thing it belongs to. A thing deleted and
/// created again under the same name gets a new id, so shadows left by the old
/// one (a delete racing an update) never resurface.
#[derive(Serialize, Deserialize)]
struct StoredShadow {
    thing_id: String,
    #[serde(flatten)]
    shadow: Shadow,
}

/// A stored past version: the `update/documents` snapshot and when it was written.
#[derive(Serialize, Deserialize)]
struct PastVersion {
    timestamp: u64,
    document: Value,
}

/// `<thing>/<shadow name>`, empty for the classic shadow (the store's documented layout).
fn shadow_key(thing: &str, shadow: Option<&str>) -> String {
    format!("{thing}/{}", shadow.unwrap_or(""))
}

fn version_key(thing: &str, shadow: Option<&str>, version: u64) -> String {
    format!("{thing}/{}/{version:020}", shadow.unwrap_or(""))
}

/// The name AWS quotes in "No shadow exists with name: '...'".
fn missing(thing: &str, shadow: Option<&str>) -> ShadowError {
    ShadowError::NoShadow(shadow.unwrap_or(thing).to_string())
}

fn internal(err: impl std::fmt::Display) -> ShadowError {
    tracing::error!(error = %err, "shadow storage failure");
    ShadowError::Internal
}

fn check_name(shadow: Option<&str>) -> Result<(), ShadowError> {
    match shadow {
        Some(name) if !topic::valid_shadow_name(name) => {
            Err(ShadowError::InvalidRequest("Shadow names are 1 to 64 characters of [a-zA-Z0-9:_-].".into()))
        }
        _ => Ok(()),
    }
}

/// A message on `<shadow topic prefix>/<suffix>` (e.g. `update/accepted`).
pub fn shadow_notification(thing: &str, shadow: Option<&str>, suffix: &str, payload: &Value) -> Notification {
    Notification {
        topic: format!("{}/{suffix}", topic::prefix(thing, shadow)),
        payload: serde_json::to_vec(payload).expect("JSON values serialize"),
        qos: 1,
        hops: 0,
    }
}

/// Epoch seconds, the shadows' clock.
pub fn system_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// The service; cheap to clone.
#[derive(Clone)]
pub struct ShadowService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn RecordStore>,
    settings: ShadowSettings,
    now: fn() -> u64,
    lanes: Vec<mpsc::Sender<Job>>,
    lane_of: foldhash::fast::FixedState,
    /// Where answers and notifications go; attached once the gateway is up.
    publisher: OnceLock<Arc<dyn Publisher>>,
}

impl ShadowService {
    /// Starts the lanes (inside a Tokio runtime). `now` gives epoch seconds.
    pub fn start(store: Arc<dyn RecordStore>, settings: ShadowSettings, now: fn() -> u64) -> Self {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..LANES).map(|_| mpsc::channel(LANE_QUEUE)).unzip();
        let inner = Arc::new(Inner {
            store,
            settings,
            now,
            lanes: senders,
            lane_of: foldhash::fast::FixedState::default(),
            publisher: OnceLock::new(),
        });
        for receiver in receivers {
            // The lane holds the service weakly: dropping the last handle closes the queues and ends it.
            tokio::spawn(lane::run(Arc::downgrade(&inner), receiver, CACHED_SHADOWS / LANES));
        }
        Self { inner }
    }

    /// Where accepted and rejected documents are published (the device gateway).
    pub fn attach_publisher(&self, publisher: Arc<dyn Publisher>) {
        if self.inner.publisher.set(publisher).is_err() {
            tracing::warn!("shadow service publisher attached twice; keeping the first");
        }
    }

    /// A request published on a shadow topic, queued in order behind earlier requests
    /// for the same thing; its answer (`accepted` or `rejected`, and for updates
    /// `delta` and `documents`) is published when it is durable. A full lane refuses it
    /// at once with 429 on `<op>/rejected`, as AWS throttles a thing's in-flight
    /// requests (the publisher is never held up). `hops`: rule actions that led to the
    /// request, carried to the answers.
    pub async fn submit(&self, request: ShadowRequest<'_>, payload: &[u8], hops: u8) {
        let op = match request.operation {
            Operation::Update => Op::Update(payload.to_vec()),
            Operation::Get | Operation::Delete => match request_token(payload) {
                Ok(token) if request.operation == Operation::Get => Op::Get(token),
                Ok(token) => Op::Delete(token),
                Err(error) => Op::Refused(request.operation, error),
            },
        };
        let job = Job {
            thing: request.thing.to_string(),
            shadow: request.shadow.map(str::to_string),
            op,
            reply: Reply::Publish { hops },
        };
        match self.inner.lanes[self.lane_of(request.thing)].try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                metrics::counter!("ferrocore_shadow_requests_total", "operation" => job.op_name(), "outcome" => "throttled")
                    .increment(1);
                if let Some(publisher) = self.inner.publisher.get() {
                    publisher.publish(vec![lane::rejection(&job, &ShadowError::Throttled)]).await;
                }
            }
            Err(mpsc::error::TrySendError::Closed(job)) => lane::refuse(job, ShadowError::Internal),
        }
    }

    fn lane_of(&self, thing: &str) -> usize {
        self.inner.lane_of.hash_one(thing) as usize % self.inner.lanes.len()
    }

    /// UpdateThingShadow: the `update/accepted` document, once durable (the
    /// notifications are published too).
    pub async fn update(&self, thing: &str, shadow: Option<&str>, payload: &[u8]) -> Result<Value, ShadowError> {
        self.ask(thing, shadow, Op::Update(payload.to_vec())).await
    }

    /// GetThingShadow: the GET document.
    pub async fn get(
        &self,
        thing: &str,
        shadow: Option<&str>,
        client_token: Option<&str>,
    ) -> Result<Value, ShadowError> {
        self.ask(thing, shadow, Op::Get(client_token.map(str::to_string))).await
    }

    /// DeleteThingShadow: the `delete/accepted` document; the version counter survives (AWS).
    pub async fn delete(
        &self,
        thing: &str,
        shadow: Option<&str>,
        client_token: Option<&str>,
    ) -> Result<Value, ShadowError> {
        self.ask(thing, shadow, Op::Delete(client_token.map(str::to_string))).await
    }

    async fn ask(&self, thing: &str, shadow: Option<&str>, op: Op) -> Result<Value, ShadowError> {
        let (answer, answered) = oneshot::channel();
        self.queue(thing, shadow, op, Reply::Caller(answer)).await;
        answered.await.map_err(|_| internal("the shadow lane stopped"))?
    }

    async fn queue(&self, thing: &str, shadow: Option<&str>, op: Op, reply: Reply) {
        let job = Job { thing: thing.to_string(), shadow: shadow.map(str::to_string), op, reply };
        if let Err(mpsc::error::SendError(job)) = self.inner.lanes[self.lane_of(thing)].send(job).await {
            // Only while the service shuts down: answer instead of dropping.
            lane::refuse(job, ShadowError::Internal);
        }
    }

    /// The thing's id, read from the store, or 404 "Thing not found".
    async fn thing_id(&self, thing: &str) -> Result<String, ShadowError> {
        match self.inner.store.get(Collection::Thing, thing).await.map_err(internal)? {
            Some(record) => Ok(lane::decode_thing_id(&record.body)?),
            None => Err(ShadowError::ThingNotFound),
        }
    }

    /// The names of a thing's existing named shadows, in name order; the token is
    /// the last name of the previous page.
    pub async fn list_named(
        &self,
        thing: &str,
        next_token: Option<&str>,
        page_size: Option<i64>,
    ) -> Result<NamedShadows, ShadowError> {
        let size = match page_size {
            None => DEFAULT_LIST_PAGE_SIZE,
            Some(n) if (1..=MAX_LIST_PAGE_SIZE as i64).contains(&n) => n as usize,
            Some(_) => {
                return Err(ShadowError::InvalidRequest(format!(
                    "pageSize must be between 1 and {MAX_LIST_PAGE_SIZE}."
                )));
            }
        };
        let thing_id = self.thing_id(thing).await?;
        let prefix = shadow_key(thing, None);
        let mut after = match next_token.filter(|t| !t.is_empty()) {
            Some(token) if topic::valid_shadow_name(token) => format!("{prefix}{token}"),
            Some(_) => return Err(ShadowError::InvalidRequest("The nextToken is not valid.".into())),
            None => prefix.clone(),
        };
        let mut names = Vec::new();
        'pages: loop {
            let batch = self.inner.store.list(Collection::Shadow, Some(&after), 200).await.map_err(internal)?;
            let Some(last) = batch.last() else { break };
            after = last.key.clone();
            for record in &batch {
                let Some(name) = record.key.strip_prefix(&prefix) else { break 'pages };
                let stored: StoredShadow = serde_json::from_slice(&record.body).map_err(internal)?;
                if stored.thing_id == thing_id && stored.shadow.exists {
                    names.push(name.to_string());
                    if names.len() > size {
                        break 'pages;
                    }
                }
            }
        }
        let next_token = (names.len() > size).then(|| {
            names.truncate(size);
            names.last().cloned().unwrap_or_default()
        });
        Ok(NamedShadows { names, next_token, timestamp: (self.inner.now)() })
    }

    /// A past version of a shadow, when history is kept (ferrocore's extension).
    pub async fn version(&self, thing: &str, shadow: Option<&str>, version: u64) -> Result<Value, ShadowError> {
        let kept = self.inner.settings.history_versions;
        if kept == 0 {
            return Err(ShadowError::InvalidRequest(
                "Shadow history is off; set shadow_history_versions to keep past versions.".into(),
            ));
        }
        check_name(shadow)?;
        self.thing_id(thing).await?;
        let key = version_key(thing, shadow, version);
        let Some(record) = self.inner.store.get(Collection::ShadowVersion, &key).await.map_err(internal)? else {
            return Err(ShadowError::VersionNotKept { version, kept });
        };
        let past: PastVersion = serde_json::from_slice(&record.body).map_err(internal)?;
        Ok(past.document)
    }
}
