//! Device identity and permission resources: certificates, CA certificates,
//! policies (with versions) and role aliases, and the AWS rules on them.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::registry::Tags;
use crate::{Error, Millis, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateStatus {
    Active,
    Inactive,
    Revoked,
    PendingTransfer,
    RegisterInactive,
    PendingActivation,
}

impl CertificateStatus {
    pub const ALL: [Self; 6] = [
        Self::Active,
        Self::Inactive,
        Self::Revoked,
        Self::PendingTransfer,
        Self::RegisterInactive,
        Self::PendingActivation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Inactive => "INACTIVE",
            Self::Revoked => "REVOKED",
            Self::PendingTransfer => "PENDING_TRANSFER",
            Self::RegisterInactive => "REGISTER_INACTIVE",
            Self::PendingActivation => "PENDING_ACTIVATION",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text).ok_or_else(|| {
            Error::invalid(format!(
                "1 validation error detected: Value '{text}' at 'newStatus' failed to satisfy constraint: Member must satisfy enum value set: [ACTIVE, INACTIVE, REVOKED, PENDING_TRANSFER, REGISTER_INACTIVE, PENDING_ACTIVATION]"
            ))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateMode {
    Default,
    SniOnly,
}

impl CertificateMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "DEFAULT",
            Self::SniOnly => "SNI_ONLY",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub id: String,
    pub pem: String,
    pub status: CertificateStatus,
    pub ca_certificate_id: Option<String>,
    pub mode: CertificateMode,
    pub creation_date: Millis,
    pub last_modified_date: Millis,
    pub customer_version: i64,
    pub generation_id: String,
    /// Validity, in Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Things this certificate is attached to.
    pub things: BTreeSet<String>,
}

impl Certificate {
    /// UpdateCertificate's status rules.
    pub fn check_transition(&self, to: CertificateStatus) -> Result<()> {
        use CertificateStatus::*;
        if matches!(to, PendingTransfer | PendingActivation) {
            return Err(Error::invalid(format!(
                "The certificate cannot be moved to {} with UpdateCertificate.",
                to.as_str()
            )));
        }
        if self.status == Revoked && to != Revoked {
            return Err(Error::CertificateState(format!(
                "Certificate {} is REVOKED and cannot be moved to {}.",
                self.id,
                to.as_str()
            )));
        }
        if self.status == PendingTransfer {
            return Err(Error::CertificateState(format!(
                "Certificate {} is pending transfer; cancel or complete the transfer first.",
                self.id
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaStatus {
    Active,
    Inactive,
}

impl CaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Inactive => "INACTIVE",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationConfig {
    pub template_body: Option<String>,
    pub template_name: Option<String>,
    pub role_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaCertificate {
    pub id: String,
    pub pem: String,
    pub status: CaStatus,
    pub auto_registration: bool,
    pub registration_config: RegistrationConfig,
    pub mode: CertificateMode,
    pub creation_date: Millis,
    pub last_modified_date: Millis,
    pub customer_version: i64,
    pub generation_id: String,
    pub not_before: i64,
    pub not_after: i64,
    pub tags: Tags,
}

/// Policies keep at most this many versions (AWS's fixed limit).
pub const MAX_POLICY_VERSIONS: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub id: u32,
    pub document: String,
    pub creation_date: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub versions: Vec<PolicyVersion>,
    pub default_version: u32,
    /// The id the next version gets: ids are never reused.
    pub next_version: u32,
    pub creation_date: Millis,
    pub last_modified_date: Millis,
    pub generation_id: String,
    /// ARNs of the principals and thing groups the policy is attached to.
    pub targets: BTreeSet<String>,
    pub tags: Tags,
}

impl Policy {
    pub fn default_document(&self) -> &str {
        self.version(self.default_version).map_or("", |v| v.document.as_str())
    }

    pub fn version(&self, id: u32) -> Option<&PolicyVersion> {
        self.versions.iter().find(|v| v.id == id)
    }

    /// CreatePolicyVersion: adds a version, the new default if asked.
    pub fn add_version(&mut self, document: String, set_as_default: bool, now: Millis) -> Result<u32> {
        if self.versions.len() >= MAX_POLICY_VERSIONS {
            return Err(Error::VersionsLimitExceeded(format!(
                "The policy {} already has the maximum number of versions ({MAX_POLICY_VERSIONS})",
                self.name
            )));
        }
        let id = self.next_version;
        self.next_version += 1;
        self.versions.push(PolicyVersion { id, document, creation_date: now });
        if set_as_default {
            self.default_version = id;
        }
        self.last_modified_date = now;
        Ok(id)
    }

    pub fn delete_version(&mut self, id: u32) -> Result<()> {
        if self.version(id).is_none() {
            return Err(Error::not_found(format!("Policy version {id} of policy {} does not exist", self.name)));
        }
        if id == self.default_version {
            return Err(Error::InvalidRequest(format!(
                "Cannot delete the default version {id} of policy {}. Set another version as the default first.",
                self.name
            )));
        }
        self.versions.retain(|v| v.id != id);
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleAlias {
    pub alias: String,
    pub role_arn: String,
    pub credential_duration_seconds: i64,
    pub creation_date: Millis,
    pub last_modified_date: Millis,
    pub tags: Tags,
}

pub const CREDENTIAL_DURATION_RANGE: std::ops::RangeInclusive<i64> = 900..=43_200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ThingPrincipalType {
    ExclusiveThing,
    NonExclusiveThing,
}

impl ThingPrincipalType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExclusiveThing => "EXCLUSIVE_THING",
            Self::NonExclusiveThing => "NON_EXCLUSIVE_THING",
        }
    }

    pub fn parse(text: Option<&str>) -> Result<Self> {
        match text {
            None | Some("NON_EXCLUSIVE_THING") => Ok(Self::NonExclusiveThing),
            Some("EXCLUSIVE_THING") => Ok(Self::ExclusiveThing),
            Some(other) => Err(Error::invalid(format!(
                "1 validation error detected: Value '{other}' at 'thingPrincipalType' failed to satisfy constraint: Member must satisfy enum value set: [EXCLUSIVE_THING, NON_EXCLUSIVE_THING]"
            ))),
        }
    }
}
