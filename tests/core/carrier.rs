//! The `SET LOCAL` context carrier (Citus's form) on plain PostgreSQL: its statements run
//! inside an explicit transaction block (what Citus needs to propagate the setting), it
//! leaves no prepared statement per tenant on a connection, and both carriers start on a
//! database without Citus. The contract tests (`context`, `read_path`, `write_path`,
//! `pgbouncer`) run once per carrier.

use crate::support::*;

#[tokio::test]
async fn set_local_statements_run_inside_a_transaction_block() {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let a = graph(&su, "a").await;
    for carrier in CARRIERS {
        let pool = app_pool(&db, 1, carrier).await;
        assert_eq!(pool.context_carrier(), carrier);
        // SAVEPOINT is refused outside a transaction block, so it tells the explicit block
        // of SET LOCAL apart from set_config's implicit transaction.
        for read_only in [true, false] {
            let mut tx = if read_only {
                pool.begin_read_only(a.tenant_id()).await.unwrap()
            } else {
                pool.begin(a.tenant_id()).await.unwrap()
            };
            let r = tx.query_commit("SAVEPOINT probe", &[]).await;
            match carrier {
                ContextCarrier::SetLocal => {
                    r.unwrap_or_else(|e| panic!("read_only={read_only}: {e}"));
                }
                _ => {
                    let e = r.expect_err("set_config's one-Sync path has no transaction block");
                    assert_eq!(e.code().map(|c| c.code()), Some("25P01"), "{e}");
                }
            }
        }
        let idle = pool.inspect_idle(Some("projects")).await.unwrap();
        assert!(idle.is_clean(), "{carrier:?}: {idle:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_local_prepares_nothing_per_tenant() {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let tenants = tenants(&su, 30).await;
    let pool = app_pool(&db, 1, ContextCarrier::SetLocal).await;
    let prepared = |pool: tenantguard::TenantPool, t: TenantId| async move {
        let mut tx = pool.begin_read_only(t).await.unwrap();
        let row = tx
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE statement ILIKE 'set local%') \
                 FROM pg_prepared_statements",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, i64>(1))
    };
    let mut first = None;
    for &t in &tenants {
        let t: TenantId = t.into();
        // Every path: a one-Sync read, a one-Sync write, a real transaction.
        let mut tx = pool.begin_read_only(t).await.unwrap();
        assert_eq!(
            tx.query("SELECT id FROM projects", &[])
                .await
                .unwrap()
                .len(),
            0
        );
        let mut tx2 = pool.begin(t).await.unwrap();
        tx2.query_commit("INSERT INTO projects (name) VALUES ('p')", &[])
            .await
            .unwrap();
        let mut tx3 = pool.begin(t).await.unwrap();
        tx3.execute("INSERT INTO projects (name) VALUES ('q')", &[])
            .await
            .unwrap();
        tx3.query_commit("SELECT count(*) FROM projects", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let now = prepared(pool.clone(), t).await;
        assert_eq!(now.1, 0, "no SET LOCAL is ever prepared");
        match first {
            None => first = Some(now),
            Some(f) => assert_eq!(now, f, "prepared statements do not grow with tenants"),
        }
    }
    let each: i64 = su
        .query_one(
            "SELECT count(DISTINCT tenant_id) FILTER (WHERE c = 2) FROM \
             (SELECT tenant_id, count(*) c FROM projects GROUP BY tenant_id) x",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        each as usize,
        tenants.len(),
        "every tenant wrote its two rows"
    );
    let idle = pool.inspect_idle(Some("projects")).await.unwrap();
    assert!(idle.is_clean(), "{idle:?}");
    assert_eq!(idle.visible_rows, Some(0));
}

#[tokio::test]
async fn a_setting_name_is_quoted_not_spliced() {
    // The setting is configuration, not input, but it is still quoted as an identifier:
    // spliced, this name would make the SET two statements (42601, "cannot insert
    // multiple commands into a prepared statement"); quoted, it is one bad name. The
    // failed block is rolled back, so the connection is clean for its next user.
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let a = graph(&su, "a").await;
    let pool = pool_with(
        &db,
        tenantguard::PoolOptions {
            max_size: 1,
            tenant_setting: "app.x = '1'; SELECT 1; --".into(),
            ..tenantguard::PoolOptions::default()
        },
        ContextCarrier::SetLocal,
    )
    .await;
    let pid = pool.inspect_idle(None).await.unwrap().backend_pid;
    for read_only in [true, false] {
        let mut tx = if read_only {
            pool.begin_read_only(a.tenant_id()).await.unwrap()
        } else {
            pool.begin(a.tenant_id()).await.unwrap()
        };
        let e = tx.query("SELECT 1", &[]).await.unwrap_err();
        assert!(e.db_error().is_some() && !e.is_unavailable(), "{e}");
        assert_ne!(e.code().map(|c| c.code()), Some("42601"), "{e}");
        drop(tx);
        assert_clean(&pool, pid, "a refused SET LOCAL").await;
    }
}
