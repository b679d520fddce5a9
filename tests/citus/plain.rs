//! Without Citus (always runs, on the suite's plain PostgreSQL): `--citus` is refused with a
//! clear message and changes nothing; plain `migrate --check` is what it was.

use tenantguard::testing::TestDb;

async fn policies(c: &tokio_postgres::Client) -> Vec<String> {
    c.query(
        "SELECT polrelid::regclass::text, polname, pg_get_expr(polqual, polrelid)
         FROM pg_policy ORDER BY 1, 2",
        &[],
    )
    .await
    .expect("policies")
    .iter()
    .map(|r| {
        format!(
            "{}/{}/{:?}",
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, Option<String>>(2)
        )
    })
    .collect()
}

#[tokio::test]
async fn migrate_citus_on_plain_postgres_is_refused_and_changes_nothing() {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let before = policies(&su).await;
    assert!(before
        .iter()
        .any(|p| p.contains("SELECT tenantguard.current_tenant_id()")));
    for args in [
        &["migrate", "--citus"][..],
        &["migrate", "--citus", "--check"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenantguard"))
            .args(args)
            .arg("--database-url")
            .arg(db.superuser_url())
            .output()
            .expect("run tenantguard");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(text.contains("no citus extension"), "{args:?}: {text}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenantguard"))
        .args(["migrate", "--check", "--database-url", &db.superuser_url()])
        .output()
        .expect("run tenantguard");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("citus"), "{text}");
    assert_eq!(policies(&su).await, before);
}
