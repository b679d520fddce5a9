//! A resource's row type, declared once: [`record!`] takes the struct the API serves
//! and derives from its fields the column list, the `GET` by id, and `from_row`.
//!
//! The struct's fields *are* the table's output columns, in order, so there is one list
//! to keep: the SQL (`SELECT <columns>`, `RETURNING <columns>`) is spelled from it at
//! compile time, and `from_row` reads each field by its column's name. That name is
//! resolved to the column's position at compile time (an enum whose variants are the
//! field names), so reading a row costs what `row.get(<index>)` costs: no per-row
//! string search, and nothing to get out of step.
//!
//! Every identifier in the SQL the write and list builders make is a `&'static str`
//! (these constants, or literals at the call site), never a value from a request.
//! Because every statement of a resource is made here or in
//! [`write`](super::write) and [`pagination`](super::pagination), a per-statement
//! addition (such as a `tenant_id = $n` routing hint for a sharded database) has one
//! place to go.

use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::Row;
use uuid::Uuid;

use super::Cursor;
use crate::http::auth::Role;
use crate::http::error::ApiError;

/// What the SQL builders need to know about a resource's table; made by [`record!`].
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// The table.
    pub name: &'static str,
    /// The output columns, comma-separated (the record's fields, in order).
    pub columns: &'static str,
    /// `SELECT <columns> FROM <table> WHERE id = $1`.
    pub get: &'static str,
    /// The same with the routing hint (see [`routing_hint`](super::routing_hint)):
    /// `… WHERE id = $1 AND tenant_id = $2`.
    pub get_routed: &'static str,
    /// The time column lists are ordered by (newest first, `id` breaking ties).
    pub time: &'static str,
    /// The resource type its audit rows name (`project`, …).
    pub resource: &'static str,
}

/// A row type declared with [`record!`].
pub trait Record: Sized {
    /// Its table and columns.
    const TABLE: Table;
    /// Reads one row of [`Table::columns`].
    fn from_row(row: &Row) -> Self;
    /// The list position after this item.
    fn cursor(&self) -> Cursor;
    /// Appends the JSON object of one row of [`Table::columns`]: byte for byte what
    /// `serde_json` writes for `Self::from_row(row)`, without making the struct (see
    /// [`JsonColumn`](crate::http::json::JsonColumn)). A column that does not decode is
    /// an error (500), where `from_row` would panic.
    fn write_json(row: &Row, out: &mut Vec<u8>) -> Result<(), ApiError>;
    /// The list position after the item of this row.
    fn row_cursor(row: &Row) -> Result<Cursor, ApiError>;
}

