//! Shared helpers: fixtures with unique role names, and running audit/probe.

pub use tenantguard::audit::{AuditConfig, Finding, Severity};
pub use tenantguard::testing::{unique_name, TestDb};

/// A broken-schema fixture loaded into a fresh empty database.
pub struct Fixture {
    pub db: TestDb,
    /// The fixture's app role (unique in the cluster).
    pub app: String,
}

impl Fixture {
    /// Loads `tests/fixtures/audit/_prelude.sql` then `<name>.sql`, with `{{app}}` and `{{owner}}` replaced by
    /// unique role names (roles are cluster-wide and tests run in parallel).
    pub async fn load(name: &str) -> Fixture {
        Fixture::load_variant(name, None).await
    }

    /// Loads `<name>.sql` with `{{variant}}` replaced by `<name>.<variant>.sql` (the
    /// planted weaknesses), or by nothing (the clean schema).
    pub async fn load_variant(name: &str, variant: Option<&str>) -> Fixture {
        let planted = match variant {
            Some(v) => {
                let p = format!(
                    "{}/tests/fixtures/audit/{name}.{v}.sql",
                    env!("CARGO_MANIFEST_DIR")
                );
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
            }
            None => String::new(),
        };
        let path = format!(
            "{}/tests/fixtures/audit/{name}.sql",
            env!("CARGO_MANIFEST_DIR")
        );
        let prelude = format!(
            "{}/tests/fixtures/audit/_prelude.sql",
            env!("CARGO_MANIFEST_DIR")
        );
        let own = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // `standalone_*` fixtures bring their own roles and tables.
        let sql = if name.starts_with("standalone_") {
            own
        } else {
            std::fs::read_to_string(&prelude).unwrap_or_else(|e| panic!("{prelude}: {e}"))
                + "\n"
                + &own
        };
        let app = unique_name("app");
        let owner = unique_name("owner");
        let sql = sql
            .replace("{{variant}}", &planted)
            .replace("{{app}}", &app)
            .replace("{{owner}}", &owner);
        let db = TestDb::empty().await;
        let su = db.superuser().await;
        su.batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{name}: {}", tenantguard::error_chain(&e)));
        Fixture { db, app }
    }

    pub fn config(&self) -> AuditConfig {
        AuditConfig {
            app_role: self.app.clone(),
            ..AuditConfig::default()
        }
    }

    pub async fn audit(&self) -> Vec<Finding> {
        audit(&self.db, &self.config()).await
    }
}

pub async fn audit(db: &TestDb, config: &AuditConfig) -> Vec<Finding> {
    let mut su = db.superuser().await;
    tenantguard::audit::audit(&mut su, config)
        .await
        .unwrap_or_else(|e| panic!("audit: {}", tenantguard::error_chain(&e)))
}

/// Asserts a finding of `rule` on an object containing `object`, and returns it.
pub fn expect<'a>(findings: &'a [Finding], rule: &str, object: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.rule == rule && f.object.contains(object))
        .unwrap_or_else(|| panic!("no {rule} on {object:?} in:\n{}", dump(findings)))
}

pub fn dump(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| format!("{} {} {} — {}", f.severity, f.rule, f.object, f.why))
        .collect::<Vec<_>>()
        .join("\n")
}
