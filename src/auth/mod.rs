//! Access control: bearer tokens (JWT), roles, SMART v2 scopes, and the one policy function that
//! decides every request (see DESIGN.md, "Access").
//!
//! - Tokens are verified by [`keys::Verifier`]: HS256 with the server's secret (for local use and
//!   `carerecord token`), RS256/ES256 with configured public keys (an external identity provider
//!   such as NHS CIS2 or NHS login); the algorithm is pinned to the key, `exp`/`nbf` are checked
//!   with a small clock skew, and `iss`/`aud` when configured.
//! - [`authorize`] decides an interaction on a type for a caller: role, scope, and the token's
//!   local system. A patient is confined to its own compartment by the callers of
//!   [`Caller::patient`], which answer 404 (never 403) for anything outside it.

pub mod keys;
pub mod rate;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::fhir::{ResourceId, ResourceType};

/// Who a token says the caller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Clinician,
    Patient,
    Feeder,
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "clinician" => Some(Self::Clinician),
            "patient" => Some(Self::Patient),
            "feeder" => Some(Self::Feeder),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clinician => "clinician",
            Self::Patient => "patient",
            Self::Feeder => "feeder",
            Self::Admin => "admin",
        }
    }

    /// The scopes a token of this role carries when none are given (DESIGN.md).
    pub fn default_scope(self) -> &'static str {
        match self {
            Self::Feeder => "system/*.cruds",
            Self::Clinician => "user/*.rs",
            Self::Patient => "patient/*.rs",
            Self::Admin => "",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims this server reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    /// The one local system the token is valid for.
    pub system: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    #[serde(rename = "fhirUser", default, skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose_of_use: Option<String>,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// What an interaction needs, as SMART v2 permission letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Interaction {
    fn letter(self) -> char {
        match self {
            Self::Create => 'c',
            Self::Read => 'r',
            Self::Update => 'u',
            Self::Delete => 'd',
            Self::Search => 's',
        }
    }

    /// The audit action code (C/R/U/D/E).
    pub fn action(self) -> &'static str {
        match self {
            Self::Create => "C",
            Self::Read => "R",
            Self::Update => "U",
            Self::Delete => "D",
            Self::Search => "E",
        }
    }
}

/// One SMART v2 scope: `user/Encounter.rs`, `system/*.cruds` (v1 `read`/`write`/`*` accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scope {
    /// `None` for `*`.
    resource: Option<String>,
    permissions: String,
}

fn parse_scopes(text: &str) -> Vec<Scope> {
    text.split_whitespace()
        .filter_map(|scope| {
            let (context, rest) = scope.split_once('/')?;
            if !matches!(context, "patient" | "user" | "system") {
                return None;
            }
            let (resource, permissions) = rest.split_once('.')?;
            let permissions = match permissions {
                "read" => "rs".to_owned(),
                "write" => "cud".to_owned(),
                "*" => "cruds".to_owned(),
                // v2 permissions may carry a query (`rs?category=...`), which narrows nothing here.
                other => other.split('?').next().unwrap_or_default().to_owned(),
            };
            Some(Scope {
                resource: (resource != "*").then(|| resource.to_owned()),
                permissions,
            })
        })
        .collect()
}

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: Claims,
    scopes: Vec<Scope>,
    /// A break-glass reason (from `purpose_of_use` BTG or the `X-Break-Glass-Reason` header).
    pub break_glass: Option<String>,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// 403 ACCESS_DENIED.
    #[error("{0}")]
    Forbidden(String),
    /// 404: the caller may not learn that it exists (a patient asking for another's record).
    #[error("{0}")]
    Hidden(String),
}

impl Caller {
    pub fn new(claims: Claims, break_glass_header: Option<String>) -> Self {
        let scope_text = if claims.scope.trim().is_empty() {
            claims.role.default_scope().to_owned()
        } else {
            claims.scope.clone()
        };
        let break_glass = break_glass_header
            .filter(|r| !r.trim().is_empty())
            .or_else(|| {
                claims
                    .purpose_of_use
                    .as_deref()
                    .filter(|p| p.eq_ignore_ascii_case("BTG"))
                    .map(|_| "purpose_of_use BTG".to_owned())
            });
        Self {
            scopes: parse_scopes(&scope_text),
            claims,
            break_glass,
        }
    }

    pub fn role(&self) -> Role {
        self.claims.role
    }

    /// The Patient a patient token is confined to.
    pub fn patient(&self) -> Option<ResourceId> {
        if self.claims.role != Role::Patient {
            return None;
        }
        self.claims
            .fhir_user
            .as_deref()
            .and_then(|u| u.strip_prefix("Patient/"))
            .and_then(ResourceId::parse)
    }

    fn allows(&self, rtype: &str, interaction: Interaction) -> bool {
        self.scopes.iter().any(|s| {
            s.resource.as_deref().is_none_or(|r| r == rtype)
                && s.permissions.contains(interaction.letter())
        })
    }
}

