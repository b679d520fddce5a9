//! The one-Sync read path (`begin_read_only` with the statement cache on): every statement
//! carries the tenant and read-only mode in its own implicit transaction, which ends at the
//! statement's Sync. The row is visible with the tenant and only that tenant's rows are;
//! writes fail; the same backend is clean after every statement, whatever ended it (drop,
//! commit, rollback, an error, a cancelled future); and many tenants share a small pool.

use std::time::Duration;

use tenantguard::{PoolOptions, TenantPool};
use uuid::Uuid;

use crate::support::*;

per_carrier!(reads_see_their_tenant_only_and_each_statement_ends_clean);
async fn reads_see_their_tenant_only_and_each_statement_ends_clean(carrier: ContextCarrier) {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let a = graph(&su, "a").await;
    let b = graph(&su, "b").await;
    let pool = app_pool(&db, 1, carrier).await;
    let pid = pool.inspect_idle(None).await.unwrap().backend_pid;

    // The row is visible, with the tenant and read-only mode in effect inside.
    let mut tx = pool.begin_read_only(a.tenant_id()).await.unwrap();
    let row = tx
        .query_one(
            "SELECT pg_backend_pid(), current_setting('app.tenant_id', true), \
                    current_setting('transaction_read_only')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), pid);
    assert_eq!(row.get::<_, Option<String>>(1), Some(a.tenant.to_string()));
    assert_eq!(row.get::<_, String>(2), "on");
    let row = tx
        .query_opt("SELECT id FROM projects WHERE id = $1", &[&a.project])
        .await
        .unwrap();
    assert_eq!(row.map(|r| r.get::<_, Uuid>(0)), Some(a.project));
    // Another tenant's row by its id: invisible.
    assert!(tx
        .query_opt("SELECT id FROM projects WHERE id = $1", &[&b.project])
        .await
        .unwrap()
        .is_none());
    // Every tenant table: only this tenant's rows.
    for table in TABLES {
        let col = if table == "tenants" {
            "id"
        } else {
            "tenant_id"
        };
        let rows = tx
            .query(&format!("SELECT {col} FROM {table}"), &[])
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{table}: exactly the tenant's one row");
        assert_eq!(rows[0].get::<_, Uuid>(0), a.tenant, "{table}");
    }
    // execute counts the rows too.
    assert_eq!(tx.execute("SELECT * FROM projects", &[]).await.unwrap(), 1);
    // Each statement is its own transaction: its start time differs from the previous one's.
    let t1: chrono::DateTime<chrono::Utc> = tx.query_one("SELECT now()", &[]).await.unwrap().get(0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t2: chrono::DateTime<chrono::Utc> = tx.query_one("SELECT now()", &[]).await.unwrap().get(0);
    assert_ne!(t1, t2, "one implicit transaction per statement");
    drop(tx);
    assert_clean(&pool, pid, "drop").await;

    // Commit and rollback send nothing and leave the connection as clean.
    let mut tx = pool.begin_read_only(b.tenant_id()).await.unwrap();
    assert_eq!(
        tx.query("SELECT * FROM projects", &[]).await.unwrap().len(),
        1
    );
    tx.commit().await.unwrap();
    assert_clean(&pool, pid, "commit").await;
    let mut tx = pool.begin_read_only(b.tenant_id()).await.unwrap();
    assert_eq!(
        tx.query("SELECT * FROM projects", &[]).await.unwrap().len(),
        1
    );
    tx.rollback().await.unwrap();
    assert_clean(&pool, pid, "rollback").await;

    // Dropped before any statement: nothing to undo.
    drop(pool.begin_read_only(a.tenant_id()).await.unwrap());
    assert_clean(&pool, pid, "unused").await;
}

per_carrier!(writes_fail_and_read_only_cannot_be_turned_off);
async fn writes_fail_and_read_only_cannot_be_turned_off(carrier: ContextCarrier) {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let a = graph(&su, "a").await;
    let pool = app_pool(&db, 1, carrier).await;
    let pid = pool.inspect_idle(None).await.unwrap().backend_pid;
    let before = digest(&su, "projects", a.tenant).await;

    let mut tx = pool.begin_read_only(a.tenant_id()).await.unwrap();
    for sql in [
        "INSERT INTO projects (name) VALUES ('ro')".to_string(),
        format!("UPDATE projects SET name = 'x' WHERE id = '{}'", a.project),
        format!("DELETE FROM projects WHERE id = '{}'", a.project),
    ] {
        let e = tx.execute(&sql, &[]).await.unwrap_err();
        assert_eq!(
            e.code().map(|c| c.code()),
            Some("25006"),
            "{sql}: read-only transaction: {e}"
        );
        let e = tx.query(&sql, &[]).await.unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some("25006"), "{sql}: {e}");
    }
    // The statement runs after the prelude took its snapshot: too late to turn it off.
    let off = tx
        .query(
            "SELECT set_config('transaction_read_only', 'off', true)",
            &[],
        )
        .await;
    assert!(off.is_err(), "read-only mode was turned off: {off:?}");
    let e = tx
        .execute(
            "WITH x AS (SELECT set_config('transaction_read_only', 'off', true)) \
             INSERT INTO projects (name) SELECT 'sneaky' FROM x",
            &[],
        )
        .await
        .unwrap_err();
    assert!(e.code().is_some(), "{e}");
    drop(tx);
    assert_clean(&pool, pid, "failed writes").await;
    assert_eq!(digest(&su, "projects", a.tenant).await, before, "unchanged");
}

per_carrier!(an_error_poisons_neither_the_next_statement_nor_the_next_checkout);
async fn an_error_poisons_neither_the_next_statement_nor_the_next_checkout(
    carrier: ContextCarrier,
) {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let a = graph(&su, "a").await;
    let pool = app_pool(&db, 1, carrier).await;
    let pid = pool.inspect_idle(None).await.unwrap().backend_pid;

    let mut tx = pool.begin_read_only(a.tenant_id()).await.unwrap();
    // An error at execution (after the prelude ran in the same implicit transaction).
    let e = tx.query("SELECT 1/0", &[]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("22012"), "{e}");
    // The next statement is a fresh implicit transaction, tenant and all.
    assert_eq!(
        tx.query("SELECT * FROM projects", &[]).await.unwrap().len(),
        1
    );
    // An error at prepare time: nothing transactional was sent.
    assert!(tx
        .query("SELECT no_such_column FROM projects", &[])
        .await
        .is_err());
    // A parameter count mismatch fails before anything is sent.
    assert!(tx.query("SELECT $1::int", &[]).await.is_err());
    // A wrong parameter type fails while encoding, also before anything is sent.
    assert!(tx
        .query("SELECT id FROM projects WHERE id = $1", &[&1i32])
        .await
        .is_err());
    assert_eq!(
        tx.query("SELECT * FROM projects", &[]).await.unwrap().len(),
        1
    );
    // An error in a statement that returned rows before failing.
    assert!(tx
        .query("SELECT 1/(g - 3) FROM generate_series(1, 5) g", &[])
        .await
        .is_err());
    drop(tx);
    assert_clean(&pool, pid, "errors").await;

    // The next checkout works, read-only and read-write.
    let mut tx = pool.begin_read_only(a.tenant_id()).await.unwrap();
    assert_eq!(
        tx.query("SELECT * FROM projects", &[]).await.unwrap().len(),
        1
    );
    tx.commit().await.unwrap();
    let mut tx = pool.begin(a.tenant_id()).await.unwrap();
    tx.execute("INSERT INTO projects (name) VALUES ('after')", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_clean(&pool, pid, "next checkout").await;
}

per_carrier!(
    a_cancelled_read_leaves_the_connection_clean,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn a_cancelled_read_leaves_the_connection_clean(carrier: ContextCarrier) {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let a = graph(&su, "a").await;
    let pool = app_pool(&db, 1, carrier).await;
    let pid = pool.inspect_idle(None).await.unwrap().backend_pid;

    let tx = pool.begin_read_only(a.tenant_id()).await.unwrap();
    cancel_in_flight(
        tx,
        "SELECT pg_sleep(1), count(*) FROM projects",
        Duration::from_millis(200),
    )
    .await;
    // The checkout queues behind the abandoned request and reads after its Sync.
    assert_clean(&pool, pid, "cancelled read").await;

    // Cancelled after a statement had completed, in the middle of the next.
    let mut tx = pool.begin_read_only(a.tenant_id()).await.unwrap();
    assert_eq!(
        tx.query("SELECT * FROM projects", &[]).await.unwrap().len(),
        1
    );
    cancel_in_flight(tx, "SELECT pg_sleep(1)", Duration::from_millis(100)).await;
    assert_clean(&pool, pid, "cancelled second read").await;
}

per_carrier!(
    many_tenants_on_a_small_pool_read_only_their_own_rows,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn many_tenants_on_a_small_pool_read_only_their_own_rows(carrier: ContextCarrier) {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let tenants = tenants(&su, 24).await;
    // Tenant i owns i + 1 projects, so a read of someone else's rows shows in the count.
    for (i, t) in tenants.iter().enumerate() {
        su.execute(
            "INSERT INTO projects (tenant_id, name) \
             SELECT $1, 'p' || g FROM generate_series(1, $2::int) g",
            &[t, &(i as i32 + 1)],
        )
        .await
        .unwrap();
    }
    let pool = app_pool(&db, 3, carrier).await;
    let mut handles = Vec::new();
    for round in 0..8 {
        for (i, &t) in tenants.iter().enumerate() {
            let pool = pool.clone();
            handles.push(tokio::spawn(async move {
                let mut tx = pool.begin_read_only(t.into()).await.unwrap();
                for _ in 0..2 {
                    let rows = tx
                        .query("SELECT tenant_id FROM projects", &[])
                        .await
                        .unwrap();
                    assert_eq!(rows.len(), i + 1, "tenant {i}: its own count");
                    assert!(rows.iter().all(|r| r.get::<_, Uuid>(0) == t));
                    tokio::task::yield_now().await;
                }
                if (i + round) % 3 == 0 {
                    assert!(tx.query("SELECT 1/0", &[]).await.is_err());
                }
                match round % 3 {
                    0 => tx.commit().await.unwrap(),
                    1 => tx.rollback().await.unwrap(),
                    _ => drop(tx),
                }
            }));
        }
    }
    for h in handles {
        h.await.unwrap();
    }
    // Inspect connections concurrently, so more than one of the pool's is looked at.
    let states = futures::future::join_all((0..3).map(|_| {
        let pool = pool.clone();
        async move { pool.inspect_idle(Some("projects")).await.unwrap() }
    }))
    .await;
    for s in states {
        assert!(s.is_clean(), "leaked: {s:?}");
        assert_eq!(s.visible_rows, Some(0), "{s:?}");
    }
}

per_carrier!(without_the_statement_cache_read_only_is_still_one_real_transaction);
async fn without_the_statement_cache_read_only_is_still_one_real_transaction(
    carrier: ContextCarrier,
) {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let a = graph(&su, "a").await;
    let pool = TenantPool::connect(
        db.config_as("tenantguard_app"),
        PoolOptions {
            max_size: 1,
            statement_cache: false,
            context_carrier: carrier,
            ..PoolOptions::default()
        },
    )
    .await
    .unwrap();
    let pid = pool.inspect_idle(None).await.unwrap().backend_pid;

    let mut tx = pool.begin_read_only(a.tenant_id()).await.unwrap();
    let t1: chrono::DateTime<chrono::Utc> = tx.query_one("SELECT now()", &[]).await.unwrap().get(0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t2: chrono::DateTime<chrono::Utc> = tx.query_one("SELECT now()", &[]).await.unwrap().get(0);
    assert_eq!(t1, t2, "BEGIN READ ONLY: one transaction for the TenantTx");
    assert_eq!(
        tx.query("SELECT * FROM projects", &[]).await.unwrap().len(),
        1
    );
    let e = tx
        .execute("INSERT INTO projects (name) VALUES ('ro')", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("25006"), "{e}");
    tx.commit().await.unwrap();
    assert_clean(&pool, pid, "uncached read-only commit").await;
}
