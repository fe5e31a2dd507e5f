//! Configuration: defaults < TOML file (`--config`) < `FERROCORE_*` environment < flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

/// Flags of `ferrocore serve`; each also reads a `FERROCORE_*` variable.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML configuration file.
    #[arg(long, env = "FERROCORE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where ferrocore keeps its data.
    #[arg(long, env = "FERROCORE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A PostgreSQL database to keep state in (postgres://user:password@host:port/db);
    /// default: SQLite in the data directory.
    #[arg(long, env = "FERROCORE_STORE_URL", hide_env_values = true)]
    pub store_url: Option<String>,
    /// NATS to join other nodes through (nats://host:4222); needs a PostgreSQL store
    /// and a node id. Without it the node runs alone.
    #[arg(long, env = "FERROCORE_CLUSTER_URL", hide_env_values = true)]
    pub cluster_url: Option<String>,
    /// This node's name in the cluster, unique among the nodes.
    #[arg(long, env = "FERROCORE_NODE_ID")]
    pub node_id: Option<String>,
    /// The AWS-compatible HTTP API (iot, sts, health, metrics).
    #[arg(long, env = "FERROCORE_API_ADDR")]
    pub api_addr: Option<SocketAddr>,
    /// MQTT over TLS for devices.
    #[arg(long, env = "FERROCORE_MQTT_ADDR")]
    pub mqtt_addr: Option<SocketAddr>,
    /// HTTPS for devices (publish, MQTT over WebSocket).
    #[arg(long, env = "FERROCORE_HTTPS_ADDR")]
    pub https_addr: Option<SocketAddr>,
    /// The host name DescribeEndpoint answers (default: the MQTT listener's address).
    #[arg(long, env = "FERROCORE_ENDPOINT_HOST")]
    pub endpoint_host: Option<String>,
    #[arg(long, env = "FERROCORE_ACCOUNT_ID")]
    pub account_id: Option<String>,
    #[arg(long, env = "FERROCORE_REGION")]
    pub region: Option<String>,
    /// An access key to accept (with --secret-access-key); replaces the local test/test pair.
    #[arg(long, env = "FERROCORE_ACCESS_KEY_ID", requires = "secret_access_key")]
    pub access_key_id: Option<String>,
    #[arg(long, env = "FERROCORE_SECRET_ACCESS_KEY", hide_env_values = true, requires = "access_key_id")]
    pub secret_access_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// An IAM-style policy (JSON) holding this key to the `iot:` actions it allows on
    /// the data plane (iot-data, MQTT over WebSocket, HTTPS publish); none: everything.
    #[serde(default)]
    pub policy: Option<String>,
}

/// `[[sni_certificates]]`: a certificate for the names a device asks for by SNI.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCertificateConfig {
    /// Exact host names or `*.domain` wildcards.
    pub names: Vec<String>,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    /// PostgreSQL instead of the data directory's SQLite database.
    pub store_url: Option<String>,
    /// NATS, for a node of a cluster (with `store_url` and `node_id`).
    pub cluster_url: Option<String>,
    pub node_id: Option<String>,
    pub api_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    pub https_addr: SocketAddr,
    pub endpoint_host: Option<String>,
    pub account_id: String,
    pub region: String,
    pub credentials: Vec<CredentialConfig>,
    /// Seconds a thing type must stay deprecated before DeleteThingType (AWS: 300).
    pub thing_type_delete_wait_secs: u64,
    /// Largest API request body, in bytes.
    pub api_body_limit_bytes: usize,
    /// Largest policy document, in non-whitespace characters (AWS: 2048).
    pub policy_document_limit: usize,
    /// Largest MQTT packet, in bytes (AWS: 128 KB payloads).
    pub mqtt_max_packet_bytes: usize,
    /// AWS's MQTT limits: 50 subscriptions per connection, 8 filters per SUBSCRIBE,
    /// topics of at most 256 bytes and 7 slashes.
    pub mqtt_subscriptions_per_connection: usize,
    pub mqtt_filters_per_subscribe: usize,
    pub mqtt_topic_bytes: usize,
    pub mqtt_topic_slashes: usize,
    /// Expiry of persistent sessions that do not set one (AWS: 1 hour).
    pub mqtt_session_expiry_secs: u64,
    /// QoS 1 messages a disconnected persistent session keeps; beyond, the oldest are dropped.
    pub mqtt_session_queue_limit: usize,
    /// API connections open at once; beyond, new ones wait in the kernel's backlog.
    pub api_max_connections: usize,
    /// Device connections open at once (8883 and HTTPS together); by default the
    /// descriptor limit less the API's share and a reserve.
    pub device_max_connections: Option<usize>,
    /// An API connection that moves no byte for this long is closed.
    pub api_idle_timeout_secs: u64,
    /// How long a client may take to send an API request's body.
    pub api_body_timeout_secs: u64,
    /// AWS's per-connection quotas (100 publishes/s, 524288 bytes/s); off unless set.
    pub mqtt_publishes_per_second: Option<u32>,
    pub mqtt_bytes_per_second: Option<u32>,
    /// Device shadows: bytes of desired + reported state (AWS: 8 KB) and levels of
    /// nesting inside each section (AWS: 8).
    pub shadow_max_state_bytes: usize,
    pub shadow_max_depth: usize,
    /// Extension: past versions kept per shadow, readable by operators (0: off, as AWS).
    pub shadow_history_versions: u64,
    /// Extension: publish `.../shadow/update/removed` when desired keys are removed.
    pub shadow_removal_notifications: bool,
    /// Extra names (DNS or IP) for the device endpoints' TLS certificate.
    pub server_names: Vec<String>,
    /// An operator-supplied TLS certificate (PEM chain) and key for the device endpoints.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Certificates the device listeners choose by SNI (custom domains).
    pub sni_certificates: Vec<SniCertificateConfig>,
    /// The rules engine: where actions go and how hard it tries.
    pub rules: RulesSection,
}

