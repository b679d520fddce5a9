//! TG001–TG007: row-level security switched off, not forced, or missing per command.

use super::{declare_rule, obj_table, tenant_predicate, Rule, Sink};
use crate::audit::model::TenantKind;
use crate::audit::{Model, Severity};
use crate::policy::{ident, Command};

declare_rule!(TG001 "rls-disabled" Critical "Row-level security is disabled on a tenant table the app can access");
declare_rule!(TG002 "dormant-policies" Critical "Policies exist on a table whose row-level security is disabled");
declare_rule!(TG003 "app-owns-tenant-table" Critical "The app role can become the owner of a tenant table");
declare_rule!(TG004 "rls-not-forced" Low "Row-level security is enabled but not forced for the owner");
declare_rule!(TG005 "command-without-policy" Low "The app holds a privilege for a command that has no permissive policy (it fails closed)");
declare_rule!(TG006 "child-without-tenant-column" Medium "A table reaches tenant tables through foreign keys but has no tenant column");
declare_rule!(TG007 "unprotected-writable-table" Medium "A table without row-level security that the app can write is a cross-tenant channel");
declare_rule!(TG056 "shared-parent-writable" High "A table without tenant column that tenant tables reference is writable across tenants");

pub(super) fn check(model: &Model, sink: &mut Sink) {
    let app = ident(&model.config.app_role);
    for (t, tt) in model.tenant_tables() {
        let qt = t.qualified();
        let has_policies = model.catalog.policies.iter().any(|p| p.table == t.oid);
        let col = tt
            .column
            .clone()
            .unwrap_or_else(|| model.config.tenant_column.clone());
        if !t.rls {
            if has_policies {
                sink.add(
                    &TG002,
                    obj_table(t),
                    "Policies exist but row-level security is disabled, so none of them is applied: every role with a privilege sees every tenant's rows.",
                    format!("ALTER TABLE {qt} ENABLE ROW LEVEL SECURITY;\nALTER TABLE {qt} FORCE ROW LEVEL SECURITY;"),
                );
            } else {
                let sev = if t.privileges.any() {
                    Severity::Critical
                } else {
                    Severity::Low
                };
                sink.add_at(
                    &TG001, sev,
                    obj_table(t),
                    "Row-level security is disabled on a tenant table, so the app reads and writes every tenant's rows.",
                    format!(
                        "ALTER TABLE {qt} ENABLE ROW LEVEL SECURITY;\nALTER TABLE {qt} FORCE ROW LEVEL SECURITY;\nCREATE POLICY tenant_isolation ON {qt} TO {app} USING {p} WITH CHECK {p};",
                        p = tenant_predicate(model, t.oid, &col)
                    ),
                );
            }
        } else if t.owner_reachable {
            sink.add(
                &TG003,
                obj_table(t),
                format!(
                    "The app can become the owner {:?}, and an owner can NO FORCE or DISABLE row-level security and drop policies{}.",
                    t.owner,
                    if t.force { "" } else { "; without FORCE it already bypasses every policy" }
                ),
                format!(
                    "-- Give the table to a NOLOGIN role the app is not a member of:\nALTER TABLE {qt} OWNER TO tenant_owner;\nALTER TABLE {qt} FORCE ROW LEVEL SECURITY;"
                ),
            );
        } else if !t.force {
            sink.add(
                &TG004,
                obj_table(t),
                format!(
                    "The owner {:?} bypasses the policies; the app cannot become it, so FORCE is defense in depth against code that runs as the owner.",
                    t.owner
                ),
                format!("ALTER TABLE {qt} FORCE ROW LEVEL SECURITY;"),
            );
        }
        if t.rls {
            for cmd in Command::ALL {
                let has_priv = match cmd {
                    Command::Select => t.privileges.select,
                    Command::Insert => t.privileges.insert,
                    Command::Update => t.privileges.update,
                    Command::Delete => t.privileges.delete,
                };
                let check_side = cmd == Command::Insert;
                if has_priv && model.effective(t, tt, cmd, check_side).denied() {
                    sink.add(
                        &TG005,
                        format!("{} command {}", obj_table(t), cmd.sql()),
                        format!(
                            "The app holds {} but no permissive policy applies to it, so the command matches no row (fails closed); either revoke the privilege or add a tenant policy.",
                            cmd.sql()
                        ),
                        format!(
                            "CREATE POLICY tenant_{} ON {qt} FOR {} TO {app} {};",
                            cmd.name(),
                            cmd.sql(),
                            match cmd {
                                Command::Insert => format!("WITH CHECK {}", tenant_predicate(model, t.oid, &col)),
                                Command::Update => format!("USING {p} WITH CHECK {p}", p = tenant_predicate(model, t.oid, &col)),
                                _ => format!("USING {}", tenant_predicate(model, t.oid, &col)),
                            }
                        ),
                    );
                }
            }
        }
        if tt.kind == TenantKind::Child {
            sink.add(
                &TG006,
                obj_table(t),
                format!(
                    "The table holds tenant data (it references a tenant table) but has no {:?} column, so its policies must join the parent and its keys cannot include the tenant.",
                    model.config.tenant_column
                ),
                format!(
                    "ALTER TABLE {qt} ADD COLUMN {c} uuid;\n-- backfill from the parent, then:\nALTER TABLE {qt} ALTER COLUMN {c} SET NOT NULL;",
                    c = ident(&model.config.tenant_column)
                ),
            );
        }
    }
    shared_parents(model, sink);
    for t in &model.catalog.tables {
        if matches!(t.kind, 'r' | 'p')
            && !model.tenant.contains_key(&t.oid)
            && !t.rls
            && t.privileges.writes()
        {
            sink.add(
                &TG007,
                obj_table(t),
                "The app can write this table and it has no row-level security, so whatever one tenant writes here every other tenant can read or change.",
                format!(
                    "-- If it holds per-tenant data, add the tenant column and policies; otherwise:\nREVOKE INSERT, UPDATE, DELETE ON {} FROM {app};",
                    t.qualified()
                ),
            );
        }
    }
}

