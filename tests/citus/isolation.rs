//! The isolation matrix on the distributed schema, through raw SQL as the app role with the
//! context carried the Citus way (`BEGIN; SET LOCAL app.tenant_id = '<uuid>'; …; COMMIT`
//! under one Sync): every table × read / insert / update / delete / move / foreign key, for
//! another tenant's rows and with no tenant or `''`. Each attack has a control that does
//! the same to the tenant's own rows and must succeed, so a matrix of "blocked" cannot come
//! from a context that never arrived.

use uuid::Uuid;

use crate::support::*;

/// Per table: a column to rewrite in place (for UPDATE), and an INSERT of one row for
/// tenant `{t}` (with `{p}`, `{k}`, `{m}` its project, task and member ids).
const TABLES: [(&str, &str, &str); 11] = [
    ("tenants", "name", "INSERT INTO tenants (id, name) VALUES ({t}, 'x')"),
    (
        "team_members",
        "name",
        "INSERT INTO team_members (tenant_id, email, role) VALUES ({t}, 'n' || gen_random_uuid() || '@example.com', 'member')",
    ),
    ("projects", "name", "INSERT INTO projects (tenant_id, name) VALUES ({t}, 'n')"),
    (
        "tasks",
        "title",
        "INSERT INTO tasks (tenant_id, project_id, title) VALUES ({t}, {p}, 'n')",
    ),
    (
        "documents",
        "title",
        "INSERT INTO documents (tenant_id, project_id, title) VALUES ({t}, {p}, 'n')",
    ),
    (
        "comments",
        "body",
        "INSERT INTO comments (tenant_id, task_id, body) VALUES ({t}, {k}, 'n')",
    ),
    (
        "invoices",
        "customer_name",
        "INSERT INTO invoices (tenant_id, number, customer_name, amount_minor, currency) VALUES ({t}, 'N-' || gen_random_uuid(), 'n', 1, 'EUR')",
    ),
    (
        "api_keys",
        "name",
        "INSERT INTO api_keys (tenant_id, name, prefix, key_hash, role) VALUES ({t}, 'n', 'tgk_new0', decode(md5(gen_random_uuid()::text) || md5(gen_random_uuid()::text), 'hex'), 'viewer')",
    ),
    (
        "webhooks",
        "url",
        "INSERT INTO webhooks (tenant_id, url, event_types, signing_secret) VALUES ({t}, 'https://example.com/n', ARRAY['x'], repeat('s', 16))",
    ),
    (
        "audit_log",
        "action",
        "INSERT INTO audit_log (tenant_id, actor, action, resource_type) VALUES ({t}, 'a', 'n', 'r')",
    ),
    (
        "idempotency_keys",
        "content_type",
        "INSERT INTO idempotency_keys (tenant_id, credential, idem_key, request_hash, status, body, expires_at) VALUES ({t}, 'user:n', gen_random_uuid()::text, decode(repeat('ee', 32), 'hex'), 200, ''::bytea, now() + interval '1 hour')",
    ),
];

fn tenant_col(table: &str) -> &'static str {
    if table == "tenants" {
        "id"
    } else {
        "tenant_id"
    }
}

fn insert_sql(template: &str, t: &Tenant, parents: &Tenant) -> String {
    template
        .replace("{t}", &lit(t.id))
        .replace("{p}", &lit(parents.project))
        .replace("{k}", &lit(parents.task))
        .replace("{m}", &lit(parents.member))
}

/// A fingerprint of tenant `id`'s rows in every table, read by the superuser.
async fn fingerprint(su: &tokio_postgres::Client, id: Uuid) -> Vec<String> {
    let mut out = Vec::new();
    for (table, _, _) in TABLES {
        let col = tenant_col(table);
        let row = su
            .query_one(
                &format!(
                    "SELECT count(*)::text || ':' || COALESCE(md5(string_agg(x::text, ',' ORDER BY x::text)), '')
                     FROM {table} x WHERE {col} = $1"
                ),
                &[&id],
            )
            .await
            .expect("fingerprint");
        out.push(format!("{table}={}", row.get::<_, String>(0)));
    }
    out
}

