//! Bundles the server builds (history now; searchset and transaction-response later). Stored
//! resource JSON is embedded as raw text, never re-parsed.

use serde::Serialize;
use serde_json::value::RawValue;

use super::instant::Millis;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    resource_type: &'static str,
    id: String,
    meta: BundleMeta,
    #[serde(rename = "type")]
    bundle_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    link: Vec<Link>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<Entry>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BundleMeta {
    last_updated: String,
}

#[derive(Debug, Serialize)]
pub struct Link {
    relation: &'static str,
    url: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    full_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<Box<RawValue>>,
    request: EntryRequest,
    response: EntryResponse,
}

#[derive(Debug, Serialize)]
pub struct EntryRequest {
    method: String,
    url: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryResponse {
    status: &'static str,
    etag: String,
    last_modified: String,
}

/// One version in a history Bundle.
#[derive(Debug)]
pub struct HistoryEntry {
    pub full_url: String,
    /// `None` for a delete (tombstone).
    pub resource: Option<Box<RawValue>>,
    pub method: String,
    /// The request URL relative to the base: `Patient` for a create, `Patient/123` otherwise.
    pub request_url: String,
    pub version: i64,
    pub last_updated: Millis,
}

impl Bundle {
    /// A `history` Bundle, newest first as the caller ordered the entries.
    pub fn history(
        self_url: String,
        next_url: Option<String>,
        total: Option<u64>,
        entries: Vec<HistoryEntry>,
    ) -> Self {
        let mut link = vec![Link {
            relation: "self",
            url: self_url,
        }];
        if let Some(url) = next_url {
            link.push(Link {
                relation: "next",
                url,
            });
        }
        let entry = entries
            .into_iter()
            .map(|e| {
                let status = match e.method.as_str() {
                    "POST" => "201 Created",
                    "DELETE" => "204 No Content",
                    _ => "200 OK",
                };
                Entry {
                    full_url: e.full_url,
                    resource: e.resource,
                    request: EntryRequest {
                        method: e.method,
                        url: e.request_url,
                    },
                    response: EntryResponse {
                        status,
                        etag: format!("W/\"{}\"", e.version),
                        last_modified: e.last_updated.to_instant(),
                    },
                }
            })
            .collect();
        Self {
            resource_type: "Bundle",
            id: uuid::Uuid::new_v4().to_string(),
            meta: BundleMeta {
                last_updated: Millis::now().to_instant(),
            },
            bundle_type: "history",
            total,
            link,
            entry,
        }
    }
}
