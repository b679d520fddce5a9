//! `tenantguard probe plans`: a thin layer over [`crate::probe::plans`].

use std::path::PathBuf;
use std::process::ExitCode;

use super::probe_http::ReportFormat;
use crate::audit::Severity;
use crate::probe::plans::{self, PlansConfig, Source};

/// Order of the pg_stat_statements top N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TopBy {
    /// Most called first.
    Calls,
    /// Most total execution time first.
    Time,
}

/// Arguments of `tenantguard probe plans`.
#[derive(Debug, clap::Args)]
pub struct ProbePlansArgs {
    /// A connection that may SET ROLE to the app role (and read pg_stat_statements: a
    /// superuser, or a member of the app role and of pg_read_all_stats). Nothing is
    /// executed: every EXPLAIN runs in a transaction that is rolled back.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// The role the application connects as; plans are made as it, under RLS.
    #[arg(long, default_value = "tenantguard_app")]
    pub app_role: String,
    /// The custom setting that carries the current tenant id.
    #[arg(long, default_value = "app.tenant_id")]
    pub tenant_setting: String,
    /// The column that carries the tenant id.
    #[arg(long, default_value = "tenant_id")]
    pub tenant_column: String,
    /// Plan for this tenant (repeatable); default: the largest tenant by rows and the smallest.
    #[arg(long = "tenant")]
    pub tenants: Vec<String>,
    /// Statements from this file (separated by `;`) instead of pg_stat_statements.
    #[arg(long)]
    pub queries: Option<PathBuf>,
    /// How many statements to take from pg_stat_statements.
    #[arg(long, default_value_t = 50)]
    pub top: usize,
    /// Order of the top N.
    #[arg(long, value_enum, default_value = "calls")]
    pub by: TopBy,
    /// A Seq Scan on a tenant table with at least this many rows (estimated) is a finding.
    #[arg(long, default_value_t = 10_000.0)]
    pub min_rows: f64,
    /// Statement timeout per EXPLAIN, milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub statement_timeout_ms: u64,
    /// EXPLAIN ANALYZE (executes each statement without $n parameters, still rolled back).
    #[arg(long)]
    pub analyze: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// Exit 1 when a finding is at or above this severity.
    #[arg(long, value_enum, default_value = "medium")]
    pub fail_on: Severity,
}

pub(crate) async fn run(args: ProbePlansArgs) -> anyhow::Result<ExitCode> {
    let source = match &args.queries {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
            Source::Given(plans::split_statements(&text))
        }
        None => Source::Stats {
            top: args.top,
            by_time: args.by == TopBy::Time,
        },
    };
    let config = PlansConfig {
        app_role: args.app_role,
        tenant_setting: args.tenant_setting,
        tenant_column: args.tenant_column,
        tenants: args.tenants,
        source,
        min_rows: args.min_rows,
        statement_timeout_ms: args.statement_timeout_ms,
        analyze: args.analyze,
    };
    let mut client = super::connect(&args.database_url).await?;
    let report = plans::probe_plans(&mut client, &config).await?;
    let out = match args.format {
        ReportFormat::Text => report.text(args.fail_on),
        ReportFormat::Json => serde_json::to_string_pretty(&report.json(args.fail_on))? + "\n",
        ReportFormat::Sarif => serde_json::to_string_pretty(&report.sarif())? + "\n",
    };
    print!("{out}");
    Ok(report.status(args.fail_on).exit_code())
}
