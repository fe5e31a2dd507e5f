//! The Device Shadow service's errors: an HTTP status code and AWS's message text,
//! sent as the `/rejected` document over MQTT and as the error of the HTTP API.

/// A refused shadow request, with the code and message AWS uses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShadowError {
    #[error("Invalid JSON")]
    InvalidJson,
    #[error("Missing required node: state")]
    MissingState,
    #[error("State node must be an object")]
    StateNotObject,
    #[error("Desired node must be an object")]
    DesiredNotObject,
    #[error("Reported node must be an object")]
    ReportedNotObject,
    #[error("Invalid version")]
    InvalidVersion,
    #[error("Invalid clientToken")]
    InvalidClientToken,
    /// AWS's text names 6 levels whatever the configured limit is.
    #[error("JSON contains too many levels of nesting; maximum is 6")]
    TooDeep,
    #[error("State contains an invalid node")]
    InvalidStateNode,
    /// Any other malformed request (a shadow name, a page size), with its reason.
    #[error("{0}")]
    InvalidRequest(String),
    #[error("Thing not found")]
    ThingNotFound,
    /// The quoted name is the shadow name (the thing name for the classic shadow).
    #[error("No shadow exists with name: '{0}'")]
    NoShadow(String),
    /// ferrocore's shadow history does not hold this version.
    #[error("Version {version} of this shadow is not kept (the history keeps the last {kept} versions)")]
    VersionNotKept { version: u64, kept: u64 },
    #[error("Version conflict")]
    VersionConflict,
    #[error("The payload exceeds the maximum size allowed")]
    TooLarge,
    #[error("Unsupported documented encoding; supported encoding is UTF-8")]
    UnsupportedEncoding,
    #[error("Too many requests")]
    Throttled,
    #[error("Internal service failure")]
    Internal,
}

impl ShadowError {
    /// The HTTP status code, also the `code` of the MQTT rejected document.
    pub fn code(&self) -> u16 {
        match self {
            Self::InvalidJson
            | Self::MissingState
            | Self::StateNotObject
            | Self::DesiredNotObject
            | Self::ReportedNotObject
            | Self::InvalidVersion
            | Self::InvalidClientToken
            | Self::TooDeep
            | Self::InvalidStateNode
            | Self::InvalidRequest(_) => 400,
            Self::ThingNotFound | Self::NoShadow(_) | Self::VersionNotKept { .. } => 404,
            Self::VersionConflict => 409,
            Self::TooLarge => 413,
            Self::UnsupportedEncoding => 415,
            Self::Throttled => 429,
            Self::Internal => 500,
        }
    }
}
