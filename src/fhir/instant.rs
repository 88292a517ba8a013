//! Server timestamps: milliseconds since the Unix epoch in storage, FHIR `instant` and HTTP dates
//! on the wire.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// Milliseconds since the Unix epoch, the unit every stored timestamp uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Millis(pub i64);

impl Millis {
    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis())
    }

    fn datetime(self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.0)
            .single()
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    /// FHIR `instant`, e.g. `2026-11-21T10:15:30.123Z`.
    pub fn to_instant(self) -> String {
        self.datetime().to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// HTTP date (RFC 7231), e.g. `Sat, 21 Nov 2026 10:15:30 GMT`.
    pub fn to_http_date(self) -> String {
        self.datetime()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string()
    }

    /// The whole second this instant falls in, as HTTP dates carry no fractions.
    pub fn whole_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// Parses an HTTP date (`If-Modified-Since`).
    pub fn parse_http_date(value: &str) -> Option<Self> {
        DateTime::parse_from_rfc2822(value.trim())
            .ok()
            .map(|d| Self(d.timestamp_millis()))
    }

    /// Parses a FHIR `instant` or `dateTime` with a time zone (as `_since` takes). A date without a
    /// time means its first moment in UTC.
    pub fn parse_fhir(value: &str) -> Option<Self> {
        if let Ok(d) = DateTime::parse_from_rfc3339(value) {
            return Some(Self(d.timestamp_millis()));
        }
        let date = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
        let start = date.and_hms_opt(0, 0, 0)?;
        Some(Self(Utc.from_utc_datetime(&start).timestamp_millis()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip() {
        let t = Millis(1_795_263_330_123);
        assert_eq!(t.to_instant(), "2026-11-21T12:15:30.123Z");
        assert_eq!(t.to_http_date(), "Sat, 21 Nov 2026 12:15:30 GMT");
        assert_eq!(Millis::parse_fhir(&t.to_instant()), Some(t));
        assert_eq!(
            Millis::parse_http_date(&t.to_http_date()),
            Some(Millis(1_795_263_330_000))
        );
        assert_eq!(
            Millis::parse_fhir("2026-11-20"),
            Some(Millis(1_795_132_800_000))
        );
        assert_eq!(Millis::parse_fhir("yesterday"), None);
    }
}
