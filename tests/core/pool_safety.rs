//! A pool connected as a superuser, a BYPASSRLS role, a table owner, or a member of one
//! refuses to start; the admin pool refuses a superuser, a role without BYPASSRLS and a
//! role that can write.

use tenantguard::testing::{is_external, server_version_num};
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

/// PostgreSQL 16 split a membership grant into INHERIT, SET and ADMIN. Each of them is a way
/// to a BYPASSRLS or owner role's power (SET: become it; INHERIT: its owner rights; ADMIN:
/// grant oneself SET), so each is refused; a grant with none of them confers nothing and is
/// accepted. PostgreSQL 15: every membership allows SET ROLE, and CREATEROLE lets a role
/// grant itself any non-superuser role.
#[tokio::test]
async fn app_pool_reads_membership_options_of_the_server_version() {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let byp = unique_name("byp_opts");
    su.batch_execute(&format!("CREATE ROLE {byp} NOLOGIN BYPASSRLS"))
        .await
        .unwrap();
    let login = |name: &str| {
        let name = name.to_string();
        let su = &su;
        async move {
            su.batch_execute(&format!("CREATE ROLE {name} LOGIN"))
                .await
                .unwrap();
            name
        }
    };
    if server_version_num() < 160000 {
        // PostgreSQL 15: CREATEROLE reaches every non-superuser role.
        let cr = login(&unique_name("createrole")).await;
        su.batch_execute(&format!("ALTER ROLE {cr} CREATEROLE"))
            .await
            .unwrap();
        let e = app_pool_error(&db, &cr).await;
        assert!(e.contains("CREATEROLE"), "{e}");
        if !is_external() {
            // The reason is real: it grants itself the BYPASSRLS role and becomes it.
            let c = db.connect_as(&cr).await;
            c.batch_execute(&format!("GRANT {byp} TO {cr}; SET ROLE {byp}"))
                .await
                .expect("CREATEROLE grants itself a BYPASSRLS role on PostgreSQL 15");
        }
        return;
    }

    let set_only = login(&unique_name("set_only")).await;
    let inherit_only = login(&unique_name("inherit_only")).await;
    let admin_only = login(&unique_name("admin_only")).await;
    let nothing = login(&unique_name("no_options")).await;
    let owner_inherit = login(&unique_name("owner_inherit")).await;
    let owner_set = login(&unique_name("owner_set")).await;
    let chain = login(&unique_name("chain")).await;
    let createrole = login(&unique_name("createrole16")).await;
    let mid = unique_name("mid");
    let byp_view = unique_name("byp_view");
    su.batch_execute(&format!(
        "GRANT {byp} TO {set_only} WITH INHERIT FALSE, SET TRUE;
         GRANT {byp} TO {inherit_only} WITH INHERIT TRUE, SET FALSE;
         GRANT {byp} TO {admin_only} WITH INHERIT FALSE, SET FALSE, ADMIN TRUE;
         GRANT {byp} TO {nothing} WITH INHERIT FALSE, SET FALSE;
         GRANT tenantguard_owner TO {owner_inherit} WITH INHERIT TRUE, SET FALSE;
         GRANT tenantguard_owner TO {owner_set} WITH INHERIT FALSE, SET TRUE;
         CREATE ROLE {mid} NOLOGIN;
         GRANT {mid} TO {chain} WITH INHERIT FALSE, SET TRUE;
         GRANT tenantguard_owner TO {mid} WITH INHERIT TRUE, SET FALSE;
         ALTER ROLE {createrole} CREATEROLE;
         GRANT SELECT ON projects TO {byp};
         GRANT CREATE ON SCHEMA public TO {byp};
         CREATE VIEW {byp_view} AS SELECT 1 AS x;
         ALTER VIEW {byp_view} OWNER TO {byp};"
    ))
    .await
    .unwrap();

    let e = app_pool_error(&db, &set_only).await;
    assert!(
        e.contains(&format!("can become BYPASSRLS role {byp}")),
        "{e}"
    );
    for r in [&inherit_only, &admin_only] {
        let e = app_pool_error(&db, r).await;
        assert!(
            e.contains(&format!(
                "reaches BYPASSRLS role {byp} through INHERIT or ADMIN"
            )),
            "{r}: {e}"
        );
    }
    for r in [&owner_inherit, &owner_set, &chain] {
        let e = app_pool_error(&db, r).await;
        assert!(
            e.contains("owns tenant table") && e.contains("tenantguard_owner"),
            "{r}: {e}"
        );
    }
    // Neither INHERIT, SET nor ADMIN: nothing conferred, accepted. CREATEROLE on 16+ only
    // administers the roles it creates.
    for r in [&nothing, &createrole] {
        TenantPool::connect(db.config_as(r), PoolOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{r} reaches nothing privileged: {e}"));
    }

    if is_external() {
        return;
    }
    // The refusals and the acceptance match what PostgreSQL lets each role do.
    let tenant_rows = "SELECT count(*) FROM projects";
    let c = db.connect_as(&nothing).await;
    let err = c
        .batch_execute(&format!("SET ROLE {byp}"))
        .await
        .expect_err("no SET option");
    assert_eq!(sqlstate(&err), "42501");
    let err = c
        .batch_execute(&format!("GRANT {byp} TO {nothing} WITH SET TRUE"))
        .await
        .expect_err("no ADMIN option");
    assert_eq!(sqlstate(&err), "42501");
    let err = c
        .batch_execute(&format!(
            "CREATE OR REPLACE VIEW {byp_view} AS {tenant_rows}"
        ))
        .await
        .expect_err("no INHERIT option: not the view's owner");
    assert_eq!(sqlstate(&err), "42501");
    let c = db.connect_as(&createrole).await;
    let err = c
        .batch_execute(&format!("GRANT {byp} TO {createrole}"))
        .await
        .expect_err("CREATEROLE on 16+ cannot grant itself roles it did not create");
    assert_eq!(sqlstate(&err), "42501");
    // SET: becomes the BYPASSRLS role.
    db.connect_as(&set_only)
        .await
        .batch_execute(&format!("SET ROLE {byp}"))
        .await
        .expect("SET option");
    // ADMIN: grants itself SET, then becomes it.
    db.connect_as(&admin_only)
        .await
        .batch_execute(&format!(
            "GRANT {byp} TO {admin_only} WITH SET TRUE; SET ROLE {byp}"
        ))
        .await
        .expect("ADMIN option");
    // INHERIT: cannot SET ROLE, but owns what the BYPASSRLS role owns, so it rewrites the
    // role's view to read tenant rows with the view owner's BYPASSRLS.
    let c = db.connect_as(&inherit_only).await;
    let err = c
        .batch_execute(&format!("SET ROLE {byp}"))
        .await
        .expect_err("no SET option");
    assert_eq!(sqlstate(&err), "42501");
    c.batch_execute(&format!(
        "CREATE OR REPLACE VIEW {byp_view} AS SELECT count(*)::int AS x FROM projects"
    ))
    .await
    .expect("INHERIT gives the owner's rights");
    graph(&su, "a").await;
    graph(&su, "b").await;
    let direct: i64 = c.query_one(tenant_rows, &[]).await.unwrap().get(0);
    assert_eq!(direct, 0, "RLS hides every row from the role itself");
    let through_view: i32 = c
        .query_one(&format!("SELECT x FROM {byp_view}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        through_view, 2,
        "the BYPASSRLS owner's view reads both tenants"
    );
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

/// "Tenant table" is the isolation contract's definition (`isolation::tables`): besides a
/// table with the tenant column, a table that reaches one through a foreign key holds
/// tenant data too, so a role that owns one (it can switch its row-level security off)
/// must not back the app pool, even when the table has no tenant column and no RLS yet.
#[tokio::test]
async fn app_pool_refuses_the_owner_of_a_table_reached_by_foreign_key() {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let own = unique_name("own_child");
    let child = unique_name("notes_of");
    su.batch_execute(&format!(
        "CREATE ROLE {own} LOGIN;
         CREATE TABLE public.{child} (id uuid PRIMARY KEY, owner_tenant uuid REFERENCES tenants (id));
         ALTER TABLE public.{child} OWNER TO {own};"
    ))
    .await
    .unwrap();
    let e = app_pool_error(&db, &own).await;
    assert!(
        e.contains(&format!("owns tenant table public.{child}")),
        "{e}"
    );
}
