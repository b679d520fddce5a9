//! Request-side helpers shared by the resource modules: extractors whose rejections are
//! problem+json, keyset pagination, PATCH and audit SQL builders, and field validation.

use axum::extract::{FromRequest, FromRequestParts};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::error::{ApiError, FieldError};

/// `axum::Json` with problem+json rejections (400 syntax, 415, 413, 422 types/unknown fields).
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        super::json::response(&self.0)
    }
}

/// `axum::extract::Path` with a 400 problem for malformed ids.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query` with a 400 problem for malformed parameters.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

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

impl Cursor {
    /// Encodes as base64url of `<micros>.<id>`.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{}.{}",
            self.at.timestamp_micros(),
            self.id.simple()
        ))
    }

    /// Decodes, or 400.
    pub fn decode(s: &str) -> Result<Self, ApiError> {
        let bad = || ApiError::BadRequest("invalid cursor".into());
        if s.len() > 128 {
            return Err(bad());
        }
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
        let (micros, id) = text.split_once('.').ok_or_else(bad)?;
        let at =
            DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?).ok_or_else(bad)?;
        let id = Uuid::try_parse(id).map_err(|_| bad())?;
        Ok(Cursor { at, id })
    }
}

/// A boxed SQL parameter (lists build their parameters at run time).
pub type Param = Box<dyn ToSql + Sync + Send>;

/// What a list reads: the table, its output columns, and the time column that orders it
/// (newest first, `id` breaking ties).
#[derive(Debug, Clone, Copy)]
pub struct Source {
    /// Table name.
    pub table: &'static str,
    /// Comma-separated columns.
    pub columns: &'static str,
    /// The ordering time column.
    pub time: &'static str,
}

/// Builds a keyset-paginated `SELECT`: filters, the cursor, `ORDER BY <time> DESC, id DESC`.
/// Each combination of filters is one SQL text, prepared once per connection.
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
        column: &str,
        value: Option<T>,
    ) -> &mut Self {
        if let Some(v) = value {
            self.params.push(Box::new(v));
            self.clauses
                .push(format!("{column} = ${}", self.params.len()));
        }
        self
    }

    /// Runs it on `db` and returns a page, mapping rows with `map` and reading the cursor
    /// position with `pos`.
    pub async fn run<T>(
        mut self,
        db: &mut crate::pool::TenantTx,
        source: Source,
        page: &PageParams,
        map: impl Fn(&tokio_postgres::Row) -> T,
        pos: impl Fn(&T) -> Cursor,
    ) -> Result<Page<T>, ApiError> {
        let Source {
            table,
            columns,
            time: time_column,
        } = source;
        let limit = page.limit()?;
        if let Some(c) = page.cursor()? {
            self.params.push(Box::new(c.at));
            self.params.push(Box::new(c.id));
            let n = self.params.len();
            self.clauses
                .push(format!("({time_column}, id) < (${}, ${n})", n - 1));
        }
        // One extra row tells whether there is a next page.
        self.params.push(Box::new(limit + 1));
        let where_ = if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        };
        let sql = format!(
            "SELECT {columns} FROM {table}{where_} ORDER BY {time_column} DESC, id DESC LIMIT ${}",
            self.params.len()
        );
        let refs: Vec<&(dyn ToSql + Sync)> = self
            .params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = db.query(&sql, &refs).await?;
        Ok(Page::from_rows(&rows, limit, map, pos))
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

/// `limit` and `cursor` query parameters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct PageParams {
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(max_length = 128)]
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

/// For PATCH fields that may be set to `null`: absent → `None`, `null` → `Some(None)`.
pub fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Builds `UPDATE <table> SET … WHERE id = $1` from the fields a PATCH sent.
pub struct Patch {
    sets: Vec<String>,
    params: Vec<Param>,
    fields: Vec<String>,
}

impl Patch {
    /// A patch of the row with `id`.
    pub fn new(id: Uuid) -> Self {
        Self {
            sets: Vec::new(),
            params: vec![Box::new(id)],
            fields: Vec::new(),
        }
    }

