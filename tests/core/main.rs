//! Isolation-core tests against real PostgreSQL (a private throwaway cluster, or
//! TEST_DATABASE_URL): policies, keys, the scoped pool, migrate and rls apply.

mod support;

mod smoke {
    use crate::support::*;

    #[tokio::test]
    async fn migrated_database_isolates_projects() {
        let db = TestDb::new().await;
        let su = db.superuser().await;
        let (a, b) = two_tenants(&su).await;
        su.batch_execute(&format!(
            "INSERT INTO projects (tenant_id, name) VALUES ('{a}', 'a1'), ('{b}', 'b1')"
        ))
        .await
        .unwrap();
        let pool = db.app_pool(2).await;
        let mut tx = pool.begin(a).await.unwrap();
        let rows = tx.query("SELECT name FROM projects", &[]).await.unwrap();
        let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(names, vec!["a1".to_string()]);
        tx.commit().await.unwrap();
    }
}
