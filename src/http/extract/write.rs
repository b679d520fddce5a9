//! Audited writes: the INSERT, PATCH and DELETE builders of the resource modules, and
//! [`Db::finish`], the one way a mutation ends a request.
//!
//! Every mutation writes its audit row in the same statement (a `WITH … RETURNING`
//! around the write, see [`audited`]): one round trip, one transaction. The audit row is
//! a plain `INSERT … VALUES` whose resource id is known before the statement runs (the
//! path's id; a new row's id is made here, a UUIDv7 like the column default): that is a
//! shape a database sharded by tenant (Citus) executes on the tenant's shard, where an
//! `INSERT … SELECT … FROM <the write's RETURNING>` is pulled to the coordinator and
//! refused under RLS (`COPY FROM not supported with row-level security`). That statement
//! is the request's last, and the types say so: [`Db::finish`] takes the request's
//! [`Db`] by value, and every builder's `run` goes through it, so a handler cannot run
//! another statement after its audited one (the borrow checker refuses a use after the
//! move).

use std::marker::PhantomData;

use axum::http::StatusCode;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

use super::record::Record;
use super::Param;
use crate::http::auth::Db;
use crate::http::error::{ApiError, FieldError, Write, WriteKind};

impl Db {
    /// Runs an audited mutation as the request's last statement, committing with it
    /// ([`TenantTx::query_commit`](crate::pool::TenantTx::query_commit): one round trip
    /// when it is the request's only statement), and gives the request's transaction
    /// up: nothing after it can fail and want a rollback. The mutated row, if one
    /// matched (a statement made by [`audited`] with `must_match` fails when none did,
    /// so that its audit row is not committed: that failure reads as `None` here).
    /// `write` says what the statement writes, so that a constraint violation
    /// is reported the right way round (see [`ApiError::from_write`]).
    ///
    /// Under a request with an `Idempotency-Key` ([`crate::http::idempotency`]) it does
    /// not commit: the answer is recorded in the same transaction first, and the
    /// request's layer commits.
    ///
    /// Nothing can run on the request's transaction after it:
    ///
    /// ```compile_fail
    /// # use tenantguard::http::auth::Db;
    /// # use tenantguard::http::error::{Write, WriteKind};
    /// async fn handler(mut db: Db) {
    ///     let w = Write { table: "projects", kind: WriteKind::Delete };
    ///     let _ = db.finish(w, "DELETE FROM projects WHERE false", &[]).await;
    ///     let _ = db.query("SELECT 1", &[]).await; // `db` was moved: does not compile
    /// }
    /// ```
    ///
    /// while the same statements the other way round do:
    ///
    /// ```no_run
    /// # use tenantguard::http::auth::Db;
    /// # use tenantguard::http::error::{Write, WriteKind};
    /// async fn handler(mut db: Db) {
    ///     let _ = db.query("SELECT 1", &[]).await;
    ///     let w = Write { table: "projects", kind: WriteKind::Delete };
    ///     let _ = db.finish(w, "DELETE FROM projects WHERE false", &[]).await;
    /// }
    /// ```
    pub async fn finish(
        mut self,
        write: Write,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, ApiError> {
        let rows = if crate::http::idempotency::deferring_commit() {
            self.query(sql, params).await
        } else {
            self.query_commit(sql, params).await
        };
        match rows {
            Ok(rows) => Ok(rows.into_iter().next()),
            // Nothing matched: the statement failed on purpose and took its audit row
            // with it (the transaction is rolled back, or, under an idempotency key,
            // rolled back to before the handler by the request's layer).
            Err(e) if is_no_row(&e) => Ok(None),
            Err(e) => Err(ApiError::from_write(e, write)),
        }
    }
}

/// The text the guard of a `must_match` [`audited`] statement fails with when the write
/// matched no row. It is our own literal, quoted inside PostgreSQL's "invalid input
/// syntax for type boolean" message in every locale, and no request value reaches it.
const NO_ROW: &str = "tenantguard:no-row-matched:";

fn is_no_row(e: &crate::pool::PoolError) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::INVALID_TEXT_REPRESENTATION)
        && e.db_error().is_some_and(|d| d.message().contains(NO_ROW))
}

