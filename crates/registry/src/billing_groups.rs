use ferrocore_model::registry::{
    BillingGroup, Tags, check_expected_version, validate_description, validate_name, validate_tags,
};
use ferrocore_model::{Error, ResourceKind, Result};
use ferrocore_store::{Collection, Expect, Write};

use crate::paging::{Page, PageRequest};
use crate::thing_index::ThingsBy;
use crate::things::thing_not_found;
use crate::{Loaded, Outcome, Registry, new_id, put};

#[derive(Debug, Clone, Default)]
pub struct CreateBillingGroup {
    pub name: String,
    pub description: Option<String>,
    pub tags: Tags,
}

#[derive(Debug, Clone)]
pub struct BillingGroupCreated {
    pub name: String,
    pub arn: String,
    pub id: String,
}

fn billing_group_not_found(name: &str) -> Error {
    Error::not_found(format!("BillingGroup {name} does not exist"))
}

impl Registry {
    pub(crate) async fn require_billing_group(&self, name: &str) -> Result<Loaded<BillingGroup>> {
        validate_name("billingGroupName", name)?;
        self.load(Collection::BillingGroup, name).await?.ok_or_else(|| billing_group_not_found(name))
    }

    pub async fn create_billing_group(&self, request: CreateBillingGroup) -> Result<BillingGroupCreated> {
        validate_name("billingGroupName", &request.name)?;
        validate_description("billingGroupProperties.billingGroupDescription", request.description.as_deref())?;
        validate_tags(&request.tags)?;
        let arn = self.arn(ResourceKind::BillingGroup, &request.name);
        let (arn, request) = (&arn, &request);
        self.transact(|| async move {
            if let Some(existing) = self.load::<BillingGroup>(Collection::BillingGroup, &request.name).await? {
                let existing = existing.value;
                if existing.description != request.description {
                    return Err(Error::ResourceAlreadyExists {
                        message: format!("Billing Group {} already exists with different properties", request.name),
                        resource_id: existing.id,
                        resource_arn: arn.clone(),
                    });
                }
                return Ok(Outcome::answer(BillingGroupCreated {
                    name: existing.name,
                    arn: arn.clone(),
                    id: existing.id,
                }));
            }
            let group = BillingGroup {
                name: request.name.clone(),
                id: new_id(),
                description: request.description.clone(),
                version: 1,
                creation_date: self.now(),
                tags: request.tags.clone(),
            };
            let created = BillingGroupCreated { name: group.name.clone(), arn: arn.clone(), id: group.id.clone() };
            Ok(Outcome::write(vec![put(Collection::BillingGroup, &group.name, Expect::Absent, &group)], created))
        })
        .await
    }

    pub async fn describe_billing_group(&self, name: &str) -> Result<BillingGroup> {
        Ok(self.require_billing_group(name).await?.value)
    }

    /// Returns the new version.
    pub async fn update_billing_group(
        &self,
        name: &str,
        description: Option<String>,
        expected_version: Option<i64>,
    ) -> Result<i64> {
        validate_description("billingGroupProperties.billingGroupDescription", description.as_deref())?;
        let description = &description;
        self.transact(|| async move {
            let loaded = self.require_billing_group(name).await?;
            let mut group = loaded.value.clone();
            check_expected_version("billing group", name, group.version, expected_version)?;
            group.description = description.clone();
            group.version += 1;
            let version = group.version;
            Ok(Outcome::write(vec![put(Collection::BillingGroup, name, loaded.expect(), &group)], version))
        })
        .await
    }

    /// Succeeds when the group does not exist. Its things leave it.
    pub async fn delete_billing_group(&self, name: &str, expected_version: Option<i64>) -> Result<()> {
        validate_name("billingGroupName", name)?;
        self.transact(|| async move {
            let Some(loaded) = self.load::<BillingGroup>(Collection::BillingGroup, name).await? else {
                return Ok(Outcome::answer(()));
            };
            check_expected_version("billing group", name, loaded.value.version, expected_version)?;
            // The group goes first: a thing joining it holds it, so the join has committed
            // (and its thing is rewritten below) or fails; the last write checks for joins
            // that committed after the members were read.
            let mut writes = vec![Write::delete(Collection::BillingGroup, name, loaded.expect())];
            writes.extend(
                self.rewrite_things(ThingsBy::BillingGroup(name), |thing| {
                    let member = thing.billing_group.as_deref() == Some(name);
                    if member {
                        thing.billing_group = None;
                    }
                    member
                })
                .await?,
            );
            writes.push(Write::none_with_prefix(Collection::ThingIndex, ThingsBy::BillingGroup(name).prefix()));
            Ok(Outcome::write(writes, ()))
        })
        .await
    }

    pub async fn list_billing_groups(
        &self,
        name_prefix: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<BillingGroup>> {
        let prefix = name_prefix.unwrap_or_default();
        self.page_with_prefix(Collection::BillingGroup, prefix, page, |_: &BillingGroup| true).await
    }

    /// A thing belongs to at most one billing group: adding it to another moves it.
    pub async fn set_thing_billing_group(&self, thing: &str, group: &str, member: bool) -> Result<()> {
        validate_name("thingName", thing)?;
        self.transact(|| async move {
            let billing_group = self.require_billing_group(group).await?;
            let loaded = self
                .load::<ferrocore_model::registry::Thing>(Collection::Thing, thing)
                .await?
                .ok_or_else(|| thing_not_found(thing))?;
            let mut updated = loaded.value.clone();
            if member {
                updated.billing_group = Some(group.to_string());
            } else if updated.billing_group.as_deref() == Some(group) {
                updated.billing_group = None;
            }
            if updated == loaded.value {
                return Ok(Outcome::answer(()));
            }
            let mut writes = vec![Write::hold(Collection::BillingGroup, group, billing_group.expect())];
            writes.extend(self.thing_changes(thing, Some(&loaded), Some(&updated)).await?);
            Ok(Outcome::write(writes, ()))
        })
        .await
    }

    pub async fn list_things_in_billing_group(&self, group: &str, page: &PageRequest) -> Result<Page<String>> {
        self.require_billing_group(group).await?;
        self.names_page(ThingsBy::BillingGroup(group), page).await
    }
}
