//! Comparing FHIR date/dateTime/instant values of possibly different precision (per-1).

/// The components of a FHIR date or dateTime as far as given: year, month, day, then the instant
/// in UTC seconds when a time is present.
fn components(value: &str) -> Option<(Vec<i64>, Option<f64>)> {
    let (date, time) = match value.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (value, None),
    };
    let parts: Option<Vec<i64>> = date.split('-').map(|p| p.parse().ok()).collect();
    let parts = parts?;
    let seconds = match time {
        None => None,
        Some(_) => chrono::DateTime::parse_from_rfc3339(value)
            .ok()
            .map(|d| d.timestamp() as f64 + f64::from(d.timestamp_subsec_millis()) / 1000.0),
    };
    Some((parts, seconds))
}

/// True only when `start` is certainly later than `end`: at full precision, or earlier in a
/// component both values state. Different precisions that agree so far are not a violation.
pub fn definitely_after(start: &str, end: &str) -> bool {
    let (Some((a, at)), Some((b, bt))) = (components(start), components(end)) else {
        return false;
    };
    if let (Some(at), Some(bt)) = (at, bt) {
        return at > bt;
    }
    for (x, y) in a.iter().zip(b.iter()) {
        if x != y {
            return x > y;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::definitely_after;

    #[test]
    fn partial_precision() {
        assert!(definitely_after("2020-05-02", "2020-05-01"));
        assert!(!definitely_after("2020-05-01", "2020-05-01"));
        assert!(!definitely_after("2020", "2020-05-01"));
        assert!(definitely_after("2021", "2020-05-01"));
        assert!(definitely_after(
            "2020-05-01T10:00:00Z",
            "2020-05-01T09:00:00Z"
        ));
        assert!(!definitely_after(
            "2020-05-01T10:00:00+02:00",
            "2020-05-01T09:00:00Z"
        ));
    }
}
