//! Catalog semantics that changed between PostgreSQL 15 and 18, as `migrate` sees them:
//! memberships that reach the owner or admin role (granted by anyone, directly or through
//! another role; PostgreSQL 16 records the grantor and a superuser's plain REVOKE leaves
//! others' grants in place), and PostgreSQL 17's MAINTAIN privilege in the exact-grant check.

use tenantguard::policy::Roles;
use tenantguard::schema;
use tenantguard::testing::server_version_num;

use crate::support::*;

/// A reference policy with roles of this test's own (roles are cluster-wide and other tests
/// run in parallel with the default ones).
fn own_policy() -> tenantguard::policy::PolicySet {
    schema::reference_policy(
        Roles {
            owner: Some(unique_name("v_owner")),
            app: unique_name("v_app"),
            admin: Some(unique_name("v_admin")),
        },
        "app.tenant_id",
    )
}

async fn memberships(su: &tokio_postgres::Client, app: &str) -> Vec<String> {
    su.query(
        "SELECT m.roleid::regrole::text FROM pg_auth_members m
         WHERE m.member = $1::text::regrole ORDER BY 1",
        &[&app],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn migrate_revokes_every_membership_that_reaches_the_owner_or_admin() {
    let db = TestDb::empty().await;
    let mut su = db.superuser().await;
    let policy = own_policy();
    schema::migrate(&mut su, &policy).await.unwrap();
    let app = policy.roles.app.clone();
    let owner = policy.roles.owner.clone().unwrap();
    let admin = policy.roles.admin.clone().unwrap();
    let via = unique_name("v_via");
    let delegate = unique_name("v_delegate");
    // Through an intermediate role, and (on 16+ a separate grant record) by a CREATEROLE
    // role that administers the owner role, as a managed service's admin user would.
    su.batch_execute(&format!(
        "CREATE ROLE {via} NOLOGIN;
         GRANT {admin} TO {via};
         GRANT {via} TO {app};
         CREATE ROLE {delegate} LOGIN CREATEROLE;
         GRANT {owner} TO {delegate} WITH ADMIN OPTION;"
    ))
    .await
    .unwrap();
    db.connect_as(&delegate)
        .await
        .batch_execute(&format!("GRANT {owner} TO {app}"))
        .await
        .unwrap();
    let diffs = schema::check(&mut su, &policy).await.unwrap().join("\n");
    assert!(
        diffs.contains(&format!("is a member of {owner}")),
        "{diffs}"
    );
    assert!(
        diffs.contains(&format!(
            "is a member of {via}, which is a member of {admin}"
        )),
        "{diffs}"
    );
    schema::migrate(&mut su, &policy).await.unwrap();
    assert_eq!(memberships(&su, &app).await, Vec::<String>::new());
    let after = schema::check(&mut su, &policy).await.unwrap();
    assert!(after.is_empty(), "{after:?}");
}

#[tokio::test]
async fn maintain_on_postgresql_17_is_an_exact_grant_like_any_other() {
    if server_version_num() < 170000 {
        return; // MAINTAIN does not exist before PostgreSQL 17.
    }
    let db = TestDb::new().await;
    let mut su = db.superuser().await;
    let policy = tenantguard::testing::policy();
    // The owner's implicit MAINTAIN (acldefault on 17) is not drift.
    let clean = schema::check(&mut su, &policy).await.unwrap();
    assert!(clean.is_empty(), "{clean:?}");
    su.batch_execute("GRANT MAINTAIN ON projects TO tenantguard_app")
        .await
        .unwrap();
    let diffs = schema::check(&mut su, &policy).await.unwrap().join("\n");
    assert!(
        diffs.contains("table public.projects: tenantguard_app has") && diffs.contains("MAINTAIN"),
        "{diffs}"
    );
    schema::migrate(&mut su, &policy).await.unwrap();
    let after = schema::check(&mut su, &policy).await.unwrap();
    assert!(after.is_empty(), "{after:?}");
    let maintain: bool = su
        .query_one(
            "SELECT has_table_privilege('tenantguard_app', 'projects', 'MAINTAIN')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!maintain);
}

/// The audit must not miss a BYPASSRLS role the app reaches through a PostgreSQL 16 grant
/// that carries only SET, or only INHERIT (its owner rights over that role's views and
/// definer functions are a way to its BYPASSRLS); on 15 any grant is SET.
#[tokio::test]
async fn audit_sees_bypassrls_through_set_only_and_inherit_only_grants() {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let byp = unique_name("v_byp");
    su.batch_execute(&format!("CREATE ROLE {byp} NOLOGIN BYPASSRLS"))
        .await
        .unwrap();
    let grants: &[&str] = if server_version_num() >= 160000 {
        &[
            "WITH INHERIT FALSE, SET TRUE",
            "WITH INHERIT TRUE, SET FALSE",
        ]
    } else {
        &[""]
    };
    for options in grants {
        let app = unique_name("v_audited");
        su.batch_execute(&format!(
            "CREATE ROLE {app} LOGIN; GRANT {byp} TO {app} {options};
             GRANT SELECT ON projects TO {app};"
        ))
        .await
        .unwrap();
        let mut client = db.superuser().await;
        let findings = tenantguard::audit::audit(
            &mut client,
            &tenantguard::audit::AuditConfig {
                app_role: app.clone(),
                ..tenantguard::audit::AuditConfig::default()
            },
        )
        .await
        .unwrap();
        assert!(
            findings
                .iter()
                .any(|f| f.rule == "TG031" && f.object.contains(&byp)),
            "grant {options:?}: no TG031 for {byp} in {:?}",
            findings
                .iter()
                .map(|f| format!("{} {}", f.rule, f.object))
                .collect::<Vec<_>>()
        );
    }
}
