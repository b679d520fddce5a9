//! `migrate --citus`: idempotent, `--check` clean, every table distributed and colocated,
//! drift reported, provisioning and member deletion work on the shards.

use tenantguard::schema;
use uuid::Uuid;

use crate::support::*;

#[tokio::test]
async fn migrate_citus_again_is_a_noop_and_check_is_clean() {
    let Some(c) = citus("migrate_citus_again_is_a_noop_and_check_is_clean") else {
        return;
    };
    let mut su = c.superuser().await;
    let report = schema::citus::migrate(&mut su, &policy(), "tenantguard_provisioner")
        .await
        .expect("second migrate --citus");
    assert!(
        report.is_noop(),
        "second run changed {:?} / {:?}",
        report.migrations,
        report.changes
    );
    let diffs = schema::citus::check(&mut su, &policy(), "tenantguard_provisioner")
        .await
        .expect("check");
    assert!(diffs.is_empty(), "check --citus found {diffs:#?}");

    // The CLI, both ways: auto-detected and explicit.
    for args in [
        &["migrate", "--check"][..],
        &["migrate", "--citus", "--check"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenantguard"))
            .args(args)
            .arg("--database-url")
            .arg(&c.coordinator_url)
            .output()
            .expect("run tenantguard");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {text}");
        assert!(text.contains("in sync"), "{args:?}: {text}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenantguard"))
        .args(["migrate", "--citus", "--database-url", &c.coordinator_url])
        .output()
        .expect("run tenantguard");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("nothing to do"), "{text}");
}

#[tokio::test]
async fn every_table_is_distributed_by_tenant_and_colocated_with_inline_policies() {
    let Some(c) = citus("every_table_is_distributed_by_tenant_and_colocated_with_inline_policies")
    else {
        return;
    };
    let su = c.superuser().await;
    let rows = su
        .query(
            "SELECT logicalrelid::regclass::text, partmethod::text,
                    column_to_column_name(logicalrelid, partkey), colocationid
             FROM pg_dist_partition ORDER BY 1",
            &[],
        )
        .await
        .expect("pg_dist_partition");
    let tables: Vec<(String, String, String, i32)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(tables.len(), 11, "{tables:?}");
    let group = tables.iter().find(|t| t.0 == "tenants").expect("tenants").3;
    for (name, method, column, colocation) in &tables {
        assert_eq!(method, "h", "{name}");
        let want = if name == "tenants" { "id" } else { "tenant_id" };
        assert_eq!(column, want, "{name}");
        assert_eq!(*colocation, group, "{name} not colocated with tenants");
    }
    // The history table stays a plain coordinator table.
    assert!(!tables.iter().any(|t| t.0.contains("schema_history")));
    // No policy has a subquery, on the coordinator and on the workers' shards.
    let sublinks: i64 = su
        .query_one(
            "SELECT count(*) FROM pg_policy WHERE pg_get_expr(polqual, polrelid) LIKE '%SELECT%'
                OR pg_get_expr(polwithcheck, polrelid) LIKE '%SELECT%'",
            &[],
        )
        .await
        .expect("policies")
        .get(0);
    assert_eq!(sublinks, 0);
    for i in 0..2 {
        let w = c.worker(i).await;
        // Workers hide shards from pg_class unless told otherwise.
        w.batch_execute("SET citus.override_table_visibility = off")
            .await
            .expect("show shards");
        let shard_policies: i64 = w
            .query_one(
                "SELECT count(*) FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
                 WHERE c.relname ~ '_[0-9]+$' AND pg_get_expr(p.polqual, p.polrelid) LIKE
                       '%tenantguard.current_tenant_id()%'",
                &[],
            )
            .await
            .expect("worker policies")
            .get(0);
        assert!(shard_policies > 0, "worker {i} has no shard policies");
        // The app role's default, on every node.
        let setting: Option<Vec<String>> = w
            .query_opt(
                "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
                 WHERE r.rolname = 'tenantguard_app' AND s.setdatabase = 0",
                &[],
            )
            .await
            .expect("role settings")
            .map(|r| r.get(0));
        assert!(
            setting
                .unwrap_or_default()
                .contains(&"citus.propagate_set_commands=local".to_string()),
            "worker {i}"
        );
    }
}

