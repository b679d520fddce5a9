//! What the Citus metadata says of the audited tables: how each is distributed, its
//! colocation group, and whether Citus will carry the app's tenant context to the workers.
//! Read only when the `citus` extension is installed; on plain PostgreSQL the audit has no
//! Citus section at all.

use std::collections::HashMap;

use tokio_postgres::Transaction;

use super::AuditError;

/// How Citus keeps a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Hash-distributed by a column, in a colocation group.
    Distributed {
        /// The distribution column.
        column: String,
        /// `colocation_id`: tables in one group keep one tenant's rows on one node.
        colocation: i32,
    },
    /// Replicated in full to every node.
    Reference,
    /// A Citus local table (on the coordinator, known to Citus).
    CitusLocal,
}

/// The Citus metadata the rules read.
#[derive(Debug, Clone, Default)]
pub struct CitusCatalog {
    /// `citus` extension version.
    pub version: String,
    /// Placement by table oid; a table absent here is a plain local table on the
    /// coordinator.
    pub tables: HashMap<u32, Placement>,
    /// The value of `citus.propagate_set_commands` that applies to the app role's
    /// sessions, and where it comes from (`role`, `database`, `role in database`,
    /// `server`); `None`: nothing sets it, so the default (`none`) applies.
    pub app_propagate_set: Option<(String, &'static str)>,
}

impl CitusCatalog {
    /// Whether Citus passes a `SET LOCAL` of the app's context on to the workers.
    pub fn app_propagates_set_local(&self) -> bool {
        self.app_propagate_set
            .as_ref()
            .is_some_and(|(v, _)| v.eq_ignore_ascii_case("local"))
    }
}

fn db(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> AuditError {
    move |source| AuditError::Db { context, source }
}

/// Reads the Citus metadata; `None` when Citus is not installed in this database.
pub async fn load(
    tx: &Transaction<'_>,
    app_role: &str,
) -> Result<Option<CitusCatalog>, AuditError> {
    let Some(row) = tx
        .query_opt(
            "SELECT extversion FROM pg_extension WHERE extname = 'citus'",
            &[],
        )
        .await
        .map_err(db("the citus extension"))?
    else {
        return Ok(None);
    };
    let mut out = CitusCatalog {
        version: row.get(0),
        ..CitusCatalog::default()
    };
    // `citus_tables` (Citus 10+) names the type; the distribution column is `<none>` for
    // reference and Citus local tables.
    let rows = tx
        .query(
            "SELECT table_name::oid, citus_table_type, distribution_column, colocation_id
               FROM citus_tables",
            &[],
        )
        .await
        .map_err(db("citus_tables"))?;
    for r in rows {
        let oid: u32 = r.get(0);
        let kind: String = r.get(1);
        let placement = match kind.as_str() {
            "distributed" => Placement::Distributed {
                column: r.get(2),
                colocation: r.get(3),
            },
            "reference" => Placement::Reference,
            _ => Placement::CitusLocal,
        };
        out.tables.insert(oid, placement);
    }
    // Role-and-database beats role beats database beats the server's own value, as
    // PostgreSQL applies them at connection start.
    let rows = tx
        .query(
            "SELECT s.setrole <> 0, s.setdatabase <> 0, split_part(c, '=', 2)
               FROM pg_db_role_setting s, unnest(s.setconfig) c
              WHERE split_part(c, '=', 1) = 'citus.propagate_set_commands'
                AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
                AND s.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = $1))",
            &[&app_role],
        )
        .await
        .map_err(db("role settings of citus.propagate_set_commands"))?;
    let mut best: Option<(u8, String, &'static str)> = None;
    for r in rows {
        let (role, database): (bool, bool) = (r.get(0), r.get(1));
        let (rank, source) = match (role, database) {
            (true, true) => (3, "role in database"),
            (true, false) => (2, "role"),
            (false, true) => (1, "database"),
            (false, false) => (0, "all roles and databases"),
        };
        if best.as_ref().is_none_or(|(b, _, _)| rank > *b) {
            best = Some((rank, r.get(2), source));
        }
    }
    out.app_propagate_set = match best {
        Some((_, v, source)) => Some((v, source)),
        None => {
            // The server's value (postgresql.conf, ALTER SYSTEM), unless it is the default.
            tx.query_opt(
                "SELECT boot_val <> reset_val OR source NOT IN ('default', 'session'), reset_val
                   FROM pg_settings WHERE name = 'citus.propagate_set_commands'",
                &[],
            )
            .await
            .map_err(db("citus.propagate_set_commands"))?
            .filter(|r| r.get::<_, bool>(0))
            .map(|r| (r.get(1), "server"))
        }
    };
    Ok(Some(out))
}
