//! `tenantguard audit`: a thin layer over [`crate::audit`].

use std::path::PathBuf;
use std::process::ExitCode;

use crate::audit::{self, AuditConfig, Baseline, Report, Severity};

/// Output format of `audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    /// Human-readable text.
    Text,
    /// The stable JSON document (docs/audit-json.md).
    Json,
    /// SARIF 2.1.0, for GitHub code scanning.
    Sarif,
}

/// Arguments of `tenantguard audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Database to audit (read only: one read-only transaction over the catalogs).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// The role the application connects as.
    #[arg(long, default_value = "tenantguard_app")]
    pub app_role: String,
    /// The column that carries the tenant id.
    #[arg(long, default_value = "tenant_id")]
    pub tenant_column: String,
    /// The custom setting that carries the current tenant id.
    #[arg(long, default_value = "app.tenant_id")]
    pub tenant_setting: String,
    /// Audit only this schema (repeatable); default: every non-system schema.
    #[arg(long = "schema")]
    pub schemas: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: AuditFormat,
    /// Exit 1 when a finding is at or above this severity.
    #[arg(long, value_enum, default_value = "high")]
    pub fail_on: Severity,
    /// Accepted findings (written by --write-baseline): only new findings count.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Record every current finding as accepted in this file, then report as usual.
    #[arg(long)]
    pub write_baseline: Option<PathBuf>,
}

pub(crate) async fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let baseline = match &args.baseline {
        Some(p) => Some(Baseline::read(p)?),
        None => None,
    };
    let config = AuditConfig {
        app_role: args.app_role,
        tenant_column: args.tenant_column,
        tenant_setting: args.tenant_setting,
        schemas: args.schemas,
        tenancy: None,
    };
    let mut client = super::connect(&args.database_url).await?;
    let findings = audit::audit(&mut client, &config).await?;
    if let Some(p) = &args.write_baseline {
        Baseline::from_findings(&findings).write(p)?;
    }
    let report = Report::new(config, findings, baseline.as_ref(), args.fail_on);
    let out = match args.format {
        AuditFormat::Text => report.text(),
        AuditFormat::Json => serde_json::to_string_pretty(&report.json())? + "\n",
        AuditFormat::Sarif => serde_json::to_string_pretty(&report.sarif())? + "\n",
    };
    print!("{out}");
    Ok(if report.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
