//! Indexes kept beside the records they index, in collections of their own: every
//! write of an indexed record adds and removes its entries in the same batch
//! ([`record_writes`]), so an index never disagrees with its records. An entry is an
//! empty record keyed `<value> <name>`: the values indexed (AWS names, ARNs, principal
//! ids) never contain a space, so one value's entries are contiguous and ordered by name.
//!
//! | index | entries of | value |
//! |---|---|---|
//! | `ThingIndex` | things | type, attribute, thing group, billing group, principal (see `thing_index`) |
//! | `PolicyTarget` | policies | each target the policy is attached to |
//! | `ThingGroupChild` | thing groups | the parent group |
//! | `CertificateOrder` | certificates | `all/a`, `all/d`, `ca/<id>/a`, `ca/<id>/d`; the name is the creation order key |
//! | `CaCertificateIndex` | CA certificates | `order/a`, `order/d` (the name is the creation order key); `subject/<hex of the subject>` |
//! | `TopicRuleTopic` | topic rules | the FROM filter, with `%` and space escaped (a filter may hold spaces) |
//!
//! Data written before an index existed gets it at start ([`Registry::prepare_indexes`]).

use std::collections::BTreeSet;

use ferrocore_model::Result;
use ferrocore_model::registry::ThingGroup;
use ferrocore_model::rules::TopicRule;
use ferrocore_model::security::Policy;
use ferrocore_store::{Collection, Expect, Record, Write};
use serde::Serialize;

use crate::{Loaded, Registry, SCAN_CHUNK, decode_record, put, storage_failure};

/// The writes that take a record from `before` (as loaded; `None`: absent) to `after`
/// (`None`: deleted), with its entries in `index`.
pub(crate) fn record_writes<T: Serialize>(
    collection: Collection,
    index: Collection,
    name: &str,
    before: Option<&Loaded<T>>,
    after: Option<&T>,
    entries: impl Fn(&T) -> BTreeSet<String>,
) -> Vec<Write> {
    let expect = before.map_or(Expect::Absent, Loaded::expect);
    let mut writes = vec![match after {
        Some(value) => put(collection, name, expect, value),
        None => Write::delete(collection, name, expect),
    }];
    let old = before.map(|loaded| entries(&loaded.value)).unwrap_or_default();
    let new = after.map(&entries).unwrap_or_default();
    // The record's own write, conditioned on its revision, serialises these.
    writes.extend(old.difference(&new).map(|key| Write::delete(index, key, Expect::Anything)));
    writes.extend(new.difference(&old).map(|key| Write::put(index, key, Expect::Anything, Vec::new())));
    writes
}

/// A policy's entries: one per target.
pub(crate) fn policy_entries(policy: &Policy) -> BTreeSet<String> {
    policy.targets.iter().map(|target| format!("{target} {}", policy.name)).collect()
}

/// A thing group's entry under its parent.
pub(crate) fn group_entries(group: &ThingGroup) -> BTreeSet<String> {
    group.parent.iter().map(|parent| format!("{parent} {}", group.name)).collect()
}

/// A topic filter as an index value: no space (the separator), and `%` escaped so the
/// encoding is one to one.
pub(crate) fn topic_value(filter: &str) -> String {
    filter.replace('%', "%25").replace(' ', "%20")
}

/// A topic rule's entry under its FROM filter.
pub(crate) fn topic_rule_entries(rule: &TopicRule) -> BTreeSet<String> {
    BTreeSet::from([format!("{} {}", topic_value(&rule.topic_pattern), rule.name)])
}

/// How an index is built for records stored before it existed.
struct Build {
    /// The setting that says it was built.
    done: &'static str,
    source: Collection,
    index: Collection,
    entries: Entries,
}

enum Entries {
    /// Read from the record alone.
    Of(fn(&Record) -> Result<BTreeSet<String>>),
    /// A thing's: its groups' lineages are read too.
    Thing,
}

