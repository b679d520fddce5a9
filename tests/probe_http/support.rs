//! Running the reference server and the prober.

use std::time::Duration;

use secrecy::SecretString;
use tenantguard::http::{AppState, HttpConfig};
use tenantguard::probe::http::{Credentials, HttpProbeConfig, HttpReport, Limits};
use tenantguard::testing::{Served, TestDb};

pub const ADMIN_TOKEN: &str = "probe-http-admin-token-0123456789";

/// The reference server on a random loopback port, on a fresh database.
pub struct RefServer {
    pub base: String,
    _db: TestDb,
    served: Served,
}

impl RefServer {
    pub async fn start() -> RefServer {
        let db = TestDb::new().await;
        let pool = db.app_pool(8).await;
        let admin = db.admin_pool().await;
        let config = HttpConfig {
            admin_token: Some(SecretString::from(ADMIN_TOKEN.to_string())),
            ..HttpConfig::default()
        };
        let state = AppState::new(pool, Some(admin), config).expect("state");
        let served = Served::start(state).await;
        RefServer {
            base: served.base.clone(),
            _db: db,
            served,
        }
    }

    pub async fn stop(self) {
        let _ = self.served.stop().await;
    }
}

/// A probe configuration for tests: loopback, fast, bounded.
pub fn config(base: &str, a: &str, b: &str) -> HttpProbeConfig {
    let mut c = HttpProbeConfig::new(
        base,
        Credentials::parse(a, "A").expect("A"),
        Credentials::parse(b, "B").expect("B"),
    );
    c.limits = Limits {
        max_requests: 4000,
        rate: 0.0,
        timeout: Duration::from_secs(10),
        allow_writes: false,
    };
    c
}

/// The findings of a report, one line each, for assertion messages.
pub fn findings(r: &HttpReport) -> Vec<String> {
    r.findings()
        .into_iter()
        .map(|(c, a, cell)| {
            format!(
                "{} {c} {}: {}",
                cell.verdict.label(),
                a.name(),
                cell.evidence
            )
        })
        .collect()
}

/// Validates a JSON document against the committed schema.
pub fn validate(doc: &serde_json::Value) {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("schemas/probe-http.schema.json")).expect("schema");
    let v = jsonschema::validator_for(&schema).expect("compile schema");
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "schema errors: {errors:?}");
}
