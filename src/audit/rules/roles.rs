//! TG030–TG037: the app role, everything it can become, and its privileges.

use std::collections::HashSet;

use super::{declare_rule, obj_table, Rule, Sink};
use crate::audit::{Model, Severity};
use crate::policy::ident;

declare_rule!(TG030 "app-superuser" Critical "The app role, or a role it can become, is a superuser");
declare_rule!(TG031 "app-bypassrls" Critical "The app role, or a role it can become, has BYPASSRLS");
declare_rule!(TG032 "app-owns-policy-function" Critical "The app can become the owner of a function a policy calls");
declare_rule!(TG033 "truncate-granted" High "TRUNCATE on a tenant table is granted to the app (TRUNCATE ignores RLS)");
declare_rule!(TG034 "references-granted" Medium "REFERENCES on a tenant table is granted to the app");
declare_rule!(TG035 "trigger-granted" High "TRIGGER on a tenant table is granted to the app");
declare_rule!(TG036 "dangerous-predefined-role" High "The app can become a predefined role that reads files or bypasses unprotected tables");
declare_rule!(TG037 "default-privileges" Medium "Default privileges give the app TRUNCATE, TRIGGER or REFERENCES on future tables");
declare_rule!(TG038 "server-file-functions" High "The app may execute functions that read server files or move large objects to and from them");
declare_rule!(TG057 "maintain-granted" Low "MAINTAIN (PostgreSQL 17+) on a tenant table is granted to the app");
declare_rule!(TG055 "default-dml-privileges" Medium "Default privileges grant SELECT or DML on future tables to the app before RLS exists");

