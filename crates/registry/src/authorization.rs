//! Authorization decisions for a principal: the policies that apply to it (its
//! own and those of the thing groups of its thing) evaluated by the policy
//! engine. TestAuthorization exposes this to users.

use std::collections::BTreeSet;
use std::sync::Arc;

use ferrocore_model::registry::Thing;
use ferrocore_model::security::{Certificate, ThingPrincipalType};
use ferrocore_model::{Arn, Error, ResourceKind, Result};
use ferrocore_pki::parse_certificate_pem;
use ferrocore_policy::{CertificateFacts, Context, Decision, ThingFacts, evaluate};
use ferrocore_store::Collection;

use crate::Registry;
use crate::dependencies::{Dependency, DependencyIndex, target_dependency};
use crate::thing_index::ThingsBy;

/// One `authInfo`: an action type and the resources it is asked for.
#[derive(Debug, Clone)]
pub struct AuthCheck {
    pub action_type: String,
    pub resources: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AuthResult {
    pub check: AuthCheck,
    pub decision: Decision,
    pub allowed: Vec<String>,
    pub explicit_deny: Vec<String>,
    pub implicit_deny: Vec<String>,
}

/// The policies and context that decide what one connection may do.
///
/// Decisions on the message path are remembered: the policies and the context of
/// a `Permissions` never change (a registry change replaces the whole value), so a
/// decision once made holds for its lifetime.
#[derive(Debug)]
pub struct Permissions {
    /// Parsed documents are shared by every connection holding the same policy version.
    policies: Vec<(String, Arc<ferrocore_policy::Policy>)>,
    context: Context,
    /// The thing whose variables resolve for this connection, if any.
    pub thing: Option<String>,
    decisions: DecisionCache,
    /// The records these permissions were computed from.
    dependencies: Arc<[Dependency]>,
    /// The registry's permission generation when the computation began.
    generation: u64,
}

/// The data-plane actions whose decisions are remembered, by resource.
const CACHED_ACTIONS: [&str; 5] = ["iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive", "iot:RetainPublish"];
/// Connection permissions remembered (see [`Registry::connection_permissions`]); entries leave
/// when their connection ends (but for the most recent ones), so this bounds a leak, and beyond it
/// permissions are not remembered.
const CACHED_CONNECTIONS: usize = 1_000_000;

/// Permissions by (principal, client id), each kept until a write changes a record it depends on.
pub(crate) struct ConnectionPermissions {
    entries: std::collections::HashMap<Arc<ConnectionKey>, Arc<Permissions>>,
    index: DependencyIndex<Arc<ConnectionKey>>,
    /// Keys whose connection ended, oldest first: kept (a device that reconnects finds
    /// its permissions) until `departed_kept` newer ones push them out.
    departed: std::collections::VecDeque<Arc<ConnectionKey>>,
    departed_kept: usize,
}

/// Ended connections whose permissions stay remembered.
const DEPARTED_KEPT: usize = 10_000;

impl Default for ConnectionPermissions {
    fn default() -> Self {
        Self::keeping(DEPARTED_KEPT)
    }
}

/// A principal and a client id.
type ConnectionKey = (String, String);

impl ConnectionPermissions {
    fn keeping(departed_kept: usize) -> Self {
        Self { entries: Default::default(), index: Default::default(), departed: Default::default(), departed_kept }
    }

    fn get(&self, key: &ConnectionKey) -> Option<Arc<Permissions>> {
        self.entries.get(key).cloned()
    }

    fn insert(&mut self, key: ConnectionKey, permissions: Arc<Permissions>) {
        let key = Arc::new(key);
        self.index.insert(key.clone(), permissions.dependencies());
        self.entries.insert(key, permissions);
    }

    fn remove(&mut self, key: &ConnectionKey) {
        if let Some((key, _)) = self.entries.remove_entry(key) {
            self.index.remove(&key);
        }
    }

    /// A connection ended: its entry is kept among the last `departed_kept` ended ones.
    /// (An entry pushed out while its client is connected again is only recomputed.)
    fn release(&mut self, key: &ConnectionKey) {
        let Some((key, _)) = self.entries.get_key_value(key) else { return };
        self.departed.push_back(key.clone());
        while self.departed.len() > self.departed_kept {
            if let Some(oldest) = self.departed.pop_front() {
                self.remove(&oldest);
            }
        }
    }

    /// Forgets every entry (writes may have been missed).
    pub(crate) fn clear(&mut self) {
        *self = Self::keeping(self.departed_kept);
    }