#[tokio::test]
async fn isolation_matrix_on_distributed_tables() {
    let Some(c) = citus("isolation_matrix_on_distributed_tables") else {
        return;
    };
    let su = c.superuser().await;
    let a = tenant(&su).await;
    let b = tenant(&su).await;
    let before = fingerprint(&su, b.id).await;
    let app = c.as_role("tenantguard_app").await;
    let at = a.id.to_string();
    let mut failures = Vec::new();
    let mut cells = 0;

    for (table, col, insert) in TABLES {
        let tc = tenant_col(table);
        let writable = !matches!(table, "tenants" | "audit_log");
        let mut cell = |ok: bool, what: String| {
            cells += 1;
            if !ok {
                failures.push(what);
            }
        };

        // read: own rows visible (control), B's invisible, one tenant only.
        let own = run(
            &app,
            &in_tenant(&at, &format!("SELECT count(*) FROM {table}")),
        )
        .await;
        cell(
            own.as_ref().map(|_| scalar(&own) != "0").unwrap_or(false),
            format!("{table}: control read of own rows failed: {own:?}"),
        );
        let theirs = run(
            &app,
            &in_tenant(
                &at,
                &format!("SELECT count(*) FROM {table} WHERE {tc} = {}", lit(b.id)),
            ),
        )
        .await;
        cell(
            theirs
                .as_ref()
                .map(|_| scalar(&theirs) == "0")
                .unwrap_or(false),
            format!("{table}: read of B's rows: {theirs:?}"),
        );
        let distinct = run(
            &app,
            &in_tenant(&at, &format!("SELECT count(DISTINCT {tc}) FROM {table}")),
        )
        .await;
        cell(
            distinct
                .as_ref()
                .map(|_| scalar(&distinct) == "1")
                .unwrap_or(false),
            format!("{table}: distinct tenants visible: {distinct:?}"),
        );

        // insert: a row for B refused; the same for A works (where the app may insert).
        let ins_b = run(&app, &in_tenant(&at, &insert_sql(insert, &b, &b))).await;
        cell(
            ins_b.is_err(),
            format!("{table}: insert of a row for B: {ins_b:?}"),
        );
        if table != "tenants" {
            let ins_a = run(&app, &in_tenant(&at, &insert_sql(insert, &a, &a))).await;
            cell(
                ins_a.as_ref().map(|o| o.1 == 1).unwrap_or(false),
                format!("{table}: control insert for A: {ins_a:?}"),
            );
        }

        // update and delete of B's rows: nothing matched (or no privilege).
        let upd_b = run(
            &app,
            &in_tenant(
                &at,
                &format!(
                    "UPDATE {table} SET {col} = {col} WHERE {tc} = {}",
                    lit(b.id)
                ),
            ),
        )
        .await;
        cell(
            matches!(upd_b, Ok((_, 0)) | Err(_)),
            format!("{table}: update of B's rows: {upd_b:?}"),
        );
        let del_b = run(
            &app,
            &in_tenant(
                &at,
                &format!("DELETE FROM {table} WHERE {tc} = {}", lit(b.id)),
            ),
        )
        .await;
        cell(
            matches!(del_b, Ok((_, 0)) | Err(_)),
            format!("{table}: delete of B's rows: {del_b:?}"),
        );
        if writable {
            let upd_a = run(
                &app,
                &in_tenant(&at, &format!("UPDATE {table} SET {col} = {col}")),
            )
            .await;
            cell(
                upd_a.as_ref().map(|o| o.1 >= 1).unwrap_or(false),
                format!("{table}: control update of own rows: {upd_a:?}"),
            );
            // move: A's rows to B.
            let mv = run(
                &app,
                &in_tenant(
                    &at,
                    &format!(
                        "UPDATE {table} SET {tc} = {} WHERE {tc} = {}",
                        lit(b.id),
                        lit(a.id)
                    ),
                ),
            )
            .await;
            cell(mv.is_err(), format!("{table}: move A's rows to B: {mv:?}"));
        }

        // no tenant, and '': nothing visible, nothing written.
        for (label, prefix) in [
            ("no tenant", "BEGIN".to_string()),
            ("''", "BEGIN; SET LOCAL app.tenant_id = ''".to_string()),
        ] {
            let read = run(
                &app,
                &format!("{prefix}; SELECT count(*) FROM {table}; COMMIT"),
            )
            .await;
            cell(
                read.as_ref().map(|_| scalar(&read) == "0").unwrap_or(false),
                format!("{table}: read with {label}: {read:?}"),
            );
            // Without BEGIN too (one implicit transaction).
            let bare = run(&app, &format!("SELECT count(*) FROM {table}")).await;
            cell(
                bare.as_ref().map(|_| scalar(&bare) == "0").unwrap_or(false),
                format!("{table}: bare read with {label}: {bare:?}"),
            );
            let ins = run(
                &app,
                &format!("{prefix}; {}; COMMIT", insert_sql(insert, &a, &a)),
            )
            .await;
            cell(
                ins.is_err(),
                format!("{table}: insert with {label}: {ins:?}"),
            );
            let upd = run(
                &app,
                &format!("{prefix}; UPDATE {table} SET {col} = {col}; COMMIT"),
            )
            .await;
            cell(
                matches!(upd, Ok((_, 0)) | Err(_)),
                format!("{table}: update with {label}: {upd:?}"),
            );
            let del = run(&app, &format!("{prefix}; DELETE FROM {table}; COMMIT")).await;
            cell(
                matches!(del, Ok((_, 0)) | Err(_)),
                format!("{table}: delete with {label}: {del:?}"),
            );
        }
    }

    // Foreign keys: A's rows pointing at B's parents are refused (composite keys), and the
    // same rows pointing at A's own parents are accepted.
    for (what, sql_b, sql_a) in [
        (
            "task → B's project",
            format!(
                "INSERT INTO tasks (project_id, title) VALUES ({}, 'x')",
                lit(b.project)
            ),
            format!(
                "INSERT INTO tasks (project_id, title) VALUES ({}, 'x')",
                lit(a.project)
            ),
        ),
        (
            "task assigned to B's member",
            format!(
                "INSERT INTO tasks (project_id, title, assignee_id) VALUES ({}, 'x', {})",
                lit(a.project),
                lit(b.member)
            ),
            format!(
                "INSERT INTO tasks (project_id, title, assignee_id) VALUES ({}, 'x', {})",
                lit(a.project),
                lit(a.member)
            ),
        ),
        (
            "document → B's project",
            format!(
                "INSERT INTO documents (project_id, title) VALUES ({}, 'x')",
                lit(b.project)
            ),
            format!(
                "INSERT INTO documents (project_id, title) VALUES ({}, 'x')",
                lit(a.project)
            ),
        ),
        (
            "comment → B's task",
            format!(
                "INSERT INTO comments (task_id, body) VALUES ({}, 'x')",
                lit(b.task)
            ),
            format!(
                "INSERT INTO comments (task_id, body) VALUES ({}, 'x')",
                lit(a.task)
            ),
        ),
        (
            "comment → B's document",
            format!(
                "INSERT INTO comments (document_id, body) VALUES ({}, 'x')",
                lit(b.document)
            ),
            format!(
                "INSERT INTO comments (document_id, body) VALUES ({}, 'x')",
                lit(a.document)
            ),
        ),
        (
            "move a task to B's project",
            format!(
                "UPDATE tasks SET project_id = {} WHERE id = {}",
                lit(b.project),
                lit(a.task)
            ),
            format!(
                "UPDATE tasks SET project_id = {} WHERE id = {}",
                lit(a.project),
                lit(a.task)
            ),
        ),
    ] {
        cells += 1;
        let attack = run(&app, &in_tenant(&at, &sql_b)).await;
        if attack.is_ok() {
            failures.push(format!("FK {what}: accepted: {attack:?}"));
        }
        let control = run(&app, &in_tenant(&at, &sql_a)).await;
        if !matches!(control, Ok((_, 1))) {
            failures.push(format!("FK {what}: control failed: {control:?}"));
        }
    }
    // TRUNCATE is never granted (RLS would not apply to it).
    for (table, _, _) in TABLES {
        cells += 1;
        let t = run(&app, &in_tenant(&at, &format!("TRUNCATE {table}"))).await;
        if !matches!(&t, Err(e) if e.contains("permission denied")) {
            failures.push(format!("{table}: TRUNCATE: {t:?}"));
        }
    }

    let after = fingerprint(&su, b.id).await;
    assert_eq!(before, after, "B's rows changed");
    assert!(
        failures.is_empty(),
        "{} of {cells} cells failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("isolation matrix on Citus: {cells} cells blocked (with their controls passing)");
}
