//! Cost of search index extraction (FHIRPath over each SearchParameter of the type) for the
//! resources of the synthetic data set: what every write adds on top of validation.
//! `cargo bench --bench extraction`.

use std::hint::black_box;

use carerecord::fhir::ResourceType;
use carerecord::search::Search;
use carerecord::synthetic::{self, Options};
use carerecord::validation::Validator;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::Value;

/// The first resource of each type in the generated NDJSON, and a hospital (inpatient) Encounter.
fn samples() -> Vec<(String, ResourceType, Value)> {
    let Ok(dir) = tempfile::tempdir() else {
        return Vec::new();
    };
    if synthetic::generate(&Options::new(2, 1, dir.path())).is_err() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (file, label) in [
        ("4-Patient.ndjson", "Patient"),
        ("6-Encounter.ndjson", "Encounter (GP consultation)"),
        ("5-ServiceRequest.ndjson", "ServiceRequest (referral)"),
        ("3-Practitioner.ndjson", "Practitioner"),
        ("1-Organization.ndjson", "Organization"),
    ] {
        let Ok(text) = std::fs::read_to_string(dir.path().join("ndjson").join(file)) else {
            continue;
        };
        let mut lines = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok());
        if let Some(resource) = lines.next() {
            if let Some(rtype) = resource["resourceType"]
                .as_str()
                .and_then(ResourceType::parse)
            {
                out.push((label.to_owned(), rtype, resource));
            }
        }
        if file == "6-Encounter.ndjson" {
            if let Some(resource) = lines.find(|r| r["class"]["code"] == "IMP") {
                out.push((
                    "Encounter (inpatient)".into(),
                    ResourceType::Encounter,
                    resource,
                ));
            }
        }
    }
    out
}

fn extraction(c: &mut Criterion) {
    let Ok(validator) = Validator::new() else {
        eprintln!("definitions failed to load");
        return;
    };
    let search = Search::new(validator.definitions());
    for (label, rtype, resource) in samples() {
        let rows = search.index(rtype, &resource).len();
        c.bench_function(&format!("index {label} ({rows} rows)"), |b| {
            b.iter(|| black_box(search.index(rtype, black_box(&resource))))
        });
    }
}

criterion_group!(benches, extraction);
criterion_main!(benches);
