//! The isolation contract is stated once: the predicate the audit proposes as a fix is the
//! contract's predicate form, the one `migrate` installs, and applying it fixes the table.

use tenantguard::isolation::{context_function_call, setting_read, PredicateForm};

use crate::support::*;

#[tokio::test]
async fn the_proposed_fix_is_the_contracts_predicate_and_fixes_the_table() {
    let fx = Fixture::load("rls_disabled").await;
    let findings = fx.audit().await;
    let fix = expect(&findings, "TG001", "public.leaky").fix.clone();
    let form = PredicateForm::default();
    let proposed = form.render("tenant_id", &setting_read("app.tenant_id", "uuid"));
    assert!(fix.contains(&proposed), "{fix}\nshould use {proposed}");
    // The same form as the installed predicate: only the context expression differs.
    let installed = form.render("tenant_id", &context_function_call());
    assert_eq!(
        proposed.replace(&setting_read("app.tenant_id", "uuid"), "X"),
        installed.replace(&context_function_call(), "X")
    );
    let su = fx.db.superuser().await;
    su.batch_execute(&fix)
        .await
        .unwrap_or_else(|e| panic!("{fix}: {}", tenantguard::error_chain(&e)));
    let after = fx.audit().await;
    let left: Vec<&Finding> = after
        .iter()
        .filter(|f| f.object.contains("public.leaky") && f.severity >= Severity::Medium)
        .collect();
    assert!(left.is_empty(), "after the fix:\n{}", dump(&after));
}

/// One definition of "tenant table": the audit's (over its catalog model) and the pool's
/// (one SQL query, `isolation::tables::tenant_tables_cte`) find the same tables: the
/// column, the registry, FK children and grandchildren, partitions; not a lookup table a
/// tenant table references by another column, nor an unrelated table.
#[tokio::test]
async fn the_audit_and_the_pool_agree_on_what_a_tenant_table_is() {
    let fx = Fixture::load("unprotected_partition").await;
    let su = fx.db.superuser().await;
    su.batch_execute(
        "CREATE TABLE categories (id uuid PRIMARY KEY, label text);
         ALTER TABLE notes ADD COLUMN category_id uuid REFERENCES categories (id);
         ALTER TABLE notes ADD CONSTRAINT notes_id_key UNIQUE (id);
         CREATE TABLE attachments (id uuid PRIMARY KEY, note_id uuid REFERENCES notes (id));
         CREATE TABLE thumbnails (id uuid PRIMARY KEY, attachment_id uuid REFERENCES attachments (id));
         CREATE TABLE unrelated (id int PRIMARY KEY);",
    )
    .await
    .unwrap();
    let config = fx.config();
    let mut su = fx.db.superuser().await;
    let tx = su.transaction().await.unwrap();
    let catalog = tenantguard::audit::catalog::load(&tx, &config)
        .await
        .unwrap();
    let model = tenantguard::audit::Model::build(catalog, &config);
    let mut audit: Vec<String> = model
        .tenant_tables()
        .filter(|(t, _)| t.schema == "public")
        .map(|(t, _)| t.name.clone())
        .collect();
    audit.sort();
    let sql = format!(
        "WITH RECURSIVE {}
         SELECT c.relname::text FROM tenant_tables t JOIN pg_class c ON c.oid = t.oid
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1",
        tenantguard::isolation::tables::tenant_tables_cte("$1")
    );
    let pool: Vec<String> = tx
        .query(&sql, &[&"tenant_id"])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(audit, pool);
    assert_eq!(
        audit,
        [
            "attachments",
            "events",
            "events_all",
            "notes",
            "tenants",
            "thumbnails"
        ]
    );
}
