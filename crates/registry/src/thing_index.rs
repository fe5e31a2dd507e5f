//! Secondary indexes of things, kept beside them in `Collection::ThingIndex`: by thing
//! type, attribute, thing group (direct, and with every group above it: `tree/`),
//! billing group and principal. Every write of a thing goes through
//! [`Registry::thing_changes`], which adds and removes the thing's entries in the same
//! batch, so an index never disagrees with the things it indexes.
//!
//! A group's place in its hierarchy never changes (AWS cannot move a group, and a group
//! with children cannot be deleted), so the `tree/` entries written when a thing joins a
//! group stay true until it leaves.
//!
//! An entry's key is `<index>/<value> <thing>` (an attribute's value is `<name>=<value>`).
//! The values indexed — AWS's names, attribute names and values, principal ARNs — never
//! contain a space, and attribute names never contain `=`, so the entries of one value
//! are contiguous and ordered by thing name, and a prefix of an attribute value selects
//! the entries of every value that starts with it.

use std::collections::{BTreeMap, BTreeSet};

use ferrocore_model::Result;
use ferrocore_model::registry::Thing;
use ferrocore_store::{Collection, Write};

use crate::indexes::record_writes;
use crate::paging::{Page, PageBuilder, PageRequest};
use crate::{Loaded, Registry, SCAN_CHUNK, storage_failure};

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
    /// Things in the group or in any group below it.
    Tree(&'a str),
    BillingGroup(&'a str),
    Principal(&'a str),
}

impl ThingsBy<'_> {
    /// What every key of the set starts with.
    pub(crate) fn prefix(self) -> String {
        match self {
            Self::Type(name) => format!("type/{name} "),
            Self::AttributePrefix { name, prefix } => format!("attr/{name}={prefix}"),
            Self::Attribute { name, value } => format!("attr/{name}={value} "),
            Self::Group(name) => format!("group/{name} "),
            Self::Tree(name) => format!("tree/{name} "),
            Self::BillingGroup(name) => format!("billing/{name} "),
            Self::Principal(principal) => format!("principal/{principal} "),
        }
    }
}

/// The thing an entry's key names.
fn thing_of(key: &str) -> &str {
    key.rsplit_once(' ').map_or(key, |(_, thing)| thing)
}

/// Each thing group a thing is in, with the groups above it (nearest first, itself first).
pub(crate) type Lineages = BTreeMap<String, Vec<String>>;

/// The keys of a thing's entries; `lineages` holds its groups' lineages.
pub(crate) fn entries(thing: &Thing, lineages: &Lineages) -> BTreeSet<String> {
    let name = &thing.name;
    let mut keys = BTreeSet::new();
    keys.extend(thing.thing_type.iter().map(|t| format!("type/{t} {name}")));
    keys.extend(thing.attributes.iter().map(|(attribute, value)| format!("attr/{attribute}={value} {name}")));
    keys.extend(thing.groups.iter().map(|group| format!("group/{group} {name}")));
    for group in &thing.groups {
        let lineage = lineages.get(group).map_or(std::slice::from_ref(group), Vec::as_slice);
        keys.extend(lineage.iter().map(|above| format!("tree/{above} {name}")));
    }
    keys.extend(thing.billing_group.iter().map(|group| format!("billing/{group} {name}")));
    keys.extend(thing.principals.keys().map(|principal| format!("principal/{principal} {name}")));
    keys
}

/// The writes that take a thing from `before` (as loaded; `None`: it does not exist)
/// to `after` (`None`: deleted), with its index entries; `lineages` covers the groups of both.
fn thing_writes(name: &str, before: Option<&Loaded<Thing>>, after: Option<&Thing>, lineages: &Lineages) -> Vec<Write> {
    record_writes(Collection::Thing, Collection::ThingIndex, name, before, after, |thing| entries(thing, lineages))
}

impl Registry {
    /// The writes that take a thing from `before` (as loaded; `None`: it does not exist)
    /// to `after` (`None`: deleted), with its index entries.
    pub(crate) async fn thing_changes(
        &self,
        name: &str,
        before: Option<&Loaded<Thing>>,
        after: Option<&Thing>,
    ) -> Result<Vec<Write>> {
        // Only groups joined or left move `tree/` entries: the others' are the same on both sides.
        let empty = BTreeSet::new();
        let old = before.map_or(&empty, |loaded| &loaded.value.groups);
        let new = after.map_or(&empty, |thing| &thing.groups);
        let lineages = self.lineages(old.symmetric_difference(new)).await?;
        Ok(thing_writes(name, before, after, &lineages))
    }

    /// The lineages of some thing groups.
    pub(crate) async fn lineages(&self, groups: impl Iterator<Item = &String>) -> Result<Lineages> {
        let mut lineages = Lineages::new();
        for group in groups {
            if !lineages.contains_key(group) {
                let lineage = self.group_lineage(group).await?.into_iter().map(|g| g.name).collect();
                lineages.insert(group.clone(), lineage);
            }
        }
        Ok(lineages)
    }

    /// A thing's index entries, for building the index.
    pub(crate) async fn thing_entries(&self, thing: &Thing) -> Result<BTreeSet<String>> {
        Ok(entries(thing, &self.lineages(thing.groups.iter()).await?))
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

    /// One page of the names of a set's things, from the index alone (no thing is read:
    /// the entries change in the same batch as their things).
    pub(crate) async fn names_page(&self, by: ThingsBy<'_>, request: &PageRequest) -> Result<Page<String>> {
        self.indexed_page(Collection::ThingIndex, &by.prefix(), request, |_| true).await
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
    use ferrocore_store::Expect;

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
        let lineages: Lineages = [("east".to_string(), vec!["east".into(), "region".into(), "world".into()])].into();
        let keys = entries(&thing(), &lineages);
        for by in [
            ThingsBy::Type("Meter"),
            ThingsBy::Attribute { name: "floor", value: "a=[1]" },
            ThingsBy::AttributePrefix { name: "floor", prefix: "a=" },
            ThingsBy::AttributePrefix { name: "floor", prefix: "" },
            ThingsBy::Group("east"),
            ThingsBy::Tree("east"),
            ThingsBy::Tree("region"),
            ThingsBy::Tree("world"),
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
            ThingsBy::Group("region"),
            ThingsBy::Tree("worl"),
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
        let lineages: Lineages = [("west".to_string(), vec!["west".into(), "world".into()])].into();
        let writes = thing_writes("sensor-1", Some(&before), Some(&after), &lineages);
        assert_eq!(writes[0].expect, Expect::Revision(3), "the thing's own write is conditioned on what was read");
        let index: Vec<(&str, bool)> =
            writes[1..].iter().map(|w| (w.key.as_str(), matches!(w.op, ferrocore_store::WriteOp::Delete))).collect();
        assert_eq!(
            index,
            [
                ("type/Meter sensor-1", true),
                ("group/west sensor-1", false),
                ("tree/west sensor-1", false),
                ("tree/world sensor-1", false)
            ]
        );
        let deleted = thing_writes("sensor-1", Some(&before), None, &lineages);
        assert_eq!(deleted.len(), 1 + entries(&before.value, &lineages).len(), "a deleted thing leaves no entry");
        let created = thing_writes("sensor-1", None, Some(&after), &lineages);
        assert_eq!(created[0].expect, Expect::Absent);
    }
}
