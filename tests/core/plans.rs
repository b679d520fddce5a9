//! The policy predicate is evaluated once per statement (an InitPlan over the STABLE
//! function), so PostgreSQL uses the tenant index instead of filtering every row.
//! Plan shape, not timing: timings belong in the benchmarks.

use crate::support::*;

async fn plan(db: &TestDb, tenant: uuid::Uuid, sql: &str) -> String {
    let mut app = db.connect_as("tenantguard_app").await;
    let tx = app.transaction().await.unwrap();
    tx.execute(
        "SELECT set_config('app.tenant_id', $1, true)",
        &[&tenant.to_string()],
    )
    .await
    .unwrap();
    let rows = tx.query(&format!("EXPLAIN {sql}"), &[]).await.unwrap();
    rows.iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn policies_use_the_tenant_index_and_evaluate_the_context_once() {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    su.batch_execute(
        "INSERT INTO tenants (name) SELECT 't' || g FROM generate_series(1, 200) g;
         INSERT INTO projects (tenant_id, name)
           SELECT t.id, 'p' || g FROM tenants t, generate_series(1, 100) g;
         INSERT INTO tasks (tenant_id, project_id, title)
           SELECT p.tenant_id, p.id, 'x' FROM projects p, generate_series(1, 3);
         ANALYZE;",
    )
    .await
    .unwrap();
    let row = su
        .query_one("SELECT tenant_id, id FROM projects LIMIT 1", &[])
        .await
        .unwrap();
    let (tenant, project): (uuid::Uuid, uuid::Uuid) = (row.get(0), row.get(1));
    for sql in [
        "SELECT * FROM projects".to_string(),
        format!("SELECT * FROM tasks WHERE project_id = '{project}'"),
        "SELECT * FROM projects ORDER BY created_at DESC, id DESC LIMIT 50".to_string(),
    ] {
        let p = plan(&db, tenant, &sql).await;
        assert!(
            p.contains("InitPlan"),
            "{sql}: context not evaluated once:\n{p}"
        );
        // PostgreSQL 17 renamed the InitPlan's output in EXPLAIN from `$0` to
        // `(InitPlan 1).col1`; either way it must be the index condition.
        assert!(
            ["$0", "(InitPlan 1).col1"].iter().any(|param| {
                p.contains(&format!("Index Cond: (tenant_id = {param})"))
                    || p.contains(&format!("Index Cond: ((tenant_id = {param})"))
            }),
            "{sql}: the tenant predicate is not an index condition:\n{p}"
        );
        assert!(!p.contains("Seq Scan"), "{sql}: sequential scan:\n{p}");
    }
}
