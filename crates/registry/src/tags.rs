use ferrocore_model::registry::{BillingGroup, Tags, ThingGroup, ThingType, validate_tags};
use ferrocore_model::security::{CaCertificate, Policy, RoleAlias};
use ferrocore_model::{Arn, Error, ResourceKind, Result};
use ferrocore_store::Collection;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::paging::{Page, PageRequest, paginate};
use crate::{Outcome, Registry, put};

/// A registry resource that carries tags.
trait Tagged: Serialize + DeserializeOwned + Clone {
    fn tags(&self) -> &Tags;
    fn tags_mut(&mut self) -> &mut Tags;
}

macro_rules! tagged {
    ($($t:ty),*) => {$(
        impl Tagged for $t {
            fn tags(&self) -> &Tags { &self.tags }
            fn tags_mut(&mut self) -> &mut Tags { &mut self.tags }
        }
    )*};
}
tagged!(ThingType, ThingGroup, BillingGroup, Policy, CaCertificate, RoleAlias);

fn collection_of(arn: &Arn, text: &str) -> Result<Collection> {
    match arn.kind {
        ResourceKind::ThingType => Ok(Collection::ThingType),
        ResourceKind::ThingGroup => Ok(Collection::ThingGroup),
        ResourceKind::BillingGroup => Ok(Collection::BillingGroup),
        ResourceKind::Policy => Ok(Collection::Policy),
        ResourceKind::CaCertificate => Ok(Collection::CaCertificate),
        ResourceKind::RoleAlias => Ok(Collection::RoleAlias),
        ResourceKind::Certificate => Err(Error::invalid(format!("Tagging is not supported for the resource {text}: certificates cannot be tagged."))),
        ResourceKind::Thing => Err(Error::invalid(format!("Tagging is not supported for the resource {text}: things cannot be tagged."))),
    }
}

impl Registry {
    async fn retag<T: Tagged>(&self, collection: Collection, arn: &Arn, text: &str, change: &(dyn Fn(&mut Tags) + Sync)) -> Result<()> {
        self.transact(|| async move {
            let loaded = self
                .load::<T>(collection, &arn.name)
                .await?
                .ok_or_else(|| Error::not_found(format!("The resource {text} does not exist.")))?;
            let mut resource = loaded.value.clone();
            change(resource.tags_mut());
            validate_tags(resource.tags())?;
            Ok(Outcome::write(vec![put(collection, &arn.name, loaded.expect(), &resource)], ()))
        })
        .await
    }

    async fn change_tags(&self, resource_arn: &str, change: &(dyn Fn(&mut Tags) + Sync)) -> Result<()> {
        let arn = Arn::parse(resource_arn, self.account())?;
        match collection_of(&arn, resource_arn)? {
            c @ Collection::ThingType => self.retag::<ThingType>(c, &arn, resource_arn, change).await,
            c @ Collection::ThingGroup => self.retag::<ThingGroup>(c, &arn, resource_arn, change).await,
            c @ Collection::Policy => self.retag::<Policy>(c, &arn, resource_arn, change).await,
            c @ Collection::CaCertificate => self.retag::<CaCertificate>(c, &arn, resource_arn, change).await,
            c @ Collection::RoleAlias => self.retag::<RoleAlias>(c, &arn, resource_arn, change).await,
            c => self.retag::<BillingGroup>(c, &arn, resource_arn, change).await,
        }
    }

    pub async fn tag_resource(&self, resource_arn: &str, tags: &Tags) -> Result<()> {
        validate_tags(tags)?;
        self.change_tags(resource_arn, &|current| current.extend(tags.clone())).await
    }

    pub async fn untag_resource(&self, resource_arn: &str, keys: &[String]) -> Result<()> {
        self.change_tags(resource_arn, &|current| current.retain(|k, _| !keys.contains(k))).await
    }

    pub async fn list_tags_for_resource(&self, resource_arn: &str, page: &PageRequest) -> Result<Page<(String, String)>> {
        let arn = Arn::parse(resource_arn, self.account())?;
        let collection = collection_of(&arn, resource_arn)?;
        let missing = || Error::not_found(format!("The resource {resource_arn} does not exist."));
        let tags = match collection {
            Collection::ThingType => self.load::<ThingType>(collection, &arn.name).await?.map(|r| r.value.tags),
            Collection::ThingGroup => self.load::<ThingGroup>(collection, &arn.name).await?.map(|r| r.value.tags),
            Collection::Policy => self.load::<Policy>(collection, &arn.name).await?.map(|r| r.value.tags),
            Collection::CaCertificate => self.load::<CaCertificate>(collection, &arn.name).await?.map(|r| r.value.tags),
            Collection::RoleAlias => self.load::<RoleAlias>(collection, &arn.name).await?.map(|r| r.value.tags),
            _ => self.load::<BillingGroup>(collection, &arn.name).await?.map(|r| r.value.tags),
        }
        .ok_or_else(missing)?;
        paginate(tags, |(k, _)| k.as_str(), page)
    }
}
