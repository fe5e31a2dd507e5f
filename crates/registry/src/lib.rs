//! The device registry: AWS IoT's registry operations (things, thing types, thing
//! groups, billing groups, tags, endpoint and account settings) with AWS's rules,
//! persisted through a [`RecordStore`].
//!
//! Each operation reads the records it needs, decides with the pure rules of
//! `ferrocore_model`, and commits its writes as one batch conditioned on the
//! revisions it read. A concurrent change makes the batch fail and the operation
//! run again on fresh data, so the rules hold even with several writers.

mod authorization;
mod billing_groups;
mod ca_certificates;
mod certificates;
mod credentials;
mod dependencies;
mod indexes;
mod messages;
mod paging;
mod policies;
mod principals;
mod role_aliases;
mod settings;
mod tags;
mod thing_groups;
mod thing_index;
mod thing_types;
mod things;
mod topic_rule_destinations;
mod topic_rules;

use std::sync::Arc;

use ferrocore_model::{Account, Arn, Error, Millis, ResourceKind, Result};
use ferrocore_store::{Collection, Expect, RecordStore, StoreError, Write};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use authorization::{AuthCheck, AuthResult, Permissions, TestAuthorization};
pub use billing_groups::{BillingGroupCreated, CreateBillingGroup};
pub use ca_certificates::{RegisterCaCertificate, UpdateCaCertificate};
pub use certificates::{CaTrust, CertificateCreated, DeviceTrust, TrustSnapshot};
pub use credentials::{CredentialError, Credentials};
pub use dependencies::{Dependency, DependencyIndex};
pub use messages::{
    ApiPublish, DataPlane, MessageProperties, MessageSink, Notification, PublishRefused, Publisher, RetainedMessage,
    RoutedMessage, user_properties_json,
};
pub use paging::{MAX_PAGE_SIZE, Page, PageRequest};
pub use settings::{EndpointType, EventConfigurations, LoggingOptions, Setting};
pub use thing_groups::{CreateThingGroup, GroupRef, ListThingGroups, ThingGroupCreated, ThingGroupView};
pub use thing_types::{CreateThingType, ThingTypeCreated};
pub use things::{CreateThing, ListThings, ThingCreated, UpdateThing};
pub use topic_rule_destinations::check_url;
pub use topic_rules::ListTopicRules;

/// Knobs of registry behaviour that AWS fixes and an operator may change.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub account: Account,
    /// How long a thing type must stay deprecated before it can be deleted
    /// (AWS: 5 minutes; ferrocore's default: none, see README "deviations").
    pub thing_type_delete_wait_ms: Millis,
    /// The host DescribeEndpoint answers for every endpoint type.
    pub endpoint_host: String,
    /// Largest policy document, in non-whitespace characters (AWS: 2048).
    pub policy_document_limit: usize,
}

/// The current time, passed in so the registry stays deterministic under test.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> Millis;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Millis::try_from(since_epoch.as_millis()).unwrap_or(Millis::MAX)
    }
}

pub struct Registry {
    store: Arc<dyn RecordStore>,
    config: RegistryConfig,
    clock: Arc<dyn Clock>,
    /// Signs the certificates the registry issues (CreateKeysAndCertificate, CSRs).
    issuer: Arc<ferrocore_pki::Issuer>,
    /// Registered certificates by id, for the device gateway's TLS verifier. Reloaded
    /// before any change to certificates or CAs is acknowledged, so a device can
    /// connect as soon as its certificate is registered and not after it is revoked.
    trust: Arc<std::sync::RwLock<TrustSnapshot>>,
    /// Taken by each refresh of `trust`; true while the snapshot may be stale (a refresh
    /// failed), so the next refresh reloads it whole.
    trust_refresh: tokio::sync::Mutex<bool>,
    /// Counts committed writes that may change some connection's permissions.
    permission_generation: std::sync::atomic::AtomicU64,
    /// Announces each such write with the records it changed; live connections that
    /// depend on one of them re-check their permissions.
    permission_changes: tokio::sync::broadcast::Sender<PermissionChange>,
    /// Counts committed changes to topic rules and destinations (the rules engine reloads on each).
    rule_changes: tokio::sync::watch::Sender<u64>,
    /// Every committed write that changed what other nodes of a cluster keep in memory.
    committed: tokio::sync::broadcast::Sender<Arc<CommittedChange>>,
    /// Counts resyncs: after each, every live connection re-checks its permissions.
    resyncs: tokio::sync::watch::Sender<u64>,
    connection_permissions: std::sync::Mutex<authorization::ConnectionPermissions>,
    parsed_policies: authorization::ParsedPolicies,
}

