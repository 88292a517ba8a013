//! Value normalisation shared by indexing and querying: string folding, date ranges.

use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Case- and accent-insensitive form of a string (`Zoë` → `zoe`), as FHIR string search compares.
pub fn fold(text: &str) -> String {
    text.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The smallest string greater than every string starting with `prefix`, for index range scans
/// (`value >= prefix AND value < upper`). `None` when there is no such bound.
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The earliest and latest instants (ms since the epoch, inclusive) a FHIR date, dateTime or
/// instant covers at its precision: `2024` covers the whole year. Dates without a time zone are
/// taken as UTC.
pub fn date_range(text: &str) -> Option<(i64, i64)> {
    let text = text.trim();
    if let Some((date, time)) = text.split_once('T') {
        // A search value may leave out the time zone (`yyyy-mm-ddThh:mm:ss[Z|(+|-)hh:mm]`);
        // like a date, it is then taken as UTC.
        let start = if time.contains(['Z', '+', '-']) {
            chrono::DateTime::parse_from_rfc3339(text)
                .ok()?
                .timestamp_millis()
        } else {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()?
                .and_utc()
                .timestamp_millis()
        };
        // Whole seconds cover their second; fractions are exact to the millisecond.
        let has_fraction = text[date.len()..].contains('.');
        return Some((start, if has_fraction { start } else { start + 999 }));
    }
    let parts: Vec<&str> = text.split('-').collect();
    let year: i32 = parts.first()?.parse().ok()?;
    if parts[0].len() != 4 {
        return None;
    }
    let (first, last) = match parts.len() {
        1 => (
            NaiveDate::from_ymd_opt(year, 1, 1)?,
            NaiveDate::from_ymd_opt(year, 12, 31)?,
        ),
        2 => {
            let month: u32 = parts[1].parse().ok()?;
            let first = NaiveDate::from_ymd_opt(year, month, 1)?;
            let next = if month == 12 {
                NaiveDate::from_ymd_opt(year + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(year, month + 1, 1)?
            };
            (first, next.pred_opt()?)
        }
        3 => {
            let day =
                NaiveDate::from_ymd_opt(year, parts[1].parse().ok()?, parts[2].parse().ok()?)?;
            (day, day)
        }
        _ => return None,
    };
    let start = Utc
        .from_utc_datetime(&first.and_hms_opt(0, 0, 0)?)
        .timestamp_millis();
    let end = Utc
        .from_utc_datetime(&last.and_hms_milli_opt(23, 59, 59, 999)?)
        .timestamp_millis();
    debug_assert!(first.year() == year);
    Some((start, end))
}

/// The implied range of a decimal at its precision: `5.4` → [5.35, 5.45].
pub fn number_range(text: &str) -> Option<(f64, f64)> {
    let value: f64 = text.parse().ok()?;
    let decimals = text
        .split_once('.')
        .map(|(_, frac)| frac.chars().take_while(char::is_ascii_digit).count())
        .unwrap_or(0);
    let half = 0.5 * 10f64.powi(-(decimals as i32));
    Some((value - half, value + half))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_and_bounds() {
        assert_eq!(fold("Zoë ÉLODIE"), "zoe elodie");
        assert_eq!(prefix_upper_bound("smi").as_deref(), Some("smj"));
        assert_eq!(prefix_upper_bound(""), None);
    }

    #[test]
    fn date_ranges_follow_precision() {
        let (a, b) = date_range("2024").unwrap();
        assert_eq!(b - a + 1, 366 * 86_400_000);
        let (a, b) = date_range("2023-02").unwrap();
        assert_eq!(b - a + 1, 28 * 86_400_000);
        let (a, b) = date_range("2023-02-03").unwrap();
        assert_eq!(b - a + 1, 86_400_000);
        let (a, b) = date_range("2023-02-03T10:00:00+01:00").unwrap();
        assert_eq!(
            (b - a, a),
            (999, date_range("2023-02-03T09:00:00Z").unwrap().0)
        );
        assert_eq!(
            date_range("2023-02-03T10:00:00.250Z").map(|(a, b)| b - a),
            Some(0)
        );
        assert!(date_range("2023-13").is_none());
        assert_eq!(
            date_range("2023-02-03T09:00:00"),
            date_range("2023-02-03T09:00:00Z")
        );
        assert!(date_range("2023-02-03T09:00").is_none());
        assert!(date_range("23").is_none());
        let (low, high) = number_range("5.4").unwrap();
        assert!((low - 5.35).abs() < 1e-9 && (high - 5.45).abs() < 1e-9);
    }
}
