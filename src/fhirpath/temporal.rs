//! FHIR date, dateTime, instant and time values with partial precision, compared the
//! FHIRPath way: component by component down to the coarser precision, and no answer when the
//! precisions differ and the shared components are equal.

use std::cmp::Ordering;

use chrono::{Datelike, Duration, NaiveDate, Timelike};

/// Year, month, day, hour, minute, and seconds as milliseconds (FHIRPath treats seconds and
/// their fraction as one precision).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct DateTimeValue {
    parts: [i64; 6],
    /// How many of `parts` were given: 1 (year) to 6 (seconds).
    precision: usize,
    /// Offset from UTC in minutes, when written.
    offset: Option<i64>,
}

/// Hour, minute, and seconds as milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct TimeValue {
    parts: [i64; 3],
    precision: usize,
}

impl DateTimeValue {
    /// True when there is no time part: a FHIR `date`.
    pub fn is_date(&self) -> bool {
        self.precision <= 3
    }

    /// A full FHIR `instant`: seconds and a time zone.
    pub fn is_instant(&self) -> bool {
        self.precision == 6 && self.offset.is_some()
    }
}

struct Cursor<'s> {
    bytes: &'s [u8],
    at: usize,
}

impl Cursor<'_> {
    fn number(&mut self, digits: usize) -> Option<i64> {
        let slice = self.bytes.get(self.at..self.at + digits)?;
        if !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.at += digits;
        Some(
            slice
                .iter()
                .fold(0, |acc, d| acc * 10 + i64::from(d - b'0')),
        )
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }

    /// `hh(:mm(:ss(.fff)?)?)?` into `parts`, returning how many were read.
    fn time(&mut self, parts: &mut [i64]) -> Option<usize> {
        let hour = self.number(2)?;
        if hour > 23 {
            return None;
        }
        parts[0] = hour;
        if !self.eat(b':') {
            return Some(1);
        }
        let minute = self.number(2)?;
        if minute > 59 {
            return None;
        }
        parts[1] = minute;
        if !self.eat(b':') {
            return Some(2);
        }
        let second = self.number(2)?;
        if second > 60 {
            return None;
        }
        let mut millis = 0;
        if self.eat(b'.') {
            let start = self.at;
            while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
                self.at += 1;
            }
            let fraction = self.bytes.get(start..self.at)?;
            if fraction.is_empty() {
                return None;
            }
            // Finer than milliseconds is kept as written but not compared.
            for i in 0..3 {
                millis = millis * 10 + fraction.get(i).map_or(0, |d| i64::from(d - b'0'));
            }
        }
        parts[2] = second * 1000 + millis;
        Some(3)
    }
}

/// Parses a FHIR date / dateTime / instant, or a FHIRPath date or dateTime literal (which may
/// stop at the hour or minute). `None` when the text is not one.
pub(crate) fn parse_date_time(text: &str) -> Option<DateTimeValue> {
    let mut c = Cursor {
        bytes: text.as_bytes(),
        at: 0,
    };
    let mut parts = [0, 1, 1, 0, 0, 0];
    parts[0] = c.number(4)?;
    let mut precision = 1;
    if c.eat(b'-') {
        parts[1] = c.number(2)?;
        if !(1..=12).contains(&parts[1]) {
            return None;
        }
        precision = 2;
        if c.eat(b'-') {
            parts[2] = c.number(2)?;
            let year = i32::try_from(parts[0]).ok()?;
            let month = u32::try_from(parts[1]).ok()?;
            let day = u32::try_from(parts[2]).ok()?;
            NaiveDate::from_ymd_opt(year, month, day)?;
            precision = 3;
        }
    }
    let mut offset = None;
    if precision == 3 && c.eat(b'T') {
        precision += c.time(&mut parts[3..])?;
        if c.eat(b'Z') {
            offset = Some(0);
        } else if c.bytes.get(c.at).is_some_and(|b| *b == b'+' || *b == b'-') {
            let negative = c.bytes.get(c.at) == Some(&b'-');
            c.at += 1;
            let hours = c.number(2)?;
            if !c.eat(b':') {
                return None;
            }
            let minutes = c.number(2)?;
            if hours > 14 || minutes > 59 {
                return None;
            }
            let total = hours * 60 + minutes;
            offset = Some(if negative { -total } else { total });
        }
    }
    if !c.done() {
        return None;
    }
    Some(DateTimeValue {
        parts,
        precision,
        offset,
    })
}

/// Parses a FHIR time (`hh:mm:ss`) or a FHIRPath time literal without the `T`.
pub(crate) fn parse_time(text: &str) -> Option<TimeValue> {
    let mut c = Cursor {
        bytes: text.as_bytes(),
        at: 0,
    };
    let mut parts = [0; 3];
    let precision = c.time(&mut parts)?;
    c.done().then_some(TimeValue { parts, precision })
}

/// The value shifted to UTC, when it has a time part. A value without an offset is taken to
/// be in UTC already: the server has no better guess at the writer's zone.
fn to_utc(v: &DateTimeValue) -> DateTimeValue {
    let Some(offset) = v.offset.filter(|o| *o != 0 && v.precision >= 4) else {
        return *v;
    };
    let [y, mo, d, h, mi, ms] = v.parts;
    let naive = (|| {
        let date = NaiveDate::from_ymd_opt(
            i32::try_from(y).ok()?,
            u32::try_from(mo).ok()?,
            u32::try_from(d).ok()?,
        )?;
        // A leap second is folded into the 59th: precision beyond that is not needed here.
        let time = date.and_hms_milli_opt(
            u32::try_from(h).ok()?,
            u32::try_from(mi).ok()?,
            u32::try_from((ms / 1000).min(59)).ok()?,
            u32::try_from(ms % 1000).ok()?,
        )?;
        time.checked_sub_signed(Duration::minutes(offset))
    })();
    let Some(utc) = naive else {
        return *v;
    };
    let mut parts = v.parts;
    parts[0] = i64::from(utc.year());
    parts[1] = i64::from(utc.month());
    parts[2] = i64::from(utc.day());
    parts[3] = i64::from(utc.hour());
    parts[4] = i64::from(utc.minute());
    parts[5] = i64::from(utc.second()) * 1000 + i64::from(utc.nanosecond() / 1_000_000);
    DateTimeValue {
        parts,
        precision: v.precision,
        offset: Some(0),
    }
}

fn compare_parts(a: &[i64], a_precision: usize, b: &[i64], b_precision: usize) -> Option<Ordering> {
    let common = a_precision.min(b_precision);
    for (x, y) in a.iter().zip(b).take(common) {
        match x.cmp(y) {
            Ordering::Equal => {}
            unequal => return Some(unequal),
        }
    }
    (a_precision == b_precision).then_some(Ordering::Equal)
}

/// `None` when the answer depends on the precision neither value has.
pub(crate) fn compare_date_times(a: &DateTimeValue, b: &DateTimeValue) -> Option<Ordering> {
    let (a, b) = if a.offset.is_some() || b.offset.is_some() {
        (to_utc(a), to_utc(b))
    } else {
        (*a, *b)
    };
    compare_parts(&a.parts, a.precision, &b.parts, b.precision)
}

pub(crate) fn compare_times(a: &TimeValue, b: &TimeValue) -> Option<Ordering> {
    compare_parts(&a.parts, a.precision, &b.parts, b.precision)
}

pub(crate) fn same_precision_date_times(a: &DateTimeValue, b: &DateTimeValue) -> bool {
    a.precision == b.precision
}

pub(crate) fn same_precision_times(a: &TimeValue, b: &TimeValue) -> bool {
    a.precision == b.precision
}
