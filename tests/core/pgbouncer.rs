//! Behind a transaction-mode pooler (pgbouncer), server connections are shared by many
//! clients between transactions. A session-level tenant setting leaks to whoever gets the
//! server connection next (shown here as a control: this is the seed's flaw); the
//! transaction-local context of `TenantPool` does not, with either context carrier
//! (`set_config` or `SET LOCAL`) and the statement cache off as pgbouncer before 1.21
//! requires.

use tenantguard::testing::Pgbouncer;
use tenantguard::{PoolOptions, TenantPool};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::support::*;

async fn raw(b: &Pgbouncer, user: &str) -> Client {
    let (client, conn) = b.config(user).connect(NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// Runs one simple-protocol statement (no prepared statements: pgbouncer 1.18 cannot
/// route them) and returns the first column of the first row.
async fn scalar(c: &Client, sql: &str) -> Option<String> {
    c.simple_query(sql)
        .await
        .unwrap()
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
            _ => None,
        })
        .flatten()
}

#[tokio::test]
async fn session_level_context_leaks_behind_pgbouncer_transaction_local_does_not() {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let a = graph(&su, "a").await;
    let Some(b) = Pgbouncer::start(&db, 1) else {
        return;
    };
    // One server connection, two clients: every statement of either runs on it.
    let alice = raw(&b, "tenantguard_app").await;
    let mallory = raw(&b, "tenantguard_app").await;

    // The seed's way: a session-level SET. It outlives the statement on the shared
    // server connection, so the *other* client now reads tenant A's rows.
    scalar(
        &alice,
        &format!("SELECT set_config('app.tenant_id', '{}', false)", a.tenant),
    )
    .await;
    let leaked = scalar(&mallory, "SELECT count(*) FROM projects").await;
    assert_eq!(
        leaked.as_deref(),
        Some("1"),
        "control: session SET leaks through the pooler"
    );
    scalar(&alice, "RESET app.tenant_id").await;
    assert_eq!(
        scalar(&mallory, "SELECT count(*) FROM projects")
            .await
            .as_deref(),
        Some("0")
    );

    // tenantguard's way: transaction-local, with either carrier. Inside the transaction A
    // sees its row; the next client on the same server connection sees nothing.
    for prelude in [
        format!("SELECT set_config('app.tenant_id', '{}', true)", a.tenant),
        format!("SET LOCAL app.tenant_id = '{}'", a.tenant),
    ] {
        let inside = alice
            .simple_query(&format!(
                "BEGIN; {prelude}; SELECT count(*) FROM projects; COMMIT"
            ))
            .await
            .unwrap();
        let counts: Vec<String> = inside
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .collect();
        assert_eq!(counts.last().map(String::as_str), Some("1"), "{prelude}");
        assert_eq!(
            scalar(&mallory, "SELECT count(*) FROM projects")
                .await
                .as_deref(),
            Some("0"),
            "transaction-local context did not survive COMMIT: {prelude}"
        );
        let setting = scalar(&mallory, "SELECT current_setting('app.tenant_id', true)").await;
        assert!(setting.unwrap_or_default().is_empty(), "{prelude}");
    }
}

per_carrier!(
    tenant_pool_behind_pgbouncer_keeps_tenants_apart,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn tenant_pool_behind_pgbouncer_keeps_tenants_apart(carrier: ContextCarrier) {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let tenants = tenants(&su, 16).await;
    // Two server connections shared by eight pooled clients.
    let Some(b) = Pgbouncer::start(&db, 2) else {
        return;
    };
    let pool = TenantPool::connect(
        b.config("tenantguard_app"),
        PoolOptions {
            max_size: 8,
            statement_cache: false,
            context_carrier: carrier,
            ..PoolOptions::default()
        },
    )
    .await
    .expect("the role check works through pgbouncer");
    concurrent_isolation(&su, &pool, &tenants, 6).await;
}
