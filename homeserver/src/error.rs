//! The homeserver's one error type and the one place that maps it, and every
//! error poem or poem-openapi raises, to a Matrix error response.

use poem::{
    IntoResponse, Response,
    error::{MethodNotAllowedError, NotFoundError, ResponseError},
    http::{StatusCode, header},
};
use poem_openapi::{
    ApiResponse, Object,
    error::{
        AuthorizationError, ContentTypeError, ParseMultipartError, ParseParamError, ParsePathError,
        ParseRequestPayloadError,
    },
    registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry},
    types::Type,
};
use serde_json::{Map, Value};

use crate::uia::UiaChallenge;

/// Everything that can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadJson(String),
    #[error("{0}")]
    NotJson(String),
    #[error("{0}")]
    InvalidParam(String),
    #[error("{0}")]
    MissingParam(String),
    #[error("{0}")]
    Unknown(String),
    #[error("{0}")]
    InvalidUsername(String),
    #[error("the user id is already taken")]
    UserInUse,
    #[error("this account has been deactivated")]
    UserDeactivated,
    #[error("registration is disabled on this server")]
    RegistrationDisabled,
    #[error("guest access is not allowed on this server")]
    GuestAccessForbidden,
    #[error("missing access token")]
    MissingToken,
    /// A server-server request without a valid signature (401 `M_UNAUTHORIZED`).
    #[error("{0}")]
    Unauthorized(String),
    #[error("unknown or revoked access token")]
    UnknownToken { soft_logout: bool },
    #[error("too many requests")]
    LimitExceeded { retry_after_ms: u64 },
    #[error("the request body is too large")]
    TooLarge,
    #[error("unrecognized request")]
    Unrecognized { status: StatusCode },
    #[error("additional authentication is required")]
    AuthRequired(Box<UiaChallenge>),
    #[error("room version {0} is not supported by this server")]
    UnsupportedRoomVersion(String),
    /// A room alias asked for at room creation is taken (`M_ROOM_IN_USE`).
    #[error("the room alias is already taken")]
    RoomInUse,
    /// The resource exists already (409 `M_UNKNOWN`, e.g. `PUT /directory/room/{alias}`).
    #[error("{0}")]
    Conflict(String),
    /// An account data type the server manages, not the client (405 `M_BAD_JSON`).
    #[error("{0}")]
    ServerManagedType(String),
    /// Media whose upload has not happened yet (504 `M_NOT_YET_UPLOADED`).
    #[error("the media has not been uploaded yet")]
    NotYetUploaded,
    /// A second upload to the same media id (409 `M_CANNOT_OVERWRITE_MEDIA`).
    #[error("the media has already been uploaded")]
    CannotOverwriteMedia,
    /// The media store failed or refused.
    #[error("{0}")]
    Media(#[from] media::Error),
    /// A room version the other side does not support (400 `M_INCOMPATIBLE_ROOM_VERSION`).
    #[error("the room's version {0} is not supported by the joining server")]
    IncompatibleRoomVersion(String),
    /// Another server could not be reached or gave no usable answer (502).
    #[error("{0}")]
    BadGateway(String),
    /// The SFU refused or failed a call operation.
    #[error("{0}")]
    Call(#[from] sfu::Error),
}

/// How the SFU's errors reach clients.
fn call_status_and_code(error: &sfu::Error) -> (StatusCode, &'static str) {
    use StatusCode as S;
    use sfu::Error as C;
    match error {
        C::BadSdp(_) => (S::BAD_REQUEST, "M_INVALID_PARAM"),
        C::NotInCall => (S::NOT_FOUND, "M_NOT_FOUND"),
        C::NoOfferOutstanding => (S::BAD_REQUEST, "M_UNKNOWN"),
        C::CallFull(_) => (S::FORBIDDEN, "M_FORBIDDEN"),
        C::NoPort(_) => (S::SERVICE_UNAVAILABLE, "M_UNKNOWN"),
        C::Config(_) | C::WebRtc(_) => (S::INTERNAL_SERVER_ERROR, "M_UNKNOWN"),
    }
}

/// How the media store's errors reach clients.
fn media_status_and_code(error: &media::Error) -> (StatusCode, &'static str) {
    use StatusCode as S;
    use media::Error as M;
    match error {
        M::TooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "M_TOO_LARGE"),
        M::NotFound | M::InvalidKey(_) => (S::NOT_FOUND, "M_NOT_FOUND"),
        M::SizeMismatch { .. } | M::ExpiryTooLong { .. } | M::InvalidThumbnailSize { .. } => {
            (S::BAD_REQUEST, "M_INVALID_PARAM")
        }
        M::Unsupported(_) => (S::BAD_REQUEST, "M_UNRECOGNIZED"),
        M::UnsupportedContentType(_) | M::NotAnImage | M::ImageTooLarge { .. } | M::Image(_) => {
            (S::BAD_REQUEST, "M_UNKNOWN")
        }
        // The client's body broke off: nothing was stored.
        M::Body(_) => (S::BAD_REQUEST, "M_UNKNOWN"),
        M::Io(_) | M::Backend(_) => (S::INTERNAL_SERVER_ERROR, "M_UNKNOWN"),
    }
}