    /// Forgets every entry that depends on one of `changed`.
    pub(crate) fn invalidate(&mut self, changed: &[Dependency]) {
        for key in self.index.affected(changed) {
            self.entries.remove(&key);
            self.index.remove(&key);
        }
    }
}

/// Parsed default documents by policy name, with the text they were parsed from.
pub(crate) type ParsedPolicies =
    std::sync::Mutex<std::collections::HashMap<String, (String, Arc<ferrocore_policy::Policy>)>>;

/// Resources remembered per action before the memory starts over.
const CACHED_RESOURCES: usize = 4096;

/// Decisions by resource, per cached action. The fast hasher matters: every delivery
/// looks up its topic's iot:Receive decision here (the map is bounded, so crafted
/// resources cannot grow it).
#[derive(Debug, Default)]
struct DecisionCache {
    by_action:
        [std::sync::RwLock<std::collections::HashMap<String, bool, foldhash::fast::RandomState>>; CACHED_ACTIONS.len()],
}

impl Permissions {
    /// Permissions from policies already parsed (an access key's), with their context.
    pub fn from_policies(policies: Vec<(String, Arc<ferrocore_policy::Policy>)>, context: Context) -> Self {
        Self {
            policies,
            context,
            thing: None,
            decisions: DecisionCache::default(),
            dependencies: Arc::new([]),
            generation: 0,
        }
    }

    /// The registry records these permissions were computed from: a write to any
    /// of them may change them.
    pub fn dependencies(&self) -> Arc<[Dependency]> {
        self.dependencies.clone()
    }

    pub fn evaluate(&self, action: &str, resource: &str) -> ferrocore_policy::Evaluation {
        let policies: Vec<&ferrocore_policy::Policy> = self.policies.iter().map(|(_, p)| p.as_ref()).collect();
        evaluate(&policies, action, resource, &self.context)
    }

    pub fn allows(&self, action: &str, resource: &str) -> bool {
        let Some(index) = CACHED_ACTIONS.iter().position(|a| *a == action) else {
            return self.evaluate(action, resource).decision == Decision::Allowed;
        };
        let cache = &self.decisions.by_action[index];
        if let Some(allowed) = cache.read().unwrap_or_else(|e| e.into_inner()).get(resource) {
            return *allowed;
        }
        let allowed = self.evaluate(action, resource).decision == Decision::Allowed;
        let mut remembered = cache.write().unwrap_or_else(|e| e.into_inner());
        if remembered.len() >= CACHED_RESOURCES {
            remembered.clear();
        }
        remembered.insert(resource.to_string(), allowed);
        allowed
    }
}

#[derive(Debug, Clone, Default)]
pub struct TestAuthorization {
    pub principal: Option<String>,
    pub client_id: Option<String>,
    pub policies_to_add: Vec<String>,
    pub policies_to_skip: Vec<String>,
    pub checks: Vec<AuthCheck>,
}

fn action_for(action_type: &str) -> Result<&'static str> {
    Ok(match action_type {
        "CONNECT" => "iot:Connect",
        "PUBLISH" => "iot:Publish",
        "SUBSCRIBE" => "iot:Subscribe",
        "RECEIVE" => "iot:Receive",
        other => {
            return Err(Error::invalid(format!(
                "1 validation error detected: Value '{other}' at 'authInfos.member.actionType' failed to satisfy constraint: Member must satisfy enum value set: [PUBLISH, SUBSCRIBE, RECEIVE, CONNECT]"
            )));
        }
    })
}

fn certificate_facts(certificate: &Certificate) -> Option<CertificateFacts> {
    let parsed = parse_certificate_pem(&certificate.pem).ok()?;
    Some(CertificateFacts {
        subject: parsed.subject,
        issuer: parsed.issuer,
        subject_alternative_names: parsed.subject_alternative_names,
        issuer_alternative_names: parsed.issuer_alternative_names,
        serial_number: parsed.serial_hex,
    })
}

/// The thing whose variables resolve for `principal` connecting as `client_id`:
/// its exclusive thing, else the thing named like the client id if attached.
/// The thing a connection acts as (AWS's attachment rules): the principal's
/// EXCLUSIVE_THING if it has one, else the attached thing named like the client id.
/// An empty client id is an HTTPS publish, which has none: there the one thing the
/// certificate is attached to resolves the thing variables.
fn connection_thing<'a>(things: &'a [Thing], principal: &str, client_id: Option<&str>) -> Option<&'a Thing> {
    let attached = |t: &&Thing| t.principals.contains_key(principal);
    let only_attached = || {
        let mut attached = things.iter().filter(attached);
        match (attached.next(), attached.next()) {
            (Some(thing), None) => Some(thing),
            _ => None,
        }
    };
    things
        .iter()
        .filter(attached)
        .find(|t| t.principals.get(principal) == Some(&ThingPrincipalType::ExclusiveThing))
        .or_else(|| match client_id {
            Some("") => only_attached(),
            _ => things.iter().filter(attached).find(|t| Some(t.name.as_str()) == client_id),
        })
}

