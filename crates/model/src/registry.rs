//! Registry resources (things, thing types, thing groups, billing groups) and
//! the AWS IoT rules on them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::names::{ATTRIBUTE_NAME, ATTRIBUTE_VALUE, DESCRIPTION, RESOURCE_NAME, TAG_KEY, TAG_VALUE};
use crate::{Error, Millis, Result};

pub type Attributes = BTreeMap<String, String>;
pub type Tags = BTreeMap<String, String>;

/// Attributes a thing may carry without a thing type, and with one.
pub const MAX_ATTRIBUTES_UNTYPED: usize = 3;
pub const MAX_ATTRIBUTES_TYPED: usize = 50;
pub const MAX_GROUP_ATTRIBUTES: usize = 50;
pub const MAX_SEARCHABLE_ATTRIBUTES: usize = 3;
pub const MAX_GROUPS_PER_THING: usize = 10;
pub const MAX_GROUP_DEPTH: usize = 7;
pub const MAX_TAGS: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thing {
    pub name: String,
    pub id: String,
    pub thing_type: Option<String>,
    pub attributes: Attributes,
    /// AWS's visible version: starts at 1, bumped by every UpdateThing.
    pub version: i64,
    pub billing_group: Option<String>,
    pub groups: BTreeSet<String>,
    /// Attached principals (certificate ARNs, ...) and how each is attached.
    #[serde(default)]
    pub principals: BTreeMap<String, crate::security::ThingPrincipalType>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThingType {
    pub name: String,
    pub id: String,
    pub description: Option<String>,
    pub searchable_attributes: Vec<String>,
    pub deprecated: bool,
    pub deprecation_date: Option<Millis>,
    pub creation_date: Millis,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThingGroup {
    pub name: String,
    pub id: String,
    pub properties: GroupProperties,
    pub parent: Option<String>,
    pub version: i64,
    pub creation_date: Millis,
    pub tags: Tags,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupProperties {
    pub description: Option<String>,
    pub attributes: Attributes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingGroup {
    pub name: String,
    pub id: String,
    pub description: Option<String>,
    pub version: i64,
    pub creation_date: Millis,
    pub tags: Tags,
}

/// An `attributePayload`: new attributes, merged into or replacing the old ones.
/// An empty value removes that attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttributePayload {
    pub attributes: Attributes,
    pub merge: bool,
}

impl AttributePayload {
    pub fn apply(&self, current: &Attributes) -> Attributes {
        let mut result = if self.merge { current.clone() } else { Attributes::new() };
        for (name, value) in &self.attributes {
            if value.is_empty() {
                result.remove(name);
            } else {
                result.insert(name.clone(), value.clone());
            }
        }
        result
    }
}

pub fn validate_name(field: &str, name: &str) -> Result<()> {
    RESOURCE_NAME.check(field, name)
}

pub fn validate_description(field: &str, description: Option<&str>) -> Result<()> {
    description.map_or(Ok(()), |d| DESCRIPTION.check(field, d))
}

/// Checks each attribute and the count: `max` is the limit for this resource.
pub fn validate_attributes(attributes: &Attributes, max: usize, owner: &str) -> Result<()> {
    for (name, value) in attributes {
        ATTRIBUTE_NAME.check("attributePayload.attributes.key", name)?;
        ATTRIBUTE_VALUE.check("attributePayload.attributes.value", value)?;
    }
    if attributes.len() > max {
        return Err(Error::invalid(format!(
            "{owner} can have at most {max} attributes, but {} were given",
            attributes.len()
        )));
    }
    Ok(())
}

pub fn max_thing_attributes(typed: bool) -> usize {
    if typed { MAX_ATTRIBUTES_TYPED } else { MAX_ATTRIBUTES_UNTYPED }
}

pub fn thing_attribute_owner(typed: bool) -> &'static str {
    if typed { "A thing with a thing type" } else { "A thing without a thing type" }
}

pub fn validate_tags(tags: &Tags) -> Result<()> {
    for (key, value) in tags {
        TAG_KEY.check("tags.member.Key", key)?;
        TAG_VALUE.check("tags.member.Value", value)?;
        if key.starts_with("aws:") {
            return Err(Error::invalid(format!("Tag key {key} uses the reserved prefix aws:")));
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid(format!("A resource can have at most {MAX_TAGS} tags")));
    }
    Ok(())
}

pub fn validate_searchable_attributes(names: &[String]) -> Result<()> {
    for name in names {
        ATTRIBUTE_NAME.check("thingTypeProperties.searchableAttributes.member", name)?;
    }
    if names.len() > MAX_SEARCHABLE_ATTRIBUTES {
        return Err(Error::invalid(format!(
            "A thing type can have at most {MAX_SEARCHABLE_ATTRIBUTES} searchable attributes"
        )));
    }
    Ok(())
}

/// The thing type a thing may be created with or moved to.
pub fn check_type_usable(thing_type: &ThingType) -> Result<()> {
    if thing_type.deprecated {
        // AWS's own message, typo included.
        return Err(Error::invalid(format!("Can not create new thing with depreated thing type:{}", thing_type.name)));
    }
    Ok(())
}

/// DeleteThingType is allowed once the type has been deprecated for `wait_ms`.
pub fn check_type_deletable(thing_type: &ThingType, now: Millis, wait_ms: Millis) -> Result<()> {
    match thing_type.deprecation_date {
        Some(since) if thing_type.deprecated => {
            if now - since < wait_ms {
                return Err(Error::invalid(format!(
                    "Thing type {} was deprecated less than {} minutes ago. Please wait for 5 minutes after deprecation and then retry",
                    thing_type.name,
                    wait_ms / 60_000
                )));
            }
            Ok(())
        }
        _ => Err(Error::invalid(format!(
            "Thing type {} is not deprecated. Deprecate it before deleting it.",
            thing_type.name
        ))),
    }
}

pub fn check_expected_version(resource: &str, name: &str, current: i64, expected: Option<i64>) -> Result<()> {
    match expected {
        Some(expected) if expected != current => Err(Error::VersionConflict(format!(
            "The version for {resource} {name} does not match the expected version."
        ))),
        _ => Ok(()),
    }
}

/// A thing may join at most ten groups and no two of one hierarchy.
/// `root_of` maps each group to the root of its tree.
pub fn check_group_membership(thing: &Thing, new_group: &str, root_of: &dyn Fn(&str) -> String) -> Result<()> {
    if thing.groups.contains(new_group) {
        return Ok(());
    }
    if thing.groups.len() >= MAX_GROUPS_PER_THING {
        return Err(Error::LimitExceeded(format!(
            "Thing {} already belongs to {MAX_GROUPS_PER_THING} thing groups",
            thing.name
        )));
    }
    let new_root = root_of(new_group);
    if let Some(clash) = thing.groups.iter().find(|g| root_of(g) == new_root) {
        return Err(Error::invalid(format!(
            "Thing {} cannot be added to thing group {new_group}: it already belongs to {clash} in the same hierarchy",
            thing.name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Attributes {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn merge_keeps_old_and_empty_removes() {
        let current = attrs(&[("a", "1"), ("b", "2")]);
        let payload = AttributePayload { attributes: attrs(&[("b", ""), ("c", "3")]), merge: true };
        assert_eq!(payload.apply(&current), attrs(&[("a", "1"), ("c", "3")]));
        let replace = AttributePayload { merge: false, ..payload };
        assert_eq!(replace.apply(&current), attrs(&[("c", "3")]));
    }

    #[test]
    fn attribute_limits_depend_on_type() {
        let four = attrs(&[("a", "1"), ("b", "1"), ("c", "1"), ("d", "1")]);
        assert!(validate_attributes(&four, max_thing_attributes(false), "t").is_err());
        assert!(validate_attributes(&four, max_thing_attributes(true), "t").is_ok());
    }

    fn thing_type(deprecated_at: Option<Millis>) -> ThingType {
        ThingType {
            name: "T".into(),
            id: "id".into(),
            description: None,
            searchable_attributes: vec![],
            deprecated: deprecated_at.is_some(),
            deprecation_date: deprecated_at,
            creation_date: 0,
            tags: Tags::new(),
        }
    }

    #[test]
    fn type_deletion_needs_deprecation_and_wait() {
        assert!(check_type_deletable(&thing_type(None), 10, 0).is_err());
        assert!(check_type_deletable(&thing_type(Some(0)), 0, 0).is_ok());
        let err = check_type_deletable(&thing_type(Some(0)), 1000, 300_000).unwrap_err();
        assert!(err.to_string().contains("Please wait for 5 minutes after deprecation and then retry"));
        assert!(check_type_usable(&thing_type(Some(0))).is_err());
    }

    #[test]
    fn one_group_per_hierarchy() {
        let thing = Thing {
            name: "t".into(),
            id: "i".into(),
            thing_type: None,
            attributes: Attributes::new(),
            version: 1,
            billing_group: None,
            groups: ["child-a".to_string()].into(),
            principals: Default::default(),
        };
        let root_of = |g: &str| {
            if g.starts_with("child") { "root".to_string() } else { g.to_string() }
        };
        assert!(check_group_membership(&thing, "child-b", &root_of).is_err());
        assert!(check_group_membership(&thing, "other", &root_of).is_ok());
        assert!(check_group_membership(&thing, "child-a", &root_of).is_ok());
    }
}
