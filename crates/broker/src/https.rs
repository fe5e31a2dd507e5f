//! The HTTPS device listener (AWS's ports 8443 and 443): one TLS port, three doors.
//!
//! - ALPN `x-amzn-mqtt-ca`: MQTT with a client certificate, exactly as on 8883.
//! - `POST /topics/<topic>`: HTTPS publish, authenticated by the client certificate
//!   (its IoT policies) or a SigV4 `Authorization` header (the key's policy).
//! - `GET /mqtt` with a SigV4-presigned query: MQTT over WebSocket, the same
//!   connection code as TCP behind a duplex pipe.
//!
//! ALPN `x-amzn-http-ca`, `http/1.1` or none select HTTP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsAcceptor;

use crate::authorize::Refusal;

use ferrocore_registry::{ApiPublish, PublishRefused};

use crate::tls::handshake;
use crate::{Identity, Shared, connection, websocket};

pub(crate) const ALPN_MQTT: &[u8] = b"x-amzn-mqtt-ca";
pub(crate) const ALPN_PROTOCOLS: [&[u8]; 3] = [ALPN_MQTT, b"x-amzn-http-ca", b"http/1.1"];

/// AWS's payload limit for a publish (128 KB).
const MAX_PAYLOAD: usize = 128 * 1024;
/// How long a client may take to send a request's headers (a slow client must not hold connections).
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a client may take to send a publish's body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Bytes between the client and the MQTT connection code of a WebSocket, each way.
const WEBSOCKET_PIPE: usize = 64 * 1024;

pub(crate) struct HttpsListener {
    pub listener: crate::listen::Listener,
    pub acceptor: TlsAcceptor,
}

impl HttpsListener {
    pub async fn serve(mut self, shared: Arc<Shared>, connections: Arc<AtomicU64>) {
        if let Ok(addr) = self.listener.local_addr() {
            tracing::info!(addr = %addr, "device gateway listening (HTTPS publish, MQTT over WebSocket, ALPN x-amzn-mqtt-ca)");
        }
        loop {
            let (tcp, peer, permit) = self.listener.accept().await;
            let (acceptor, shared, connections) = (self.acceptor.clone(), shared.clone(), connections.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let Some((tls, certificate_id)) = handshake(&acceptor, tcp, peer).await else {
                    return;
                };
                if tls.get_ref().1.alpn_protocol() == Some(ALPN_MQTT) {
                    let connection = connections.fetch_add(1, Ordering::Relaxed);
                    match certificate_id {
                        Some(id) => connection::serve(tls, Identity::Certificate(id), peer, shared, connection).await,
                        None => {
                            tracing::info!(peer = %peer, "MQTT by ALPN without a client certificate refused")
                        }
                    }
                    return;
                }
                let context = Arc::new(Caller { shared, certificate_id, peer, connections });
                let service = hyper::service::service_fn(move |request| {
                    let context = context.clone();
                    async move { Ok::<_, Infallible>(context.respond(request).await) }
                });
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(tls), service)
                    .with_upgrades()
                    .await;
                if let Err(err) = served {
                    tracing::debug!(peer = %peer, error = %err, "HTTPS connection ended with an error");
                }
            });
        }
    }
}

/// One HTTPS connection: who is on the other end.
struct Caller {
    shared: Arc<Shared>,
    certificate_id: Option<String>,
    peer: SocketAddr,
    connections: Arc<AtomicU64>,
}

type Reply = Response<Full<Bytes>>;

/// An AWS-shaped error: the status, `x-amzn-ErrorType`, and `{"message", "traceId"}`.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Reply {
    let body = serde_json::json!({"message": message.into(), "traceId": uuid::Uuid::new_v4().to_string()});
    let mut reply = Response::new(Full::new(Bytes::from(body.to_string())));
    *reply.status_mut() = status;
    reply.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    if let Ok(value) = header::HeaderValue::from_str(code) {
        reply.headers_mut().insert("x-amzn-errortype", value);
    }
    reply
}

fn forbidden() -> Reply {
    error(StatusCode::FORBIDDEN, "ForbiddenException", "Forbidden")
}

impl Caller {
    async fn respond(&self, request: Request<Incoming>) -> Reply {
        let path = request.uri().path().to_string();
        if path == "/mqtt" {
            return self.websocket(request).await;
        }
        let Some(topic) = path.strip_prefix("/topics/") else {
            return error(StatusCode::NOT_FOUND, "ResourceNotFoundException", format!("No such resource: {path}"));
        };
        if request.method() != Method::POST {
            return error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowedException", "Topics take POST.");
        }
        self.publish(ferrocore_sigv4::percent_decode(topic), request).await
    }

