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
use tokio_postgres::types::{FromSql, Type};
use uuid::Uuid;

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

/// A JSON body already written (a list page from [`Page::write_json`]), sent as
/// [`response`] sends a value: `application/json`, the bytes as they are.
///
/// [`Page::write_json`]: crate::http::extract::Page::write_json
#[derive(Debug)]
pub struct JsonBytes(pub Vec<u8>);

impl IntoResponse for JsonBytes {
    fn into_response(self) -> Response {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            axum::body::Bytes::from(self.0),
        )
            .into_response()
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
    let civil = Civil {
        year: year as u32,
        month: date.month(),
        day: date.day(),
        hour: time.hour(),
        minute: time.minute(),
        second: sec,
        nano,
    };
    Some(civil.write(buf))
}

/// A UTC time's fields, as [`write_rfc3339`] and [`PgTimestamp`] format them.
struct Civil {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nano: u32,
}

impl Civil {
    /// Writes `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff|.fffffffff]Z` (the fraction as chrono's
    /// `SecondsFormat::AutoSi`) and returns the length. `year` must be 0–9999.
    fn write(&self, buf: &mut [u8; 32]) -> usize {
        let Civil {
            year,
            month,
            day,
            hour,
            minute,
            second: sec,
            nano,
        } = *self;
        // "YYYY-MM-DDTHH:MM:SS": fixed positions, two digits at a time from a table
        // (division by 10 per digit was half of this function's cost on a list).
        put2(buf, 0, year / 100);
        put2(buf, 2, year);
        put2(buf, 5, month);
        put2(buf, 8, day);
        put2(buf, 11, hour);
        put2(buf, 14, minute);
        put2(buf, 17, sec);
        buf[4] = b'-';
        buf[7] = b'-';
        buf[10] = b'T';
        buf[13] = b':';
        buf[16] = b':';
        // The fraction as SecondsFormat::AutoSi: none, or 3, 6 or 9 digits.
        let len = if nano == 0 {
            19
        } else if nano % 1_000_000 == 0 {
            let ms = nano / 1_000_000;
            buf[20] = b'0' + (ms / 100 % 10) as u8;
            put2(buf, 21, ms);
            23
        } else if nano % 1_000 == 0 {
            let us = nano / 1_000;
            put2(buf, 20, us / 10_000);
            put2(buf, 22, us / 100);
            put2(buf, 24, us);
            26
        } else {
            buf[20] = b'0' + (nano / 100_000_000 % 10) as u8;
            put2(buf, 21, nano / 1_000_000);
            put2(buf, 23, nano / 10_000);
            put2(buf, 25, nano / 100);
            put2(buf, 27, nano);
            29
        };
        if len > 19 {
            buf[19] = b'.';
        }
        buf[len] = b'Z';
        len + 1
    }
}

/// "00" to "99", for [`put2`].
static PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// Writes the last two decimal digits of `v` at `buf[at..at + 2]`.
#[inline(always)]
fn put2(buf: &mut [u8; 32], at: usize, v: u32) {
    let i = (v % 100) as usize * 2;
    buf[at..at + 2].copy_from_slice(&PAIRS[i..i + 2]);
}

/// The error a column reader gives (the same type `FromSql` gives).
pub type ColumnError = Box<dyn std::error::Error + Sync + Send>;

