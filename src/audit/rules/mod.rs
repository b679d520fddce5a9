//! The rules. Each has a stable id (never reused), a default severity and a one-line
//! title; the modules below hold the checks, grouped by concern. Severities follow the
//! research notes in `docs/rls-pitfalls.md`: a finding is high or critical only when a
//! tenant can read or change another tenant's rows.

mod code;
mod context;
mod performance;
mod policies;
mod rls;
mod roles;
mod structure;

use std::collections::BTreeMap;

pub use performance::server_outdated;

use super::{Finding, Model, Severity};

/// A rule of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable id.
    pub id: &'static str,
    /// Short kebab-case name.
    pub name: &'static str,
    /// Default severity (a finding may be lowered when the app cannot reach the object).
    pub severity: Severity,
    /// One-line description.
    pub title: &'static str,
}

macro_rules! rules {
    ($($id:literal $name:literal $sev:ident $title:literal;)*) => {
        /// Every rule, in id order.
        pub const RULES: &[Rule] = &[$(Rule { id: $id, name: $name, severity: Severity::$sev, title: $title }),*];
    };
}

rules! {
    "TG001" "rls-disabled" Critical "Row-level security is disabled on a tenant table the app can access";
    "TG002" "dormant-policies" Critical "Policies exist on a table whose row-level security is disabled";
    "TG003" "app-owns-tenant-table" Critical "The app role can become the owner of a tenant table";
    "TG004" "rls-not-forced" Low "Row-level security is enabled but not forced for the owner";
    "TG005" "command-without-policy" Low "The app holds a privilege for a command that has no permissive policy (it fails closed)";
    "TG006" "child-without-tenant-column" Medium "A table reaches tenant tables through foreign keys but has no tenant column";
    "TG007" "unprotected-writable-table" Medium "A table without row-level security that the app can write is a cross-tenant channel";
    "TG008" "tenancy-not-modeled" Info "A table's policies read a context the tenancy model cannot express; it is not judged";
    "TG010" "permissive-ignores-tenant" Critical "A permissive policy does not restrict rows to the current tenant";
    "TG011" "permissive-or-widened" Critical "A permissive policy ORs the tenant predicate with another condition";
    "TG012" "permissive-policies-widen" Critical "Several permissive policies together are wider than the tenant predicate";
    "TG013" "policy-for-public" Medium "A policy applies to PUBLIC instead of the app role";
    "TG014" "insert-check-not-scoped" High "INSERT's WITH CHECK does not constrain the tenant: rows can be planted in another tenant";
    "TG015" "update-check-allows-tenant-change" High "UPDATE's WITH CHECK lets a row move to another tenant";
    "TG016" "insert-policy-without-check" Info "An INSERT policy without WITH CHECK rejects every insert";
    "TG017" "writable-shared-rows" High "A write policy admits rows whose tenant column IS NULL";
    "TG020" "fail-open-context" High "The predicate opens up when the tenant setting is missing or empty";
    "TG021" "one-argument-current-setting" Low "current_setting without missing_ok errors in a session that never set the tenant";
    "TG022" "missing-nullif" Low "The tenant setting is cast without NULLIF(…, ''): errors after a rolled-back SET LOCAL";
    "TG023" "identity-key" Medium "The policy compares with current_user/session_user, which one pooled app role shares";
    "TG024" "policy-trusts-writable-table" High "A policy reads a table the app can write without tenant checks";
    "TG025" "session-scoped-context" High "A function sets the tenant setting for the whole session, which outlives the transaction";
    "TG026" "default-tenant-setting" High "A role, database or server default sets the tenant setting";
    "TG027" "membership-self-grant" High "The app can write the membership table without a tenant check: a caller joins any tenant";
    "TG028" "fail-open-context-helper" High "A context helper falls back to a constant tenant when no context is set";
    "TG030" "app-superuser" Critical "The app role, or a role it can become, is a superuser";
    "TG031" "app-bypassrls" Critical "The app role, or a role it can become, has BYPASSRLS";
    "TG032" "app-owns-policy-function" Critical "The app can become the owner of a function a policy calls";
    "TG033" "truncate-granted" High "TRUNCATE on a tenant table is granted to the app (TRUNCATE ignores RLS)";
    "TG034" "references-granted" Medium "REFERENCES on a tenant table is granted to the app";
    "TG035" "trigger-granted" High "TRIGGER on a tenant table is granted to the app";
    "TG036" "dangerous-predefined-role" High "The app can become a predefined role that reads files or bypasses unprotected tables";
    "TG037" "default-privileges" Medium "Default privileges give the app TRUNCATE, TRIGGER or REFERENCES on future tables";
    "TG038" "server-file-functions" High "The app may execute functions that read server files or move large objects to and from them";
    "TG039" "definer-mints-context" Critical "A SECURITY DEFINER function anyone may call sets the tenant context and ignores its secret";
    "TG040" "owner-rights-view" Critical "A view over tenant tables runs with its owner's rights (no security_invoker)";
    "TG041" "materialized-view-over-tenant-data" Critical "A materialized view over tenant tables is readable by the app";
    "TG042" "definer-function-touches-tenant-tables" Critical "A SECURITY DEFINER function the app can execute reads or writes tenant tables";
    "TG043" "definer-without-search-path" High "A SECURITY DEFINER function has no pinned search_path";
    "TG044" "definer-trigger" High "A SECURITY DEFINER trigger runs with its owner's rights on a tenant table";
    "TG045" "trigger-copies-to-unprotected-table" High "A trigger on a tenant table writes into a table without row-level security";
    "TG046" "leakproof-function" High "A non-core function is marked LEAKPROOF and may run before the RLS filter";
    "TG047" "definer-in-default" High "A column default of a tenant table calls a SECURITY DEFINER function";
    "TG048" "mislabelled-volatility" Medium "A policy function marked IMMUTABLE or STABLE reads tables";
    "TG050" "foreign-key-without-tenant" High "A foreign key between tenant tables omits the tenant column";
    "TG051" "unique-without-tenant" Medium "A unique constraint or index on a tenant table omits the tenant column";
    "TG052" "nullable-tenant-column" Medium "The tenant column is nullable";
    "TG053" "unprotected-partition" Critical "A partition or inheritance child can be queried directly without its own policies";
    "TG054" "shared-sequence" Low "A sequence shared by all tenants reveals other tenants' activity";
    "TG055" "default-dml-privileges" Medium "Default privileges grant SELECT or DML on future tables to the app before RLS exists";
    "TG056" "shared-parent-writable" High "A table without tenant column that tenant tables reference is writable across tenants";
    "TG060" "no-tenant-index" Low "No index leads with the tenant column";
    "TG061" "volatile-policy-function" Medium "A policy calls a VOLATILE function (no index use, runs per row)";
    "TG062" "per-row-policy-call" Low "A policy calls a function per row instead of once as (SELECT fn())";
    "TG070" "engine-version" Medium "The server version lacks fixes for known row-security bugs";
}