    /// The identity behind a signed request, or the error to answer.
    fn signer(&self, request: &http::request::Parts, body_sha256: String) -> Result<Identity, Box<Reply>> {
        let headers: Vec<(&str, &str)> =
            request.headers.iter().filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))).collect();
        let signed = ferrocore_sigv4::Request {
            method: request.method.as_str(),
            path: request.uri.path(),
            query: request.uri.query().unwrap_or(""),
            headers,
            body_sha256,
        };
        let credentials = &self.shared.credentials;
        let signer = ferrocore_sigv4::verify(&signed, crate::now_ms() as i64 / 1000, |key| credentials.secret_for(key))
            .map_err(|err| Box::new(error(StatusCode::FORBIDDEN, "ForbiddenException", err.to_string())))?;
        if signer.region != self.shared.account.region
            || !matches!(signer.service.as_str(), "iotdata" | "iotdevicegateway")
        {
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "ForbiddenException",
                format!("Credential should be scoped to iotdevicegateway in {}.", self.shared.account.region),
            )));
        }
        Ok(Identity::AccessKey(signer.access_key))
    }

    async fn publish(&self, topic: String, request: Request<Incoming>) -> Reply {
        let (parts, body) = request.into_parts();
        let payload = match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_PAYLOAD).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Err(_) => {
                let message = format!("The request body did not arrive within {} seconds.", BODY_TIMEOUT.as_secs());
                return error(StatusCode::REQUEST_TIMEOUT, "RequestTimeoutException", message);
            }
            Ok(Err(_)) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLargeException",
                    format!("The payload exceeds the maximum size of {MAX_PAYLOAD} bytes."),
                );
            }
        };
        let identity = match (&self.certificate_id, parts.headers.contains_key(header::AUTHORIZATION)) {
            (_, true) => match self.signer(&parts, ferrocore_sigv4::body_sha256(&payload)) {
                Ok(identity) => identity,
                Err(reply) => return *reply,
            },
            (Some(id), false) => Identity::Certificate(id.clone()),
            (None, false) => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "UnauthorizedException",
                    "Missing authentication: a client certificate or a SigV4 signature.",
                );
            }
        };
        let query = ferrocore_sigv4::form_pairs(parts.uri.query().unwrap_or(""));
        let publish = match ApiPublish::from_request(
            topic,
            &query,
            |name| parts.headers.get(name).and_then(|v| v.to_str().ok()),
            payload,
            identity.principal_id().to_string(),
        ) {
            Ok(publish) => publish,
            Err(message) => {
                return error(StatusCode::BAD_REQUEST, "InvalidRequestException", message);
            }
        };
        let permissions = match self.shared.permissions_of(&identity, "").await {
            Ok(permissions) => permissions,
            Err(err) => return error(StatusCode::FORBIDDEN, "ForbiddenException", err.to_string()),
        };
        match self.shared.may_publish(&permissions, &publish.topic, publish.retain) {
            Ok(_) => {}
            Err(Refusal::InvalidTopic(message)) => {
                return error(StatusCode::BAD_REQUEST, "InvalidRequestException", message);
            }
            Err(Refusal::Reserved | Refusal::NotAuthorized) => return forbidden(),
        }
        metrics::counter!("ferrocore_https_publishes_total").increment(1);
        match self.shared.publish_api(publish).await {
            Ok(()) => {
                let body = serde_json::json!({"message": "OK", "traceId": uuid::Uuid::new_v4().to_string()});
                let mut reply = Response::new(Full::new(Bytes::from(body.to_string())));
                reply.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
                reply
            }
            Err(PublishRefused::InvalidTopic(message)) => {
                error(StatusCode::BAD_REQUEST, "InvalidRequestException", message)
            }
            Err(PublishRefused::ReservedTopic(_)) => forbidden(),
            Err(PublishRefused::NotStored(message)) => {
                tracing::error!(error = %message, "cannot store an HTTPS publish");
                error(StatusCode::INTERNAL_SERVER_ERROR, "InternalFailureException", "The message could not be stored.")
            }
        }
    }

    /// `GET /mqtt`: checks the presigned URL, answers 101 and runs an MQTT connection over the WebSocket.
    async fn websocket(&self, request: Request<Incoming>) -> Reply {
        let headers = request.headers();
        let upgrade =
            header_is(headers, header::UPGRADE, "websocket") && header_is(headers, header::CONNECTION, "upgrade");
        let Some(key) = headers.get("sec-websocket-key").and_then(|v| v.to_str().ok()).map(str::to_string) else {
            return error(StatusCode::BAD_REQUEST, "InvalidRequestException", "Expected a WebSocket upgrade.");
        };
        if request.method() != Method::GET || !upgrade {
            return error(StatusCode::BAD_REQUEST, "InvalidRequestException", "Expected a WebSocket upgrade.");
        }
        let wants_mqtt = headers
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == "mqtt");
        let (parts, body) = request.into_parts();
        // The presigned URL is the credential; a request without one is refused before the upgrade.
        let identity = match self.signer(&parts, ferrocore_sigv4::body_sha256(b"")) {
            Ok(identity) => identity,
            Err(reply) => {
                tracing::info!(peer = %self.peer, "WebSocket refused: signature not accepted");
                return *reply;
            }
        };
        let upgraded = hyper::upgrade::on(Request::from_parts(parts, body));
        let (shared, peer) = (self.shared.clone(), self.peer);
        let connection = self.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let upgraded = match upgraded.await {
                Ok(upgraded) => upgraded,
                Err(err) => {
                    tracing::debug!(peer = %peer, error = %err, "WebSocket upgrade failed");
                    return;
                }
            };
            let (bridge_end, mqtt_end) = tokio::io::duplex(WEBSOCKET_PIPE);
            let max_frame = shared.max_packet_size + 16;
            let bridge = tokio::spawn(websocket::bridge(TokioIo::new(upgraded), bridge_end, max_frame));
            connection::serve(mqtt_end, identity, peer, shared, connection).await;
            let _ = bridge.await;
        });
        let mut reply = Response::new(Full::new(Bytes::new()));
        *reply.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = reply.headers_mut();
        headers.insert(header::UPGRADE, header::HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, header::HeaderValue::from_static("Upgrade"));
        if let Ok(accept) = header::HeaderValue::from_str(&websocket::accept_key(&key)) {
            headers.insert("sec-websocket-accept", accept);
        }
        if wants_mqtt {
            headers.insert("sec-websocket-protocol", header::HeaderValue::from_static("mqtt"));
        }
        reply
    }
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn header_is(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(token))
}