/// Wraps a mutation (without `RETURNING`) so that it writes its audit row in the same
/// statement. Parameters `$first..$first+3` are actor, action, resource type and
/// details (jsonb); `$id` is the mutated row's id (known before the statement runs) and
/// `$tenant`, when given, the routing hint's tenant for the audit row (otherwise its
/// column default, the context's tenant).
///
/// The audit row is `INSERT … VALUES`, never `INSERT … SELECT … FROM r`: Citus executes
/// the former on the tenant's shard and refuses the latter under RLS (module docs). So
/// the audit row cannot depend on whether the write matched a row; with `must_match`
/// the statement instead fails when it matched none (a cast of our own marker, the one
/// way plain SQL has to raise an error), which takes the audit row with it, and
/// [`Db::finish`] reads that failure as "no row".
pub fn audited(
    mutation: &str,
    columns: &str,
    first: usize,
    id: usize,
    tenant: Option<usize>,
    must_match: bool,
) -> String {
    let (tcol, tval) = match tenant {
        Some(t) => ("tenant_id, ", format!("${t}::uuid, ")),
        None => ("", String::new()),
    };
    let select = if must_match {
        // The aggregate always yields one row, so the CASE runs even when `r` is empty;
        // its ELSE is not constant (it names the count), so it is evaluated only then.
        format!(
            "SELECT {columns} FROM (SELECT CASE WHEN count(*) > 0 THEN true \
             ELSE ('{NO_ROW}' || count(*))::boolean END AS found FROM r) m, r WHERE m.found"
        )
    } else {
        format!("SELECT {columns} FROM r")
    };
    format!(
        "WITH r AS ({mutation} RETURNING {columns}), \
         a AS (INSERT INTO audit_log ({tcol}actor, action, resource_type, resource_id, details) \
               VALUES ({tval}${first}::text, ${}::text, ${}::text, ${id}::uuid, ${}::jsonb)) \
         {select}",
        first + 1,
        first + 2,
        first + 3
    )
}

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// Builds `INSERT INTO <table> (…) VALUES ($1, …)` with its audit row: parameters are
/// numbered as they are added, and the audit row's `details.changed` lists the columns
/// given with [`set`](Self::set) / [`set_or`](Self::set_or), in that order.
pub struct Insert<R> {
    /// `a, b, …` and `$1, $2, …`, built as they are added (two growing strings rather
    /// than a string per column: this is on every create's path).
    columns: String,
    values: String,
    params: Vec<Param>,
    details: serde_json::Map<String, serde_json::Value>,
    changed: Vec<&'static str>,
    record: PhantomData<fn() -> R>,
}

impl<R: Record> Default for Insert<R> {
    fn default() -> Self {
        Self {
            columns: String::new(),
            values: String::new(),
            params: Vec::new(),
            details: serde_json::Map::new(),
            changed: Vec::new(),
            record: PhantomData,
        }
    }
}

impl<R: Record> Insert<R> {
    /// An insert into `R`'s table.
    pub fn new() -> Self {
        Self::default()
    }

