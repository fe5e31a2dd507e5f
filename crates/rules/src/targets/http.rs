//! The http action: POST the rule's output to a URL under a confirmed topic rule
//! destination, with the configured headers, optionally SigV4-signed, 3 s timeout.

use std::time::Duration;

use crate::RulesConfig;
use crate::compile::Http;
use crate::targets::aws::StaticCredentials;
use crate::targets::{Failure, Output, Render};

/// AWS gives an HTTP action 3 seconds.
const TIMEOUT: Duration = Duration::from_secs(3);

pub struct HttpTarget {
    client: reqwest::Client,
    /// Plain `http://` URLs (AWS: HTTPS only), for local endpoints.
    allow_insecure: bool,
}

/// An HTTP client on aws-lc-rs TLS with the system's roots, requests bounded by `timeout`.
pub(crate) fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls_config())
        .timeout(timeout)
        .build()
        .expect("an HTTP client with a preconfigured TLS config builds")
}

fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

impl HttpTarget {
    pub fn new(config: &RulesConfig) -> Self {
        Self { client: client(TIMEOUT), allow_insecure: config.http_allow_insecure }
    }

    /// Sends the topic rule destination confirmation request, with AWS's headers (also
    /// to `http://` URLs: confirming carries no message data, and local tooling uses it).
    pub async fn confirm(&self, url: &str, body: &serde_json::Value) -> Result<(), String> {
        let arn = body.get("arn").and_then(serde_json::Value::as_str).unwrap_or_default();
        let response = self
            .client
            .post(url)
            .header("x-amz-rules-engine-message-type", "DestinationConfirmation")
            .header("x-amz-rules-engine-destination-arn", arn)
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() { Ok(()) } else { Err(format!("HTTP {}", response.status())) }
    }

    pub async fn post(
        &self,
        spec: &Http,
        output: &Output<'_>,
        render: &Render<'_>,
        enabled_prefixes: &[String],
        credentials: &Option<StaticCredentials>,
    ) -> Result<(), Failure> {
        let url = render(&spec.url)?;
        let allowed = url.starts_with("https://") || (self.allow_insecure && url.starts_with("http://"));
        if !allowed {
            return Err(Failure::permanent(&url, "HTTP actions must use HTTPS URLs."));
        }
        if !enabled_prefixes.iter().any(|prefix| ferrocore_model::rules::url_under(prefix, &url)) {
            return Err(Failure::permanent(
                &url,
                "No ENABLED topic rule destination covers this URL; create and confirm one.",
            ));
        }
        let mut headers: Vec<(String, String)> = Vec::new();
        for (name, value) in &spec.headers {
            headers.push((name.to_ascii_lowercase(), render(value)?));
        }
        if !headers.iter().any(|(name, _)| name == "content-type") {
            let binary = matches!(output.value, ferrocore_rules_sql::Value::Binary(_));
            let content_type = if binary { "application/octet-stream" } else { "application/json" };
            headers.push(("content-type".into(), content_type.into()));
        }
        if let Some(sigv4) = &spec.sigv4 {
            let credentials =
                credentials.as_ref().ok_or_else(|| Failure::permanent(&url, "SigV4 signing needs AWS credentials."))?;
            headers.extend(
                sign(&url, &headers, output.bytes, sigv4, credentials).map_err(|e| Failure::permanent(&url, e))?,
            );
        }
        let mut request = self.client.post(&url).body(output.bytes.to_vec());
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.map_err(|e| {
            // A request that cannot even be built (a header rendered invalid) will not succeed later.
            let message = format!("HTTP request failed: {e}");
            if e.is_builder() { Failure::permanent(&url, message) } else { Failure::transient(&url, message) }
        })?;
        let status = response.status();
        match status.as_u16() {
            200..=299 => Ok(()),
            429 | 500..=599 => Err(Failure::transient(&url, format!("The endpoint answered HTTP {status}."))),
            _ => Err(Failure::permanent(&url, format!("The endpoint answered HTTP {status}."))),
        }
    }
}

/// The `x-amz-date`, `authorization` (and security token) headers for a signed POST.
pub(crate) fn sign(
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    sigv4: &crate::compile::SigV4,
    credentials: &StaticCredentials,
) -> Result<Vec<(String, String)>, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
    let host = match parsed.port() {
        Some(port) => format!("{}:{port}", parsed.host_str().unwrap_or_default()),
        None => parsed.host_str().unwrap_or_default().to_string(),
    };
    let body_sha256 = ferrocore_sigv4::body_sha256(body);
    let mut signed: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    signed.push(("host", &host));
    signed.push(("x-amz-content-sha256", &body_sha256));
    if let Some(token) = &credentials.session_token {
        signed.push(("x-amz-security-token", token));
    }
    let request = ferrocore_sigv4::Request {
        method: "POST",
        path: parsed.path(),
        query: parsed.query().unwrap_or(""),
        headers: signed,
        body_sha256: body_sha256.clone(),
    };
    let key = ferrocore_sigv4::SigningKey {
        access_key: &credentials.access_key_id,
        secret_key: &credentials.secret_access_key,
        region: &sigv4.region,
        service: &sigv4.service,
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let mut added: Vec<(String, String)> =
        ferrocore_sigv4::sign(&request, &key, now).into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    added.push(("x-amz-content-sha256".into(), body_sha256));
    if let Some(token) = &credentials.session_token {
        added.push(("x-amz-security-token".into(), token.clone()));
    }
    Ok(added)
}
