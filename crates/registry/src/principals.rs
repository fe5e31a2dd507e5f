//! Attachments of principals (certificates) to things.

use ferrocore_model::registry::{Thing, validate_name};
use ferrocore_model::security::{Certificate, ThingPrincipalType};
use ferrocore_model::{Arn, Error, ResourceKind, Result};
use ferrocore_store::Collection;

use crate::paging::{Page, PageRequest, paginate};
use crate::thing_index::ThingsBy;
use crate::{Outcome, Registry, put};

impl Registry {
    /// The certificate a principal ARN names, if it names one.
    async fn principal_certificate(&self, principal: &str) -> Result<Option<crate::Loaded<Certificate>>> {
        match Arn::parse(principal, self.account()) {
            Ok(arn) if arn.kind == ResourceKind::Certificate => Ok(Some(self.require_certificate(&arn.name).await?)),
            Ok(_) | Err(Error::ResourceNotFound(_)) => Err(Error::invalid(format!("Invalid principal: {principal}"))),
            // Not an IoT ARN: a Cognito identity or another principal kept as given.
            Err(_) => Ok(None),
        }
    }

    pub async fn attach_thing_principal(&self, thing: &str, principal: &str, kind: ThingPrincipalType) -> Result<()> {
        validate_name("thingName", thing)?;
        self.transact(|| async {
            let loaded = self.require_thing(thing).await?;
            let mut updated = loaded.value.clone();
            let mut writes = Vec::new();
            if let Some(certificate) = self.principal_certificate(principal).await? {
                let others: Vec<String> = certificate.value.things.iter().filter(|t| *t != thing).cloned().collect();
                if !others.is_empty() {
                    let mut exclusive_elsewhere = false;
                    for other in &others {
                        let attached = self.load::<Thing>(Collection::Thing, other).await?;
                        exclusive_elsewhere |= attached.is_some_and(|t| {
                            t.value.principals.get(principal) == Some(&ThingPrincipalType::ExclusiveThing)
                        });
                    }
                    if exclusive_elsewhere || kind == ThingPrincipalType::ExclusiveThing {
                        return Err(Error::invalid(format!(
                            "Principal {principal} is already attached to thing {} and an exclusive attachment allows only one thing.",
                            others[0]
                        )));
                    }
                }
                let mut cert = certificate.value.clone();
                cert.things.insert(thing.to_string());
                // Writing the certificate serialises concurrent attachments of it.
                writes.push(put(Collection::Certificate, &cert.id, certificate.expect(), &cert));
            }
            updated.principals.insert(principal.to_string(), kind);
            if updated == loaded.value && writes.is_empty() {
                return Ok(Outcome::answer(()));
            }
            writes.extend(self.thing_changes(thing, Some(&loaded), Some(&updated)).await?);
            Ok(Outcome::write(writes, ()))
        })
        .await
    }

    pub async fn detach_thing_principal(&self, thing: &str, principal: &str) -> Result<()> {
        validate_name("thingName", thing)?;
        self.transact(|| async {
            let loaded = self.require_thing(thing).await?;
            let mut updated = loaded.value.clone();
            if updated.principals.remove(principal).is_none() {
                return Ok(Outcome::answer(()));
            }
            let mut writes = self.thing_changes(thing, Some(&loaded), Some(&updated)).await?;
            if let Ok(arn) = Arn::parse(principal, self.account())
                && let Some(certificate) = self.load::<Certificate>(Collection::Certificate, &arn.name).await?
            {
                let mut cert = certificate.value.clone();
                cert.things.remove(thing);
                writes.push(put(Collection::Certificate, &cert.id, certificate.expect(), &cert));
            }
            Ok(Outcome::write(writes, ()))
        })
        .await
    }

    /// Principals attached to a thing, with their attachment type.
    pub async fn list_thing_principals(
        &self,
        thing: &str,
        page: &PageRequest,
    ) -> Result<Page<(String, ThingPrincipalType)>> {
        validate_name("thingName", thing)?;
        let thing = self.require_thing(thing).await?.value;
        paginate(thing.principals, |(p, _)| p.as_str(), page)
    }

    /// Things a principal is attached to, with the attachment type.
    pub async fn list_principal_things(
        &self,
        principal: &str,
        page: &PageRequest,
    ) -> Result<Page<(String, ThingPrincipalType)>> {
        self.principal_certificate(principal).await?;
        let things =
            self.page_of(ThingsBy::Principal(principal), page, |t| t.principals.contains_key(principal)).await?;
        Ok(things.map(|t| {
            let kind = t.principals[principal];
            (t.name, kind)
        }))
    }
}
