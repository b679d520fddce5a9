//! Router planning: a query with `tenant_id = $1` goes to one shard; RLS alone fans out
//! (latency, not isolation: the fanned-out query still returns only the tenant's rows).

use crate::support::*;

#[tokio::test]
async fn a_tenant_filtered_query_is_router_planned_to_one_task() {
    let Some(c) = citus("a_tenant_filtered_query_is_router_planned_to_one_task") else {
        return;
    };
    let su = c.superuser().await;
    let a = tenant(&su).await;
    let _b = tenant(&su).await;
    let mut app = c.as_role("tenantguard_app").await;
    let tx = app.transaction().await.expect("begin");
    tx.batch_execute(&format!("SET LOCAL app.tenant_id = '{}'", a.id))
        .await
        .expect("set local");
    let explain = |sql: &'static str| {
        let tx = &tx;
        async move {
            let rows = if sql.contains("$1") {
                tx.query(sql, &[&a.id]).await
            } else {
                tx.query(sql, &[]).await
            };
            rows.unwrap_or_else(|e| panic!("{sql}: {}", tenantguard::error_chain(&e)))
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<String>>()
        }
    };
    let routed = explain(
        "EXPLAIN SELECT id, name FROM projects WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT 50",
    )
    .await;
    assert_eq!(task_count(&routed), Some(1), "{routed:#?}");
    let join = explain(
        "EXPLAIN SELECT t.id FROM tasks t JOIN projects p ON p.tenant_id = t.tenant_id AND p.id = t.project_id
         WHERE t.tenant_id = $1",
    )
    .await;
    assert_eq!(task_count(&join), Some(1), "{join:#?}");
    let fanned =
        explain("EXPLAIN SELECT id, name FROM projects ORDER BY created_at DESC LIMIT 50").await;
    assert_eq!(task_count(&fanned), Some(SHARD_COUNT), "{fanned:#?}");
    // The fanned-out query is still confined by RLS on every shard.
    let rows = tx
        .query("SELECT DISTINCT tenant_id FROM projects", &[])
        .await
        .expect("fan-out read");
    let seen: Vec<uuid::Uuid> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(seen, vec![a.id]);
    tx.commit().await.expect("commit");
}