/// `[rules]`: endpoints and credentials of the services actions call.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesSection {
    /// One endpoint for every AWS service actions call (e.g. moto_server); unset: AWS's.
    pub endpoint_url: Option<String>,
    /// Per-service endpoints: dynamodb, s3, sqs, sns, kinesis, firehose, logs, cloudwatch, lambda.
    pub endpoints: std::collections::BTreeMap<String, String>,
    /// The region of target services (default: the server's region).
    pub region: Option<String>,
    /// Credentials for target services (default: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub max_in_flight: usize,
    pub max_attempts: u32,
    pub queue_capacity: usize,
    /// Extension for local endpoints: HTTP actions and destinations may use http:// (AWS: HTTPS only).
    pub http_allow_insecure: bool,
}

impl Default for RulesSection {
    fn default() -> Self {
        let engine = ferrocore_rules::RulesConfig::default();
        Self {
            endpoint_url: None,
            endpoints: Default::default(),
            region: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            max_in_flight: engine.max_in_flight,
            max_attempts: engine.max_attempts,
            queue_capacity: engine.queue_capacity,
            http_allow_insecure: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./ferrocore-data"),
            store_url: None,
            cluster_url: None,
            node_id: None,
            api_addr: SocketAddr::from(([127, 0, 0, 1], 4566)),
            mqtt_addr: SocketAddr::from(([127, 0, 0, 1], 8883)),
            https_addr: SocketAddr::from(([127, 0, 0, 1], 8443)),
            endpoint_host: None,
            account_id: "000000000000".into(),
            region: "us-east-1".into(),
            credentials: Vec::new(),
            thing_type_delete_wait_secs: 0,
            api_body_limit_bytes: 1024 * 1024,
            policy_document_limit: 2048,
            mqtt_max_packet_bytes: 128 * 1024 + 1024,
            mqtt_subscriptions_per_connection: 50,
            mqtt_filters_per_subscribe: 8,
            mqtt_topic_bytes: 256,
            mqtt_topic_slashes: 7,
            mqtt_session_expiry_secs: 3600,
            mqtt_session_queue_limit: 10_000,
            api_max_connections: 256,
            device_max_connections: None,
            api_idle_timeout_secs: 60,
            api_body_timeout_secs: 30,
            mqtt_publishes_per_second: None,
            mqtt_bytes_per_second: None,
            shadow_max_state_bytes: 8 * 1024,
            shadow_max_depth: 8,
            shadow_history_versions: 0,
            shadow_removal_notifications: false,
            server_names: Vec::new(),
            tls_cert_file: None,
            tls_key_file: None,
            sni_certificates: Vec::new(),
            rules: RulesSection::default(),
        }
    }
}

