//! Every tenant table × SELECT / INSERT / UPDATE / DELETE, as the app role: tenant A
//! cannot read, change, delete or insert tenant B's rows, cannot move a row to B, and with
//! no tenant (unset, or '' as after RESET) reads return nothing and writes fail — without
//! a cast error.

use tokio_postgres::Client;
use uuid::Uuid;

use crate::support::*;

/// How the tenant context is set for an attempt.
#[derive(Clone, Copy, Debug)]
enum Ctx {
    Tenant(Uuid),
    Unset,
    Empty,
}

/// Runs `sql` as the app role inside a transaction with context `ctx`, rolled back after.
/// Returns the number of rows returned or affected.
async fn attempt(app: &mut Client, ctx: Ctx, sql: &str) -> Result<u64, tokio_postgres::Error> {
    let tx = app.transaction().await.expect("begin");
    match ctx {
        Ctx::Tenant(t) => {
            tx.execute(
                "SELECT set_config('app.tenant_id', $1, true)",
                &[&t.to_string()],
            )
            .await
            .expect("set tenant");
        }
        Ctx::Empty => {
            // What a RESET or an earlier SET LOCAL leaves behind: the placeholder is ''.
            tx.batch_execute("SET LOCAL app.tenant_id = ''")
                .await
                .expect("set ''");
        }
        Ctx::Unset => {}
    }
    let result = tx.execute(sql, &[]).await;
    let _ = tx.rollback().await;
    result
}

fn cross(table: &str, id: Uuid) -> [String; 4] {
    [
        format!("SELECT * FROM {table} WHERE id = '{id}'"),
        format!("UPDATE {table} SET tenant_id = tenant_id WHERE id = '{id}'"),
        format!("DELETE FROM {table} WHERE id = '{id}'"),
        format!("SELECT * FROM {table} WHERE id = '{id}' FOR UPDATE"),
    ]
}

#[tokio::test]
async fn tenant_a_cannot_touch_tenant_b_in_any_table() {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let a = graph(&su, "a").await;
    let b = graph(&su, "b").await;
    let mut app = db.connect_as("tenantguard_app").await;

    let mut before = Vec::new();
    for t in TABLES.iter().chain(["tenants"].iter()) {
        before.push(digest(&su, t, b.tenant).await);
    }

    for table in TABLES {
        let ctx = Ctx::Tenant(a.tenant);
        // Reads: A sees exactly its own row.
        let own = attempt(&mut app, ctx, &format!("SELECT * FROM {table}"))
            .await
            .unwrap();
        assert_eq!(own, 1, "{table}: A sees its one row");
        let b_rows = attempt(
            &mut app,
            ctx,
            &format!("SELECT * FROM {table} WHERE tenant_id = '{}'", b.tenant),
        )
        .await
        .unwrap();
        assert_eq!(b_rows, 0, "{table}: A reads none of B's rows");

        // Reads, updates and deletes of B's row by id touch nothing (or are not granted).
        for sql in cross(table, b.id(table)) {
            match attempt(&mut app, ctx, &sql).await {
                Ok(n) => assert_eq!(n, 0, "{table}: `{sql}` must touch no row of B"),
                Err(e) => {
                    // audit_log is append-only: no UPDATE/DELETE grant at all.
                    assert_eq!(table, "audit_log", "{table}: `{sql}` failed: {e}");
                    assert_eq!(sqlstate(&e), "42501", "{table}: {e}");
                }
            }
        }

        // Inserting a row for B (with B's own parents, so only RLS can stop it) fails.
        let err = attempt(&mut app, ctx, &insert_sql(table, b.tenant, &b))
            .await
            .expect_err(&format!("{table}: insert for B must fail"));
        assert_eq!(sqlstate(&err), "42501", "{table}: {err}");

        // Inserting for A itself works, and without naming tenant_id it defaults to A.
        let n = attempt(&mut app, ctx, &insert_sql(table, a.tenant, &a))
            .await
            .unwrap();
        assert_eq!(n, 1, "{table}: A inserts its own row");

        // Moving A's row to B fails (WITH CHECK), or UPDATE is not granted at all.
        let err = attempt(
            &mut app,
            ctx,
            &format!(
                "UPDATE {table} SET tenant_id = '{}' WHERE id = '{}'",
                b.tenant,
                a.id(table)
            ),
        )
        .await
        .expect_err(&format!("{table}: moving a row to B must fail"));
        assert_eq!(sqlstate(&err), "42501", "{table}: {err}");
    }

    // The tenants table: A sees only its own tenant row and cannot write any.
    let n = attempt(&mut app, Ctx::Tenant(a.tenant), "SELECT * FROM tenants")
        .await
        .unwrap();
    assert_eq!(n, 1);
    for sql in [
        format!("UPDATE tenants SET name = 'x' WHERE id = '{}'", b.tenant),
        format!("DELETE FROM tenants WHERE id = '{}'", b.tenant),
        "INSERT INTO tenants (name) VALUES ('new')".to_string(),
    ] {
        let err = attempt(&mut app, Ctx::Tenant(a.tenant), &sql)
            .await
            .expect_err(&sql);
        assert_eq!(sqlstate(&err), "42501");
    }

    let mut after = Vec::new();
    for t in TABLES.iter().chain(["tenants"].iter()) {
        after.push(digest(&su, t, b.tenant).await);
    }
    assert_eq!(before, after, "B's rows are byte-for-byte unchanged");
}

