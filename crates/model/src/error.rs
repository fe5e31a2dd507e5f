//! Domain errors. Each variant is one AWS error type; the API layer turns them
//! into wire shapes in one place.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{message}")]
    ResourceAlreadyExists { message: String, resource_id: String, resource_arn: String },
    #[error("{0}")]
    VersionConflict(String),
    #[error("{0}")]
    DeleteConflict(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    CertificateState(String),
    #[error("{0}")]
    CertificateValidation(String),
    #[error("{0}")]
    RegistrationCodeValidation(String),
    #[error("{0}")]
    MalformedPolicy(String),
    #[error("{0}")]
    VersionsLimitExceeded(String),
    #[error("{0}")]
    SqlParse(String),
    /// AWS answers some reads of missing resources (GetTopicRule) with this.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    ConflictingResourceUpdate(String),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidRequest(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::ResourceNotFound(message.into())
    }
}
