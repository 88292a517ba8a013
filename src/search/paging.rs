//! Page cursors: the position of the row a page ends (or starts) at, carried in `next`,
//! `previous` and `last` links. Opaque to clients; nothing is kept on the server, so a link never
//! expires.

use serde::{Deserialize, Serialize};

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

/// The page a cursor asks for; `None` when the cursor is not one this server issued.
pub fn decode(cursor: &str, page_size: usize) -> Option<Page> {
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
    Some(Page {
        from: Some(Position {
            keys: encoded.k,
            pk: encoded.pk,
        }),
        backwards: encoded.b,
        limit: page_size + 1,
    })
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
        let page = decode(&encode(&position, true), 10).unwrap();
        assert_eq!(page.from, Some(position));
        assert!(page.backwards);
        assert_eq!(page.limit, 11);
        assert!(decode("zz", 10).is_none());
        assert!(decode("abc", 10).is_none());
        assert!(decode(LAST, 5).is_some_and(|p| p.backwards && p.from.is_none()));
    }
}
