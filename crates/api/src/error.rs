//! AWS error shapes: the one place where domain and signature errors become
//! HTTP status codes, `x-amzn-ErrorType` and the JSON (or STS XML) body.

use axum::http::StatusCode;
use ferrocore_model::Error as ModelError;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Members beside `message` (e.g. `resourceId`, `resourceArn`).
    pub extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), extra: Map::new() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequestException", message)
    }

    pub fn unknown_operation(method: &str, path: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "UnknownOperationException", format!("No operation matches {method} {path}."))
    }

    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowedException",
            format!("The method {method} is not allowed on {path}."),
        )
    }

    /// An operation of the real service that ferrocore does not implement yet.
    pub fn not_implemented(service: &str, operation: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplementedException",
            format!("ferrocore does not implement the {service} operation {operation} yet."),
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLargeException",
            format!("The request body exceeds the limit of {limit} bytes."),
        )
    }

    pub fn body_timeout(limit: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeoutException",
            format!("The request body did not arrive within {} seconds.", limit.as_secs()),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalFailureException", message)
    }

    pub fn json_body(&self) -> Value {
        let mut body = self.extra.clone();
        body.insert("message".into(), json!(self.message));
        Value::Object(body)
    }

    /// The query-protocol (STS) error document.
    pub fn xml_body(&self, request_id: &str) -> String {
        let kind = if self.status.is_server_error() { "Receiver" } else { "Sender" };
        format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
            self.code,
            xml_escape(&self.message)
        )
    }
}

pub fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

impl From<ModelError> for ApiError {
    fn from(err: ModelError) -> Self {
        let message = err.to_string();
        match err {
            ModelError::InvalidRequest(_) => Self::new(StatusCode::BAD_REQUEST, "InvalidRequestException", message),
            ModelError::ResourceNotFound(_) => Self::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message),
            ModelError::ResourceAlreadyExists { resource_id, resource_arn, .. } => {
                let mut error = Self::new(StatusCode::CONFLICT, "ResourceAlreadyExistsException", message);
                error.extra.insert("resourceId".into(), json!(resource_id));
                error.extra.insert("resourceArn".into(), json!(resource_arn));
                error
            }
            ModelError::VersionConflict(_) => Self::new(StatusCode::CONFLICT, "VersionConflictException", message),
            ModelError::DeleteConflict(_) => Self::new(StatusCode::CONFLICT, "DeleteConflictException", message),
            ModelError::LimitExceeded(_) => Self::new(StatusCode::GONE, "LimitExceededException", message),
            ModelError::CertificateState(_) => {
                Self::new(StatusCode::NOT_ACCEPTABLE, "CertificateStateException", message)
            }
            ModelError::CertificateValidation(_) => {
                Self::new(StatusCode::BAD_REQUEST, "CertificateValidationException", message)
            }
            ModelError::RegistrationCodeValidation(_) => {
                Self::new(StatusCode::BAD_REQUEST, "RegistrationCodeValidationException", message)
            }
            ModelError::MalformedPolicy(_) => Self::new(StatusCode::BAD_REQUEST, "MalformedPolicyException", message),
            ModelError::VersionsLimitExceeded(_) => {
                Self::new(StatusCode::CONFLICT, "VersionsLimitExceededException", message)
            }
            ModelError::SqlParse(_) => Self::new(StatusCode::BAD_REQUEST, "SqlParseException", message),
            ModelError::Unauthorized(_) => Self::new(StatusCode::UNAUTHORIZED, "UnauthorizedException", message),
            ModelError::ConflictingResourceUpdate(_) => {
                Self::new(StatusCode::CONFLICT, "ConflictingResourceUpdateException", message)
            }
            ModelError::Internal(_) => Self::internal(message),
        }
    }
}

/// Shadow errors carry their HTTP code; the exception names are iot-data's.
impl From<ferrocore_shadow::ShadowError> for ApiError {
    fn from(err: ferrocore_shadow::ShadowError) -> Self {
        let code = match err.code() {
            400 => "InvalidRequestException",
            401 => "UnauthorizedException",
            404 => "ResourceNotFoundException",
            409 => "ConflictException",
            413 => "RequestEntityTooLargeException",
            415 => "UnsupportedDocumentEncodingException",
            429 => "ThrottlingException",
            _ => "InternalFailureException",
        };
        let status = StatusCode::from_u16(err.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::new(status, code, err.to_string())
    }
}

impl From<ferrocore_sigv4::Error> for ApiError {
    fn from(err: ferrocore_sigv4::Error) -> Self {
        use ferrocore_sigv4::Error as E;
        let code = match &err {
            E::Missing => "MissingAuthenticationTokenException",
            E::Malformed(_) => "IncompleteSignatureException",
            E::UnknownAccessKey => "UnrecognizedClientException",
            E::Expired(_) | E::Mismatch => "InvalidSignatureException",
        };
        Self::new(StatusCode::FORBIDDEN, code, err.to_string())
    }
}