#[tokio::test]
async fn check_reports_a_table_not_distributed_or_not_colocated() {
    let Some(c) = citus("check_reports_a_table_not_distributed_or_not_colocated") else {
        return;
    };
    let mut su = c.superuser().await;
    let local = format!("tg_local_{}", &Uuid::new_v4().simple().to_string()[..8]);
    let apart = format!("tg_apart_{}", &Uuid::new_v4().simple().to_string()[..8]);
    su.batch_execute(&format!(
        "CREATE TABLE {local} (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
         CREATE TABLE {apart} (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
         SELECT create_distributed_table('{apart}', 'tenant_id', colocate_with => 'none');"
    ))
    .await
    .expect("fixture tables");
    let mut set = policy();
    set.tables
        .push(tenantguard::policy::TenantTable::new(&local));
    set.tables
        .push(tenantguard::policy::TenantTable::new(&apart));
    let diffs = schema::citus::plan_distribution(&su, &set)
        .await
        .expect("plan distribution");
    let text: Vec<String> = diffs.iter().map(|d| d.to_string()).collect();
    assert_eq!(diffs.len(), 2, "{text:#?}");
    assert!(
        text[0].contains(&local) && text[0].contains("is not distributed"),
        "{text:#?}"
    );
    assert!(
        text[1].contains(&apart) && text[1].contains("not colocated"),
        "{text:#?}"
    );
    // The full check lists them too (among the policy engine's findings for the fixtures).
    let all = schema::citus::check(&mut su, &set, "tenantguard_provisioner")
        .await
        .expect("check");
    assert!(all
        .iter()
        .any(|d| d.contains(&local) && d.contains("is not distributed")));
    assert!(all
        .iter()
        .any(|d| d.contains(&apart) && d.contains("not colocated")));
    su.batch_execute(&format!("DROP TABLE {local}; DROP TABLE {apart}"))
        .await
        .expect("drop fixtures");
}

#[tokio::test]
async fn provisioning_a_tenant_works_on_citus() {
    let Some(c) = citus("provisioning_a_tenant_works_on_citus") else {
        return;
    };
    let admin = c.as_role("tenantguard_admin").await;
    let tenant = Uuid::now_v7();
    let hash = vec![7u8; 32];
    let row = admin
        .query_one(
            "SELECT key_id FROM tenantguard.provision_tenant($1, 'Acme', 'tgk_acme', $2, 'owner@acme.example')",
            &[&tenant, &hash],
        )
        .await
        .unwrap_or_else(|e| panic!("provision_tenant: {}", tenantguard::error_chain(&e)));
    let key: Uuid = row.get(0);
    let app = c.as_role("tenantguard_app").await;
    let got = run(
        &app,
        &in_tenant(
            &tenant.to_string(),
            "SELECT (SELECT count(*) FROM tenants)::text || ',' || (SELECT count(*) FROM team_members)::text
                    || ',' || (SELECT string_agg(id::text, ',') FROM api_keys)
                    || ',' || (SELECT count(*) FROM audit_log)::text",
        ),
    )
    .await;
    assert_eq!(scalar(&got), format!("1,1,{key},1"));
    // And a second key through issue_api_key.
    admin
        .query_one(
            "SELECT key_id FROM tenantguard.issue_api_key($1, 'ci', 'member', 'tgk_ci01', $2)",
            &[&tenant, &vec![8u8; 32]],
        )
        .await
        .unwrap_or_else(|e| panic!("issue_api_key: {}", tenantguard::error_chain(&e)));
    let got = run(
        &app,
        &in_tenant(&tenant.to_string(), "SELECT count(*) FROM api_keys"),
    )
    .await;
    assert_eq!(scalar(&got), "2");
}

#[tokio::test]
async fn deleting_a_member_unassigns_its_tasks_and_comments() {
    let Some(c) = citus("deleting_a_member_unassigns_its_tasks_and_comments") else {
        return;
    };
    let su = c.superuser().await;
    let a = tenant(&su).await;
    let b = tenant(&su).await;
    let app = c.as_role("tenantguard_app").await;
    let del = run(
        &app,
        &in_tenant(
            &a.id.to_string(),
            &format!("DELETE FROM team_members WHERE id = {}", lit(a.member)),
        ),
    )
    .await;
    assert_eq!(del.as_ref().map(|d| d.1), Ok(1), "{del:?}");
    let row = su
        .query_one(
            "SELECT (SELECT assignee_id FROM tasks WHERE tenant_id = $1 AND id = $2),
                    (SELECT author_id FROM comments WHERE tenant_id = $1 AND id = $3),
                    (SELECT count(*) FROM team_members WHERE tenant_id = $1),
                    (SELECT assignee_id FROM tasks WHERE tenant_id = $4 AND id = $5)",
            &[&a.id, &a.task, &a.comment, &b.id, &b.task],
        )
        .await
        .expect("read back");
    let (assignee, author, members, b_assignee): (Option<Uuid>, Option<Uuid>, i64, Option<Uuid>) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(assignee, None, "the task is still assigned");
    assert_eq!(author, None, "the comment still has its author");
    assert_eq!(members, 0);
    assert_eq!(
        b_assignee,
        Some(b.member),
        "the other tenant's task changed"
    );
    // The task and comment themselves are kept.
    let kept: i64 = su
        .query_one(
            "SELECT (SELECT count(*) FROM tasks WHERE tenant_id = $1) + (SELECT count(*) FROM comments WHERE tenant_id = $1)",
            &[&a.id],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(kept, 2);
}

#[tokio::test]
async fn rls_apply_on_citus_uses_the_citus_form() {
    let Some(c) = citus("rls_apply_on_citus_uses_the_citus_form") else {
        return;
    };
    // A database of its own: rls apply manages tenantguard.current_tenant_id() and its
    // grants database-wide, for its own app role.
    let (url, cfg) = c.own_database("tg_citus_rls").await;
    let su = connect(&cfg).await.expect("own database");
    let suffix = &Uuid::new_v4().simple().to_string()[..8];
    let (table, app) = (format!("tg_rls_{suffix}"), format!("tg_rls_app_{suffix}"));
    su.batch_execute(&format!(
        "CREATE TABLE {table} (tenant_id uuid NOT NULL, id uuid NOT NULL, note text, PRIMARY KEY (tenant_id, id));
         SELECT create_distributed_table('{table}', 'tenant_id');"
    ))
    .await
    .expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = dir.path().join("tenantguard.toml");
    std::fs::write(
        &toml,
        format!("[roles]\napp = \"{app}\"\n[[table]]\nname = \"{table}\"\n"),
    )
    .expect("write toml");
    let cli = |check: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tenantguard"));
        cmd.args(["rls", "apply", "--config"])
            .arg(&toml)
            .arg("--database-url")
            .arg(&url);
        if check {
            cmd.arg("--check");
        }
        let out = cmd.output().expect("run tenantguard");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = cli(true);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("propagate_set_commands"), "{text}");
    let (code, text) = cli(false);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = cli(true);
    assert_eq!(code, Some(0), "second check: {text}");
    let quals: Vec<String> = su
        .query(
            "SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = $1::text::regclass AND polqual IS NOT NULL",
            &[&table],
        )
        .await
        .expect("policies")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !quals.is_empty() && quals.iter().all(|q| !q.contains("SELECT")),
        "{quals:?}"
    );
    // The new app role sees its tenant's row through SET LOCAL (its role default is set).
    let tenant = Uuid::now_v7();
    su.batch_execute(&format!(
        "INSERT INTO {table} (tenant_id, id) VALUES ('{tenant}', gen_random_uuid()), (gen_random_uuid(), gen_random_uuid())"
    ))
    .await
    .expect("rows");
    let mut app_cfg = cfg.clone();
    app_cfg.user(&app);
    let client = connect(&app_cfg).await.expect("as the new app role");
    let n = run(
        &client,
        &in_tenant(
            &tenant.to_string(),
            &format!("SELECT count(*) FROM {table}"),
        ),
    )
    .await;
    assert_eq!(scalar(&n), "1");
}

