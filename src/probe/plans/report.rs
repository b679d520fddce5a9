//! The result of `probe plans` as text, JSON (`docs/probe-plans-json.md`, schema
//! `tests/probe_plans/schemas/probe-plans.schema.json`) and SARIF 2.1.0.

use serde_json::json;

use super::rules::{PlanFinding, RULES};
use super::{PlansConfig, Statement, TenantTable};
use crate::audit::Severity;
use crate::outcome::RunStatus;

/// Version of the JSON format.
pub const JSON_FORMAT_VERSION: u32 = 1;

/// Everything a run found.
#[derive(Debug, Clone)]
pub struct PlansReport {
    /// What was asked.
    pub config: PlansConfig,
    /// `server_version_num`.
    pub server_version: i32,
    /// The tenants whose context was set.
    pub tenants: Vec<String>,
    /// Tenant tables with their sizes and indexes.
    pub tables: Vec<TenantTable>,
    /// Statements and their plans.
    pub statements: Vec<Statement>,
    /// Findings (one per rule × relation × statement; tenants merged).
    pub findings: Vec<PlanFinding>,
    /// Why the run as a whole is inconclusive (workload unreadable, no tenant).
    pub inconclusive: Vec<String>,
    /// Notes.
    pub notes: Vec<String>,
}

impl PlansReport {
    /// Plans that could not be made: (statement, tenant, why).
    pub fn unplanned(&self) -> Vec<(&str, &str, &str)> {
        self.statements
            .iter()
            .flat_map(|s| {
                s.plans.iter().filter_map(move |p| {
                    p.inconclusive
                        .as_deref()
                        .map(|w| (s.query.as_str(), p.tenant.as_str(), w))
                })
            })
            .collect()
    }

    /// Plans made.
    pub fn planned(&self) -> usize {
        self.statements
            .iter()
            .flat_map(|s| &s.plans)
            .filter(|p| p.inconclusive.is_none())
            .count()
    }

    /// Whether a finding is at or above `fail_on`.
    pub fn failed(&self, fail_on: Severity) -> bool {
        self.findings.iter().any(|f| f.severity >= fail_on)
    }

    /// The run's status by the one outcome policy: findings (at or above `fail_on`) win;
    /// then anything unplanned, an unreadable workload or nothing planned is inconclusive.
    pub fn status(&self, fail_on: Severity) -> RunStatus {
        if self.failed(fail_on) {
            RunStatus::Findings
        } else if !self.inconclusive.is_empty()
            || !self.unplanned().is_empty()
            || self.planned() == 0
        {
            RunStatus::Inconclusive
        } else {
            RunStatus::Clean
        }
    }

    /// Human-readable text.
    pub fn text(&self, fail_on: Severity) -> String {
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&format!(
                "{:<8} {} {} {}\n  statement: {}\n  tenant: {}\n  why: {}\n  fix: {}\n\n",
                f.severity.name().to_uppercase(),
                f.rule,
                f.name,
                f.relation,
                f.statement.split_whitespace().collect::<Vec<_>>().join(" "),
                f.tenant,
                f.why,
                f.fix
            ));
        }
        for (q, t, why) in self.unplanned() {
            out.push_str(&format!(
                "inconclusive: not planned for tenant {t}: {why}\n  statement: {}\n",
                q.split_whitespace().collect::<Vec<_>>().join(" ")
            ));
        }
        for i in &self.inconclusive {
            out.push_str(&format!("inconclusive: {i}\n"));
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        let status = self.status(fail_on);
        out.push_str(&format!(
            "{} statement(s), {} plan(s) made as {} for tenant(s) {}, {} not planned; {} finding(s); {}\n",
            self.statements.len(),
            self.planned(),
            self.config.app_role,
            if self.tenants.is_empty() { "none".to_string() } else { self.tenants.join(", ") },
            self.unplanned().len(),
            self.findings.len(),
            match status {
                RunStatus::Clean => "ok".to_string(),
                RunStatus::Findings => format!("FAIL (at or above {fail_on})"),
                RunStatus::Inconclusive => "INCONCLUSIVE".to_string(),
                RunStatus::Error => "error".to_string(),
            }
        ));
        out
    }

    /// The JSON document.
    pub fn json(&self, fail_on: Severity) -> serde_json::Value {
        let status = self.status(fail_on);
        json!({
            "format": "tenantguard-probe-plans",
            "version": JSON_FORMAT_VERSION,
            "tool": { "name": "tenantguard", "version": env!("CARGO_PKG_VERSION") },
            "config": {
                "app_role": self.config.app_role,
                "tenant_setting": self.config.tenant_setting,
                "tenant_column": self.config.tenant_column,
                "min_rows": self.config.min_rows,
                "analyze": self.config.analyze,
                "source": match &self.config.source {
                    super::Source::Stats { .. } => "pg_stat_statements",
                    super::Source::Given(_) => "file",
                },
            },
            "server_version_num": self.server_version,
            "tenants": self.tenants,
            "statements": self.statements.iter().map(|s| json!({
                "query": s.query,
                "calls": s.calls,
                "total_ms": s.total_ms,
                "plans": s.plans.iter().map(|p| json!({
                    "tenant": p.tenant,
                    "planned": p.inconclusive.is_none(),
                    "inconclusive": p.inconclusive,
                    "plan": p.plan,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "findings": self.findings.iter().map(|f| json!({
                "rule": f.rule,
                "name": f.name,
                "severity": f.severity,
                "relation": f.relation,
                "statement": f.statement,
                "tenant": f.tenant,
                "why": f.why,
                "fix": f.fix,
                "fingerprint": f.fingerprint,
            })).collect::<Vec<_>>(),
            "inconclusive": self.inconclusive,
            "notes": self.notes,
            "fail_on": fail_on,
            "summary": {
                "statements": self.statements.len(),
                "planned": self.planned(),
                "unplanned": self.unplanned().len(),
                "findings": self.findings.len(),
            },
            "status": status,
            "exit_code": status.code(),
        })
    }

    /// SARIF 2.1.0.
    pub fn sarif(&self) -> serde_json::Value {
        let level = |s: Severity| match s {
            Severity::Critical | Severity::High => "error",
            Severity::Medium => "warning",
            Severity::Low | Severity::Info => "note",
        };
        let rules: Vec<serde_json::Value> = RULES
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "name": r.name,
                    "shortDescription": { "text": r.title },
                    "fullDescription": { "text": r.title },
                    "defaultConfiguration": { "level": level(r.severity) },
                    "properties": { "tags": ["performance", "multi-tenancy", "row-level-security"], "precision": "high" },
                })
            })
            .collect();
        let results: Vec<serde_json::Value> = self
            .findings
            .iter()
            .map(|f| {
                json!({
                    "ruleId": f.rule,
                    "ruleIndex": RULES.iter().position(|r| r.id == f.rule).unwrap_or(0),
                    "level": level(f.severity),
                    "message": { "text": format!("{}: {} Fix: {}", f.relation, f.why, f.fix) },
                    "locations": [{
                        "physicalLocation": {
                            "artifactLocation": { "uri": format!("tenantguard/{}", f.rule) },
                            "region": { "startLine": 1 },
                        },
                        "logicalLocations": [{ "fullyQualifiedName": f.relation, "kind": "object" }],
                    }],
                    "partialFingerprints": { "tenantguard/v1": f.fingerprint },
                    "properties": { "severity": f.severity, "statement": f.statement },
                })
            })
            .collect();
        json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": { "driver": { "name": "tenantguard", "version": env!("CARGO_PKG_VERSION"), "rules": rules } },
                "results": results,
            }],
        })
    }
}
