//! ferrocore's AWS-compatible HTTP API.
//!
//! One entry point takes every request: it reads the body (bounded), verifies the
//! SigV4 signature, picks the service from the signature's credential scope, names
//! the operation from botocore's HTTP bindings and dispatches it. Only this crate
//! knows AWS wire formats: restJson1 for `iot`, the query protocol for `sts`.

mod error;
mod input;
mod iot;
mod iot_data;
mod operations;
mod sts;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ferrocore_registry::Registry;

pub use error::ApiError;
use input::Input;

pub use ferrocore_registry::Credentials;

pub struct ApiConfig {
    pub credentials: Credentials,
    /// Largest request body accepted.
    pub body_limit: usize,
    /// How long a client may take to send a request's body.
    pub body_timeout: std::time::Duration,
}

pub struct ApiState {
    pub registry: Arc<Registry>,
    /// The Device Shadow service (iot-data's shadow operations).
    pub shadows: ferrocore_shadow_service::ShadowService,
    pub config: ApiConfig,
    /// Renders `/metrics` (the Prometheus text format), when metrics are on.
    pub metrics: Option<Box<dyn Fn() -> String + Send + Sync>>,
    /// The root CA devices must trust, served at `/ca.pem`.
    pub ca_pem: String,
    /// Where the server listens, reported by `/health` so tools can find the device ports.
    pub listeners: Listeners,
    /// The device gateway: the data plane of iot-data's Publish, retained messages
    /// and DeleteConnection.
    pub publisher: Arc<dyn ferrocore_registry::DataPlane>,
    /// In a cluster: whether this node reaches the message bus, and what `/health`
    /// says of the node and its peers.
    pub cluster: Option<Box<dyn Fn() -> (bool, serde_json::Value) + Send + Sync>>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Listeners {
    pub api: std::net::SocketAddr,
    pub mqtt: std::net::SocketAddr,
    pub https: std::net::SocketAddr,
}

pub fn router(state: Arc<ApiState>) -> axum::Router {
    axum::Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route(
            "/ca.pem",
            get(|State(state): State<Arc<ApiState>>| async move {
                (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-pem-file")], state.ca_pem.clone())
            }),
        )
        .fallback(handle)
        .with_state(state)
}

/// 200 while the store (and, in a cluster, the message bus) answers; 503
/// ("degraded") when not, so a load balancer or an orchestrator can tell.
async fn health(State(state): State<Arc<ApiState>>) -> Response {
    let store_ok = state.registry.store_answers().await;
    let (bus_ok, cluster) = match &state.cluster {
        Some(report) => report(),
        None => (true, serde_json::Value::Null),
    };
    let healthy = store_ok && bus_ok;
    let mut body = serde_json::json!({
        "status": if healthy { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "listeners": state.listeners,
        "store": if store_ok { "ok" } else { "unavailable" },
    });
    if !cluster.is_null() {
        body["cluster"] = cluster;
    }
    json_response(if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &body)
}

async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    match &state.metrics {
        Some(render) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], render()).into_response()
        }
        None => (StatusCode::NOT_FOUND, "metrics are disabled").into_response(),
    }
}

/// How errors are rendered: STS speaks the query protocol (XML), the rest JSON.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    RestJson,
    Query,
}

