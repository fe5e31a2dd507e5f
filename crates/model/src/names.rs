//! Name and value constraints from the AWS IoT service model, checked the way
//! the service reports them ("1 validation error detected: ...").

use crate::{Error, Result};

/// One constraint on a string field: a length range and a character class.
pub struct Constraint {
    pub min: usize,
    pub max: usize,
    /// The pattern as AWS prints it in validation messages.
    pub pattern: &'static str,
    pub allowed: fn(char) -> bool,
}

fn resource_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-')
}

fn attribute_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ',' | '@' | '/' | ':' | '#' | '-')
}

fn attribute_value_char(c: char) -> bool {
    attribute_name_char(c) || matches!(c, '=' | '[' | ']')
}

fn policy_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '+' | '=' | ',' | '.' | '@' | '-')
}

fn role_alias_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '=' | ',' | '@' | '-')
}

fn hex_char(c: char) -> bool {
    c.is_ascii_hexdigit()
}

fn any_char(_: char) -> bool {
    true
}

/// Things, thing types, thing groups and billing groups.
pub const RESOURCE_NAME: Constraint =
    Constraint { min: 1, max: 128, pattern: "[a-zA-Z0-9:_-]+", allowed: resource_name_char };
pub const ATTRIBUTE_NAME: Constraint =
    Constraint { min: 1, max: 128, pattern: "[a-zA-Z0-9_.,@/:#-]+", allowed: attribute_name_char };
pub const ATTRIBUTE_VALUE: Constraint =
    Constraint { min: 0, max: 800, pattern: "[a-zA-Z0-9_.,@/:#=\\[\\]-]*", allowed: attribute_value_char };
pub const POLICY_NAME: Constraint = Constraint { min: 1, max: 128, pattern: "[\\w+=,.@-]+", allowed: policy_name_char };
pub const ROLE_ALIAS: Constraint = Constraint { min: 1, max: 128, pattern: "[\\w=,@-]+", allowed: role_alias_char };
pub const CERTIFICATE_ID: Constraint = Constraint { min: 64, max: 64, pattern: "(0x)?[a-fA-F0-9]+", allowed: hex_char };
pub const TAG_KEY: Constraint = Constraint { min: 1, max: 128, pattern: "", allowed: any_char };
pub const TAG_VALUE: Constraint = Constraint { min: 0, max: 256, pattern: "", allowed: any_char };
pub const DESCRIPTION: Constraint = Constraint { min: 0, max: 2028, pattern: "", allowed: any_char };

impl Constraint {
    /// Checks `value` of the request member `field`.
    pub fn check(&self, field: &str, value: &str) -> Result<()> {
        let len = value.chars().count();
        let problem = if len < self.min {
            format!("Member must have length greater than or equal to {}", self.min)
        } else if len > self.max {
            format!("Member must have length less than or equal to {}", self.max)
        } else if !value.chars().all(self.allowed) {
            format!("Member must satisfy regular expression pattern: {}", self.pattern)
        } else {
            return Ok(());
        };
        Err(Error::InvalidRequest(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {problem}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names() {
        assert!(RESOURCE_NAME.check("thingName", "sensor-001:a_b").is_ok());
        for bad in ["", "has space", "slash/no", "é", &"x".repeat(129)] {
            let err = RESOURCE_NAME.check("thingName", bad).unwrap_err();
            assert!(matches!(err, Error::InvalidRequest(m) if m.contains("'thingName'")), "{bad}");
        }
        assert!(RESOURCE_NAME.check("thingName", &"x".repeat(128)).is_ok());
    }

    #[test]
    fn attribute_values_allow_brackets_and_empty() {
        assert!(ATTRIBUTE_VALUE.check("v", "").is_ok());
        assert!(ATTRIBUTE_VALUE.check("v", "a=[1]").is_ok());
        assert!(ATTRIBUTE_NAME.check("n", "a=[1]").is_err());
        assert!(ATTRIBUTE_VALUE.check("v", "with space").is_err());
        assert!(ATTRIBUTE_VALUE.check("v", &"v".repeat(801)).is_err());
    }
}
