//! Preparing a resource for storage, the one path every write takes (single interactions,
//! transaction and batch entries, PATCH results, import): normalise, validate, and derive what
//! the write transaction must check and record (NHS number, references, search index rows).

use actix_web::http::StatusCode;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::fhir::ResourceType;
use crate::search::Search;
use crate::store::resources::{Derived, ReferenceCheck};
use crate::validation::{Findings, Options, Validator};

/// How to prepare.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prepare {
    /// `Prefer: handling=lenient`: unknown elements are warnings, references need not resolve.
    pub lenient: bool,
    /// A transaction entry: its references are checked once every entry is written.
    pub defer_references: bool,
    /// Validation failures answer 422 even when structural (a PATCH result: the request itself
    /// was well formed).
    pub always_unprocessable: bool,
}

/// Normalises and validates `content` as a resource of `rtype`; on success returns it with the
/// facts its write needs.
pub fn prepare(
    validator: &Validator,
    search: &Search,
    rtype: ResourceType,
    mut content: Map<String, Value>,
    how: Prepare,
) -> Result<(Map<String, Value>, Derived), ApiError> {
    validator.normalise(&mut content);
    let resource = Value::Object(content);
    let options = Options {
        lenient: how.lenient,
        in_bundle: false,
        profiles: Vec::new(),
    };
    let findings = validator.validate(rtype, &resource, &options);
    if !findings.is_valid() {
        let status = if how.always_unprocessable {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::from_u16(findings.status()).unwrap_or(StatusCode::BAD_REQUEST)
        };
        let mut issues = findings.errors;
        issues.extend(findings.warnings);
        return Err(ApiError::Invalid { status, issues });
    }
    let derived = derive(search, rtype, &resource, findings, how.lenient);
    let Value::Object(content) = resource else {
        return Err(ApiError::Internal(
            "a validated resource is not an object".into(),
        ));
    };
    Ok((content, derived))
}

/// The write-time facts of a validated resource; references are not enforced under lenient
/// handling.
pub fn derive(
    search: &Search,
    rtype: ResourceType,
    resource: &Value,
    findings: Findings,
    lenient: bool,
) -> Derived {
    let references = if lenient {
        Vec::new()
    } else {
        findings
            .references
            .into_iter()
            .map(|r| ReferenceCheck {
                resource_type: r.resource_type,
                id: r.id,
                expression: r.expression,
            })
            .collect()
    };
    Derived {
        nhs_number: findings.nhs_number.map(|n| n.to_string()),
        indexes: search.index(rtype, resource),
        references,
    }
}
