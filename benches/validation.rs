//! Cost of write-time validation: parsing and validating a typical UK Core Patient, and the NHS
//! number check on its own. `cargo bench --bench validation`.

use std::hint::black_box;

use carerecord::fhir::resource::parse_resource;
use carerecord::fhir::ResourceType;
use carerecord::validation::nhs_number::NhsNumber;
use carerecord::validation::{Options, Validator};
use criterion::{criterion_group, criterion_main, Criterion};

const RICHARD_SMITH: &str =
    include_str!("../tests/fixtures/ukcore/UKCore-Patient-RichardSmith-Example.json");
const TYPICAL_PATIENT: &str = include_str!("../examples/patient-nhs-number.json");

fn validation(c: &mut Criterion) {
    let Ok(validator) = Validator::new() else {
        eprintln!("definitions failed to load");
        return;
    };
    let options = Options::default();
    for (name, text) in [
        ("typical Patient", TYPICAL_PATIENT),
        ("UK Core RichardSmith Patient", RICHARD_SMITH),
    ] {
        c.bench_function(&format!("parse + validate {name}"), |b| {
            b.iter(|| {
                let Ok(mut resource) =
                    parse_resource(black_box(text.as_bytes()), ResourceType::Patient)
                else {
                    return;
                };
                validator.normalise(&mut resource);
                let resource = serde_json::Value::Object(resource);
                let findings = validator.validate(ResourceType::Patient, &resource, &options);
                black_box(findings.is_valid());
            })
        });
    }
    c.bench_function("NHS number check", |b| {
        b.iter(|| black_box(NhsNumber::parse(black_box("9434765919")).is_ok()))
    });
}

criterion_group!(benches, validation);
criterion_main!(benches);
