//! A small SigV4-signing client for ferrocore's own API, used by the admin commands.

use anyhow::{Context, anyhow, bail};
use clap::Args;
use serde_json::Value;

use crate::unix_now as now;

/// Where the server is and how to sign for it (the AWS CLI's environment variables apply).
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The ferrocore API endpoint.
    #[arg(long, env = "FERROCORE_ENDPOINT_URL", default_value = "http://127.0.0.1:4566")]
    pub endpoint_url: String,
    #[arg(long, env = "AWS_ACCESS_KEY_ID", default_value = "test", hide_env_values = true)]
    pub access_key_id: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", default_value = "test", hide_env_values = true)]
    pub secret_access_key: String,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
}

pub struct ApiClient {
    args: ClientArgs,
    http: reqwest::Client,
}

/// Percent-encodes one path label the way the AWS SDKs do.
pub fn label(value: &str) -> String {
    ferrocore_sigv4::uri_encode(value.as_bytes(), false)
}

impl ApiClient {
    pub fn new(args: ClientArgs) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().build().context("creating the HTTP client")?;
        Ok(Self {
            args: ClientArgs { endpoint_url: args.endpoint_url.trim_end_matches('/').to_string(), ..args },
            http,
        })
    }

    fn host(&self) -> anyhow::Result<String> {
        let url = reqwest::Url::parse(&self.args.endpoint_url).context("parsing --endpoint-url")?;
        let host = url.host_str().ok_or_else(|| anyhow!("--endpoint-url has no host"))?;
        Ok(match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        })
    }

    /// Sends a signed request to `service`; answers the body of a 2xx response.
    async fn send(
        &self,
        service: &str,
        (method, path, query): (&str, &str, &str),
        content_type: &str,
        extra_headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<Vec<u8>> {
        let host = self.host()?;
        let mut headers = vec![("host", host.as_str()), ("content-type", content_type)];
        headers.extend_from_slice(extra_headers);
        let request =
            ferrocore_sigv4::Request { method, path, query, headers, body_sha256: ferrocore_sigv4::body_sha256(&body) };
        let key = ferrocore_sigv4::SigningKey {
            access_key: &self.args.access_key_id,
            secret_key: &self.args.secret_access_key,
            region: &self.args.region,
            service,
        };
        let signature = ferrocore_sigv4::sign(&request, &key, now());
        let url = if query.is_empty() {
            format!("{}{path}", self.args.endpoint_url)
        } else {
            format!("{}{path}?{query}", self.args.endpoint_url)
        };
        let mut builder = self
            .http
            .request(method.parse().context("HTTP method")?, &url)
            .header("content-type", content_type)
            .body(body);
        for (name, value) in extra_headers {
            builder = builder.header(*name, *value);
        }
        for (name, value) in signature {
            builder = builder.header(name, value);
        }
        let response = builder.send().await.with_context(|| format!("calling {url}"))?;
        let status = response.status();
        let error_type = response.headers().get("x-amzn-errortype").and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = response.bytes().await?.to_vec();
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            bail!("{} ({status}): {message}", error_type.unwrap_or_else(|| "error".into()));
        }
        Ok(bytes)
    }

    /// Calls an `iot` operation; `body` is its JSON document, if any.
    pub async fn iot(&self, method: &str, path: &str, query: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.iot_with_headers(method, path, query, &[], body).await
    }

    /// Calls an `iot` operation that takes members in headers (e.g. `x-amzn-principal`).
    pub async fn iot_with_headers(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let bytes = self.send("iot", (method, path, query), "application/json", headers, body).await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).context("reading the JSON answer")
    }

    /// A GET on the `iot-data` data plane (signed for `iotdata`); answers its JSON.
    pub async fn iot_data_get(&self, path: &str, query: &str) -> anyhow::Result<Value> {
        let bytes = self.send("iotdata", ("GET", path, query), "application/json", &[], Vec::new()).await?;
        serde_json::from_slice(&bytes).context("reading the JSON answer")
    }

    /// The account id, from STS GetCallerIdentity.
    pub async fn account_id(&self) -> anyhow::Result<String> {
        let body = b"Action=GetCallerIdentity&Version=2011-06-15".to_vec();
        let bytes = self.send("sts", ("POST", "/", ""), "application/x-www-form-urlencoded", &[], body).await?;
        let text = String::from_utf8_lossy(&bytes);
        let start =
            text.find("<Account>").ok_or_else(|| anyhow!("no Account in GetCallerIdentity"))? + "<Account>".len();
        let end = text[start..].find("</Account>").ok_or_else(|| anyhow!("no Account in GetCallerIdentity"))?;
        Ok(text[start..start + end].to_string())
    }

    /// An unauthenticated GET (`/ca.pem`, `/health`).
    pub async fn get_public(&self, path: &str) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.args.endpoint_url);
        let response = self.http.get(&url).send().await.with_context(|| format!("calling {url}"))?;
        if !response.status().is_success() {
            bail!("GET {url} answered {}", response.status());
        }
        Ok(response.text().await?)
    }

    pub fn region(&self) -> &str {
        &self.args.region
    }
}