impl Config {
    pub fn load(args: ServeArgs) -> anyhow::Result<Self> {
        let mut config = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        macro_rules! override_with {
            ($($field:ident),*) => {$( if let Some(value) = args.$field { config.$field = value; } )*};
        }
        override_with!(data_dir, api_addr, mqtt_addr, https_addr, account_id, region);
        if args.endpoint_host.is_some() {
            config.endpoint_host = args.endpoint_host;
        }
        if args.store_url.is_some() {
            config.store_url = args.store_url;
        }
        if args.cluster_url.is_some() {
            config.cluster_url = args.cluster_url;
        }
        if args.node_id.is_some() {
            config.node_id = args.node_id;
        }
        if let (Some(access_key_id), Some(secret_access_key)) = (args.access_key_id, args.secret_access_key) {
            config.credentials = vec![CredentialConfig { access_key_id, secret_access_key, policy: None }];
        }
        config.validate()?;
        Ok(config)
    }

    fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    fn listeners(&self) -> [SocketAddr; 3] {
        [self.api_addr, self.mqtt_addr, self.https_addr]
    }

    pub fn loopback_only(&self) -> bool {
        self.listeners().iter().all(|addr| addr.ip().is_loopback())
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.credentials.is_empty() && !self.loopback_only() {
            bail!(
                "refusing to listen on a non-loopback address without configured credentials: \
                 set --access-key-id/--secret-access-key or [[credentials]] in the config file"
            );
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            bail!("tls_cert_file and tls_key_file must be given together");
        }
        if self.rules.access_key_id.is_some() != self.rules.secret_access_key.is_some() {
            bail!("[rules] access_key_id and secret_access_key must be given together");
        }
        if let Some(url) = &self.store_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            bail!(
                "store_url must be a postgres:// or postgresql:// URL (without it, state is kept in SQLite in the data directory)"
            );
        }
        if let Some(url) = &self.cluster_url {
            if !url.starts_with("nats://") && !url.starts_with("tls://") {
                bail!("cluster_url must be a nats:// (or tls://) URL");
            }
            if self.store_url.is_none() {
                bail!("a cluster keeps its state in PostgreSQL: set store_url (--store-url) with cluster_url");
            }
            match &self.node_id {
                None => bail!("a node of a cluster needs a node id (--node-id, FERROCORE_NODE_ID)"),
                Some(id)
                    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
                {
                    bail!("node id must be letters, digits, '-' or '_', got {id:?}")
                }
                Some(_) => {}
            }
        }
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            bail!("account id must be 12 digits, got {:?}", self.account_id);
        }
        Ok(())
    }

    /// The rules engine's settings.
    pub fn rules_config(&self) -> ferrocore_rules::RulesConfig {
        let rules = &self.rules;
        let mut endpoints = rules.endpoints.clone();
        if let Some(url) = &rules.endpoint_url {
            endpoints.insert("default".into(), url.clone());
        }
        let credentials = match (&rules.access_key_id, &rules.secret_access_key) {
            (Some(access_key_id), Some(secret_access_key)) => Some(ferrocore_rules::StaticCredentials {
                access_key_id: access_key_id.clone(),
                secret_access_key: secret_access_key.clone(),
                session_token: rules.session_token.clone(),
            }),
            _ => None,
        };
        let api_host =
            if self.api_addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { self.api_addr.ip().to_string() };
        ferrocore_rules::RulesConfig {
            account_id: self.account_id.clone(),
            region: rules.region.clone().unwrap_or_else(|| self.region.clone()),
            endpoints,
            credentials,
            max_in_flight: rules.max_in_flight,
            max_attempts: rules.max_attempts.max(1),
            queue_capacity: rules.queue_capacity,
            http_allow_insecure: rules.http_allow_insecure,
            api_url: format!("http://{api_host}:{}", self.api_addr.port()),
        }
    }

    /// Names the device endpoints' TLS certificate covers: loopback, the endpoint host, and configured names.
    pub fn server_names(&self) -> Vec<String> {
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), self.endpoint_host()];
        names.extend(self.server_names.iter().cloned());
        let mut seen = std::collections::BTreeSet::new();
        names.retain(|n| seen.insert(n.clone()));
        names
    }

    /// The host DescribeEndpoint answers: configured, or the MQTT listener's address.
    pub fn endpoint_host(&self) -> String {
        match &self.endpoint_host {
            Some(host) => host.clone(),
            None if self.mqtt_addr.ip().is_unspecified() => "localhost".into(),
            None => self.mqtt_addr.ip().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServeArgs {
        ServeArgs {
            config: None,
            data_dir: None,
            store_url: None,
            cluster_url: None,
            node_id: None,
            api_addr: None,
            mqtt_addr: None,
            https_addr: None,
            endpoint_host: None,
            account_id: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
        }
    }

    #[test]
    fn file_values_yield_to_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferrocore.toml");
        std::fs::write(&path, "region = \"eu-west-1\"\naccount_id = \"123456789012\"\n").unwrap();
        let config =
            Config::load(ServeArgs { config: Some(path), region: Some("eu-central-1".into()), ..args() }).unwrap();
        assert_eq!((config.region.as_str(), config.account_id.as_str()), ("eu-central-1", "123456789012"));
        assert_eq!(config.endpoint_host(), "127.0.0.1");
    }

    #[test]
    fn public_listeners_need_credentials() {
        let public = ServeArgs { api_addr: Some("0.0.0.0:4566".parse().unwrap()), ..args() };
        assert!(Config::load(public).is_err());
        let keyed = ServeArgs {
            api_addr: Some("0.0.0.0:4566".parse().unwrap()),
            access_key_id: Some("AKID".into()),
            secret_access_key: Some("secret".into()),
            ..args()
        };
        assert!(Config::load(keyed).is_ok());
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "regoin = \"x\"\n").unwrap();
        assert!(Config::load(ServeArgs { config: Some(path), ..args() }).is_err());
    }

    #[test]
    fn rules_section_sets_endpoints_and_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(
            &path,
            "api_addr = \"127.0.0.1:5999\"\n[rules]\nendpoint_url = \"http://127.0.0.1:5000\"\naccess_key_id = \"a\"\nsecret_access_key = \"s\"\n[rules.endpoints]\nlambda = \"http://127.0.0.1:9001\"\n",
        )
        .unwrap();
        let rules = Config::load(ServeArgs { config: Some(path), ..args() }).unwrap().rules_config();
        assert_eq!(rules.endpoints.get("default").map(String::as_str), Some("http://127.0.0.1:5000"));
        assert_eq!(rules.endpoints.get("lambda").map(String::as_str), Some("http://127.0.0.1:9001"));
        assert_eq!(rules.credentials.map(|c| c.access_key_id), Some("a".to_string()));
        assert_eq!((rules.region.as_str(), rules.api_url.as_str()), ("us-east-1", "http://127.0.0.1:5999"));
    }

    #[test]
    fn store_url_comes_from_the_file_or_the_flag_and_must_be_postgres() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.toml");
        std::fs::write(&path, "store_url = \"postgres://file@127.0.0.1/db\"\n").unwrap();
        let from_file = Config::load(ServeArgs { config: Some(path.clone()), ..args() }).unwrap();
        assert_eq!(from_file.store_url.as_deref(), Some("postgres://file@127.0.0.1/db"));
        let flag = Some("postgresql://flag@127.0.0.1/db".to_string());
        let from_flag = Config::load(ServeArgs { config: Some(path), store_url: flag.clone(), ..args() }).unwrap();
        assert_eq!(from_flag.store_url, flag);
        let mysql = ServeArgs { store_url: Some("mysql://127.0.0.1/db".into()), ..args() };
        let err = Config::load(mysql).unwrap_err().to_string();
        assert!(err.contains("postgres://"), "{err}");
    }

    #[test]
    fn a_cluster_needs_postgres_and_a_node_id() {
        let cluster = || ServeArgs {
            cluster_url: Some("nats://127.0.0.1:4222".into()),
            store_url: Some("postgres://u@127.0.0.1/db".into()),
            node_id: Some("n1".into()),
            ..args()
        };
        let joined = Config::load(cluster()).unwrap();
        assert_eq!(
            (joined.cluster_url.as_deref(), joined.node_id.as_deref()),
            (Some("nats://127.0.0.1:4222"), Some("n1"))
        );
        let refused = |args: ServeArgs| Config::load(args).unwrap_err().to_string();
        assert!(refused(ServeArgs { store_url: None, ..cluster() }).contains("PostgreSQL"));
        assert!(refused(ServeArgs { node_id: None, ..cluster() }).contains("node id"));
        assert!(refused(ServeArgs { node_id: Some("n 1".into()), ..cluster() }).contains("node id"));
        assert!(refused(ServeArgs { cluster_url: Some("http://x".into()), ..cluster() }).contains("nats://"));
    }

    #[test]
    fn rules_credentials_come_in_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("half.toml");
        std::fs::write(&path, "[rules]\naccess_key_id = \"a\"\n").unwrap();
        assert!(Config::load(ServeArgs { config: Some(path), ..args() }).is_err());
    }
}
