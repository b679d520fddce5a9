//! `tenantguard probe http`: a black-box, bounded, cross-tenant (BOLA/IDOR) prober for any
//! REST API described by OpenAPI 3.0/3.1.
//!
//! It [`spec::learn`]s the resources from the document, creates what it needs as tenant A
//! (parents first, every string carrying A's marker), then attacks every operation as
//! tenant B with A's ids and references ([`engine`]): lists, filters and searches, reads and
//! writes of A's items, nested paths under A's parents, B's own rows re-pointed at A's,
//! smuggled tenant ids, A's cursors, unique-value oracles. Each id attack is paired with a
//! random id of the same shape (a different answer is an existence oracle) and a control on
//! B's own object (a refusal whose control failed proves nothing). A re-reads what it made
//! (a write answered 404 but applied is a leak), and the probe deletes what it created.
//! Verdicts and exit codes follow [`crate::outcome`].

pub mod client;
pub mod engine;
pub mod gen;
pub mod report;
pub mod spec;

use std::time::Duration;

use serde::Serialize;

pub use client::{Credentials, Limits};
pub use report::HttpReport;

use crate::outcome::Verdict;

/// Errors that stop a run before anything is judged (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum HttpProbeError {
    /// A flag or URL is unusable.
    #[error("{0}")]
    Usage(String),
    /// The credentials are missing or malformed (never echoes their values).
    #[error("credentials: {0}")]
    Credentials(String),
    /// The OpenAPI document cannot be read or understood.
    #[error("OpenAPI document: {0}")]
    OpenApi(String),
    /// The target cannot be reached.
    #[error("cannot reach the target: {0}")]
    Connection(String),
    /// `--provision` failed.
    #[error("provisioning tenants: {0}")]
    Provision(String),
}

/// One attack (a column of the matrix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attack {
    /// B's list (every page) shows none of A's rows.
    List,
    /// B's list filtered by A's parent/reference ids.
    Filter,
    /// B's search for A's marker.
    Search,
    /// B reads A's item.
    Get,
    /// Nested paths: B's view under A's parents, and A's child under B's parent.
    Nested,
    /// B pages with A's cursor.
    Cursor,
    /// A's tenant id in B's query string.
    TenantQuery,
    /// A's tenant id in B's headers.
    TenantHeader,
    /// B creates a row that refers to A's (body reference or path parent).
    CreateRef,
    /// B re-points its own row at A's.
    PatchRef,
    /// A's tenant id in B's create body.
    TenantBody,
    /// B patches A's item.
    Patch,
    /// B replaces A's item.
    Put,
    /// B deletes A's item.
    Delete,
    /// A value only A has, against a fresh value (409 oracle).
    Unique,
    /// A re-reads everything it made.
    Reread,
}

impl Attack {
    /// Every attack, in matrix order.
    pub const ALL: [Attack; 16] = [
        Attack::List,
        Attack::Filter,
        Attack::Search,
        Attack::Get,
        Attack::Nested,
        Attack::Cursor,
        Attack::TenantQuery,
        Attack::TenantHeader,
        Attack::CreateRef,
        Attack::PatchRef,
        Attack::TenantBody,
        Attack::Patch,
        Attack::Put,
        Attack::Delete,
        Attack::Unique,
        Attack::Reread,
    ];

    /// The column name.
    pub fn name(self) -> &'static str {
        match self {
            Attack::List => "list",
            Attack::Filter => "filter",
            Attack::Search => "search",
            Attack::Get => "get",
            Attack::Nested => "nested",
            Attack::Cursor => "cursor",
            Attack::TenantQuery => "tenant-query",
            Attack::TenantHeader => "tenant-header",
            Attack::CreateRef => "create-ref",
            Attack::PatchRef => "patch-ref",
            Attack::TenantBody => "tenant-body",
            Attack::Patch => "patch",
            Attack::Put => "put",
            Attack::Delete => "delete",
            Attack::Unique => "unique",
            Attack::Reread => "reread",
        }
    }

    /// The stable SARIF rule id of a finding of this attack.
    pub fn rule(self) -> &'static str {
        match self {
            Attack::List => "TGH001",
            Attack::Filter => "TGH002",
            Attack::Search => "TGH003",
            Attack::Get => "TGH004",
            Attack::Nested => "TGH005",
            Attack::Cursor => "TGH006",
            Attack::TenantQuery => "TGH007",
            Attack::TenantHeader => "TGH008",
            Attack::CreateRef => "TGH009",
            Attack::PatchRef => "TGH010",
            Attack::TenantBody => "TGH011",
            Attack::Patch => "TGH012",
            Attack::Put => "TGH013",
            Attack::Delete => "TGH014",
            Attack::Unique => "TGH015",
            Attack::Reread => "TGH016",
        }
    }

    /// What the attack does, one line (SARIF rule descriptions, docs).
    pub fn title(self) -> &'static str {
        match self {
            Attack::List => "Tenant B's list (every page) must not contain tenant A's rows",
            Attack::Filter => "Filtering B's list by A's reference ids must not show A's rows or tell A's ids from random ones",
            Attack::Search => "Searching as B for A's unique text must find nothing",
            Attack::Get => "B reading A's item must be refused exactly like a missing id",
            Attack::Nested => "Nested paths under A's parent, or A's child under B's parent, must be refused",
            Attack::Cursor => "A's pagination cursor must not show A's rows to B",
            Attack::TenantQuery => "A's tenant id in B's query string must be ignored or refused",
            Attack::TenantHeader => "A's tenant id in B's request headers must be ignored or refused",
            Attack::CreateRef => "B must not create a row referring to A's rows (body reference or path parent)",
            Attack::PatchRef => "B must not re-point its own row at A's rows",
            Attack::TenantBody => "A's tenant id in B's create body must not put the row into A's tenant",
            Attack::Patch => "B's PATCH of A's item must be refused and change nothing",
            Attack::Put => "B's PUT of A's item must be refused and change nothing",
            Attack::Delete => "B's DELETE of A's item must be refused and delete nothing",
            Attack::Unique => "A unique value only A has must not answer B differently from a fresh value",
            Attack::Reread => "Everything A made must be unchanged when A re-reads it at the end",
        }
    }
}