/// TG056: a table without the tenant column that tenant tables reference (a shared parent:
/// plans, categories, settings) and that the app may change across tenants: no RLS, or a
/// permissive write policy that admits every row (`USING (true)`, often meant for an
/// in-tenant admin role). One tenant's request changes what every tenant's rows point at.
fn shared_parents(model: &Model, sink: &mut Sink) {
    let app = ident(&model.config.app_role);
    for t in model
        .catalog
        .tables
        .iter()
        .filter(|t| matches!(t.kind, 'r' | 'p') && !model.tenant.contains_key(&t.oid))
    {
        let children: Vec<String> = model
            .catalog
            .foreign_keys
            .iter()
            .filter(|fk| fk.references == t.oid && model.tenant.contains_key(&fk.table))
            .filter_map(|fk| model.table(fk.table).map(|c| c.display()))
            .collect();
        let p = t.privileges;
        if children.is_empty() || !(p.update || p.delete || p.insert) {
            continue;
        }
        let open_policy = model.catalog.policies.iter().find(|x| {
            x.table == t.oid
                && x.applies_to_app
                && x.permissive
                && matches!(x.cmd, '*' | 'w' | 'd' | 'a')
                && [x.using.as_deref(), x.check.as_deref()]
                    .into_iter()
                    .flatten()
                    .any(|e| {
                        e.trim()
                            .trim_matches(|c| c == '(' || c == ')')
                            .eq_ignore_ascii_case("true")
                    })
        });
        let how = match (t.rls, open_policy) {
            (false, _) => "has no row-level security".to_string(),
            (true, Some(pol)) => format!(
                "has the permissive policy {:?} that admits every row",
                pol.name
            ),
            (true, None) => continue,
        };
        sink.add(
            &TG056,
            obj_table(t),
            format!(
                "A shared parent of tenant tables ({}) without a tenant column, which the app may change and which {how}: one tenant's request changes or deletes rows every tenant's data refers to.",
                children.join(", ")
            ),
            format!(
                "REVOKE INSERT, UPDATE, DELETE ON {} FROM {app};\n-- or give it a tenant column, or restrict writes to a role no tenant request uses",
                t.qualified()
            ),
        );
    }
}