    fn push<T: ToSql + Sync + Send + 'static>(
        &mut self,
        column: &'static str,
        value: T,
        default: Option<&'static str>,
    ) -> &mut Self {
        use std::fmt::Write as _;
        self.params.push(Box::new(value));
        let n = self.params.len();
        if n > 1 {
            self.columns.push_str(", ");
            self.values.push_str(", ");
        }
        self.columns.push_str(column);
        // Writing to a String cannot fail.
        let _ = match default {
            None => write!(self.values, "${n}"),
            Some(d) => write!(self.values, "COALESCE(${n}, {d})"),
        };
        self
    }

    /// Sets `column` (audited as changed).
    pub fn set<T: ToSql + Sync + Send + 'static>(
        &mut self,
        column: &'static str,
        value: T,
    ) -> &mut Self {
        self.changed.push(column);
        self.push(column, value, None)
    }

    /// Sets `column`, or to the SQL expression `default` if `value` is `None` (audited
    /// as changed).
    pub fn set_or<T: ToSql + Sync + Send + 'static>(
        &mut self,
        column: &'static str,
        value: Option<T>,
        default: &'static str,
    ) -> &mut Self {
        self.changed.push(column);
        self.push(column, value, Some(default))
    }

    /// Sets a column the audit row does not list: a secret or a value derived from one
    /// (a key's hash and prefix, a signing secret).
    pub fn set_unaudited<T: ToSql + Sync + Send + 'static>(
        &mut self,
        column: &'static str,
        value: T,
    ) -> &mut Self {
        self.push(column, value, None)
    }

    /// Adds `key` to the audit row's details.
    pub fn detail(&mut self, key: &'static str, value: impl Into<serde_json::Value>) -> &mut Self {
        self.details.insert(key.to_string(), value.into());
        self
    }

    /// The columns the audit row lists as changed.
    pub fn changed(&self) -> &[&'static str] {
        &self.changed
    }

    /// The statement, with its audit row. After the values: the new row's id, the
    /// routing hint's tenant if `tenant`, then actor, action, resource type, details.
    fn sql(&self, tenant: bool) -> String {
        let table = R::TABLE;
        let id = self.params.len() + 1;
        let (tenant_param, first) = if tenant {
            (Some(id + 1), id + 2)
        } else {
            (None, id + 1)
        };
        let sep = if self.params.is_empty() { "" } else { ", " };
        let (tcol, tval) = match tenant_param {
            Some(t) => ("tenant_id, ".to_string(), format!("${t}, ")),
            None => (String::new(), String::new()),
        };
        let mutation = format!(
            "INSERT INTO {} ({tcol}id{sep}{}) VALUES ({tval}${id}{sep}{})",
            table.name, self.columns, self.values
        );
        audited(&mutation, table.columns, first, id, tenant_param, false)
    }

    /// Runs it as the request's last statement: the new row.
    pub async fn run(mut self, db: Db, actor: &str) -> Result<R, ApiError> {
        let hint = super::routing_hint();
        let sql = self.sql(hint);
        let table = R::TABLE;
        // Made here rather than by the column default, so that the audit row can name
        // it in its VALUES (the same UUIDv7 the default makes).
        let id = Uuid::now_v7();
        let tenant = db.tenant().as_uuid();
        self.details
            .insert("changed".into(), serde_json::json!(self.changed));
        let details = serde_json::Value::Object(std::mem::take(&mut self.details));
        let mut params = refs(&self.params);
        params.push(&id);
        if hint {
            params.push(&tenant);
        }
        params.extend_from_slice(&[&actor, &"create", &table.resource, &details]);
        let write = Write {
            table: table.name,
            kind: WriteKind::Insert,
        };
        let row = db
            .finish(write, &sql, &params)
            .await?
            .ok_or_else(|| ApiError::Internal("an insert returned no row".into()))?;
        Ok(R::from_row(&row))
    }
}

/// Builds `UPDATE <table> SET … WHERE id = $1` from the fields a PATCH sent, with its
/// audit row (`details.changed`: the columns set, in order).
pub struct Patch<R> {
    sets: Vec<String>,
    params: Vec<Param>,
    fields: Vec<&'static str>,
    record: PhantomData<fn() -> R>,
}

impl<R: Record> Patch<R> {
    /// A patch of the row with `id`.
    pub fn new(id: Uuid) -> Self {
        Self {
            sets: Vec::new(),
            params: vec![Box::new(id)],
            fields: Vec::new(),
            record: PhantomData,
        }
    }

