//! Actions that call AWS services through the AWS SDK for Rust. Each service is a
//! cargo feature; a build without it fails such actions with a clear message.
//! Endpoints are configurable per service (moto_server, LocalStack, real AWS).
//!
//! The rule's `roleArn` is recorded but not assumed: ferrocore calls the services
//! with the credentials it is configured with (see README, deviations).

use crate::RulesConfig;
use crate::compile::ActionSpec;
use crate::targets::{Failure, Output, Render};

/// Credentials for target services: configured, or the standard AWS environment variables.
#[derive(Debug, Clone)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl StaticCredentials {
    fn resolve(config: &RulesConfig) -> Option<Self> {
        if let Some(credentials) = &config.credentials {
            return Some(credentials.clone());
        }
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Some(Self {
            access_key_id: env("AWS_ACCESS_KEY_ID")?,
            secret_access_key: env("AWS_SECRET_ACCESS_KEY")?,
            session_token: env("AWS_SESSION_TOKEN"),
        })
    }
}

pub struct Clients {
    pub credentials: Option<StaticCredentials>,
    #[cfg(feature = "aws")]
    sdk: sdk::Sdk,
}

impl Clients {
    pub fn new(config: &RulesConfig) -> Self {
        let credentials = StaticCredentials::resolve(config);
        Self {
            #[cfg(feature = "aws")]
            sdk: sdk::Sdk::new(config, credentials.as_ref()),
            credentials,
        }
    }

    pub async fn deliver(&self, spec: &ActionSpec, output: &Output<'_>, render: &Render<'_>) -> Result<(), Failure> {
        if self.credentials.is_none() {
            return Err(Failure::permanent(
                "credentials",
                "No AWS credentials are configured for rule actions: set [rules] access_key_id and secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
            ));
        }
        #[cfg(feature = "aws")]
        {
            self.sdk.deliver(spec, output, render).await
        }
        #[cfg(not(feature = "aws"))]
        {
            let _ = (output, render);
            Err(missing_feature(spec))
        }
    }
}

/// The cargo feature an action kind needs.
fn feature_of(spec: &ActionSpec) -> &'static str {
    match spec {
        ActionSpec::Lambda { .. } => "lambda",
        ActionSpec::DynamoDb(_) | ActionSpec::DynamoDbV2 { .. } => "dynamodb",
        ActionSpec::S3 { .. } => "s3",
        ActionSpec::Sns { .. } => "sns",
        ActionSpec::Sqs { .. } => "sqs",
        ActionSpec::Kinesis { .. } => "kinesis",
        ActionSpec::Firehose { .. } => "firehose",
        ActionSpec::CloudwatchLogs { .. } => "cloudwatch-logs",
        ActionSpec::CloudwatchMetric(_) | ActionSpec::CloudwatchAlarm { .. } => "cloudwatch",
        ActionSpec::Republish { .. } | ActionSpec::Http(_) | ActionSpec::Unsupported => "",
    }
}

#[cfg_attr(feature = "aws", allow(dead_code))]
fn missing_feature(spec: &ActionSpec) -> Failure {
    let feature = feature_of(spec);
    Failure::permanent(feature, format!("This ferrocore was built without the `{feature}` feature of ferrocore-rules."))
}

/// A JSON array for batch modes, or the one record.
#[cfg_attr(not(any(feature = "firehose", feature = "cloudwatch-logs")), allow(dead_code))]
fn batch_items(value: &ferrocore_rules_sql::Value, batch: bool) -> Result<Vec<serde_json::Value>, String> {
    let json = value.to_json().unwrap_or(serde_json::Value::Null);
    match (batch, json) {
        (true, serde_json::Value::Array(items)) => Ok(items),
        (true, _) => Err("batchMode needs the rule to produce a JSON array.".into()),
        (false, other) => Ok(vec![other]),
    }
}

#[cfg(feature = "aws")]
mod sdk {
    use std::sync::OnceLock;
    use std::time::Duration;

    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_smithy_runtime_api::client::behavior_version::BehaviorVersion;
    use aws_smithy_runtime_api::client::result::SdkError;
    use aws_smithy_runtime_api::http::Response as HttpResponse;
    use aws_smithy_types::error::display::DisplayErrorContext;
    use aws_smithy_types::error::metadata::ProvideErrorMetadata;
    use aws_types::SdkConfig;
    use aws_types::region::Region;

