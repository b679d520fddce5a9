//! `tenantguard audit`: a thin layer over [`crate::audit`].

use std::path::PathBuf;
use std::process::ExitCode;

use crate::audit::{self, AuditConfig, Baseline, Report, Severity};
use crate::isolation::{CallerSource, ClaimVia, TenancyModel};

/// The tenancy models `--tenancy` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TenancyWord {
    /// A tenant id in one custom setting (`--tenant-setting`).
    Setting,
    /// A JWT claim (`--claim`, read as `--claims-via`).
    JwtClaim,
    /// A membership table keyed by the caller (`--membership-table` …).
    Membership,
    /// Per-user rows (`--user-column` = the caller).
    Owner,
    /// One database role per tenant (`--role-pattern`).
    Role,
}

/// How JWT claims are read (`--claims-via`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClaimsVia {
    /// `current_setting('request.jwt.claims', true)::json ->> claim` (PostgREST).
    RequestJwtClaims,
    /// `auth.jwt()` / `auth.uid()` (Supabase).
    AuthFunctions,
}

/// The tenancy model, declared (wins over detection) or left to detection.
#[derive(Debug, Clone, clap::Args)]
pub struct TenancyArgs {
    /// The tenancy model; without it the model is detected per table from the policies,
    /// and the report says what was assumed.
    #[arg(long, value_enum)]
    pub tenancy: Option<TenancyWord>,
    /// jwt-claim: the claim holding the tenant id.
    #[arg(long, default_value = "tenant_id")]
    pub claim: String,
    /// jwt-claim, and the caller of membership/owner: how claims are read.
    #[arg(long, value_enum, default_value = "request-jwt-claims")]
    pub claims_via: ClaimsVia,
    /// membership: the membership table (`schema.table` or `table`).
    #[arg(long)]
    pub membership_table: Option<String>,
    /// membership: its column holding the user id.
    #[arg(long, default_value = "user_id")]
    pub member_user_column: String,
    /// owner: the column holding the owning user.
    #[arg(long, default_value = "user_id")]
    pub user_column: String,
    /// membership/owner: the caller's user id comes from this setting (default: the JWT
    /// claim named by --caller-claim).
    #[arg(long)]
    pub caller_setting: Option<String>,
    /// membership/owner: the JWT claim holding the caller's user id.
    #[arg(long, default_value = "sub")]
    pub caller_claim: String,
    /// role: how a tenant id becomes a role name (`{}` is the id).
    #[arg(long, default_value = "{}")]
    pub role_pattern: String,
}

impl TenancyArgs {
    /// The declared model, if any; `tenant_column`/`tenant_setting` fill the setting model.
    pub fn model(
        &self,
        tenant_column: &str,
        tenant_setting: &str,
    ) -> anyhow::Result<Option<TenancyModel>> {
        let via = match self.claims_via {
            ClaimsVia::RequestJwtClaims => ClaimVia::RequestJwtClaims,
            ClaimsVia::AuthFunctions => ClaimVia::AuthFunctions,
        };
        let caller = match &self.caller_setting {
            Some(name) => CallerSource::Setting { name: name.clone() },
            None => CallerSource::Claim {
                claim: self.caller_claim.clone(),
                via: via.clone(),
            },
        };
        Ok(Some(match self.tenancy {
            None => return Ok(None),
            Some(TenancyWord::Setting) => TenancyModel::Setting {
                name: tenant_setting.to_string(),
            },
            Some(TenancyWord::JwtClaim) => TenancyModel::JwtClaim {
                claim: self.claim.clone(),
                via,
            },
            Some(TenancyWord::Membership) => TenancyModel::Membership {
                table: self.membership_table.clone().ok_or_else(|| {
                    anyhow::anyhow!(
                        "--tenancy membership needs --membership-table (or leave --tenancy out to detect it)"
                    )
                })?,
                user_column: self.member_user_column.clone(),
                tenant_column: tenant_column.to_string(),
                caller,
            },
            Some(TenancyWord::Owner) => TenancyModel::Owner {
                user_column: self.user_column.clone(),
                caller,
            },
            Some(TenancyWord::Role) => {
                if !self.role_pattern.contains("{}") {
                    anyhow::bail!("--role-pattern must contain {{}} (where the tenant id goes)");
                }
                TenancyModel::Role {
                    pattern: self.role_pattern.clone(),
                }
            }
        }))
    }
}

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
    /// The tenancy model.
    #[command(flatten)]
    pub tenancy: TenancyArgs,
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
    let tenancy = args
        .tenancy
        .model(&args.tenant_column, &args.tenant_setting)?;
    let config = AuditConfig {
        app_role: args.app_role,
        tenant_column: args.tenant_column,
        tenant_setting: args.tenant_setting,
        schemas: args.schemas,
        tenancy,
    };
    let mut client = super::connect(&args.database_url).await?;
    let run = audit::run(&mut client, &config).await?;
    let findings = run.findings;
    if let Some(p) = &args.write_baseline {
        Baseline::from_findings(&findings).write(p)?;
    }
    let mut report = Report::new(config, findings, baseline.as_ref(), args.fail_on);
    report.tenancy = Some(run.detection);
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
