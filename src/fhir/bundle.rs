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

/// How an entry came into a searchset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    Match,
    Include,
    Outcome,
}

impl SearchMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Match => "match",
            Self::Include => "include",
            Self::Outcome => "outcome",
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SearchEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    full_url: Option<String>,
    resource: Box<RawValue>,
    search: SearchEntryMode,
}

#[derive(Debug, Serialize)]
struct SearchEntryMode {
    mode: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Searchset {
    resource_type: &'static str,
    id: String,
    meta: BundleMeta,
    #[serde(rename = "type")]
    bundle_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    link: Vec<Link>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<SearchEntry>,
}

/// Builds a `searchset` Bundle; resources are embedded as the stored JSON text.
#[derive(Debug, Default)]
pub struct SearchsetBuilder {
    links: Vec<Link>,
    total: Option<u64>,
    entries: Vec<SearchEntry>,
}

impl SearchsetBuilder {
    pub fn link(&mut self, relation: &'static str, url: String) -> &mut Self {
        self.links.push(Link { relation, url });
        self
    }

    pub fn total(&mut self, total: Option<u64>) -> &mut Self {
        self.total = total;
        self
    }

    /// Adds an entry; `resource` must be JSON text (it is embedded without re-parsing).
    pub fn entry(
        &mut self,
        full_url: Option<String>,
        resource: String,
        mode: SearchMode,
    ) -> Result<&mut Self, serde_json::Error> {
        self.entries.push(SearchEntry {
            full_url,
            resource: RawValue::from_string(resource)?,
            search: SearchEntryMode {
                mode: mode.as_str(),
            },
        });
        Ok(self)
    }

    pub fn to_json(self) -> Result<String, serde_json::Error> {
        serde_json::to_string(&Searchset {
            resource_type: "Bundle",
            id: uuid::Uuid::new_v4().to_string(),
            meta: BundleMeta {
                last_updated: Millis::now().to_instant(),
            },
            bundle_type: "searchset",
            total: self.total,
            link: self.links,
            entry: self.entries,
        })
    }
}
