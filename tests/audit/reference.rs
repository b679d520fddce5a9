//! The reference schema after migrate: nothing at high or above.

use crate::support::*;

#[tokio::test]
async fn reference_schema_has_no_high_findings() {
    let db = TestDb::new().await;
    let findings = audit(&db, &AuditConfig::default()).await;
    eprintln!("{}", dump(&findings));
    let bad: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.severity >= Severity::High)
        .collect();
    assert!(
        bad.is_empty(),
        "high findings on the reference schema:\n{}",
        dump(&findings)
    );
}

#[tokio::test]
async fn reference_model_sees_every_tenant_table() {
    let db = TestDb::new().await;
    let mut su = db.superuser().await;
    let tx = su
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .unwrap();
    let config = AuditConfig::default();
    let cat = tenantguard::audit::catalog::load(&tx, &config)
        .await
        .unwrap();
    let model = tenantguard::audit::Model::build(cat, &config);
    let mut names: Vec<String> = model.tenant_tables().map(|(t, _)| t.name.clone()).collect();
    names.sort();
    let mut want: Vec<String> = tenantguard::schema::TENANT_TABLES
        .iter()
        .map(|s| s.to_string())
        .collect();
    want.push("tenants".into());
    want.sort();
    assert_eq!(names, want);
    for (t, tt) in model.tenant_tables() {
        for cmd in tenantguard::policy::Command::ALL {
            let e = model.effective(t, tt, cmd, false);
            if t.privileges.select && cmd == tenantguard::policy::Command::Select {
                assert!(!e.denied() && e.scoped(), "{} {:?}: {:?}", t.name, cmd, e);
            }
        }
    }
    assert!(!model.source_functions.is_empty());
}

#[test]
fn every_rule_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/audit-json.md"))
        .unwrap();
    for r in tenantguard::audit::RULES {
        let row = format!("| {} | {} | {} |", r.id, r.severity, r.name);
        assert!(
            doc.contains(&row),
            "docs/audit-json.md lacks the row {row:?}"
        );
    }
}
