use ferrocore_model::registry::{
    self, AttributePayload, Attributes, Thing, ThingType, check_expected_version, check_type_usable,
    max_thing_attributes, thing_attribute_owner, validate_attributes, validate_name,
};
use ferrocore_model::{Error, ResourceKind, Result};
use ferrocore_store::{Collection, Expect, Write};

use crate::paging::{Page, PageRequest};
use crate::thing_index::ThingsBy;
use crate::{Outcome, Registry, new_id};

#[derive(Debug, Clone, Default)]
pub struct CreateThing {
    pub name: String,
    pub thing_type: Option<String>,
    pub attributes: Attributes,
    pub billing_group: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ThingCreated {
    pub name: String,
    pub arn: String,
    pub id: String,
}

#[derive(Debug, Clone, Default)]
pub struct UpdateThing {
    pub name: String,
    pub thing_type: Option<String>,
    pub remove_thing_type: bool,
    pub attributes: Option<AttributePayload>,
    pub expected_version: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct ListThings {
    pub attribute_name: Option<String>,
    pub attribute_value: Option<String>,
    pub use_prefix_attribute_value: bool,
    pub thing_type: Option<String>,
    pub page: PageRequest,
}

impl ListThings {
    fn matches(&self, thing: &Thing) -> bool {
        let type_matches = self.thing_type.as_ref().is_none_or(|t| thing.thing_type.as_ref() == Some(t));
        let attribute_matches = match (&self.attribute_name, &self.attribute_value) {
            (Some(name), value) => thing.attributes.get(name).is_some_and(|actual| match value {
                None => true,
                Some(v) if self.use_prefix_attribute_value => actual.starts_with(v.as_str()),
                Some(v) => actual == v,
            }),
            (None, _) => true,
        };
        type_matches && attribute_matches
    }
}

pub(crate) fn thing_not_found(name: &str) -> Error {
    Error::not_found(format!("Thing {name} cannot be found."))
}

impl Registry {
    pub(crate) async fn require_thing(&self, name: &str) -> Result<crate::Loaded<Thing>> {
        self.load(Collection::Thing, name).await?.ok_or_else(|| thing_not_found(name))
    }

    /// The thing type a thing may use, read so the batch fails if it changes meanwhile.
    async fn usable_type(&self, name: &str) -> Result<crate::Loaded<ThingType>> {
        validate_name("thingTypeName", name)?;
        let thing_type = self
            .load::<ThingType>(Collection::ThingType, name)
            .await?
            .ok_or_else(|| Error::not_found(format!("Thing Type {name} does not exist")))?;
        check_type_usable(&thing_type.value)?;
        Ok(thing_type)
    }

    pub async fn create_thing(&self, request: CreateThing) -> Result<ThingCreated> {
        validate_name("thingName", &request.name)?;
        let attributes =
            AttributePayload { attributes: request.attributes.clone(), merge: false }.apply(&Attributes::new());
        let typed = request.thing_type.is_some();
        validate_attributes(&request.attributes, max_thing_attributes(typed), thing_attribute_owner(typed))?;
        let (attributes, request) = (&attributes, &request);
        // Most creations are of new things: the first attempt writes without reading
        // (the thing's write expects it absent); if it was there, the next attempt
        // reads it and answers as AWS does for a repeated CreateThing.
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let attempts = &attempts;
        self.transact(|| async move {
            let first = attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0;
            let mut writes = Vec::new();
            if let Some(type_name) = &request.thing_type {
                let thing_type = self.usable_type(type_name).await?;
                writes.push(Write::hold(Collection::ThingType, type_name, thing_type.expect()));
            }
            if let Some(group) = &request.billing_group {
                let billing_group = self.require_billing_group(group).await?;
                writes.push(Write::hold(Collection::BillingGroup, group, billing_group.expect()));
            }
            let arn = self.arn(ResourceKind::Thing, &request.name);
            let existing = match first {
                true => None,
                false => self.load::<Thing>(Collection::Thing, &request.name).await?,
            };
            if let Some(existing) = existing {
                let existing = existing.value;
                let same = existing.thing_type == request.thing_type
                    && existing.attributes == *attributes
                    && (request.billing_group.is_none() || existing.billing_group == request.billing_group);
                if !same {
                    return Err(Error::ResourceAlreadyExists {
                        message: format!("Thing {} already exists in account with different attributes", request.name),
                        resource_id: existing.id,
                        resource_arn: arn,
                    });
                }
                return Ok(Outcome::answer(ThingCreated { name: existing.name, arn, id: existing.id }));
            }
            let thing = Thing {
                name: request.name.clone(),
                id: new_id(),
                thing_type: request.thing_type.clone(),
                attributes: attributes.clone(),
                version: 1,
                billing_group: request.billing_group.clone(),
                groups: Default::default(),
                principals: Default::default(),
            };
            let created = ThingCreated { name: thing.name.clone(), arn, id: thing.id.clone() };
            writes.extend(self.thing_changes(&thing.name, None, Some(&thing)).await?);
            Ok(Outcome::write(writes, created))
        })
        .await
    }

