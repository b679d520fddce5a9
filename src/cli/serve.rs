//! `tenantguard serve`: the API server for production. Everything comes from
//! `TENANTGUARD_*` environment variables (or the matching flags); secrets only from the
//! environment or `*_FILE` files, never flags, so they do not show in `ps`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::http::{AppState, Application, HttpConfig, JwtConfig, JwtKey};
use crate::pool::{AdminPool, PoolOptions, TenantPool};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How the tenant context reaches the database ([`crate::pool::ContextCarrier`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CarrierArg {
    /// `set_config(<setting>, <tenant>, true)`, no BEGIN/COMMIT on the one-Sync paths (the
    /// default; refused on Citus).
    SetConfig,
    /// `BEGIN; SET LOCAL <setting> = '<tenant>'; …; COMMIT` under one Sync (Citus).
    SetLocal,
}

impl From<CarrierArg> for crate::pool::ContextCarrier {
    fn from(c: CarrierArg) -> Self {
        match c {
            CarrierArg::SetConfig => crate::pool::ContextCarrier::SetConfigLocal,
            CarrierArg::SetLocal => crate::pool::ContextCarrier::SetLocal,
        }
    }
}

/// JWT signature algorithms accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JwtAlgorithm {
    /// Shared secret from TENANTGUARD_JWT_HS256_SECRET (or _FILE).
    Hs256,
    /// RSA public key from --jwt-public-key-file.
    Rs256,
    /// EC P-256 public key from --jwt-public-key-file.
    Es256,
}

/// Server settings shared by `serve` and `dev`.
///
/// Secrets are read from the environment only: TENANTGUARD_ADMIN_TOKEN (enables
/// `/admin/v1`) and TENANTGUARD_JWT_HS256_SECRET, each also as NAME_FILE (a path whose
/// contents are the secret).
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "TENANTGUARD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Most database connections in the app pool.
    #[arg(long, env = "TENANTGUARD_POOL_SIZE", default_value_t = 32)]
    pub pool_size: usize,
    /// Largest request body in bytes (larger: 413).
    #[arg(long, env = "TENANTGUARD_BODY_LIMIT", default_value_t = 2 * 1024 * 1024)]
    pub body_limit: usize,
    /// Longest a request may run, in seconds (then 503 and rollback).
    #[arg(long, env = "TENANTGUARD_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// How long a verified API key is cached, in seconds (a revoked key may work this long
    /// on other servers; 0 disables the cache).
    #[arg(long, env = "TENANTGUARD_KEY_CACHE_SECS", default_value_t = 5)]
    pub key_cache_secs: u64,
    /// How long the answer to a request with an `Idempotency-Key` is kept, in seconds (a
    /// retry within it gets that answer and writes nothing).
    #[arg(long, env = "TENANTGUARD_IDEMPOTENCY_TTL_SECS", default_value_t = 24 * 60 * 60)]
    pub idempotency_ttl_secs: u64,
    /// Log format.
    #[arg(
        long,
        env = "TENANTGUARD_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Accept JWT bearer tokens signed with this algorithm.
    #[arg(long, env = "TENANTGUARD_JWT_ALGORITHM", value_enum)]
    pub jwt_algorithm: Option<JwtAlgorithm>,
    /// PEM public key for RS256/ES256.
    #[arg(long, env = "TENANTGUARD_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Required JWT issuer (`iss`).
    #[arg(long, env = "TENANTGUARD_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required JWT audience (`aud`).
    #[arg(long, env = "TENANTGUARD_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Clock skew allowed on JWT `exp`, `nbf` and `iat`, in seconds.
    #[arg(long, env = "TENANTGUARD_JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,
    /// Longest a client may take to send a request's headers, in seconds (then the
    /// connection is closed; also the keep-alive idle limit).
    #[arg(
        long,
        env = "TENANTGUARD_HEADER_READ_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub header_read_timeout_secs: u64,
    /// Longest a client may take to send a request's body, in seconds (then 408). No
    /// database connection is held meanwhile.
    #[arg(long, env = "TENANTGUARD_BODY_READ_TIMEOUT_SECS", default_value_t = 15)]
    pub body_read_timeout_secs: u64,
    /// Most requests of one tenant in flight at once, per process (then 429); 0: half the
    /// pool size.
    #[arg(long, env = "TENANTGUARD_TENANT_CONCURRENCY", default_value_t = 0)]
    pub tenant_concurrency: u32,
    /// Most requests of one API key (or JWT subject) in flight at once, per process (then
    /// 429); 0: half the tenant limit.
    #[arg(long, env = "TENANTGUARD_KEY_CONCURRENCY", default_value_t = 0)]
    pub key_concurrency: u32,
    /// Requests per second of one tenant, per process, bursts of one second's worth (then
    /// 429 with Retry-After); 0: unlimited.
    #[arg(long, env = "TENANTGUARD_TENANT_RATE", default_value_t = 1000)]
    pub tenant_rate: u32,
    /// Requests per second of one API key (or JWT subject), per process; 0: unlimited.
    #[arg(long, env = "TENANTGUARD_KEY_RATE", default_value_t = 500)]
    pub key_rate: u32,
    /// Cache prepared statements per connection (`on`, the default). Set `off` behind a
    /// transaction-mode pooler that cannot keep them (pgbouncer before 1.21, or
    /// max_prepared_statements = 0); the server detects that case and says so in /readyz.
    #[arg(
        long,
        env = "TENANTGUARD_STATEMENT_CACHE",
        default_value = "on",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::Set
    )]
    pub statement_cache: bool,
    /// How the tenant context is carried: `set-config` (the default) or `set-local`, which
    /// Citus needs (with `citus.propagate_set_commands = 'local'` for the app role). The
    /// server refuses `set-config` on a database with the citus extension.
    #[arg(
        long,
        env = "TENANTGUARD_CONTEXT_CARRIER",
        value_enum,
        default_value = "set-config"
    )]
    pub context_carrier: CarrierArg,
    /// Add `tenant_id = $n` (the request's own tenant) to every resource statement (`on`,
    /// the default): on Citus that routes each request to its tenant's shard. `off` only
    /// to measure the fan-out it saves; row-level security isolates tenants either way.
    #[arg(
        long,
        env = "TENANTGUARD_ROUTING_HINT",
        default_value = "on",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::Set
    )]
    pub routing_hint: bool,
}

