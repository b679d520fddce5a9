//! `tenantguard probe http`: a thin layer over [`crate::probe::http`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use secrecy::ExposeSecret;

use crate::probe::http::{self, Credentials, HttpProbeConfig, Limits};

/// Output format of `probe http` (and `probe plans`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// The matrix as text, with evidence.
    Text,
    /// The stable JSON document (docs/probe-http-json.md).
    Json,
    /// SARIF 2.1.0, for code scanning.
    Sarif,
}

/// Arguments of `tenantguard probe http`.
///
/// Credentials are header lines (`Authorization: Bearer …`, `X-Api-Key: …`, one per
/// line) from TENANTGUARD_PROBE_TENANT_A / TENANTGUARD_PROBE_TENANT_B or from files, never
/// flag values.
#[derive(Debug, clap::Args)]
pub struct ProbeHttpArgs {
    /// The API's base URL: always the target (a relative servers[0].url is appended).
    #[arg(long)]
    pub base: String,
    /// The OpenAPI 3.0/3.1 document (JSON or YAML): a URL or a file [default: <base>/openapi.json].
    #[arg(long)]
    pub openapi: Option<String>,
    /// Tenant A's (the victim's) header lines, instead of TENANTGUARD_PROBE_TENANT_A.
    #[arg(long)]
    pub tenant_a_file: Option<PathBuf>,
    /// Tenant B's (the attacker's) header lines, instead of TENANTGUARD_PROBE_TENANT_B.
    #[arg(long)]
    pub tenant_b_file: Option<PathBuf>,
    /// Create two fresh tenants through the reference server's /admin/v1/tenants, with the
    /// admin token from TENANTGUARD_ADMIN_TOKEN (or TENANTGUARD_ADMIN_TOKEN_FILE).
    #[arg(long)]
    pub provision: bool,
    /// Tenant A's id, for the tenant-id smuggling attacks (else learned from responses).
    #[arg(long)]
    pub tenant_a_id: Option<String>,
    /// Tenant B's id.
    #[arg(long)]
    pub tenant_b_id: Option<String>,
    /// Send POST/PATCH/PUT/DELETE to a host that is not loopback (staging only, never
    /// production data).
    #[arg(long)]
    pub allow_writes: bool,
    /// At most this many requests in all.
    #[arg(long, default_value_t = 5000)]
    pub max_requests: usize,
    /// At most this many requests per second (0: no limit).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Pages walked per list at most.
    #[arg(long, default_value_t = 20)]
    pub max_pages: usize,
    /// Do not probe paths starting with this prefix (repeatable).
    #[arg(long = "exclude")]
    pub exclude: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
}

fn credentials(file: &Option<PathBuf>, var: &str) -> anyhow::Result<Option<Credentials>> {
    let (text, what) = match file {
        Some(p) => (
            std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?,
            p.display().to_string(),
        ),
        None => match crate::secrets::from_env(var)? {
            Some(s) => (s.expose_secret().to_string(), var.to_string()),
            None => return Ok(None),
        },
    };
    Ok(Some(Credentials::parse(&text, &what)?))
}

pub(crate) async fn run(args: ProbeHttpArgs) -> anyhow::Result<ExitCode> {
    let mut tenant_a_id = args.tenant_a_id.clone();
    let mut tenant_b_id = args.tenant_b_id.clone();
    let (a, b) = if args.provision {
        if args.tenant_a_file.is_some() || args.tenant_b_file.is_some() {
            anyhow::bail!(
                "--provision makes both tenants; give no --tenant-a-file/--tenant-b-file"
            );
        }
        let token = crate::secrets::from_env("TENANTGUARD_ADMIN_TOKEN")?.ok_or_else(|| {
            anyhow::anyhow!("--provision needs the admin token in TENANTGUARD_ADMIN_TOKEN or TENANTGUARD_ADMIN_TOKEN_FILE")
        })?;
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let a = http::provision(
            &args.base,
            &token,
            &format!("tenantguard probe A {}", &tag[..8]),
        )
        .await?;
        let b = http::provision(
            &args.base,
            &token,
            &format!("tenantguard probe B {}", &tag[..8]),
        )
        .await?;
        eprintln!(
            "provisioned tenant A {} and tenant B {} (tenants are not deleted by the probe)",
            a.id, b.id
        );
        tenant_a_id.get_or_insert(a.id);
        tenant_b_id.get_or_insert(b.id);
        (a.credentials, b.credentials)
    } else {
        let a = credentials(&args.tenant_a_file, "TENANTGUARD_PROBE_TENANT_A")?.ok_or_else(|| {
            anyhow::anyhow!("tenant A's credentials: set TENANTGUARD_PROBE_TENANT_A='Authorization: Bearer …' or give --tenant-a-file (or --provision for the reference server)")
        })?;
        let b = credentials(&args.tenant_b_file, "TENANTGUARD_PROBE_TENANT_B")?.ok_or_else(|| {
            anyhow::anyhow!("tenant B's credentials: set TENANTGUARD_PROBE_TENANT_B or give --tenant-b-file")
        })?;
        (a, b)
    };
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        anyhow::bail!("--rate must be a number ≥ 0");
    }
    let mut config = HttpProbeConfig::new(&args.base, a, b);
    config.openapi = args.openapi;
    config.tenant_a_id = tenant_a_id;
    config.tenant_b_id = tenant_b_id;
    config.limits = Limits {
        max_requests: args.max_requests,
        rate: args.rate,
        timeout: Duration::from_secs(args.timeout.max(1)),
        allow_writes: args.allow_writes,
    };
    config.max_pages = args.max_pages;
    config.exclude = args.exclude;
    let report = tokio::select! {
        r = http::probe_http(&config) => r?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted: rows the probe created may be left behind"),
    };
    let out = match args.format {
        ReportFormat::Text => report.text(),
        ReportFormat::Json => serde_json::to_string_pretty(&report.json())? + "\n",
        ReportFormat::Sarif => serde_json::to_string_pretty(&report.sarif())? + "\n",
    };
    print!("{out}");
    Ok(report.status().exit_code())
}
