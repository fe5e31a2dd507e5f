//! `ferrocore serve`: wires the store, the registry and the API, and runs until
//! SIGINT or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferrocore_api::{ApiConfig, ApiState, Credentials, Listeners};
use ferrocore_broker::{Gateway, GatewayConfig, Limits, RateQuota, SniCertificate, listen};
use ferrocore_model::Account;
use ferrocore_registry::{Registry, RegistryConfig, SystemClock};
use ferrocore_shadow_service::{ShadowService, ShadowSettings};
use ferrocore_store::{PostgresStore, RecordStore, SqliteStore};
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::config::Config;
use crate::pki::{ServerPki, SuppliedTls};

/// PostgreSQL when a store URL is configured, else SQLite in the data directory.
async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn RecordStore>> {
    match &config.store_url {
        Some(url) => {
            let shown = without_password(url);
            let store = PostgresStore::connect(url).await.with_context(|| format!("connecting to {shown}"))?;
            tracing::info!(store = %shown, "state kept in PostgreSQL");
            Ok(Arc::new(store))
        }
        None => {
            let database = config.data_dir.join("ferrocore.db");
            let store =
                SqliteStore::open(&database).await.with_context(|| format!("opening {}", database.display()))?;
            Ok(Arc::new(store))
        }
    }
}

