//! Newtypes that can only be built valid: past the HTTP edge, code trusts them.

use std::fmt;

/// The resource types this server stores and indexes (see DESIGN.md, "Resources").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Patient,
    Encounter,
    ServiceRequest,
    Organization,
    Practitioner,
    PractitionerRole,
    Location,
    /// Server-written (patient comments): readable, never written through the API.
    Provenance,
}

impl ResourceType {
    pub const ALL: [ResourceType; 7] = [
        Self::Patient,
        Self::Encounter,
        Self::ServiceRequest,
        Self::Organization,
        Self::Practitioner,
        Self::PractitionerRole,
        Self::Location,
    ];

    /// The types the server writes itself; clients may read them but not write them.
    pub const SERVER_WRITTEN: [ResourceType; 1] = [Self::Provenance];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .chain(Self::SERVER_WRITTEN)
            .find(|t| t.as_str() == name)
    }

    pub fn is_server_written(self) -> bool {
        Self::SERVER_WRITTEN.contains(&self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Patient => "Patient",
            Self::Encounter => "Encounter",
            Self::ServiceRequest => "ServiceRequest",
            Self::Organization => "Organization",
            Self::Practitioner => "Practitioner",
            Self::PractitionerRole => "PractitionerRole",
            Self::Location => "Location",
            Self::Provenance => "Provenance",
        }
    }

    /// The supported types as a human-readable list, for error messages.
    pub fn supported_list() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A logical resource id: `[A-Za-z0-9\-\.]{1,64}` (FHIR R4 `id` datatype).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceId(String);

impl ResourceId {
    pub fn parse(value: &str) -> Option<Self> {
        let valid = (1..=64).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        valid.then(|| Self(value.to_owned()))
    }

    /// A fresh server-assigned id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A local system's slug: `[a-z0-9-]{1,63}`, the `{system}` segment of its FHIR base URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SystemSlug(String);

impl SystemSlug {
    pub fn parse(value: &str) -> Option<Self> {
        let valid = (1..=63).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        valid.then(|| Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SystemSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A version id. The server numbers versions 1, 2, 3... per resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct VersionId(i64);

impl VersionId {
    pub const FIRST: VersionId = VersionId(1);

    pub fn new(value: i64) -> Option<Self> {
        (value >= 1).then_some(Self(value))
    }

    /// Parses a bare version id (`3`), as found in `_history/{vid}`.
    pub fn parse(value: &str) -> Option<Self> {
        if value.is_empty() || value.len() > 18 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        value.parse().ok().and_then(Self::new)
    }

    /// Parses an entity tag as sent in `If-Match` / `If-None-Match`: `W/"3"`, `"3"`.
    pub fn parse_etag(value: &str) -> Option<Self> {
        let value = value.trim();
        let value = value.strip_prefix("W/").unwrap_or(value);
        let value = value.strip_prefix('"')?.strip_suffix('"')?;
        Self::parse(value)
    }

    pub fn get(self) -> i64 {
        self.0
    }

    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }

    /// The weak entity tag for this version: `W/"3"`.
    pub fn etag(self) -> String {
        format!("W/\"{}\"", self.0)
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_follow_the_fhir_id_rule() {
        for ok in ["a", "123", "example-1.2", &"x".repeat(64)] {
            assert!(ResourceId::parse(ok).is_some(), "{ok} should be valid");
        }
        for bad in ["", "a b", "a_b", "a/b", "é", &"x".repeat(65)] {
            assert!(ResourceId::parse(bad).is_none(), "{bad} should be invalid");
        }
    }

    #[test]
    fn system_slugs_are_lowercase_and_short() {
        assert!(SystemSlug::parse("north-east-1").is_some());
        for bad in ["", "North", "a_b", "a.b", &"a".repeat(64)] {
            assert!(SystemSlug::parse(bad).is_none(), "{bad} should be invalid");
        }
    }

    #[test]
    fn etags_parse_weak_and_strong_forms() {
        assert_eq!(VersionId::parse_etag("W/\"3\""), VersionId::new(3));
        assert_eq!(VersionId::parse_etag("\"12\""), VersionId::new(12));
        assert_eq!(VersionId::parse_etag("3"), None);
        assert_eq!(VersionId::parse_etag("W/\"0\""), None);
        assert_eq!(VersionId::parse_etag("W/\"x\""), None);
        assert_eq!(VersionId::FIRST.etag(), "W/\"1\"");
    }
}
