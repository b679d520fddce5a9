//! Lists write their JSON straight from the rows (`Record::write_json`, no structs, no
//! serde). These tests hold that path to the one it replaced: for every resource that
//! lists, the bytes on the wire must equal `serde_json::to_vec(&Page { items:
//! rows.map(from_row), next_cursor })` for the same rows, on data made to break a JSON
//! writer (every escaped byte, non-ASCII, long strings, NULLs, odd timestamps).
//! `GET /v1/<resource>/{id}` writes its object the same way, so each row is also held to
//! `serde_json::to_vec(&from_row(row))` through its own `GET` by id.

use std::time::Duration;

use crate::helpers::*;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tenantguard::http::api_keys::ApiKey;
use tenantguard::http::audit_log::AuditEntry;
use tenantguard::http::comments::Comment;
use tenantguard::http::documents::Document;
use tenantguard::http::extract::{Page, Record};
use tenantguard::http::invoices::Invoice;
use tenantguard::http::members::TeamMember;
use tenantguard::http::projects::Project;
use tenantguard::http::tasks::Task;
use tenantguard::http::webhooks::Webhook;
use uuid::Uuid;

/// Strings a JSON writer can get wrong: every byte serde_json escapes (PostgreSQL refuses
/// NUL), the ones it must not (DEL, `/`, U+2028/2029), non-ASCII of every length, and the
/// escapes at each position of an 8-byte word.
fn hostile() -> Vec<String> {
    let controls: String = (1u8..0x20).map(char::from).collect();
    vec![
        format!("{controls}\"\\/\u{7f}\u{2028}\u{2029}😀é\u{ffff}"),
        "plain".into(),
        "abcdefgh".into(),
        "abcdefg\"".into(),
        "abcdefgh\\".into(),
        "\u{1}".into(),
        "\u{1f}abcdefghijklmno".into(),
        "abcdefghijklmn\"p".into(),
        " !#$%&'()*+,-.0123456789:;<=>?@[]^_`{|}~".into(),
        "Zoë Müller — 日本語 😀 ok".into(),
        "tab\there\nnew line\r\u{8}\u{c}".into(),
        "a\"b\\c\"".into(),
    ]
}

/// Long strings for the roomy columns: plain, and with escapes and non-ASCII spread out.
fn long() -> Vec<String> {
    let mut mixed = String::new();
    for i in 0..400 {
        mixed.push_str("lorem ipsum ");
        match i % 5 {
            0 => mixed.push('"'),
            1 => mixed.push('\\'),
            2 => mixed.push('\u{2}'),
            3 => mixed.push('ü'),
            _ => mixed.push('😀'),
        }
    }
    vec!["x".repeat(5000), mixed, String::new()]
}

/// Timestamps: 0, 3 and 6 fraction digits, both sides of PostgreSQL's epoch (2000) and
/// Unix's, leap days, year 1, 1 BC (year 0) before and after March, 44 BC, year 9999's
/// last microsecond and year 10000 (the last three outside the fast path's range).
const TIMES: &[&str] = &[
    "2026-12-01 18:05:09+00",
    "2000-01-01 00:00:00+00",
    "1999-12-31 23:59:59.999999+00",
    "1970-01-01 00:00:00.123+00",
    "1969-12-31 23:59:59.5+00",
    "2024-02-29 12:34:56.000001+00",
    "1900-03-01 01:02:03.45+00",
    "0001-01-01 00:00:00+00",
    "0001-06-01 00:00:00.25+00 BC",
    "0001-01-01 00:00:00+00 BC",
    "0044-03-15 12:00:00+00 BC",
    "9999-12-31 23:59:59.999999+00",
    "10000-01-01 00:00:00+00",
    "2016-12-31 23:59:59.100+00",
];

