//! The API with the `SET LOCAL` context carrier (Citus's form) on plain PostgreSQL: the
//! main flows of four tenants at once (every resource, the errors a client causes, keys,
//! JWTs, another tenant's ids absent) with no 500, directly with the statement cache on
//! and off (off: the API-key lookup takes the simple-query path), and behind a real
//! pgbouncer in transaction mode with it off.

use std::time::Duration;

use tenantguard::pool::ContextCarrier;
use tenantguard::testing::{Pgbouncer, TestDb};
use tenantguard::{PoolOptions, TenantPool};

use crate::pgbouncer::main_flows;
use crate::service::{server_on, Server};

async fn flows(s: &Server) {
    let (st, _, b) = s.send("GET", "/readyz", None, None).await;
    assert_eq!(st, 200, "{b}");
    let mut tenants = Vec::new();
    for i in 0..4 {
        tenants.push(s.tenant(&format!("t{i}")).await);
    }
    let runs = (0..4).map(|i| {
        let me = tenants[i].clone();
        let other = tenants[(i + 1) % 4].clone();
        async move { main_flows(s, &me, &other, &format!("t{i}")).await }
    });
    futures::future::join_all(runs).await;
}

async fn set_local_pool(config: tokio_postgres::Config, statement_cache: bool) -> TenantPool {
    TenantPool::connect(
        config,
        PoolOptions {
            max_size: 8,
            wait_timeout: Duration::from_secs(2),
            statement_cache,
            context_carrier: ContextCarrier::SetLocal,
            ..PoolOptions::default()
        },
    )
    .await
    .expect("a SET LOCAL pool starts on plain PostgreSQL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_works_with_set_local_and_either_statement_cache() {
    for statement_cache in [true, false] {
        let db = TestDb::new().await;
        let pool = set_local_pool(db.config_as("tenantguard_app"), statement_cache).await;
        assert_eq!(pool.context_carrier(), ContextCarrier::SetLocal);
        let admin = db.admin_pool().await;
        let s = server_on(pool, admin, |_| {}, Some(db)).await;
        flows(&s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_works_with_set_local_behind_pgbouncer() {
    let db = TestDb::new().await;
    let Some(b) = Pgbouncer::start(&db, 3) else {
        return;
    };
    let pool = set_local_pool(b.config("tenantguard_app"), false).await;
    let admin = db.admin_pool().await;
    let s = server_on(pool, admin, |_| {}, Some(db)).await;
    flows(&s).await;
}
