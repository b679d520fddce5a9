//! `PoolError` says what happened: an outage only when no connection could be had or the
//! one in use was lost; a statement the server refused with its SQLSTATE and fields; a
//! row-count mismatch; a programming error on this side. Only outages are
//! `is_unavailable` (the API's 503); the rest are 4xx by SQLSTATE or a logged 500.

use std::time::Duration;

use tenantguard::pool::ExpectedRows;
use tenantguard::{PoolError, PoolOptions};

use crate::support::*;

per_carrier!(row_counts_are_typed_errors_not_outages);
async fn row_counts_are_typed_errors_not_outages(carrier: ContextCarrier) {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let a = graph(&su, "a").await;
    let pool = app_pool(&db, 1, carrier).await;
    for read_only in [true, false] {
        let mut tx = if read_only {
            pool.begin_read_only(a.tenant_id()).await.unwrap()
        } else {
            pool.begin(a.tenant_id()).await.unwrap()
        };
        // Two rows where at most one is expected: an error, as in tokio-postgres.
        let e = tx
            .query_opt("SELECT g FROM generate_series(1, 2) g", &[])
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                PoolError::RowCount {
                    expected: ExpectedRows::AtMostOne,
                    got: 2,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(!e.is_unavailable() && e.code().is_none(), "{e}");
        // None where exactly one is expected.
        let e = tx
            .query_one("SELECT id FROM projects WHERE false", &[])
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                PoolError::RowCount {
                    expected: ExpectedRows::One,
                    got: 0,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(!e.is_unavailable());
        // Zero and one rows are fine.
        assert!(tx
            .query_opt("SELECT id FROM projects WHERE false", &[])
            .await
            .unwrap()
            .is_none());
        assert!(tx
            .query_opt("SELECT id FROM projects", &[])
            .await
            .unwrap()
            .is_some());
        tx.commit().await.unwrap();
    }
}

per_carrier!(server_and_programming_errors_are_not_outages);
async fn server_and_programming_errors_are_not_outages(carrier: ContextCarrier) {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let a = graph(&su, "a").await;
    let pool = app_pool(&db, 1, carrier).await;
    let mut tx = pool.begin_read_only(a.tenant_id()).await.unwrap();
    // Refused by the server: its fields are there.
    let e = tx.query("SELECT 1/0", &[]).await.unwrap_err();
    assert!(
        matches!(e, PoolError::Db { .. }) && !e.is_unavailable(),
        "{e:?}"
    );
    assert_eq!(e.db_error().map(|d| d.code().code()), Some("22012"));
    // A parameter of the wrong type and a wrong parameter count: bugs here, not outages.
    let e = tx
        .query("SELECT id FROM projects WHERE id = $1", &[&1i32])
        .await
        .unwrap_err();
    assert!(matches!(e, PoolError::Internal { .. }), "{e:?}");
    assert!(!e.is_unavailable() && e.db_error().is_none());
    let e = tx.query("SELECT $1::int", &[]).await.unwrap_err();
    assert!(
        matches!(e, PoolError::Internal { .. }) && !e.is_unavailable(),
        "{e:?}"
    );
    tx.commit().await.unwrap();
}

per_carrier!(a_pool_timeout_and_a_lost_connection_are_outages);
async fn a_pool_timeout_and_a_lost_connection_are_outages(carrier: ContextCarrier) {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let a = graph(&su, "a").await;
    let pool = pool_with(
        &db,
        PoolOptions {
            max_size: 1,
            wait_timeout: Duration::from_millis(200),
            ..PoolOptions::default()
        },
        carrier,
    )
    .await;
    // The only connection is held by an open transaction: the next one times out.
    let mut holder = pool.begin(a.tenant_id()).await.unwrap();
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let mut waiter = pool.begin_read_only(a.tenant_id()).await.unwrap();
    let e = waiter.query("SELECT 1", &[]).await.unwrap_err();
    assert!(
        matches!(e, PoolError::Unavailable { .. }) && e.is_unavailable(),
        "{e:?}"
    );
    assert!(
        std::error::Error::source(&e).is_some(),
        "the typed source is kept"
    );
    // The server ends the held connection: the next statement on it is an outage.
    su.execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let mut lost = None;
    for _ in 0..50 {
        match holder.query("SELECT 1", &[]).await {
            Err(e) if e.is_unavailable() => {
                lost = Some(e);
                break;
            }
            // The termination notice itself may come back first, as a server error.
            Err(e) if e.code().map(|c| c.code()) == Some("57P01") => {}
            other => panic!("after pg_terminate_backend: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lost = lost.expect("the lost connection reads as an outage");
    assert!(matches!(lost, PoolError::Unavailable { .. }), "{lost:?}");
    drop(holder);
    drop(waiter);
}