pub(super) fn check(model: &Model, sink: &mut Sink) {
    let app = &model.config.app_role;
    let qapp = ident(app);
    for r in &model.catalog.app_roles {
        // SUPERUSER and BYPASSRLS are never inherited: on roles the app can actually become
        // (PG16+: the grant's SET option) they are critical. A grant with INHERIT but no SET
        // (PG16+) still hands the app that role's ownership rights: it can redefine any view
        // or function the role owns, and those run with the owner's rights, BYPASSRLS or
        // superuser included. That needs such an object to exist (or to be planted by
        // someone else): high. Predefined roles act through inherited privileges, so they
        // count either way.
        let is_app = &r.name == app;
        let becomes = is_app || r.can_set;
        if !becomes && !r.inherits && !is_predefined(&r.name) {
            // A PG16+ grant with neither SET nor INHERIT: the app gets nothing of it.
            continue;
        }
        let (sev, via, how) = if becomes {
            let via = if is_app {
                "The app role".to_string()
            } else {
                format!("The app can SET ROLE to {:?}, which", r.name)
            };
            (Severity::Critical, via, "")
        } else {
            (
                Severity::High,
                format!(
                    "The app inherits the privileges of {:?} (a grant with INHERIT but no SET), which",
                    r.name
                ),
                " The app cannot become it, but it holds its ownership rights: a view or function this role owns can be redefined by the app and then runs with this role's rights.",
            )
        };
        let fix = |attr: &str| {
            if is_app {
                format!("ALTER ROLE {qapp} NO{attr};")
            } else {
                format!("REVOKE {} FROM {qapp};", ident(&r.name))
            }
        };
        if r.superuser && (becomes || r.inherits) {
            sink.add_at(
                &TG030,
                sev,
                format!("role {}", r.name),
                format!("{via} is a superuser: superusers skip every policy, FORCE included.{how}"),
                fix("SUPERUSER"),
            );
        }
        if r.bypass_rls && (becomes || r.inherits) {
            sink.add_at(
                &TG031,
                sev,
                format!("role {}", r.name),
                format!("{via} has BYPASSRLS: it skips every policy, FORCE included.{how}"),
                fix("BYPASSRLS"),
            );
        }
        let (sev, what) = match r.name.as_str() {
            "pg_execute_server_program" => (
                Severity::Critical,
                "runs OS commands as the server, which can read the heap files of every tenant",
            ),
            "pg_read_server_files" | "pg_write_server_files" => (
                Severity::High,
                "reads or writes server files with COPY, outside row-level security",
            ),
            "pg_read_all_data" | "pg_write_all_data" => (
                Severity::Medium,
                "opens every table that has no row-level security",
            ),
            _ => continue,
        };
        sink.add_at(
            &TG036,
            sev,
            format!("role {}", r.name),
            format!(
                "The app can become the predefined role {}, which {what}.",
                r.name
            ),
            format!("REVOKE {} FROM {qapp};", r.name),
        );
    }
    // Functions that policies on tenant tables call.
    let mut policy_fns: HashSet<u32> = HashSet::new();
    for p in &model.catalog.policies {
        if model.tenant.contains_key(&p.table) {
            policy_fns.extend(p.functions.iter().copied());
        }
    }
    for f in &model.catalog.functions {
        if (policy_fns.contains(&f.oid) || model.source_functions.contains(&f.oid))
            && f.owner_reachable
        {
            sink.add(
                &TG032,
                format!("function {}.{}({})", f.schema, f.name, f.args),
                format!("Policies depend on this function and the app can become its owner {:?}, so it can replace the body and decide which tenant it is.", f.owner),
                format!("ALTER FUNCTION {} OWNER TO tenant_owner; -- a NOLOGIN role the app is not a member of", f.signature()),
            );
        }
    }
    for (t, _) in model.tenant_tables() {
        let qt = t.qualified();
        if t.privileges.truncate {
            sink.add(
                &TG033,
                obj_table(t),
                "TRUNCATE is not subject to row-level security: the app can empty the table for every tenant.",
                format!("REVOKE TRUNCATE ON {qt} FROM {qapp};"),
            );
        }
        if t.privileges.references {
            let (sev, extra) = if model.catalog.app_can_create {
                (Severity::Medium, "and it can create tables, so it can build its own foreign key to probe other tenants' keys")
            } else {
                (
                    Severity::Low,
                    "though it cannot create tables to use it today",
                )
            };
            sink.add_at(
                &TG034,
                sev,
                obj_table(t),
                format!("REFERENCES is granted to the app, {extra}."),
                format!("REVOKE REFERENCES ON {qt} FROM {qapp};"),
            );
        }
        if t.privileges.maintain {
            sink.add(
                &TG057,
                obj_table(t),
                "MAINTAIN (PostgreSQL 17+) lets the app LOCK the table, CLUSTER, REINDEX or VACUUM FULL it for every tenant: availability, not data, since these never return rows.",
                format!("REVOKE MAINTAIN ON {qt} FROM {qapp};"),
            );
        }
        if t.privileges.trigger {
            sink.add(
                &TG035,
                obj_table(t),
                "TRIGGER lets the app attach code that runs on every tenant's writes: with one app role for all tenants, one tenant's request can install a trigger that copies every later write of every tenant.",
                format!("REVOKE TRIGGER ON {qt} FROM {qapp};"),
            );
        }
    }
    for f in &model.catalog.file_functions {
        sink.add(
            &TG038,
            format!("function {f}"),
            "It reads server files (or moves large objects to and from them) outside row-level security; the data directory holds every tenant's rows.",
            format!("REVOKE EXECUTE ON FUNCTION {f} FROM {qapp};"),
        );
    }
    for d in &model.catalog.default_acls {
        let scope = if d.schema.is_empty() {
            "all schemas".to_string()
        } else {
            format!("schema {}", d.schema)
        };
        let dml = matches!(
            d.privilege.as_str(),
            "SELECT" | "INSERT" | "UPDATE" | "DELETE"
        );
        let object = format!(
            "default privileges of {} in {scope} ({})",
            d.owner, d.privilege
        );
        let revoke = format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {}{} REVOKE {} ON TABLES FROM {qapp};",
            ident(&d.owner),
            if d.schema.is_empty() {
                String::new()
            } else {
                format!(" IN SCHEMA {}", ident(&d.schema))
            },
            d.privilege
        );
        if dml {
            sink.add(
                &TG055,
                object,
                format!(
                    "Every future table {} creates in {scope} is granted {} to the app at once, before anyone enables row-level security on it: a new tenant table is open to every tenant until its policies exist.",
                    d.owner, d.privilege
                ),
                format!("{revoke}\n-- grant per table, in the migration that also enables RLS"),
            );
            continue;
        }
        sink.add(
            &TG037,
            object,
            format!(
                "Every future table {} creates in {scope} will grant {} to the app.",
                d.owner, d.privilege
            ),
            revoke,
        );
    }
}

fn is_predefined(name: &str) -> bool {
    name.starts_with("pg_")
}