/// A column type that a list page writes straight from its row's bytes
/// ([`Record::write_json`](crate::http::extract::Record::write_json)): the same JSON that
/// serde_json writes for the field's Rust value, without making the value.
///
/// What this saves on a list (callgrind, list of 50 projects): a `String` per text column
/// per row, chrono's date arithmetic and its formatting back, and serde_json's
/// byte-at-a-time escape scan of every string.
pub trait JsonColumn {
    /// What is read from the row (borrowed from it where the type allows).
    type Raw<'a>: FromSql<'a>;
    /// Appends the JSON of `raw` to `out`.
    fn write(raw: Self::Raw<'_>, out: &mut Vec<u8>) -> Result<(), ColumnError>;
}

impl JsonColumn for String {
    type Raw<'a> = RawText<'a>;
    fn write(raw: RawText<'_>, out: &mut Vec<u8>) -> Result<(), ColumnError> {
        write_text(raw.0, out)
    }
}

impl JsonColumn for Uuid {
    type Raw<'a> = Uuid;
    fn write(raw: Uuid, out: &mut Vec<u8>) -> Result<(), ColumnError> {
        // As `Uuid`'s `Serialize` does for a human-readable format: hyphenated, lower case.
        let mut buf = Uuid::encode_buffer();
        let text = raw.hyphenated().encode_lower(&mut buf);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        Ok(())
    }
}

impl JsonColumn for DateTime<Utc> {
    type Raw<'a> = PgTimestamp;
    fn write(raw: PgTimestamp, out: &mut Vec<u8>) -> Result<(), ColumnError> {
        raw.write(out)
    }
}

impl<T: JsonColumn> JsonColumn for Option<T> {
    type Raw<'a> = Option<T::Raw<'a>>;
    fn write(raw: Self::Raw<'_>, out: &mut Vec<u8>) -> Result<(), ColumnError> {
        match raw {
            Some(v) => T::write(v, out),
            None => {
                out.extend_from_slice(b"null");
                Ok(())
            }
        }
    }
}

/// Column types rare on lists, or cheap already: read as the value, written by serde_json.
macro_rules! by_serde {
    ($($ty:ty),+) => {$(
        impl JsonColumn for $ty {
            type Raw<'a> = $ty;
            fn write(raw: $ty, out: &mut Vec<u8>) -> Result<(), ColumnError> {
                serde_json::to_writer(out, &raw).map_err(Into::into)
            }
        }
    )+};
}
by_serde!(
    i64,
    bool,
    chrono::NaiveDate,
    crate::http::auth::Role,
    serde_json::Value,
    Vec<String>
);

/// A text column's bytes as PostgreSQL sent them, checked as UTF-8 only when they are not
/// ASCII ([`write_text`]).
#[derive(Debug, Clone, Copy)]
pub struct RawText<'a>(pub &'a [u8]);

impl<'a> FromSql<'a> for RawText<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, ColumnError> {
        match *ty {
            // These carry the text as it is; the others `&str` accepts (ltree & co.) have
            // a header that its own FromSql strips (and checks).
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                Ok(RawText(raw))
            }
            _ => <&str as FromSql>::from_sql(ty, raw).map(|s| RawText(s.as_bytes())),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

/// Appends `bytes` as a JSON string, byte for byte as serde_json writes the `&str`: a
/// string with nothing to escape (the common case) is copied whole; one with a quote, a
/// backslash or a control character goes through serde_json itself. Bytes that are not
/// UTF-8 are an error, as `String`'s `FromSql` makes them.
pub fn write_text(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), ColumnError> {
    let (escape, non_ascii) = scan(bytes);
    if escape {
        let text = std::str::from_utf8(bytes)?;
        return serde_json::to_writer(out, text).map_err(Into::into);
    }
    if non_ascii {
        std::str::from_utf8(bytes)?;
    }
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    out.extend_from_slice(bytes);
    out.push(b'"');
    Ok(())
}

/// Whether `bytes` holds a byte serde_json escapes (`"`, `\`, below 0x20), and whether it
/// holds one of 0x80 and above (then it must be checked as UTF-8).
///
/// Hand-written, eight bytes per step (the usual "has a zero byte" word tricks): serde_json
/// checks each byte against a table (about 7 instructions a byte under callgrind: 20% of
/// a list's instructions), has no option for a faster scan, and its `Formatter` hook comes
/// after the scan. memchr finds up to three given bytes, not a range; a SIMD serializer
/// crate would replace serde_json for all of a response for what is one loop here.
fn scan(bytes: &[u8]) -> (bool, bool) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte's high bit set in the result iff that byte is below 0x20, `"` or `\`, for
    // the lowest such byte; bytes above it may be flagged falsely (borrows), which does
    // not change whether any is flagged.
    #[inline(always)]
    fn special(w: u64) -> u64 {
        let below_space = w.wrapping_sub(ONES * 0x20) & !w;
        let q = w ^ (ONES * u64::from(b'"'));
        let quote = q.wrapping_sub(ONES) & !q;
        let b = w ^ (ONES * u64::from(b'\\'));
        let backslash = b.wrapping_sub(ONES) & !b;
        (below_space | quote | backslash) & HIGH
    }
    let mut flagged = 0u64;
    let mut high = 0u64;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        flagged |= special(w);
        high |= w & HIGH;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // Padded with a byte that is neither escaped nor high.
        let mut word = [b'a'; 8];
        word[..rest.len()].copy_from_slice(rest);
        let w = u64::from_le_bytes(word);
        flagged |= special(w);
        high |= w & HIGH;
    }
    (flagged != 0, high != 0)
}