/// A column that did not decode on the list's fast path: a 500 with its cause.
#[doc(hidden)]
pub fn column_error(name: &str, e: &(dyn std::error::Error + 'static)) -> ApiError {
    ApiError::Internal(format!("column {name}: {}", crate::error_chain(e)))
}

/// Declares a resource's row struct and its [`Record`] impl in one place.
///
/// ```ignore
/// record! {
///     table = "projects", resource = "project", time = created_at;
///     /// A project.
///     #[derive(Debug, Serialize, utoipa::ToSchema)]
///     pub struct Project { pub id: Uuid, pub name: String, pub created_at: DateTime<Utc> }
/// }
/// ```
///
/// Attributes (docs, serde, utoipa) pass through unchanged. Each field type must
/// implement `FromSql` and [`JsonColumn`](crate::http::json::JsonColumn); the struct
/// needs an `id: Uuid` and the `time` field.
///
/// Lists write their JSON straight from the rows ([`Record::write_json`]): every field
/// under its own name, in order, as serde_json writes the field's type. A serde attribute
/// that renames, skips or reformats a field would make the list differ from `GET` by id:
/// tests/api/json_bytes.rs compares both paths byte for byte for every listed resource.
/// (`serialize_with = "…json::timestamp"` is chrono's own format, so it is allowed.)
macro_rules! record {
    (
        table = $table:literal, resource = $resource:literal, time = $time:ident;
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field : $ty ),+
        }

        impl $name {
            /// The output columns, comma-separated.
            #[allow(dead_code)]
            pub(crate) const COLUMNS: &'static str =
                $crate::http::extract::record::__join!($($field),+);

            /// Reads a row of [`Self::COLUMNS`], each field by its column's name.
            pub(crate) fn from_row(row: &tokio_postgres::Row) -> Self {
                // The columns' positions, named: `Col::title as usize` is the index of
                // `title` in COLUMNS, fixed at compile time.
                #[allow(non_camel_case_types, clippy::enum_variant_names)]
                #[repr(usize)]
                enum Col { $($field),+ }
                Self { $( $field: row.get(Col::$field as usize) ),+ }
            }

            /// The list position after this item.
            pub(crate) fn cursor(&self) -> $crate::http::extract::Cursor {
                $crate::http::extract::Cursor { at: self.$time, id: self.id }
            }

            /// [`Record::write_json`](crate::http::extract::Record::write_json).
            pub(crate) fn write_json(
                row: &tokio_postgres::Row,
                out: &mut Vec<u8>,
            ) -> Result<(), $crate::http::error::ApiError> {
                use $crate::http::json::JsonColumn;
                #[allow(non_camel_case_types, clippy::enum_variant_names)]
                #[repr(usize)]
                enum Col { $($field),+ }
                // Every key is written after a comma; the first comma becomes the brace.
                let start = out.len();
                $(
                    out.extend_from_slice(concat!(",\"", stringify!($field), "\":").as_bytes());
                    let raw = row
                        .try_get::<_, <$ty as JsonColumn>::Raw<'_>>(Col::$field as usize)
                        .map_err(|e| $crate::http::extract::record::column_error(stringify!($field), &e))?;
                    <$ty as JsonColumn>::write(raw, out)
                        .map_err(|e| $crate::http::extract::record::column_error(stringify!($field), &*e))?;
                )+
                out[start] = b'{';
                out.push(b'}');
                Ok(())
            }

            /// [`Record::row_cursor`](crate::http::extract::Record::row_cursor).
            pub(crate) fn row_cursor(
                row: &tokio_postgres::Row,
            ) -> Result<$crate::http::extract::Cursor, $crate::http::error::ApiError> {
                #[allow(non_camel_case_types, clippy::enum_variant_names, dead_code)]
                #[repr(usize)]
                enum Col { $($field),+ }
                let at = row
                    .try_get(Col::$time as usize)
                    .map_err(|e| $crate::http::extract::record::column_error(stringify!($time), &e))?;
                let id = row
                    .try_get(Col::id as usize)
                    .map_err(|e| $crate::http::extract::record::column_error("id", &e))?;
                Ok($crate::http::extract::Cursor { at, id })
            }
        }

        impl $crate::http::extract::Record for $name {
            const TABLE: $crate::http::extract::Table = $crate::http::extract::Table {
                name: $table,
                columns: Self::COLUMNS,
                get: concat!(
                    "SELECT ",
                    $crate::http::extract::record::__join!($($field),+),
                    " FROM ", $table, " WHERE id = $1"
                ),
                get_routed: concat!(
                    "SELECT ",
                    $crate::http::extract::record::__join!($($field),+),
                    " FROM ", $table, " WHERE id = $1 AND tenant_id = $2"
                ),
                time: stringify!($time),
                resource: $resource,
            };
            fn from_row(row: &tokio_postgres::Row) -> Self {
                Self::from_row(row)
            }
            fn cursor(&self) -> $crate::http::extract::Cursor {
                Self::cursor(self)
            }
            fn write_json(
                row: &tokio_postgres::Row,
                out: &mut Vec<u8>,
            ) -> Result<(), $crate::http::error::ApiError> {
                Self::write_json(row, out)
            }
            fn row_cursor(
                row: &tokio_postgres::Row,
            ) -> Result<$crate::http::extract::Cursor, $crate::http::error::ApiError> {
                Self::row_cursor(row)
            }
        }
    };
}
pub(crate) use record;