impl Registry {
    /// A principal as a certificate ARN; a bare certificate id is accepted too.
    fn principal_arn(&self, principal: &str) -> String {
        if principal.len() == 64 && principal.chars().all(|c| c.is_ascii_hexdigit()) {
            self.arn(ResourceKind::Certificate, principal)
        } else {
            principal.to_string()
        }
    }

    /// What `principal` (a certificate ARN or id) may do when connected as
    /// `client_id`: its own policies and those of its thing's groups up the
    /// hierarchy, with `add` included and `skip` left out, and the connection context.
    pub async fn permissions(
        &self,
        principal: &str,
        client_id: Option<&str>,
        add: &[String],
        skip: &[String],
    ) -> Result<Permissions> {
        let generation = self.permission_generation();
        let principal = self.principal_arn(principal);
        let certificate = match Arn::parse(&principal, self.account()) {
            Ok(arn) if arn.kind == ResourceKind::Certificate => Some(self.require_certificate(&arn.name).await?.value),
            _ => None,
        };
        let mut dependencies: BTreeSet<Dependency> =
            target_dependency(&principal, self.account()).into_iter().collect();
        // A certificate lists its things; other principals are matched against every thing.
        let things: Vec<Thing> = match &certificate {
            Some(certificate) => {
                dependencies.extend(certificate.ca_certificate_id.iter().cloned().map(Dependency::Ca));
                // The thing a connection acts as is the certificate's exclusive thing (then
                // its only one) or the attached thing named like the client id (for HTTPS,
                // with no client id, the only attached thing): at most one is read, however
                // many things share the certificate. Attaching another changes the certificate.
                let candidate = match certificate.things.len() {
                    1 => certificate.things.first(),
                    _ => client_id.and_then(|id| certificate.things.get(id)),
                };
                let mut attached = Vec::new();
                if let Some(name) = candidate {
                    dependencies.insert(Dependency::Thing(name.clone()));
                    if let Some(thing) = self.load::<Thing>(Collection::Thing, name).await? {
                        attached.push(thing.value);
                    }
                }
                attached
            }
            None => {
                let attached = self.all_things_in(ThingsBy::Principal(&principal)).await?;
                dependencies.extend(attached.iter().map(|t| Dependency::Thing(t.value.name.clone())));
                attached.into_iter().map(|t| t.value).collect()
            }
        };
        let thing = connection_thing(&things, &principal, client_id);
        dependencies.extend(client_id.filter(|id| !id.is_empty()).map(|id| Dependency::Thing(id.to_string())));

        let mut targets = vec![principal.clone()];
        if let Some(thing) = thing {
            // A thing group's policies apply to its things and to the things of every group below it.
            for (name, lineage) in self.lineages(thing.groups.iter()).await? {
                dependencies.insert(Dependency::ThingGroup(name));
                for group in lineage {
                    targets.push(self.arn(ResourceKind::ThingGroup, &group));
                    dependencies.insert(Dependency::ThingGroup(group));
                }
            }
        }
        let mut names = self.policies_attached_to(&targets).await?;
        names.extend(add.iter().cloned());
        for name in skip {
            names.remove(name);
        }
        let mut policies = Vec::new();
        for name in &names {
            dependencies.insert(Dependency::Policy(name.clone()));
            let policy = self.get_policy(name).await?;
            policies.push((name.clone(), self.parsed_policy(name, policy.default_document())?));
        }
        let thing_facts = thing.map(|t| ThingFacts {
            name: t.name.clone(),
            type_name: t.thing_type.clone(),
            attributes: t.attributes.clone(),
        });
        let cert_facts = certificate.as_ref().and_then(certificate_facts);
        let mut context =
            Context::for_connection(client_id.unwrap_or_default(), thing_facts.as_ref(), cert_facts.as_ref());
        let mut read = BTreeSet::new();
        for (_, policy) in &policies {
            policy.context_names(&mut read);
        }
        context.retain_names(&read);
        Ok(Permissions {
            policies,
            context,
            thing: thing.map(|t| t.name.clone()),
            decisions: DecisionCache::default(),
            dependencies: dependencies.into_iter().collect::<Vec<_>>().into(),
            generation,
        })
    }

    /// A policy document parsed once and shared while it stays the policy's default.
    fn parsed_policy(&self, name: &str, document: &str) -> Result<Arc<ferrocore_policy::Policy>> {
        let mut parsed = self.parsed_policies.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((text, policy)) = parsed.get(name)
            && text == document
        {
            return Ok(policy.clone());
        }
        let policy = Arc::new(
            ferrocore_policy::Policy::parse(document)
                .map_err(|err| Error::Internal(format!("Stored policy {name} does not parse: {err}")))?,
        );
        parsed.insert(name.to_string(), (document.to_string(), policy.clone()));
        Ok(policy)
    }

