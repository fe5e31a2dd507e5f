//! Role aliases for the credentials provider.

use ferrocore_model::names::ROLE_ALIAS;
use ferrocore_model::registry::{Tags, validate_tags};
use ferrocore_model::security::{CREDENTIAL_DURATION_RANGE, RoleAlias};
use ferrocore_model::{Error, ResourceKind, Result};
use ferrocore_store::{Collection, Expect, Write};

use crate::paging::{Page, PageRequest};
use crate::{Outcome, Registry, put};

pub const DEFAULT_CREDENTIAL_DURATION: i64 = 3600;

fn check_duration(seconds: i64) -> Result<()> {
    if CREDENTIAL_DURATION_RANGE.contains(&seconds) {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "1 validation error detected: Value '{seconds}' at 'credentialDurationSeconds' failed to satisfy constraint: Member must have value between {} and {}",
        CREDENTIAL_DURATION_RANGE.start(),
        CREDENTIAL_DURATION_RANGE.end()
    )))
}

fn check_role_arn(role_arn: &str) -> Result<()> {
    if role_arn.starts_with("arn:") && role_arn.split(':').count() >= 6 && (20..=2048).contains(&role_arn.len()) {
        return Ok(());
    }
    Err(Error::invalid(format!("The role ARN {role_arn} is not valid.")))
}

impl Registry {
    async fn require_role_alias(&self, alias: &str) -> Result<crate::Loaded<RoleAlias>> {
        ROLE_ALIAS.check("roleAlias", alias)?;
        self.load(Collection::RoleAlias, alias)
            .await?
            .ok_or_else(|| Error::not_found(format!("Role alias {alias} does not exist.")))
    }

    pub async fn create_role_alias(
        &self,
        alias: &str,
        role_arn: &str,
        duration: Option<i64>,
        tags: &Tags,
    ) -> Result<String> {
        ROLE_ALIAS.check("roleAlias", alias)?;
        check_role_arn(role_arn)?;
        let duration = duration.unwrap_or(DEFAULT_CREDENTIAL_DURATION);
        check_duration(duration)?;
        validate_tags(tags)?;
        let arn = self.arn(ResourceKind::RoleAlias, alias);
        let arn = &arn;
        self.transact(|| async move {
            if self.load::<RoleAlias>(Collection::RoleAlias, alias).await?.is_some() {
                return Err(Error::ResourceAlreadyExists {
                    message: format!("Role alias {alias} already exists."),
                    resource_id: alias.to_string(),
                    resource_arn: arn.clone(),
                });
            }
            let now = self.now();
            let record = RoleAlias {
                alias: alias.to_string(),
                role_arn: role_arn.to_string(),
                credential_duration_seconds: duration,
                creation_date: now,
                last_modified_date: now,
                tags: tags.clone(),
            };
            Ok(Outcome::write(vec![put(Collection::RoleAlias, alias, Expect::Absent, &record)], arn.clone()))
        })
        .await
    }

    pub async fn describe_role_alias(&self, alias: &str) -> Result<RoleAlias> {
        Ok(self.require_role_alias(alias).await?.value)
    }

    pub async fn update_role_alias(&self, alias: &str, role_arn: Option<&str>, duration: Option<i64>) -> Result<()> {
        if let Some(role_arn) = role_arn {
            check_role_arn(role_arn)?;
        }
        if let Some(duration) = duration {
            check_duration(duration)?;
        }
        self.transact(|| async {
            let loaded = self.require_role_alias(alias).await?;
            let mut record = loaded.value.clone();
            if let Some(role_arn) = role_arn {
                record.role_arn = role_arn.to_string();
            }
            if let Some(duration) = duration {
                record.credential_duration_seconds = duration;
            }
            record.last_modified_date = self.now();
            Ok(Outcome::write(vec![put(Collection::RoleAlias, alias, loaded.expect(), &record)], ()))
        })
        .await
    }

    pub async fn delete_role_alias(&self, alias: &str) -> Result<()> {
        self.transact(|| async {
            let loaded = self.require_role_alias(alias).await?;
            Ok(Outcome::write(vec![Write::delete(Collection::RoleAlias, alias, loaded.expect())], ()))
        })
        .await
    }

    pub async fn list_role_aliases(&self, page: &PageRequest) -> Result<Page<String>> {
        Ok(self.page_where(Collection::RoleAlias, page, |_: &RoleAlias| true).await?.map(|r| r.alias))
    }
}