/// `a, b, c` from the identifiers `a`, `b`, `c`, as one string literal.
#[doc(hidden)]
macro_rules! __join {
    ($first:ident $(, $rest:ident)*) => {
        concat!(stringify!($first) $(, ", ", stringify!($rest))*)
    };
}
#[doc(hidden)]
pub(crate) use __join;

/// The row with `id` (in this tenant), or 404. With the routing hint (the default) the
/// statement also names the transaction's own tenant, so a sharded database reads one
/// shard; RLS decides what it sees either way.
pub async fn get_by_id<R: Record>(db: &mut crate::pool::TenantTx, id: Uuid) -> Result<R, ApiError> {
    let row = if super::routing_hint() {
        let tenant = db.tenant().as_uuid();
        db.query_opt(R::TABLE.get_routed, &[&id, &tenant]).await?
    } else {
        db.query_opt(R::TABLE.get, &[&id]).await?
    };
    Ok(R::from_row(&row.ok_or(ApiError::NotFound)?))
}

/// The row with `id` (in this tenant) as [`get_by_id`] reads it, or 404: for a handler
/// that looks at a column before it writes the row ([`get_json_by_id`] otherwise).
pub async fn get_row_by_id<R: Record>(
    db: &mut crate::pool::TenantTx,
    id: Uuid,
) -> Result<Row, ApiError> {
    let row = if super::routing_hint() {
        let tenant = db.tenant().as_uuid();
        db.query_opt(R::TABLE.get_routed, &[&id, &tenant]).await?
    } else {
        db.query_opt(R::TABLE.get, &[&id]).await?
    };
    row.ok_or(ApiError::NotFound)
}

/// `GET /v1/<resource>/{id}`'s body: the row with `id` written by [`Record::write_json`]
/// (the bytes serde_json writes for [`get_by_id`]'s struct, without making the struct),
/// or 404.
pub async fn get_json_by_id<R: Record>(
    db: &mut crate::pool::TenantTx,
    id: Uuid,
) -> Result<crate::http::json::JsonBytes, ApiError> {
    let row = get_row_by_id::<R>(db, id).await?;
    row_json::<R>(&row)
}

/// One row's JSON object as a response body.
pub fn row_json<R: Record>(row: &Row) -> Result<crate::http::json::JsonBytes, ApiError> {
    // Most single objects fit; a long text column grows it once or twice.
    let mut out = Vec::with_capacity(512);
    R::write_json(row, &mut out)?;
    Ok(crate::http::json::JsonBytes(out))
}

/// Roles are stored as their names (`team_members.role`, `api_keys.role`, each with a
/// CHECK constraint). A name this version does not know reads as the weakest role,
/// as it did before rows were read through `FromSql`.
impl<'a> FromSql<'a> for Role {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let name = <&str as FromSql>::from_sql(ty, raw)?;
        Ok(Role::parse(name).unwrap_or(Role::Viewer))
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    record! {
        table = "things", resource = "thing", time = at;
        /// A test row.
        #[derive(Debug)]
        #[allow(dead_code)]
        pub struct Thing {
            pub id: Uuid,
            pub name: String,
            pub at: DateTime<Utc>,
        }
    }

    #[test]
    fn the_columns_and_the_get_come_from_the_fields() {
        assert_eq!(Thing::COLUMNS, "id, name, at");
        let t = <Thing as Record>::TABLE;
        assert_eq!(t.get, "SELECT id, name, at FROM things WHERE id = $1");
        assert_eq!(
            t.get_routed,
            "SELECT id, name, at FROM things WHERE id = $1 AND tenant_id = $2"
        );
        assert_eq!((t.name, t.time, t.resource), ("things", "at", "thing"));
    }
}
