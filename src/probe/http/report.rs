//! The result of `probe http`: the endpoint × attack matrix as text, JSON
//! (`docs/probe-http-json.md`, schema `tests/probe_http/schemas/probe-http.schema.json`) and
//! SARIF 2.1.0.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Attack, Cell};
use crate::outcome::{RunStatus, Tally, Verdict};

/// Version of the JSON format (bumped only on incompatible changes).
pub const JSON_FORMAT_VERSION: u32 = 1;

/// One row: a resource and its cells.
#[derive(Debug, Clone)]
pub struct Row {
    /// The resource name (`tasks`).
    pub resource: String,
    /// The collection path template.
    pub collection: String,
    /// The item path template.
    pub item: Option<String>,
    /// One cell per attack.
    pub cells: BTreeMap<Attack, Cell>,
}

/// Everything a run found.
#[derive(Debug, Clone)]
pub struct HttpReport {
    /// The effective base URL.
    pub base: String,
    /// Where the document came from.
    pub openapi: String,
    /// Its `openapi` version.
    pub openapi_version: String,
    /// Header names of A's credentials (never values).
    pub tenant_a_headers: Vec<String>,
    /// Header names of B's credentials.
    pub tenant_b_headers: Vec<String>,
    /// The matrix.
    pub rows: Vec<Row>,
    /// Notes (set-up failures, clean-up, document oddities).
    pub notes: Vec<String>,
    /// Requests sent.
    pub requests: usize,
    /// The budget.
    pub max_requests: usize,
    /// Wall time.
    pub elapsed_ms: u64,
}

impl HttpReport {
    /// The tally of all cells.
    pub fn tally(&self) -> Tally {
        Tally::of(
            self.rows
                .iter()
                .flat_map(|r| r.cells.values().map(|c| c.verdict)),
        )
    }

    /// The run's status by the one outcome policy.
    pub fn status(&self) -> RunStatus {
        self.tally().status()
    }

    /// The cell of `attack` on the resource with this collection path.
    pub fn cell(&self, collection: &str, attack: Attack) -> Option<&Cell> {
        self.rows
            .iter()
            .find(|r| r.collection == collection)?
            .cells
            .get(&attack)
    }

    /// Every finding: (collection, attack, cell).
    pub fn findings(&self) -> Vec<(&str, Attack, &Cell)> {
        self.rows
            .iter()
            .flat_map(|r| {
                r.cells
                    .iter()
                    .filter(|(_, c)| c.verdict.is_finding())
                    .map(move |(a, c)| (r.collection.as_str(), *a, c))
            })
            .collect()
    }

    /// The matrix, then evidence for every finding and every inconclusive cell.
    pub fn text(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|r| r.collection.len())
            .max()
            .unwrap_or(8)
            .max(8);
        let mut out = format!("{:width$}", "endpoint");
        for a in Attack::ALL {
            out.push_str(&format!(" {:>w$}", a.name(), w = a.name().len().max(7)));
        }
        out.push('\n');
        for r in &self.rows {
            out.push_str(&format!("{:width$}", r.collection));
            for a in Attack::ALL {
                let label = r.cells.get(&a).map(|c| c.verdict.label()).unwrap_or("-");
                let label = if label == "DISTINGUISHABLE" {
                    "DISTING"
                } else {
                    label
                };
                let label = if label == "inconclusive" {
                    "inconcl"
                } else {
                    label
                };
                out.push_str(&format!(" {:>w$}", label, w = a.name().len().max(7)));
            }
            out.push('\n');
        }
        let mut sections: Vec<(Verdict, String)> = Vec::new();
        for v in [
            Verdict::Leaked,
            Verdict::Distinguishable,
            Verdict::ServerError,
            Verdict::Inconclusive,
        ] {
            let mut s = String::new();
            for r in &self.rows {
                for (a, c) in &r.cells {
                    if c.verdict == v {
                        s.push_str(&format!(
                            "  {} {} {}: {}\n",
                            v.label(),
                            r.collection,
                            a.name(),
                            c.evidence
                        ));
                    }
                }
            }
            if !s.is_empty() {
                sections.push((v, s));
            }
        }
        for (v, s) in sections {
            out.push_str(&format!("\n{}:\n{s}", v.label()));
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out.push_str(&format!(
            "\n{} request(s) of {} in {:.1} s against {}\n{}\n",
            self.requests,
            self.max_requests,
            self.elapsed_ms as f64 / 1000.0,
            self.base,
            self.tally().summary()
        ));
        out
    }