    pub async fn describe_thing(&self, name: &str) -> Result<Thing> {
        validate_name("thingName", name)?;
        Ok(self.require_thing(name).await?.value)
    }

    pub async fn update_thing(&self, request: UpdateThing) -> Result<()> {
        validate_name("thingName", &request.name)?;
        if request.remove_thing_type && request.thing_type.is_some() {
            return Err(Error::invalid("Cannot specify both thingTypeName and removeThingType."));
        }
        let request = &request;
        self.transact(|| async move {
            let loaded = self.require_thing(&request.name).await?;
            let mut thing = loaded.value.clone();
            check_expected_version("thing", &thing.name, thing.version, request.expected_version)?;
            let mut writes = Vec::new();
            if request.remove_thing_type {
                thing.thing_type = None;
            } else if let Some(type_name) = &request.thing_type {
                if thing.thing_type.as_ref() != Some(type_name) {
                    let thing_type = self.usable_type(type_name).await?;
                    writes.push(Write::hold(Collection::ThingType, type_name, thing_type.expect()));
                }
                thing.thing_type = Some(type_name.clone());
            }
            if let Some(payload) = &request.attributes {
                validate_attributes(&payload.attributes, registry::MAX_ATTRIBUTES_TYPED, "A thing")?;
                thing.attributes = payload.apply(&thing.attributes);
            }
            let typed = thing.thing_type.is_some();
            validate_attributes(&thing.attributes, max_thing_attributes(typed), thing_attribute_owner(typed))?;
            thing.version += 1;
            writes.extend(self.thing_changes(&thing.name, Some(&loaded), Some(&thing)).await?);
            Ok(Outcome::write(writes, ()))
        })
        .await
    }

    /// Succeeds when the thing does not exist, as AWS documents.
    pub async fn delete_thing(&self, name: &str, expected_version: Option<i64>) -> Result<()> {
        validate_name("thingName", name)?;
        self.transact(|| async move {
            let Some(loaded) = self.load::<Thing>(Collection::Thing, name).await? else {
                return Ok(Outcome::answer(()));
            };
            check_expected_version("thing", name, loaded.value.version, expected_version)?;
            if !loaded.value.principals.is_empty() {
                return Err(Error::invalid(format!(
                    "Cannot delete thing {name}: it has principals attached. Detach them with DetachThingPrincipal first."
                )));
            }
            let mut writes = self.thing_changes(name, Some(&loaded), None).await?;
            writes.extend(self.shadow_writes_for_thing_delete(name).await?);
            Ok(Outcome::write(writes, ()))
        })
        .await
    }

    pub async fn list_things(&self, request: &ListThings) -> Result<Page<Thing>> {
        if request.attribute_value.is_some() && request.attribute_name.is_none() {
            return Err(Error::invalid("attributeValue requires attributeName."));
        }
        // The most selective index the filters name; the others are checked on each thing.
        let by = match (&request.attribute_name, &request.attribute_value, &request.thing_type) {
            (Some(name), Some(value), _) if !request.use_prefix_attribute_value => {
                Some(ThingsBy::Attribute { name, value })
            }
            (Some(name), value, _) => Some(ThingsBy::AttributePrefix { name, prefix: value.as_deref().unwrap_or("") }),
            (None, _, Some(thing_type)) => Some(ThingsBy::Type(thing_type)),
            (None, _, None) => None,
        };
        match by {
            Some(by) => self.page_of(by, &request.page, |t| request.matches(t)).await,
            None => self.page_where(Collection::Thing, &request.page, |_: &Thing| true).await,
        }
    }

    /// Rewrites every thing of a set that `change` alters (returns true for), as writes for one batch.
    pub(crate) async fn rewrite_things(
        &self,
        by: ThingsBy<'_>,
        change: impl Fn(&mut Thing) -> bool,
    ) -> Result<Vec<Write>> {
        let mut writes = Vec::new();
        for loaded in self.all_things_in(by).await? {
            let mut thing = loaded.value.clone();
            if change(&mut thing) {
                writes.extend(self.thing_changes(&thing.name, Some(&loaded), Some(&thing)).await?);
            }
        }
        Ok(writes)
    }

    /// Deletes of every shadow record (and kept version) of a thing, for DeleteThing's
    /// batch: the shadow service keeps them under `<thing>/` (the store's documented layout).
    pub(crate) async fn shadow_writes_for_thing_delete(&self, thing: &str) -> ferrocore_model::Result<Vec<Write>> {
        let prefix = format!("{thing}/");
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
