use ferrocore_model::registry::{BillingGroup, Tags, ThingGroup, ThingType, validate_tags};
use ferrocore_model::rules::TopicRule;
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
tagged!(ThingType, ThingGroup, BillingGroup, Policy, CaCertificate, RoleAlias, TopicRule);

fn unsupported(text: &str, what: &str) -> Error {
    Error::invalid(format!("Tagging is not supported for the resource {text}: {what} cannot be tagged."))
}

/// A change to a resource's tags; `None` only reads them.
type TagChange<'a> = Option<&'a (dyn Fn(&mut Tags) + Sync)>;

impl Registry {
    /// Reads (and with `change`, rewrites) the tags of one resource of type `T`.
    async fn tags_of<T: Tagged>(
        &self,
        collection: Collection,
        arn: &Arn,
        text: &str,
        change: TagChange<'_>,
    ) -> Result<Tags> {
        self.transact(|| async move {
            let loaded = self
                .load::<T>(collection, &arn.name)
                .await?
                .ok_or_else(|| Error::not_found(format!("The resource {text} does not exist.")))?;
            let Some(change) = change else {
                return Ok(Outcome::answer(loaded.value.tags().clone()));
            };
            let mut resource = loaded.value.clone();
            change(resource.tags_mut());
            validate_tags(resource.tags())?;
            let tags = resource.tags().clone();
            Ok(Outcome::write_keeping_permissions(vec![put(collection, &arn.name, loaded.expect(), &resource)], tags))
        })
        .await
    }

    /// The tags of the resource an ARN names, after `change` if given.
    async fn resource_tags(&self, resource_arn: &str, change: TagChange<'_>) -> Result<Tags> {
        let arn = Arn::parse(resource_arn, self.account())?;
        let (arn, text) = (&arn, resource_arn);
        match arn.kind {
            ResourceKind::ThingType => self.tags_of::<ThingType>(Collection::ThingType, arn, text, change).await,
            ResourceKind::ThingGroup => self.tags_of::<ThingGroup>(Collection::ThingGroup, arn, text, change).await,
            ResourceKind::BillingGroup => {
                self.tags_of::<BillingGroup>(Collection::BillingGroup, arn, text, change).await
            }
            ResourceKind::Policy => self.tags_of::<Policy>(Collection::Policy, arn, text, change).await,
            ResourceKind::CaCertificate => {
                self.tags_of::<CaCertificate>(Collection::CaCertificate, arn, text, change).await
            }
            ResourceKind::RoleAlias => self.tags_of::<RoleAlias>(Collection::RoleAlias, arn, text, change).await,
            ResourceKind::TopicRule => self.tags_of::<TopicRule>(Collection::TopicRule, arn, text, change).await,
            ResourceKind::Certificate => Err(unsupported(text, "certificates")),
            ResourceKind::Thing => Err(unsupported(text, "things")),
            ResourceKind::Client | ResourceKind::Topic | ResourceKind::TopicFilter => {
                Err(unsupported(text, "MQTT clients and topics"))
            }
        }
    }

    pub async fn tag_resource(&self, resource_arn: &str, tags: &Tags) -> Result<()> {
        validate_tags(tags)?;
        self.resource_tags(resource_arn, Some(&|current: &mut Tags| current.extend(tags.clone()))).await.map(drop)
    }

    pub async fn untag_resource(&self, resource_arn: &str, keys: &[String]) -> Result<()> {
        self.resource_tags(resource_arn, Some(&|current: &mut Tags| current.retain(|k, _| !keys.contains(k))))
            .await
            .map(drop)
    }

    pub async fn list_tags_for_resource(
        &self,
        resource_arn: &str,
        page: &PageRequest,
    ) -> Result<Page<(String, String)>> {
        let tags = self.resource_tags(resource_arn, None).await?;
        paginate(tags, |(k, _)| k.as_str(), page)
    }
}