/// The rule with this id.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// Collects findings, merging repeats of one fingerprint (e.g. one ALL policy seen for
/// several commands) and keeping the highest severity.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    found: BTreeMap<String, Finding>,
}

impl Sink {
    pub(crate) fn add(
        &mut self,
        rule: &str,
        severity: Severity,
        object: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let f = Finding::new(rule, severity, object, why, fix);
        match self.found.get_mut(&f.fingerprint) {
            Some(old) => {
                if f.severity > old.severity {
                    *old = f;
                }
            }
            None => {
                self.found.insert(f.fingerprint.clone(), f);
            }
        }
    }
}

/// Applies every rule to the model.
pub fn run(model: &Model) -> Vec<Finding> {
    let mut sink = Sink::default();
    rls::check(model, &mut sink);
    policies::check(model, &mut sink);
    context::check(model, &mut sink);
    roles::check(model, &mut sink);
    code::check(model, &mut sink);
    structure::check(model, &mut sink);
    performance::check(model, &mut sink);
    let mut out: Vec<Finding> = sink.found.into_values().collect();
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.rule.cmp(&b.rule))
            .then_with(|| a.object.cmp(&b.object))
    });
    out
}

/// `table schema.name`.
pub(crate) fn obj_table(t: &crate::audit::catalog::Table) -> String {
    let kind = match t.kind {
        'v' => "view",
        'm' => "materialized view",
        'p' => "partitioned table",
        'f' => "foreign table",
        _ => "table",
    };
    format!("{kind} {}", t.display())
}

/// `policy "p" on schema.name`.
pub(crate) fn obj_policy(
    p: &crate::audit::catalog::Policy,
    t: &crate::audit::catalog::Table,
) -> String {
    format!("policy {:?} on {}", p.name, t.display())
}

/// The standard tenant predicate, for fix SQL.
pub(crate) fn tenant_predicate(model: &Model, column: &str) -> String {
    format!(
        "({} = NULLIF(current_setting({}, true), '')::uuid)",
        crate::policy::ident(column),
        crate::policy::literal(&model.config.tenant_setting)
    )
}
