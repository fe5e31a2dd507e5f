//! IoT policies, their versions, and their attachments to principals and thing groups.

use std::collections::BTreeSet;

use ferrocore_model::names::POLICY_NAME;
use ferrocore_model::registry::{Tags, ThingGroup, validate_tags};
use ferrocore_model::security::{Certificate, Policy, PolicyVersion};
use ferrocore_model::{Arn, Error, ResourceKind, Result};
use ferrocore_store::{Collection, Expect, Write};

use crate::indexes::{policy_entries, record_writes};
use crate::paging::{Page, PageRequest, paginate};
use crate::{Loaded, Outcome, Registry, new_id, put};

/// Policies attached to one principal, and to one thing group (AWS's limits).
const MAX_POLICIES_PER_PRINCIPAL: usize = 10;
const MAX_POLICIES_PER_THING_GROUP: usize = 2;

/// The writes that take a policy from `before` to `after`, with its target entries.
fn policy_writes(name: &str, before: Option<&Loaded<Policy>>, after: Option<&Policy>) -> Vec<Write> {
    record_writes(Collection::Policy, Collection::PolicyTarget, name, before, after, policy_entries)
}

fn policy_not_found(name: &str) -> Error {
    Error::not_found(format!("Policy not found: {name}"))
}

impl Registry {
    /// Validates a document: the size limit (non-whitespace characters), then the grammar.
    fn check_document(&self, document: &str) -> Result<()> {
        let limit = self.config.policy_document_limit;
        if ferrocore_policy::significant_chars(document) > limit {
            return Err(Error::invalid(format!("Policy cannot be created - size exceeds hard limit ({limit})")));
        }
        ferrocore_policy::Policy::parse(document).map_err(|err| Error::MalformedPolicy(err.to_string()))?;
        Ok(())
    }

    pub(crate) async fn require_policy(&self, name: &str) -> Result<Loaded<Policy>> {
        POLICY_NAME.check("policyName", name)?;
        self.load(Collection::Policy, name).await?.ok_or_else(|| policy_not_found(name))
    }

    pub async fn create_policy(&self, name: &str, document: &str, tags: &Tags) -> Result<Policy> {
        POLICY_NAME.check("policyName", name)?;
        self.check_document(document)?;
        validate_tags(tags)?;
        self.transact(|| async {
            if self.load::<Policy>(Collection::Policy, name).await?.is_some() {
                return Err(Error::ResourceAlreadyExists {
                    message: format!("Policy cannot be created - name already exists (name={name})"),
                    resource_id: name.to_string(),
                    resource_arn: self.arn(ResourceKind::Policy, name),
                });
            }
            let now = self.now();
            let policy = Policy {
                name: name.to_string(),
                versions: vec![PolicyVersion { id: 1, document: document.to_string(), creation_date: now }],
                default_version: 1,
                next_version: 2,
                creation_date: now,
                last_modified_date: now,
                generation_id: new_id(),
                targets: Default::default(),
                tags: tags.clone(),
            };
            Ok(Outcome::write(vec![put(Collection::Policy, name, Expect::Absent, &policy)], policy))
        })
        .await
    }

    pub async fn get_policy(&self, name: &str) -> Result<Policy> {
        Ok(self.require_policy(name).await?.value)
    }

    pub async fn list_policies(&self, page: &PageRequest) -> Result<Page<Policy>> {
        self.page_where(Collection::Policy, page, |_: &Policy| true).await
    }

    pub async fn delete_policy(&self, name: &str) -> Result<()> {
        self.transact(|| async {
            let loaded = self.require_policy(name).await?;
            if !loaded.value.targets.is_empty() {
                return Err(Error::DeleteConflict(format!(
                    "The policy cannot be deleted as the policy is attached to one or more principals (name={name})"
                )));
            }
            if loaded.value.versions.len() > 1 {
                return Err(Error::DeleteConflict(format!(
                    "Cannot delete the policy because it has one or more policy versions attached to it (name={name})"
                )));
            }
            Ok(Outcome::write(policy_writes(name, Some(&loaded), None), ()))
        })
        .await?;
        self.parsed_policies.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
        Ok(())
    }

    /// Applies `change` to the policy and commits it.
    async fn change_policy<R: Clone>(&self, name: &str, change: impl Fn(&mut Policy) -> Result<R>) -> Result<R> {
        let change = &change;
        self.transact(|| async move {
            let loaded = self.require_policy(name).await?;
            let mut policy = loaded.value.clone();
            let answer = change(&mut policy)?;
            if policy == loaded.value {
                return Ok(Outcome::answer(answer));
            }
            Ok(Outcome::write(policy_writes(name, Some(&loaded), Some(&policy)), answer))
        })
        .await
    }

    /// Returns the new version id.
    pub async fn create_policy_version(&self, name: &str, document: &str, set_as_default: bool) -> Result<u32> {
        self.check_document(document)?;
        let now = self.now();
        self.change_policy(name, |policy| policy.add_version(document.to_string(), set_as_default, now)).await
    }