    use super::{StaticCredentials, feature_of, missing_feature};
    use crate::RulesConfig;
    use crate::compile::ActionSpec;
    use crate::targets::{Failure, Output, Render};

    /// A call to a target service gets this long before it counts as a (retryable) failure.
    const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

    /// One SDK configuration, and each service's client made on first use.
    pub struct Sdk {
        config: SdkConfig,
        rules: RulesConfig,
        #[cfg(feature = "dynamodb")]
        dynamodb: OnceLock<aws_sdk_dynamodb::Client>,
        #[cfg(feature = "s3")]
        s3: OnceLock<aws_sdk_s3::Client>,
        #[cfg(feature = "sqs")]
        sqs: OnceLock<aws_sdk_sqs::Client>,
        #[cfg(feature = "sns")]
        sns: OnceLock<aws_sdk_sns::Client>,
        #[cfg(feature = "kinesis")]
        kinesis: OnceLock<aws_sdk_kinesis::Client>,
        #[cfg(feature = "firehose")]
        firehose: OnceLock<aws_sdk_firehose::Client>,
        #[cfg(feature = "cloudwatch-logs")]
        logs: OnceLock<aws_sdk_cloudwatchlogs::Client>,
        /// CloudWatch over its query protocol (see `cloudwatch.rs`).
        #[cfg(feature = "cloudwatch")]
        cloudwatch: super::super::cloudwatch::QueryClient,
        #[cfg(feature = "lambda")]
        lambda: OnceLock<aws_sdk_lambda::Client>,
    }

    /// A service's client, built from the shared configuration plus its endpoint.
    macro_rules! client {
        ($self:ident, $field:ident, $krate:ident, $service:literal) => {{
            $self.$field.get_or_init(|| {
                let mut builder = $krate::config::Builder::from(&$self.config);
                if let Some(url) = $self.rules.endpoint($service) {
                    builder = builder.endpoint_url(url);
                }
                $krate::Client::from_conf(builder.build())
            })
        }};
    }

    impl Sdk {
        pub fn new(config: &RulesConfig, credentials: Option<&StaticCredentials>) -> Self {
            let mut builder = SdkConfig::builder()
                .region(Region::new(config.region.clone()))
                .behavior_version(BehaviorVersion::latest())
                // The engine retries with its own backoff and counts each attempt.
                .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
                .timeout_config(
                    aws_smithy_types::timeout::TimeoutConfig::builder().operation_timeout(OPERATION_TIMEOUT).build(),
                );
            if let Some(c) = credentials {
                let credentials = Credentials::new(
                    &c.access_key_id,
                    &c.secret_access_key,
                    c.session_token.clone(),
                    None,
                    "ferrocore",
                );
                builder = builder.credentials_provider(SharedCredentialsProvider::new(credentials));
            }
            Self {
                config: builder.build(),
                rules: config.clone(),
                #[cfg(feature = "dynamodb")]
                dynamodb: OnceLock::new(),
                #[cfg(feature = "s3")]
                s3: OnceLock::new(),
                #[cfg(feature = "sqs")]
                sqs: OnceLock::new(),
                #[cfg(feature = "sns")]
                sns: OnceLock::new(),
                #[cfg(feature = "kinesis")]
                kinesis: OnceLock::new(),
                #[cfg(feature = "firehose")]
                firehose: OnceLock::new(),
                #[cfg(feature = "cloudwatch-logs")]
                logs: OnceLock::new(),
                #[cfg(feature = "cloudwatch")]
                cloudwatch: super::super::cloudwatch::QueryClient::new(config, credentials.cloned()),
                #[cfg(feature = "lambda")]
                lambda: OnceLock::new(),
            }
        }

