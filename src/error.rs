//! The one error type of the HTTP layer and its mapping to status and OperationOutcome.
//!
//! | variant | status | issue.code | details (Spine code) |
//! |---|---|---|---|
//! | `UnknownSystem` | 404 | not-found | UNSUPPORTED_SERVICE |
//! | `UnsupportedType` | 404 | not-supported | UNSUPPORTED_SERVICE |
//! | `UnknownRoute` | 404 | not-found | — |
//! | `NotFound` | 404 | not-found | RESOURCE_NOT_FOUND |
//! | `Gone` | 410 | deleted | RESOURCE_NOT_FOUND |
//! | `InvalidId` | 400 | value | INVALID_RESOURCE_ID |
//! | `InvalidBody` | 400 | structure / invalid | INVALID_RESOURCE |
//! | `Invalid` | 400 (structure) or 422 (rules) | per issue | INVALID_RESOURCE, INVALID_NHS_NUMBER, ... |
//! | `InvalidParameter` | 400 | invalid | INVALID_PARAMETER |
//! | `InvalidHeader` | 400 | invalid | INVALID_PARAMETER |
//! | `PreconditionFailed` | 412 | conflict | PRECONDITION_FAILED |
//! | `Conflict` | 409 | conflict | RESOURCE_VERSION_MISMATCH |
//! | `DuplicateNhsNumber` | 409 | duplicate | DUPLICATE_REJECTED |
//! | `ReferenceNotFound` | 422 | not-found | REFERENCE_NOT_FOUND |
//! | `MethodNotAllowed` | 405 | not-supported | — |
//! | `NotAcceptable` | 406 | not-supported | — |
//! | `UnsupportedMediaType` | 415 | not-supported | — |
//! | `PayloadTooLarge`, `TooManyEntries` | 413 | too-long | — |
//! | `Unauthorized` | 401 (`WWW-Authenticate`) | login | ACCESS_DENIED |
//! | `Forbidden` | 403 | forbidden | ACCESS_DENIED |
//! | `TooManyRequests` | 429 (`Retry-After`) | throttled | — |
//! | `Unavailable` | 503 | transient | — |
//! | `Internal` | 500 | exception | — |
//!
//! Internal causes (`Internal`, `Unavailable`) are logged with the request id (by the request-id
//! middleware in `api`) and never returned.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

