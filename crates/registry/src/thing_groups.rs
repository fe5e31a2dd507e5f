use std::collections::BTreeSet;

use ferrocore_model::registry::{
    GroupProperties, MAX_GROUP_ATTRIBUTES, MAX_GROUP_DEPTH, Tags, Thing, ThingGroup, check_expected_version,
    check_group_membership, validate_attributes, validate_description, validate_name, validate_tags,
};
use ferrocore_model::{Error, ResourceKind, Result};
use ferrocore_store::{Collection, Expect, Write};

use crate::paging::{Page, PageRequest, paginate};
use crate::thing_index::{ThingsBy, thing_writes};
use crate::things::thing_not_found;
use crate::{Loaded, Outcome, Registry, new_id, put};

#[derive(Debug, Clone, Default)]
pub struct CreateThingGroup {
    pub name: String,
    pub parent: Option<String>,
    pub properties: GroupProperties,
    pub tags: Tags,
}

#[derive(Debug, Clone)]
pub struct ThingGroupCreated {
    pub name: String,
    pub arn: String,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    pub name: String,
    pub arn: String,
}

/// A thing group as DescribeThingGroup shows it.
#[derive(Debug, Clone)]
pub struct ThingGroupView {
    pub group: ThingGroup,
    pub arn: String,
    /// From the root down to the direct parent.
    pub root_to_parent: Vec<GroupRef>,
}

#[derive(Debug, Clone, Default)]
pub struct ListThingGroups {
    pub parent: Option<String>,
    pub name_prefix: Option<String>,
    pub recursive: bool,
    pub page: PageRequest,
}

fn group_not_found(name: &str) -> Error {
    Error::not_found(format!("ThingGroup {name} does not exist"))
}

fn validate_properties(properties: &GroupProperties) -> Result<()> {
    validate_description("thingGroupProperties.thingGroupDescription", properties.description.as_deref())?;
    validate_attributes(&properties.attributes, MAX_GROUP_ATTRIBUTES, "A thing group")
}

/// The chain of ancestors of `name` (direct parent first), from an in-memory set of groups.
fn ancestors<'a>(groups: &'a [Loaded<ThingGroup>], name: &str) -> Vec<&'a ThingGroup> {
    let mut chain = Vec::new();
    let mut current = groups.iter().find(|g| g.value.name == name).and_then(|g| g.value.parent.clone());
    while let Some(parent) = current {
        let Some(group) = groups.iter().find(|g| g.value.name == parent) else {
            break;
        };
        if chain.len() > MAX_GROUP_DEPTH {
            break;
        }
        chain.push(&group.value);
        current = group.value.parent.clone();
    }
    chain
}

/// `name` and all groups below it.
fn with_descendants(groups: &[Loaded<ThingGroup>], name: &str) -> BTreeSet<String> {
    let mut found: BTreeSet<String> = [name.to_string()].into();
    loop {
        let more: Vec<String> = groups
            .iter()
            .filter(|g| g.value.parent.as_ref().is_some_and(|p| found.contains(p)) && !found.contains(&g.value.name))
            .map(|g| g.value.name.clone())
            .collect();
        if more.is_empty() {
            return found;
        }
        found.extend(more);
    }
}

impl Registry {
    async fn require_group(&self, name: &str) -> Result<Loaded<ThingGroup>> {
        validate_name("thingGroupName", name)?;
        self.load(Collection::ThingGroup, name).await?.ok_or_else(|| group_not_found(name))
    }

    fn group_ref(&self, name: &str) -> GroupRef {
        GroupRef { name: name.to_string(), arn: self.arn(ResourceKind::ThingGroup, name) }
    }

