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
