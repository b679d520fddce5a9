//! TG040–TG048: code that runs with someone else's rights or ahead of the policies:
//! views, materialized views, SECURITY DEFINER functions and triggers, LEAKPROOF, column
//! defaults.

use std::collections::HashSet;

use regex::Regex;

use super::{declare_rule, obj_table, Rule, Sink};
use crate::audit::catalog::{Function, Table};
use crate::audit::{Model, Severity};
use crate::policy::ident;

declare_rule!(TG039 "definer-mints-context" Critical "A SECURITY DEFINER function anyone may call sets the tenant context and ignores its secret");
declare_rule!(TG040 "owner-rights-view" Critical "A view over tenant tables runs with its owner's rights (no security_invoker)");
declare_rule!(TG041 "materialized-view-over-tenant-data" Critical "A materialized view over tenant tables is readable by the app");
declare_rule!(TG042 "definer-function-touches-tenant-tables" Critical "A SECURITY DEFINER function the app can execute reads or writes tenant tables");
declare_rule!(TG043 "definer-without-search-path" High "A SECURITY DEFINER function has no pinned search_path");
declare_rule!(TG044 "definer-trigger" High "A SECURITY DEFINER trigger runs with its owner's rights on a tenant table");
declare_rule!(TG045 "trigger-copies-to-unprotected-table" High "A trigger on a tenant table writes into a table without row-level security");
declare_rule!(TG046 "leakproof-function" High "A non-core function is marked LEAKPROOF and may run before the RLS filter");
declare_rule!(TG047 "definer-in-default" High "A column default of a tenant table calls a SECURITY DEFINER function");
declare_rule!(TG048 "mislabelled-volatility" Medium "A policy function marked IMMUTABLE or STABLE reads tables");

/// Lower-case words of a body, dotted names kept whole and also split.
fn words(text: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    for w in text
        .to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '"'))
    {
        let w = w.replace('"', "");
        if w.is_empty() {
            continue;
        }
        for part in w.split('.') {
            out.insert(part.to_string());
        }
        out.insert(w);
    }
    out
}

fn mentions(words: &HashSet<String>, t: &Table) -> bool {
    words.contains(&t.name.to_lowercase())
        || words.contains(&format!("{}.{}", t.schema, t.name).to_lowercase())
}

fn fobj(f: &Function) -> String {
    format!("function {}.{}({})", f.schema, f.name, f.args)
}