const BUILDS: [Build; 6] = [
    // "v2": the `tree/` entries came after the first thing index.
    Build {
        done: "thing_index_v2_built",
        source: Collection::Thing,
        index: Collection::ThingIndex,
        entries: Entries::Thing,
    },
    Build {
        done: "policy_target_index_built",
        source: Collection::Policy,
        index: Collection::PolicyTarget,
        entries: Entries::Of(|record| Ok(policy_entries(&decode_record(Collection::Policy, record)?))),
    },
    Build {
        done: "thing_group_child_index_built",
        source: Collection::ThingGroup,
        index: Collection::ThingGroupChild,
        entries: Entries::Of(|record| Ok(group_entries(&decode_record(Collection::ThingGroup, record)?))),
    },
    Build {
        done: "certificate_order_index_built",
        source: Collection::Certificate,
        index: Collection::CertificateOrder,
        entries: Entries::Of(|record| {
            Ok(crate::certificates::certificate_entries(&decode_record(Collection::Certificate, record)?))
        }),
    },
    Build {
        done: "ca_certificate_index_built",
        source: Collection::CaCertificate,
        index: Collection::CaCertificateIndex,
        entries: Entries::Of(|record| {
            Ok(crate::ca_certificates::ca_entries(&decode_record(Collection::CaCertificate, record)?))
        }),
    },
    Build {
        done: "topic_rule_topic_index_built",
        source: Collection::TopicRule,
        index: Collection::TopicRuleTopic,
        entries: Entries::Of(|record| Ok(topic_rule_entries(&decode_record(Collection::TopicRule, record)?))),
    },
];

impl Registry {
    /// Builds each index that the stored data does not have yet (once; an interrupted
    /// build starts again). Runs before the server serves requests.
    pub async fn prepare_indexes(&self) -> Result<()> {
        for build in &BUILDS {
            self.build_index(build).await?;
        }
        Ok(())
    }

    async fn build_index(&self, build: &Build) -> Result<()> {
        if self.store.get(Collection::Setting, build.done).await.map_err(storage_failure)?.is_some() {
            return Ok(());
        }
        let mut after: Option<String> = None;
        let mut indexed = 0usize;
        loop {
            let batch = self.store.list(build.source, after.as_deref(), SCAN_CHUNK).await.map_err(storage_failure)?;
            let Some(last) = batch.last() else { break };
            after = Some(last.key.clone());
            let mut writes = Vec::new();
            for record in &batch {
                let entries = match build.entries {
                    Entries::Of(entries) => entries(record)?,
                    Entries::Thing => self.thing_entries(&decode_record(Collection::Thing, record)?).await?,
                };
                writes
                    .extend(entries.into_iter().map(|key| Write::put(build.index, key, Expect::Anything, Vec::new())));
            }
            indexed += batch.len();
            self.store.commit(writes).await.map_err(storage_failure)?;
        }
        self.store
            .commit(vec![Write::put(Collection::Setting, build.done, Expect::Anything, b"true".to_vec())])
            .await
            .map_err(storage_failure)?;
        if indexed > 0 {
            tracing::info!(index = build.index.as_str(), records = indexed, "index built for existing records");
        }
        Ok(())
    }

    /// The names indexed under `value`, in order, after `after` (a name), at most `limit`.
    pub(crate) async fn indexed(
        &self,
        index: Collection,
        value: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let prefix = format!("{value} ");
        let start = after.map_or_else(|| prefix.clone(), |name| format!("{prefix}{name}"));
        let entries = self.store.list(index, Some(&start), limit).await.map_err(storage_failure)?;
        Ok(entries
            .into_iter()
            .take_while(|entry| entry.key.starts_with(&prefix))
            .map(|entry| entry.key[prefix.len()..].to_string())
            .collect())
    }

    /// One page of the names in the entries starting with `prefix` (a value and its
    /// space) for which `keep` holds, from the index alone; the token is the last entry read.
    pub(crate) async fn indexed_page(
        &self,
        index: Collection,
        prefix: &str,
        request: &crate::PageRequest,
        mut keep: impl FnMut(&String) -> bool,
    ) -> Result<crate::Page<String>> {
        let mut builder = crate::paging::PageBuilder::new(request, request.after_within(prefix)?)?;
        loop {
            let start = builder.after().unwrap_or(prefix).to_string();
            let entries = self.store.list(index, Some(&start), builder.chunk()).await.map_err(storage_failure)?;
            let keys: Vec<String> =
                entries.into_iter().map(|entry| entry.key).take_while(|key| key.starts_with(prefix)).collect();
            let fetched = keys.len();
            for key in keys {
                let name = key[prefix.len()..].to_string();
                if let Some(page) = builder.offer(key, Some(name), &mut keep) {
                    return Ok(page);
                }
            }
            if let Some(page) = builder.chunk_done(fetched) {
                return Ok(page);
            }
        }
    }

    /// Every name indexed under `value`, in order.
    pub(crate) async fn all_indexed(&self, index: Collection, value: &str) -> Result<Vec<String>> {
        let mut all: Vec<String> = Vec::new();
        loop {
            let more = self.indexed(index, value, all.last().map(String::as_str), SCAN_CHUNK).await?;
            let exhausted = more.len() < SCAN_CHUNK;
            all.extend(more);
            if exhausted {
                return Ok(all);
            }
        }
    }
}
