//! The tenant context dies with its transaction on Citus, also on the coordinator's cached
//! worker connections: after COMMIT, ROLLBACK and an error, the same app session sees
//! nothing, and the worker backends that served the tenant's transaction are the ones that
//! then serve the context-less one.

use crate::support::*;

/// The pids of the worker backends that serve coordinator session `gpid`, per worker.
async fn worker_backends(c: &Citus, gpid: i64) -> Vec<Vec<i32>> {
    let mut out = Vec::new();
    for i in 0..c.workers.len() {
        let w = c.worker(i).await;
        let rows = w
            .query(
                "SELECT pid FROM pg_stat_activity
                 WHERE application_name = 'citus_internal gpid=' || $1::bigint::text ORDER BY pid",
                &[&gpid],
            )
            .await
            .expect("worker backends");
        out.push(rows.iter().map(|r| r.get(0)).collect());
    }
    out
}

#[tokio::test]
async fn context_is_gone_after_commit_rollback_and_error_on_reused_worker_connections() {
    let Some(c) =
        citus("context_is_gone_after_commit_rollback_and_error_on_reused_worker_connections")
    else {
        return;
    };
    let su = c.superuser().await;
    let a = tenant(&su).await;
    let at = a.id.to_string();
    let app = c.as_role("tenantguard_app").await;
    let gpid: i64 = app
        .query_one("SELECT citus_backend_gpid()", &[])
        .await
        .expect("gpid")
        .get(0);
    // Every table, so that every shard group's placement (both workers) is touched.
    let count_all = "SELECT (SELECT count(*) FROM projects) + (SELECT count(*) FROM tasks)
                          + (SELECT count(*) FROM team_members) + (SELECT count(*) FROM invoices)";
    let with = run(&app, &in_tenant(&at, count_all)).await;
    assert_eq!(
        scalar(&with),
        "4",
        "control: the tenant's own rows: {with:?}"
    );
    let served = worker_backends(c, gpid).await;
    assert!(
        served.iter().any(|w| !w.is_empty()),
        "no worker connection for this session: {served:?}"
    );

    let nothing = |o: &Outcome| o.as_ref().map(|_| scalar(o) == "0").unwrap_or(false);
    let checks = [
        ("after COMMIT", in_tenant(&at, "SELECT 1")),
        ("after ROLLBACK", format!("BEGIN; SET LOCAL app.tenant_id = '{at}'; SELECT 1; ROLLBACK")),
        ("after an error", in_tenant(&at, "SELECT 1/0")),
        ("after an error on a worker", in_tenant(&at, "SELECT count(*) / 0 FROM projects")),
        (
            "after ROLLBACK TO SAVEPOINT",
            format!(
                "BEGIN; SAVEPOINT s; SET LOCAL app.tenant_id = '{at}'; SELECT count(*) FROM projects; \
                 ROLLBACK TO SAVEPOINT s; COMMIT"
            ),
        ),
    ];
    for (label, setup) in checks {
        let _ = run(&app, &setup).await;
        for (how, sql) in [
            (
                "in a transaction block",
                format!("BEGIN; {count_all}; COMMIT"),
            ),
            ("without BEGIN", count_all.to_string()),
        ] {
            let o = run(&app, &sql).await;
            assert!(nothing(&o), "{label}, {how}: {o:?}");
        }
        let s = run(&app, "SELECT current_setting('app.tenant_id', true)").await;
        assert!(
            matches!(&s, Ok((rows, _)) if rows[0][0].as_deref().unwrap_or("").is_empty()),
            "{label}: the coordinator still has a tenant: {s:?}"
        );
    }
    // Inside a savepoint the context was rolled back with it, and the same transaction saw
    // the tenant only until then.
    let sp = run(
        &app,
        &format!(
            "BEGIN; SAVEPOINT s; SET LOCAL app.tenant_id = '{at}'; ROLLBACK TO SAVEPOINT s; \
             SELECT count(*) FROM projects; COMMIT"
        ),
    )
    .await;
    assert!(
        nothing(&sp),
        "after ROLLBACK TO SAVEPOINT in the same transaction: {sp:?}"
    );

    let later = worker_backends(c, gpid).await;
    for (w, (before, after)) in served.iter().zip(&later).enumerate() {
        for pid in before {
            assert!(
                after.contains(pid),
                "worker {w}: backend {pid} that served the tenant is gone ({after:?}), so the \
                 later transactions may not have reused it"
            );
        }
    }
}
