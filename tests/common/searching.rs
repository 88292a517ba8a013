//! Reading searchset Bundles, following their links, and checking tables of `(query, expected
//! ids)` cases, reporting every mismatch at once rather than stopping at the first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use serde_json::Value;

use super::TestApp;

/// `Type/id` of every entry with `search.mode` = `mode`, in Bundle order.
pub fn entries(bundle: &Value, mode: &str) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == mode)
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect()
}

/// The ids of the matches, in Bundle order.
pub fn match_ids(bundle: &Value) -> Vec<String> {
    entries(bundle, "match")
        .into_iter()
        .map(|t| t.split_once('/').unwrap().1.to_owned())
        .collect()
}

/// The URL of a link relation.
pub fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)
        .map(|l| l["url"].as_str().unwrap().to_owned())
}

/// A searchset from `path` (relative to the server, or a full URL); panics on anything else.
pub async fn searchset(app: &TestApp, path: &str) -> Value {
    let reply = app.get(path).await;
    assert_eq!(
        reply.status.as_u16(),
        200,
        "{path}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    let bundle = reply.json();
    assert_eq!(bundle["resourceType"], "Bundle", "{path}");
    assert_eq!(bundle["type"], "searchset", "{path}");
    bundle
}

/// The pages from `start` on, following `relation` links (`next` or `previous`).
pub async fn walk(app: &TestApp, start: &str, relation: &str) -> Vec<Value> {
    let mut pages = vec![searchset(app, start).await];
    while let Some(url) = link(pages.last().unwrap(), relation) {
        assert!(pages.len() < 1000, "{relation} links never end");
        pages.push(searchset(app, &url).await);
    }
    pages
}

/// Owned ids from string slices.
pub fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// One search and the exact ids of its matches (in any order).
pub struct Case {
    pub query: String,
    pub expected: Vec<String>,
}

pub fn case(query: impl Into<String>, expected: Vec<String>) -> Case {
    Case {
        query: query.into(),
        expected,
    }
}

/// Runs every case in `system` (each query is `Type?params`, asked for in one page) and panics
/// listing every case whose matches differ from the expected ids.
pub async fn check(app: &TestApp, system: &str, cases: &[Case]) {
    let base = app.base(system);
    let mut failures = Vec::new();
    for case in cases {
        let separator = if case.query.contains('?') { '&' } else { '?' };
        let path = format!("/fhir/{system}/{}{separator}_count=1000", case.query);
        let reply = app.get(&path).await;
        if reply.status != 200 {
            failures.push(format!(
                "{}: status {} {}",
                case.query,
                reply.status,
                String::from_utf8_lossy(&reply.body)
            ));
            continue;
        }
        let bundle = reply.json();
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            if let Some(url) = entry["fullUrl"].as_str() {
                assert!(url.starts_with(&base), "{}: {url}", case.query);
            }
        }
        let found = match_ids(&bundle);
        let found_set: BTreeSet<&String> = found.iter().collect();
        let expected: BTreeSet<&String> = case.expected.iter().collect();
        if found.len() != found_set.len() {
            failures.push(format!("{}: duplicate matches {found:?}", case.query));
        }
        if found_set != expected {
            let missing: Vec<_> = expected.difference(&found_set).collect();
            let unexpected: Vec<_> = found_set.difference(&expected).collect();
            failures.push(format!(
                "{}: missing {missing:?}, unexpected {unexpected:?}",
                case.query
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
