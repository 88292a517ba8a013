//! Paging search results (<https://hl7.org/fhir/R4/http.html#paging>), on SQLite and PostgreSQL:
//! following `next` links collects every match exactly once even while resources are created,
//! updated and deleted between pages; `previous` walks the same pages back; `first` and `last`
//! work from any page; `self` repeats a page.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::{BTreeSet, HashSet};

use common::corpus::Corpus;
use common::searching::{link, match_ids, searchset, walk};
use common::TestApp;
use serde_json::json;

/// Every match of `query` on one page.
async fn all_matches(app: &TestApp, query: &str) -> Vec<String> {
    match_ids(&searchset(app, &format!("/fhir/default/{query}&_count=1000")).await)
}

/// What a walk saw: the ids in order, and the deletions and creations made along the way.
struct Walk {
    seen: Vec<String>,
    deleted_unseen: Vec<String>,
    created: Vec<String>,
}

/// Walks `query` with `next` links; after each page creates two Patients (family `Aaron…`, which
/// sorts before everything, and `Zzz…`, after everything), deletes one match not yet seen and one
/// already seen, and updates one of each (a new version keeps its place in key order).
async fn walk_while_changing(app: &TestApp, label: &str, query: &str, expected: &[String]) -> Walk {
    let mut walk = Walk {
        seen: Vec::new(),
        deleted_unseen: Vec::new(),
        created: Vec::new(),
    };
    let mut url = format!("/fhir/default/{query}");
    for round in 0.. {
        let page = searchset(app, &url).await;
        walk.seen.extend(match_ids(&page));
        let Some(next) = link(&page, "next") else {
            break;
        };
        assert!(round < 100, "next links never end");
        for family in ["Aaron", "Zzz"] {
            let id = format!("walk-{label}-{round}-{}", family.to_lowercase());
            let patient = json!({"resourceType": "Patient", "id": id, "name": [{"family": family}],
                                 "birthDate": "2015-01-01", "gender": "female"});
            assert_eq!(
                app.put(&format!("/fhir/default/Patient/{id}"), &patient)
                    .await
                    .status,
                201
            );
            walk.created.push(id);
        }
        let unseen: Vec<&String> = expected
            .iter()
            .filter(|id| !walk.seen.contains(id) && !walk.deleted_unseen.contains(id))
            .collect();
        if let Some(victim) = unseen.last() {
            assert_eq!(
                app.delete(&format!("/fhir/default/Patient/{victim}"))
                    .await
                    .status,
                204
            );
            walk.deleted_unseen.push((*victim).clone());
        }
        if let Some(unseen) = unseen.first() {
            touch(app, unseen).await;
        }
        let seen_patients: Vec<&String> = walk
            .seen
            .iter()
            .filter(|id| expected.contains(id))
            .collect();
        if let Some(seen) = seen_patients.first() {
            touch(app, seen).await;
        }
        if let Some(seen) = seen_patients.last().filter(|_| seen_patients.len() > 1) {
            assert_eq!(
                app.delete(&format!("/fhir/default/Patient/{seen}"))
                    .await
                    .status,
                204
            );
        }
        url = next;
    }
    walk
}

/// Writes a new version of a Patient with the same search values (a tag added).
async fn touch(app: &TestApp, id: &str) {
    let path = format!("/fhir/default/Patient/{id}");
    let reply = app.get(&path).await;
    if reply.status != 200 {
        return;
    }
    let mut patient = reply.json();
    patient["meta"] =
        json!({"tag": [{"system": "https://carerecord.invalid/tags", "code": "touched"}]});
    assert_eq!(app.put(&path, &patient).await.status, 200);
}

/// Deletes Patients (so that the next walk starts from the corpus alone).
async fn remove(app: &TestApp, ids: &[String]) {
    for id in ids {
        assert_eq!(
            app.delete(&format!("/fhir/default/Patient/{id}"))
                .await
                .status,
            204
        );
    }
}

fn assert_once(walk: &Walk, expected: &[String], query: &str) {
    let mut counted = HashSet::new();
    for id in &walk.seen {
        assert!(counted.insert(id), "{query}: {id} seen twice");
    }
    for id in expected {
        let deleted = walk.deleted_unseen.contains(id);
        assert_eq!(
            counted.contains(id),
            !deleted,
            "{query}: {id} (deleted before it was reached: {deleted})"
        );
    }
}

