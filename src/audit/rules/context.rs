//! TG021–TG026: how the tenant context (the custom setting) is read and set.

use super::{declare_rule, obj_policy, Rule, Sink};
use crate::audit::predicate::{self, SettingUse};
use crate::audit::{Model, Severity};
use crate::policy::{ident, literal};

declare_rule!(TG021 "one-argument-current-setting" Low "current_setting without missing_ok errors in a session that never set the tenant");
declare_rule!(TG022 "missing-nullif" Low "The tenant setting is cast without NULLIF(…, ''): errors after a rolled-back SET LOCAL");
declare_rule!(TG023 "identity-key" Medium "The policy compares with current_user/session_user, which one pooled app role shares");
declare_rule!(TG024 "policy-trusts-writable-table" High "A policy reads a table the app can write without tenant checks");
declare_rule!(TG025 "session-scoped-context" High "A function sets the tenant setting for the whole session, which outlives the transaction");
declare_rule!(TG026 "default-tenant-setting" High "A role, database or server default sets the tenant setting");
declare_rule!(TG028 "fail-open-context-helper" High "A context helper falls back to a constant tenant when no context is set");

pub(super) fn check(model: &Model, sink: &mut Sink) {
    let setting = &model.config.tenant_setting;
    let robust = crate::isolation::setting_read(setting, "uuid");
    for (t, tt) in model.tenant_tables() {
        for p in model.app_policies(t.oid) {
            let cx = model.context_for(t, tt);
            let mut uses = SettingUse::default();
            let mut identity = false;
            for e in [p.using.as_deref(), p.check.as_deref()]
                .into_iter()
                .flatten()
            {
                let u = model.setting_use(e);
                uses.one_argument |= u.one_argument;
                uses.missing_nullif |= u.missing_nullif;
                identity |= predicate::analyse(e, &cx).identity_key;
            }
            let obj = obj_policy(p, t);
            if uses.one_argument {
                sink.add(
                    &TG021,
                    obj.clone(),
                    format!("current_setting({setting:?}) without missing_ok raises \"unrecognized configuration parameter\" in a session that never set it (fails closed, but breaks requests)."),
                    format!("-- read the setting as {robust}"),
                );
            }
            if uses.missing_nullif {
                sink.add(
                    &TG022,
                    obj.clone(),
                    "After any SET LOCAL the setting survives as '' and the cast raises \"invalid input syntax\" (fails closed, but breaks requests).",
                    format!("-- read the setting as {robust}"),
                );
            }
            if identity {
                sink.add(
                    &TG023,
                    obj.clone(),
                    "The policy keys on current_user/session_user; with one pooled app role every tenant has the same identity, so this isolates nothing.",
                    format!(
                        "ALTER POLICY {} ON {} USING {} ;",
                        ident(&p.name),
                        t.qualified(),
                        super::tenant_predicate(model, t.oid, tt.column.as_deref().unwrap_or(&model.config.tenant_column))
                    ),
                );
            }
            for rel in &p.relations {
                if let Some(r) = model.table(*rel) {
                    let scoped = r.rls && model.tenant.contains_key(rel);
                    if r.privileges.writes() && !scoped {
                        sink.add(
                            &TG024,
                            obj.clone(),
                            format!(
                                "The policy reads {}, which the app can write without a tenant check, so a tenant can grant itself access (for example a membership row in another tenant).",
                                r.display()
                            ),
                            format!(
                                "REVOKE INSERT, UPDATE, DELETE ON {} FROM {};\n-- or protect it with row-level security and a tenant policy",
                                r.qualified(),
                                ident(&model.config.app_role)
                            ),
                        );
                    }
                }
            }
            // Policy functions that read the setting: judge their bodies too.
            for f in
                model.catalog.functions.iter().filter(|f| {
                    p.functions.contains(&f.oid) && model.source_functions.contains(&f.oid)
                })
            {
                let u = model.setting_use(&f.source);
                let fobj = format!("function {}.{}({})", f.schema, f.name, f.args);
                if u.one_argument {
                    sink.add(
                        &TG021, fobj.clone(),
                        format!("current_setting({setting:?}) without missing_ok raises \"unrecognized configuration parameter\" in a session that never set it (fails closed, but breaks requests)."),
                        format!("-- in {}: read the setting as {robust}", f.signature()));
                }
                if u.missing_nullif {
                    sink.add(
                        &TG022, fobj,
                        "After any SET LOCAL the setting survives as '' and the cast raises \"invalid input syntax\" (fails closed, but breaks requests).",
                        format!("-- in {}: read the setting as {robust}", f.signature()));
                }
            }
        }
    }
    for f in &model.catalog.functions {
        if f.app_can_execute && model.setting_use(&f.source).session_scoped_set {
            sink.add(
                &TG025,
                format!("function {}.{}({})", f.schema, f.name, f.args),
                "The function sets the tenant setting with session scope (set_config(…, false) or SET); behind a transaction pooler (or any connection pool) the next request on that connection runs inside this tenant.",
                format!("-- in {}: use set_config({}, value, true) inside the request transaction", f.signature(), literal(setting)),
            );
        }
    }
    for d in &model.catalog.setting_defaults {
        let (obj, fix) = match (d.role.is_empty(), d.database) {
            (false, true) => (
                format!("setting {setting} for role {} in this database", d.role),
                format!(
                    "ALTER ROLE {} IN DATABASE current_database_name RESET {setting};",
                    ident(&d.role)
                ),
            ),
            (false, false) => (
                format!("setting {setting} for role {}", d.role),
                format!("ALTER ROLE {} RESET {setting};", ident(&d.role)),
            ),
            (true, _) => (
                format!("setting {setting} for this database"),
                format!("ALTER DATABASE current_database_name RESET {setting};"),
            ),
        };
        sink.add(
            &TG026,
            obj,
            format!("A default ({}) gives every session of the app a tenant before it sets one, and after RESET or commit the session falls back to that tenant.", d.entry),
            fix,
        );
    }
    // A login role that becomes the app (SET ROLE, or inheriting it) with its own default
    // tenant: every session it opens starts inside that tenant.
    for m in &model.catalog.app_members {
        for entry in &m.tenant_settings {
            sink.add(
                &TG026,
                format!("setting {setting} for role {} (which becomes the app)", m.name),
                format!(
                    "{} is a member of the app role{} and has a default ({entry}): its sessions start inside that tenant before the request sets one, and after RESET or commit they fall back to it.",
                    m.name,
                    if m.login { ", can log in," } else { "" }
                ),
                format!("ALTER ROLE {} RESET {setting};", ident(&m.name)),
            );
        }
    }
    fail_open_helpers(model, sink);
    if let Some(src) = &model.catalog.setting_config_source {
        sink.add(
            &TG026,
            format!("setting {setting} in the server configuration"),
            format!("The server sets the tenant setting ({src}), so every session starts inside a tenant."),
            format!("-- remove {setting} from the server configuration, then: SELECT pg_reload_conf();"),
        );
    }
}

