//! Durable state behind one small trait.
//!
//! Every registry resource is a *record*: a key inside a [`Collection`], an opaque
//! body and a store-managed `revision`. Writes are committed in atomic batches whose
//! expectations (absent, or at a given revision) are checked inside the same
//! transaction, so callers get optimistic concurrency that holds across several
//! server processes sharing one database.
//!
//! [`SqliteStore`] is the embedded default; [`PostgresStore`] is the store several
//! nodes share. Both pass the conformance suite (`conformance`, with the `testing`
//! feature: it is not part of the release build).

#[cfg(feature = "testing")]
pub mod conformance;
mod postgres;
mod sqlite;
mod writer;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// A group of records of one kind. The string is the stored name: never change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Collection {
    Thing,
    ThingType,
    ThingGroup,
    BillingGroup,
    Certificate,
    CaCertificate,
    Policy,
    RoleAlias,
    /// Retained MQTT messages, by topic.
    RetainedMessage,
    /// Persistent MQTT sessions of disconnected clients, by client id.
    MqttSession,
    /// QoS 1 messages queued for persistent sessions, one record each, by
    /// `<client id length:3><client id>/<sequence:20>`.
    MqttQueuedMessage,
    /// Singletons of the installation: endpoint prefix, event configurations, ...
    Setting,
    /// Device shadows, by `<thing>/<shadow name>` (empty name: the classic shadow).
    Shadow,
    /// Past versions of shadows kept for operators (opt-in), by `<thing>/<shadow>/<version>`.
    ShadowVersion,
    /// Topic rules of the rules engine, by name.
    TopicRule,
    /// Topic rule destinations, by ARN.
    TopicRuleDestination,
    /// Secondary indexes of things, one empty record per entry (see the registry's `thing_index`).
    ThingIndex,
    /// Policies by the target they are attached to: `<target> <policy>`, one empty record each.
    PolicyTarget,
    /// Thing groups by parent: `<parent> <child>`, one empty record each.
    ThingGroupChild,
    /// Certificates in creation order, overall and by CA (see the registry's `indexes`).
    CertificateOrder,
    /// CA certificates in creation order and by subject (see the registry's `indexes`).
    CaCertificateIndex,
    /// Topic rules by their FROM filter: `<filter, space and % escaped> <rule>`, one empty record each.
    TopicRuleTopic,
    /// Persistent MQTT sessions by the cluster node that stored them: `<node> <client id>`,
    /// one empty record each.
    MqttSessionNode,
}

impl Collection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Thing => "thing",
            Self::ThingType => "thing_type",
            Self::ThingGroup => "thing_group",
            Self::BillingGroup => "billing_group",
            Self::Certificate => "certificate",
            Self::CaCertificate => "ca_certificate",
            Self::Policy => "policy",
            Self::RoleAlias => "role_alias",
            Self::RetainedMessage => "retained_message",
            Self::MqttSession => "mqtt_session",
            Self::MqttQueuedMessage => "mqtt_queued_message",
            Self::Setting => "setting",
            Self::Shadow => "shadow",
            Self::ShadowVersion => "shadow_version",
            Self::TopicRule => "topic_rule",
            Self::TopicRuleDestination => "topic_rule_destination",
            Self::ThingIndex => "thing_index",
            Self::PolicyTarget => "policy_target",
            Self::ThingGroupChild => "thing_group_child",
            Self::CertificateOrder => "certificate_order",
            Self::TopicRuleTopic => "topic_rule_topic",
            Self::MqttSessionNode => "mqtt_session_node",
            Self::CaCertificateIndex => "ca_certificate_index",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    /// Changes on every write of the record and is never reused in a store.
    pub revision: i64,
    pub body: Vec<u8>,
}

/// What a write requires of the record's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Anything,
    Absent,
    Revision(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Put(Vec<u8>),
    Delete,
    /// Keeps the body but takes a new revision: the batch requires the record it
    /// depended on to be unchanged, and any batch that read the old revision
    /// (e.g. a delete racing an attachment) now fails.
    Check,
    /// Writes nothing: the batch requires the record as expected and holds it so until
    /// the batch is committed (a concurrent write of the record waits or fails). Any
    /// number of batches may hold one record at once, so a record many writes depend
    /// on (a thing type, a group) is not a point of contention. Whoever removes such a
    /// record writes it first in its batch and then checks, with [`WriteOp::NoneWithPrefix`],
    /// that no dependent appeared meanwhile.
    Hold,
    /// Writes nothing: the batch requires that, after its earlier writes, no record of
    /// the collection has a key starting with this write's key.
    NoneWithPrefix,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub collection: Collection,
    pub key: String,
    pub expect: Expect,
    pub op: WriteOp,
}

impl Write {
    pub fn put(collection: Collection, key: impl Into<String>, expect: Expect, body: Vec<u8>) -> Self {
        Self { collection, key: key.into(), expect, op: WriteOp::Put(body) }
    }

    pub fn check(collection: Collection, key: impl Into<String>, expect: Expect) -> Self {
        Self { collection, key: key.into(), expect, op: WriteOp::Check }
    }

    pub fn delete(collection: Collection, key: impl Into<String>, expect: Expect) -> Self {
        Self { collection, key: key.into(), expect, op: WriteOp::Delete }
    }

    pub fn hold(collection: Collection, key: impl Into<String>, expect: Expect) -> Self {
        Self { collection, key: key.into(), expect, op: WriteOp::Hold }
    }

    pub fn none_with_prefix(collection: Collection, prefix: impl Into<String>) -> Self {
        Self { collection, key: prefix.into(), expect: Expect::Anything, op: WriteOp::NoneWithPrefix }
    }

    /// Whether the write can fail the batch.
    pub fn is_conditional(&self) -> bool {
        self.expect != Expect::Anything || self.op == WriteOp::NoneWithPrefix
    }

    /// Whether the write changes the store (rather than only conditioning the batch).
    pub fn changes(&self) -> bool {
        !matches!(self.op, WriteOp::Hold | WriteOp::NoneWithPrefix)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An expectation of the batch did not hold; nothing was written.
    #[error("write conflict on {collection}/{key}")]
    Conflict { collection: &'static str, key: String },
    #[error("storage failure: {0}")]
    Backend(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        Self::Backend(err.to_string())
    }
}

#[async_trait::async_trait]
pub trait RecordStore: Send + Sync + 'static {
    async fn get(&self, collection: Collection, key: &str) -> Result<Option<Record>, StoreError>;

    /// Records with keys strictly greater than `after`, in key order, at most `limit`.
    async fn list(&self, collection: Collection, after: Option<&str>, limit: usize) -> Result<Vec<Record>, StoreError>;

    /// Applies all writes or none. Returns once the batch is durable, with the
    /// revision that every record the batch put or checked now has (a cache that
    /// writes through can expect it next time).
    async fn commit(&self, writes: Vec<Write>) -> Result<i64, StoreError>;
}