/// A `timestamptz` as PostgreSQL sends it: microseconds since 2000-01-01 00:00 UTC,
/// written as [`timestamp`] writes the `DateTime<Utc>` chrono would make of it (years
/// 0–9999 here, the rest through chrono itself).
#[derive(Debug, Clone, Copy)]
pub struct PgTimestamp(pub i64);

impl<'a> FromSql<'a> for PgTimestamp {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, ColumnError> {
        postgres_protocol::types::timestamp_from_sql(raw).map(PgTimestamp)
    }

    fn accepts(ty: &Type) -> bool {
        <DateTime<Utc> as FromSql>::accepts(ty)
    }
}

impl PgTimestamp {
    /// Microseconds from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch).
    const EPOCH_2000: i64 = 946_684_800_000_000;

    /// The civil UTC fields, or `None` outside 0000-03-01 to 9999-12-31.
    fn civil(self) -> Option<Civil> {
        const DAY: u64 = 86_400_000_000;
        // Microseconds since 0000-03-01 (the start of Hinnant's era 0), so that all the
        // arithmetic below is unsigned division by constants.
        const FROM_0000_03_01: i64 = 719_468 * 86_400_000_000 + PgTimestamp::EPOCH_2000;
        let since = u64::try_from(self.0.checked_add(FROM_0000_03_01)?).ok()?;
        let days = since / DAY;
        let of_day = since % DAY;
        let (year, month, day) = civil_from_days(u32::try_from(days).ok()?)?;
        let secs = (of_day / 1_000_000) as u32;
        Some(Civil {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
            nano: (of_day % 1_000_000) as u32 * 1000,
        })
    }

    /// Appends the JSON string.
    pub fn write(self, out: &mut Vec<u8>) -> Result<(), ColumnError> {
        match self.civil() {
            Some(civil) => {
                let mut buf = [0u8; 32];
                let n = civil.write(&mut buf);
                out.push(b'"');
                out.extend_from_slice(&buf[..n]);
                out.push(b'"');
                Ok(())
            }
            // Exactly what the value would do: chrono's decoding (and its error), then
            // chrono's formatting.
            None => {
                let t = <DateTime<Utc> as FromSql>::from_sql(
                    &Type::TIMESTAMPTZ,
                    &self.0.to_be_bytes(),
                )?;
                serde_json::to_writer(out, &t).map_err(Into::into)
            }
        }
    }
}