pub(super) fn check(model: &Model, sink: &mut Sink) {
    let qapp = ident(&model.config.app_role);
    // Views and materialized views over tenant tables.
    for v in model
        .catalog
        .tables
        .iter()
        .filter(|t| matches!(t.kind, 'v' | 'm'))
    {
        let bases: Vec<&Table> = model
            .catalog
            .view_deps
            .iter()
            .filter(|(view, _)| *view == v.oid)
            .filter_map(|(_, rel)| model.tenant.get(rel).and(model.table(*rel)))
            .collect();
        if bases.is_empty() {
            continue;
        }
        let names: Vec<String> = bases.iter().map(|b| b.display()).collect();
        if v.kind == 'm' {
            sink.add_at(
                &TG041, if v.privileges.select { Severity::Critical } else { Severity::Low },
                obj_table(v),
                format!("A materialized view cannot have row-level security and holds rows of {} computed with its creator's rights; whoever can read it sees every tenant.", names.join(", ")),
                format!("REVOKE ALL ON {} FROM {qapp}, PUBLIC;\n-- or replace it with a view WITH (security_invoker = true)", v.qualified()),
            );
        } else if !v.security_invoker && view_filters_by_tenant(model, v) {
            sink.add_at(
                &TG040, Severity::Info,
                obj_table(v),
                format!(
                    "The view reads {} with its owner's ({:?}) rights, but its WHERE clause restricts rows to the current tenant itself, so the app sees only its own tenant (security_invoker would still be the safer default).",
                    names.join(", "),
                    v.owner
                ),
                format!("ALTER VIEW {} SET (security_invoker = true);", v.qualified()),
            );
        } else if !v.security_invoker {
            // The owner's rights apply: it bypasses when superuser/BYPASSRLS, or when it
            // owns a base table that is not FORCEd.
            let bypasses = v.owner_bypasses
                || bases
                    .iter()
                    .any(|b| b.owner == v.owner && (!b.force || !b.rls))
                || bases.iter().any(|b| !b.rls);
            let sev = match (v.privileges.select, bypasses) {
                (true, true) => Severity::Critical,
                (true, false) => Severity::Medium,
                (false, _) => Severity::Low,
            };
            sink.add_at(
                &TG040, sev,
                obj_table(v),
                format!(
                    "The view reads {} with its owner's ({:?}) rights and policies, not the app's{}.",
                    names.join(", "),
                    v.owner,
                    if bypasses { ", and that owner bypasses row-level security, so the app sees every tenant" } else { "" }
                ),
                format!("ALTER VIEW {} SET (security_invoker = true);", v.qualified()),
            );
        }
    }

    let tenant_tables: Vec<&Table> = model.tenant_tables().map(|(t, _)| t).collect();
    for f in &model.catalog.functions {
        if f.leakproof && f.arg_types.is_empty() {
            sink.add_at(
                &TG046, Severity::Info,
                fobj(f),
                "Marked LEAKPROOF, but it takes no argument, so it cannot pass a row's values to an error or notice before the row-level security filter.",
                format!("ALTER FUNCTION {} NOT LEAKPROOF; -- hygiene only", f.signature()),
            );
        } else if f.leakproof {
            sink.add(
                &TG046,
                fobj(f),
                "A LEAKPROOF function may run before the row-level security filter (anyone can force a sequential scan); any error or notice carrying its argument leaks other tenants' values.",
                format!("ALTER FUNCTION {} NOT LEAKPROOF;", f.signature()),
            );
        }
        if !f.security_definer {
            continue;
        }
        let pinned = f
            .config
            .iter()
            .any(|c| c.to_lowercase().starts_with("search_path="));
        if !pinned {
            sink.add_at(
                &TG043, if f.app_can_execute { Severity::High } else { Severity::Low },
                fobj(f),
                format!(
                    "Without a pinned search_path the caller's search_path resolves unqualified names, and pg_temp comes first for relations: a temp table can shadow a trusted one{}.",
                    if f.app_can_execute { "; the app can execute it" } else { " (the app cannot execute it today)" }
                ),
                format!("ALTER FUNCTION {} SET search_path = pg_catalog, pg_temp;", f.signature()),
            );
        }
        if f.is_trigger {
            continue;
        }
        let w = words(&f.source);
        let touched: Vec<String> = tenant_tables
            .iter()
            .filter(|t| mentions(&w, t))
            .map(|t| t.display())
            .collect();
        if !touched.is_empty() {
            if let Some(guard) = definer_guard(model, f) {
                sink.add_at(
                    &TG042, Severity::Info,
                    fobj(f),
                    format!(
                        "It runs with its owner's ({:?}) rights and reads or writes {}, but {guard} before it does.",
                        f.owner,
                        touched.join(", ")
                    ),
                    format!("-- review: {} is guarded by its body", f.signature()),
                );
                continue;
            }
            sink.add_at(
                &TG042, if f.app_can_execute { Severity::Critical } else { Severity::Low },
                fobj(f),
                format!(
                    "It runs with its owner's ({:?}) rights and reads or writes {}; unless its body filters by tenant, {}.",
                    f.owner,
                    touched.join(", "),
                    if f.app_can_execute { "the app can use it to reach every tenant's rows" } else { "anyone who can execute it reaches every tenant's rows" }
                ),
                format!(
                    "ALTER FUNCTION {} SECURITY INVOKER;\n-- or REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC, {qapp};",
                    f.signature(),
                    f.signature()
                ),
            );
        }
    }

    // Definer functions that set the tenant context and ignore their secret.
    for f in model
        .catalog
        .functions
        .iter()
        .filter(|f| f.security_definer && !f.is_trigger)
    {
        if !sets_context(model, &f.source) {
            continue;
        }
        let ignored: Vec<String> = arg_names(f)
            .into_iter()
            .enumerate()
            .filter(|(_, n)| secret_like(n))
            .filter(|(i, n)| {
                let body = f.source.to_lowercase();
                !words(&body).contains(&n.to_lowercase()) && !body.contains(&format!("${}", i + 1))
            })
            .map(|(_, n)| n)
            .collect();
        if !ignored.is_empty() && (f.public_execute || f.app_can_execute) {
            sink.add(
                &TG039,
                fobj(f),
                format!(
                    "It sets (mints) the tenant context with its owner's rights, {} may execute it, and its body never uses its secret argument ({}): anyone who can call it picks any tenant.",
                    if f.public_execute { "PUBLIC" } else { "the app" },
                    ignored.join(", ")
                ),
                format!(
                    "REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC;\n-- and verify the secret (e.g. a signed token) before set_config",
                    f.signature()
                ),
            );
        }
    }

    // Triggers on tenant tables.
    let insert_into = Regex::new(r#"insert\s+into\s+([a-z0-9_."]+)"#).ok();
    for tr in &model.catalog.triggers {
        let (Some(t), Some(f)) = (
            model.tenant.get(&tr.table).and(model.table(tr.table)),
            model
                .catalog
                .functions
                .iter()
                .find(|f| f.oid == tr.function),
        ) else {
            continue;
        };
        let obj = format!("trigger {:?} on {}", tr.name, t.display());
        let trigger_words = words(&f.source);
        let reads_tenant = tenant_tables.iter().any(|x| mentions(&trigger_words, x));
        if f.security_definer && !reads_tenant {
            sink.add_at(
                &TG044, Severity::Info,
                obj.clone(),
                format!(
                    "Its function {}.{} is SECURITY DEFINER, but its body names no tenant table: it only works on the row being written (NEW/OLD) or enqueues work elsewhere, so the owner's rights reach no other tenant's rows.",
                    f.schema, f.name
                ),
                format!("ALTER FUNCTION {} SECURITY INVOKER; -- if the owner's rights are not needed", f.signature()),
            );
        } else if f.security_definer {
            sink.add_at(
                &TG044, if t.privileges.writes() { Severity::High } else { Severity::Low },
                obj.clone(),
                format!(
                    "Its function {}.{} is SECURITY DEFINER: whenever the app writes the table it runs with {:?}'s rights (EXECUTE is not checked), outside the app's policies.",
                    f.schema, f.name, f.owner
                ),
                format!("ALTER FUNCTION {} SECURITY INVOKER;", f.signature()),
            );
        }
        if let Some(re) = &insert_into {
            let body = f.source.to_lowercase();
            for cap in re.captures_iter(&body) {
                let target = cap[1].replace('"', "");
                let name = target.rsplit('.').next().unwrap_or(&target).to_string();
                let hit = model.catalog.tables.iter().find(|x| {
                    x.name.to_lowercase() == name
                        && (!target.contains('.')
                            || target.starts_with(&format!("{}.", x.schema.to_lowercase())))
                        && matches!(x.kind, 'r' | 'p')
                        && !x.rls
                });
                if let Some(dest) = hit {
                    sink.add_at(
                        &TG045, // Only a leak where someone on the app's side can read the copies.
                        if dest.privileges.select { Severity::High } else { Severity::Medium },
                        obj.clone(),
                        format!(
                            "Its function copies rows into {}, which has no row-level security, so tenant data lands where every tenant (or anyone with access) can read it.",
                            dest.display()
                        ),
                        format!(
                            "ALTER TABLE {q} ENABLE ROW LEVEL SECURITY;\nALTER TABLE {q} FORCE ROW LEVEL SECURITY;\n-- and add a tenant policy",
                            q = dest.qualified()
                        ),
                    );
                }
            }
        }
    }

    // Column defaults that call SECURITY DEFINER functions.
    for t in &tenant_tables {
        for c in &t.columns {
            let Some(d) = &c.default else { continue };
            let w = words(d);
            for f in model
                .catalog
                .functions
                .iter()
                .filter(|f| f.security_definer)
            {
                if w.contains(&f.name.to_lowercase()) {
                    sink.add(
                        &TG047,
                        format!("column {}.{}", t.display(), c.name),
                        format!("The default calls SECURITY DEFINER {}.{}, which runs with {:?}'s rights on every insert.", f.schema, f.name, f.owner),
                        format!("ALTER FUNCTION {} SECURITY INVOKER;", f.signature()),
                    );
                }
            }
        }
    }

    // Policy functions marked IMMUTABLE/STABLE whose body reads tables.
    let from = Regex::new(r"\b(from|join)\s+[a-z_]").ok();
    let mut seen = HashSet::new();
    for p in &model.catalog.policies {
        if !model.tenant.contains_key(&p.table) {
            continue;
        }
        for f in model
            .catalog
            .functions
            .iter()
            .filter(|f| p.functions.contains(&f.oid))
        {
            if f.volatility != 'v'
                && seen.insert(f.oid)
                && from
                    .as_ref()
                    .is_some_and(|r| r.is_match(&f.source.to_lowercase()))
            {
                sink.add(
                    &TG048,
                    fobj(f),
                    "A policy calls this function, marked IMMUTABLE or STABLE, whose body reads tables; PostgreSQL does not verify the label, and plans may cache or reorder its result.",
                    format!("ALTER FUNCTION {} VOLATILE; -- or remove the table reads", f.signature()),
                );
            }
        }
    }
}

/// Argument names of a function, from its identity arguments (`a uuid, secret text`).
fn arg_names(f: &Function) -> Vec<String> {
    if f.args.trim().is_empty() {
        return Vec::new();
    }
    f.args
        .split(',')
        .map(|a| {
            let parts: Vec<&str> = a.split_whitespace().collect();
            // `IN name type`, `name type` or just `type`.
            let parts: Vec<&str> = parts
                .into_iter()
                .filter(|p| !matches!(p.to_lowercase().as_str(), "in" | "inout" | "variadic"))
                .collect();
            if parts.len() >= 2 {
                parts[0].trim_matches('"').to_string()
            } else {
                String::new()
            }
        })
        .collect()
}

/// An argument name that looks like a credential.
pub(crate) fn secret_like(name: &str) -> bool {
    let n = name.to_lowercase();
    [
        "secret", "token", "key", "sig", "hmac", "password", "nonce", "jwt",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// Whether a body sets one of the context settings (`set_config('<setting>', …)`).
fn sets_context(model: &Model, body: &str) -> bool {
    let lower = body.to_lowercase();
    model.settings.iter().any(|s| {
        Regex::new(&format!(
            r"set_config\s*\(\s*'{}'|(^|[;\s])set\s+(local\s+)?{}\s*(=|to)",
            regex::escape(s),
            regex::escape(s)
        ))
        .is_ok_and(|r| r.is_match(&lower))
    })
}

/// Why a SECURITY DEFINER function over tenant tables is guarded, if its body shows it:
/// it filters by the tenant context, checks the caller's membership, or checks a secret
/// (and raises) before touching rows.
fn definer_guard(model: &Model, f: &Function) -> Option<String> {
    let body = f.source.to_lowercase();
    let w = words(&body);
    let reads = model.reads_context(&body);
    let tenant_cols: Vec<String> = model
        .tenant
        .values()
        .filter_map(|tt| tt.column.clone())
        .chain(std::iter::once(model.config.tenant_column.clone()))
        .map(|c| c.to_lowercase())
        .collect();
    if reads && tenant_cols.iter().any(|c| w.contains(c)) && w.contains("where") {
        return Some("its body filters by the tenant context (WHERE … = the context)".into());
    }
    let raises = body.contains("raise") && body.contains("exception");
    let membership = model.models().iter().any(|m| {
        m.membership_table().is_some_and(|t| {
            let bare = t.rsplit('.').next().unwrap_or(t).to_lowercase();
            w.contains(&bare)
        })
    }) || w.iter().any(|x| x.contains("member"));
    if reads && membership && (raises || w.contains("exists")) {
        return Some("it checks the caller's membership".into());
    }
    let secret = arg_names(f)
        .iter()
        .any(|n| secret_like(n) && w.contains(&n.to_lowercase()))
        || ["crypt(", "digest(", "hmac("]
            .iter()
            .any(|x| body.contains(x));
    if raises && secret {
        return Some("it checks a secret and raises otherwise".into());
    }
    None
}

/// Whether a view's own WHERE clause restricts rows to the current tenant.
fn view_filters_by_tenant(model: &Model, v: &Table) -> bool {
    let Some(def) = &v.view_definition else {
        return false;
    };
    let lower = def.to_lowercase();
    let Some(pos) = lower.find(" where ") else {
        return false;
    };
    let mut clause = &def[pos + 7..];
    let clause_lower = clause.to_lowercase();
    for stop in [" group by ", " order by ", " limit ", " union ", " having "] {
        if let Some(i) = clause_lower.find(stop) {
            clause = &clause[..i];
        }
    }
    let clause = clause.trim().trim_end_matches(';');
    let tt = crate::audit::model::TenantTable {
        kind: crate::audit::model::TenantKind::Column,
        column: Some(model.config.tenant_column.clone()),
        per_user: false,
    };
    let mut cx = model.context(&tt);
    cx.identity_is_context = model.models().iter().any(|m| m.identity_is_context());
    crate::audit::predicate::analyse(clause, &cx).scoped
}