/// A superuser connection to the test database (writes past RLS and the API's checks).
async fn superuser(app: &TestApp) -> tokio_postgres::Client {
    let (client, conn) = app
        .db()
        .superuser_config()
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

/// The tenant's ids in `table`, oldest id first.
async fn ids(su: &tokio_postgres::Client, table: &str, tenant: Uuid) -> Vec<Uuid> {
    su.query(
        &format!("SELECT id FROM {table} WHERE tenant_id = $1 ORDER BY id"),
        &[&tenant],
    )
    .await
    .expect("ids")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Sets `column` (of SQL type `ty`) of the tenant's rows in `table` to `values`, in turn
/// (`None` is NULL).
async fn spread(
    su: &tokio_postgres::Client,
    table: &str,
    tenant: Uuid,
    column: &str,
    ty: &str,
    values: &[Option<String>],
) {
    let sql = format!("UPDATE {table} SET {column} = CAST($1::text AS {ty}) WHERE id = $2");
    for (i, id) in ids(su, table, tenant).await.iter().enumerate() {
        let v = &values[i % values.len()];
        su.execute(&sql, &[v, id])
            .await
            .unwrap_or_else(|e| panic!("{table}.{column} = {v:?}: {e}"));
    }
}

fn some(v: Vec<String>) -> Vec<Option<String>> {
    v.into_iter().map(Some).collect()
}

fn times(offset: usize) -> Vec<Option<String>> {
    (0..TIMES.len())
        .map(|i| Some(TIMES[(i + offset) % TIMES.len()].to_string()))
        .collect()
}

/// The page the server sends for `query` on `path`, as raw bytes.
async fn wire(app: &TestApp, key: &str, path: &str, query: &str) -> Vec<u8> {
    let res = app
        .client
        .get(format!("{}{path}{query}", app.base))
        .bearer_auth(key)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200, "{path}{query}");
    assert_eq!(
        res.headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{path}"
    );
    res.bytes().await.expect("body").to_vec()
}

/// The same page made the slow way: the rows into structs, the structs through serde_json.
async fn expected<R: Record + Serialize>(
    su: &tokio_postgres::Client,
    tenant: Uuid,
    limit: usize,
    after: Option<(DateTime<Utc>, Uuid)>,
) -> Vec<u8> {
    let t = R::TABLE;
    let cursor = match after {
        Some(_) => format!(" AND ({}, id) < ($2, $3)", t.time),
        None => String::new(),
    };
    let sql = format!(
        "SELECT {} FROM {} WHERE tenant_id = $1{cursor} ORDER BY {} DESC, id DESC LIMIT {}",
        t.columns,
        t.name,
        t.time,
        limit + 1
    );
    let rows = match &after {
        Some((at, id)) => su.query(&sql, &[&tenant, at, id]).await,
        None => su.query(&sql, &[&tenant]).await,
    }
    .expect("rows");
    let mut items: Vec<R> = rows.iter().map(R::from_row).collect();
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|i| i.cursor().encode())
    } else {
        None
    };
    serde_json::to_vec(&Page { items, next_cursor }).expect("serde_json")
}

/// Compares the bytes of `path`'s first page, then pages through it by two; returns the
/// number of pages of two compared.
async fn same_bytes<R: Record + Serialize>(
    app: &TestApp,
    su: &tokio_postgres::Client,
    key: &str,
    tenant: Uuid,
    path: &str,
) -> usize {
    let whole = wire(app, key, path, "").await;
    let want = expected::<R>(su, tenant, 50, None).await;
    assert_eq!(
        String::from_utf8_lossy(&whole),
        String::from_utf8_lossy(&want),
        "{path}"
    );
    assert_eq!(whole, want, "{path}");
    let items = serde_json::from_slice::<serde_json::Value>(&whole).expect("valid JSON")["items"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(items >= 3, "{path}: {items} items");

    // Page by two, following next_cursor: the cursors after items from before 1970 and
    // after 2286 (signed, up to 19 digits) must page on exactly where they say.
    let mut query = "?limit=2".to_string();
    let mut after = None;
    let mut pages = 0;
    while pages < 6 {
        let got = wire(app, key, path, &query).await;
        let want = expected::<R>(su, tenant, 2, after).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{path}{query}"
        );
        pages += 1;
        let page: serde_json::Value = serde_json::from_slice(&got).expect("valid JSON");
        let Some(cursor) = page["next_cursor"].as_str() else {
            break;
        };
        let (micros, id) = cursor.split_once('.').expect("cursor");
        let at = DateTime::from_timestamp_micros(micros.parse().expect("micros")).expect("time");
        after = Some((at, Uuid::parse_str(id).expect("id")));
        query = format!("?limit=2&cursor={cursor}");
    }
    pages
}