    /// Sets `column` if the field was sent.
    pub fn set<T: ToSql + Sync + Send + 'static>(
        &mut self,
        column: &str,
        value: Option<T>,
    ) -> &mut Self {
        if let Some(v) = value {
            self.params.push(Box::new(v));
            self.sets.push(format!("{column} = ${}", self.params.len()));
            self.fields.push(column.to_string());
        }
        self
    }

    /// The changed fields.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// Runs the update with its audit row; `None` if the id does not exist (in this tenant).
    pub async fn run(
        self,
        db: &mut crate::pool::TenantTx,
        table: &str,
        columns: &str,
        audit: Audit<'_>,
    ) -> Result<Option<tokio_postgres::Row>, ApiError> {
        if self.sets.is_empty() {
            return Err(ApiError::Validation(vec![FieldError::new(
                "body",
                "send at least one field to change",
            )]));
        }
        let mutation = format!(
            "UPDATE {table} SET {}, updated_at = now() WHERE id = $1",
            self.sets.join(", ")
        );
        let sql = audited(&mutation, columns, self.params.len() + 1);
        let details = serde_json::json!({ "changed": self.fields });
        let mut refs: Vec<&(dyn ToSql + Sync)> = self
            .params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        refs.extend_from_slice(&[&audit.actor, &"update", &audit.resource, &details]);
        mutate(db, &sql, &refs).await
    }
}

/// Deletes the row with `id` and writes its audit row: 204, or 404 if no such row (in
/// this tenant).
pub async fn delete(
    db: &mut crate::pool::TenantTx,
    table: &str,
    id: Uuid,
    audit: Audit<'_>,
) -> Result<axum::http::StatusCode, ApiError> {
    let sql = audited(&format!("DELETE FROM {table} WHERE id = $1"), "id", 2);
    let details = serde_json::json!({});
    let row = mutate(
        db,
        &sql,
        &[&id, &audit.actor, &"delete", &audit.resource, &details],
    )
    .await?;
    if row.is_none() {
        Err(ApiError::NotFound)
    } else {
        Ok(axum::http::StatusCode::NO_CONTENT)
    }
}

/// Most ids of one dependent table listed in a delete's audit row (the count is always
/// complete).
pub const CASCADE_IDS: i64 = 100;

/// What a delete takes with it through `ON DELETE CASCADE` / `SET NULL`, so that its
/// audit row can say so. Computed in the delete's own statement (no triggers, so it works
/// where triggers cannot, such as distributed tables).
#[derive(Debug, Clone, Copy)]
pub struct Cascade {
    /// Run first, with `$1` the id: locks the row and the rows that new dependents could
    /// still be attached to (an insert's foreign-key check waits for these locks), and
    /// returns at least one row if the row exists. The delete then runs with a snapshot
    /// taken after the locks: what it lists is exactly what goes with the row.
    pub lock: Option<&'static str>,
    /// `(name, SELECT id …)` per dependent, with `$1` the deleted row's id; a query may
    /// name an earlier dependent as a table (`c_<name>`).
    pub dependents: &'static [(&'static str, &'static str)],
}

/// [`delete`], with the audit row's `details.cascade` listing per dependent table the
/// rows that went with it (or were unlinked): `{"<name>": {"count": n, "ids": [...],
/// "ids_complete": bool}}`, ids in id order, at most [`CASCADE_IDS`].
pub async fn delete_cascading(
    db: &mut crate::pool::TenantTx,
    table: &str,
    id: Uuid,
    audit: Audit<'_>,
    cascade: Cascade,
) -> Result<axum::http::StatusCode, ApiError> {
    if let Some(lock) = cascade.lock {
        if db.query(lock, &[&id]).await?.is_empty() {
            return Err(ApiError::NotFound);
        }
    }
    let mut ctes = Vec::new();
    let mut parts = Vec::new();
    for (name, select) in cascade.dependents {
        ctes.push(format!("c_{name} AS ({select})"));
        parts.push(format!(
            "'{name}', jsonb_build_object(\
               'count', (SELECT count(*) FROM c_{name}), \
               'ids', (SELECT COALESCE(jsonb_agg(id ORDER BY id), '[]'::jsonb) \
                       FROM (SELECT id FROM c_{name} ORDER BY id LIMIT {CASCADE_IDS}) l), \
               'ids_complete', (SELECT count(*) <= {CASCADE_IDS} FROM c_{name}))"
        ));
    }
    let sql = format!(
        "WITH {}, r AS (DELETE FROM {table} WHERE id = $1 RETURNING id), \
         a AS (INSERT INTO audit_log (actor, action, resource_type, resource_id, details) \
               SELECT $2::text, $3::text, $4::text, r.id, \
                      jsonb_build_object('cascade', jsonb_build_object({})) FROM r) \
         SELECT id FROM r",
        ctes.join(", "),
        parts.join(", ")
    );
    let row = mutate(db, &sql, &[&id, &audit.actor, &"delete", &audit.resource]).await?;
    if row.is_none() {
        Err(ApiError::NotFound)
    } else {
        Ok(axum::http::StatusCode::NO_CONTENT)
    }
}