    pub async fn create_thing_group(&self, request: CreateThingGroup) -> Result<ThingGroupCreated> {
        validate_name("thingGroupName", &request.name)?;
        validate_properties(&request.properties)?;
        validate_tags(&request.tags)?;
        let arn = self.arn(ResourceKind::ThingGroup, &request.name);
        let (arn, request) = (&arn, &request);
        self.transact(|| async move {
            if let Some(existing) = self.load::<ThingGroup>(Collection::ThingGroup, &request.name).await? {
                let existing = existing.value;
                if existing.properties != request.properties || existing.parent != request.parent {
                    return Err(Error::ResourceAlreadyExists {
                        message: format!(
                            "Thing Group {} already exists in current account with different properties",
                            request.name
                        ),
                        resource_id: existing.id,
                        resource_arn: arn.clone(),
                    });
                }
                return Ok(Outcome::answer(ThingGroupCreated {
                    name: existing.name,
                    arn: arn.clone(),
                    id: existing.id,
                }));
            }
            let mut writes = Vec::new();
            if let Some(parent) = &request.parent {
                let parent_group = self.require_group(parent).await?;
                let groups = self.load_all::<ThingGroup>(Collection::ThingGroup).await?;
                if ancestors(&groups, parent).len() + 2 > MAX_GROUP_DEPTH {
                    return Err(Error::invalid(format!(
                        "Thing group hierarchies can be at most {MAX_GROUP_DEPTH} levels deep"
                    )));
                }
                writes.push(Write::check(Collection::ThingGroup, parent, parent_group.expect()));
            }
            let group = ThingGroup {
                name: request.name.clone(),
                id: new_id(),
                properties: request.properties.clone(),
                parent: request.parent.clone(),
                version: 1,
                creation_date: self.now(),
                tags: request.tags.clone(),
            };
            let created = ThingGroupCreated { name: group.name.clone(), arn: arn.clone(), id: group.id.clone() };
            writes.push(put(Collection::ThingGroup, &group.name, Expect::Absent, &group));
            Ok(Outcome::write(writes, created))
        })
        .await
    }

    pub async fn describe_thing_group(&self, name: &str) -> Result<ThingGroupView> {
        let group = self.require_group(name).await?.value;
        let mut root_to_parent = Vec::new();
        let mut parent = group.parent.clone();
        while let Some(name) = parent {
            if root_to_parent.len() > MAX_GROUP_DEPTH {
                break;
            }
            let Some(ancestor) = self.load::<ThingGroup>(Collection::ThingGroup, &name).await? else {
                break;
            };
            root_to_parent.push(self.group_ref(&name));
            parent = ancestor.value.parent;
        }
        root_to_parent.reverse();
        Ok(ThingGroupView { arn: self.arn(ResourceKind::ThingGroup, name), group, root_to_parent })
    }

    /// Replaces the group's properties (an attribute payload with `merge` merges);
    /// returns the new version.
    pub async fn update_thing_group(
        &self,
        name: &str,
        description: Option<String>,
        attributes: Option<ferrocore_model::registry::AttributePayload>,
        expected_version: Option<i64>,
    ) -> Result<i64> {
        validate_description("thingGroupProperties.thingGroupDescription", description.as_deref())?;
        let (attributes, description) = (&attributes, &description);
        self.transact(|| async move {
            let loaded = self.require_group(name).await?;
            let mut group = loaded.value.clone();
            check_expected_version("thing group", name, group.version, expected_version)?;
            group.properties.description = description.clone();
            if let Some(payload) = &attributes {
                group.properties.attributes = payload.apply(&group.properties.attributes);
            }
            validate_properties(&group.properties)?;
            group.version += 1;
            let version = group.version;
            // A group's description and attributes are not in any policy's context.
            Ok(Outcome::write_keeping_permissions(
                vec![put(Collection::ThingGroup, name, loaded.expect(), &group)],
                version,
            ))
        })
        .await
    }

    /// Succeeds when the group does not exist. Its things leave it.
    pub async fn delete_thing_group(&self, name: &str, expected_version: Option<i64>) -> Result<()> {
        validate_name("thingGroupName", name)?;
        self.transact(|| async move {
            let Some(loaded) = self.load::<ThingGroup>(Collection::ThingGroup, name).await? else {
                return Ok(Outcome::answer(()));
            };
            check_expected_version("thing group", name, loaded.value.version, expected_version)?;
            let groups = self.load_all::<ThingGroup>(Collection::ThingGroup).await?;
            if groups.iter().any(|g| g.value.parent.as_deref() == Some(name)) {
                return Err(Error::invalid(format!(
                    "Cannot delete thing group : {name} when there are still child groups attached to it"
                )));
            }
            let mut writes = self.rewrite_things(ThingsBy::Group(name), |thing| thing.groups.remove(name)).await?;
            writes.extend(self.detach_target_everywhere(&self.arn(ResourceKind::ThingGroup, name)).await?);
            writes.push(Write::delete(Collection::ThingGroup, name, loaded.expect()));
            Ok(Outcome::write(writes, ()))
        })
        .await
    }

