//! A pool connected as a superuser, a BYPASSRLS role, a table owner, or a member of one
//! refuses to start; the admin pool refuses a superuser, a role without BYPASSRLS and a
//! role that can write.

use tenantguard::{AdminPool, PoolError, PoolOptions, TenantPool};

use crate::support::*;

async fn app_pool_error(db: &TestDb, role: &str) -> String {
    match TenantPool::connect(db.config_as(role), PoolOptions::default()).await {
        Ok(_) => panic!("pool as {role} must refuse to start"),
        Err(e @ PoolError::UnsafeRole { .. }) => e.to_string(),
        Err(e) => panic!("expected UnsafeRole for {role}, got {e}"),
    }
}

#[tokio::test]
async fn app_pool_refuses_privileged_roles() {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let sup = unique_name("su");
    let byp = unique_name("byp");
    let own = unique_name("own");
    let via_owner = unique_name("via_owner");
    let via_byp = unique_name("via_byp");
    let byp_group = unique_name("byp_group");
    su.batch_execute(&format!(
        "CREATE ROLE {sup} LOGIN SUPERUSER;
         CREATE ROLE {byp} LOGIN BYPASSRLS;
         CREATE ROLE {own} LOGIN;
         ALTER TABLE projects OWNER TO {own};
         CREATE ROLE {via_owner} LOGIN IN ROLE tenantguard_owner;
         CREATE ROLE {byp_group} NOLOGIN BYPASSRLS;
         CREATE ROLE {via_byp} LOGIN IN ROLE {byp_group};"
    ))
    .await
    .unwrap();
    let e = app_pool_error(&db, &sup).await;
    assert!(e.contains("SUPERUSER"), "{e}");
    let e = app_pool_error(&db, &byp).await;
    assert!(e.contains("BYPASSRLS"), "{e}");
    let e = app_pool_error(&db, &own).await;
    assert!(e.contains("owns tenant table public.projects"), "{e}");
    let e = app_pool_error(&db, &via_owner).await;
    assert!(
        e.contains("owns tenant table") && e.contains("tenantguard_owner"),
        "{e}"
    );
    let e = app_pool_error(&db, &via_byp).await;
    assert!(e.contains(&format!("BYPASSRLS role {byp_group}")), "{e}");

    // The reference app role is accepted.
    TenantPool::connect(db.config_as("tenantguard_app"), PoolOptions::default())
        .await
        .expect("the app role is safe");
}

#[tokio::test]
async fn admin_pool_refuses_unsafe_roles() {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let sup = unique_name("adm_su");
    let plain = unique_name("adm_plain");
    let writer = unique_name("adm_writer");
    su.batch_execute(&format!(
        "CREATE ROLE {sup} LOGIN SUPERUSER;
         CREATE ROLE {plain} LOGIN;
         CREATE ROLE {writer} LOGIN BYPASSRLS;
         GRANT SELECT, INSERT ON projects TO {writer};"
    ))
    .await
    .unwrap();
    for (role, needle) in [
        (&sup, "SUPERUSER"),
        (&plain, "lacks BYPASSRLS"),
        (&writer, "can write table public.projects"),
    ] {
        match AdminPool::connect(db.config_as(role), PoolOptions::default()).await {
            Err(e @ PoolError::UnsafeRole { .. }) => {
                assert!(e.to_string().contains(needle), "{role}: {e}")
            }
            other => panic!("{role}: expected refusal, got {other:?}"),
        }
    }
    // The reference admin role is accepted and reads across tenants.
    let a = graph(&su, "a").await;
    let b = graph(&su, "b").await;
    let admin = db.admin_pool().await;
    let client = admin.get().await.unwrap();
    let n: i64 = client
        .query_one(
            "SELECT count(DISTINCT tenant_id) FROM projects WHERE tenant_id = ANY($1)",
            &[&vec![a.tenant, b.tenant]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    let err = client
        .execute("DELETE FROM projects", &[])
        .await
        .expect_err("admin is read-only");
    assert_eq!(sqlstate(&err), "42501");
}