/// The arguments of every `coalesce(…)` call in `text`, split at top-level commas.
fn coalesce_calls(text: &str) -> Vec<Vec<String>> {
    let lower = text.to_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = lower[from..].find("coalesce") {
        let start = from + i + "coalesce".len();
        from = start;
        let rest = lower[start..].trim_start();
        if !rest.starts_with('(') {
            continue;
        }
        let open = lower.len() - rest.len();
        let (mut depth, mut quoted) = (0i32, false);
        let mut args = Vec::new();
        let mut cur = String::new();
        for c in lower[open..].chars() {
            match c {
                '\'' => {
                    quoted = !quoted;
                    cur.push(c);
                }
                '(' if !quoted => {
                    depth += 1;
                    if depth > 1 {
                        cur.push(c);
                    }
                }
                ')' if !quoted => {
                    depth -= 1;
                    if depth == 0 {
                        args.push(cur.trim().to_string());
                        break;
                    }
                    cur.push(c);
                }
                ',' if !quoted && depth == 1 => {
                    args.push(cur.trim().to_string());
                    cur.clear();
                }
                _ => cur.push(c),
            }
        }
        out.push(args);
    }
    out
}

/// A literal that could be a tenant id: a number or a non-empty string other than the
/// empty JSON document (casts allowed).
fn tenant_like_constant(arg: &str) -> bool {
    let v = arg
        .split("::")
        .next()
        .unwrap_or(arg)
        .trim()
        .trim_matches(|c| c == '(' || c == ')');
    if v.parse::<f64>().is_ok() {
        return true;
    }
    let inner = v.strip_prefix('\'').and_then(|x| x.strip_suffix('\''));
    inner.is_some_and(|x| !matches!(x, "" | "{}" | "[]" | "null"))
}

/// TG028: a context helper that falls back to a constant tenant when no context is set
/// (`COALESCE(NULLIF(current_setting(…), '')::bigint, 1)`): a request without context runs
/// as that tenant.
fn fail_open_helpers(model: &Model, sink: &mut Sink) {
    for f in model
        .catalog
        .functions
        .iter()
        .filter(|f| model.source_functions.contains(&f.oid))
    {
        for args in coalesce_calls(&f.source) {
            let Some((last, firsts)) = args.split_last() else {
                continue;
            };
            let reads = firsts.iter().any(|a| {
                a.contains("current_setting")
                    && model.settings.iter().any(|s| a.contains(&format!("'{s}'")))
            });
            if reads && tenant_like_constant(last) {
                sink.add(
                    &TG028,
                    format!("function {}.{}({})", f.schema, f.name, f.args),
                    format!(
                        "The context helper falls back to the constant {last} when no tenant is set: a request without tenant context (a missed set_config, a background job) silently runs as that tenant and reads and writes its rows."
                    ),
                    format!("-- in {}: return NULL (or raise) when the setting is missing, never a constant tenant", f.signature()),
                );
                break;
            }
        }
    }
}
