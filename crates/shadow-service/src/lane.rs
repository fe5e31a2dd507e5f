//! A lane: the task that serves the shadows of the things hashing to it.
//!
//! Each round takes every request waiting (up to [`ROUND_LIMIT`]), groups them by
//! shadow in arrival order, applies each group's requests one after another to the
//! shadow (from the cache, or read from the store), commits all the changes of the
//! round in one batch, and then answers, each shadow's requests in their order. A
//! conflict (another process wrote the shadow, the thing changed or went) empties the
//! cache entries of the round and the round is worked out again from the store; a
//! round that conflicts twice serves its shadows one by one, so a shadow busy
//! elsewhere does not hold back the others. A refusal that depends on the shadow's
//! state (no such shadow, a version conflict, too large) is never answered from the
//! cache alone: the group is worked out again from the store first.

use std::collections::HashMap;
use std::sync::Weak;

use ferrocore_message::Notification;
use ferrocore_shadow::topic::Operation;
use ferrocore_shadow::{Applied, Shadow, ShadowError, delete_document, error_document, parse_update, request_token};
use ferrocore_store::{Collection, Expect, StoreError, Write};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::cache::Bounded;
use crate::{
    Inner, PastVersion, StoredShadow, check_name, internal, missing, shadow_key, shadow_notification, version_key,
};

/// Most requests served in one round (one store batch).
const ROUND_LIMIT: usize = 256;
/// Rounds worked out again after conflicts before the requests are refused as throttled.
const MAX_ATTEMPTS: usize = 32;

pub(crate) struct Job {
    pub thing: String,
    pub shadow: Option<String>,
    pub op: Op,
    pub reply: Reply,
}

pub(crate) enum Op {
    /// The update request document, parsed by the lane.
    Update(Vec<u8>),
    /// GET, with its client token.
    Get(Option<String>),
    Delete(Option<String>),
    /// A request refused before it was queued (an invalid client token), answered in turn.
    Refused(Operation, ShadowError),
}

impl Job {
    pub(crate) fn op_name(&self) -> &'static str {
        self.op.operation().as_str()
    }
}

impl Op {
    fn operation(&self) -> Operation {
        match self {
            Self::Update(_) => Operation::Update,
            Self::Get(_) => Operation::Get,
            Self::Delete(_) => Operation::Delete,
            Self::Refused(operation, _) => *operation,
        }
    }

    /// The client token a `/rejected` document echoes.
    fn token(&self) -> Option<String> {
        match self {
            Self::Update(payload) => request_token(payload).ok().flatten(),
            Self::Get(token) | Self::Delete(token) => token.clone(),
            Self::Refused(..) => None,
        }
    }
}

pub(crate) enum Reply {
    /// Over MQTT: the answer is published on `accepted` or `rejected`.
    Publish { hops: u8 },
    /// Over the API: the document goes back to the caller (successful updates and
    /// deletes are published too).
    Caller(oneshot::Sender<Result<Value, ShadowError>>),
}

/// What a request came to.
enum Answer {
    Updated(Box<Applied>),
    Got(Value),
    Deleted(Value),
}

/// A shadow as last read or written, with what its next write must expect.
struct CachedShadow {
    expect: Expect,
    /// The thing the stored shadow belongs to (an older thing of the same name's shadow is no shadow).
    thing_id: String,
    shadow: Shadow,
}

#[derive(Clone)]
struct CachedThing {
    id: String,
    revision: i64,
}

/// The requests of one round for one shadow, in arrival order.
struct Group {
    thing: String,
    shadow: Option<String>,
    key: String,
    jobs: Vec<Job>,
}

/// A group worked out: an outcome per request and, if the shadow changed, the writes and the new shadow.
struct Plan {
    outcomes: Vec<Result<Answer, ShadowError>>,
    writes: Vec<Write>,
    changed: Option<StoredShadow>,
}

struct Lane {
    shadows: Bounded<CachedShadow>,
    things: Bounded<CachedThing>,
}

#[derive(Deserialize)]
struct ThingId {
    id: String,
}

/// The id of a stored thing record.
pub(crate) fn decode_thing_id(body: &[u8]) -> Result<String, ShadowError> {
    serde_json::from_slice::<ThingId>(body).map(|thing| thing.id).map_err(internal)
}