    /// Sets `column` if the field was sent.
    pub fn set<T: ToSql + Sync + Send + 'static>(
        &mut self,
        column: &'static str,
        value: Option<T>,
    ) -> &mut Self {
        if let Some(v) = value {
            self.params.push(Box::new(v));
            self.sets.push(format!("{column} = ${}", self.params.len()));
            self.fields.push(column);
        }
        self
    }

    /// The changed fields.
    pub fn fields(&self) -> &[&'static str] {
        &self.fields
    }

    /// Runs the update with its audit row as the request's last statement; 404 if the id
    /// does not exist (in this tenant), 422 if no field was sent.
    pub async fn run(self, db: Db, actor: &str) -> Result<R, ApiError> {
        if self.sets.is_empty() {
            return Err(ApiError::Validation(vec![FieldError::new(
                "body",
                "send at least one field to change",
            )]));
        }
        let table = R::TABLE;
        let hint = super::routing_hint();
        let tenant = db.tenant().as_uuid();
        let n = self.params.len();
        let (filter, tenant_param, first) = if hint {
            (format!(" AND tenant_id = ${}", n + 1), Some(n + 1), n + 2)
        } else {
            (String::new(), None, n + 1)
        };
        let mutation = format!(
            "UPDATE {} SET {}, updated_at = now() WHERE id = $1{filter}",
            table.name,
            self.sets.join(", ")
        );
        let sql = audited(&mutation, table.columns, first, 1, tenant_param, true);
        let details = serde_json::json!({ "changed": self.fields });
        let mut params = refs(&self.params);
        if hint {
            params.push(&tenant);
        }
        params.extend_from_slice(&[&actor, &"update", &table.resource, &details]);
        let write = Write {
            table: table.name,
            kind: WriteKind::Update,
        };
        let row = db
            .finish(write, &sql, &params)
            .await?
            .ok_or(ApiError::NotFound)?;
        Ok(R::from_row(&row))
    }
}

/// Deletes the row of `R` with `id` and writes its audit row, as the request's last
/// statement: 204, or 404 if no such row (in this tenant).
pub async fn delete<R: Record>(db: Db, id: Uuid, actor: &str) -> Result<StatusCode, ApiError> {
    let details = serde_json::json!({});
    delete_audited::<R>(db, id, actor, &details).await
}

/// `DELETE … WHERE id = $1 [AND tenant_id = $2]` with its audit row (`details` given),
/// as the request's last statement.
async fn delete_audited<R: Record>(
    db: Db,
    id: Uuid,
    actor: &str,
    details: &serde_json::Value,
) -> Result<StatusCode, ApiError> {
    let table = R::TABLE;
    let hint = super::routing_hint();
    let tenant = db.tenant().as_uuid();
    let (mutation, tenant_param, first) = if hint {
        (
            format!(
                "DELETE FROM {} WHERE id = $1 AND tenant_id = $2",
                table.name
            ),
            Some(2),
            3,
        )
    } else {
        (format!("DELETE FROM {} WHERE id = $1", table.name), None, 2)
    };
    let sql = audited(&mutation, "id", first, 1, tenant_param, true);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id];
    if hint {
        params.push(&tenant);
    }
    params.extend_from_slice(&[&actor, &"delete", &table.resource, details]);
    let write = Write {
        table: table.name,
        kind: WriteKind::Delete,
    };
    let row = db.finish(write, &sql, &params).await?;
    row.map(|_| StatusCode::NO_CONTENT)
        .ok_or(ApiError::NotFound)
}

/// Most ids of one dependent table listed in a delete's audit row (the count is always
/// complete).
pub const CASCADE_IDS: i64 = 100;

/// What a delete takes with it through `ON DELETE CASCADE` / `SET NULL`, so that its
/// audit row can say so. Computed in the delete's own statement (no triggers, so it works
/// where triggers cannot, such as distributed tables).
#[derive(Debug, Clone, Copy)]
pub struct Cascade {
    /// Run first, with `$1` the id and `$2` the transaction's tenant (the routing hint,
    /// always bound here): locks the row and the rows that new dependents could
    /// still be attached to (an insert's foreign-key check waits for these locks), and
    /// returns at least one row if the row exists. The delete then runs with a snapshot
    /// taken after the locks: what it lists is exactly what goes with the row.
    pub lock: Option<&'static str>,
    /// `(name, SELECT id …)` per dependent, with `$1` the deleted row's id and `$2` the
    /// tenant (the routing hint); a query may name an earlier dependent as a table
    /// (`c_<name>`).
    pub dependents: &'static [(&'static str, &'static str)],
}