/// The URL as it may be logged: `postgres://user:***@host/db`.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let store = open_store(&config).await?;

    let supplied = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert_file), Some(key_file)) => {
            Some(SuppliedTls { cert_file: cert_file.clone(), key_file: key_file.clone() })
        }
        _ => None,
    };
    let pki = ServerPki::load_or_create(&config.data_dir, &config.server_names(), supplied, store.as_ref()).await?;
    let sni_certificates = config
        .sni_certificates
        .iter()
        .map(|sni| {
            let read = |path: &std::path::Path| {
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {} ([[sni_certificates]])", path.display()))
            };
            Ok(SniCertificate {
                names: sni.names.clone(),
                certificate_pem: read(&sni.cert_file)?,
                key_pem: read(&sni.key_file)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let account = Account { id: config.account_id.clone(), region: config.region.clone() };
    let registry = Arc::new(Registry::new(
        store.clone(),
        RegistryConfig {
            account: account.clone(),
            thing_type_delete_wait_ms: i64::try_from(config.thing_type_delete_wait_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            endpoint_host: config.endpoint_host(),
            policy_document_limit: config.policy_document_limit,
        },
        Arc::new(SystemClock),
        Arc::new(pki.issuer),
    ));
    // A data directory from before an index gets it now, before any request.
    registry.prepare_indexes().await.context("building the registry indexes")?;
    let shadow_settings = ShadowSettings {
        limits: ferrocore_shadow::Limits {
            max_state_bytes: config.shadow_max_state_bytes,
            max_depth: config.shadow_max_depth,
        },
        history_versions: config.shadow_history_versions,
        removal_notifications: config.shadow_removal_notifications,
    };
    let shadows = ShadowService::start(store.clone(), shadow_settings, ferrocore_shadow_service::system_seconds);

    let metrics = PrometheusBuilder::new().install_recorder().context("installing the metrics recorder")?;
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });

    let local_credentials = config.credentials.is_empty();
    let credentials = if local_credentials {
        Credentials::local_default()
    } else {
        Credentials::new(
            config.credentials.iter().map(|c| (c.access_key_id.clone(), c.secret_access_key.clone(), c.policy.clone())),
        )
        .context("reading [[credentials]]")?
    };
    let tcp = tokio::net::TcpListener::bind(config.api_addr)
        .await
        .with_context(|| format!("binding the API listener on {}", config.api_addr))?;
    let budget = ConnectionBudget::of(&config);
    tracing::info!(descriptors = budget.descriptors, api = budget.api, devices = budget.devices, "connection limits");
    let listener = listen::Listener::new(tcp, listen::ConnectionLimit::new(budget.api), "api");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let gateway = Gateway::bind(
        GatewayConfig {
            addr: config.mqtt_addr,
            https_addr: Some(config.https_addr),
            credentials: credentials.clone(),
            certificate_pem: pki.server_cert_pem,
            sni_certificates,
            key_pem: pki.server_key_pem,
            max_packet_size: config.mqtt_max_packet_bytes,
            session_expiry_secs: config.mqtt_session_expiry_secs,
            session_queue_limit: config.mqtt_session_queue_limit,
            max_connections: budget.devices,
            limits: Limits {
                subscriptions_per_connection: config.mqtt_subscriptions_per_connection,
                filters_per_subscribe: config.mqtt_filters_per_subscribe,
                topic_bytes: config.mqtt_topic_bytes,
                topic_slashes: config.mqtt_topic_slashes,
                rate: RateQuota {
                    publishes_per_second: config.mqtt_publishes_per_second,
                    bytes_per_second: config.mqtt_bytes_per_second,
                },
            },
            account,
            node_id: config.cluster_url.as_ref().and(config.node_id.clone()),
        },
        registry.clone(),
        store,
        shadows.clone(),
    )
    .await
    .context("starting the device gateway")?;
    let cluster = match (&config.cluster_url, &config.node_id) {
        (Some(url), Some(node)) => {
            let link = ferrocore_cluster::Link::join(url, node, gateway.publisher(), registry.clone())
                .await
                .context("joining the cluster")?;
            gateway.attach_peers(link.clone());
            Some(link)
        }
        _ => None,
    };
    let rules = ferrocore_rules::Engine::start(registry.clone(), shadows.clone(), config.rules_config()).await;
    rules.attach_publisher(gateway.publisher());
    gateway.attach_sink(rules);
    let state = Arc::new(ApiState {
        registry: registry.clone(),
        shadows,
        config: ApiConfig {
            credentials,
            body_limit: config.api_body_limit_bytes,
            body_timeout: Duration::from_secs(config.api_body_timeout_secs),
        },
        metrics: Some(Box::new(move || metrics.render())),
        ca_pem: pki.ca_pem,
        listeners: Listeners { api: config.api_addr, mqtt: config.mqtt_addr, https: config.https_addr },
        publisher: gateway.publisher(),
        cluster: cluster.map(|link| {
            Box::new(move || {
                let health = link.health();
                (health.bus && health.serving, serde_json::to_value(&health).unwrap_or_default())
            }) as Box<dyn Fn() -> (bool, serde_json::Value) + Send + Sync>
        }),
    });

    let gateway = tokio::spawn(gateway.serve(wait_for(stopped.clone())));
    print_banner(&config, local_credentials);
    tracing::info!(api = %config.api_addr, mqtt = %config.mqtt_addr, https = %config.https_addr, data_dir = %config.data_dir.display(), "ferrocore ready");
    let api = serve_api(listener, ferrocore_api::router(state), Duration::from_secs(config.api_idle_timeout_secs));
    tokio::select! {
        _ = shutdown_signal() => {
            let _ = stop.send(true);
        }
        () = api => {}
        failed = gateway => failed.context("the device gateway stopped")??,
    }
    tracing::info!("ferrocore stopped");
    Ok(())
}

fn print_banner(config: &Config, local_credentials: bool) {
    let credentials = if local_credentials {
        "access key `test`, secret `test` (loopback only; configure keys to listen elsewhere)".to_string()
    } else {
        format!("{} configured access key(s)", config.credentials.len())
    };
    println!("ferrocore {} — a self-hosted AWS IoT Core", env!("CARGO_PKG_VERSION"));
    println!("  AWS API      http://{}   (iot, sts; /health, /metrics, /ca.pem)", config.api_addr);
    println!("  MQTT/TLS     {}   (MQTT 3.1.1/5, X.509 client certificates; trust /ca.pem)", config.mqtt_addr);
    println!(
        "  HTTPS        {}   (HTTPS publish, MQTT over WebSocket /mqtt with SigV4, ALPN x-amzn-mqtt-ca)",
        config.https_addr
    );
    let targets = match &config.rules.endpoint_url {
        Some(url) => format!("rule actions call AWS services at {url}"),
        None if config.rules.endpoints.is_empty() => "rule actions call AWS's regional endpoints".to_string(),
        None => "rule actions call the endpoints in [rules.endpoints], AWS for the rest".to_string(),
    };
    println!("  rules        {targets}");
    println!("  data dir     {}", config.data_dir.display());
    println!("  account      {} in {}", config.account_id, config.region);
    println!("  credentials  {credentials}");
    println!("  try          aws --endpoint-url http://{} iot list-things", config.api_addr);
}

/// How the process's descriptors are shared: the API's connections, the device
/// listeners' (8883 and HTTPS together), and a reserve for everything else, so a
/// flood on one listener cannot starve the others.
struct ConnectionBudget {
    descriptors: usize,
    api: usize,
    devices: usize,
}

impl ConnectionBudget {
    fn of(config: &Config) -> Self {
        let descriptors = listen::descriptor_limit();
        let api = config.api_max_connections;
        let devices = config
            .device_max_connections
            .unwrap_or_else(|| descriptors.saturating_sub(api + listen::RESERVED_DESCRIPTORS).max(16));
        Self { descriptors, api, devices }
    }
}

/// Serves the API over HTTP/1.1: each connection within the listener's limit,
/// closed when its request headers take longer than 10 s (which also ends idle
/// keep-alive connections) or when it moves no byte for `idle`.
async fn serve_api(mut listener: listen::Listener, router: axum::Router, idle: Duration) {
    const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    loop {
        let (tcp, peer, permit) = listener.accept().await;
        let router = router.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                tower::ServiceExt::oneshot(router.clone(), request.map(axum::body::Body::new))
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(listen::IdleTimeout::new(tcp, idle)), service)
                .await;
            if let Err(err) = served {
                tracing::debug!(peer = %peer, error = %err, "API connection ended with an error");
            }
        });
    }
}

async fn wait_for(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn logged_store_urls_hide_the_password() {
        assert_eq!(without_password("postgres://app:s3:cr@t@db:5432/iot"), "postgres://app:***@db:5432/iot");
        assert_eq!(without_password("postgres://app@db/iot"), "postgres://app@db/iot");
        assert_eq!(without_password("postgres://db/iot?sslmode=require"), "postgres://db/iot?sslmode=require");
    }
}