pub(crate) async fn run(inner: Weak<Inner>, mut receiver: mpsc::Receiver<Job>, capacity: usize) {
    let mut lane = Lane { shadows: Bounded::new(capacity), things: Bounded::new(capacity) };
    let mut jobs = Vec::with_capacity(ROUND_LIMIT);
    while receiver.recv_many(&mut jobs, ROUND_LIMIT).await > 0 {
        let Some(inner) = inner.upgrade() else { break };
        lane.serve(&inner, std::mem::take(&mut jobs)).await;
    }
    for job in jobs.drain(..) {
        refuse(job, ShadowError::Internal);
    }
}

/// Answers a caller that cannot be served (the service is stopping).
pub(crate) fn refuse(job: Job, error: ShadowError) {
    match job.reply {
        Reply::Caller(answer) => {
            let _ = answer.send(Err(error));
        }
        Reply::Publish { .. } => tracing::warn!(thing = %job.thing, "shadow request dropped: the service is stopping"),
    }
}

fn group_by_shadow(jobs: Vec<Job>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<String, usize, foldhash::fast::RandomState> = HashMap::default();
    for job in jobs {
        let key = shadow_key(&job.thing, job.shadow.as_deref());
        let at = *index.entry(key.clone()).or_insert_with(|| {
            groups.push(Group { thing: job.thing.clone(), shadow: job.shadow.clone(), key, jobs: Vec::new() });
            groups.len() - 1
        });
        groups[at].jobs.push(job);
    }
    groups
}

impl Lane {
    async fn serve(&mut self, inner: &Inner, jobs: Vec<Job>) {
        let groups = group_by_shadow(jobs);
        for attempt in 0..MAX_ATTEMPTS {
            let mut plans = Vec::with_capacity(groups.len());
            for group in &groups {
                plans.push(self.plan(inner, group, attempt > 0).await);
            }
            let writes: Vec<Write> = plans.iter_mut().flat_map(|plan| std::mem::take(&mut plan.writes)).collect();
            if writes.is_empty() {
                return answer(inner, plans.into_iter().map(|plan| plan.outcomes).collect(), groups).await;
            }
            match inner.store.commit(writes).await {
                Ok(revision) => {
                    for (group, plan) in groups.iter().zip(&mut plans) {
                        if let Some(StoredShadow { thing_id, shadow }) = plan.changed.take() {
                            let written = CachedShadow { expect: Expect::Revision(revision), thing_id, shadow };
                            self.shadows.insert(group.key.clone(), written);
                        }
                    }
                    return answer(inner, plans.into_iter().map(|plan| plan.outcomes).collect(), groups).await;
                }
                Err(StoreError::Conflict { collection, key }) => {
                    tracing::debug!(collection, key, attempt, "shadow round conflicted; reading again");
                    self.forget(&groups);
                    if groups.len() > 1 && attempt > 0 {
                        for group in groups {
                            Box::pin(self.serve(inner, group.jobs)).await;
                        }
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(attempt as u64)).await;
                }
                Err(err) => {
                    self.forget(&groups);
                    let error = internal(err);
                    return answer(inner, refused_all(&groups, error), groups).await;
                }
            }
        }
        answer(inner, refused_all(&groups, ShadowError::Throttled), groups).await
    }

    fn forget(&mut self, groups: &[Group]) {
        for group in groups {
            self.shadows.remove(&group.key);
            self.things.remove(&group.thing);
        }
    }

    /// Works out a group's requests in order against the shadow as cached or stored;
    /// a refusal that depends on the shadow's state is checked against the store.
    async fn plan(&mut self, inner: &Inner, group: &Group, reread: bool) -> Plan {
        let plan = self.plan_once(inner, group, reread).await;
        let state_refusal = plan.outcomes.iter().any(|outcome| {
            matches!(outcome, Err(ShadowError::NoShadow(_) | ShadowError::VersionConflict | ShadowError::TooLarge))
        });
        if reread || !state_refusal {
            return plan;
        }
        self.shadows.remove(&group.key);
        self.things.remove(&group.thing);
        self.plan_once(inner, group, true).await
    }