/// A `Result` with the homeserver's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The HTTP status and Matrix `errcode` of this error.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            Error::Database(_) | Error::Internal(_) => (S::INTERNAL_SERVER_ERROR, "M_UNKNOWN"),
            Error::Forbidden(_) => (S::FORBIDDEN, "M_FORBIDDEN"),
            Error::NotFound(_) => (S::NOT_FOUND, "M_NOT_FOUND"),
            Error::BadJson(_) => (S::BAD_REQUEST, "M_BAD_JSON"),
            Error::NotJson(_) => (S::BAD_REQUEST, "M_NOT_JSON"),
            Error::InvalidParam(_) => (S::BAD_REQUEST, "M_INVALID_PARAM"),
            Error::MissingParam(_) => (S::BAD_REQUEST, "M_MISSING_PARAM"),
            Error::Unknown(_) => (S::BAD_REQUEST, "M_UNKNOWN"),
            Error::InvalidUsername(_) => (S::BAD_REQUEST, "M_INVALID_USERNAME"),
            Error::UserInUse => (S::BAD_REQUEST, "M_USER_IN_USE"),
            Error::UserDeactivated => (S::FORBIDDEN, "M_USER_DEACTIVATED"),
            Error::RegistrationDisabled => (S::FORBIDDEN, "M_FORBIDDEN"),
            Error::GuestAccessForbidden => (S::FORBIDDEN, "M_GUEST_ACCESS_FORBIDDEN"),
            Error::MissingToken => (S::UNAUTHORIZED, "M_MISSING_TOKEN"),
            Error::Unauthorized(_) => (S::UNAUTHORIZED, "M_UNAUTHORIZED"),
            Error::UnknownToken { .. } => (S::UNAUTHORIZED, "M_UNKNOWN_TOKEN"),
            Error::LimitExceeded { .. } => (S::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED"),
            Error::TooLarge => (S::PAYLOAD_TOO_LARGE, "M_TOO_LARGE"),
            Error::Unrecognized { status } => (*status, "M_UNRECOGNIZED"),
            Error::AuthRequired(challenge) => match challenge.error {
                Some((code, _)) => (S::UNAUTHORIZED, code),
                None => (S::UNAUTHORIZED, ""),
            },
            Error::UnsupportedRoomVersion(_) => (S::BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION"),
            Error::RoomInUse => (S::BAD_REQUEST, "M_ROOM_IN_USE"),
            Error::Conflict(_) => (S::CONFLICT, "M_UNKNOWN"),
            Error::ServerManagedType(_) => (S::METHOD_NOT_ALLOWED, "M_BAD_JSON"),
            Error::NotYetUploaded => (S::GATEWAY_TIMEOUT, "M_NOT_YET_UPLOADED"),
            Error::CannotOverwriteMedia => (S::CONFLICT, "M_CANNOT_OVERWRITE_MEDIA"),
            Error::Media(e) => media_status_and_code(e),
            Error::BadGateway(_) => (S::BAD_GATEWAY, "M_UNKNOWN"),
            Error::IncompatibleRoomVersion(_) => (S::BAD_REQUEST, "M_INCOMPATIBLE_ROOM_VERSION"),
            Error::Call(e) => call_status_and_code(e),
        }
    }

    /// The Matrix error as JSON (`errcode`, `error`, ...), for other transports.
    pub fn to_matrix_json(&self) -> Value {
        self.body()
    }

    /// The JSON body clients receive.
    fn body(&self) -> Value {
        let (_, errcode) = self.status_and_code();
        let mut body = Map::new();
        match self {
            Error::AuthRequired(challenge) => {
                body = challenge.to_json();
                return Value::Object(body);
            }
            // Internal details stay in the log, not in the response.
            Error::Database(_)
            | Error::Internal(_)
            | Error::Media(media::Error::Io(_) | media::Error::Backend(_)) => {
                body.insert("error".into(), "Internal server error".into());
            }
            other => {
                body.insert("error".into(), other.to_string().into());
            }
        }
        body.insert("errcode".into(), errcode.into());
        match self {
            Error::UnknownToken { soft_logout } => {
                body.insert("soft_logout".into(), (*soft_logout).into());
            }
            Error::LimitExceeded { retry_after_ms } => {
                body.insert("retry_after_ms".into(), (*retry_after_ms).into());
            }
            Error::IncompatibleRoomVersion(version) => {
                body.insert("room_version".into(), version.clone().into());
            }
            _ => {}
        }
        Value::Object(body)
    }

    /// Converts any error raised while serving a request — ours, poem's or
    /// poem-openapi's — into the Matrix error it stands for.
    pub fn from_poem(err: poem::Error) -> Error {
        let err = match err.downcast::<Error>() {
            Ok(ours) => return ours,
            Err(other) => other,
        };
        if err.is::<ParseRequestPayloadError>() || err.is::<ParseMultipartError>() {
            Error::BadJson(err.to_string())
        } else if err.is::<ParsePathError>() || err.is::<ParseParamError>() {
            Error::InvalidParam(err.to_string())
        } else if err.is::<ContentTypeError>() {
            Error::NotJson("Content-Type must be application/json".into())
        } else if err.is::<AuthorizationError>() {
            Error::MissingToken
        } else if err.is::<NotFoundError>() {
            Error::Unrecognized {
                status: StatusCode::NOT_FOUND,
            }
        } else if err.is::<MethodNotAllowedError>() {
            Error::Unrecognized {
                status: StatusCode::METHOD_NOT_ALLOWED,
            }
        } else {
            match err.status() {
                StatusCode::PAYLOAD_TOO_LARGE => Error::TooLarge,
                StatusCode::NOT_FOUND => Error::Unrecognized {
                    status: StatusCode::NOT_FOUND,
                },
                StatusCode::METHOD_NOT_ALLOWED => Error::Unrecognized {
                    status: StatusCode::METHOD_NOT_ALLOWED,
                },
                status if status.is_client_error() => Error::Unknown(err.to_string()),
                _ => Error::Internal(err.to_string()),
            }
        }
    }
}

