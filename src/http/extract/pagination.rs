//! Keyset pagination: opaque cursors, `limit`/`cursor` parameters, and the list query
//! every collection route runs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::record::Record;
use super::Param;
use crate::http::error::ApiError;

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 200;

/// A page of results and the cursor of the next one (`null` on the last page).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page.
    pub next_cursor: Option<String>,
}

/// The position after an item: its time and id, opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The item's time (created_at, or occurred_at for the audit log).
    pub at: DateTime<Utc>,
    /// The item's id (tie-breaker).
    pub id: Uuid,
}

/// The cursor's syntax, as the OpenAPI document states it: every string that matches is a
/// cursor the server accepts (a position need not be an item's; it pages from there), so
/// a client (or a fuzzer) that follows the document never gets a 400 for a matching one.
pub const CURSOR_PATTERN: &str = "^-?[0-9]{1,19}\\.[0-9a-f]{32}$";
/// The longest cursor: a sign, 19 digits, a dot, 32 hex digits.
pub const CURSOR_MAX_LEN: usize = 53;

/// PostgreSQL's earliest `timestamptz` (4714-11-24 BC, Julian day 0) in µs since 1970.
/// A cursor before it pages from there: binding an earlier time would be out of range.
const PG_MIN_MICROS: i64 = -210_866_803_200_000_000;

impl Cursor {
    /// Encodes as `<micros>.<id as 32 lowercase hex digits>` (see [`CURSOR_PATTERN`]);
    /// the micros are signed, so an item before 1970 pages on from itself.
    /// Clients treat it as opaque; its syntax is documented only so that the document
    /// says exactly what the server accepts.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.at.timestamp_micros(), self.id.simple())
    }

    /// Decodes exactly what [`CURSOR_PATTERN`] matches, or 400. Checked by hand rather than
    /// with a regex crate: two fixed-alphabet runs, and `Uuid`'s own parser accepts more
    /// spellings (hyphens, upper case) than the pattern states.
    ///
    /// A position outside what can be stored (before PostgreSQL's first `timestamptz`,
    /// after chrono's last instant) is clamped to that edge: it still pages from there,
    /// as the document promises for every matching cursor, and no stored item lies beyond.
    pub fn decode(s: &str) -> Result<Self, ApiError> {
        let bad = || ApiError::BadRequest("invalid cursor".into());
        let (micros, id) = s.split_once('.').ok_or_else(bad)?;
        let digits = micros.strip_prefix('-').unwrap_or(micros);
        if digits.is_empty()
            || digits.len() > 19
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || id.len() != 32
            || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad());
        }
        // 19 digits may exceed i64; i128 holds any of them.
        let micros: i128 = micros.parse().map_err(|_| bad())?;
        let max = DateTime::<Utc>::MAX_UTC.timestamp_micros();
        let micros = micros.clamp(PG_MIN_MICROS.into(), max.into());
        let at = i64::try_from(micros)
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(bad)?;
        let id = Uuid::try_parse(id).map_err(|_| bad())?;
        Ok(Cursor { at, id })
    }
}

/// Builds a keyset-paginated `SELECT` of a [`Record`]'s table: filters, the cursor,
/// `ORDER BY <time> DESC, id DESC`. Each combination of filters is one SQL text, prepared
/// once per connection. Column names come only from `&'static str` constants.
#[derive(Default)]
pub struct ListQuery {
    clauses: Vec<String>,
    params: Vec<Param>,
}

impl ListQuery {
    /// An empty query.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `<column> = $n` when `value` is set.
    pub fn eq<T: ToSql + Sync + Send + 'static>(
        &mut self,
        column: &'static str,
        value: Option<T>,
    ) -> &mut Self {
        if let Some(v) = value {
            self.params.push(Box::new(v));
            self.clauses
                .push(format!("{column} = ${}", self.params.len()));
        }
        self
    }

    /// Runs it on `db` and returns a page of `R`. With the routing hint (the default, see
    /// [`routing_hint`](super::routing_hint)) the query also says `tenant_id = $n`, bound
    /// from the transaction's own tenant; the handler never writes a tenant filter.
    pub async fn run<R: Record>(
        self,
        db: &mut crate::pool::TenantTx,
        page: &PageParams,
    ) -> Result<Page<R>, ApiError> {
        let (rows, limit) = self.rows::<R>(db, page).await?;
        Ok(Page::from_rows(&rows, limit, R::from_row, R::cursor))
    }

    /// Runs it on `db` and returns the page's JSON, written straight from the rows: the
    /// same bytes as `Json(self.run::<R>(..))` (see [`Page::write_json`]).
    pub async fn run_json<R: Record>(
        self,
        db: &mut crate::pool::TenantTx,
        page: &PageParams,
    ) -> Result<crate::http::json::JsonBytes, ApiError> {
        let (rows, limit) = self.rows::<R>(db, page).await?;
        Page::<R>::write_json(&rows, limit).map(crate::http::json::JsonBytes)
    }

    /// The statement's rows (`limit + 1` at most) and the page's limit.
    async fn rows<R: Record>(
        mut self,
        db: &mut crate::pool::TenantTx,
        page: &PageParams,
    ) -> Result<(Vec<tokio_postgres::Row>, i64), ApiError> {
        let table = R::TABLE;
        let limit = page.limit()?;
        if super::routing_hint() {
            self.params.push(Box::new(db.tenant().as_uuid()));
            self.clauses
                .push(format!("tenant_id = ${}", self.params.len()));
        }
        if let Some(c) = page.cursor()? {
            self.params.push(Box::new(c.at));
            self.params.push(Box::new(c.id));
            let n = self.params.len();
            self.clauses
                .push(format!("({}, id) < (${}, ${n})", table.time, n - 1));
        }
        // One extra row tells whether there is a next page.
        self.params.push(Box::new(limit + 1));
        let where_ = if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        };
        let sql = format!(
            "SELECT {} FROM {}{where_} ORDER BY {} DESC, id DESC LIMIT ${}",
            table.columns,
            table.name,
            table.time,
            self.params.len()
        );
        let refs: Vec<&(dyn ToSql + Sync)> = self
            .params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = db.query(&sql, &refs).await?;
        Ok((rows, limit))
    }
}