/// A record as read, with the revision later writes are conditioned on.
struct Loaded<T> {
    value: T,
    revision: i64,
}

impl<T> Loaded<T> {
    fn expect(&self) -> Expect {
        Expect::Revision(self.revision)
    }
}

/// Attempts before a busy record is reported as a failure.
const MAX_ATTEMPTS: usize = 16;

/// Records read from the store at a time by scans.
const SCAN_CHUNK: usize = 500;

fn decode_record<T: DeserializeOwned>(collection: Collection, record: &ferrocore_store::Record) -> Result<T> {
    serde_json::from_slice(&record.body).map_err(|err| {
        tracing::error!(collection = collection.as_str(), key = record.key, error = %err, "undecodable record");
        Error::Internal("A stored record could not be read.".into())
    })
}

fn storage_failure(err: StoreError) -> Error {
    tracing::error!(error = %err, "store failure");
    Error::Internal("An internal error occurred while accessing storage.".into())
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("registry records always serialize")
}

fn put<T: Serialize>(collection: Collection, key: &str, expect: Expect, value: &T) -> Write {
    Write::put(collection, key, expect, encode(value))
}

/// What an operation decided: the writes to commit and the answer to give once they are durable.
struct Outcome<R> {
    writes: Vec<Write>,
    answer: R,
    /// The writes leave every permission as it was, whatever records they rewrite.
    keeps_permissions: bool,
}

impl<R> Outcome<R> {
    fn write(writes: Vec<Write>, answer: R) -> Self {
        Self { writes, answer, keeps_permissions: false }
    }

    /// Writes that rewrite records without changing what policies read (tags, descriptions).
    fn write_keeping_permissions(writes: Vec<Write>, answer: R) -> Self {
        Self { writes, answer, keeps_permissions: true }
    }

    fn answer(answer: R) -> Self {
        Self { writes: Vec::new(), answer, keeps_permissions: true }
    }
}

impl Registry {
    pub fn new(
        store: Arc<dyn RecordStore>,
        config: RegistryConfig,
        clock: Arc<dyn Clock>,
        issuer: Arc<ferrocore_pki::Issuer>,
    ) -> Self {
        Self {
            store,
            config,
            clock,
            issuer,
            trust: Default::default(),
            trust_refresh: tokio::sync::Mutex::new(true),
            permission_generation: Default::default(),
            permission_changes: tokio::sync::broadcast::Sender::new(PERMISSION_CHANGES_BUFFERED),
            rule_changes: tokio::sync::watch::Sender::new(0),
            committed: tokio::sync::broadcast::Sender::new(PERMISSION_CHANGES_BUFFERED),
            resyncs: tokio::sync::watch::Sender::new(0),
            connection_permissions: Default::default(),
            parsed_policies: Default::default(),
        }
    }

    /// The records each committed write changed, for writes that may change some
    /// connection's permissions. A receiver that lags must assume everything changed.
    pub fn permission_changes(&self) -> tokio::sync::broadcast::Receiver<PermissionChange> {
        self.permission_changes.subscribe()
    }

    /// Each committed write that changed the certificate snapshot, some connection's
    /// permissions or the topic rules: what another node of a cluster, sharing the
    /// store, must apply with [`Self::apply_peer_change`].
    pub fn committed_changes(&self) -> tokio::sync::broadcast::Receiver<Arc<CommittedChange>> {
        self.committed.subscribe()
    }

    /// Applies a write another node committed: reloads the certificate snapshot's
    /// entries, forgets and re-checks the permissions it changed, reloads the rules.
    pub async fn apply_peer_change(&self, change: &CommittedChange) {
        let touched: Vec<(Collection, String)> = (change.certificates.iter().map(|id| (Collection::Certificate, id)))
            .chain(change.cas.iter().map(|id| (Collection::CaCertificate, id)))
            .map(|(collection, id)| (collection, id.clone()))
            .collect();
        if !touched.is_empty()
            && let Err(err) = self.refresh_trust_of(&touched).await
        {
            tracing::error!(error = %err, "cannot reload the certificate snapshot after another node's write");
        }
        if !change.dependencies.is_empty() {
            self.announce(change.dependencies.clone());
        }
        if change.rules {
            self.rule_changes.send_modify(|count| *count += 1);
        }
    }

