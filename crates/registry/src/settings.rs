//! Account-wide singletons: DescribeEndpoint, event configurations, the fleet
//! indexing configuration and the V2 logging options.

use std::collections::BTreeMap;

use ferrocore_model::{Error, Result};
use ferrocore_store::{Collection, Expect};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Outcome, Registry, put};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    EventConfigurations,
    IndexingConfiguration,
    LoggingOptions,
}

impl Setting {
    fn key(self) -> &'static str {
        match self {
            Self::EventConfigurations => "event_configurations",
            Self::IndexingConfiguration => "indexing_configuration",
            Self::LoggingOptions => "v2_logging_options",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointType {
    Data,
    DataAts,
    CredentialProvider,
    Jobs,
}

impl EndpointType {
    /// Parses DescribeEndpoint's `endpointType`; absent means the legacy `iot:Data`.
    pub fn parse(text: Option<&str>) -> Result<Self> {
        match text {
            None | Some("iot:Data") => Ok(Self::Data),
            Some("iot:Data-ATS") => Ok(Self::DataAts),
            Some("iot:CredentialProvider") => Ok(Self::CredentialProvider),
            Some("iot:Jobs") => Ok(Self::Jobs),
            Some(other) => Err(Error::invalid(format!("Endpoint type {other} not recognized."))),
        }
    }
}

/// The registry event types and whether each publishes events.
pub type EventConfigurations = BTreeMap<String, bool>;

pub const EVENT_TYPES: &[&str] = &[
    "THING",
    "THING_GROUP",
    "THING_TYPE",
    "THING_GROUP_MEMBERSHIP",
    "THING_GROUP_HIERARCHY",
    "THING_TYPE_ASSOCIATION",
    "JOB",
    "JOB_EXECUTION",
    "POLICY",
    "CERTIFICATE",
    "CA_CERTIFICATE",
];

pub const LOG_LEVELS: &[&str] = &["DEBUG", "INFO", "ERROR", "WARN", "DISABLED"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggingOptions {
    pub role_arn: Option<String>,
    pub default_log_level: Option<String>,
    pub disable_all_logs: bool,
}

impl Registry {
    pub fn describe_endpoint(&self, endpoint_type: Option<&str>) -> Result<String> {
        EndpointType::parse(endpoint_type)?;
        Ok(self.config.endpoint_host.clone())
    }

    async fn setting<T: DeserializeOwned>(&self, setting: Setting) -> Result<Option<T>> {
        Ok(self.load(Collection::Setting, setting.key()).await?.map(|l| l.value))
    }

    async fn update_setting<T: Serialize + DeserializeOwned + Clone + Default>(
        &self,
        setting: Setting,
        change: impl Fn(&mut T),
    ) -> Result<T> {
        let change = &change;
        self.transact(|| async move {
            let loaded = self.load::<T>(Collection::Setting, setting.key()).await?;
            let (mut value, expect) = match &loaded {
                Some(l) => (l.value.clone(), l.expect()),
                None => (T::default(), Expect::Absent),
            };
            change(&mut value);
            Ok(Outcome::write(vec![put(Collection::Setting, setting.key(), expect, &value)], value))
        })
        .await
    }

    /// Every event type, enabled or not.
    pub async fn event_configurations(&self) -> Result<EventConfigurations> {
        let stored: EventConfigurations = self.setting(Setting::EventConfigurations).await?.unwrap_or_default();
        Ok(EVENT_TYPES.iter().map(|t| (t.to_string(), stored.get(*t).copied().unwrap_or(false))).collect())
    }

    pub async fn update_event_configurations(&self, changes: &EventConfigurations) -> Result<()> {
        if let Some(unknown) = changes.keys().find(|k| !EVENT_TYPES.contains(&k.as_str())) {
            return Err(Error::invalid(format!(
                "1 validation error detected: Value '{unknown}' at 'eventConfigurations' failed to satisfy constraint: Map keys must satisfy constraint: [Member must satisfy enum value set: [{}]]",
                EVENT_TYPES.join(", ")
            )));
        }
        self.update_setting::<EventConfigurations>(Setting::EventConfigurations, |stored| {
            stored.extend(changes.iter().map(|(k, v)| (k.clone(), *v)));
        })
        .await
        .map(drop)
    }

    pub async fn logging_options(&self) -> Result<LoggingOptions> {
        Ok(self.setting(Setting::LoggingOptions).await?.unwrap_or_else(|| LoggingOptions {
            role_arn: None,
            default_log_level: Some("ERROR".into()),
            disable_all_logs: false,
        }))
    }

    pub async fn set_logging_options(&self, options: LoggingOptions) -> Result<()> {
        if let Some(level) = options.default_log_level.as_deref().filter(|l| !LOG_LEVELS.contains(l)) {
            return Err(Error::invalid(format!(
                "1 validation error detected: Value '{level}' at 'defaultLogLevel' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                LOG_LEVELS.join(", ")
            )));
        }
        self.update_setting::<LoggingOptions>(Setting::LoggingOptions, |stored| *stored = options.clone())
            .await
            .map(drop)
    }

    /// The indexing configuration is a document whose shape the API layer checks;
    /// the registry keeps it as given.
    pub async fn indexing_configuration(&self) -> Result<Option<serde_json::Value>> {
        self.setting(Setting::IndexingConfiguration).await
    }

    pub async fn set_indexing_configuration(&self, document: serde_json::Value) -> Result<()> {
        self.update_setting::<serde_json::Value>(Setting::IndexingConfiguration, |stored| *stored = document.clone())
            .await
            .map(drop)
    }
}
