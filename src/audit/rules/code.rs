//! TG040–TG048: code that runs with someone else's rights or ahead of the policies:
//! views, materialized views, SECURITY DEFINER functions and triggers, LEAKPROOF, column
//! defaults.

use std::collections::HashSet;

use regex::Regex;

use super::{obj_table, Sink};
use crate::audit::catalog::{Function, Table};
use crate::audit::{Model, Severity};
use crate::policy::ident;

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
            sink.add(
                "TG041",
                if v.privileges.select { Severity::Critical } else { Severity::Low },
                obj_table(v),
                format!("A materialized view cannot have row-level security and holds rows of {} computed with its creator's rights; whoever can read it sees every tenant.", names.join(", ")),
                format!("REVOKE ALL ON {} FROM {qapp}, PUBLIC;\n-- or replace it with a view WITH (security_invoker = true)", v.qualified()),
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
            sink.add(
                "TG040",
                sev,
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
        if f.leakproof {
            sink.add(
                "TG046",
                Severity::High,
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
            sink.add(
                "TG043",
                if f.app_can_execute { Severity::High } else { Severity::Low },
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
            sink.add(
                "TG042",
                if f.app_can_execute { Severity::High } else { Severity::Low },
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
        if f.security_definer {
            sink.add(
                "TG044",
                if t.privileges.writes() { Severity::High } else { Severity::Low },
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
                    sink.add(
                        "TG045",
                        Severity::High,
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
                        "TG047",
                        Severity::High,
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
                    "TG048",
                    Severity::Medium,
                    fobj(f),
                    "A policy calls this function, marked IMMUTABLE or STABLE, whose body reads tables; PostgreSQL does not verify the label, and plans may cache or reorder its result.",
                    format!("ALTER FUNCTION {} VOLATILE; -- or remove the table reads", f.signature()),
                );
            }
        }
    }
}
