//! Cost of the transaction engine's work before the database, for one generated 100-entry GP
//! feed Bundle: parsing it into entries, and then rewriting every `urn:uuid:` reference to the
//! entries' `Type/id` and preparing (normalise, validate, index) each resource.
//! `cargo bench --bench bundle`.
//!
//! The engine's rewriting function is private to `carerecord::bundle`; `rewrite` below does the
//! same (one pass over each resource, one hash lookup per string), so that the entries can be
//! prepared as the engine prepares them, through `carerecord::write::prepare`.

use std::collections::HashMap;
use std::hint::black_box;

use carerecord::bundle::{self, Entry};
use carerecord::fhir::resource::parse_object;
use carerecord::search::Search;
use carerecord::synthetic::{self, Options};
use carerecord::validation::Validator;
use carerecord::write::{prepare, Prepare};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{Map, Value};

const BASE: &str = "/fhir/default";

/// The generated GP feed Bundle with the most entries (about 100).
fn gp_bundle() -> Option<Vec<u8>> {
    let dir = tempfile::tempdir().ok()?;
    synthetic::generate(&Options::new(60, 1, dir.path())).ok()?;
    std::fs::read_dir(dir.path().join("bundles/1-gp"))
        .ok()?
        .filter_map(|f| std::fs::read(f.ok()?.path()).ok())
        .max_by_key(|bytes| bytes.windows(9).filter(|w| w == b"\"fullUrl\"").count())
}

fn rewrite(resource: &mut Map<String, Value>, mapping: &HashMap<String, String>) {
    fn walk(value: &mut Value, mapping: &HashMap<String, String>) {
        match value {
            Value::String(text) => {
                if let Some(target) = mapping.get(text.as_str()) {
                    *text = target.clone();
                }
            }
            Value::Object(map) => map.values_mut().for_each(|v| walk(v, mapping)),
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, mapping)),
            _ => {}
        }
    }
    resource.values_mut().for_each(|v| walk(v, mapping));
}

/// Rewrites and prepares every entry; the number prepared.
fn rewrite_and_prepare(validator: &Validator, search: &Search, entries: &[Entry]) -> usize {
    let mapping: HashMap<String, String> = entries
        .iter()
        .enumerate()
        .filter_map(|(n, e)| {
            let rtype = e.resource.as_ref()?.get("resourceType")?.as_str()?;
            Some((e.full_url.clone()?, format!("{rtype}/bench-{n}")))
        })
        .collect();
    let mut prepared = 0;
    for entry in entries {
        let Some(resource) = &entry.resource else {
            continue;
        };
        let Some(rtype) = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .and_then(carerecord::fhir::ResourceType::parse)
        else {
            continue;
        };
        let mut content = resource.clone();
        rewrite(&mut content, &mapping);
        let how = Prepare {
            defer_references: true,
            ..Prepare::default()
        };
        if prepare(validator, search, rtype, content, how).is_ok() {
            prepared += 1;
        }
    }
    prepared
}

fn bundles(c: &mut Criterion) {
    let (Ok(validator), Some(bytes)) = (Validator::new(), gp_bundle()) else {
        eprintln!("definitions or data failed to load");
        return;
    };
    let search = Search::new(validator.definitions());
    let parse = |bytes: &[u8]| {
        parse_object(bytes)
            .ok()
            .and_then(|object| bundle::parse(object, BASE).ok())
            .map(|(_, entries)| entries)
            .unwrap_or_default()
    };
    let entries = parse(&bytes);
    let n = entries.len();
    let prepared = rewrite_and_prepare(&validator, &search, &entries);
    if prepared != n {
        eprintln!("only {prepared} of {n} entries prepared");
    }
    let kb = bytes.len() / 1024;
    c.bench_function(&format!("parse a {n}-entry GP Bundle ({kb} KB)"), |b| {
        b.iter(|| black_box(parse(black_box(&bytes)).len()))
    });
    c.bench_function(&format!("rewrite + prepare {n} entries"), |b| {
        b.iter(|| {
            black_box(rewrite_and_prepare(
                &validator,
                &search,
                black_box(&entries),
            ))
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bundles
}
criterion_main!(benches);
