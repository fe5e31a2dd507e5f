//! CloudWatch metrics and alarms over CloudWatch's query protocol (form POST,
//! SigV4 for `monitoring`). The AWS SDK for Rust speaks CloudWatch's newer CBOR
//! protocol, which compatible servers (moto_server, LocalStack) do not; the query
//! protocol works with them and with AWS alike.

use crate::RulesConfig;
use crate::compile::{ActionSpec, SigV4};
use crate::targets::aws::StaticCredentials;
use crate::targets::http::{client, sign};
use crate::targets::{Failure, Render};

pub struct QueryClient {
    client: reqwest::Client,
    endpoint: String,
    region: String,
    credentials: Option<StaticCredentials>,
}

/// `application/x-www-form-urlencoded` for one value.
fn form_encode(text: &str) -> String {
    ferrocore_sigv4::uri_encode(text.as_bytes(), false)
}

/// ISO 8601 (`2026-11-21T21:00:00Z`) from epoch seconds.
fn iso8601(seconds: i64) -> String {
    let amz = ferrocore_sigv4::format_amz_date(seconds); // 20261121T210000Z
    format!("{}-{}-{}T{}:{}:{}Z", &amz[0..4], &amz[4..6], &amz[6..8], &amz[9..11], &amz[11..13], &amz[13..15])
}

/// The `<Code>` and `<Message>` of a query-protocol error document.
fn error_text(body: &str) -> String {
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{name}>"))? + start;
        Some(body[start..end].to_string())
    };
    match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => body.chars().take(200).collect(),
    }
}

impl QueryClient {
    pub fn new(config: &RulesConfig, credentials: Option<StaticCredentials>) -> Self {
        let endpoint = config
            .endpoint("cloudwatch")
            .map_or_else(|| format!("https://monitoring.{}.amazonaws.com", config.region), str::to_string);
        let client = client(std::time::Duration::from_secs(10));
        Self {
            client,
            endpoint: format!("{}/", endpoint.trim_end_matches('/')),
            region: config.region.clone(),
            credentials,
        }
    }

    pub async fn deliver(&self, spec: &ActionSpec, render: &Render<'_>) -> Result<(), Failure> {
        let (resource, params) = match spec {
            ActionSpec::CloudwatchMetric(metric) => {
                let namespace = render(&metric.namespace)?;
                let raw_value = render(&metric.value)?;
                raw_value.trim().parse::<f64>().map_err(|_| {
                    Failure::permanent(&namespace, format!("metricValue {raw_value:?} is not a number"))
                })?;
                let mut params = vec![
                    ("Action", "PutMetricData".to_string()),
                    ("Namespace", namespace.clone()),
                    ("MetricData.member.1.MetricName", render(&metric.name)?),
                    ("MetricData.member.1.Value", raw_value.trim().to_string()),
                    ("MetricData.member.1.Unit", render(&metric.unit)?),
                ];
                if let Some(timestamp) = &metric.timestamp {
                    let text = render(timestamp)?;
                    let seconds: i64 = text.trim().parse().map_err(|_| {
                        Failure::permanent(&namespace, format!("metricTimestamp {text:?} is not epoch seconds"))
                    })?;
                    params.push(("MetricData.member.1.Timestamp", iso8601(seconds)));
                }
                (namespace, params)
            }
            ActionSpec::CloudwatchAlarm { alarm_name, state_reason, state_value } => {
                let alarm = render(alarm_name)?;
                let params = vec![
                    ("Action", "SetAlarmState".to_string()),
                    ("AlarmName", alarm.clone()),
                    ("StateValue", render(state_value)?),
                    ("StateReason", render(state_reason)?),
                ];
                (alarm, params)
            }
            _ => return Err(Failure::permanent("cloudwatch", "not a CloudWatch action")),
        };
        self.call(&resource, params).await
    }

    async fn call(&self, resource: &str, mut params: Vec<(&str, String)>) -> Result<(), Failure> {
        params.push(("Version", "2010-08-01".to_string()));
        let body: String = params.iter().map(|(k, v)| format!("{k}={}", form_encode(v))).collect::<Vec<_>>().join("&");
        let credentials = self
            .credentials
            .as_ref()
            .ok_or_else(|| Failure::permanent(resource, "CloudWatch actions need AWS credentials."))?;
        let content_type = ("content-type".to_string(), "application/x-www-form-urlencoded; charset=utf-8".to_string());
        let scope = SigV4 { region: self.region.clone(), service: "monitoring".into() };
        let signed = sign(&self.endpoint, std::slice::from_ref(&content_type), body.as_bytes(), &scope, credentials)
            .map_err(|e| Failure::permanent(resource, e))?;
        let mut request = self.client.post(&self.endpoint).header(&content_type.0, &content_type.1).body(body);
        for (name, value) in signed {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Failure::transient(resource, format!("CloudWatch request failed: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let message = error_text(&response.text().await.unwrap_or_default());
        let retryable = status.is_server_error() || status.as_u16() == 429 || message.starts_with("Throttling");
        Err(Failure { resource: resource.to_string(), message, retryable })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_errors() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_795_296_000), "2026-11-21T21:20:00Z");
        let body = "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidParameterValue</Code><Message>bad unit</Message></Error></ErrorResponse>";
        assert_eq!(error_text(body), "InvalidParameterValue: bad unit");
    }
}
