//! Device shadows: one classic and any number of named shadows per thing, stored
//! with optimistic versions and gone with their thing.
//!
//! Operations answer the documents AWS sends and the MQTT notifications to publish
//! (the caller, gateway or API, publishes them). Shadow writes do not signal
//! registry changes: they never alter anyone's permissions.

use ferrocore_shadow::{Limits, Shadow, ShadowError, parse_update, topic};
use ferrocore_store::{Collection, Expect, StoreError, Write};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Registry;
use crate::messages::Notification;

/// How shadows behave; AWS fixes the limits, the extensions are ferrocore's and off by default.
#[derive(Debug, Clone, Default)]
pub struct ShadowSettings {
    pub limits: Limits,
    /// Past versions kept per shadow for operators (0: none, as AWS).
    pub history_versions: u64,
    /// Publish `<shadow>/update/removed` when an update removes desired keys.
    pub removal_notifications: bool,
}

/// An accepted update: the `accepted` document and everything to publish, in order.
#[derive(Debug, Clone)]
pub struct ShadowUpdated {
    pub accepted: Value,
    pub notifications: Vec<Notification>,
}

/// A deleted shadow: the `delete/accepted` document and its notification.
#[derive(Debug, Clone)]
pub struct ShadowDeleted {
    pub accepted: Value,
    pub notification: Notification,
}

/// One page of a thing's named shadows.
#[derive(Debug, Clone)]
pub struct NamedShadows {
    pub names: Vec<String>,
    pub next_token: Option<String>,
    pub timestamp: u64,
}

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

const MAX_ATTEMPTS: usize = 32;
pub const DEFAULT_LIST_PAGE_SIZE: usize = 25;
const MAX_LIST_PAGE_SIZE: usize = 100;

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

/// A message on `<shadow topic prefix>/<suffix>` (e.g. `update/accepted`).
pub fn shadow_notification(thing: &str, shadow: Option<&str>, suffix: &str, payload: &Value) -> Notification {
    Notification {
        topic: format!("{}/{suffix}", topic::prefix(thing, shadow)),
        payload: serde_json::to_vec(payload).expect("JSON values serialize"),
        qos: 1,
        hops: 0,
    }
}

impl Registry {
    fn shadow_now(&self) -> u64 {
        u64::try_from(self.now() / 1000).unwrap_or(0)
    }

    /// The thing's id, or 404 "Thing not found".
    async fn thing_id(&self, thing: &str, shadow: Option<&str>) -> Result<String, ShadowError> {
        if shadow.is_some_and(|name| !topic::valid_shadow_name(name)) {
            return Err(ShadowError::InvalidRequest("Shadow names are 1 to 64 characters of [a-zA-Z0-9:_-].".into()));
        }
        match self.load::<ferrocore_model::registry::Thing>(Collection::Thing, thing).await {
            Ok(Some(loaded)) => Ok(loaded.value.id),
            Ok(None) => Err(ShadowError::ThingNotFound),
            Err(err) => Err(internal(err)),
        }
    }

    /// The stored shadow of the current thing (a never-written one is version 0) and
    /// what a write of it must expect.
    async fn load_shadow(&self, key: &str, thing_id: &str) -> Result<(Shadow, Expect), ShadowError> {
        match self.store.get(Collection::Shadow, key).await.map_err(internal)? {
            None => Ok((Shadow::default(), Expect::Absent)),
            Some(record) => {
                let stored: StoredShadow = serde_json::from_slice(&record.body).map_err(internal)?;
                let shadow = if stored.thing_id == thing_id { stored.shadow } else { Shadow::default() };
                Ok((shadow, Expect::Revision(record.revision)))
            }
        }
    }

    /// The GET document of a shadow.
    pub async fn get_shadow(
        &self,
        thing: &str,
        shadow: Option<&str>,
        client_token: Option<&str>,
    ) -> Result<Value, ShadowError> {
        let thing_id = self.thing_id(thing, shadow).await?;
        let (current, _) = self.load_shadow(&shadow_key(thing, shadow), &thing_id).await?;
        if !current.exists {
            return Err(missing(thing, shadow));
        }
        Ok(current.document(self.shadow_now(), client_token))
    }