use crate::fhir::outcome::{operation_outcome, Issue, IssueType, SpineCode};
use crate::fhir::resource::BodyError;
use crate::fhir::{ResourceId, ResourceType, FHIR_JSON};
use crate::store::resources::WriteError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unknown local system '{0}'")]
    UnknownSystem(String),
    #[error("resource type '{0}' is not supported")]
    UnsupportedType(String),
    #[error("no endpoint at {0}")]
    UnknownRoute(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} has been deleted")]
    Gone(String),
    #[error("'{value}' is not a valid resource id ([A-Za-z0-9-.]{{1,64}})")]
    InvalidId { value: String, expression: String },
    #[error(transparent)]
    InvalidBody(#[from] BodyError),
    #[error("{0}")]
    IdMismatch(String),
    #[error("the resource is not valid")]
    Invalid {
        status: StatusCode,
        issues: Vec<Issue>,
    },
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter { name: String, reason: String },
    #[error("invalid header {name}: {reason}")]
    InvalidHeader { name: &'static str, reason: String },
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("NHS number {nhs_number} already belongs to {existing} in this local system")]
    DuplicateNhsNumber {
        nhs_number: String,
        existing: String,
    },
    #[error("{reference} does not exist in this local system")]
    ReferenceNotFound {
        reference: String,
        expression: String,
    },
    #[error("method {method} is not allowed here; allowed: {allowed}")]
    MethodNotAllowed {
        method: String,
        allowed: &'static str,
    },
    #[error("only application/fhir+json responses are available")]
    NotAcceptable,
    #[error("content type '{found}' is not supported here; send {expected}")]
    UnsupportedMediaType {
        found: String,
        expected: &'static str,
    },
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the Bundle has {count} entries; the limit is {limit}")]
    TooManyEntries { count: usize, limit: usize },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("too many requests for this token; retry after {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn unsupported_type(name: &str) -> Self {
        Self::UnsupportedType(name.to_owned())
    }

    pub fn not_found(rtype: ResourceType, id: &str) -> Self {
        Self::NotFound(format!("{rtype}/{id}"))
    }

    pub fn invalid_parameter(name: &str, reason: impl Into<String>) -> Self {
        Self::InvalidParameter {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }

    /// The OperationOutcome issues this error answers with.
    pub fn issues(&self) -> Vec<Issue> {
        let message = self.to_string();
        let issue = match self {
            Self::UnknownSystem(_) => Issue::error(IssueType::NotFound, message)
                .with_details(SpineCode::UnsupportedService),
            Self::UnsupportedType(_) => Issue::error(
                IssueType::NotSupported,
                format!(
                    "{message}; this server stores {}",
                    ResourceType::supported_list()
                ),
            )
            .with_details(SpineCode::UnsupportedService),
            Self::UnknownRoute(_) => Issue::error(IssueType::NotFound, message),
            Self::NotFound(_) => {
                Issue::error(IssueType::NotFound, message).with_details(SpineCode::ResourceNotFound)
            }
            Self::Gone(_) => {
                Issue::error(IssueType::Deleted, message).with_details(SpineCode::ResourceNotFound)
            }
            Self::InvalidId { expression, .. } => Issue::error(IssueType::Value, message)
                .with_details(SpineCode::InvalidResourceId)
                .at(expression.clone()),
            Self::InvalidBody(body) => {
                let (code, expression) = match body {
                    BodyError::Malformed { .. } | BodyError::NotAnObject => {
                        (IssueType::Structure, None)
                    }
                    BodyError::MissingResourceType | BodyError::TypeMismatch { .. } => {
                        (IssueType::Invalid, Some("resourceType"))
                    }
                };
                let issue = Issue::error(code, message).with_details(SpineCode::InvalidResource);
                match expression {
                    Some(e) => issue.at(e),
                    None => issue,
                }
            }
            Self::IdMismatch(_) => Issue::error(IssueType::Invalid, message)
                .with_details(SpineCode::InvalidResource)
                .at("id"),
            Self::Invalid { issues, .. } => return issues.clone(),
            Self::InvalidParameter { name, .. } => Issue::error(IssueType::Invalid, message)
                .with_details(SpineCode::InvalidParameter)
                .at(name.clone()),
            Self::InvalidHeader { .. } => {
                Issue::error(IssueType::Invalid, message).with_details(SpineCode::InvalidParameter)
            }
            Self::PreconditionFailed(_) => Issue::error(IssueType::Conflict, message)
                .with_details(SpineCode::PreconditionFailed),
            Self::Conflict(_) => Issue::error(IssueType::Conflict, message)
                .with_details(SpineCode::ResourceVersionMismatch),
            Self::DuplicateNhsNumber { .. } => Issue::error(IssueType::Duplicate, message)
                .with_details(SpineCode::DuplicateRejected)
                .at("Patient.identifier"),
            Self::ReferenceNotFound { expression, .. } => {
                Issue::error(IssueType::NotFound, message)
                    .with_details(SpineCode::ReferenceNotFound)
                    .at(expression.clone())
            }
            Self::MethodNotAllowed { .. }
            | Self::NotAcceptable
            | Self::UnsupportedMediaType { .. } => Issue::error(IssueType::NotSupported, message),
            Self::PayloadTooLarge { .. } | Self::TooManyEntries { .. } => {
                Issue::error(IssueType::TooLong, message)
            }
            Self::Unauthorized(_) => {
                Issue::error(IssueType::Login, message).with_details(SpineCode::AccessDenied)
            }
            Self::Forbidden(_) => {
                Issue::error(IssueType::Forbidden, message).with_details(SpineCode::AccessDenied)
            }
            Self::TooManyRequests { .. } => Issue::error(IssueType::Throttled, message),
            Self::Unavailable(_) => Issue::error(
                IssueType::Transient,
                "the service is temporarily unavailable; retry later",
            ),
            Self::Internal(_) => Issue::error(
                IssueType::Exception,
                "an internal error occurred; it has been logged",
            ),
        };
        vec![issue]
    }
}

impl ApiError {
    /// The answer to a failed write of `rtype` (`id` when known).
    pub fn from_write(err: WriteError, rtype: ResourceType, id: Option<&ResourceId>) -> Self {
        let id = id.map(ResourceId::as_str).unwrap_or("(new)");
        match err {
            WriteError::Store(store) => Self::from(store),
            WriteError::NotFound => Self::not_found(rtype, id),
            WriteError::VersionMismatch { current } => Self::PreconditionFailed(match current {
                Some(v) => format!(
                    "If-Match does not name the current version of {rtype}/{id}, which is {}",
                    v.etag()
                ),
                None => format!("If-Match does not name the current version of {rtype}/{id}"),
            }),
            WriteError::Contended => Self::Conflict(format!(
                "{rtype}/{id} is being changed by other requests at the same moment; retry"
            )),
            WriteError::DuplicateNhsNumber {
                nhs_number,
                existing,
            } => Self::DuplicateNhsNumber {
                nhs_number,
                existing: format!("Patient/{existing}"),
            },
            WriteError::ReferenceNotFound {
                reference,
                expression,
            } => Self::ReferenceNotFound {
                reference,
                expression,
            },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Pool(_) => Self::Unavailable(err.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(err: diesel::result::Error) -> Self {
        Self::from(StoreError::from(err))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::UnknownSystem(_)
            | Self::UnsupportedType(_)
            | Self::UnknownRoute(_)
            | Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Gone(_) => StatusCode::GONE,
            Self::InvalidId { .. }
            | Self::InvalidBody(_)
            | Self::IdMismatch(_)
            | Self::InvalidParameter { .. }
            | Self::InvalidHeader { .. } => StatusCode::BAD_REQUEST,
            Self::Invalid { status, .. } => *status,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::Conflict(_) | Self::DuplicateNhsNumber { .. } => StatusCode::CONFLICT,
            Self::ReferenceNotFound { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } | Self::TooManyEntries { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, FHIR_JSON));
        if let Self::MethodNotAllowed { allowed, .. } = self {
            response.insert_header((header::ALLOW, *allowed));
        }
        match self {
            Self::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            Self::TooManyRequests { retry_after } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            Self::Unauthorized(reason) => {
                let reason = reason.replace('"', "'");
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!("Bearer realm=\"carerecord\", error=\"invalid_token\", error_description=\"{reason}\""),
                ));
            }
            _ => {}
        }
        response.body(operation_outcome(&self.issues()).to_string())
    }
}
