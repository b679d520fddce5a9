//! The probe's result: the matrix (text or JSON), the connection checks, the proof that
//! the database is unchanged, and the run's status by the one outcome policy.

use serde_json::json;

use super::attacks::{Attack, Cell, TableResult};
use super::connection::ConnectionCheck;
use crate::audit::AuditConfig;
use crate::outcome::{RunStatus, Tally, Verdict};

/// Version of the probe's JSON format.
pub const JSON_FORMAT_VERSION: u32 = 2;

/// Everything the probe found.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// What was probed for.
    pub config: AuditConfig,
    /// The plain statement of the tenancy model assumed (detected or declared).
    pub tenancy: String,
    /// table × attack.
    pub tables: Vec<TableResult>,
    /// The connection-level checks.
    pub connection: Vec<ConnectionCheck>,
    /// Notes from seeding (tables where no row could be synthesized, and why).
    pub attempts: Vec<String>,
    /// Per-tenant roles the probe created inside its transaction (gone with the rollback).
    pub created_roles: Vec<String>,
    /// Facts of the database that differ between before and after (should be empty).
    pub differences: Vec<String>,
}

impl ProbeReport {
    fn cells(&self) -> impl Iterator<Item = &Cell> {
        self.tables
            .iter()
            .flat_map(|t| t.cells.iter().map(|(_, c)| c))
            .chain(self.connection.iter().map(|c| &c.cell))
    }

    /// The tally of every cell (the matrix and the connection checks).
    pub fn tally(&self) -> Tally {
        Tally::of(self.cells().map(|c| c.verdict))
    }

    /// Number of findings (cells plus the connection checks).
    pub fn leaks(&self) -> usize {
        self.tally().findings()
    }

    /// Tables (and views) with at least one cell really attacked.
    pub fn tables_attacked(&self) -> usize {
        self.tables.iter().filter(|t| t.attacked()).count()
    }

    /// Whether the database was left as it was found.
    pub fn unchanged(&self) -> bool {
        self.differences.is_empty()
    }

    /// The run's status: the tally's, except that a changed database is a finding.
    pub fn status(&self) -> RunStatus {
        if !self.unchanged() {
            RunStatus::Findings
        } else {
            self.tally().status()
        }
    }

    /// The cell of `attack` on `table` (`schema.name`).
    pub fn cell(&self, table: &str, attack: Attack) -> Option<&Cell> {
        self.tables.iter().find(|t| t.table == table)?.get(attack)
    }

    /// The summary line: how many tables and cells were really attacked, and the tally.
    pub fn summary(&self) -> String {
        format!(
            "{} of {} table(s) attacked; {}",
            self.tables_attacked(),
            self.tables.len(),
            self.tally().summary()
        )
    }

    /// The matrix as text, then the evidence of each finding and the reasons for
    /// inconclusive and n/a cells.
    pub fn text(&self) -> String {
        let width = self
            .tables
            .iter()
            .map(|t| t.table.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = format!("{}\n\n", self.tenancy);
        out.push_str(&format!("{:width$} {:>10}", "table", "model"));
        for a in Attack::ALL {
            out.push_str(&format!(" {:>15}", a.name()));
        }
        out.push('\n');
        for t in &self.tables {
            out.push_str(&format!("{:width$} {:>10}", t.table, t.model));
            for a in Attack::ALL {
                out.push_str(&format!(
                    " {:>15}",
                    t.get(a).map(|o| o.label()).unwrap_or("-")
                ));
            }
            out.push('\n');
        }
        let mut sections: Vec<(Verdict, String)> = Vec::new();
        let mut add = |v: Verdict, line: String| match sections.iter_mut().find(|(x, _)| *x == v) {
            Some((_, s)) => s.push_str(&line),
            None => sections.push((v, line)),
        };
        for t in &self.tables {
            for (a, c) in &t.cells {
                if c.verdict != Verdict::Blocked {
                    add(
                        c.verdict,
                        format!("  {} {} {}: {}\n", c.label(), t.table, a.name(), c.detail),
                    );
                }
            }
        }
        sections.sort_by_key(|(v, _)| (!v.is_finding(), *v));
        for (v, s) in sections {
            let title = match v {
                Verdict::Leaked | Verdict::Distinguishable | Verdict::ServerError => "findings",
                Verdict::Inconclusive => "inconclusive (not a pass)",
                Verdict::NotApplicable => "not applicable",
                Verdict::Blocked => "blocked",
            };
            out.push_str(&format!("\n{title}:\n{s}"));
        }
        for n in &self.attempts {
            out.push_str(&format!("note: {n}\n"));
        }
        out.push('\n');
        for c in &self.connection {
            out.push_str(&format!(
                "connection {}: {} ({})\n",
                c.check,
                c.cell.label(),
                c.cell.detail
            ));
        }
        if !self.created_roles.is_empty() {
            out.push_str(&format!(
                "per-tenant roles created inside the rolled-back transaction: {} (gone afterwards: {})\n",
                self.created_roles.join(", "),
                if self.differences.iter().any(|d| d.starts_with("role ")) { "NO" } else { "yes" }
            ));
        }
        if self.unchanged() {
            out.push_str("database unchanged: row counts, roles, memberships, settings, sequences, policies and privileges are as before\n");
        } else {
            out.push_str(&format!(
                "DATABASE CHANGED: {}\n",
                self.differences.join("; ")
            ));
        }
        out.push_str(&format!("{}\n", self.summary()));
        out
    }

    /// The JSON document (`docs/audit-json.md`, format version 2).
    pub fn json(&self) -> serde_json::Value {
        let cell =
            |c: &Cell| json!({ "outcome": c.label(), "detail": c.detail, "control": c.control });
        let tables: Vec<serde_json::Value> = self
            .tables
            .iter()
            .map(|t| {
                let cells: serde_json::Map<String, serde_json::Value> = t
                    .cells
                    .iter()
                    .map(|(a, o)| (a.name().to_string(), cell(o)))
                    .collect();
                json!({ "table": t.table, "model": t.model, "attacks": cells })
            })
            .collect();
        let tally = self.tally();
        let status = self.status();
        json!({
            "format": "tenantguard-probe",
            "version": JSON_FORMAT_VERSION,
            "config": {
                "app_role": self.config.app_role,
                "tenant_column": self.config.tenant_column,
                "tenant_setting": self.config.tenant_setting,
                "schemas": self.config.schemas,
            },
            "tenancy": self.tenancy,
            "attacks": Attack::ALL.iter().map(|a| a.name()).collect::<Vec<_>>(),
            "tables": tables,
            "connection": self.connection.iter().map(|c| {
                let mut v = cell(&c.cell);
                v["check"] = c.check.clone().into();
                v
            }).collect::<Vec<_>>(),
            "notes": self.attempts,
            "created_roles": self.created_roles,
            "unchanged": self.unchanged(),
            "differences": self.differences,
            "summary": {
                "tables": self.tables.len(),
                "tables_attacked": self.tables_attacked(),
                "attacked": tally.attacked(),
                "findings": tally.findings(),
                "blocked": tally.blocked,
                "leaked": tally.leaked,
                "distinguishable": tally.distinguishable,
                "server_error": tally.server_error,
                "inconclusive": tally.inconclusive,
                "not_applicable": tally.not_applicable,
            },
            "leaks": tally.findings(),
            "status": status,
            "exit": status.code(),
        })
    }
}
