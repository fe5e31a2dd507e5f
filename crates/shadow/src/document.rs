//! A stored shadow and what each operation makes of it.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::request::{Patch, UpdateRequest};
use crate::{Limits, Map, ShadowError};

/// One section of a shadow (`desired` or `reported`): its state and the metadata
/// tree mirroring it, with `{"timestamp": <epoch seconds>}` at every leaf.
/// An empty section is an absent one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Section {
    pub state: Map,
    pub metadata: Map,
}

/// A shadow as stored. A deleted shadow keeps its version counter (AWS continues
/// it on the next update), so it is kept as `exists: false`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Shadow {
    pub version: u64,
    pub exists: bool,
    #[serde(default)]
    pub desired: Section,
    #[serde(default)]
    pub reported: Section,
}

/// An accepted update: the new shadow and the documents to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub shadow: Shadow,
    /// `update/accepted` (and the HTTP answer): the request's state with its metadata.
    pub accepted: Value,
    /// `update/delta`, when desired and reported differ after the update.
    pub delta: Option<Value>,
    /// `update/documents`: the shadow before and after.
    pub documents: Value,
    /// ferrocore's extension: the desired keys this update removed, as a delta-shaped
    /// document with `null` leaves (AWS's delta cannot say that a key went away).
    pub removed: Option<Value>,
}

impl Shadow {
    /// Applies an update at `now` (epoch seconds), or refuses it.
    pub fn update(&self, request: &UpdateRequest, now: u64, limits: &Limits) -> Result<Applied, ShadowError> {
        if request.version.is_some_and(|expected| expected != self.version) {
            return Err(ShadowError::VersionConflict);
        }
        // A deleted or never-written shadow starts empty, keeping its version counter.
        let mut next = if self.exists { self.clone() } else { self.deleted() };
        next.desired.apply(&request.desired, now);
        next.reported.apply(&request.reported, now);
        if next.state_size() > limits.max_state_bytes {
            return Err(ShadowError::TooLarge);
        }
        next.version = self.version + 1;
        next.exists = true;

        let token = request.client_token.as_deref();
        let accepted = accepted_document(request, next.version, now, token);
        let delta = next.delta().map(|delta| delta_shaped(delta, next.version, now, token));
        let mut documents = Map::new();
        // `previous` is null when this update creates the shadow.
        documents.insert("previous".into(), if self.exists { self.snapshot() } else { Value::Null });
        documents.insert("current".into(), next.snapshot());
        documents.insert("timestamp".into(), now.into());
        insert_token(&mut documents, token);
        let empty = Section::default();
        let removed = removed_keys(if self.exists { &self.desired } else { &empty }, &next.desired, now)
            .map(|removed| delta_shaped(removed, next.version, now, token));
        Ok(Applied { shadow: next, accepted, delta, documents: Value::Object(documents), removed })
    }

    /// The GET document: both sections, the delta, their metadata.
    pub fn document(&self, now: u64, client_token: Option<&str>) -> Value {
        let mut state = self.sections(|s| &s.state);
        if let Some(delta) = self.delta() {
            state.insert("delta".into(), Value::Object(delta.state));
        }
        let metadata = self.sections(|s| &s.metadata);
        envelope(json!({"state": state, "metadata": metadata}), self.version, now, client_token)
    }

    /// The shadow after a delete: gone, with its version counter kept.
    pub fn deleted(&self) -> Shadow {
        Shadow { version: self.version, ..Shadow::default() }
    }

    /// `{"state": {desired, reported}, "metadata": {...}, "version"}` as in `update/documents`.
    pub fn snapshot(&self) -> Value {
        let mut snapshot = Map::new();
        snapshot.insert("state".into(), Value::Object(self.sections(|s| &s.state)));
        snapshot.insert("metadata".into(), Value::Object(self.sections(|s| &s.metadata)));
        snapshot.insert("version".into(), self.version.into());
        Value::Object(snapshot)
    }

    /// The desired keys that reported does not match, with their desired metadata.
    pub fn delta(&self) -> Option<Section> {
        let delta = delta_of(&self.desired.state, &self.desired.metadata, Some(&self.reported.state));
        (!delta.state.is_empty()).then_some(delta)
    }

    /// Bytes of the desired and reported state, the part AWS's size limit counts.
    pub fn state_size(&self) -> usize {
        [&self.desired, &self.reported]
            .iter()
            .filter(|section| !section.state.is_empty())
            .map(|section| serde_json::to_vec(&section.state).map_or(0, |bytes| bytes.len()))
            .sum()
    }

    fn sections(&self, part: impl Fn(&Section) -> &Map) -> Map {
        let mut out = Map::new();
        for (name, section) in [("desired", &self.desired), ("reported", &self.reported)] {
            if !section.state.is_empty() {
                out.insert(name.into(), Value::Object(part(section).clone()));
            }
        }
        out
    }
}

/// The `delete/accepted` document (and the HTTP answer to DeleteThingShadow).
pub fn delete_document(version: u64, now: u64, client_token: Option<&str>) -> Value {
    let mut document = Map::new();
    document.insert("version".into(), version.into());
    document.insert("timestamp".into(), now.into());
    insert_token(&mut document, client_token);
    Value::Object(document)
}

/// The `/rejected` document: `{"code", "message", "clientToken"?}`.
pub fn error_document(error: &ShadowError, client_token: Option<&str>) -> Value {
    let mut document = Map::new();
    document.insert("code".into(), error.code().into());
    document.insert("message".into(), error.to_string().into());
    insert_token(&mut document, client_token);
    Value::Object(document)
}