/// The proleptic Gregorian (year, month, day) of a count of days since 0000-03-01, or
/// `None` after 9999-12-31. Howard Hinnant's `civil_from_days`
/// (<https://howardhinnant.github.io/date_algorithms.html>) for non-negative days:
/// hand-written because chrono's `NaiveDate` arithmetic is the cost this path removes;
/// the unit tests compare it with chrono.
fn civil_from_days(z: u32) -> Option<(u32, u32, u32)> {
    // 9999-12-31 is day 2,932,896 after 1970-01-01.
    if z > 2_932_896 + 719_468 {
        return None;
    }
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u32::from(month <= 2);
    Some((year, month, day))
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

    /// The list path's text writer against serde_json, on every special byte at every
    /// position of the first three 8-byte words, and on random mixes.
    #[test]
    fn text_is_written_as_serde_json_writes_it() {
        let same = |s: &str| {
            let mut ours = Vec::new();
            write_text(s.as_bytes(), &mut ours).unwrap();
            assert_eq!(ours, serde_json::to_vec(s).unwrap(), "{s:?}");
        };
        let specials: Vec<char> = (0u8..0x20)
            .map(char::from)
            .chain([
                '"', '\\', '/', '\u{7f}', 'é', '\u{2028}', '\u{2029}', '😀', ' ', '~',
            ])
            .collect();
        for len in 0..25 {
            same(&"a".repeat(len));
            for at in 0..len.max(1) {
                for &c in &specials {
                    let mut s: String = "a".repeat(at);
                    s.push(c);
                    s.push_str(&"b".repeat(len.saturating_sub(at + 1)));
                    same(&s);
                }
            }
        }
        for b in 0u8..0x80 {
            same(&char::from(b).to_string());
        }
        let alphabet: Vec<char> = specials.iter().copied().chain('a'..='z').collect();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..2_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 70) as usize;
            let s: String = (0..len)
                .map(|i| alphabet[((x >> (i % 50)) as usize + i * 7) % alphabet.len()])
                .collect();
            same(&s);
        }
        // Not UTF-8: an error, as `String`'s FromSql gives.
        for bad in [
            &b"\xff"[..],
            b"abc\xc3",
            b"abcdefgh\xe2\x80",
            b"\xed\xa0\x80",
            b"a\"\xff",
        ] {
            assert!(write_text(bad, &mut Vec::new()).is_err(), "{bad:?}");
        }
    }

    /// PostgreSQL's microseconds, written straight, against chrono's decoding of the same
    /// bytes and serde_json of the result: every 7th day of the fast path's range with
    /// its edges, and random instants from before year 0 to after 9999.
    #[test]
    fn pg_timestamps_are_written_as_chrono_writes_them() {
        let same = |micros: i64| {
            let mut ours = Vec::new();
            PgTimestamp(micros).write(&mut ours).unwrap();
            let t = <DateTime<Utc> as FromSql>::from_sql(&Type::TIMESTAMPTZ, &micros.to_be_bytes())
                .unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&t).unwrap(),
                "{micros}"
            );
        };
        const DAY: i64 = 86_400_000_000;
        let from_2000 = |unix_days: i64| unix_days * DAY - PgTimestamp::EPOCH_2000;
        let mut day = -719_530;
        while day <= 2_932_900 {
            for of_day in [
                0,
                1,
                999,
                1_000,
                123_000,
                500_000,
                999_999,
                DAY - 1,
                45_296_789_012,
            ] {
                same(from_2000(day) + of_day);
            }
            day += if (-719_600..=-719_400).contains(&day) || day >= 2_932_800 {
                1
            } else {
                7
            };
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            same((x % 800_000_000_000_000_000) as i64 - 400_000_000_000_000_000);
        }
        for micros in [0, -1, 1, i64::from(i32::MAX), -PgTimestamp::EPOCH_2000] {
            same(micros);
        }
        // Outside chrono's range (PostgreSQL's infinity): an error, not a panic.
        assert!(PgTimestamp(i64::MAX).write(&mut Vec::new()).is_err());
        assert!(PgTimestamp(i64::MIN).write(&mut Vec::new()).is_err());
    }

    #[test]
    fn uuids_and_nulls_are_written_as_serde_json_writes_them() {
        let id = Uuid::now_v7();
        let mut out = Vec::new();
        <Uuid as JsonColumn>::write(id, &mut out).unwrap();
        assert_eq!(out, serde_json::to_vec(&id).unwrap());
        out.clear();
        <Option<Uuid> as JsonColumn>::write(None, &mut out).unwrap();
        assert_eq!(out, b"null");
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
