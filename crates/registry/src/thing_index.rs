//! Secondary indexes of things, kept beside them in `Collection::ThingIndex`: by thing
//! type, attribute, thing group, billing group and principal. Every write of a thing
//! goes through [`thing_writes`], which adds and removes the thing's entries in the same
//! batch, so an index never disagrees with the things it indexes.
//!
//! An entry's key is `<index>/<value> <thing>` (an attribute's value is `<name>=<value>`).
//! The values indexed — AWS's names, attribute names and values, principal ARNs — never
//! contain a space, and attribute names never contain `=`, so the entries of one value
//! are contiguous and ordered by thing name, and a prefix of an attribute value selects
//! the entries of every value that starts with it.

use std::collections::BTreeSet;

use ferrocore_model::Result;
use ferrocore_model::registry::Thing;
use ferrocore_store::{Collection, Expect, Write};

use crate::paging::{Page, PageBuilder, PageRequest};
use crate::{Loaded, Registry, SCAN_CHUNK, put, storage_failure};

/// A set of things an index finds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ThingsBy<'a> {
    Type(&'a str),
    /// Things whose attribute `name` starts with `prefix` (all of them with an empty prefix).
    AttributePrefix {
        name: &'a str,
        prefix: &'a str,
    },
    Attribute {
        name: &'a str,
        value: &'a str,
    },
    Group(&'a str),
    BillingGroup(&'a str),
    Principal(&'a str),
}

impl ThingsBy<'_> {
    /// What every key of the set starts with.
    fn prefix(self) -> String {
        match self {
            Self::Type(name) => format!("type/{name} "),
            Self::AttributePrefix { name, prefix } => format!("attr/{name}={prefix}"),
            Self::Attribute { name, value } => format!("attr/{name}={value} "),
            Self::Group(name) => format!("group/{name} "),
            Self::BillingGroup(name) => format!("billing/{name} "),
            Self::Principal(principal) => format!("principal/{principal} "),
        }
    }
}

/// The thing an entry's key names.
fn thing_of(key: &str) -> &str {
    key.rsplit_once(' ').map_or(key, |(_, thing)| thing)
}

/// The keys of a thing's entries.
fn entries(thing: &Thing) -> BTreeSet<String> {
    let name = &thing.name;
    let mut keys = BTreeSet::new();
    keys.extend(thing.thing_type.iter().map(|t| format!("type/{t} {name}")));
    keys.extend(thing.attributes.iter().map(|(attribute, value)| format!("attr/{attribute}={value} {name}")));
    keys.extend(thing.groups.iter().map(|group| format!("group/{group} {name}")));
    keys.extend(thing.billing_group.iter().map(|group| format!("billing/{group} {name}")));
    keys.extend(thing.principals.keys().map(|principal| format!("principal/{principal} {name}")));
    keys
}

/// The writes that take a thing from `before` (as loaded; `None`: it does not exist)
/// to `after` (`None`: deleted), with its index entries.
pub(crate) fn thing_writes(name: &str, before: Option<&Loaded<Thing>>, after: Option<&Thing>) -> Vec<Write> {
    let expect = before.map_or(Expect::Absent, Loaded::expect);
    let mut writes = vec![match after {
        Some(thing) => put(Collection::Thing, name, expect, thing),
        None => Write::delete(Collection::Thing, name, expect),
    }];
    let old = before.map(|loaded| entries(&loaded.value)).unwrap_or_default();
    let new = after.map(entries).unwrap_or_default();
    // The thing's own write, conditioned on its revision, serialises these.
    writes.extend(old.difference(&new).map(|key| Write::delete(Collection::ThingIndex, key, Expect::Anything)));
    writes
        .extend(new.difference(&old).map(|key| Write::put(Collection::ThingIndex, key, Expect::Anything, Vec::new())));
    writes
}

/// The setting that says the index was built for the things stored before it existed.
const BUILT: &str = "thing_index_built";

impl Registry {
    /// Builds the thing index for a data directory written before it existed (once; an
    /// interrupted build starts again). Runs before the server serves requests.
    pub async fn prepare_thing_index(&self) -> Result<()> {
        if self.store.get(Collection::Setting, BUILT).await.map_err(storage_failure)?.is_some() {
            return Ok(());
        }
        let mut after: Option<String> = None;
        let mut indexed = 0usize;
        loop {
            let batch =
                self.store.list(Collection::Thing, after.as_deref(), SCAN_CHUNK).await.map_err(storage_failure)?;
            let Some(last) = batch.last() else { break };
            after = Some(last.key.clone());
            let mut writes = Vec::new();
            for record in &batch {
                let thing: Thing = crate::decode_record(Collection::Thing, record)?;
                writes.extend(
                    entries(&thing)
                        .into_iter()
                        .map(|key| Write::put(Collection::ThingIndex, key, Expect::Anything, Vec::new())),
                );
            }
            indexed += batch.len();
            self.store.commit(writes).await.map_err(storage_failure)?;
        }
        self.store
            .commit(vec![Write::put(Collection::Setting, BUILT, Expect::Anything, b"true".to_vec())])
            .await
            .map_err(storage_failure)?;
        if indexed > 0 {
            tracing::info!(things = indexed, "thing index built for existing things");
        }
        Ok(())
    }

    /// Up to `limit` things of a set, by entry key after `after` (the set's start when `None`),
    /// each with its key; a thing deleted meanwhile is `None`.
    async fn things_in(
        &self,
        by: ThingsBy<'_>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<Loaded<Thing>>)>> {
        let prefix = by.prefix();
        let start = after.unwrap_or(&prefix);
        let entries = self.store.list(Collection::ThingIndex, Some(start), limit).await.map_err(storage_failure)?;
        let mut found = Vec::with_capacity(entries.len());
        for entry in entries.into_iter().take_while(|entry| entry.key.starts_with(&prefix)) {
            let thing = self.load::<Thing>(Collection::Thing, thing_of(&entry.key)).await?;
            found.push((entry.key, thing));
        }
        Ok(found)
    }

    /// One page of a set's things for which `keep` holds, in entry order.
    pub(crate) async fn page_of(
        &self,
        by: ThingsBy<'_>,
        request: &PageRequest,
        mut keep: impl FnMut(&Thing) -> bool,
    ) -> Result<Page<Thing>> {
        let mut builder = PageBuilder::new(request, request.after_within(&by.prefix())?)?;
        loop {
            let found = self.things_in(by, builder.after(), builder.chunk()).await?;
            let fetched = found.len();
            for (key, thing) in found {
                if let Some(page) = builder.offer(key, thing.map(|t| t.value), &mut keep) {
                    return Ok(page);
                }
            }
            if let Some(page) = builder.chunk_done(fetched) {
                return Ok(page);
            }
        }
    }

    /// Every thing of a set (for writes that must change each, and small sets).
    pub(crate) async fn all_things_in(&self, by: ThingsBy<'_>) -> Result<Vec<Loaded<Thing>>> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let found = self.things_in(by, after.as_deref(), SCAN_CHUNK).await?;
            let exhausted = found.len() < SCAN_CHUNK;
            if let Some((key, _)) = found.last() {
                after = Some(key.clone());
            }
            all.extend(found.into_iter().filter_map(|(_, thing)| thing));
            if exhausted {
                return Ok(all);
            }
        }
    }

    /// Whether any thing is in a set.
    pub(crate) async fn any_thing_in(&self, by: ThingsBy<'_>) -> Result<Option<String>> {
        Ok(self.things_in(by, None, 1).await?.into_iter().next().map(|(key, _)| thing_of(&key).to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrocore_model::security::ThingPrincipalType;

    fn thing() -> Thing {
        let mut thing = Thing {
            name: "sensor-1".into(),
            id: "id".into(),
            thing_type: Some("Meter".into()),
            attributes: Default::default(),
            version: 1,
            billing_group: None,
            groups: Default::default(),
            principals: Default::default(),
        };
        thing.attributes.insert("floor".into(), "a=[1]".into());
        thing.groups.insert("east".into());
        thing.billing_group = Some("pay".into());
        thing.principals.insert("arn:aws:iot:r:1:cert/ab".into(), ThingPrincipalType::NonExclusiveThing);
        thing
    }

    #[test]
    fn each_index_finds_the_thing_by_its_prefix() {
        let keys = entries(&thing());
        for by in [
            ThingsBy::Type("Meter"),
            ThingsBy::Attribute { name: "floor", value: "a=[1]" },
            ThingsBy::AttributePrefix { name: "floor", prefix: "a=" },
            ThingsBy::AttributePrefix { name: "floor", prefix: "" },
            ThingsBy::Group("east"),
            ThingsBy::BillingGroup("pay"),
            ThingsBy::Principal("arn:aws:iot:r:1:cert/ab"),
        ] {
            let prefix = by.prefix();
            let found: Vec<&str> = keys.iter().filter(|k| k.starts_with(&prefix)).map(|k| thing_of(k)).collect();
            assert_eq!(found, ["sensor-1"], "{by:?}");
        }
        // Positive control for the prefixes: other values find nothing.
        for by in [
            ThingsBy::Type("Mete"),
            ThingsBy::Attribute { name: "floor", value: "a" },
            ThingsBy::AttributePrefix { name: "floo", prefix: "" },
            ThingsBy::Group("eas"),
        ] {
            assert!(!keys.iter().any(|k| k.starts_with(&by.prefix())), "{by:?}");
        }
    }

    #[test]
    fn a_thing_write_moves_only_the_entries_that_changed() {
        let before = Loaded { value: thing(), revision: 3 };
        let mut after = thing();
        after.groups.insert("west".into());
        after.thing_type = None;
        let writes = thing_writes("sensor-1", Some(&before), Some(&after));
        assert_eq!(writes[0].expect, Expect::Revision(3), "the thing's own write is conditioned on what was read");
        let index: Vec<(&str, bool)> =
            writes[1..].iter().map(|w| (w.key.as_str(), matches!(w.op, ferrocore_store::WriteOp::Delete))).collect();
        assert_eq!(index, [("type/Meter sensor-1", true), ("group/west sensor-1", false)]);
        let deleted = thing_writes("sensor-1", Some(&before), None);
        assert_eq!(deleted.len(), 1 + entries(&before.value).len(), "a deleted thing leaves no entry");
        let created = thing_writes("sensor-1", None, Some(&after));
        assert_eq!(created[0].expect, Expect::Absent);
    }
}