    /// Applies an update request document; concurrent updates of one shadow are
    /// serialised by the store's revisions, so none is lost.
    pub async fn update_shadow(
        &self,
        thing: &str,
        shadow: Option<&str>,
        payload: &[u8],
    ) -> Result<ShadowUpdated, ShadowError> {
        let settings = &self.config.shadows;
        let request = parse_update(payload, &settings.limits)?;
        let key = shadow_key(thing, shadow);
        let _turn = self.shadow_locks.lock(&key).await;
        for _ in 0..MAX_ATTEMPTS {
            let thing_id = self.thing_id(thing, shadow).await?;
            let (current, expect) = self.load_shadow(&key, &thing_id).await?;
            let now = self.shadow_now();
            let applied = current.update(&request, now, &settings.limits)?;
            let version = applied.shadow.version;
            let stored = StoredShadow { thing_id, shadow: applied.shadow };
            let mut writes =
                vec![Write::put(Collection::Shadow, &key, expect, serde_json::to_vec(&stored).map_err(internal)?)];
            if settings.history_versions > 0 {
                let past = PastVersion { timestamp: now, document: applied.documents["current"].clone() };
                let body = serde_json::to_vec(&past).map_err(internal)?;
                writes.push(Write::put(
                    Collection::ShadowVersion,
                    version_key(thing, shadow, version),
                    Expect::Anything,
                    body,
                ));
                if let Some(expired) = version.checked_sub(settings.history_versions).filter(|v| *v > 0) {
                    writes.push(Write::delete(
                        Collection::ShadowVersion,
                        version_key(thing, shadow, expired),
                        Expect::Anything,
                    ));
                }
            }
            match self.store.commit(writes).await {
                Ok(()) => {
                    let mut notifications =
                        vec![shadow_notification(thing, shadow, "update/accepted", &applied.accepted)];
                    if let Some(delta) = &applied.delta {
                        notifications.push(shadow_notification(thing, shadow, "update/delta", delta));
                    }
                    notifications.push(shadow_notification(thing, shadow, "update/documents", &applied.documents));
                    if let Some(removed) = applied.removed.as_ref().filter(|_| settings.removal_notifications) {
                        notifications.push(shadow_notification(thing, shadow, "update/removed", removed));
                    }
                    return Ok(ShadowUpdated { accepted: applied.accepted, notifications });
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(internal(err)),
            }
        }
        Err(ShadowError::Throttled)
    }

    /// Deletes a shadow; its version counter survives for the next update (AWS).
    pub async fn delete_shadow(
        &self,
        thing: &str,
        shadow: Option<&str>,
        client_token: Option<&str>,
    ) -> Result<ShadowDeleted, ShadowError> {
        let key = shadow_key(thing, shadow);
        let _turn = self.shadow_locks.lock(&key).await;
        for _ in 0..MAX_ATTEMPTS {
            let thing_id = self.thing_id(thing, shadow).await?;
            let (current, expect) = self.load_shadow(&key, &thing_id).await?;
            if !current.exists {
                return Err(missing(thing, shadow));
            }
            let stored = StoredShadow { thing_id, shadow: current.deleted() };
            let write = Write::put(Collection::Shadow, &key, expect, serde_json::to_vec(&stored).map_err(internal)?);
            match self.store.commit(vec![write]).await {
                Ok(()) => {
                    let accepted = ferrocore_shadow::delete_document(current.version, self.shadow_now(), client_token);
                    let notification = shadow_notification(thing, shadow, "delete/accepted", &accepted);
                    return Ok(ShadowDeleted { accepted, notification });
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(internal(err)),
            }
        }
        Err(ShadowError::Throttled)
    }

    /// The names of a thing's existing named shadows, in name order; the token is
    /// the last name of the previous page.
    pub async fn list_named_shadows(
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
        let thing_id = self.thing_id(thing, None).await?;
        let prefix = shadow_key(thing, None);
        let mut after = match next_token.filter(|t| !t.is_empty()) {
            Some(token) if topic::valid_shadow_name(token) => format!("{prefix}{token}"),
            Some(_) => {
                return Err(ShadowError::InvalidRequest("The nextToken is not valid.".into()));
            }
            None => prefix.clone(),
        };
        let mut names = Vec::new();
        loop {
            let batch = self.store.list(Collection::Shadow, Some(&after), 200).await.map_err(internal)?;
            let Some(last) = batch.last() else { break };
            after = last.key.clone();
            for record in &batch {
                let Some(name) = record.key.strip_prefix(&prefix) else {
                    return Ok(self.named_page(names, size));
                };
                let stored: StoredShadow = serde_json::from_slice(&record.body).map_err(internal)?;
                if stored.thing_id == thing_id && stored.shadow.exists {
                    names.push(name.to_string());
                    if names.len() > size {
                        return Ok(self.named_page(names, size));
                    }
                }
            }
        }
        Ok(self.named_page(names, size))
    }

    /// Cuts a page of `size` from up to `size + 1` names.
    fn named_page(&self, mut names: Vec<String>, size: usize) -> NamedShadows {
        let next_token = (names.len() > size).then(|| {
            names.truncate(size);
            names.last().cloned().unwrap_or_default()
        });
        NamedShadows { names, next_token, timestamp: self.shadow_now() }
    }

    /// A past version of a shadow, when history is kept (ferrocore's extension).
    pub async fn shadow_version(&self, thing: &str, shadow: Option<&str>, version: u64) -> Result<Value, ShadowError> {
        if self.config.shadows.history_versions == 0 {
            return Err(ShadowError::InvalidRequest(
                "Shadow history is off; set shadow_history_versions to keep past versions.".into(),
            ));
        }
        self.thing_id(thing, shadow).await?;
        let key = version_key(thing, shadow, version);
        let Some(record) = self.store.get(Collection::ShadowVersion, &key).await.map_err(internal)? else {
            return Err(ShadowError::VersionNotKept { version, kept: self.config.shadows.history_versions });
        };
        let past: PastVersion = serde_json::from_slice(&record.body).map_err(internal)?;
        Ok(past.document)
    }

    /// Deletes of every shadow record (and kept version) of a thing, for DeleteThing's batch.
    pub(crate) async fn shadow_writes_for_thing_delete(&self, thing: &str) -> ferrocore_model::Result<Vec<Write>> {
        let prefix = shadow_key(thing, None);
        let mut writes = Vec::new();
        if let Some(classic) = self.store.get(Collection::Shadow, &prefix).await.map_err(crate::storage_failure)? {
            writes.push(Write::delete(Collection::Shadow, &prefix, Expect::Revision(classic.revision)));
        }
        for collection in [Collection::Shadow, Collection::ShadowVersion] {
            let mut after = prefix.clone();
            'pages: loop {
                let batch = self.store.list(collection, Some(&after), 500).await.map_err(crate::storage_failure)?;
                let Some(last) = batch.last() else { break };
                after = last.key.clone();
                for record in batch {
                    if !record.key.starts_with(&prefix) {
                        break 'pages;
                    }
                    writes.push(Write::delete(collection, record.key, Expect::Revision(record.revision)));
                }
            }
        }
        Ok(writes)
    }
}

/// Striped locks that serialise writes to one shadow inside this process, so
/// concurrent updates queue instead of retrying on conflicts. The store's
/// revisions still guard writers in other processes.
pub(crate) struct ShadowLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for ShadowLocks {
    fn default() -> Self {
        Self { stripes: (0..256).map(|_| tokio::sync::Mutex::new(())).collect() }
    }
}

impl ShadowLocks {
    async fn lock(&self, key: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        self.stripes[(hasher.finish() % self.stripes.len() as u64) as usize].lock().await
    }
}