    /// Reads again what this node keeps of the registry, after writes by other nodes
    /// may have been missed (a cluster node back on NATS): the whole certificate
    /// snapshot, no remembered permissions, the rules; live connections re-check
    /// their permissions (see [`Self::resyncs`]).
    pub async fn resync(&self) -> Result<()> {
        self.refresh_trust().await?;
        self.permission_generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.connection_permissions.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.rule_changes.send_modify(|count| *count += 1);
        self.resyncs.send_modify(|count| *count += 1);
        Ok(())
    }

    /// Marked changed after each [`Self::resync`]: every live connection must re-check.
    pub fn resyncs(&self) -> tokio::sync::watch::Receiver<u64> {
        self.resyncs.subscribe()
    }

    /// How many writes that may change permissions have committed.
    pub fn permission_generation(&self) -> u64 {
        self.permission_generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A receiver marked changed after every committed change to topic rules or destinations.
    pub fn rule_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.rule_changes.subscribe()
    }

    /// The certificate snapshot, kept current by the registry (load it once with [`Self::refresh_trust`]).
    pub fn trust(&self) -> Arc<std::sync::RwLock<TrustSnapshot>> {
        self.trust.clone()
    }

    /// Whether the store answers a read within two seconds (for `/health`).
    pub async fn store_answers(&self) -> bool {
        let read = self.store.get(Collection::Setting, "health");
        matches!(tokio::time::timeout(std::time::Duration::from_secs(2), read).await, Ok(Ok(_)))
    }

    pub fn account(&self) -> &Account {
        &self.config.account
    }

    pub fn arn(&self, kind: ResourceKind, name: &str) -> String {
        Arn::new(kind, name).render(&self.config.account)
    }

    fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    async fn load<T: DeserializeOwned>(&self, collection: Collection, key: &str) -> Result<Option<Loaded<T>>> {
        let Some(record) = self.store.get(collection, key).await.map_err(storage_failure)? else {
            return Ok(None);
        };
        Ok(Some(Loaded { value: decode_record(collection, &record)?, revision: record.revision }))
    }

    /// One page of the records of a collection for which `keep` holds, in key order,
    /// from the request's token (see [`paging::PageBuilder`]).
    async fn page_where<T: DeserializeOwned>(
        &self,
        collection: Collection,
        request: &PageRequest,
        keep: impl FnMut(&T) -> bool,
    ) -> Result<Page<T>> {
        self.page_with_prefix(collection, "", request, keep).await
    }

    /// [`Self::page_where`] over the records whose keys start with `prefix` (a name
    /// prefix filter): the reads start at the prefix and stop after its last key.
    async fn page_with_prefix<T: DeserializeOwned>(
        &self,
        collection: Collection,
        prefix: &str,
        request: &PageRequest,
        mut keep: impl FnMut(&T) -> bool,
    ) -> Result<Page<T>> {
        let mut builder = paging::PageBuilder::new(request, request.after()?.filter(|after| after.as_str() >= prefix))?;
        if builder.after().is_none() && !prefix.is_empty() {
            // `list` reads keys after a key: the one equal to the prefix is read alone.
            if let Some(record) = self.store.get(collection, prefix).await.map_err(storage_failure)? {
                let value = decode_record(collection, &record)?;
                if let Some(page) = builder.offer(record.key, Some(value), &mut keep) {
                    return Ok(page);
                }
            } else {
                builder.skip_to(prefix.to_string());
            }
        }
        loop {
            let batch = self.store.list(collection, builder.after(), builder.chunk()).await.map_err(storage_failure)?;
            let batch: Vec<_> = batch.into_iter().take_while(|record| record.key.starts_with(prefix)).collect();
            let fetched = batch.len();
            for record in batch {
                let value = decode_record(collection, &record)?;
                if let Some(page) = builder.offer(record.key, Some(value), &mut keep) {
                    return Ok(page);
                }
            }
            if let Some(page) = builder.chunk_done(fetched) {
                return Ok(page);
            }
        }
    }

