//! Page cursors: the position of the row a page ends (or starts) at, carried in `next`,
//! `previous` and `last` links. Opaque to clients; nothing is kept on the server, so a link never
//! expires.

use serde::{Deserialize, Serialize};

use super::query::SortKey;
use super::registry::ParamType;
use super::sql::{Page, Position};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Encoded {
    /// Walk backwards (a `previous` link).
    #[serde(default)]
    b: bool,
    pk: i64,
    #[serde(default)]
    k: Vec<Option<String>>,
}

/// The cursor of a `last` link: the final page, counted back from the end.
pub const LAST: &str = "last";

/// A cursor continuing after (or, `backwards`, before) a row.
pub fn encode(position: &Position, backwards: bool) -> String {
    let encoded = Encoded {
        b: backwards,
        pk: position.pk,
        k: position.keys.clone(),
    };
    let json = serde_json::to_vec(&encoded).unwrap_or_default();
    json.iter().map(|b| format!("{b:02x}")).collect()
}

/// The page a cursor asks for; `None` when the cursor is not one this server issued for a
/// search sorted by `sort`.
pub fn decode(cursor: &str, page_size: usize, sort: &[SortKey]) -> Option<Page> {
    if cursor == LAST {
        return Some(Page {
            from: None,
            backwards: true,
            limit: page_size + 1,
        });
    }
    if cursor.len() % 2 != 0 || cursor.len() > 8192 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(cursor.get(i..i + 2)?, 16).ok())
        .collect();
    let encoded: Encoded = serde_json::from_slice(&bytes?).ok()?;
    // The keys are bound as typed values next to the sort columns; a key of another search or a
    // forged one would make a query that compares a number with text.
    if encoded.k.len() != sort.len()
        || !sort
            .iter()
            .zip(&encoded.k)
            .all(|(key, value)| fits(key, value.as_deref()))
    {
        return None;
    }
    Some(Page {
        from: Some(Position {
            keys: encoded.k,
            pk: encoded.pk,
        }),
        backwards: encoded.b,
        limit: page_size + 1,
    })
}

/// Whether `value` can be a sort key value of `key` as the server writes them.
fn fits(key: &SortKey, value: Option<&str>) -> bool {
    let Some(value) = value else {
        return true;
    };
    match (key.param.as_str(), key.kind) {
        ("_lastUpdated", _) | (_, ParamType::Date) => value.parse::<i64>().is_ok(),
        (_, ParamType::Quantity | ParamType::Number) => {
            value.parse::<f64>().is_ok_and(f64::is_finite)
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let position = Position {
            keys: vec![Some("smith".into()), None],
            pk: 42,
        };
        let key = |param: &str, kind| SortKey {
            param: param.into(),
            kind,
            descending: false,
        };
        let sort = [
            key("family", ParamType::String),
            key("birthdate", ParamType::Date),
        ];
        let page = decode(&encode(&position, true), 10, &sort).unwrap();
        assert_eq!(page.from, Some(position.clone()));
        assert!(page.backwards);
        assert_eq!(page.limit, 11);
        assert!(decode("zz", 10, &[]).is_none());
        assert!(decode("abc", 10, &[]).is_none());
        assert!(decode(LAST, 5, &[]).is_some_and(|p| p.backwards && p.from.is_none()));
        // Keys of another search, or of the wrong type, are refused.
        assert!(decode(&encode(&position, false), 10, &sort[..1]).is_none());
        let dated = Position {
            keys: vec![Some("smith".into()), Some("yesterday".into())],
            pk: 42,
        };
        assert!(decode(&encode(&dated, false), 10, &sort).is_none());
    }
}