/// `GET path/{id}` for every row of the tenant's table: the bytes must equal
/// `serde_json::to_vec(&R::from_row(row))` for the row the test reads, and only a revoked
/// API key is 404. Returns how many rows were compared and how many were 404.
async fn same_bytes_by_id<R: Record + Serialize>(
    app: &TestApp,
    su: &tokio_postgres::Client,
    key: &str,
    tenant: Uuid,
    path: &str,
) -> (usize, usize) {
    let t = R::TABLE;
    let gone = if t.name == "api_keys" {
        "revoked_at IS NOT NULL"
    } else {
        "false"
    };
    let sql = format!(
        "SELECT {}, {gone} AS gone FROM {} WHERE tenant_id = $1 ORDER BY id",
        t.columns, t.name
    );
    let rows = su.query(&sql, &[&tenant]).await.expect("rows");
    let (mut same, mut missing) = (0, 0);
    for row in &rows {
        let id: Uuid = row.get("id");
        let res = app
            .client
            .get(format!("{}{path}/{id}", app.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("request");
        if row.get::<_, bool>("gone") {
            assert_eq!(res.status(), 404, "{path}/{id} (revoked)");
            missing += 1;
            continue;
        }
        assert_eq!(res.status(), 200, "{path}/{id}");
        assert_eq!(
            res.headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{path}/{id}"
        );
        let got = res.bytes().await.expect("body").to_vec();
        let want = serde_json::to_vec(&R::from_row(row)).expect("serde_json");
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{path}/{id}"
        );
        assert_eq!(got, want, "{path}/{id}");
        same += 1;
    }
    (same, missing)
}

#[tokio::test]
async fn every_list_writes_the_bytes_serde_json_writes() {
    // No key-use writes during the test: they would change api_keys.last_used_at between
    // the server's read and the test's.
    let app = spawn_app_with(|c| c.last_used_flush = Duration::from_secs(3600)).await;
    let t = app.tenant("acme").await;
    let mut made = Vec::new();
    for tag in ["a", "b", "c", "d"] {
        made.extend(populate(&app, &t.key, tag).await);
    }
    // One revoked key: its GET by id is 404 (the list still shows it).
    let revoked = made
        .iter()
        .find(|(path, _)| *path == "/v1/api-keys")
        .map(|(_, id)| id.clone())
        .expect("an api key");
    app.delete(&format!("/v1/api-keys/{revoked}"), &t.key)
        .await
        .ok(204);
    let tenant = Uuid::parse_str(&t.id).expect("tenant id");
    let su = superuser(&app).await;
    let h = some(hostile());
    let mut roomy = some(long());
    roomy.extend(h.iter().cloned());
    roomy.push(None);
    let mut nullable = h.clone();
    nullable.insert(1, None);

    for (table, time) in [
        ("projects", "created_at"),
        ("tasks", "created_at"),
        ("documents", "created_at"),
        ("comments", "created_at"),
        ("invoices", "created_at"),
        ("team_members", "created_at"),
        ("webhooks", "created_at"),
        ("api_keys", "created_at"),
        ("audit_log", "occurred_at"),
    ] {
        spread(&su, table, tenant, time, "timestamptz", &times(0)).await;
        if table != "audit_log" && table != "api_keys" {
            spread(&su, table, tenant, "updated_at", "timestamptz", &times(5)).await;
        }
    }
    spread(&su, "projects", tenant, "name", "text", &h).await;
    spread(&su, "projects", tenant, "description", "text", &roomy).await;
    spread(&su, "tasks", tenant, "title", "text", &h).await;
    spread(&su, "tasks", tenant, "description", "text", &roomy).await;
    let dates = vec![None, Some("2030-01-31".into()), Some("0001-01-01".into())];
    spread(&su, "tasks", tenant, "due_date", "date", &dates).await;
    spread(&su, "tasks", tenant, "assignee_id", "uuid", &[None]).await;
    spread(&su, "documents", tenant, "title", "text", &h).await;
    spread(&su, "documents", tenant, "body", "text", &some(long())).await;
    spread(&su, "comments", tenant, "body", "text", &h).await;
    spread(&su, "invoices", tenant, "number", "text", &h).await;
    spread(&su, "invoices", tenant, "customer_name", "text", &h).await;
    spread(&su, "team_members", tenant, "name", "text", &h).await;
    spread(&su, "api_keys", tenant, "name", "text", &h).await;
    let mut used = times(3);
    used.insert(0, None);
    spread(
        &su,
        "api_keys",
        tenant,
        "last_used_at",
        "timestamptz",
        &used,
    )
    .await;
    for col in ["actor", "action", "resource_type"] {
        spread(&su, "audit_log", tenant, col, "text", &h).await;
    }
    let details = [
        Some(r#"{"b": "\"\\\u0001\u2028😀", "a": [1, 2.5, null, true], "n": {"x": -0.0}}"#.into()),
        Some("{}".into()),
    ];
    spread(&su, "audit_log", tenant, "details", "jsonb", &details).await;
    let other = Some(Uuid::now_v7().to_string());
    spread(
        &su,
        "audit_log",
        tenant,
        "resource_id",
        "uuid",
        &[None, other],
    )
    .await;
    let events = [
        Some(format!(
            "{{\"{}\",\"task.created\"}}",
            hostile()[0].replace('\\', "\\\\").replace('"', "\\\"")
        )),
        Some("{\"Zoë 😀\"}".into()),
    ];
    spread(&su, "webhooks", tenant, "event_types", "text[]", &events).await;
    spread(
        &su,
        "webhooks",
        tenant,
        "url",
        "text",
        &[Some("https://example.com/a?b=\"c\"&d=\\e\u{7}".into())],
    )
    .await;

    let pages = [
        same_bytes::<Project>(&app, &su, &t.key, tenant, "/v1/projects").await,
        same_bytes::<Task>(&app, &su, &t.key, tenant, "/v1/tasks").await,
        same_bytes::<Document>(&app, &su, &t.key, tenant, "/v1/documents").await,
        same_bytes::<Comment>(&app, &su, &t.key, tenant, "/v1/comments").await,
        same_bytes::<Invoice>(&app, &su, &t.key, tenant, "/v1/invoices").await,
        same_bytes::<TeamMember>(&app, &su, &t.key, tenant, "/v1/members").await,
        same_bytes::<Webhook>(&app, &su, &t.key, tenant, "/v1/webhooks").await,
        same_bytes::<ApiKey>(&app, &su, &t.key, tenant, "/v1/api-keys").await,
        same_bytes::<AuditEntry>(&app, &su, &t.key, tenant, "/v1/audit-log").await,
    ];
    // Every list has at least three items, so every one was followed to a second page.
    assert!(
        pages.iter().all(|&n| n >= 2),
        "pages of two per list: {pages:?}"
    );

    // The same rows, one by one, through each resource's GET by id.
    let by_id = [
        same_bytes_by_id::<Project>(&app, &su, &t.key, tenant, "/v1/projects").await,
        same_bytes_by_id::<Task>(&app, &su, &t.key, tenant, "/v1/tasks").await,
        same_bytes_by_id::<Document>(&app, &su, &t.key, tenant, "/v1/documents").await,
        same_bytes_by_id::<Comment>(&app, &su, &t.key, tenant, "/v1/comments").await,
        same_bytes_by_id::<Invoice>(&app, &su, &t.key, tenant, "/v1/invoices").await,
        same_bytes_by_id::<TeamMember>(&app, &su, &t.key, tenant, "/v1/members").await,
        same_bytes_by_id::<Webhook>(&app, &su, &t.key, tenant, "/v1/webhooks").await,
        same_bytes_by_id::<ApiKey>(&app, &su, &t.key, tenant, "/v1/api-keys").await,
        same_bytes_by_id::<AuditEntry>(&app, &su, &t.key, tenant, "/v1/audit-log").await,
    ];
    assert!(
        by_id.iter().all(|&(same, _)| same >= 3),
        "rows compared by id: {by_id:?}"
    );
    assert_eq!(by_id[7].1, 1, "the revoked key is 404: {by_id:?}");
    app.stop().await;
}

#[tokio::test]
async fn an_empty_list_is_the_same_bytes_too() {
    let app = spawn_app().await;
    let t = app.tenant("empty").await;
    let body = wire(&app, &t.key, "/v1/projects", "").await;
    assert_eq!(
        body,
        serde_json::to_vec(&Page::<Project> {
            items: vec![],
            next_cursor: None
        })
        .expect("serde_json")
    );
    assert_eq!(body, br#"{"items":[],"next_cursor":null}"#);
    app.stop().await;
}