    /// The JSON document (`docs/probe-http-json.md`).
    pub fn json(&self) -> serde_json::Value {
        let tally = self.tally();
        let status = tally.status();
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                let cells: serde_json::Map<String, serde_json::Value> = r
                    .cells
                    .iter()
                    .map(|(a, c)| {
                        (
                            a.name().to_string(),
                            json!({ "verdict": c.verdict.label(), "evidence": c.evidence }),
                        )
                    })
                    .collect();
                json!({
                    "resource": r.resource,
                    "collection": r.collection,
                    "item": r.item,
                    "attacks": cells,
                })
            })
            .collect();
        json!({
            "format": "tenantguard-probe-http",
            "version": JSON_FORMAT_VERSION,
            "tool": { "name": "tenantguard", "version": env!("CARGO_PKG_VERSION") },
            "target": {
                "base": self.base,
                "openapi": self.openapi,
                "openapi_version": self.openapi_version,
                "tenant_a_headers": self.tenant_a_headers,
                "tenant_b_headers": self.tenant_b_headers,
            },
            "attacks": Attack::ALL.iter().map(|a| a.name()).collect::<Vec<_>>(),
            "endpoints": rows,
            "notes": self.notes,
            "requests": self.requests,
            "max_requests": self.max_requests,
            "elapsed_ms": self.elapsed_ms,
            "summary": {
                "findings": tally.findings(),
                "leaked": tally.leaked,
                "distinguishable": tally.distinguishable,
                "server_error": tally.server_error,
                "blocked": tally.blocked,
                "inconclusive": tally.inconclusive,
                "not_applicable": tally.not_applicable,
                "attacked": tally.attacked(),
            },
            "status": status,
            "exit_code": status.code(),
        })
    }

    /// SARIF 2.1.0: one result per finding; the location is the endpoint (an API has no
    /// source file here), under the pseudo-path `tenantguard/<collection>`.
    pub fn sarif(&self) -> serde_json::Value {
        let rules: Vec<serde_json::Value> = Attack::ALL
            .iter()
            .map(|a| {
                json!({
                    "id": a.rule(),
                    "name": a.name(),
                    "shortDescription": { "text": a.title() },
                    "fullDescription": { "text": a.title() },
                    "defaultConfiguration": { "level": "error" },
                    "properties": {
                        "tags": ["security", "multi-tenancy", "bola", "idor"],
                        "security-severity": "8.0",
                        "precision": "high",
                    },
                })
            })
            .collect();
        let results: Vec<serde_json::Value> = self
            .findings()
            .into_iter()
            .map(|(collection, a, c)| {
                let index = Attack::ALL.iter().position(|x| *x == a).unwrap_or(0);
                let level = if c.verdict == Verdict::Leaked { "error" } else { "warning" };
                json!({
                    "ruleId": a.rule(),
                    "ruleIndex": index,
                    "level": level,
                    "message": { "text": format!("{} {collection} {}: {}", c.verdict.label(), a.name(), c.evidence) },
                    "locations": [{
                        "physicalLocation": {
                            "artifactLocation": { "uri": format!("tenantguard{}", collection.replace('{', "%7B").replace('}', "%7D")) },
                            "region": { "startLine": 1 },
                        },
                        "logicalLocations": [{ "fullyQualifiedName": collection, "kind": "resource" }],
                    }],
                    "partialFingerprints": { "tenantguard/v1": format!("{}:{collection}:{}", a.rule(), c.verdict.label()) },
                    "properties": { "verdict": c.verdict.label() },
                })
            })
            .collect();
        json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": { "driver": {
                    "name": "tenantguard",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }},
                "results": results,
            }],
        })
    }
}
