//! FHIR search (<https://hl7.org/fhir/R4/search.html>): the parameters as data ([`registry`]),
//! index extraction by FHIRPath ([`extract`]), request parsing ([`query`]) and SQL building
//! ([`sql`]). Knows nothing of actix; the store runs what it builds.

pub mod compartment;
pub mod extract;
pub mod paging;
pub mod query;
pub mod registry;
pub mod shape;
pub mod sql;
pub mod values;

use std::sync::Arc;

use serde_json::Value;

use crate::fhir::definitions::Definitions;
use crate::fhir::ResourceType;
pub use extract::IndexRows;
use registry::Registry;

/// Everything search needs, built once at start.
#[derive(Debug)]
pub struct Search {
    pub registry: Registry,
    pub compartment: compartment::PatientCompartment,
}

impl Search {
    pub fn new(defs: &Arc<Definitions>) -> Self {
        let params: Vec<Value> = defs
            .conformance("SearchParameter")
            .map(|r| (**r).clone())
            .collect();
        Self {
            registry: Registry::load(defs, &params),
            compartment: compartment::PatientCompartment::load(),
        }
    }

    /// The index rows of a resource version.
    pub fn index(&self, rtype: ResourceType, resource: &Value) -> IndexRows {
        extract::extract(&self.registry, rtype, resource)
    }
}
