//! Provisioning: only the admin role may provision, and drift is reported and fixed.

use crate::helpers::*;
use tenantguard::schema;

#[tokio::test]
async fn only_the_admin_role_can_provision_and_drift_is_reported_and_fixed() {
    let app = spawn_app().await;
    let db = app.db();
    // The app role cannot call the provisioning function, nor write tenants.
    let appc = db.connect_as("tenantguard_app").await;
    let err = appc
        .execute(
            "SELECT * FROM tenantguard.provision_tenant(gen_random_uuid(), 'x', 'tgk_abcd', '\\x00', NULL)",
            &[],
        )
        .await
        .unwrap_err();
    assert!(
        tenantguard::error_chain(&err).contains("permission denied"),
        "{err}"
    );
    assert!(appc
        .execute("INSERT INTO tenants (name) VALUES ('x')", &[])
        .await
        .is_err());
    // The admin role still cannot write any table directly.
    let adminc = db.connect_as("tenantguard_admin").await;
    assert!(adminc
        .execute("INSERT INTO tenants (name) VALUES ('x')", &[])
        .await
        .is_err());
    // Drift: a widened grant and a weakened function are reported, then repaired.
    let mut su = db.superuser().await;
    su.batch_execute(
        "GRANT SELECT, UPDATE ON projects TO tenantguard_provisioner;
         GRANT EXECUTE ON FUNCTION tenantguard.provision_tenant(uuid, text, text, bytea, text) TO PUBLIC;
         ALTER FUNCTION tenantguard.provision_tenant(uuid, text, text, bytea, text) RESET search_path;",
    )
    .await
    .unwrap();
    let policy = tenantguard::testing::policy();
    let diffs = schema::check(&mut su, &policy).await.unwrap();
    let text = diffs.join("\n");
    assert!(text.contains("provision"), "{text}");
    assert!(text.contains("EXECUTE granted"), "{text}");
    assert!(text.contains("definition differs"), "{text}");
    assert!(text.contains("table privileges"), "{text}");
    schema::migrate(&mut su, &policy).await.unwrap();
    let after = schema::check(&mut su, &policy).await.unwrap();
    assert!(after.is_empty(), "{after:?}");
    // And provisioning still works after the repair.
    app.tenant("after repair").await;
    app.stop().await;
}