impl Section {
    fn apply(&mut self, patch: &Patch, now: u64) {
        match patch {
            Patch::Keep => {}
            Patch::Remove => *self = Section::default(),
            Patch::Merge(changes) => merge(&mut self.state, &mut self.metadata, changes, now),
        }
    }
}

/// Deep-merges `changes`: `null` deletes a key, objects merge, anything else
/// (arrays included) replaces. Objects left empty disappear.
fn merge(state: &mut Map, metadata: &mut Map, changes: &Map, now: u64) {
    for (key, change) in changes {
        match change {
            Value::Null => {
                state.shift_remove(key);
                metadata.shift_remove(key);
            }
            Value::Object(nested) => {
                let child_state = object_entry(state, key);
                if child_state.is_empty() {
                    // A leaf becoming an object loses the leaf's metadata.
                    metadata.shift_remove(key);
                }
                let child_metadata = object_entry(metadata, key);
                merge(child_state, child_metadata, nested, now);
                if state.get(key).and_then(Value::as_object).is_some_and(Map::is_empty) {
                    state.shift_remove(key);
                    metadata.shift_remove(key);
                }
            }
            value => {
                state.insert(key.clone(), value.clone());
                metadata.insert(key.clone(), leaf_metadata(value, now));
            }
        }
    }
}

/// The object under `key`, made an (empty) object if it was anything else.
fn object_entry<'a>(map: &'a mut Map, key: &str) -> &'a mut Map {
    let entry = map.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut().expect("made an object above")
}

/// Metadata for a written value: `{"timestamp"}` per leaf, mirrored through
/// objects and arrays.
fn leaf_metadata(value: &Value, now: u64) -> Value {
    match value {
        Value::Object(map) => Value::Object(mirror(map, now)),
        Value::Array(items) => Value::Array(items.iter().map(|item| leaf_metadata(item, now)).collect()),
        _ => json!({"timestamp": now}),
    }
}

fn mirror(map: &Map, now: u64) -> Map {
    map.iter().map(|(key, value)| (key.clone(), leaf_metadata(value, now))).collect()
}

fn delta_of(desired: &Map, metadata: &Map, reported: Option<&Map>) -> Section {
    let mut delta = Section::default();
    for (key, wanted) in desired {
        let have = reported.and_then(|r| r.get(key));
        let meta = metadata.get(key);
        match (wanted, have) {
            (Value::Object(wanted), Some(Value::Object(have))) => {
                let empty = Map::new();
                let nested_meta = meta.and_then(Value::as_object).unwrap_or(&empty);
                let nested = delta_of(wanted, nested_meta, Some(have));
                if !nested.state.is_empty() {
                    delta.state.insert(key.clone(), Value::Object(nested.state));
                    delta.metadata.insert(key.clone(), Value::Object(nested.metadata));
                }
            }
            (wanted, have) if have != Some(wanted) => {
                delta.state.insert(key.clone(), wanted.clone());
                if let Some(meta) = meta {
                    delta.metadata.insert(key.clone(), meta.clone());
                }
            }
            _ => {}
        }
    }
    delta
}

/// Keys of `before` that `after` no longer has, as `null` leaves with their removal time.
fn removed_keys(before: &Section, after: &Section, now: u64) -> Option<Section> {
    fn walk(before: &Map, after: &Map, now: u64, out: &mut Section) {
        for (key, old) in before {
            match (old, after.get(key)) {
                (_, None) => {
                    out.state.insert(key.clone(), Value::Null);
                    out.metadata.insert(key.clone(), json!({"timestamp": now}));
                }
                (Value::Object(old), Some(Value::Object(new))) => {
                    let mut nested = Section::default();
                    walk(old, new, now, &mut nested);
                    if !nested.state.is_empty() {
                        out.state.insert(key.clone(), Value::Object(nested.state));
                        out.metadata.insert(key.clone(), Value::Object(nested.metadata));
                    }
                }
                _ => {}
            }
        }
    }
    let mut removed = Section::default();
    walk(&before.state, &after.state, now, &mut removed);
    (!removed.state.is_empty()).then_some(removed)
}

fn accepted_document(request: &UpdateRequest, version: u64, now: u64, token: Option<&str>) -> Value {
    let (state, metadata) = match &request.state {
        Some(state) => (Value::Object(state.clone()), Value::Object(mirror(state, now))),
        None => (Value::Null, json!({"timestamp": now})),
    };
    envelope(json!({"state": state, "metadata": metadata}), version, now, token)
}

/// A document shaped like AWS's delta: `version` and `timestamp` first.
fn delta_shaped(section: Section, version: u64, now: u64, token: Option<&str>) -> Value {
    let mut document = Map::new();
    document.insert("version".into(), version.into());
    document.insert("timestamp".into(), now.into());
    document.insert("state".into(), Value::Object(section.state));
    document.insert("metadata".into(), Value::Object(section.metadata));
    insert_token(&mut document, token);
    Value::Object(document)
}

/// Adds `version`, `timestamp` and `clientToken` after a document's own fields.
fn envelope(body: Value, version: u64, now: u64, token: Option<&str>) -> Value {
    let Value::Object(mut document) = body else { unreachable!("documents are objects") };
    document.insert("version".into(), version.into());
    document.insert("timestamp".into(), now.into());
    insert_token(&mut document, token);
    Value::Object(document)
}

fn insert_token(document: &mut Map, token: Option<&str>) {
    if let Some(token) = token {
        document.insert("clientToken".into(), token.into());
    }
}