/// [`delete`], with the audit row's `details.cascade` listing per dependent table the
/// rows that went with it (or were unlinked): `{"<name>": {"count": n, "ids": [...],
/// "ids_complete": bool}}`, ids in id order, at most [`CASCADE_IDS`].
pub async fn delete_cascading<R: Record>(
    mut db: Db,
    id: Uuid,
    actor: &str,
    cascade: Cascade,
) -> Result<StatusCode, ApiError> {
    if let Some(lock) = cascade.lock {
        let tenant = db.tenant().as_uuid();
        if db.query(lock, &[&id, &tenant]).await?.is_empty() {
            return Err(ApiError::NotFound);
        }
    }
    let details = cascade_details(&mut db, id, cascade).await?;
    delete_audited::<R>(db, id, actor, &details).await
}

/// `{"cascade": {…}}` for [`delete_cascading`]: a statement of its own, after the lock
/// (so its snapshot sees every dependent the delete takes), because the audit row's
/// `INSERT … VALUES` can hold no subquery on Citus (see [`audited`]).
async fn cascade_details(
    db: &mut Db,
    id: Uuid,
    cascade: Cascade,
) -> Result<serde_json::Value, ApiError> {
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
    // `$2` typed here, so a dependent query that does not name the tenant still prepares.
    let sql = format!(
        "WITH {} SELECT jsonb_build_object('cascade', jsonb_build_object({})) \
         WHERE $2::uuid IS NOT NULL",
        ctes.join(", "),
        parts.join(", ")
    );
    let tenant = db.tenant().as_uuid();
    let row = db.query_one(&sql, &[&id, &tenant]).await?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::extract::record;
    use chrono::{DateTime, Utc};

    record! {
        table = "things", resource = "thing", time = at;
        #[allow(dead_code)]
        pub struct Thing {
            pub id: Uuid,
            pub name: String,
            pub at: DateTime<Utc>,
        }
    }

    #[test]
    fn an_insert_numbers_its_parameters_and_lists_what_it_audits() {
        let mut insert = Insert::<Thing>::new();
        insert
            .set("name", "n".to_string())
            .set_unaudited("secret", "s".to_string())
            .set_or("kind", None::<String>, "'plain'");
        assert_eq!(insert.changed(), ["name", "kind"]);
        assert_eq!(insert.params.len(), 3);
        assert_eq!(
            insert.sql(true),
            audited(
                "INSERT INTO things (tenant_id, id, name, secret, kind) \
                 VALUES ($5, $4, $1, $2, COALESCE($3, 'plain'))",
                "id, name, at",
                6,
                4,
                Some(5),
                false
            )
        );
        assert!(insert
            .sql(true)
            .contains("VALUES ($5::uuid, $6::text, $7::text, $8::text, $4::uuid, $9::jsonb)"));
        // Without the hint: no tenant column, the audit row takes its default.
        assert!(insert
            .sql(false)
            .starts_with("WITH r AS (INSERT INTO things (id, name, secret, kind) VALUES ($4, $1,"));
        assert!(insert
            .sql(false)
            .contains("VALUES ($5::text, $6::text, $7::text, $4::uuid, $8::jsonb)"));
    }

    #[test]
    fn an_update_or_delete_fails_when_nothing_matched_and_an_insert_does_not() {
        let guarded = audited("DELETE FROM things WHERE id = $1", "id", 2, 1, None, true);
        assert!(guarded.contains(NO_ROW), "{guarded}");
        let plain = audited(
            "INSERT INTO things (id) VALUES ($1)",
            "id",
            2,
            1,
            None,
            false,
        );
        assert!(!plain.contains(NO_ROW), "{plain}");
        assert!(!plain.contains("SELECT id FROM r WHERE"), "{plain}");
    }
}
