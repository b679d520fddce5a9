//! The probe's result: the matrix (text or JSON), the connection check and the proof that
//! the database is unchanged.

use serde_json::json;

use super::attacks::{Attack, TableResult};
use super::Outcome;
use crate::audit::AuditConfig;

/// Everything the probe found.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// What was probed for.
    pub config: AuditConfig,
    /// table × attack.
    pub tables: Vec<TableResult>,
    /// The connection-level check.
    pub connection: Outcome,
    /// Notes from seeding (tables where no row could be synthesized, and why).
    pub attempts: Vec<String>,
    /// Facts of the database that differ between before and after (should be empty).
    pub differences: Vec<String>,
}

impl ProbeReport {
    /// Number of leaks (cells plus the connection check).
    pub fn leaks(&self) -> usize {
        self.tables
            .iter()
            .flat_map(|t| t.cells.iter())
            .filter(|(_, o)| o.leaked())
            .count()
            + usize::from(self.connection.leaked())
    }

    /// Whether the database was left as it was found.
    pub fn unchanged(&self) -> bool {
        self.differences.is_empty()
    }

    /// The outcome of `attack` on `table` (`schema.name`).
    pub fn cell(&self, table: &str, attack: Attack) -> Option<&Outcome> {
        self.tables.iter().find(|t| t.table == table)?.get(attack)
    }

    /// The matrix as text, then the evidence of each leak and the reasons for n/a.
    pub fn text(&self) -> String {
        let width = self
            .tables
            .iter()
            .map(|t| t.table.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = format!("{:width$}", "table");
        for a in Attack::ALL {
            out.push_str(&format!(" {:>15}", a.name()));
        }
        out.push('\n');
        for t in &self.tables {
            out.push_str(&format!("{:width$}", t.table));
            for a in Attack::ALL {
                out.push_str(&format!(
                    " {:>15}",
                    t.get(a).map(|o| o.label()).unwrap_or("-")
                ));
            }
            out.push('\n');
        }
        let mut leaks = String::new();
        let mut na = String::new();
        for t in &self.tables {
            for (a, o) in &t.cells {
                match o {
                    Outcome::Leaked(e) => {
                        leaks.push_str(&format!("  LEAKED {} {}: {e}\n", t.table, a.name()))
                    }
                    Outcome::NotApplicable(r) => {
                        na.push_str(&format!("  n/a {} {}: {r}\n", t.table, a.name()))
                    }
                    Outcome::Blocked(_) => {}
                }
            }
        }
        if !leaks.is_empty() {
            out.push_str("\nleaks:\n");
            out.push_str(&leaks);
        }
        if !na.is_empty() {
            out.push_str("\nnot applicable:\n");
            out.push_str(&na);
        }
        for n in &self.attempts {
            out.push_str(&format!("note: {n}\n"));
        }
        out.push_str(&format!(
            "\nconnection: {} ({})\n",
            self.connection.label(),
            match &self.connection {
                Outcome::Blocked(s) | Outcome::Leaked(s) | Outcome::NotApplicable(s) => s,
            }
        ));
        if self.unchanged() {
            out.push_str("database unchanged: row counts, roles, memberships, settings, sequences, policies and privileges are as before\n");
        } else {
            out.push_str(&format!(
                "DATABASE CHANGED: {}\n",
                self.differences.join("; ")
            ));
        }
        out.push_str(&format!(
            "{} leak(s) in {} table(s)\n",
            self.leaks(),
            self.tables.len()
        ));
        out
    }

    /// The JSON document.
    pub fn json(&self) -> serde_json::Value {
        let tables: Vec<serde_json::Value> = self
            .tables
            .iter()
            .map(|t| {
                let cells: serde_json::Map<String, serde_json::Value> = t
                    .cells
                    .iter()
                    .map(|(a, o)| {
                        (
                            a.name().to_string(),
                            json!({ "outcome": o.label(), "detail": detail(o) }),
                        )
                    })
                    .collect();
                json!({ "table": t.table, "attacks": cells })
            })
            .collect();
        json!({
            "format": "tenantguard-probe",
            "version": 1,
            "config": {
                "app_role": self.config.app_role,
                "tenant_column": self.config.tenant_column,
                "tenant_setting": self.config.tenant_setting,
                "schemas": self.config.schemas,
            },
            "attacks": Attack::ALL.iter().map(|a| a.name()).collect::<Vec<_>>(),
            "tables": tables,
            "connection": { "outcome": self.connection.label(), "detail": detail(&self.connection) },
            "notes": self.attempts,
            "unchanged": self.unchanged(),
            "differences": self.differences,
            "leaks": self.leaks(),
        })
    }
}

fn detail(o: &Outcome) -> &str {
    match o {
        Outcome::Blocked(s) | Outcome::Leaked(s) | Outcome::NotApplicable(s) => s,
    }
}
