//! Renders findings (text, JSON, SARIF 2.1.0) and applies a baseline of accepted findings.
//! The JSON format is documented in `docs/audit-json.md`; its schema is
//! `tests/audit/schemas/audit.schema.json`.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{rules, AuditConfig, AuditError, Finding, Severity};

/// Version of the JSON output format (bumped only on incompatible changes).
pub const JSON_FORMAT_VERSION: u32 = 2;

/// Accepted findings, by fingerprint (`rule:object`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// Format version (1).
    pub version: u32,
    /// Fingerprints of accepted findings.
    pub fingerprints: BTreeSet<String>,
}

impl Baseline {
    /// A baseline accepting every one of `findings`.
    pub fn from_findings(findings: &[Finding]) -> Baseline {
        Baseline {
            version: 1,
            fingerprints: findings.iter().map(|f| f.fingerprint.clone()).collect(),
        }
    }

    /// Reads a baseline file.
    pub fn read(path: &Path) -> Result<Baseline, AuditError> {
        let err = |message: String| AuditError::Baseline {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let b: Baseline = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if b.version != 1 {
            return Err(err(format!("unsupported version {}", b.version)));
        }
        Ok(b)
    }

    /// Writes it as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<(), AuditError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| AuditError::Baseline {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        std::fs::write(path, text + "\n").map_err(|e| AuditError::Baseline {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }
}

/// The outcome of an audit, ready to render.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was audited for.
    pub config: AuditConfig,
    /// New findings (not in the baseline).
    pub findings: Vec<Finding>,
    /// Findings the baseline accepts.
    pub suppressed: Vec<Finding>,
    /// The `--fail-on` threshold.
    pub fail_on: Severity,
    /// The tenancy model judged by, when known (printed first, and in the JSON).
    pub tenancy: Option<crate::isolation::Detection>,
}

impl Report {
    /// Splits `findings` by the baseline.
    pub fn new(
        config: AuditConfig,
        findings: Vec<Finding>,
        baseline: Option<&Baseline>,
        fail_on: Severity,
    ) -> Report {
        let (suppressed, findings) = findings
            .into_iter()
            .partition(|f| baseline.is_some_and(|b| b.fingerprints.contains(&f.fingerprint)));
        Report {
            config,
            findings,
            suppressed,
            fail_on,
            tenancy: None,
        }
    }

    /// Whether any new finding is at or above the threshold.
    pub fn failed(&self) -> bool {
        self.findings.iter().any(|f| f.severity >= self.fail_on)
    }

    fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }

    /// Human-readable text.
    pub fn text(&self) -> String {
        let mut out = match &self.tenancy {
            Some(d) => format!("{}\n\n", d.statement()),
            None => String::new(),
        };
        for f in &self.findings {
            out.push_str(&format!(
                "{:<8} {} {}\n  why: {}\n  fix: {}\n\n",
                f.severity.name().to_uppercase(),
                f.rule,
                f.object,
                f.why,
                f.fix.replace('\n', "\n       ")
            ));
        }
        out.push_str(&format!(
            "{} finding(s): {} critical, {} high, {} medium, {} low, {} info; {} accepted by the baseline. {}\n",
            self.findings.len(),
            self.count(Severity::Critical),
            self.count(Severity::High),
            self.count(Severity::Medium),
            self.count(Severity::Low),
            self.count(Severity::Info),
            self.suppressed.len(),
            if self.failed() {
                format!("FAIL (at or above {})", self.fail_on)
            } else {
                format!("ok (nothing at or above {})", self.fail_on)
            }
        ));
        out
    }

    fn finding_json(f: &Finding) -> serde_json::Value {
        json!({
            "rule": f.rule,
            "name": rules::rule(&f.rule).map(|r| r.name).unwrap_or(""),
            "severity": f.severity,
            "object": f.object,
            "why": f.why,
            "fix": f.fix,
            "fingerprint": f.fingerprint,
        })
    }

    /// The stable JSON document (`docs/audit-json.md`).
    pub fn json(&self) -> serde_json::Value {
        json!({
            "format": "tenantguard-audit",
            "version": JSON_FORMAT_VERSION,
            "tool": { "name": "tenantguard", "version": env!("CARGO_PKG_VERSION") },
            "config": {
                "app_role": self.config.app_role,
                "tenant_column": self.config.tenant_column,
                "tenant_setting": self.config.tenant_setting,
                "schemas": self.config.schemas,
            },
            "tenancy": self.tenancy.as_ref().map(|d| json!({
                "statement": d.statement(),
                "declared": d.declared,
                "primary": d.primary,
                "not_modeled": d.not_modeled.iter().map(|(t, why)| json!({ "table": t, "reason": why })).collect::<Vec<_>>(),
            })),
            "fail_on": self.fail_on,
            "failed": self.failed(),
            "summary": {
                "critical": self.count(Severity::Critical),
                "high": self.count(Severity::High),
                "medium": self.count(Severity::Medium),
                "low": self.count(Severity::Low),
                "info": self.count(Severity::Info),
                "total": self.findings.len(),
                "suppressed": self.suppressed.len(),
            },
            "findings": self.findings.iter().map(Self::finding_json).collect::<Vec<_>>(),
            "suppressed": self.suppressed.iter().map(Self::finding_json).collect::<Vec<_>>(),
        })
    }

    /// SARIF 2.1.0 for GitHub code scanning. Database objects have no source file, so each
    /// result carries a logical location (the object) and a physical location under the
    /// pseudo-path `tenantguard/<rule>` so that uploaders requiring one accept it.
    pub fn sarif(&self) -> serde_json::Value {
        let level = |s: Severity| match s {
            Severity::Critical | Severity::High => "error",
            Severity::Medium => "warning",
            Severity::Low | Severity::Info => "note",
        };
        let score = |s: Severity| match s {
            Severity::Critical => "9.5",
            Severity::High => "8.0",
            Severity::Medium => "5.5",
            Severity::Low => "3.0",
            Severity::Info => "1.0",
        };
        let rules_json: Vec<serde_json::Value> = rules::RULES
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "name": r.name,
                    "shortDescription": { "text": r.title },
                    "fullDescription": { "text": r.title },
                    "defaultConfiguration": { "level": level(r.severity) },
                    "properties": {
                        "tags": ["security", "multi-tenancy", "row-level-security"],
                        "security-severity": score(r.severity),
                        "precision": "high",
                    },
                })
            })
            .collect();
        let results: Vec<serde_json::Value> = self
            .findings
            .iter()
            .map(|f| {
                let index = rules::RULES.iter().position(|r| r.id == f.rule).unwrap_or(0);
                json!({
                    "ruleId": f.rule,
                    "ruleIndex": index,
                    "level": level(f.severity),
                    "message": { "text": format!("{}: {} Fix: {}", f.object, f.why, f.fix) },
                    "locations": [{
                        "physicalLocation": {
                            "artifactLocation": { "uri": format!("tenantguard/{}", f.rule) },
                            "region": { "startLine": 1 },
                        },
                        "logicalLocations": [{ "fullyQualifiedName": f.object, "kind": "object" }],
                    }],
                    "partialFingerprints": { "tenantguard/v1": f.fingerprint },
                    "properties": { "severity": f.severity, "security-severity": score(f.severity) },
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
                    "rules": rules_json,
                }},
                "results": results,
            }],
        })
    }
}