/// Runs an audited mutation as the request's last statement, committing with it
/// ([`TenantTx::query_commit`](crate::pool::TenantTx::query_commit): one round trip when
/// it is the request's only statement). The mutated row, if one matched. Every mutation
/// handler ends with it, so nothing after it can fail and want a rollback.
///
/// Under a request with an `Idempotency-Key` ([`super::idempotency`]) it does not commit:
/// the answer is recorded in the same transaction first, and the request's layer commits.
pub async fn mutate(
    db: &mut crate::pool::TenantTx,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<tokio_postgres::Row>, ApiError> {
    if super::idempotency::deferring_commit() {
        return Ok(db.query(sql, params).await?.into_iter().next());
    }
    Ok(db.query_commit(sql, params).await?.into_iter().next())
}

/// [`mutate`] for an `INSERT`, which always returns its row.
pub async fn created(
    db: &mut crate::pool::TenantTx,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<tokio_postgres::Row, ApiError> {
    mutate(db, sql, params)
        .await?
        .ok_or_else(|| ApiError::Internal("an insert returned no row".into()))
}

/// Who did what to which kind of resource, for the audit row.
#[derive(Debug, Clone, Copy)]
pub struct Audit<'a> {
    /// `api_key:<id>` or `user:<sub>`.
    pub actor: &'a str,
    /// The resource type, e.g. `project`.
    pub resource: &'a str,
}

/// Wraps a mutation (without `RETURNING`) so that it writes its audit row in the same
/// statement: one round trip, one transaction. Parameters `$first..$first+3` are actor,
/// action, resource type and details (jsonb); the audit row's resource id is the
/// mutated row's `id`, and no row is written when nothing matched.
pub fn audited(mutation: &str, columns: &str, first: usize) -> String {
    format!(
        "WITH r AS ({mutation} RETURNING {columns}), \
         a AS (INSERT INTO audit_log (actor, action, resource_type, resource_id, details) \
               SELECT ${first}::text, ${}::text, ${}::text, r.id, ${}::jsonb FROM r) \
         SELECT {columns} FROM r",
        first + 1,
        first + 2,
        first + 3
    )
}

/// Collects validation errors for one request.
#[derive(Debug, Default)]
pub struct Check(Vec<FieldError>);

impl Check {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an error for `field` unless `ok`.
    pub fn that(&mut self, ok: bool, field: &str, message: &str) -> &mut Self {
        if !ok {
            self.0.push(FieldError::new(field, message));
        }
        self
    }

    /// Checks a string's length in characters.
    pub fn len(&mut self, field: &str, value: Option<&str>, min: usize, max: usize) -> &mut Self {
        if let Some(v) = value {
            let n = v.chars().count();
            if n < min || n > max {
                self.0.push(FieldError::new(
                    field,
                    format!("must be {min} to {max} characters long"),
                ));
            } else if v.contains('\0') {
                self.0
                    .push(FieldError::new(field, "must not contain NUL characters"));
            }
        }
        self
    }

    /// Checks that a value is one of `allowed`.
    pub fn one_of(&mut self, field: &str, value: Option<&str>, allowed: &[&str]) -> &mut Self {
        if let Some(v) = value {
            if !allowed.contains(&v) {
                self.0.push(FieldError::new(
                    field,
                    format!("must be one of: {}", allowed.join(", ")),
                ));
            }
        }
        self
    }

    /// 422 if anything was recorded.
    pub fn done(&mut self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(std::mem::take(&mut self.0)))
        }
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
        for bad in ["", "!!!", "bm9wZQ", "MTIzLm5vdGF1dWlk"] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }
}