/// The policy: may `caller`, on the local system `system`, perform `interaction` on `rtype`?
pub fn authorize(
    caller: &Caller,
    system: &str,
    rtype: &str,
    interaction: Interaction,
) -> Result<(), Denied> {
    if caller.claims.system != system {
        return Err(Denied::Forbidden(format!(
            "the token is for local system '{}', not '{system}'",
            caller.claims.system
        )));
    }
    match caller.role() {
        Role::Admin => {
            return Err(Denied::Forbidden(
                "an admin token manages local systems; it reads no patient data".into(),
            ))
        }
        Role::Patient => {
            if caller.patient().is_none() {
                return Err(Denied::Forbidden(
                    "a patient token needs fhirUser Patient/[id]".into(),
                ));
            }
            if !matches!(interaction, Interaction::Read | Interaction::Search) {
                return Err(Denied::Forbidden(
                    "a patient may read their record and add comments, not change it".into(),
                ));
            }
        }
        Role::Clinician | Role::Feeder => {}
    }
    if ResourceType::parse(rtype).is_some_and(ResourceType::is_server_written)
        && !matches!(interaction, Interaction::Read | Interaction::Search)
    {
        return Err(Denied::Forbidden(format!(
            "{rtype} is written by the server only"
        )));
    }
    if caller.allows(rtype, interaction) {
        Ok(())
    } else {
        Err(Denied::Forbidden(format!(
            "the token's scope does not allow {} on {rtype}",
            match interaction {
                Interaction::Create => "create",
                Interaction::Read => "read",
                Interaction::Update => "update",
                Interaction::Delete => "delete",
                Interaction::Search => "search",
            }
        )))
    }
}

/// Whether a caller may manage local systems.
pub fn authorize_admin(caller: &Caller) -> Result<(), Denied> {
    if caller.role() == Role::Admin {
        Ok(())
    } else {
        Err(Denied::Forbidden(
            "the admin API needs an admin token".into(),
        ))
    }
}

/// The Patient a resource belongs to, if any: itself, or its subject (Encounter, ServiceRequest).
pub fn patient_of(rtype: ResourceType, resource: &serde_json::Value) -> Option<String> {
    match rtype {
        ResourceType::Patient => resource["id"].as_str().map(str::to_owned),
        ResourceType::Encounter | ResourceType::ServiceRequest => resource["subject"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("Patient/"))
            .map(|id| id.split('/').next().unwrap_or(id).to_owned()),
        // A comment's Provenance belongs to the patient it records as the author.
        ResourceType::Provenance => resource["target"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(
                resource["agent"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| &a["who"]),
            )
            .filter_map(|r| r["reference"].as_str())
            .find_map(|r| r.strip_prefix("Patient/"))
            .map(|id| id.split('/').next().unwrap_or(id).to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, scope: &str, fhir_user: Option<&str>) -> Caller {
        Caller::new(
            Claims {
                sub: "u".into(),
                role,
                system: "a".into(),
                scope: scope.into(),
                fhir_user: fhir_user.map(str::to_owned),
                org: None,
                purpose_of_use: None,
                exp: 0,
                nbf: None,
                iat: None,
                iss: None,
                aud: None,
            },
            None,
        )
    }

    #[test]
    fn roles_scopes_and_systems() {
        let feeder = caller(Role::Feeder, "", None);
        assert!(authorize(&feeder, "a", "Patient", Interaction::Create).is_ok());
        assert!(authorize(&feeder, "b", "Patient", Interaction::Read).is_err());
        let clinician = caller(Role::Clinician, "", None);
        assert!(authorize(&clinician, "a", "Encounter", Interaction::Search).is_ok());
        assert!(authorize(&clinician, "a", "Encounter", Interaction::Update).is_err());
        let writer = caller(
            Role::Clinician,
            "user/Encounter.cruds user/Patient.rs",
            None,
        );
        assert!(authorize(&writer, "a", "Encounter", Interaction::Update).is_ok());
        assert!(authorize(&writer, "a", "Patient", Interaction::Update).is_err());
        let patient = caller(Role::Patient, "", Some("Patient/p1"));
        assert!(authorize(&patient, "a", "Encounter", Interaction::Read).is_ok());
        assert!(authorize(&patient, "a", "Encounter", Interaction::Create).is_err());
        assert!(authorize(
            &caller(Role::Patient, "", None),
            "a",
            "Patient",
            Interaction::Read
        )
        .is_err());
        assert!(authorize(
            &caller(Role::Admin, "", None),
            "a",
            "Patient",
            Interaction::Read
        )
        .is_err());
        assert!(authorize(
            &caller(Role::Feeder, "system/Patient.read", None),
            "a",
            "Patient",
            Interaction::Search
        )
        .is_ok());
    }
}