    pub async fn list_thing_groups(&self, request: &ListThingGroups) -> Result<Page<GroupRef>> {
        let groups = self.load_all::<ThingGroup>(Collection::ThingGroup).await?;
        let scope: Option<BTreeSet<String>> = match &request.parent {
            None => None,
            Some(parent) => {
                self.require_group(parent).await?;
                let mut below = if request.recursive {
                    with_descendants(&groups, parent)
                } else {
                    groups
                        .iter()
                        .filter(|g| g.value.parent.as_ref() == Some(parent))
                        .map(|g| g.value.name.clone())
                        .collect()
                };
                below.remove(parent);
                Some(below)
            }
        };
        let names = groups.iter().map(|g| &g.value.name).filter(|name| {
            scope.as_ref().is_none_or(|s| s.contains(*name))
                && request.name_prefix.as_ref().is_none_or(|p| name.starts_with(p.as_str()))
        });
        let page = paginate(names, |n| n.as_str(), &request.page)?;
        Ok(Page { items: page.items.into_iter().map(|n| self.group_ref(n)).collect(), next_token: page.next_token })
    }

    pub async fn add_thing_to_thing_group(&self, group: &str, thing: &str) -> Result<()> {
        self.update_thing_groups_for_thing(thing, &[group.to_string()], &[]).await
    }

    pub async fn remove_thing_from_thing_group(&self, group: &str, thing: &str) -> Result<()> {
        self.update_thing_groups_for_thing(thing, &[], &[group.to_string()]).await
    }

    /// Adds the thing to `add` and removes it from `remove`, all or nothing.
    pub async fn update_thing_groups_for_thing(&self, thing: &str, add: &[String], remove: &[String]) -> Result<()> {
        validate_name("thingName", thing)?;
        if let Some(both) = add.iter().find(|g| remove.contains(g)) {
            return Err(Error::invalid(format!(
                "Thing group {both} is both in thingGroupsToAdd and thingGroupsToRemove."
            )));
        }
        let (mut add, mut remove) = (add.to_vec(), remove.to_vec());
        add.sort();
        add.dedup();
        remove.sort();
        remove.dedup();
        let (add, remove) = (&add, &remove);
        self.transact(|| async move {
            let loaded = self.load::<Thing>(Collection::Thing, thing).await?.ok_or_else(|| thing_not_found(thing))?;
            let groups = self.load_all::<ThingGroup>(Collection::ThingGroup).await?;
            let mut updated = loaded.value.clone();
            let mut writes = Vec::new();
            for name in remove {
                let group = self.require_group(name).await?;
                writes.push(Write::check(Collection::ThingGroup, name, group.expect()));
                updated.groups.remove(name);
            }
            let root_of =
                |name: &str| ancestors(&groups, name).last().map_or_else(|| name.to_string(), |root| root.name.clone());
            for name in add {
                let group = self.require_group(name).await?;
                check_group_membership(&updated, name, &root_of)?;
                writes.push(Write::check(Collection::ThingGroup, name, group.expect()));
                updated.groups.insert(name.clone());
            }
            if updated.groups != loaded.value.groups {
                writes.extend(thing_writes(thing, Some(&loaded), Some(&updated)));
            }
            Ok(Outcome::write(writes, ()))
        })
        .await
    }

    pub async fn list_things_in_thing_group(
        &self,
        group: &str,
        recursive: bool,
        page: &PageRequest,
    ) -> Result<Page<String>> {
        self.require_group(group).await?;
        if !recursive {
            let things = self.page_of(ThingsBy::Group(group), page, |thing| thing.groups.contains(group));
            return Ok(things.await?.map(|thing| thing.name));
        }
        // Recursive: every thing is read (the groups' indexes are not merged yet).
        let members = with_descendants(&self.load_all::<ThingGroup>(Collection::ThingGroup).await?, group);
        let things =
            self.page_where(Collection::Thing, page, |thing: &Thing| thing.groups.iter().any(|g| members.contains(g)));
        Ok(things.await?.map(|thing| thing.name))
    }

    pub async fn list_thing_groups_for_thing(&self, thing: &str, page: &PageRequest) -> Result<Page<GroupRef>> {
        validate_name("thingName", thing)?;
        let thing = self.require_thing(thing).await?.value;
        let page = paginate(thing.groups.iter(), |n| n.as_str(), page)?;
        Ok(Page { items: page.items.into_iter().map(|n| self.group_ref(n)).collect(), next_token: page.next_token })
    }
}
