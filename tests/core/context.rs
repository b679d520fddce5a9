//! The tenant context never outlives its transaction: after commit, rollback, an SQL
//! error, a panic in code holding the TenantTx, and a future cancelled mid-query, the next
//! checkout of that same connection has no tenant and sees zero rows. And many concurrent
//! tasks over many tenants on a small pool each see only their own rows.

use std::time::Duration;

use tenantguard::TenantTx;

use crate::support::*;

async fn backend(tx: &mut TenantTx) -> i32 {
    tx.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

per_carrier!(context_dies_with_commit_rollback_error_and_drop);
async fn context_dies_with_commit_rollback_error_and_drop(carrier: ContextCarrier) {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let a = graph(&su, "a").await;
    let pool = app_pool(&db, 1, carrier).await;

    // Commit.
    let mut tx = pool.begin(a.tenant_id()).await.unwrap();
    let pid = backend(&mut tx).await;
    let setting: Option<String> = tx
        .query_one("SELECT current_setting('app.tenant_id', true)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(setting, Some(a.tenant.to_string()), "context is set inside");
    tx.execute("INSERT INTO projects (name) VALUES ('committed')", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_clean(&pool, pid, "commit").await;

    // Explicit rollback.
    let mut tx = pool.begin(a.tenant_id()).await.unwrap();
    assert_eq!(backend(&mut tx).await, pid);
    tx.rollback().await.unwrap();
    assert_clean(&pool, pid, "rollback").await;

    // An SQL error, then the TenantTx is dropped (as an error path would).
    let mut tx = pool.begin(a.tenant_id()).await.unwrap();
    assert_eq!(backend(&mut tx).await, pid);
    assert!(tx.query("SELECT 1/0", &[]).await.is_err());
    drop(tx);
    assert_clean(&pool, pid, "sql error").await;

    // An error in the very first (pipelined) statement.
    let mut tx = pool.begin(a.tenant_id()).await.unwrap();
    assert!(tx
        .query("SELECT no_such_column FROM projects", &[])
        .await
        .is_err());
    drop(tx);
    assert_clean(&pool, pid, "error in the first statement").await;

    // Dropped without commit: rolled back, and the insert is gone.
    let mut tx = pool.begin(a.tenant_id()).await.unwrap();
    tx.execute("INSERT INTO projects (name) VALUES ('dropped')", &[])
        .await
        .unwrap();
    drop(tx);
    assert_clean(&pool, pid, "drop").await;
    let names: Vec<String> = su
        .query(
            "SELECT name FROM projects WHERE tenant_id = $1 ORDER BY name",
            &[&a.tenant],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(names.contains(&"committed".to_string()));
    assert!(!names.contains(&"dropped".to_string()), "drop rolled back");

    // A read-only transaction whose COMMIT is not awaited.
    let mut tx = pool.begin_read_only(a.tenant_id()).await.unwrap();
    assert_eq!(backend(&mut tx).await, pid);
    assert!(tx
        .execute("INSERT INTO projects (name) VALUES ('ro')", &[])
        .await
        .is_err());
    drop(tx);
    let mut tx = pool.begin_read_only(a.tenant_id()).await.unwrap();
    assert_eq!(
        tx.query("SELECT * FROM projects", &[]).await.unwrap().len(),
        2
    );
    tx.commit().await.unwrap();
    assert_clean(&pool, pid, "read-only commit").await;
}

per_carrier!(
    context_dies_with_a_panic_and_a_cancelled_query,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn context_dies_with_a_panic_and_a_cancelled_query(carrier: ContextCarrier) {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let a = graph(&su, "a").await;
    let pool = app_pool(&db, 1, carrier).await;

    // A panic in a task holding the TenantTx: unwinding drops it.
    let p = pool.clone();
    let tenant = a.tenant_id();
    let handle = tokio::spawn(async move {
        let mut tx = p.begin(tenant).await.unwrap();
        let pid: i32 = tx
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        tx.execute("INSERT INTO projects (name) VALUES ('panicked')", &[])
            .await
            .unwrap();
        if pid > 0 {
            panic!("handler bug while holding a tenant transaction");
        }
        pid
    });
    assert!(handle.await.unwrap_err().is_panic());
    let pid = pool.inspect_idle(None).await.unwrap().backend_pid;
    assert_clean(&pool, pid, "panic").await;

    // A future cancelled mid-query (a client that went away, a timeout).
    let tx = pool.begin(a.tenant_id()).await.unwrap();
    cancel_in_flight(
        tx,
        "SELECT pg_sleep(2), count(*) FROM projects",
        Duration::from_millis(200),
    )
    .await;
    assert_clean(&pool, pid, "cancelled future").await;

    // Cancelled before anything was sent.
    let fut = pool.begin(a.tenant_id());
    drop(fut);
    assert_clean(&pool, pid, "cancelled begin").await;

    let n: i64 = su
        .query_one("SELECT count(*) FROM projects WHERE name = 'panicked'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the panicking transaction was rolled back");
}

per_carrier!(
    concurrent_tenants_on_a_small_pool_see_only_their_own_rows,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn concurrent_tenants_on_a_small_pool_see_only_their_own_rows(carrier: ContextCarrier) {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let tenants = tenants(&su, 24).await;
    let pool = app_pool(&db, 3, carrier).await;
    concurrent_isolation(&su, &pool, &tenants, 8).await;
}