        pub async fn deliver(
            &self,
            spec: &ActionSpec,
            output: &Output<'_>,
            render: &Render<'_>,
        ) -> Result<(), Failure> {
            let _ = (output, render);
            match spec {
                #[cfg(feature = "lambda")]
                ActionSpec::Lambda { function_arn } => {
                    let arn = render(function_arn)?;
                    let client = client!(self, lambda, aws_sdk_lambda, "lambda");
                    client
                        .invoke()
                        .function_name(&arn)
                        .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
                        .payload(aws_smithy_types::Blob::new(output.bytes.to_vec()))
                        .send()
                        .await
                        .map_err(|e| failure(&arn, e))?;
                    Ok(())
                }
                #[cfg(feature = "dynamodb")]
                ActionSpec::DynamoDbV2 { table_name } => {
                    let table = render(table_name)?;
                    let item = dynamo::item(output.value).map_err(|e| Failure::permanent(&table, e))?;
                    let client = client!(self, dynamodb, aws_sdk_dynamodb, "dynamodb");
                    client
                        .put_item()
                        .table_name(&table)
                        .set_item(Some(item))
                        .send()
                        .await
                        .map_err(|e| failure(&table, e))?;
                    Ok(())
                }
                #[cfg(feature = "dynamodb")]
                ActionSpec::DynamoDb(spec) => {
                    let table = render(&spec.table_name)?;
                    let client = client!(self, dynamodb, aws_sdk_dynamodb, "dynamodb");
                    dynamo::classic(client, &table, spec, output, render).await
                }
                #[cfg(feature = "s3")]
                ActionSpec::S3 { bucket, key, canned_acl } => {
                    let (bucket, key) = (render(bucket)?, render(key)?);
                    // AWS names the bucket as the failed resource.
                    let resource = bucket.clone();
                    let client = client!(self, s3, aws_sdk_s3, "s3");
                    let mut request = client
                        .put_object()
                        .bucket(&bucket)
                        .key(&key)
                        .body(aws_sdk_s3::primitives::ByteStream::from(output.bytes.to_vec()));
                    if let Some(acl) = canned_acl {
                        request = request.acl(aws_sdk_s3::types::ObjectCannedAcl::from(acl.as_str()));
                    }
                    request.send().await.map_err(|e| failure(&resource, e))?;
                    Ok(())
                }
                #[cfg(feature = "sqs")]
                ActionSpec::Sqs { queue_url, base64 } => {
                    use base64::Engine;
                    let url = render(queue_url)?;
                    let body = if *base64 {
                        base64::engine::general_purpose::STANDARD.encode(output.bytes)
                    } else {
                        String::from_utf8_lossy(output.bytes).into_owned()
                    };
                    let client = client!(self, sqs, aws_sdk_sqs, "sqs");
                    client
                        .send_message()
                        .queue_url(&url)
                        .message_body(body)
                        .send()
                        .await
                        .map_err(|e| failure(&url, e))?;
                    Ok(())
                }
                #[cfg(feature = "sns")]
                ActionSpec::Sns { target_arn, json_format } => {
                    let arn = render(target_arn)?;
                    let client = client!(self, sns, aws_sdk_sns, "sns");
                    let mut request =
                        client.publish().target_arn(&arn).message(String::from_utf8_lossy(output.bytes).into_owned());
                    if *json_format {
                        request = request.message_structure("json");
                    }
                    request.send().await.map_err(|e| failure(&arn, e))?;
                    Ok(())
                }
                #[cfg(feature = "kinesis")]
                ActionSpec::Kinesis { stream_name, partition_key } => {
                    let stream = render(stream_name)?;
                    let key = match partition_key {
                        Some(template) => render(template)?,
                        None => uuid::Uuid::new_v4().to_string(),
                    };
                    let client = client!(self, kinesis, aws_sdk_kinesis, "kinesis");
                    client
                        .put_record()
                        .stream_name(&stream)
                        .partition_key(key)
                        .data(aws_smithy_types::Blob::new(output.bytes.to_vec()))
                        .send()
                        .await
                        .map_err(|e| failure(&stream, e))?;
                    Ok(())
                }
                #[cfg(feature = "firehose")]
                ActionSpec::Firehose { stream_name, separator, batch } => {
                    use aws_sdk_firehose::types::Record;
                    let stream = render(stream_name)?;
                    let separator = separator.as_deref().map(unescape_separator).unwrap_or_default();
                    let records: Vec<Vec<u8>> = if *batch {
                        super::batch_items(output.value, true)
                            .map_err(|e| Failure::permanent(&stream, e))?
                            .into_iter()
                            .map(|item| item.to_string().into_bytes())
                            .collect()
                    } else {
                        vec![output.bytes.to_vec()]
                    };
                    let records = records
                        .into_iter()
                        .map(|mut data| {
                            data.extend_from_slice(separator.as_bytes());
                            Record::builder().data(aws_smithy_types::Blob::new(data)).build()
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| Failure::permanent(&stream, e.to_string()))?;
                    let client = client!(self, firehose, aws_sdk_firehose, "firehose");
                    client
                        .put_record_batch()
                        .delivery_stream_name(&stream)
                        .set_records(Some(records))
                        .send()
                        .await
                        .map_err(|e| failure(&stream, e))?;
                    Ok(())
                }
                #[cfg(feature = "cloudwatch-logs")]
                ActionSpec::CloudwatchLogs { log_group, batch } => {
                    let group = render(log_group)?;
                    let client = client!(self, logs, aws_sdk_cloudwatchlogs, "logs");
                    logs::put(client, &group, output, *batch).await
                }
                #[cfg(feature = "cloudwatch")]
                ActionSpec::CloudwatchMetric(_) | ActionSpec::CloudwatchAlarm { .. } => {
                    self.cloudwatch.deliver(spec, render).await
                }
                other => {
                    debug_assert!(!feature_of(other).is_empty(), "gateway and HTTP actions are not AWS actions");
                    Err(missing_feature(other))
                }
            }
        }
    }

