//! What a connection's permissions were computed from, and what a registry write
//! changes, in the same terms: a write re-checks only the connections whose
//! permissions read one of the records it wrote.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

use ferrocore_model::security::Policy;
use ferrocore_model::{Account, Arn, ResourceKind};
use ferrocore_store::{Collection, Write, WriteOp};

/// A registry record that permissions can be computed from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Dependency {
    /// A certificate, by id: its status, its things, the policies attached to it.
    Certificate(String),
    /// A CA certificate, by id: its status decides whether its certificates are trusted.
    Ca(String),
    /// A policy, by name: its default version and where it is attached.
    Policy(String),
    /// A thing, by name: its attributes, type, groups and principals.
    Thing(String),
    /// A thing group, by name: its parent and the policies attached to it.
    ThingGroup(String),
}

/// The records a committed batch of writes may have changed for some connection's
/// permissions; empty when the batch cannot change any (shadows, rules, retained
/// messages, settings, ...). Operations that rewrite a record without touching
/// what policies read (tags, a group's description) say so and skip this.
pub(crate) fn changed_by(writes: &[Write], account: &Account) -> Vec<Dependency> {
    let mut changed = Vec::new();
    for write in writes.iter().filter(|write| write.changes()) {
        let key = || write.key.clone();
        match write.collection {
            Collection::Certificate => changed.push(Dependency::Certificate(key())),
            Collection::CaCertificate => changed.push(Dependency::Ca(key())),
            Collection::Thing => changed.push(Dependency::Thing(key())),
            Collection::ThingGroup => changed.push(Dependency::ThingGroup(key())),
            Collection::Policy => {
                changed.push(Dependency::Policy(key()));
                // A new attachment reaches connections that do not hold the policy yet.
                if let WriteOp::Put(body) = &write.op
                    && let Ok(policy) = serde_json::from_slice::<Policy>(body)
                {
                    changed.extend(policy.targets.iter().filter_map(|target| target_dependency(target, account)));
                }
            }
            // A thing's type name is in the thing's record; the type's record holds
            // nothing a policy reads. Index entries repeat what their record says.
            Collection::ThingType
            | Collection::ThingIndex
            | Collection::PolicyTarget
            | Collection::ThingGroupChild
            | Collection::CertificateOrder
            | Collection::TopicRuleTopic
            | Collection::CaCertificateIndex
            | Collection::BillingGroup
            | Collection::RoleAlias
            | Collection::RetainedMessage
            | Collection::MqttSession
            | Collection::MqttQueuedMessage
            | Collection::MqttSessionNode
            | Collection::Setting
            | Collection::Shadow
            | Collection::ShadowVersion
            | Collection::TopicRule
            | Collection::TopicRuleDestination => {}
        }
    }
    changed.sort();
    changed.dedup();
    changed
}

/// The record behind a policy target (a certificate or thing group ARN).
pub(crate) fn target_dependency(target: &str, account: &Account) -> Option<Dependency> {
    let arn = Arn::parse(target, account).ok()?;
    match arn.kind {
        ResourceKind::Certificate => Some(Dependency::Certificate(arn.name)),
        ResourceKind::ThingGroup => Some(Dependency::ThingGroup(arn.name)),
        _ => None,
    }
}

/// Keys (connections, cached permissions) by the records they depend on.
#[derive(Debug)]
pub struct DependencyIndex<K> {
    dependents: HashMap<Dependency, HashSet<K>>,
    dependencies: HashMap<K, Arc<[Dependency]>>,
}

impl<K> Default for DependencyIndex<K> {
    fn default() -> Self {
        Self { dependents: HashMap::new(), dependencies: HashMap::new() }
    }
}

impl<K: Clone + Eq + Hash> DependencyIndex<K> {
    /// Records (or replaces) what `key` depends on. Keys are cloned once per
    /// dependency: cheap keys (numbers, `Arc`s) keep the index small.
    pub fn insert(&mut self, key: K, dependencies: Arc<[Dependency]>) {
        self.remove(&key);
        for dependency in dependencies.iter() {
            match self.dependents.get_mut(dependency) {
                Some(dependents) => {
                    dependents.insert(key.clone());
                }
                None => {
                    self.dependents.insert(dependency.clone(), HashSet::from([key.clone()]));
                }
            }
        }
        self.dependencies.insert(key, dependencies);
    }

