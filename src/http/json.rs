//! Response serialization helpers for the request hot path.
//!
//! [`response`] builds a JSON response as `axum::Json` does, into a `Vec`.
//!
//! [`timestamp`] writes a `DateTime<Utc>` exactly as chrono's own `Serialize` does (RFC 3339,
//! `Z`, fraction digits 0/3/6/9 as needed: `SecondsFormat::AutoSi`), but as ONE string.
//! chrono serializes through `Serializer::collect_str`, and its formatter writes a
//! timestamp in about a dozen small pieces, each of which serde_json escapes and appends
//! on its own: in the callgrind profile of `GET /v1/projects?limit=100` that was about 40%
//! of the server's instructions (`serde_json::ser::format_escaped_str_contents`,
//! `core::fmt::Write::write_char`, chrono's `write_hundreds`). Hand-written for the
//! years 0–9999 only, which is every timestamp this API makes; anything else goes
//! through chrono. The unit tests compare both on many values.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Serialize, Serializer};

/// A JSON response, as `axum::Json` makes it (`application/json`; a serialization error
/// is a 500 with its text), serialized into a `Vec` instead of a `BytesMut` writer: the
/// writer's per-call `BufMut` bookkeeping showed in the list profiles
/// (`bytes::bytes_mut` inlined into `serde_json::ser::format_escaped_str_contents`), and a
/// page of 100 items grows the buffer from 128 bytes through eight reallocations.
pub fn response<T: Serialize + ?Sized>(value: &T) -> Response {
    let mut buf = Vec::with_capacity(1024);
    match serde_json::to_writer(&mut buf, value) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            axum::body::Bytes::from(buf),
        )
            .into_response(),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            err.to_string(),
        )
            .into_response(),
    }
}

/// `#[serde(serialize_with = "…")]` for a `DateTime<Utc>`: chrono's format, one string.
pub fn timestamp<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 32];
    match write_rfc3339(t, &mut buf) {
        // Only ASCII digits and separators are written.
        Some(n) => match std::str::from_utf8(&buf[..n]) {
            Ok(text) => s.serialize_str(text),
            Err(_) => t.serialize(s),
        },
        None => t.serialize(s),
    }
}

/// [`timestamp`] for an `Option<DateTime<Utc>>` (`null` when `None`).
pub fn timestamp_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => timestamp(t, s),
        None => s.serialize_none(),
    }
}

/// Writes `t` as chrono's `to_rfc3339_opts(SecondsFormat::AutoSi, true)` does, returning
/// the length, or `None` outside the years 0–9999 (the caller falls back to chrono).
fn write_rfc3339(t: &DateTime<Utc>, buf: &mut [u8; 32]) -> Option<usize> {
    // The UTC fields, read once: DateTime's own accessors each add the (zero) offset again.
    let t = t.naive_utc();
    let (date, time) = (t.date(), t.time());
    let year = date.year();
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut nano = time.nanosecond();
    let mut sec = time.second();
    // A leap second is stored as nanoseconds past 1e9; chrono prints it as second 60.
    if nano >= 1_000_000_000 {
        sec += 1;
        nano -= 1_000_000_000;
    }
    // "YYYY-MM-DDTHH:MM:SS": fixed positions.
    let two = |buf: &mut [u8; 32], at: usize, v: u32| {
        buf[at] = b'0' + (v / 10 % 10) as u8;
        buf[at + 1] = b'0' + (v % 10) as u8;
    };
    two(buf, 0, year as u32 / 100);
    two(buf, 2, year as u32 % 100);
    two(buf, 5, date.month());
    two(buf, 8, date.day());
    two(buf, 11, time.hour());
    two(buf, 14, time.minute());
    two(buf, 17, sec);
    buf[4] = b'-';
    buf[7] = b'-';
    buf[10] = b'T';
    buf[13] = b':';
    buf[16] = b':';
    let mut len = 19;
    // The fraction as SecondsFormat::AutoSi: none, or 3, 6 or 9 digits.
    let (digits, mut value) = if nano == 0 {
        (0, 0)
    } else if nano % 1_000_000 == 0 {
        (3, nano / 1_000_000)
    } else if nano % 1_000 == 0 {
        (6, nano / 1_000)
    } else {
        (9, nano)
    };
    if digits > 0 {
        buf[len] = b'.';
        len += 1;
        for i in (0..digits).rev() {
            buf[len + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
        len += digits;
    }
    buf[len] = b'Z';
    Some(len + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};

    #[derive(Serialize)]
    struct Fast(#[serde(serialize_with = "timestamp")] DateTime<Utc>);

    fn same(t: DateTime<Utc>) {
        let ours = serde_json::to_string(&Fast(t)).unwrap();
        let chrono = serde_json::to_string(&t).unwrap();
        assert_eq!(ours, chrono, "{t:?}");
    }

    #[test]
    fn timestamps_serialize_as_chrono_does() {
        let base = Utc.with_ymd_and_hms(2026, 12, 1, 18, 5, 9).unwrap();
        for nanos in [
            0,
            1,
            999,
            1_000,
            1_001,
            120_000,
            123_456,
            1_000_000,
            5_000_000,
            999_999_999,
            123_456_789,
            100_000_000,
            10_000,
        ] {
            same(base + chrono::Duration::nanoseconds(nanos));
        }
        // Edges of the fast path, and the fallback outside it.
        for (y, m, d, h, mi, s) in [
            (0, 1, 1, 0, 0, 0),
            (9999, 12, 31, 23, 59, 59),
            (1970, 1, 1, 0, 0, 0),
            (2000, 2, 29, 12, 30, 45),
            (10000, 1, 1, 0, 0, 0),
            (-1, 6, 15, 1, 2, 3),
        ] {
            same(Utc.with_ymd_and_hms(y, m, d, h, mi, s).unwrap());
        }
        // A leap second (nanoseconds past 1e9), as chrono can hold it.
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        same(leap);
        // A spread of microsecond timestamps, as PostgreSQL stores them.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let micros = (x % 400_000_000_000_000) as i64 - 60_000_000_000_000;
            same(DateTime::from_timestamp_micros(micros).unwrap());
        }
        let none: Option<DateTime<Utc>> = None;
        #[derive(Serialize)]
        struct Opt(#[serde(serialize_with = "timestamp_opt")] Option<DateTime<Utc>>);
        assert_eq!(serde_json::to_string(&Opt(none)).unwrap(), "null");
        assert_eq!(
            serde_json::to_string(&Opt(Some(base))).unwrap(),
            serde_json::to_string(&base).unwrap()
        );
    }
}
