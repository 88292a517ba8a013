//! The FHIR model the server works with: resource types, ids, resource JSON handling, Bundles and
//! OperationOutcomes. Knows nothing of actix or diesel.

pub mod bundle;
pub mod definitions;
pub mod ids;
pub mod instant;
pub mod outcome;
pub mod resource;

pub use ids::{ResourceId, ResourceType, SystemSlug, VersionId};

/// The FHIR version every endpoint speaks.
pub const FHIR_VERSION: &str = "4.0.1";

/// The media type of every FHIR response body.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