impl ResponseError for Error {
    fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn as_response(&self) -> Response {
        if self.status().is_server_error() && !matches!(self, Error::NotYetUploaded) {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = Response::builder()
            .status(self.status())
            .content_type("application/json")
            .body(self.body().to_string());
        if let Error::LimitExceeded { retry_after_ms } = self {
            let secs = retry_after_ms.div_ceil(1000).max(1);
            if let Ok(value) = secs.to_string().parse() {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.as_response()
    }
}

/// The standard Matrix error body, for the OpenAPI document.
#[derive(Object)]
#[oai(rename = "MatrixError")]
pub struct ErrorBody {
    /// An error code such as `M_FORBIDDEN`.
    pub errcode: String,
    /// A human-readable message.
    pub error: String,
    /// With `M_LIMIT_EXCEEDED`: how long to wait before retrying.
    pub retry_after_ms: Option<u64>,
    /// With `M_UNKNOWN_TOKEN`: whether the client may refresh or log in again without losing data.
    pub soft_logout: Option<bool>,
}

impl ApiResponse for Error {
    fn meta() -> MetaResponses {
        let content = || {
            vec![MetaMediaType {
                content_type: "application/json",
                schema: MetaSchemaRef::Reference("MatrixError".into()),
            }]
        };
        let responses = [
            (
                400,
                "The request was malformed (`M_BAD_JSON`, `M_NOT_JSON`, `M_INVALID_PARAM`, ...).",
            ),
            (
                401,
                "Missing or invalid access token, or user-interactive authentication required.",
            ),
            (
                403,
                "The request is not allowed (`M_FORBIDDEN`, `M_USER_DEACTIVATED`, ...).",
            ),
            (404, "The resource does not exist (`M_NOT_FOUND`)."),
            (413, "The request body is too large (`M_TOO_LARGE`)."),
            (429, "Rate limited (`M_LIMIT_EXCEEDED`)."),
            (500, "Internal server error."),
        ];
        MetaResponses {
            responses: responses
                .into_iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(status),
                    status_range: None,
                    content: content(),
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        ErrorBody::register(registry);
    }
}

impl From<federation::Error> for Error {
    fn from(err: federation::Error) -> Self {
        use federation::Error as F;
        match err {
            F::Unauthorized(reason) => {
                Error::Forbidden(format!("not allowed by the room's rules: {reason}"))
            }
            F::InvalidEvent(reason) => Error::BadJson(format!("invalid event: {reason}")),
            F::Json(e) => Error::BadJson(format!("invalid event: {e}")),
            F::UnsupportedRoomVersion(version) => Error::UnsupportedRoomVersion(version),
            F::MalformedAuthorization(_) | F::WrongDestination { .. } | F::UnknownKey { .. } => {
                Error::Unauthorized(err.to_string())
            }
            F::InvalidRequest(reason) => Error::BadJson(reason),
            // Another server's refusal reaches the client as that refusal.
            F::Remote {
                status: 403,
                message,
                ..
            } => Error::Forbidden(message),
            F::Remote {
                status: 404,
                message,
                ..
            } => Error::NotFound(message),
            other @ (F::Discovery { .. } | F::Transport { .. } | F::Remote { .. }) => {
                Error::BadGateway(other.to_string())
            }
            other @ (F::KeyFile { .. }
            | F::Verification(_)
            | F::ServerKeys { .. }
            | F::ClientSetup(_)
            | F::Certificate { .. }) => Error::Internal(other.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        Error::Internal(format!("migration failed: {err}"))
    }
}
