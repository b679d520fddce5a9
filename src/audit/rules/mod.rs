//! The rules. Each has a stable id (never reused), a default severity and a one-line
//! title, declared once as a typed constant beside its check (`declare_rule!` in the
//! module that checks it); findings name that constant, so a mistyped id does not compile,
//! and a finding's severity is the rule's unless the check says why it differs. The
//! modules below hold the checks, grouped by concern. Severities follow the policy stated
//! with the rule table in `docs/audit-json.md` ("Rules"; the test
//! `rule_table::the_documented_rule_table_is_the_registry` keeps that table equal to
//! [`RULES`]): a finding is high or critical only when a tenant can read or change another
//! tenant's rows.

mod citus;
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

/// Declares one rule as a constant, beside its check: findings name it by this typed
/// constant (a mistyped id does not compile), and its default severity is declared once.
macro_rules! declare_rule {
    ($id:ident $name:literal $sev:ident $title:literal) => {
        #[doc = $title]
        pub(crate) const $id: Rule = Rule {
            id: stringify!($id),
            name: $name,
            severity: Severity::$sev,
            title: $title,
        };
    };
}
pub(crate) use declare_rule;

/// Every rule, in id order.
pub const RULES: &[Rule] = &[
    rls::TG001,
    rls::TG002,
    rls::TG003,
    rls::TG004,
    rls::TG005,
    rls::TG006,
    rls::TG007,
    policies::TG008,
    policies::TG010,
    policies::TG011,
    policies::TG012,
    policies::TG013,
    policies::TG014,
    policies::TG015,
    policies::TG016,
    policies::TG017,
    policies::TG020,
    context::TG021,
    context::TG022,
    context::TG023,
    context::TG024,
    context::TG025,
    context::TG026,
    policies::TG027,
    context::TG028,
    roles::TG030,
    roles::TG031,
    roles::TG032,
    roles::TG033,
    roles::TG034,
    roles::TG035,
    roles::TG036,
    roles::TG037,
    roles::TG038,
    code::TG039,
    code::TG040,
    code::TG041,
    code::TG042,
    code::TG043,
    code::TG044,
    code::TG045,
    code::TG046,
    code::TG047,
    code::TG048,
    structure::TG050,
    structure::TG051,
    structure::TG052,
    structure::TG053,
    structure::TG054,
    roles::TG055,
    rls::TG056,
    roles::TG057,
    performance::TG060,
    performance::TG061,
    performance::TG062,
    performance::TG070,
    citus::TG080,
    citus::TG081,
    citus::TG082,
    citus::TG083,
    citus::TG084,
];

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
    /// A finding of `rule` at its default severity.
    pub(crate) fn add(
        &mut self,
        rule: &'static Rule,
        object: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.add_at(rule, rule.severity, object, why, fix);
    }

    /// A finding of `rule` at another severity (lowered when the app cannot reach the
    /// object, or set by what the catalogs show).
    pub(crate) fn add_at(
        &mut self,
        rule: &'static Rule,
        severity: Severity,
        object: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let f = Finding::new(rule.id, severity, object, why, fix);
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
    citus::check(model, &mut sink);
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

/// The tenant predicate of `table`'s tenancy model, for fix SQL: the isolation contract's
/// predicate form (the one `migrate` installs), over the model's robust context read.
pub(crate) fn tenant_predicate(model: &Model, table: u32, column: &str) -> String {
    let ty = model
        .table(table)
        .and_then(|t| t.column(column))
        .map(|c| c.type_name.clone())
        .unwrap_or_else(|| "uuid".into());
    model.detection.model_of(table).predicate(
        crate::isolation::PredicateForm::default(),
        column,
        &ty,
    )
}

#[cfg(test)]
mod tests {
    use super::RULES;

    #[test]
    fn rule_ids_are_unique_and_in_order() {
        let ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(ids, sorted);
        assert!(RULES
            .iter()
            .all(|r| r.id.len() == 5 && r.id.starts_with("TG")));
    }
}