    /// Every record of a collection, in key order.
    async fn load_all<T: DeserializeOwned>(&self, collection: Collection) -> Result<Vec<Loaded<T>>> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let batch = self.store.list(collection, after.as_deref(), SCAN_CHUNK).await.map_err(storage_failure)?;
            let Some(last) = batch.last() else { break };
            after = Some(last.key.clone());
            for record in batch {
                all.push(Loaded { value: decode_record(collection, &record)?, revision: record.revision });
            }
        }
        Ok(all)
    }

    /// Runs `decide` and commits its writes; on a concurrent change, decides again.
    ///
    /// `decide` is a closure returning a future (not an async closure) so that the
    /// futures of the operations stay `Send` for any lifetime, as servers need.
    async fn transact<R, F>(&self, mut decide: impl FnMut() -> F) -> Result<R>
    where
        F: Future<Output = Result<Outcome<R>>>,
    {
        for _ in 0..MAX_ATTEMPTS {
            let outcome = decide().await?;
            if outcome.writes.is_empty() {
                return Ok(outcome.answer);
            }
            let touches_rules = outcome
                .writes
                .iter()
                .any(|w| matches!(w.collection, Collection::TopicRule | Collection::TopicRuleDestination));
            let touches_trust: Vec<(Collection, String)> = outcome
                .writes
                .iter()
                .filter(|w| w.changes() && matches!(w.collection, Collection::Certificate | Collection::CaCertificate))
                .map(|w| (w.collection, w.key.clone()))
                .collect();
            let changed = match outcome.keeps_permissions {
                true => Vec::new(),
                false => dependencies::changed_by(&outcome.writes, self.account()),
            };
            match self.store.commit(outcome.writes).await {
                Ok(_) => {
                    if !touches_trust.is_empty() || !changed.is_empty() || touches_rules {
                        // No receiver (a node alone) is fine.
                        let _ = self.committed.send(Arc::new(CommittedChange::new(
                            &touches_trust,
                            &changed,
                            touches_rules,
                        )));
                    }
                    if !touches_trust.is_empty()
                        && let Err(err) = self.refresh_trust_of(&touches_trust).await
                    {
                        tracing::error!(error = %err, "cannot reload the certificate snapshot");
                    }
                    if !changed.is_empty() {
                        self.announce(changed);
                    }
                    if touches_rules {
                        self.rule_changes.send_modify(|count| *count += 1);
                    }
                    return Ok(outcome.answer);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(storage_failure(err)),
            }
        }
        Err(Error::Internal("The resource is being modified concurrently; retry the request.".into()))
    }
}

/// What one committed write changed that every node keeps in memory (see
/// [`Registry::committed_changes`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CommittedChange {
    /// Certificates and CA certificates whose trust entries must be reloaded.
    pub certificates: Vec<String>,
    pub cas: Vec<String>,
    /// The records some connection's permissions may depend on.
    pub dependencies: Vec<Dependency>,
    /// Topic rules or destinations changed.
    pub rules: bool,
}

impl CommittedChange {
    fn new(trust: &[(Collection, String)], dependencies: &[Dependency], rules: bool) -> Self {
        let of = |wanted: Collection| trust.iter().filter(|(c, _)| *c == wanted).map(|(_, id)| id.clone()).collect();
        Self {
            certificates: of(Collection::Certificate),
            cas: of(Collection::CaCertificate),
            dependencies: dependencies.to_vec(),
            rules,
        }
    }
}

/// The records one committed write changed (see [`Registry::permission_changes`]).
pub type PermissionChange = Arc<[Dependency]>;

/// Changes a slow receiver may fall behind by before it must assume everything changed.
const PERMISSION_CHANGES_BUFFERED: usize = 4096;

impl Registry {
    /// Moves the generation, forgets the permissions that depended on `changed` and
    /// tells the receivers, in that order: a computation that began before sees the
    /// generation move and is not remembered.
    fn announce(&self, changed: Vec<Dependency>) {
        self.permission_generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.connection_permissions.lock().unwrap_or_else(|e| e.into_inner()).invalidate(&changed);
        // No receiver (no gateway) is fine.
        let _ = self.permission_changes.send(changed.into());
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
