//! A request whose last statement fails after earlier ones (a 422 from a constraint, say)
//! ends its transaction with the pipelined COMMIT; nothing may follow it. Before, the
//! drop queued a ROLLBACK after that COMMIT, which PostgreSQL answered with `WARNING:
//! there is no transaction in progress` on every such request (issue 8, item 12).

use tenantguard::testing::TestDb;
use tenantguard::{PoolError, TenantId};

#[tokio::test]
async fn a_failed_last_statement_finishes_the_transaction_and_nothing_follows_it() {
    let db = TestDb::new().await;
    let pool = db.app_pool(1).await;
    let tenant = TenantId::from_uuid(uuid::Uuid::now_v7());
    let mut tx = pool.begin(tenant).await.unwrap();
    tx.query("SELECT 1", &[]).await.unwrap();
    // Fails at run time, after the transaction was opened by the first statement.
    let err = tx
        .query_commit("SELECT 1 / (SELECT count(*) FROM projects)::int", &[])
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO),
        "{err}"
    );
    // The transaction is over: nothing more can be sent on it (before, it stayed open
    // and its drop sent a ROLLBACK after the COMMIT).
    assert!(
        matches!(tx.query("SELECT 1", &[]).await, Err(PoolError::Finished)),
        "the TenantTx is finished"
    );
    drop(tx);
    // The one pooled connection is back, clean, and outside any transaction.
    let idle = pool.inspect_idle(Some("projects")).await.unwrap();
    assert!(idle.is_clean(), "{idle:?}");
    assert_eq!(idle.visible_rows, Some(0));
    let mut tx = pool.begin(tenant).await.unwrap();
    tx.query("SELECT 1", &[]).await.unwrap();
    tx.commit().await.unwrap();
}