    /// Forgets `key`; answers whether it was there.
    pub fn remove(&mut self, key: &K) -> bool {
        let Some(dependencies) = self.dependencies.remove(key) else {
            return false;
        };
        for dependency in dependencies.iter() {
            if let Some(dependents) = self.dependents.get_mut(dependency) {
                dependents.remove(key);
                if dependents.is_empty() {
                    self.dependents.remove(dependency);
                }
            }
        }
        true
    }

    /// The keys that depend on any of `changed`, each once.
    pub fn affected(&self, changed: &[Dependency]) -> Vec<K> {
        let mut affected: HashSet<&K> = HashSet::new();
        for dependency in changed {
            if let Some(dependents) = self.dependents.get(dependency) {
                affected.extend(dependents);
            }
        }
        affected.into_iter().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.dependencies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dependencies.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrocore_store::Expect;

    fn account() -> Account {
        Account { id: "123456789012".into(), region: "us-east-1".into() }
    }

    fn put(collection: Collection, key: &str, body: Vec<u8>) -> Write {
        Write::put(collection, key, Expect::Anything, body)
    }

    #[test]
    fn registry_records_name_what_they_change_and_other_records_change_nothing() {
        let account = account();
        let writes = [
            put(Collection::Thing, "sensor-1", b"{}".to_vec()),
            put(Collection::Certificate, "c0ffee", b"{}".to_vec()),
            put(Collection::Shadow, "sensor-1/", b"{}".to_vec()),
            put(Collection::TopicRule, "rule", b"{}".to_vec()),
            put(Collection::Setting, "logging", b"{}".to_vec()),
        ];
        assert_eq!(
            changed_by(&writes, &account),
            vec![Dependency::Certificate("c0ffee".into()), Dependency::Thing("sensor-1".into())]
        );
        let unrelated = [
            put(Collection::Shadow, "sensor-1/", b"{}".to_vec()),
            Write::delete(Collection::RoleAlias, "r", Expect::Anything),
        ];
        assert!(changed_by(&unrelated, &account).is_empty());
    }

    #[test]
    fn a_policy_write_names_the_records_it_is_attached_to() {
        let account = account();
        let policy = serde_json::json!({
            "name": "fleet", "versions": [], "default_version": 1, "next_version": 2,
            "creation_date": 0, "last_modified_date": 0, "generation_id": "g",
            "targets": [
                "arn:aws:iot:us-east-1:123456789012:cert/abc",
                "arn:aws:iot:us-east-1:123456789012:thinggroup/floor-1",
                "arn:aws:cognito-identity:us-east-1:123456789012:identitypool/x"
            ],
            "tags": {}
        });
        let changed = changed_by(&[put(Collection::Policy, "fleet", serde_json::to_vec(&policy).unwrap())], &account);
        assert_eq!(
            changed,
            vec![
                Dependency::Certificate("abc".into()),
                Dependency::Policy("fleet".into()),
                Dependency::ThingGroup("floor-1".into()),
            ]
        );
        let deleted = changed_by(&[Write::delete(Collection::Policy, "fleet", Expect::Anything)], &account);
        assert_eq!(deleted, vec![Dependency::Policy("fleet".into())]);
    }

    #[test]
    fn the_index_answers_the_keys_that_depend_on_a_change_until_they_are_removed() {
        let mut index = DependencyIndex::default();
        let cert = |id: &str| Dependency::Certificate(id.into());
        let policy = Dependency::Policy("fleet".into());
        index.insert(1u64, [cert("a"), policy.clone()].into());
        index.insert(2u64, [cert("b"), policy.clone()].into());
        assert_eq!(index.affected(&[cert("a")]), vec![1]);
        let mut both = index.affected(&[policy.clone(), cert("b")]);
        both.sort();
        assert_eq!(both, vec![1, 2]);
        assert!(index.affected(&[Dependency::Thing("other".into())]).is_empty());

        // Replacing a key's dependencies drops the old ones.
        index.insert(1, [cert("c")].into());
        assert_eq!(index.affected(std::slice::from_ref(&policy)), vec![2]);
        assert!(index.remove(&2));
        assert!(!index.remove(&2));
        assert!(index.affected(&[policy]).is_empty());
        assert_eq!(index.len(), 1);
        assert_eq!(index.affected(&[cert("c")]), vec![1]);
    }
}