impl ServerArgs {
    /// The HTTP settings, reading secrets from the environment.
    pub fn http_config(&self) -> anyhow::Result<HttpConfig> {
        let admin_token = crate::secrets::from_env("TENANTGUARD_ADMIN_TOKEN")?;
        let metrics_token = crate::secrets::from_env("TENANTGUARD_METRICS_TOKEN")?;
        let hs_secret = crate::secrets::from_env("TENANTGUARD_JWT_HS256_SECRET")?;
        let key = match (self.jwt_algorithm, hs_secret) {
            (None, None) => None,
            (None | Some(JwtAlgorithm::Hs256), Some(secret)) => Some(JwtKey::Hs256(secret)),
            (Some(JwtAlgorithm::Hs256), None) => anyhow::bail!(
                "--jwt-algorithm hs256 needs TENANTGUARD_JWT_HS256_SECRET or TENANTGUARD_JWT_HS256_SECRET_FILE"
            ),
            (Some(alg), _) => {
                let path = self.jwt_public_key_file.as_ref().context(
                    "RS256/ES256 need --jwt-public-key-file (TENANTGUARD_JWT_PUBLIC_KEY_FILE)",
                )?;
                let pem = std::fs::read(path)
                    .with_context(|| format!("reading the JWT public key {}", path.display()))?;
                Some(if alg == JwtAlgorithm::Rs256 {
                    JwtKey::Rs256Pem(pem)
                } else {
                    JwtKey::Es256Pem(pem)
                })
            }
        };
        Ok(HttpConfig {
            body_limit: self.body_limit,
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            key_cache_ttl: Duration::from_secs(self.key_cache_secs),
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs.max(1)),
            body_read_timeout: Duration::from_secs(self.body_read_timeout_secs.max(1)),
            tenant_concurrency: self.tenant_concurrency,
            key_concurrency: self.key_concurrency,
            tenant_rate: self.tenant_rate,
            key_rate: self.key_rate,
            metrics_token,
            idempotency_ttl: Duration::from_secs(self.idempotency_ttl_secs),
            routing_hint: self.routing_hint,
            admin_token,
            jwt: key.map(|key| JwtConfig {
                key,
                leeway_secs: self.jwt_leeway_secs,
                issuer: self.jwt_issuer.clone(),
                audience: self.jwt_audience.clone(),
            }),
            ..HttpConfig::default()
        })
    }
}

/// Secrets, read only from the environment (never flags), shown in `--help` of `serve`
/// and `dev`.
pub(crate) const SECRETS_HELP: &str = "Secrets (environment only; each may instead be given as NAME_FILE, a path to a file holding it):
  TENANTGUARD_ADMIN_TOKEN        bearer token of the admin API (/admin/v1); unset disables it (dev generates one)
  TENANTGUARD_JWT_HS256_SECRET   accept HS256 JWTs (claims sub, tenant_id, role, exp; nbf, iat checked if present) signed with this secret
  TENANTGUARD_METRICS_TOKEN      bearer token /metrics requires; unset leaves /metrics open
Logging: RUST_LOG filters (default info); TENANTGUARD_LOG_FORMAT=json for JSON lines.";

/// Arguments of `tenantguard serve`.
#[derive(Debug, clap::Args)]
#[command(after_help = SECRETS_HELP)]
pub struct ServeArgs {
    /// Connection URL of the app role (subject to RLS; the server refuses a superuser,
    /// BYPASSRLS or table-owning role).
    #[arg(long, env = "TENANTGUARD_DATABASE_URL")]
    pub database_url: String,
    /// Connection URL of the admin role (BYPASSRLS, read-only) for `/admin/v1`.
    #[arg(long, env = "TENANTGUARD_ADMIN_DATABASE_URL")]
    pub admin_database_url: Option<String>,
    /// The custom setting that carries the current tenant id (must match the policies).
    #[arg(
        long,
        env = "TENANTGUARD_TENANT_SETTING",
        default_value = "app.tenant_id"
    )]
    pub tenant_setting: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Connects both pools, refusing unsafe roles with the reasons.