/// One cell of the matrix: a verdict and its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cell {
    /// The verdict.
    pub verdict: Verdict,
    /// What backs it (statuses, what crossed, why it could not be judged).
    pub evidence: String,
}

impl Cell {
    /// A cell.
    pub fn new(verdict: Verdict, evidence: impl Into<String>) -> Cell {
        Cell {
            verdict,
            evidence: evidence.into(),
        }
    }

    fn rank(&self) -> u8 {
        match self.verdict {
            Verdict::Leaked => 5,
            Verdict::Distinguishable => 4,
            Verdict::ServerError => 3,
            Verdict::Inconclusive => 2,
            Verdict::Blocked => 1,
            Verdict::NotApplicable => 0,
        }
    }

    /// Combines the sub-checks of one cell: the worst verdict wins; evidence is joined.
    pub fn combine(cells: Vec<Cell>) -> Option<Cell> {
        let worst = cells.iter().map(Cell::rank).max()?;
        let verdict = cells.iter().find(|c| c.rank() == worst)?.verdict;
        let evidence = cells
            .iter()
            .filter(|c| c.rank() == worst)
            .map(|c| c.evidence.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        Some(Cell { verdict, evidence })
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct HttpProbeConfig {
    /// The API's base URL (always the target).
    pub base: String,
    /// The OpenAPI document: a URL or a file (default `<base>/openapi.json`).
    pub openapi: Option<String>,
    /// Tenant A (the victim).
    pub tenant_a: Credentials,
    /// Tenant B (the attacker).
    pub tenant_b: Credentials,
    /// A's tenant id, for smuggling attacks (learned from responses when absent).
    pub tenant_a_id: Option<String>,
    /// B's tenant id (recognised in responses).
    pub tenant_b_id: Option<String>,
    /// Request budget, rate, timeout, writes.
    pub limits: Limits,
    /// Pages walked per list at most.
    pub max_pages: usize,
    /// Path prefixes not to probe.
    pub exclude: Vec<String>,
}

impl HttpProbeConfig {
    /// Defaults for everything but the target and the credentials.
    pub fn new(base: &str, tenant_a: Credentials, tenant_b: Credentials) -> HttpProbeConfig {
        HttpProbeConfig {
            base: base.to_string(),
            openapi: None,
            tenant_a,
            tenant_b,
            tenant_a_id: None,
            tenant_b_id: None,
            limits: Limits {
                max_requests: 5000,
                rate: 50.0,
                timeout: Duration::from_secs(10),
                allow_writes: false,
            },
            max_pages: 20,
            exclude: Vec::new(),
        }
    }
}

/// Runs the probe.
pub async fn probe_http(config: &HttpProbeConfig) -> Result<HttpReport, HttpProbeError> {
    engine::run(config).await
}

/// A tenant made by `--provision`.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// Its credentials (`Authorization: Bearer <owner key>`).
    pub credentials: Credentials,
    /// Its tenant id.
    pub id: String,
}

/// Creates a fresh tenant through the reference server's `POST /admin/v1/tenants`.
pub async fn provision(
    base: &str,
    admin_token: &secrecy::SecretString,
    name: &str,
) -> Result<Provisioned, HttpProbeError> {
    use secrecy::ExposeSecret;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| HttpProbeError::Provision(e.to_string()))?;
    let res = http
        .post(format!("{}/admin/v1/tenants", base.trim_end_matches('/')))
        .bearer_auth(admin_token.expose_secret())
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await
        .map_err(|e| HttpProbeError::Connection(crate::error_chain(&e)))?;
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        return Err(HttpProbeError::Provision(format!(
            "POST /admin/v1/tenants answered {status} (is the admin token right?)"
        )));
    }
    let (Some(id), Some(key)) = (body["id"].as_str(), body["api_key"].as_str()) else {
        return Err(HttpProbeError::Provision(
            "POST /admin/v1/tenants answered without `id` and `api_key`".into(),
        ));
    };
    Ok(Provisioned {
        credentials: Credentials::parse(&format!("Authorization: Bearer {key}"), "provisioned")?,
        id: id.to_string(),
    })
}
