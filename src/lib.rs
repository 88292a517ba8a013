//! carerecord: a FHIR R4 shared care record server, one FHIR base per local health and care system.
//!
//! Layers, dependencies pointing one way: `api` (actix) → `fhir`, `validation` (pure model) →
//! `store` (diesel). See DESIGN.md.

pub mod api;
pub mod audit;
pub mod auth;
pub mod bundle;
pub mod cli;
pub mod comments;
pub mod error;
pub mod fhir;
pub mod fhirpath;
pub mod import;
pub mod loadgen;
pub mod search;
pub mod settings;
pub mod startup;
pub mod store;
pub mod synthetic;
pub mod validation;
pub mod write;
