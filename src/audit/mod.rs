//! `tenantguard audit`: reads the catalogs of any PostgreSQL database (one read-only
//! transaction, nothing changed) and reports every way tenant isolation can fail.
//!
//! [`catalog`] loads a [`Catalog`]: tables, roles the app can become, policies, functions,
//! keys, triggers and views. [`model`] derives which tables are tenant tables and
//! what each table × command × app role effectively allows. [`rules`] turns that into
//! [`Finding`]s with stable rule ids; [`report`] renders them as text, JSON or SARIF and
//! applies a baseline. The rule catalogue, with severities, lives in [`rules::RULES`].
//!
//! Predicate analysis ([`predicate`]) is a heuristic over the deparsed SQL text
//! (`pg_get_expr`): it recognises the tenant comparison and the usual ways of widening
//! it; it does not prove arbitrary SQL equivalent. `tenantguard probe` is the
//! counterpart that proves a leak by attacking.

pub mod catalog;
pub mod citus;
pub mod model;
pub mod predicate;
pub mod report;
pub mod rules;

use serde::{Deserialize, Serialize};

pub use catalog::Catalog;
pub use model::Model;
pub use report::{Baseline, Report};
pub use rules::{Rule, RULES};

/// What the audit looks for: the app role and the names of the tenant column and setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The role the application connects as (subject to RLS).
    pub app_role: String,
    /// The column that carries the tenant id.
    pub tenant_column: String,
    /// The custom setting that carries the current tenant id (`app.tenant_id`).
    pub tenant_setting: String,
    /// Schemas to audit; empty means every non-system schema.
    pub schemas: Vec<String>,
    /// The tenancy model, when declared (`--tenancy`); `None`: detected per table.
    pub tenancy: Option<crate::isolation::TenancyModel>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            app_role: "tenantguard_app".into(),
            tenant_column: "tenant_id".into(),
            tenant_setting: "app.tenant_id".into(),
            schemas: Vec::new(),
            tenancy: None,
        }
    }
}

/// How serious a finding is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; not a weakness by itself.
    Info,
    /// Defense in depth, brittleness, or a small side channel.
    Low,
    /// A weakness that needs another mistake, or leaks metadata.
    Medium,
    /// A tenant can read or change another tenant's data under plausible conditions.
    High,
    /// Isolation is off or trivially bypassed.
    Critical,
}

impl Severity {
    /// The lower-case name used in every output format.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One weakness found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The stable rule id (`TG001`…), see [`RULES`].
    pub rule: String,
    /// How serious it is (may differ from the rule's default, e.g. when the app lacks access).
    pub severity: Severity,
    /// The object, e.g. `table public.tasks` or `policy "p" on public.tasks`.
    pub object: String,
    /// Why it matters, in one or two sentences.
    pub why: String,
    /// SQL that fixes it (review before running).
    pub fix: String,
    /// `rule:object`, stable across runs: what a baseline records.
    pub fingerprint: String,
}

impl Finding {
    /// A finding of `rule` on `object`.
    pub fn new(
        rule: &str,
        severity: Severity,
        object: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        let object = object.into();
        Finding {
            rule: rule.to_string(),
            severity,
            fingerprint: format!("{rule}:{object}"),
            object,
            why: why.into(),
            fix: fix.into(),
        }
    }
}

/// Errors from auditing.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The configuration does not fit the database (e.g. the app role does not exist).
    #[error("{0}")]
    Config(String),
    /// A catalog query failed.
    #[error("database error while reading {context}: {source}")]
    Db {
        /// What was being read.
        context: &'static str,
        /// The error, with its SQLSTATE.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A baseline file could not be read or written.
    #[error("baseline file {path}: {message}")]
    Baseline {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// An audit's result: the findings and what was assumed about tenancy.
#[derive(Debug, Clone)]
pub struct Audit {
    /// Findings, most serious first.
    pub findings: Vec<Finding>,
    /// The tenancy model per table (detected or declared).
    pub detection: crate::isolation::Detection,
}

/// Runs the audit: loads the catalogs in one read-only transaction and applies every rule.
/// Findings are sorted by severity (most serious first), then rule and object.
pub async fn audit(
    client: &mut tokio_postgres::Client,
    config: &AuditConfig,
) -> Result<Vec<Finding>, AuditError> {
    Ok(run(client, config).await?.findings)
}

/// Like [`audit`], also returning the tenancy model it judged by.
pub async fn run(
    client: &mut tokio_postgres::Client,
    config: &AuditConfig,
) -> Result<Audit, AuditError> {
    let tx = client
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(|source| AuditError::Db {
            context: "(starting a read-only transaction)",
            source,
        })?;
    let catalog = catalog::load(&tx, config).await?;
    // Read-only: nothing to keep; rolling back ends the snapshot.
    tx.rollback().await.map_err(|source| AuditError::Db {
        context: "(ending the transaction)",
        source,
    })?;
    let model = Model::build(catalog, config);
    Ok(Audit {
        findings: rules::run(&model),
        detection: model.detection,
    })
}