    pub async fn get_policy_version(&self, name: &str, version: u32) -> Result<(Policy, PolicyVersion)> {
        let policy = self.get_policy(name).await?;
        let found = policy
            .version(version)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("Policy version {version} of policy {name} does not exist")))?;
        Ok((policy, found))
    }

    pub async fn delete_policy_version(&self, name: &str, version: u32) -> Result<()> {
        self.change_policy(name, |policy| policy.delete_version(version)).await
    }

    pub async fn set_default_policy_version(&self, name: &str, version: u32) -> Result<()> {
        let now = self.now();
        self.change_policy(name, |policy| {
            if policy.version(version).is_none() {
                return Err(Error::not_found(format!("Policy version {version} of policy {name} does not exist")));
            }
            if policy.default_version != version {
                policy.default_version = version;
                policy.last_modified_date = now;
            }
            Ok(())
        })
        .await
    }

    /// The record a policy target names, checked in the same batch as the attachment. A
    /// check (a new revision), not a hold: the count of policies under the target was read
    /// outside the batch, so two attachments racing for the last place must not both land.
    async fn target_check(&self, target: &str) -> Result<(Write, usize)> {
        let invalid = || Error::invalid(format!("Invalid Target: {target}"));
        let arn = Arn::parse(target, self.account()).map_err(|_| invalid())?;
        match arn.kind {
            ResourceKind::Certificate => {
                let cert = self.load::<Certificate>(Collection::Certificate, &arn.name).await?;
                let cert =
                    cert.ok_or_else(|| Error::not_found(format!("The certificate {} does not exist.", arn.name)))?;
                Ok((Write::check(Collection::Certificate, &arn.name, cert.expect()), MAX_POLICIES_PER_PRINCIPAL))
            }
            ResourceKind::ThingGroup => {
                let group = self.load::<ThingGroup>(Collection::ThingGroup, &arn.name).await?;
                let group = group.ok_or_else(|| Error::not_found(format!("ThingGroup {} does not exist", arn.name)))?;
                Ok((Write::check(Collection::ThingGroup, &arn.name, group.expect()), MAX_POLICIES_PER_THING_GROUP))
            }
            _ => Err(invalid()),
        }
    }

    pub async fn attach_policy(&self, name: &str, target: &str) -> Result<()> {
        self.transact(|| async {
            let loaded = self.require_policy(name).await?;
            if loaded.value.targets.contains(target) {
                return Ok(Outcome::answer(()));
            }
            let (check, limit) = self.target_check(target).await?;
            if self.indexed(Collection::PolicyTarget, target, None, limit).await?.len() >= limit {
                return Err(Error::LimitExceeded(format!("At most {limit} policies can be attached to {target}")));
            }
            let mut policy = loaded.value.clone();
            policy.targets.insert(target.to_string());
            let mut writes = vec![check];
            writes.extend(policy_writes(name, Some(&loaded), Some(&policy)));
            Ok(Outcome::write(writes, ()))
        })
        .await?;
        tracing::info!(policy = name, target, "policy attached");
        Ok(())
    }

    /// Detaching a policy that is not attached succeeds.
    pub async fn detach_policy(&self, name: &str, target: &str) -> Result<()> {
        self.change_policy(name, |policy| {
            policy.targets.remove(target);
            Ok(())
        })
        .await?;
        tracing::info!(policy = name, target, "policy detached");
        Ok(())
    }

    /// Names of the policies attached to `target`; with `recursive`, a thing
    /// group's ancestors' policies too.
    pub async fn list_attached_policies(
        &self,
        target: &str,
        recursive: bool,
        page: &PageRequest,
    ) -> Result<Page<String>> {
        let mut targets = vec![target.to_string()];
        if let Ok(arn) = Arn::parse(target, self.account()) {
            match arn.kind {
                ResourceKind::ThingGroup => {
                    let view = self.describe_thing_group(&arn.name).await?;
                    if recursive {
                        targets.extend(view.root_to_parent.into_iter().map(|g| g.arn));
                    }
                }
                ResourceKind::Certificate => {
                    self.require_certificate(&arn.name).await?;
                }
                _ => {}
            }
        }
        let attached = self.policies_attached_to(&targets).await?;
        paginate(attached, |name| name.as_str(), page)
    }

    /// The names of the policies attached to any of `targets`.
    pub(crate) async fn policies_attached_to(&self, targets: &[String]) -> Result<BTreeSet<String>> {
        let mut names = BTreeSet::new();
        for target in targets {
            names.extend(self.all_indexed(Collection::PolicyTarget, target).await?);
        }
        Ok(names)
    }

    /// Writes that detach every policy from `target`, for a batch deleting it.
    pub(crate) async fn detach_target_everywhere(&self, target: &str) -> Result<Vec<Write>> {
        let mut writes = Vec::new();
        for name in self.all_indexed(Collection::PolicyTarget, target).await? {
            let Some(loaded) = self.load::<Policy>(Collection::Policy, &name).await? else { continue };
            let mut policy = loaded.value.clone();
            policy.targets.remove(target);
            writes.extend(policy_writes(&name, Some(&loaded), Some(&policy)));
        }
        Ok(writes)
    }

    pub async fn list_targets_for_policy(&self, name: &str, page: &PageRequest) -> Result<Page<String>> {
        let policy = self.get_policy(name).await?;
        paginate(policy.targets, |t| t.as_str(), page)
    }

    /// ListPolicyPrincipals: the principals (not thing groups) a policy is attached to.
    pub async fn list_policy_principals(&self, name: &str, page: &PageRequest) -> Result<Page<String>> {
        let policy = self.get_policy(name).await?;
        let principals = policy
            .targets
            .into_iter()
            .filter(|t| Arn::parse(t, self.account()).map_or(true, |arn| arn.kind != ResourceKind::ThingGroup));
        paginate(principals, |t| t.as_str(), page)
    }
}
