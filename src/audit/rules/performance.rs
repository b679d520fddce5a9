//! TG060–TG062 (performance of the policies) and TG070 (engine version).

use std::collections::HashSet;

use super::{declare_rule, obj_policy, obj_table, Rule, Sink};
use crate::audit::predicate;
use crate::audit::{Model, Severity};
use crate::policy::ident;

declare_rule!(TG060 "no-tenant-index" Low "No index leads with the tenant column");
declare_rule!(TG061 "volatile-policy-function" Medium "A policy calls a VOLATILE function (no index use, runs per row)");
declare_rule!(TG062 "per-row-policy-call" Low "A policy calls a function per row instead of once as (SELECT fn())");
declare_rule!(TG070 "engine-version" Medium "The server version lacks fixes for known row-security bugs");

/// Oldest fixed minor release per major version for the row-security CVEs in the notes
/// (CVE-2023-2455, CVE-2024-10976/10978, CVE-2024-4317, CVE-2025-8713).
const FIXED: &[(i32, i32)] = &[(13, 22), (14, 19), (15, 14), (16, 10), (17, 6)];

pub(super) fn check(model: &Model, sink: &mut Sink) {
    for (t, tt) in model.tenant_tables() {
        let Some(col) = tt.column.as_deref() else {
            continue;
        };
        if t.kind == 'f' {
            continue;
        }
        let leads = model.catalog.indexes.iter().any(|i| {
            i.table == t.oid
                && !i.partial
                && i.columns.first().and_then(|c| c.as_deref()) == Some(col)
        });
        if !leads {
            sink.add(
                &TG060,
                obj_table(t),
                format!("No index has {col:?} as its first column, so every query the tenant predicate filters scans the whole table."),
                format!("CREATE INDEX ON {} ({});", t.qualified(), ident(col)),
            );
        }
    }
    let mut volatile_seen = HashSet::new();
    for p in &model.catalog.policies {
        let Some(t) = model.tenant.get(&p.table).and(model.table(p.table)) else {
            continue;
        };
        // Citus refuses the `(SELECT fn())` form on its tables: the per-row call is right there.
        let on_citus = super::citus::is_citus_table(model, p.table);
        let fns: Vec<_> = model
            .catalog
            .functions
            .iter()
            .filter(|f| p.functions.contains(&f.oid))
            .collect();
        for f in &fns {
            if f.volatility == 'v' && volatile_seen.insert((p.oid, f.oid)) {
                sink.add(
                    &TG061,
                    obj_policy(p, t),
                    format!("It calls VOLATILE {}.{}, which prevents index conditions and runs once per row.", f.schema, f.name),
                    format!("ALTER FUNCTION {} STABLE; -- if it truly is", f.signature()),
                );
            }
        }
        let names: Vec<String> = fns
            .iter()
            .flat_map(|f| {
                [
                    format!("{}.{}", f.schema, f.name).to_lowercase(),
                    f.name.to_lowercase(),
                ]
            })
            .collect();
        for e in [p.using.as_deref(), p.check.as_deref()]
            .into_iter()
            .flatten()
        {
            let calls = predicate::per_row_calls(e, &names);
            if !calls.is_empty() && !on_citus {
                sink.add(
                    &TG062,
                    obj_policy(p, t),
                    format!("{} is evaluated for every row; written as (SELECT {}(…)) it runs once per query as an InitPlan.", calls.join(", "), calls[0]),
                    format!("-- rewrite the predicate with (SELECT {}(…))", calls[0]),
                );
            }
        }
    }
    let v = model.catalog.server_version_num;
    let (major, minor) = (v / 10000, v % 10000);
    if server_outdated(v) {
        sink.add(
            &TG070,
            format!("server {major}.{minor}"),
            "This release predates fixes for row-security bugs (CVE-2023-2455, CVE-2024-10976, CVE-2024-10978, CVE-2024-4317, CVE-2025-8713).",
            "-- upgrade to the latest minor release of your major version",
        );
    }
}

/// Whether `server_version_num` lacks the row-security fixes (TG070): below the fixed minor
/// release of its major version, or an unsupported major before 13.
pub fn server_outdated(version_num: i32) -> bool {
    let (major, minor) = (version_num / 10000, version_num % 10000);
    match FIXED.iter().find(|(m, _)| *m == major) {
        Some((_, fixed)) => minor < *fixed,
        None => major < FIXED[0].0,
    }
}