async fn walk_collects_every_match_once_while_data_changes(app: TestApp) {
    Corpus::load(&app, "default").await;

    // Key order: everything created during the walk comes after the cursor, and is seen.
    let query = "Patient?_count=10";
    let expected = all_matches(&app, "Patient?").await;
    let walk = walk_while_changing(&app, "keys", query, &expected).await;
    assert_once(&walk, &expected, query);
    for id in &walk.created {
        assert!(
            walk.seen.contains(id),
            "{query}: {id} comes after the cursor"
        );
    }
    remove(&app, &walk.created).await;

    // Sorted: a Patient created with a family before the cursor is not seen, one after it is.
    let query = "Patient?_sort=family,-birthdate&_count=9";
    let before: BTreeSet<String> = all_matches(&app, "Patient?").await.into_iter().collect();
    let expected: Vec<String> = all_matches(&app, "Patient?_sort=family,-birthdate")
        .await
        .into_iter()
        .filter(|id| !id.starts_with("walk-"))
        .collect();
    let walk = walk_while_changing(&app, "sorted", query, &expected).await;
    assert_once(&walk, &expected, query);
    for id in walk.created.iter().filter(|id| !before.contains(*id)) {
        if id.ends_with("-zzz") {
            assert!(walk.seen.contains(id), "{query}: {id} sorts last");
        } else {
            assert!(
                !walk.seen.contains(id),
                "{query}: {id} sorts before the cursor"
            );
        }
    }

    // A selective search, sorted descending on a date, with new matches arriving.
    let query = "Patient?gender=female&_sort=-birthdate,family&_count=4";
    let expected: Vec<String> = all_matches(&app, "Patient?gender=female")
        .await
        .into_iter()
        .filter(|id| !id.starts_with("walk-"))
        .collect();
    remove(&app, &walk.created).await;
    let walk = walk_while_changing(&app, "female", query, &expected).await;
    assert_once(&walk, &expected, query);
    let order = all_matches(&app, "Patient?gender=female&_sort=-birthdate,family").await;
    let seen_in_order: Vec<&String> = order.iter().filter(|id| walk.seen.contains(id)).collect();
    let seen_still_there: Vec<&String> = walk.seen.iter().filter(|id| order.contains(id)).collect();
    assert_eq!(
        seen_in_order, seen_still_there,
        "{query}: pages in sort order"
    );
}

async fn previous_first_last_and_self_links(app: TestApp) {
    Corpus::load(&app, "default").await;
    for (query, size) in [
        ("Patient?_sort=family,_id", 10),
        ("Encounter?status=finished,cancelled&_sort=-date", 25),
        ("Encounter?_sort=class,-length", 40),
        ("ServiceRequest?", 7),
        ("Patient?_sort=-_lastUpdated", 11),
    ] {
        let whole = all_matches(&app, query).await;
        let start = format!("/fhir/default/{query}&_count={size}");
        let forward = walk(&app, &start, "next").await;
        let pages: Vec<Vec<String>> = forward.iter().map(match_ids).collect();
        assert_eq!(pages.concat(), whole, "{query}");
        assert!(pages.len() > 2, "{query}: several pages");
        assert!(link(&forward[0], "previous").is_none(), "{query}");

        // Back from the final page with previous links: the same pages, in reverse.
        let backward = walk(
            &app,
            &link(forward.last().unwrap(), "self").unwrap(),
            "previous",
        )
        .await;
        let back_pages: Vec<Vec<String>> = backward.iter().map(match_ids).collect();
        let mut reversed = pages.clone();
        reversed.reverse();
        assert_eq!(back_pages, reversed, "{query}");
        assert!(link(backward.last().unwrap(), "next").is_some(), "{query}");

        // first from any page is the first page.
        for page in [
            &forward[1],
            forward.last().unwrap(),
            backward.last().unwrap(),
        ] {
            let first = searchset(&app, &link(page, "first").unwrap()).await;
            assert_eq!(match_ids(&first), pages[0], "{query}");
        }

        // last: the final page, a full page counted back from the end; previous from it goes
        // on backwards, next from the page before it comes back to it.
        let last = searchset(&app, &link(&forward[0], "last").unwrap()).await;
        let tail = whole[whole.len() - size..].to_vec();
        assert_eq!(match_ids(&last), tail, "{query}");
        assert!(link(&last, "next").is_none(), "{query}");
        let before_last = searchset(&app, &link(&last, "previous").unwrap()).await;
        let from = whole.len() - size;
        assert_eq!(
            match_ids(&before_last),
            whole[from.saturating_sub(size)..from].to_vec(),
            "{query}"
        );
        let again = searchset(&app, &link(&before_last, "next").unwrap()).await;
        assert_eq!(match_ids(&again), tail, "{query}");
        let all_back: Vec<String> = walk(&app, &link(&forward[0], "last").unwrap(), "previous")
            .await
            .iter()
            .rev()
            .flat_map(match_ids)
            .collect();
        assert_eq!(all_back, whole, "{query}");

        // self repeats the page.
        let middle = &forward[forward.len() / 2];
        let repeated = searchset(&app, &link(middle, "self").unwrap()).await;
        assert_eq!(match_ids(&repeated), match_ids(middle), "{query}");

        // Every link stays on this system's base and keeps the search's parameters.
        for relation in ["self", "first", "next", "previous", "last"] {
            let url = link(middle, relation).unwrap();
            assert!(url.starts_with(&app.base("default")), "{url}");
            assert!(url.contains(&format!("_count={size}")), "{url}");
        }
    }
}

on_both_backends!(
    walk_collects_every_match_once_while_data_changes,
    previous_first_last_and_self_links,
);
