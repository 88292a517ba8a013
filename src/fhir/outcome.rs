//! OperationOutcome: the body of every error, and of success when `Prefer: return=OperationOutcome`.

use serde_json::{json, Map, Value};

/// The NHS code system for `issue.details` (DESIGN.md, "Wire format").
pub const SPINE_ERROR_OR_WARNING_CODE: &str =
    "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fatal => "fatal",
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Information => "information",
        }
    }
}

/// `issue.code`, from the FHIR issue-type value set (only the codes this server uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    Invariant,
    CodeInvalid,
    BusinessRule,
    Security,
    Login,
    Forbidden,
    NotSupported,
    Duplicate,
    NotFound,
    Deleted,
    TooLong,
    Conflict,
    Exception,
    Timeout,
    TooCostly,
    Throttled,
    Transient,
    Processing,
    Informational,
}

impl IssueType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Structure => "structure",
            Self::Required => "required",
            Self::Value => "value",
            Self::Invariant => "invariant",
            Self::CodeInvalid => "code-invalid",
            Self::BusinessRule => "business-rule",
            Self::Security => "security",
            Self::Login => "login",
            Self::Forbidden => "forbidden",
            Self::NotSupported => "not-supported",
            Self::Duplicate => "duplicate",
            Self::NotFound => "not-found",
            Self::Deleted => "deleted",
            Self::TooLong => "too-long",
            Self::Conflict => "conflict",
            Self::Exception => "exception",
            Self::Timeout => "timeout",
            Self::TooCostly => "too-costly",
            Self::Throttled => "throttled",
            Self::Transient => "transient",
            Self::Processing => "processing",
            Self::Informational => "informational",
        }
    }
}

/// `issue.details.coding` codes from the NHS Spine error-or-warning code system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpineCode {
    AccessDenied,
    DuplicateRejected,
    InvalidNhsNumber,
    InvalidParameter,
    InvalidResource,
    InvalidResourceId,
    PreconditionFailed,
    ReferenceNotFound,
    ResourceNotFound,
    ResourceVersionMismatch,
    UnsupportedService,
}

impl SpineCode {
    pub fn code(self) -> &'static str {
        match self {
            Self::AccessDenied => "ACCESS_DENIED",
            Self::DuplicateRejected => "DUPLICATE_REJECTED",
            Self::InvalidNhsNumber => "INVALID_NHS_NUMBER",
            Self::InvalidParameter => "INVALID_PARAMETER",
            Self::InvalidResource => "INVALID_RESOURCE",
            Self::InvalidResourceId => "INVALID_RESOURCE_ID",
            Self::PreconditionFailed => "PRECONDITION_FAILED",
            Self::ReferenceNotFound => "REFERENCE_NOT_FOUND",
            Self::ResourceNotFound => "RESOURCE_NOT_FOUND",
            Self::ResourceVersionMismatch => "RESOURCE_VERSION_MISMATCH",
            Self::UnsupportedService => "UNSUPPORTED_SERVICE",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            Self::AccessDenied => "Access has been denied to process this request",
            Self::DuplicateRejected => "Create would lead to creation of a duplicate resource",
            Self::InvalidNhsNumber => "Invalid NHS number",
            Self::InvalidParameter => "Invalid parameter",
            Self::InvalidResource => "Invalid resource",
            Self::InvalidResourceId => "Invalid resource ID",
            Self::PreconditionFailed => "Precondition failed",
            Self::ReferenceNotFound => "Reference not found",
            Self::ResourceNotFound => "Resource not found",
            Self::ResourceVersionMismatch => "Resource version mismatch",
            Self::UnsupportedService => "Unsupported service",
        }
    }
}

/// One `OperationOutcome.issue`.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueType,
    pub details: Option<SpineCode>,
    pub diagnostics: String,
    pub expression: Vec<String>,
}

impl Issue {
    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            details: None,
            diagnostics: diagnostics.into(),
            expression: Vec::new(),
        }
    }

    pub fn warning(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, diagnostics)
        }
    }

    pub fn information(diagnostics: impl Into<String>) -> Self {
        Self {
            severity: Severity::Information,
            ..Self::error(IssueType::Informational, diagnostics)
        }
    }

    pub fn with_details(mut self, details: SpineCode) -> Self {
        self.details = Some(details);
        self
    }

    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression.push(expression.into());
        self
    }

    fn to_json(&self) -> Value {
        let mut issue = Map::new();
        issue.insert("severity".into(), self.severity.as_str().into());
        issue.insert("code".into(), self.code.as_str().into());
        if let Some(details) = self.details {
            issue.insert(
                "details".into(),
                json!({ "coding": [{
                    "system": SPINE_ERROR_OR_WARNING_CODE,
                    "code": details.code(),
                    "display": details.display(),
                }]}),
            );
        }
        if !self.diagnostics.is_empty() {
            issue.insert("diagnostics".into(), self.diagnostics.clone().into());
        }
        if !self.expression.is_empty() {
            issue.insert("expression".into(), self.expression.clone().into());
        }
        Value::Object(issue)
    }
}

/// Renders issues as an OperationOutcome resource (at least one issue, as R4 requires).
pub fn operation_outcome(issues: &[Issue]) -> Value {
    let issues: Vec<Value> = if issues.is_empty() {
        vec![Issue::information("All OK").to_json()]
    } else {
        issues.iter().map(Issue::to_json).collect()
    };
    json!({ "resourceType": "OperationOutcome", "issue": issues })
}
