//! The AWS IoT policy language.
//!
//! [`Policy::parse`] validates a document the way CreatePolicy does; [`evaluate`]
//! decides one action on one resource for a request [`Context`] over a set of
//! policies: default deny, any matching Deny wins, otherwise any matching Allow
//! allows. Resources and conditions may use policy variables (`${iot:ClientId}`,
//! `${iot:Connection.Thing.ThingName}`, certificate fields, ...), resolved from the
//! context; [`Context`] builds the variables AWS defines from connection facts.

mod condition;
mod context;
mod document;
mod pattern;

pub use context::{CertificateFacts, Context, ThingFacts};
pub use document::{Effect, Policy, PolicyError, significant_chars};

/// The outcome for one action on one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    ExplicitDeny,
    ImplicitDeny,
}

/// A decision with the indexes (into the evaluated slice) of the policies that
/// allowed and denied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub decision: Decision,
    pub allowing: Vec<usize>,
    pub denying: Vec<usize>,
}

/// Decides `action` (e.g. `iot:Publish`) on `resource` (a full ARN).
pub fn evaluate(policies: &[&Policy], action: &str, resource: &str, context: &Context) -> Evaluation {
    let mut allowing = Vec::new();
    let mut denying = Vec::new();
    for (index, policy) in policies.iter().enumerate() {
        for effect in policy.matching_effects(action, resource, context) {
            let list = match effect {
                Effect::Allow => &mut allowing,
                Effect::Deny => &mut denying,
            };
            if list.last() != Some(&index) {
                list.push(index);
            }
        }
    }
    let decision = if !denying.is_empty() {
        Decision::ExplicitDeny
    } else if !allowing.is_empty() {
        Decision::Allowed
    } else {
        Decision::ImplicitDeny
    };
    Evaluation { decision, allowing, denying }
}
