//! What a tenant table is, stated once. A table (or partitioned or foreign table) is a
//! tenant table when
//!
//! 1. it has the tenant column (per table: the column its tenancy model compares);
//! 2. it is the *tenant registry*: a tenant table's tenant column alone references it, so
//!    its key is the tenant id (`tenants`);
//! 3. it reaches a tenant table through a foreign key (a child without the column), or
//! 4. it is a partition or inheritance child of a tenant table;
//!
//! 3 and 4 to a fixpoint (a partition's children are tenant tables too). The audit
//! applies it to its catalog model ([`classify`]); the pool's start-up check, which must
//! stay one cheap query, applies the same four rules in SQL ([`tenant_tables_cte`]) with its
//! one tenant column. `tests/audit/contract.rs` checks that both agree.

use std::collections::HashMap;

use crate::audit::catalog::Catalog;

/// Why a table is a tenant table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantKind {
    /// It has the tenant column.
    Column,
    /// Other tables' tenant column references it: its key *is* the tenant id.
    Registry,
    /// It has no tenant column but reaches a tenant table through foreign keys.
    Child,
}

/// A tenant table.
#[derive(Debug, Clone)]
pub struct TenantTable {
    /// Why it is one.
    pub kind: TenantKind,
    /// The column holding the tenant id in this table (`None` for a child).
    pub column: Option<String>,
    /// Its rows belong to users, not tenants (the owner model): the column holds a user id.
    pub per_user: bool,
}

/// The relation kinds that hold rows and can be tenant tables.
fn holds_rows(kind: char) -> bool {
    matches!(kind, 'r' | 'p' | 'f')
}

/// The tenant tables of `catalog`, by oid. `column_of(table)` is the tenant column a table
/// with one has under its tenancy model and whether it holds user ids (`None`: the table
/// does not have its model's column).
pub fn classify(
    catalog: &Catalog,
    column_of: impl Fn(&crate::audit::catalog::Table) -> Option<(String, bool)>,
) -> HashMap<u32, TenantTable> {
    let mut tenant: HashMap<u32, TenantTable> = HashMap::new();
    // 1. The column.
    for t in catalog.tables.iter().filter(|t| holds_rows(t.kind)) {
        if let Some((column, per_user)) = column_of(t) {
            let kind = TenantKind::Column;
            let column = Some(column);
            tenant.insert(
                t.oid,
                TenantTable {
                    kind,
                    column,
                    per_user,
                },
            );
        }
    }
    // 2. The registry: referenced by a tenant table's tenant column alone.
    for fk in &catalog.foreign_keys {
        let Some(child) = tenant.get(&fk.table).cloned() else {
            continue;
        };
        if child.kind == TenantKind::Column
            && fk.columns.len() == 1
            && Some(&fk.columns[0]) == child.column.as_ref()
            && !tenant.contains_key(&fk.references)
        {
            tenant.insert(
                fk.references,
                TenantTable {
                    kind: TenantKind::Registry,
                    column: fk.ref_columns.first().cloned(),
                    per_user: child.per_user,
                },
            );
        }
    }
    let kind_of: HashMap<u32, char> = catalog.tables.iter().map(|t| (t.oid, t.kind)).collect();
    // 3 and 4, to a fixpoint.
    loop {
        let mut added = false;
        for fk in &catalog.foreign_keys {
            let is_table = kind_of.get(&fk.table).is_some_and(|k| holds_rows(*k));
            if is_table && !tenant.contains_key(&fk.table) && tenant.contains_key(&fk.references) {
                let t = TenantTable {
                    kind: TenantKind::Child,
                    column: None,
                    per_user: false,
                };
                tenant.insert(fk.table, t);
                added = true;
            }
        }
        for t in &catalog.tables {
            let Some(parent) = t.parent.and_then(|p| tenant.get(&p).cloned()) else {
                continue;
            };
            if let std::collections::hash_map::Entry::Vacant(e) = tenant.entry(t.oid) {
                e.insert(parent);
                added = true;
            }
        }
        if !added {
            break;
        }
    }
    tenant
}

/// The same definition in SQL, as a CTE `tenant_tables(oid)` for a `WITH RECURSIVE`
/// list, with the tenant column given by the SQL expression `column` (a parameter such as
/// `$1`): what the pool's single start-up query uses. System schemas are left out.
pub fn tenant_tables_cte(column: &str) -> String {
    format!(
        "tenant_tables(oid) AS (
             SELECT c.oid FROM pg_class c
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = {column} AND NOT a.attisdropped
             WHERE c.relkind IN ('r', 'p', 'f')
           UNION
             SELECT con.confrelid FROM pg_constraint con
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
             WHERE con.contype = 'f' AND cardinality(con.conkey) = 1 AND a.attname = {column}
           UNION
             SELECT e.child FROM tenant_tables t
             JOIN (SELECT conrelid AS child, confrelid AS parent FROM pg_constraint WHERE contype = 'f'
                   UNION ALL SELECT inhrelid, inhparent FROM pg_inherits) e ON e.parent = t.oid
         )"
    )
}