    async fn plan_once(&mut self, inner: &Inner, group: &Group, reread: bool) -> Plan {
        let refuse_all = |error: ShadowError| Plan {
            outcomes: group.jobs.iter().map(|_| Err(error.clone())).collect(),
            writes: Vec::new(),
            changed: None,
        };
        if let Err(error) = check_name(group.shadow.as_deref()) {
            return refuse_all(error);
        }
        // A GET answers what the store holds, whatever other processes wrote.
        let reread = reread || group.jobs.iter().any(|job| matches!(job.op, Op::Get(_)));
        let thing = match self.thing(inner, &group.thing, reread).await {
            Ok(thing) => thing,
            Err(error) => return refuse_all(error),
        };
        let (expect, mut current) = match self.take_shadow(inner, &group.key, &thing.id, reread).await {
            Ok(loaded) => loaded,
            Err(error) => return refuse_all(error),
        };
        let settings = &inner.settings;
        let now = (inner.now)();
        let (thing_name, shadow_name) = (group.thing.as_str(), group.shadow.as_deref());
        let mut outcomes = Vec::with_capacity(group.jobs.len());
        let mut writes = Vec::new();
        let mut changed = false;
        for job in &group.jobs {
            let outcome = match &job.op {
                Op::Refused(_, error) => Err(error.clone()),
                Op::Update(payload) => {
                    match parse_update(payload, &settings.limits)
                        .and_then(|r| current.update(&r, now, &settings.limits))
                    {
                        Ok(mut applied) => {
                            changed = true;
                            let version = applied.shadow.version;
                            if settings.history_versions > 0 {
                                writes.extend(history_writes(
                                    thing_name,
                                    shadow_name,
                                    version,
                                    settings.history_versions,
                                    now,
                                    &applied,
                                ));
                            }
                            current = std::mem::take(&mut applied.shadow);
                            Ok(Answer::Updated(Box::new(applied)))
                        }
                        Err(error) => Err(error),
                    }
                }
                Op::Get(token) if current.exists => Ok(Answer::Got(current.document(now, token.as_deref()))),
                Op::Delete(token) if current.exists => {
                    changed = true;
                    let accepted = delete_document(current.version, now, token.as_deref());
                    current = current.deleted();
                    Ok(Answer::Deleted(accepted))
                }
                Op::Get(_) | Op::Delete(_) => Err(missing(thing_name, shadow_name)),
            };
            outcomes.push(outcome);
        }
        if !changed {
            self.shadows.insert(group.key.clone(), CachedShadow { expect, thing_id: thing.id, shadow: current });
            return Plan { outcomes, writes, changed: None };
        }
        let stored = StoredShadow { thing_id: thing.id, shadow: current };
        let body = match serde_json::to_vec(&stored) {
            Ok(body) => body,
            Err(err) => return refuse_all(internal(err)),
        };
        // The thing as this lane knows it must still be there, unchanged, when the batch commits.
        writes.insert(0, Write::hold(Collection::Thing, &group.thing, Expect::Revision(thing.revision)));
        writes.insert(1, Write::put(Collection::Shadow, &group.key, expect, body));
        Plan { outcomes, writes, changed: Some(stored) }
    }

    async fn thing(&mut self, inner: &Inner, name: &str, reread: bool) -> Result<CachedThing, ShadowError> {
        if !reread && let Some(thing) = self.things.get(name) {
            return Ok(thing.clone());
        }
        match inner.store.get(Collection::Thing, name).await.map_err(internal)? {
            Some(record) => {
                let thing = CachedThing { id: decode_thing_id(&record.body)?, revision: record.revision };
                self.things.insert(name.to_string(), thing.clone());
                Ok(thing)
            }
            None => {
                self.things.remove(name);
                Err(ShadowError::ThingNotFound)
            }
        }
    }

    /// The shadow of the current thing (a never-written one is version 0) and what
    /// a write of it must expect; taken out of the cache, which gets it back with
    /// its new revision once written.
    async fn take_shadow(
        &mut self,
        inner: &Inner,
        key: &str,
        thing_id: &str,
        reread: bool,
    ) -> Result<(Expect, Shadow), ShadowError> {
        let cached = self.shadows.take(key).filter(|_| !reread);
        let cached = match cached {
            Some(cached) => cached,
            None => match inner.store.get(Collection::Shadow, key).await.map_err(internal)? {
                None => CachedShadow { expect: Expect::Absent, thing_id: String::new(), shadow: Shadow::default() },
                Some(record) => {
                    let stored: StoredShadow = serde_json::from_slice(&record.body).map_err(internal)?;
                    CachedShadow {
                        expect: Expect::Revision(record.revision),
                        thing_id: stored.thing_id,
                        shadow: stored.shadow,
                    }
                }
            },
        };
        let shadow = if cached.thing_id == thing_id { cached.shadow } else { Shadow::default() };
        Ok((cached.expect, shadow))
    }
}