impl<T> Page<T> {
    /// The page from `limit + 1` rows: the extra row, if there, only says that a next
    /// page exists, and the cursor points after the last item kept.
    pub(crate) fn from_rows(
        rows: &[tokio_postgres::Row],
        limit: i64,
        map: impl Fn(&tokio_postgres::Row) -> T,
        pos: impl Fn(&T) -> Cursor,
    ) -> Self {
        let mut items: Vec<T> = rows.iter().map(map).collect();
        let next_cursor = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|i| pos(i).encode())
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

impl<R: Record> Page<R> {
    /// The JSON of the page from `limit + 1` rows, byte for byte what serde_json writes for
    /// [`Page::from_rows`] with `R::from_row`: each item by [`Record::write_json`], and the
    /// cursor from the last item kept.
    pub fn write_json(rows: &[tokio_postgres::Row], limit: i64) -> Result<Vec<u8>, ApiError> {
        let keep = rows.len().min(usize::try_from(limit).unwrap_or(0));
        let (items, more) = rows.split_at(keep);
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(b"{\"items\":[");
        for (i, row) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let before = out.len();
            R::write_json(row, &mut out)?;
            if i == 0 {
                // Room for the rest at the first row's size and a quarter more: one
                // allocation for a typical page instead of doubling from 1 KiB.
                let each = out.len() - before + 1;
                out.reserve((each + each / 4) * (items.len() - 1) + 64);
            }
        }
        out.extend_from_slice(b"],\"next_cursor\":");
        match (more.is_empty(), items.last()) {
            (false, Some(last)) => {
                // Digits, a dot and hex digits: nothing to escape.
                out.push(b'"');
                out.extend_from_slice(R::row_cursor(last)?.encode().as_bytes());
                out.push(b'"');
            }
            _ => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        Ok(out)
    }
}

/// `limit` and `cursor` query parameters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct PageParams {
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    /// The limit, or 400.
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::BadRequest(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            ))),
        }
    }

    /// The cursor, or 400.
    pub fn cursor(&self) -> Result<Option<Cursor>, ApiError> {
        self.cursor.as_deref().map(Cursor::decode).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor {
            at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        let re = regex::Regex::new(CURSOR_PATTERN).unwrap();
        assert!(re.is_match(&c.encode()), "{}", c.encode());
        assert!(c.encode().len() <= CURSOR_MAX_LEN);
        for edge in [
            "9999999999999999",
            "9999999999999999999",
            "-9999999999999999999",
            "0",
            "-0",
            "-1",
        ] {
            let c = format!("{edge}.{}", "f".repeat(32));
            assert!(Cursor::decode(&c).is_ok(), "{c}");
            assert!(re.is_match(&c), "{c}");
        }
        // Before 1970 and after 2286: the cursor says where the item is, and reads back.
        for micros in [
            -1,
            -62_135_596_800_000_000,
            10_000_000_000_000_001,
            PG_MIN_MICROS,
        ] {
            let c = Cursor {
                at: DateTime::from_timestamp_micros(micros).unwrap(),
                id: Uuid::now_v7(),
            };
            assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
            assert!(re.is_match(&c.encode()), "{}", c.encode());
        }
        // Beyond what can be stored: clamped to the edge, which pages from there.
        let far = Cursor::decode(&format!("-9999999999999999999.{}", "0".repeat(32))).unwrap();
        assert_eq!(far.at.timestamp_micros(), PG_MIN_MICROS);
        let max = DateTime::<Utc>::MAX_UTC;
        assert!(max.timestamp_micros().to_string().len() <= 19);
        assert!(format!("-{}.{}", max.timestamp_micros(), "0".repeat(32)).len() <= CURSOR_MAX_LEN);
        for bad in [
            "",
            "!!!",
            "bm9wZQ",
            "MTIzLm5vdGF1dWlk",
            "123.notauuid",
            "12345678901234567890.0123456789abcdef0123456789abcdef",
            "--1.0123456789abcdef0123456789abcdef",
            "+1.0123456789abcdef0123456789abcdef",
            "-.0123456789abcdef0123456789abcdef",
            "1.0123456789ABCDEF0123456789ABCDEF",
            "1.01234567-89ab-cdef-0123-456789abcdef",
            "1.0123456789abcdef0123456789abcdef\n",
        ] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
            assert!(!re.is_match(bad), "{bad}");
        }
    }
}
