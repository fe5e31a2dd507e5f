use std::collections::BTreeSet;

use ferrocore_model::registry::{
    GroupProperties, MAX_GROUP_ATTRIBUTES, MAX_GROUP_DEPTH, Tags, Thing, ThingGroup, check_expected_version,
    check_group_membership, validate_attributes, validate_description, validate_name, validate_tags,
};
use ferrocore_model::{Error, ResourceKind, Result};
use ferrocore_store::{Collection, Write};

use crate::indexes::{group_entries, record_writes};
use crate::paging::{Page, PageRequest, paginate};
use crate::thing_index::ThingsBy;
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

/// The writes that take a group from `before` to `after`, with its entry under its parent.
fn group_writes(name: &str, before: Option<&Loaded<ThingGroup>>, after: Option<&ThingGroup>) -> Vec<Write> {
    record_writes(Collection::ThingGroup, Collection::ThingGroupChild, name, before, after, group_entries)
}

fn validate_properties(properties: &GroupProperties) -> Result<()> {
    validate_description("thingGroupProperties.thingGroupDescription", properties.description.as_deref())?;
    validate_attributes(&properties.attributes, MAX_GROUP_ATTRIBUTES, "A thing group")
}

impl Registry {
    /// The group and the groups above it, nearest first (the group itself first; empty
    /// when it does not exist). One read per level, at most [`MAX_GROUP_DEPTH`].
    pub(crate) async fn group_lineage(&self, name: &str) -> Result<Vec<ThingGroup>> {
        let mut lineage: Vec<ThingGroup> = Vec::new();
        let mut next = Some(name.to_string());
        while let Some(current) = next.take() {
            if lineage.len() >= MAX_GROUP_DEPTH {
                break;
            }
            let Some(group) = self.load::<ThingGroup>(Collection::ThingGroup, &current).await? else {
                break;
            };
            next = group.value.parent.clone();
            lineage.push(group.value);
        }
        Ok(lineage)
    }

    /// Every group below `name` (through the parent index: one read per group with children).
    async fn descendants(&self, name: &str) -> Result<BTreeSet<String>> {
        let mut found = BTreeSet::new();
        let mut frontier = vec![name.to_string()];
        while let Some(group) = frontier.pop() {
            for child in self.all_indexed(Collection::ThingGroupChild, &group).await? {
                if found.insert(child.clone()) {
                    frontier.push(child);
                }
            }
        }
        Ok(found)
    }

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
                if self.group_lineage(parent).await?.len() + 1 > MAX_GROUP_DEPTH {
                    return Err(Error::invalid(format!(
                        "Thing group hierarchies can be at most {MAX_GROUP_DEPTH} levels deep"
                    )));
                }
                writes.push(Write::hold(Collection::ThingGroup, parent, parent_group.expect()));
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
            writes.extend(group_writes(&group.name, None, Some(&group)));
            Ok(Outcome::write(writes, created))
        })
        .await
    }

    pub async fn describe_thing_group(&self, name: &str) -> Result<ThingGroupView> {
        let group = self.require_group(name).await?.value;
        let lineage = self.group_lineage(name).await?;
        let root_to_parent = lineage.iter().skip(1).rev().map(|ancestor| self.group_ref(&ancestor.name)).collect();
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
            if !self.indexed(Collection::ThingGroupChild, name, None, 1).await?.is_empty() {
                return Err(Error::invalid(format!(
                    "Cannot delete thing group : {name} when there are still child groups attached to it"
                )));
            }
            // The group goes first: joining things, child groups and policy attachments
            // hold it, so each has committed (and is undone below) or fails; the last
            // writes check for any that committed after they were read.
            let arn = self.arn(ResourceKind::ThingGroup, name);
            let mut writes = group_writes(name, Some(&loaded), None);
            writes.extend(self.rewrite_things(ThingsBy::Group(name), |thing| thing.groups.remove(name)).await?);
            writes.extend(self.detach_target_everywhere(&arn).await?);
            writes.push(Write::none_with_prefix(Collection::ThingIndex, ThingsBy::Group(name).prefix()));
            writes.push(Write::none_with_prefix(Collection::ThingGroupChild, format!("{name} ")));
            writes.push(Write::none_with_prefix(Collection::PolicyTarget, format!("{arn} ")));
            Ok(Outcome::write(writes, ()))
        })
        .await
    }

    pub async fn list_thing_groups(&self, request: &ListThingGroups) -> Result<Page<GroupRef>> {
        let named = |name: &str| request.name_prefix.as_ref().is_none_or(|prefix| name.starts_with(prefix.as_str()));
        let Some(parent) = &request.parent else {
            let prefix = request.name_prefix.as_deref().unwrap_or_default();
            let page = self.page_with_prefix(Collection::ThingGroup, prefix, &request.page, |_: &ThingGroup| true);
            return Ok(page.await?.map(|group| self.group_ref(&group.name)));
        };
        self.require_group(parent).await?;
        let page = match request.recursive {
            true => {
                let below = self.descendants(parent).await?;
                paginate(below.into_iter().filter(|name| named(name)), |n| n.as_str(), &request.page)?
            }
            false => {
                let prefix = format!("{parent} ");
                self.indexed_page(Collection::ThingGroupChild, &prefix, &request.page, |n| named(n)).await?
            }
        };
        Ok(page.map(|name| self.group_ref(&name)))
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
            let lineages = self.lineages(loaded.value.groups.iter().chain(add)).await?;
            let mut updated = loaded.value.clone();
            let mut writes = Vec::new();
            for name in remove {
                let group = self.require_group(name).await?;
                writes.push(Write::hold(Collection::ThingGroup, name, group.expect()));
                updated.groups.remove(name);
            }
            let root_of = |name: &str| {
                lineages.get(name).and_then(|lineage| lineage.last()).map_or_else(|| name.to_string(), Clone::clone)
            };
            for name in add {
                let group = self.require_group(name).await?;
                check_group_membership(&updated, name, &root_of)?;
                writes.push(Write::hold(Collection::ThingGroup, name, group.expect()));
                updated.groups.insert(name.clone());
            }
            if updated.groups != loaded.value.groups {
                writes.extend(self.thing_changes(thing, Some(&loaded), Some(&updated)).await?);
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
        let by = if recursive { ThingsBy::Tree(group) } else { ThingsBy::Group(group) };
        self.names_page(by, page).await
    }

    pub async fn list_thing_groups_for_thing(&self, thing: &str, page: &PageRequest) -> Result<Page<GroupRef>> {
        validate_name("thingName", thing)?;
        let thing = self.require_thing(thing).await?.value;
        let page = paginate(thing.groups.iter(), |n| n.as_str(), page)?;
        Ok(Page { items: page.items.into_iter().map(|n| self.group_ref(n)).collect(), next_token: page.next_token })
    }
}