#[tokio::test]
async fn without_a_tenant_reads_are_empty_and_writes_fail_without_errors_on_read() {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let a = graph(&su, "a").await;
    let mut app = db.connect_as("tenantguard_app").await;
    for ctx in [Ctx::Unset, Ctx::Empty] {
        for table in TABLES.iter().chain(["tenants"].iter()) {
            let n = attempt(&mut app, ctx, &format!("SELECT * FROM {table}"))
                .await
                .unwrap_or_else(|e| panic!("{ctx:?} {table}: reading must not error: {e}"));
            assert_eq!(n, 0, "{ctx:?} {table}: no rows without a tenant");
            let n = attempt(&mut app, ctx, &format!("SELECT count(*) FROM {table}"))
                .await
                .unwrap();
            assert_eq!(n, 1, "one count row");
        }
        for table in TABLES {
            // Writes by id touch nothing (or are not granted); inserts are refused by RLS,
            // not by a uuid cast error.
            if table != "audit_log" {
                let n = attempt(
                    &mut app,
                    ctx,
                    &format!(
                        "UPDATE {table} SET tenant_id = tenant_id WHERE id = '{}'",
                        a.id(table)
                    ),
                )
                .await
                .unwrap();
                assert_eq!(n, 0, "{ctx:?} {table}: update touches nothing");
                let n = attempt(&mut app, ctx, &format!("DELETE FROM {table}"))
                    .await
                    .unwrap();
                assert_eq!(n, 0, "{ctx:?} {table}: delete touches nothing");
            }
            let err = attempt(&mut app, ctx, &insert_sql(table, a.tenant, &a))
                .await
                .expect_err("insert without a tenant must fail");
            assert_eq!(sqlstate(&err), "42501", "{ctx:?} {table}: {err}");
        }
    }
    assert_eq!(digest(&su, "projects", a.tenant).await.0, 1);
}

#[tokio::test]
async fn tenant_a_cannot_reference_tenant_b_parents() {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let a = graph(&su, "a").await;
    let b = graph(&su, "b").await;
    let mut app = db.connect_as("tenantguard_app").await;
    let ctx = Ctx::Tenant(a.tenant);
    // A's rows pointing at B's parents: the composite keys make the FK itself fail.
    let attempts = [
        format!(
            "INSERT INTO tasks (project_id, title) VALUES ('{}', 'x')",
            b.project
        ),
        format!(
            "INSERT INTO tasks (project_id, title, assignee_id) VALUES ('{}', 'x', '{}')",
            a.project, b.member
        ),
        format!(
            "INSERT INTO documents (project_id, title) VALUES ('{}', 'x')",
            b.project
        ),
        format!(
            "INSERT INTO comments (task_id, body) VALUES ('{}', 'x')",
            b.task
        ),
        format!(
            "INSERT INTO comments (document_id, body) VALUES ('{}', 'x')",
            b.document
        ),
        format!(
            "INSERT INTO comments (task_id, author_id, body) VALUES ('{}', '{}', 'x')",
            a.task, b.member
        ),
        format!(
            "UPDATE tasks SET project_id = '{}' WHERE id = '{}'",
            b.project, a.task
        ),
    ];
    for sql in &attempts {
        let err = attempt(&mut app, ctx, sql).await.expect_err(sql);
        assert_eq!(sqlstate(&err), "23503", "{sql}: {err}");
    }
    // Even a superuser, who bypasses RLS, cannot link across tenants: the key forbids it.
    let err = su
        .execute(
            &format!(
                "INSERT INTO tasks (tenant_id, project_id, title) VALUES ('{}', '{}', 'x')",
                a.tenant, b.project
            ),
            &[],
        )
        .await
        .expect_err("cross-tenant FK as superuser");
    assert_eq!(sqlstate(&err), "23503");
}

#[tokio::test]
async fn unique_values_are_per_tenant_and_truncate_is_refused() {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let a = graph(&su, "a").await;
    let b = graph(&su, "b").await;
    let mut app = db.connect_as("tenantguard_app").await;
    let number: String = su
        .query_one("SELECT number FROM invoices WHERE id = $1", &[&a.invoice])
        .await
        .unwrap()
        .get(0);
    let email: String = su
        .query_one("SELECT email FROM team_members WHERE id = $1", &[&a.member])
        .await
        .unwrap()
        .get(0);
    // B may reuse A's invoice number and member email.
    let reuse_invoice = format!(
        "INSERT INTO invoices (number, customer_name, amount_minor, currency) VALUES ('{number}', 'c', 1, 'EUR')"
    );
    let reuse_email =
        format!("INSERT INTO team_members (email, role) VALUES ('{email}', 'viewer')");
    for sql in [&reuse_invoice, &reuse_email] {
        assert_eq!(
            attempt(&mut app, Ctx::Tenant(b.tenant), sql).await.unwrap(),
            1,
            "{sql}"
        );
        // ...while A itself cannot duplicate it.
        let err = attempt(&mut app, Ctx::Tenant(a.tenant), sql)
            .await
            .expect_err(sql);
        assert_eq!(sqlstate(&err), "23505");
    }
    for table in TABLES.iter().chain(["tenants"].iter()) {
        let err = attempt(
            &mut app,
            Ctx::Tenant(a.tenant),
            &format!("TRUNCATE {table}"),
        )
        .await
        .expect_err("truncate");
        assert_eq!(sqlstate(&err), "42501", "TRUNCATE {table}: {err}");
    }
    assert_eq!(digest(&su, "invoices", b.tenant).await.0, 1);
}
