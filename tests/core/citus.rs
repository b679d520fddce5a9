//! The pool's start-up check on a real Citus (coordinator only: enough for the check,
//! which reads `pg_extension` and the role's `citus.propagate_set_commands`; propagation to
//! workers is the Citus suite's job). Needs Citus installed for the server binaries in
//! use: runs only with `TENANTGUARD_TEST_CITUS=1`, and says why it skipped otherwise.

use tenantguard::cluster::{Cluster, ClusterOptions, Durability, SUPERUSER};
use tenantguard::pool::ContextCarrier;
use tenantguard::{PoolError, PoolOptions, TenantPool};
use tokio_postgres::NoTls;

#[tokio::test]
async fn on_citus_set_config_is_refused_and_set_local_needs_propagation() {
    if std::env::var("TENANTGUARD_TEST_CITUS").as_deref() != Ok("1") {
        eprintln!("skipped: set TENANTGUARD_TEST_CITUS=1 (with Citus installed) to run");
        return;
    }
    let cluster = Cluster::start(&ClusterOptions {
        durability: Durability::Throwaway,
        settings: vec![("shared_preload_libraries".into(), "citus".into())],
        ..ClusterOptions::default()
    })
    .expect("a server with citus preloaded");
    let (su, conn) = cluster
        .config(SUPERUSER, "postgres")
        .connect(NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    su.batch_execute("CREATE EXTENSION citus; CREATE ROLE tg_app LOGIN NOSUPERUSER NOBYPASSRLS;")
        .await
        .expect("citus and an app role");
    let connect = |carrier| {
        TenantPool::connect(
            cluster.config("tg_app", "postgres"),
            PoolOptions {
                max_size: 1,
                context_carrier: carrier,
                ..PoolOptions::default()
            },
        )
    };
    let refused = |r: Result<TenantPool, PoolError>| match r {
        Err(PoolError::Unsupported { reason, .. }) => reason,
        Err(e) => panic!("not the carrier refusal: {e}"),
        Ok(_) => panic!("the pool started"),
    };
    let why = refused(connect(ContextCarrier::SetConfigLocal).await);
    assert!(why.contains("citus") && why.contains("set-local"), "{why}");
    let why = refused(connect(ContextCarrier::SetLocal).await);
    assert!(why.contains("citus.propagate_set_commands"), "{why}");

    su.batch_execute("ALTER ROLE tg_app SET citus.propagate_set_commands = 'local'")
        .await
        .unwrap();
    let why = refused(connect(ContextCarrier::SetConfigLocal).await);
    assert!(why.contains("set-local"), "set_config stays refused: {why}");
    let pool = connect(ContextCarrier::SetLocal)
        .await
        .expect("SET LOCAL with propagation starts");
    let tenant = tenantguard::TenantId::from_uuid(uuid::Uuid::now_v7());
    let mut tx = pool.begin_read_only(tenant).await.unwrap();
    let seen: Option<String> = tx
        .query_one("SELECT current_setting('app.tenant_id', true)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, Some(tenant.to_string()));
    drop(tx);
    let idle = pool.inspect_idle(None).await.unwrap();
    assert!(idle.is_clean(), "{idle:?}");
}

fn citus_node() -> Cluster {
    Cluster::start(&ClusterOptions {
        durability: Durability::Throwaway,
        settings: vec![("shared_preload_libraries".into(), "citus".into())],
        ..ClusterOptions::default()
    })
    .expect("a server with citus preloaded")
}

async fn superuser(c: &Cluster) -> tokio_postgres::Client {
    let (su, conn) = c
        .config(SUPERUSER, "postgres")
        .connect(NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    su
}

/// A coordinator and two workers (each node on its own unix socket, trust auth), one
/// distributed table under RLS with the inline predicate Citus accepts: the SET LOCAL
/// carrier's one-Sync paths see exactly the tenant's rows and write into its shard, while
/// the `set_config` form (the control) sees nothing on the same table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_citus_set_local_reaches_the_workers() {
    if std::env::var("TENANTGUARD_TEST_CITUS").as_deref() != Ok("1") {
        eprintln!("skipped: set TENANTGUARD_TEST_CITUS=1 (with Citus installed) to run");
        return;
    }
    let coordinator = citus_node();
    let workers = [citus_node(), citus_node()];
    for w in &workers {
        superuser(w)
            .await
            .batch_execute("CREATE EXTENSION citus")
            .await
            .unwrap();
    }
    let su = superuser(&coordinator).await;
    su.batch_execute("CREATE EXTENSION citus").await.unwrap();
    let host = |c: &Cluster| c.socket_dir().to_string_lossy().into_owned();
    su.execute(
        "SELECT citus_set_coordinator_host($1, $2)",
        &[&host(&coordinator), &(coordinator.port() as i32)],
    )
    .await
    .unwrap();
    for w in &workers {
        su.execute(
            "SELECT citus_add_node($1, $2)",
            &[&host(w), &(w.port() as i32)],
        )
        .await
        .unwrap();
    }
    let a = uuid::Uuid::now_v7();
    let b = uuid::Uuid::now_v7();
    for sql in [
        "CREATE ROLE tg_app LOGIN NOSUPERUSER NOBYPASSRLS".to_string(),
        "ALTER ROLE tg_app SET citus.propagate_set_commands = 'local'".into(),
        "CREATE TABLE t (tenant_id uuid NOT NULL \
           DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid, \
           id uuid NOT NULL DEFAULT gen_random_uuid(), PRIMARY KEY (tenant_id, id))"
            .into(),
        "SELECT create_distributed_table('t', 'tenant_id', shard_count => 8)".into(),
        format!("INSERT INTO t (tenant_id) SELECT '{a}' FROM generate_series(1, 3)"),
        format!("INSERT INTO t (tenant_id) SELECT '{b}' FROM generate_series(1, 2)"),
        "ALTER TABLE t ENABLE ROW LEVEL SECURITY".into(),
        "ALTER TABLE t FORCE ROW LEVEL SECURITY".into(),
        "CREATE POLICY p ON t TO tg_app \
           USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid) \
           WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)"
            .into(),
        "GRANT SELECT, INSERT ON t TO tg_app".into(),
    ] {
        su.batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    let shards: i64 = su
        .query_one(
            "SELECT count(DISTINCT nodeport) FROM pg_dist_shard JOIN pg_dist_placement USING (shardid) \
             JOIN pg_dist_node USING (groupid) WHERE logicalrelid = 't'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(shards, 2, "the shards are on the two workers");

    // The control: set_config inside BEGIN … COMMIT reaches no worker.
    let (app, conn) = coordinator
        .config("tg_app", "postgres")
        .connect(NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let control = app
        .simple_query(&format!(
            "BEGIN; SELECT set_config('app.tenant_id', '{a}', true); SELECT count(*) FROM t; COMMIT"
        ))
        .await
        .unwrap();
    let counts: Vec<String> = control
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(counts.last().map(String::as_str), Some("0"), "control");

    let pool = TenantPool::connect(
        coordinator.config("tg_app", "postgres"),
        PoolOptions {
            max_size: 2,
            context_carrier: ContextCarrier::SetLocal,
            ..PoolOptions::default()
        },
    )
    .await
    .expect("SET LOCAL with propagation starts");
    for (t, n) in [(a, 3usize), (b, 2)] {
        let mut tx = pool.begin_read_only(t.into()).await.unwrap();
        let rows = tx.query("SELECT tenant_id FROM t", &[]).await.unwrap();
        assert_eq!(rows.len(), n, "{t}: its own rows, from the workers");
        assert!(rows.iter().all(|r| r.get::<_, uuid::Uuid>(0) == t));
        tx.commit().await.unwrap();
    }
    // A single-statement write (one Sync) lands in A's shard; a real transaction too.
    let mut tx = pool.begin(a.into()).await.unwrap();
    tx.query_commit("INSERT INTO t DEFAULT VALUES", &[])
        .await
        .unwrap();
    let mut tx = pool.begin(a.into()).await.unwrap();
    tx.execute("INSERT INTO t DEFAULT VALUES", &[])
        .await
        .unwrap();
    let n: i64 = tx
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 5, "A's three rows and its two writes");
    tx.commit().await.unwrap();
    // An insert for B is refused on the worker; the next statement sees no context.
    let mut tx = pool.begin(a.into()).await.unwrap();
    let e = tx
        .query_commit(&format!("INSERT INTO t (tenant_id) VALUES ('{b}')"), &[])
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{e}");
    drop(tx);
    let after: i64 = app
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(after, 0, "no context outside the transactions");
    let total: i64 = su
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 7);
}