/// The kept copy of a new version, and the deletion of the one that falls out of the history.
fn history_writes(
    thing: &str,
    shadow: Option<&str>,
    version: u64,
    kept: u64,
    now: u64,
    applied: &Applied,
) -> Vec<Write> {
    let past = PastVersion { timestamp: now, document: applied.documents["current"].clone() };
    let mut writes = vec![Write::put(
        Collection::ShadowVersion,
        version_key(thing, shadow, version),
        Expect::Anything,
        serde_json::to_vec(&past).expect("JSON values serialize"),
    )];
    if let Some(expired) = version.checked_sub(kept).filter(|v| *v > 0) {
        writes.push(Write::delete(Collection::ShadowVersion, version_key(thing, shadow, expired), Expect::Anything));
    }
    writes
}

type Outcomes = Vec<Result<Answer, ShadowError>>;

/// The `<op>/rejected` message of a request published over MQTT.
pub(crate) fn rejection(job: &Job, error: &ShadowError) -> Notification {
    let suffix = format!("{}/rejected", job.op.operation().as_str());
    let document = error_document(error, job.op.token().as_deref());
    let mut notification = shadow_notification(&job.thing, job.shadow.as_deref(), &suffix, &document);
    if let Reply::Publish { hops } = job.reply {
        notification.hops = hops;
    }
    notification
}

fn refused_all(groups: &[Group], error: ShadowError) -> Vec<Outcomes> {
    groups.iter().map(|group| group.jobs.iter().map(|_| Err(error.clone())).collect()).collect()
}

/// Publishes the round's notifications in arrival order, then answers the callers.
async fn answer(inner: &Inner, outcomes: Vec<Outcomes>, groups: Vec<Group>) {
    let settings = &inner.settings;
    let mut notifications = Vec::new();
    let mut replies = Vec::new();
    for (group, outcomes) in groups.into_iter().zip(outcomes) {
        let (thing, shadow) = (group.thing.as_str(), group.shadow.as_deref());
        for (job, outcome) in group.jobs.into_iter().zip(outcomes) {
            let operation = job.op.operation();
            let label = if outcome.is_ok() { "accepted" } else { "rejected" };
            metrics::counter!("ferrocore_shadow_requests_total", "operation" => operation.as_str(), "outcome" => label)
                .increment(1);
            let hops = match job.reply {
                Reply::Publish { hops } => hops,
                Reply::Caller(_) => 0,
            };
            let first = notifications.len();
            let document = match outcome {
                Ok(Answer::Updated(applied)) => {
                    let applied = *applied;
                    notifications.push(shadow_notification(thing, shadow, "update/accepted", &applied.accepted));
                    if let Some(delta) = &applied.delta {
                        notifications.push(shadow_notification(thing, shadow, "update/delta", delta));
                    }
                    notifications.push(shadow_notification(thing, shadow, "update/documents", &applied.documents));
                    if let Some(removed) = applied.removed.as_ref().filter(|_| settings.removal_notifications) {
                        notifications.push(shadow_notification(thing, shadow, "update/removed", removed));
                    }
                    Ok(applied.accepted)
                }
                Ok(Answer::Deleted(accepted)) => {
                    notifications.push(shadow_notification(thing, shadow, "delete/accepted", &accepted));
                    Ok(accepted)
                }
                Ok(Answer::Got(document)) => {
                    if matches!(job.reply, Reply::Publish { .. }) {
                        notifications.push(shadow_notification(thing, shadow, "get/accepted", &document));
                    }
                    Ok(document)
                }
                Err(error) => {
                    if matches!(job.reply, Reply::Publish { .. }) {
                        notifications.push(rejection(&job, &error));
                    }
                    Err(error)
                }
            };
            for notification in &mut notifications[first..] {
                notification.hops = hops;
            }
            if let Reply::Caller(answer) = job.reply {
                replies.push((answer, document));
            }
        }
    }
    if !notifications.is_empty() {
        match inner.publisher.get() {
            Some(publisher) => publisher.publish(notifications).await,
            None => {
                tracing::debug!(count = notifications.len(), "no publisher attached: shadow notifications not sent")
            }
        }
    }
    for (answer, document) in replies {
        let _ = answer.send(document);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(thing: &str, shadow: Option<&str>) -> Job {
        Job {
            thing: thing.into(),
            shadow: shadow.map(Into::into),
            op: Op::Get(None),
            reply: Reply::Publish { hops: 0 },
        }
    }

    #[test]
    fn rounds_group_requests_by_shadow_in_arrival_order() {
        let jobs = vec![job("a", None), job("b", None), job("a", Some("n")), job("a", None), job("b", None)];
        let groups = group_by_shadow(jobs);
        let keys: Vec<(&str, usize)> = groups.iter().map(|g| (g.key.as_str(), g.jobs.len())).collect();
        assert_eq!(keys, [("a/", 2), ("b/", 2), ("a/n", 1)]);
    }
}