pub(crate) async fn connect_pools(
    app: tokio_postgres::Config,
    admin: Option<tokio_postgres::Config>,
    server: &ServerArgs,
    tenant_setting: &str,
) -> anyhow::Result<(TenantPool, Option<AdminPool>)> {
    let opts = PoolOptions {
        max_size: server.pool_size.max(1),
        tenant_setting: tenant_setting.to_string(),
        statement_cache: server.statement_cache,
        context_carrier: server.context_carrier.into(),
        ..PoolOptions::default()
    };
    let pool = TenantPool::connect(app, opts.clone())
        .await
        .context("starting the app pool")?;
    let admin = match admin {
        Some(cfg) => Some(
            AdminPool::connect(
                cfg,
                PoolOptions {
                    max_size: 4,
                    ..opts
                },
            )
            .await
            .context("starting the admin pool")?,
        ),
        None => None,
    };
    Ok((pool, admin))
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    crate::telemetry::init_tracing(args.server.log_format == LogFormat::Json);
    let config = args.server.http_config()?;
    let app_cfg: tokio_postgres::Config = args
        .database_url
        .parse()
        .context("TENANTGUARD_DATABASE_URL is not a valid connection URL")?;
    let admin_cfg = args
        .admin_database_url
        .as_deref()
        .map(str::parse::<tokio_postgres::Config>)
        .transpose()
        .context("TENANTGUARD_ADMIN_DATABASE_URL is not a valid connection URL")?;
    if config.admin_token.is_some() && admin_cfg.is_none() {
        tracing::warn!("TENANTGUARD_ADMIN_TOKEN is set but TENANTGUARD_ADMIN_DATABASE_URL is not: /admin/v1 will answer 503");
    }
    if !args.server.statement_cache {
        tracing::info!("statement cache off: statements are prepared inside each transaction (for a transaction-mode pooler)");
    }
    if args.server.context_carrier == CarrierArg::SetLocal {
        tracing::info!("context carrier: SET LOCAL inside BEGIN … COMMIT (for Citus)");
    }
    let (pool, admin) =
        connect_pools(app_cfg, admin_cfg, &args.server, &args.tenant_setting).await?;
    let state = AppState::new(pool, admin, config)?;
    let app = Application::bind(args.server.listen, state)
        .await
        .with_context(|| format!("binding {}", args.server.listen))?;
    tracing::info!(addr = %app.local_addr()?, "tenantguard API listening");
    app.run_until(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::ServerArgs;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        server: ServerArgs,
    }

    #[test]
    fn limits_timeouts_and_the_statement_cache_are_settings() {
        let defaults = Cmd::try_parse_from(["t"]).unwrap().server;
        assert!(defaults.statement_cache);
        let c = defaults.http_config().unwrap();
        assert_eq!(c.header_read_timeout.as_secs(), 10);
        assert_eq!(c.body_read_timeout.as_secs(), 15);
        assert_eq!((c.tenant_concurrency, c.key_concurrency), (0, 0));
        assert_eq!((c.tenant_rate, c.key_rate), (1000, 500));

        let args = Cmd::try_parse_from([
            "t",
            "--statement-cache",
            "off",
            "--tenant-concurrency",
            "6",
            "--key-concurrency",
            "2",
            "--tenant-rate",
            "50",
            "--key-rate",
            "0",
            "--header-read-timeout-secs",
            "3",
            "--body-read-timeout-secs",
            "4",
        ])
        .unwrap()
        .server;
        assert!(!args.statement_cache);
        let c = args.http_config().unwrap();
        assert_eq!((c.tenant_concurrency, c.key_concurrency), (6, 2));
        assert_eq!((c.tenant_rate, c.key_rate), (50, 0));
        assert_eq!(c.header_read_timeout.as_secs(), 3);
        assert_eq!(c.body_read_timeout.as_secs(), 4);
        for on in ["on", "true", "1"] {
            let a = Cmd::try_parse_from(["t", "--statement-cache", on]).unwrap();
            assert!(a.server.statement_cache, "{on}");
        }
        assert!(Cmd::try_parse_from(["t", "--statement-cache", "maybe"]).is_err());
    }

    #[test]
    fn the_context_carrier_is_a_setting() {
        use super::CarrierArg;
        use crate::pool::ContextCarrier;
        let d = Cmd::try_parse_from(["t"]).unwrap().server;
        assert_eq!(d.context_carrier, CarrierArg::SetConfig);
        assert_eq!(
            ContextCarrier::from(d.context_carrier),
            ContextCarrier::SetConfigLocal
        );
        let a = Cmd::try_parse_from(["t", "--context-carrier", "set-local"])
            .unwrap()
            .server;
        assert_eq!(
            ContextCarrier::from(a.context_carrier),
            ContextCarrier::SetLocal
        );
        assert!(Cmd::try_parse_from(["t", "--context-carrier", "set_local"]).is_err());
    }
}