fn protocol_of(method: &Method, path: &str, headers: &HeaderMap) -> Protocol {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if method == Method::POST && path == "/" && form { Protocol::Query } else { Protocol::RestJson }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A successful answer, before the common headers are added.
pub(crate) enum Reply {
    Json(serde_json::Value),
    Xml(String),
}

async fn handle(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = request.into_parts();
    let protocol = protocol_of(&parts.method, parts.uri.path(), &parts.headers);
    let body =
        tokio::time::timeout(state.config.body_timeout, axum::body::to_bytes(body, state.config.body_limit)).await;
    let (service, operation, result) = match body {
        Ok(Ok(body)) => serve(&state, &parts, body, &request_id).await,
        Ok(Err(_)) => ("unknown", "unknown", Err(ApiError::too_large(state.config.body_limit))),
        Err(_) => ("unknown", "unknown", Err(ApiError::body_timeout(state.config.body_timeout))),
    };
    let status = result.as_ref().map_or_else(|e| e.status, |_| StatusCode::OK);
    metrics::counter!("ferrocore_api_requests_total", "service" => service, "operation" => operation, "status" => status.as_str().to_owned()).increment(1);
    metrics::histogram!("ferrocore_api_request_seconds", "service" => service).record(started.elapsed().as_secs_f64());
    let mut response = match result {
        Ok(Reply::Json(value)) => json_response(StatusCode::OK, &value),
        Ok(Reply::Xml(text)) => xml_response(StatusCode::OK, text),
        Err(err) => {
            if err.status == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(service, operation, code = err.code, message = %err.message, "request failed");
            } else {
                tracing::debug!(service, operation, code = err.code, message = %err.message, "request refused");
            }
            error_response(&err, protocol, &request_id)
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", value.clone());
        if protocol == Protocol::Query {
            response.headers_mut().insert("x-amz-request-id", value);
        }
    }
    response
}

/// Verifies and dispatches; returns the service and operation names for metrics.
async fn serve(
    state: &ApiState,
    parts: &axum::http::request::Parts,
    body: Bytes,
    request_id: &str,
) -> (&'static str, &'static str, Result<Reply, ApiError>) {
    // The signature covers the normalised path; routing must not see another one.
    if parts.uri.path().split('/').any(|segment| segment == "." || segment == "..") {
        return (
            "unknown",
            "unknown",
            Err(ApiError::invalid("The request path must not contain '.' or '..' segments.")),
        );
    }
    let input = |labels| Input::new(labels, parts.uri.query().unwrap_or(""), parts.headers.clone(), body.clone());
    // The enableUrl of an HTTP topic rule destination is opened unsigned: the token is the credential.
    if let Ok(op) = operations::IOT.find(parts.method.as_str(), parts.uri.path())
        && op.name == "ConfirmTopicRuleDestination"
    {
        return ("iot", op.name, iot::dispatch(state, op.name, input(op.labels)).await);
    }
    let headers: Vec<(&str, &str)> =
        parts.headers.iter().filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))).collect();
    let signed = ferrocore_sigv4::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers,
        body_sha256: ferrocore_sigv4::body_sha256(&body),
    };
    let signer = match ferrocore_sigv4::verify(&signed, now_secs(), |key| state.config.credentials.secret_for(key)) {
        Ok(signer) => signer,
        Err(err) => return ("unknown", "unknown", Err(err.into())),
    };
    let account = state.registry.account();
    if signer.region != account.region {
        let err = ApiError::new(
            StatusCode::FORBIDDEN,
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to a valid region, not '{}'. This server serves '{}'.",
                signer.region, account.region
            ),
        );
        return ("unknown", "unknown", Err(err));
    }
    match signer.service.as_str() {
        "iot" => match operations::IOT.find(parts.method.as_str(), parts.uri.path()) {
            Ok(op) => {
                let input = input(op.labels);
                let result = match iot::authorize(state, &signer.access_key, op.name, &input) {
                    Ok(()) => iot::dispatch(state, op.name, input).await,
                    Err(err) => Err(err),
                };
                ("iot", op.name, result)
            }
            Err(err) => ("iot", "unknown", Err(err)),
        },
        "iotdata" | "iotdevicegateway" => {
            let caller = &signer.access_key;
            if let Some((thing, version)) = iot_data::shadow_version_path(parts.method.as_str(), parts.uri.path()) {
                let result = iot_data::get_shadow_version(state, caller, &thing, version, &input(HashMap::new())).await;
                return ("iot-data", "GetThingShadowVersion", result);
            }
            match operations::IOT_DATA.find(parts.method.as_str(), parts.uri.path()) {
                Ok(op) => ("iot-data", op.name, iot_data::dispatch(state, caller, op.name, input(op.labels)).await),
                Err(err) => ("iot-data", "unknown", Err(err)),
            }
        }
        "sts" => {
            let (operation, result) = sts::dispatch(state, &signer, &input(HashMap::new()), request_id);
            ("sts", operation, result)
        }
        other => {
            let err = ApiError::new(
                StatusCode::FORBIDDEN,
                "InvalidSignatureException",
                format!("Credential should be scoped to correct service: 'iot'. This server does not serve '{other}'."),
            );
            ("unknown", "unknown", Err(err))
        }
    }
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], Body::from(body)).into_response()
}

fn xml_response(status: StatusCode, text: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/xml")], Body::from(text)).into_response()
}

fn error_response(err: &ApiError, protocol: Protocol, request_id: &str) -> Response {
    let (mut response, code) = match protocol {
        Protocol::RestJson => (json_response(err.status, &err.json_body()), err.code),
        Protocol::Query => {
            let code = sts::wire_code(err.code);
            (xml_response(err.status, ApiError { code, ..err.clone() }.xml_body(request_id)), code)
        }
    };
    if let Ok(value) = HeaderValue::from_str(code) {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    response
}
