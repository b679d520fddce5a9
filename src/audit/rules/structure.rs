//! TG050–TG054: keys, nullability, partitions and sequences of tenant tables.

use super::{declare_rule, obj_table, Rule, Sink};
use crate::audit::model::TenantKind;
use crate::audit::{Model, Severity};
use crate::policy::ident;

declare_rule!(TG050 "foreign-key-without-tenant" High "A foreign key between tenant tables omits the tenant column");
declare_rule!(TG051 "unique-without-tenant" Medium "A unique constraint or index on a tenant table omits the tenant column");
declare_rule!(TG052 "nullable-tenant-column" Medium "The tenant column is nullable");
declare_rule!(TG053 "unprotected-partition" Critical "A partition or inheritance child can be queried directly without its own policies");
declare_rule!(TG054 "shared-sequence" Low "A sequence shared by all tenants reveals other tenants' activity");

fn server_generated(default: Option<&str>) -> bool {
    default.is_some_and(|d| {
        let d = d.to_lowercase();
        d.contains("nextval(") || d.contains("uuid") || d.contains("gen_random")
    })
}

pub(super) fn check(model: &Model, sink: &mut Sink) {
    let col = &model.config.tenant_column;
    let qcol = ident(col);
    for fk in &model.catalog.foreign_keys {
        let (Some(from), Some(to)) = (
            model.tenant.get(&fk.table),
            model.tenant.get(&fk.references),
        ) else {
            continue;
        };
        if from.kind != TenantKind::Column || to.kind == TenantKind::Child {
            continue;
        }
        let (Some(t), Some(r)) = (model.table(fk.table), model.table(fk.references)) else {
            continue;
        };
        let tenant_key = to.column.as_deref().unwrap_or(col);
        // The table's own key column (the user column of a per-user table) counts too.
        let from_key = from.column.as_deref().unwrap_or(col);
        let carries_tenant = fk
            .columns
            .iter()
            .zip(&fk.ref_columns)
            .any(|(c, rc)| (c == col || c == from_key) && rc == tenant_key);
        if !carries_tenant {
            let mut cols = vec![qcol.clone()];
            cols.extend(fk.columns.iter().map(|c| ident(c)));
            let mut rcols = vec![ident(tenant_key)];
            rcols.extend(fk.ref_columns.iter().map(|c| ident(c)));
            sink.add(
                &TG050,
                format!("constraint {:?} on {}", fk.name, t.display()),
                format!(
                    "Foreign-key checks bypass row-level security: ({}) can point at another tenant's row in {}, which gives an existence oracle and cross-tenant cascades.",
                    fk.columns.join(", "),
                    r.display()
                ),
                format!(
                    "ALTER TABLE {q} DROP CONSTRAINT {n};\nALTER TABLE {q} ADD CONSTRAINT {n} FOREIGN KEY ({}) REFERENCES {} ({}); -- needs a unique key on the referenced pair",
                    cols.join(", "),
                    r.qualified(),
                    rcols.join(", "),
                    q = t.qualified(),
                    n = ident(&fk.name)
                ),
            );
        }
    }
    for (t, tt) in model.tenant_tables() {
        let Some(tcol) = tt.column.as_deref() else {
            continue;
        };
        for ix in model
            .catalog
            .indexes
            .iter()
            .filter(|i| i.table == t.oid && i.unique)
        {
            let has_tenant = ix.columns.iter().any(|c| c.as_deref() == Some(tcol));
            if has_tenant {
                continue;
            }
            // A single server-generated surrogate (serial, uuid default) is no oracle.
            if let [Some(only)] = ix.columns.as_slice() {
                let c = t.column(only);
                if c.is_some_and(|c| {
                    !c.identity.is_empty() || server_generated(c.default.as_deref())
                }) {
                    continue;
                }
            }
            let cols: Vec<String> = ix
                .columns
                .iter()
                .map(|c| c.clone().unwrap_or_else(|| "(expression)".into()))
                .collect();
            let name = ix.constraint.clone().unwrap_or_else(|| ix.name.clone());
            sink.add(
                &TG051,
                format!("unique {:?} on {}", name, t.display()),
                format!(
                    "Uniqueness of ({}) is checked across all tenants: a duplicate-key error tells a tenant that another tenant has that value (existence oracle, name squatting).",
                    cols.join(", ")
                ),
                match &ix.constraint {
                    Some(c) => format!(
                        "ALTER TABLE {q} DROP CONSTRAINT {n};\nALTER TABLE {q} ADD CONSTRAINT {n} UNIQUE ({}, {});",
                        ident(tcol),
                        cols.join(", "),
                        q = t.qualified(),
                        n = ident(c)
                    ),
                    None => format!(
                        "DROP INDEX {s}.{n};\nCREATE UNIQUE INDEX {n} ON {} ({}, {});",
                        t.qualified(),
                        ident(tcol),
                        cols.join(", "),
                        s = ident(&t.schema),
                        n = ident(&ix.name)
                    ),
                },
            );
        }
        if let Some(c) = t.column(tcol) {
            if !c.not_null && tt.kind == TenantKind::Column {
                sink.add(
                    &TG052,
                    format!("column {}.{}", t.display(), tcol),
                    "A NULL tenant belongs to no tenant: such rows are invisible to the tenant predicate and become shared rows as soon as a policy admits IS NULL.",
                    format!("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL;", t.qualified(), ident(tcol)),
                );
            }
        }
        for c in &t.columns {
            let seq = !c.identity.is_empty()
                || c.default.as_deref().is_some_and(|d| d.contains("nextval("));
            if seq {
                sink.add(
                    &TG054,
                    format!("column {}.{}", t.display(), c.name),
                    "One sequence numbers every tenant's rows: the gaps between a tenant's own ids reveal how much the other tenants write.",
                    format!("-- use a random or per-tenant key, e.g. ALTER TABLE {} ALTER COLUMN {} SET DEFAULT gen_random_uuid() (with a uuid column)", t.qualified(), ident(&c.name)),
                );
            }
        }
    }
    // Partitions and inheritance children queried directly apply only their own policies.
    for t in &model.catalog.tables {
        let Some(parent) = t.parent.and_then(|p| model.table(p)) else {
            continue;
        };
        if !model.tenant.contains_key(&parent.oid) || !t.privileges.any() {
            continue;
        }
        let own = model.catalog.policies.iter().any(|p| p.table == t.oid);
        let parent_has = model.catalog.policies.iter().any(|p| p.table == parent.oid);
        if !t.rls || (parent_has && !own) {
            let what = if t.is_partition {
                "partition"
            } else {
                "inheritance child"
            };
            sink.add_at(
                &TG053, if t.rls { Severity::Low } else { Severity::Critical },
                obj_table(t),
                format!(
                    "This {what} of {} can be named directly, and then only its own row-level security applies ({}).",
                    parent.display(),
                    if t.rls { "enabled but without policies, so it fails closed" } else { "none: every tenant's rows" }
                ),
                format!(
                    "ALTER TABLE {q} ENABLE ROW LEVEL SECURITY;\nALTER TABLE {q} FORCE ROW LEVEL SECURITY;\n-- and copy the parent's policies, or REVOKE ALL ON {q} FROM {}",
                    ident(&model.config.app_role),
                    q = t.qualified()
                ),
            );
        }
    }
}
