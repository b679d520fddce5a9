//! `TenantTx::query_commit`, the write path of single-statement requests: the last
//! statement commits with the transaction. As the only statement (statement cache on) it
//! travels with the tenant's `set_config` under one Sync, an implicit transaction the
//! server commits at the Sync; after other statements it goes out with `COMMIT`. Either
//! way every statement of the transaction takes effect or none does, the tenant's policies
//! apply, and the same backend is clean afterwards — also when the future is cancelled.

use std::time::Duration;

use tenantguard::{PoolError, PoolOptions, TenantPool};
use uuid::Uuid;

use crate::support::*;

async fn names(su: &tokio_postgres::Client, tenant: Uuid) -> Vec<String> {
    su.query(
        "SELECT name FROM projects WHERE tenant_id = $1 ORDER BY name",
        &[&tenant],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Runs the whole contract on `pool` (one connection), whichever path it takes.
async fn contract(pool: &TenantPool, su: &tokio_postgres::Client, a: &Graph, b: &Graph) {
    let pid = pool.inspect_idle(None).await.unwrap().backend_pid;
    let b_before = digest(su, "projects", b.tenant).await;

    // As the only statement: committed, in the tenant, and the transaction is finished.
    let mut tx = pool.begin(a.tenant_id()).await.unwrap();
    let rows = tx
        .query_commit(
            "INSERT INTO projects (name) VALUES ('only') \
             RETURNING tenant_id, current_setting('app.tenant_id', true), pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].get::<_, Uuid>(0),
        a.tenant,
        "the tenant's column default"
    );
    assert_eq!(
        rows[0].get::<_, Option<String>>(1),
        Some(a.tenant.to_string())
    );
    assert_eq!(rows[0].get::<_, i32>(2), pid);
    assert!(
        matches!(tx.query("SELECT 1", &[]).await, Err(PoolError::Finished)),
        "nothing runs after the last statement"
    );
    assert_eq!(pool.status().available, 1, "the connection is back");
    tx.commit().await.unwrap();
    assert_clean(pool, pid, "query_commit alone").await;
    assert!(names(su, a.tenant).await.contains(&"only".to_string()));

    // As the only statement, refused by the tenant's WITH CHECK: nothing written.
    let mut tx = pool.begin(a.tenant_id()).await.unwrap();
    let err = tx
        .query_commit(
            "INSERT INTO projects (tenant_id, name) VALUES ($1, 'into b')",
            &[&b.tenant],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42501"), "{err}");
    drop(tx);
    assert_clean(pool, pid, "refused query_commit").await;
    assert!(!names(su, b.tenant).await.contains(&"into b".to_string()));

    // After another statement: both take effect together.
    let mut tx = pool.begin(a.tenant_id()).await.unwrap();
    tx.execute("INSERT INTO projects (name) VALUES ('first')", &[])
        .await
        .unwrap();
    tx.query_commit("INSERT INTO projects (name) VALUES ('second')", &[])
        .await
        .unwrap();
    assert_eq!(
        pool.status().available,
        1,
        "the connection is back while the finished TenantTx lives on"
    );
    tx.commit().await.unwrap();
    assert_clean(pool, pid, "query_commit after a statement").await;
    let now = names(su, a.tenant).await;
    assert!(now.contains(&"first".to_string()) && now.contains(&"second".to_string()));

    // After another statement, the last one fails: the earlier one is rolled back too.
    let mut tx = pool.begin(a.tenant_id()).await.unwrap();
    tx.execute("INSERT INTO projects (name) VALUES ('undone')", &[])
        .await
        .unwrap();
    let err = tx.query_commit("SELECT 1/0", &[]).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("22012"), "{err}");
    drop(tx);
    assert_clean(pool, pid, "failed query_commit after a statement").await;
    assert!(
        !names(su, a.tenant).await.contains(&"undone".to_string()),
        "a failed last statement rolls back the whole transaction"
    );

    // A read-only transaction stays read-only on this path.
    let mut tx = pool.begin_read_only(a.tenant_id()).await.unwrap();
    let err = tx
        .query_commit("INSERT INTO projects (name) VALUES ('ro')", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("25006"), "{err}");
    drop(tx);
    assert_clean(pool, pid, "read-only query_commit").await;

    // Cancelled in flight, as the only statement and after another one: whatever the
    // server made of it, the connection comes back clean.
    for earlier in [false, true] {
        let mut tx = pool.begin(a.tenant_id()).await.unwrap();
        if earlier {
            tx.execute("SELECT 1", &[]).await.unwrap();
        }
        let slow = tx.query_commit("SELECT pg_sleep(0.5)", &[]);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), slow)
                .await
                .is_err(),
            "cancelled in flight"
        );
        drop(tx);
        assert_clean(pool, pid, "cancelled query_commit").await;
    }
    // B's rows were never touched.
    assert_eq!(digest(su, "projects", b.tenant).await, b_before);
}

/// A fresh database with tenants a and b, and the contract on a one-connection pool.
async fn run_contract(statement_cache: bool, carrier: ContextCarrier) {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let a = graph(&su, "a").await;
    let b = graph(&su, "b").await;
    let pool = TenantPool::connect(
        db.config_as("tenantguard_app"),
        PoolOptions {
            max_size: 1,
            statement_cache,
            context_carrier: carrier,
            ..PoolOptions::default()
        },
    )
    .await
    .unwrap();
    contract(&pool, &su, &a, &b).await;
}

per_carrier!(the_last_statement_commits_with_the_transaction);
async fn the_last_statement_commits_with_the_transaction(carrier: ContextCarrier) {
    run_contract(true, carrier).await;
}

per_carrier!(without_the_statement_cache_too);
async fn without_the_statement_cache_too(carrier: ContextCarrier) {
    run_contract(false, carrier).await;
}

per_carrier!(a_connection_is_held_only_while_it_is_needed);
async fn a_connection_is_held_only_while_it_is_needed(carrier: ContextCarrier) {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let a = graph(&su, "a").await;
    let pool = app_pool(&db, 1, carrier).await;
    let idle = |pool: &TenantPool| pool.status().available;
    pool.inspect_idle(None).await.unwrap();
    assert_eq!(idle(&pool), 1);

    // Nothing is taken before the first statement, and a one-Sync read gives it back.
    let mut reader = pool.begin_read_only(a.tenant_id()).await.unwrap();
    let mut writer = pool.begin(a.tenant_id()).await.unwrap();
    assert_eq!(idle(&pool), 1, "begin takes no connection");
    assert_eq!(
        reader
            .query("SELECT id FROM projects", &[])
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(idle(&pool), 1, "a one-Sync read returns its connection");

    // So the pool's only connection is free for a writer while the reader lives on; the
    // writer's open transaction block holds it until the commit.
    writer
        .execute("INSERT INTO projects (name) VALUES ('meanwhile')", &[])
        .await
        .unwrap();
    assert_eq!(idle(&pool), 0, "an open transaction holds its connection");
    writer.commit().await.unwrap();
    assert_eq!(idle(&pool), 1);
    assert_eq!(
        reader
            .query("SELECT id FROM projects", &[])
            .await
            .unwrap()
            .len(),
        2,
        "each one-Sync read sees what was committed before it"
    );

    // A single-statement write holds it only for its one round trip.
    let mut writer = pool.begin(a.tenant_id()).await.unwrap();
    writer
        .query_commit("INSERT INTO projects (name) VALUES ('one trip')", &[])
        .await
        .unwrap();
    assert_eq!(idle(&pool), 1);
    reader.commit().await.unwrap();
    writer.commit().await.unwrap();
}