    /// Firehose separators are given escaped (`\n`, `\r\n`, `\t`, `,`).
    #[cfg(feature = "firehose")]
    fn unescape_separator(text: &str) -> String {
        text.replace("\\n", "\n").replace("\\r", "\r").replace("\\t", "\t")
    }

    /// A failed SDK call: retryable unless the service refused the request itself.
    fn failure<E>(resource: &str, err: SdkError<E, HttpResponse>) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let retryable = match &err {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                status >= 500 || status == 429 || err.code().is_some_and(|code| code.contains("Throttl"))
            }
            SdkError::ConstructionFailure(_) => false,
            _ => true,
        };
        let message = match (err.code(), err.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_string(),
            _ => DisplayErrorContext(&err).to_string(),
        };
        Failure { resource: resource.to_string(), message, retryable }
    }

    #[cfg(feature = "dynamodb")]
    mod dynamo {
        use std::collections::HashMap;

        use aws_sdk_dynamodb::types::AttributeValue;
        use serde_json::Value as Json;

        use super::failure;
        use crate::compile::{DynamoDb, KeyTemplate};
        use crate::targets::{Failure, Output, Render};

        /// A JSON value as a DynamoDB attribute (numbers as N, nested objects as M).
        fn attribute(json: &Json) -> AttributeValue {
            match json {
                Json::Null => AttributeValue::Null(true),
                Json::Bool(b) => AttributeValue::Bool(*b),
                Json::Number(n) => AttributeValue::N(n.to_string()),
                Json::String(s) => AttributeValue::S(s.clone()),
                Json::Array(items) => AttributeValue::L(items.iter().map(attribute).collect()),
                Json::Object(map) => AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), attribute(v))).collect()),
            }
        }

        /// dynamoDBv2: one column per top-level key of the rule's JSON object.
        pub fn item(value: &ferrocore_rules_sql::Value) -> Result<HashMap<String, AttributeValue>, String> {
            match value.to_json() {
                Some(Json::Object(map)) => Ok(map.iter().map(|(k, v)| (k.clone(), attribute(v))).collect()),
                _ => Err("dynamoDBv2 needs the rule to produce a JSON object.".into()),
            }
        }

        fn key_attribute(key: &KeyTemplate, render: &Render<'_>) -> Result<(String, AttributeValue), Failure> {
            let (field, value) = (render(&key.field)?, render(&key.value)?);
            Ok((field, if key.numeric { AttributeValue::N(value) } else { AttributeValue::S(value) }))
        }

        /// The original DynamoDB action: hash (and range) key from templates, the
        /// message in `payloadField` (a map for JSON, a string otherwise).
        pub async fn classic(
            client: &aws_sdk_dynamodb::Client,
            table: &str,
            spec: &DynamoDb,
            output: &Output<'_>,
            render: &Render<'_>,
        ) -> Result<(), Failure> {
            let mut key: HashMap<String, AttributeValue> = HashMap::new();
            let (name, value) = key_attribute(&spec.hash_key, render)?;
            key.insert(name, value);
            if let Some(range) = &spec.range_key {
                let (name, value) = key_attribute(range, render)?;
                key.insert(name, value);
            }
            let payload_field = match &spec.payload_field {
                Some(template) => render(template)?,
                None => "payload".to_string(),
            };
            let payload = match (output.value, output.value.to_json()) {
                (ferrocore_rules_sql::Value::Binary(bytes), _) => {
                    AttributeValue::B(aws_smithy_types::Blob::new(bytes.clone()))
                }
                (_, Some(json @ Json::Object(_))) => attribute(&json),
                _ => AttributeValue::S(String::from_utf8_lossy(output.bytes).into_owned()),
            };
            let operation = match &spec.operation {
                Some(template) => render(template)?.to_ascii_uppercase(),
                None => "INSERT".to_string(),
            };
            match operation.as_str() {
                "INSERT" => {
                    let mut item = key;
                    item.insert(payload_field, payload);
                    client
                        .put_item()
                        .table_name(table)
                        .set_item(Some(item))
                        .send()
                        .await
                        .map(drop)
                        .map_err(|e| failure(table, e))
                }
                "UPDATE" => client
                    .update_item()
                    .table_name(table)
                    .set_key(Some(key))
                    .update_expression("SET #payload = :payload")
                    .expression_attribute_names("#payload", payload_field)
                    .expression_attribute_values(":payload", payload)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| failure(table, e)),
                "DELETE" => client
                    .delete_item()
                    .table_name(table)
                    .set_key(Some(key))
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| failure(table, e)),
                other => Err(Failure::permanent(table, format!("operation {other} is not INSERT, UPDATE or DELETE"))),
            }
        }
    }

    #[cfg(feature = "cloudwatch-logs")]
    mod logs {
        use aws_sdk_cloudwatchlogs::types::InputLogEvent;

        use super::failure;
        use crate::targets::{Failure, Output};

        /// The log stream AWS IoT writes rule output into (created when missing).
        const STREAM: &str = "aws-iot-rules";

        pub async fn put(
            client: &aws_sdk_cloudwatchlogs::Client,
            group: &str,
            output: &Output<'_>,
            batch: bool,
        ) -> Result<(), Failure> {
            let now = crate::now_ms();
            let events = if batch {
                super::super::batch_items(output.value, true)
                    .map_err(|e| Failure::permanent(group, e))?
                    .into_iter()
                    .map(|item| {
                        let timestamp = item.get("timestamp").and_then(serde_json::Value::as_i64).unwrap_or(now);
                        let message = match item.get("message") {
                            Some(serde_json::Value::String(text)) => text.clone(),
                            Some(other) => other.to_string(),
                            None => item.to_string(),
                        };
                        (timestamp, message)
                    })
                    .collect::<Vec<_>>()
            } else {
                vec![(now, String::from_utf8_lossy(output.bytes).into_owned())]
            };
            // PutLogEvents wants the events of a batch in time order.
            let mut events = events;
            events.sort_by_key(|(timestamp, _)| *timestamp);
            let events = events
                .into_iter()
                .map(|(timestamp, message)| InputLogEvent::builder().timestamp(timestamp).message(message).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Failure::permanent(group, e.to_string()))?;
            let send = || {
                client
                    .put_log_events()
                    .log_group_name(group)
                    .log_stream_name(STREAM)
                    .set_log_events(Some(events.clone()))
                    .send()
            };
            // The stream is created on the first put that finds it missing, not before every put.
            match send().await {
                Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
                    let created = client.create_log_stream().log_group_name(group).log_stream_name(STREAM).send().await;
                    if let Err(err) = created
                        && !err.as_service_error().is_some_and(|e| e.is_resource_already_exists_exception())
                    {
                        return Err(failure(group, err));
                    }
                    send().await.map_err(|e| failure(group, e))?;
                }
                sent => {
                    sent.map_err(|e| failure(group, e))?;
                }
            }
            Ok(())
        }
    }
}