    /// The permissions of a device connection (a certificate and a client id),
    /// shared by its connections and remembered until a write changes a record they
    /// depend on, so connection storms do not read the store for every CONNECT.
    pub async fn connection_permissions(&self, principal: &str, client_id: &str) -> Result<Arc<Permissions>> {
        let key = (principal.to_string(), client_id.to_string());
        if let Some(permissions) = self.connection_permissions.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(permissions);
        }
        let permissions = Arc::new(self.permissions(principal, Some(client_id), &[], &[]).await?);
        let mut cache = self.connection_permissions.lock().unwrap_or_else(|e| e.into_inner());
        // A write committed meanwhile may have been missed by the computation: answer
        // it, but do not remember it (the caller compares generations).
        if permissions.generation == self.permission_generation() && cache.entries.len() < CACHED_CONNECTIONS {
            cache.insert(key, permissions.clone());
        }
        Ok(permissions)
    }

    /// A connection ended: its permissions are kept among those of the most recently
    /// ended connections (a device that reconnects reads nothing), so the cache holds
    /// live connections and a bounded number of departed ones, not every client id
    /// that ever connected.
    pub fn forget_connection_permissions(&self, principal: &str, client_id: &str) {
        let key = (principal.to_string(), client_id.to_string());
        self.connection_permissions.lock().unwrap_or_else(|e| e.into_inner()).release(&key);
    }

    /// How many connections' permissions are remembered.
    pub fn remembered_connection_permissions(&self) -> usize {
        self.connection_permissions.lock().unwrap_or_else(|e| e.into_inner()).entries.len()
    }

    pub async fn test_authorization(&self, request: &TestAuthorization) -> Result<Vec<AuthResult>> {
        let permissions = self
            .permissions(
                request.principal.as_deref().unwrap_or_default(),
                request.client_id.as_deref(),
                &request.policies_to_add,
                &request.policies_to_skip,
            )
            .await?;
        let parsed = &permissions.policies;
        let names: Vec<String> = parsed.iter().map(|(name, _)| name.clone()).collect();
        request
            .checks
            .iter()
            .map(|check| {
                let action = action_for(&check.action_type)?;
                let (mut allowing, mut denying) = (BTreeSet::new(), BTreeSet::new());
                let mut all_allowed = !check.resources.is_empty();
                for resource in &check.resources {
                    let evaluation = permissions.evaluate(action, resource);
                    all_allowed &= evaluation.decision == Decision::Allowed;
                    allowing.extend(evaluation.allowing);
                    denying.extend(evaluation.denying);
                }
                let decision = if !denying.is_empty() {
                    Decision::ExplicitDeny
                } else if all_allowed {
                    Decision::Allowed
                } else {
                    Decision::ImplicitDeny
                };
                let name_of = |i: usize| parsed[i].0.clone();
                Ok(AuthResult {
                    check: check.clone(),
                    decision,
                    allowed: if decision == Decision::Allowed {
                        allowing.into_iter().map(name_of).collect()
                    } else {
                        Vec::new()
                    },
                    explicit_deny: denying.into_iter().map(name_of).collect(),
                    implicit_deny: if decision == Decision::ImplicitDeny { names.clone() } else { Vec::new() },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permissions(certificate: &str) -> Arc<Permissions> {
        let mut permissions = Permissions::from_policies(Vec::new(), Context::new());
        permissions.dependencies = [Dependency::Certificate(certificate.into())].into();
        Arc::new(permissions)
    }

    fn key(client: &str) -> ConnectionKey {
        ("cert".into(), client.into())
    }

    #[test]
    fn ended_connections_keep_their_permissions_up_to_a_bound() {
        let mut cache = ConnectionPermissions::keeping(2);
        for client in ["a", "b", "c", "live"] {
            cache.insert(key(client), permissions(client));
        }
        for client in ["a", "b", "c"] {
            cache.release(&key(client));
        }
        assert!(cache.get(&key("a")).is_none(), "the oldest departed entry was pushed out");
        assert!(cache.get(&key("b")).is_some() && cache.get(&key("c")).is_some());
        assert!(cache.get(&key("live")).is_some(), "live connections are never pushed out");
        assert_eq!(cache.entries.len(), 3);
        assert_eq!(cache.index.len(), 3, "the index follows the entries");
        // A write still reaches a departed entry.
        cache.invalidate(&[Dependency::Certificate("b".into())]);
        assert!(cache.get(&key("b")).is_none());
        cache.release(&key("gone"));
        assert_eq!(cache.departed.len(), 2, "releasing what is not remembered changes nothing");
    }
}