#[tokio::test]
async fn deleting_a_tenant_cascades_through_the_unlink_trigger() {
    let Some(c) = citus("deleting_a_tenant_cascades_through_the_unlink_trigger") else {
        return;
    };
    let su = c.superuser().await;
    let a = tenant(&su).await;
    let b = tenant(&su).await;
    // The cascade deletes the member (firing the trigger on its shard) and the tasks and
    // comments the trigger updates, in one statement.
    let n = su
        .execute("DELETE FROM tenants WHERE id = $1", &[&a.id])
        .await
        .unwrap_or_else(|e| panic!("delete tenant: {}", tenantguard::error_chain(&e)));
    assert_eq!(n, 1);
    let left: i64 = su
        .query_one(
            "SELECT (SELECT count(*) FROM team_members WHERE tenant_id = $1)
                  + (SELECT count(*) FROM tasks WHERE tenant_id = $1)
                  + (SELECT count(*) FROM comments WHERE tenant_id = $1)
                  + (SELECT count(*) FROM projects WHERE tenant_id = $1)",
            &[&a.id],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0);
    let b_rows: i64 = su
        .query_one(
            "SELECT count(*) FROM tasks WHERE tenant_id = $1 AND assignee_id = $2",
            &[&b.id, &b.member],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(b_rows, 1, "the other tenant lost its assignment");
}
