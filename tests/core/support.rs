//! Shared helpers for the core tests.

pub use tenantguard::testing::{unique_name, TestDb};
pub use tenantguard::TenantId;
use tokio_postgres::Client;
use uuid::Uuid;

/// The ids of one tenant's row in every tenant table.
#[derive(Debug, Clone, Copy)]
pub struct Graph {
    pub tenant: Uuid,
    pub member: Uuid,
    pub project: Uuid,
    pub task: Uuid,
    pub document: Uuid,
    pub comment: Uuid,
    pub invoice: Uuid,
    pub api_key: Uuid,
    pub webhook: Uuid,
    pub audit: Uuid,
    pub idempotency: Uuid,
}

impl Graph {
    /// The id of this tenant's row in `table`.
    pub fn id(&self, table: &str) -> Uuid {
        match table {
            "tenants" => self.tenant,
            "team_members" => self.member,
            "projects" => self.project,
            "tasks" => self.task,
            "documents" => self.document,
            "comments" => self.comment,
            "invoices" => self.invoice,
            "api_keys" => self.api_key,
            "webhooks" => self.webhook,
            "audit_log" => self.audit,
            "idempotency_keys" => self.idempotency,
            other => panic!("unknown table {other}"),
        }
    }

    pub fn tenant_id(&self) -> TenantId {
        self.tenant.into()
    }
}

/// The tenant tables.
pub use tenantguard::schema::TENANT_TABLES as TABLES;

/// SQL inserting a fresh row into `table` for tenant `t`, pointing at the parents in `g`
/// (which may belong to another tenant: that is what some tests try).
pub fn insert_sql(table: &str, t: Uuid, g: &Graph) -> String {
    let n = Uuid::new_v4().simple().to_string();
    match table {
        "team_members" => format!(
            "INSERT INTO team_members (tenant_id, email, role) VALUES ('{t}', 'm{n}@example.com', 'member')"
        ),
        "projects" => format!("INSERT INTO projects (tenant_id, name) VALUES ('{t}', 'p{n}')"),
        "tasks" => format!(
            "INSERT INTO tasks (tenant_id, project_id, title, assignee_id) VALUES ('{t}', '{}', 't{n}', '{}')",
            g.project, g.member
        ),
        "documents" => format!(
            "INSERT INTO documents (tenant_id, project_id, title) VALUES ('{t}', '{}', 'd{n}')",
            g.project
        ),
        "comments" => format!(
            "INSERT INTO comments (tenant_id, task_id, author_id, body) VALUES ('{t}', '{}', '{}', 'c{n}')",
            g.task, g.member
        ),
        "invoices" => format!(
            "INSERT INTO invoices (tenant_id, number, customer_name, amount_minor, currency) \
             VALUES ('{t}', 'INV-{n}', 'Customer', 1000, 'EUR')"
        ),
        "api_keys" => format!(
            "INSERT INTO api_keys (tenant_id, name, prefix, key_hash, role) \
             VALUES ('{t}', 'k', 'tgk_{}', decode(md5('{n}') || md5('{n}x'), 'hex'), 'member')",
            &n[..6]
        ),
        "webhooks" => format!(
            "INSERT INTO webhooks (tenant_id, url, event_types, signing_secret) \
             VALUES ('{t}', 'https://example.com/{n}', ARRAY['task.created'], 'secret-secret-secret')"
        ),
        "audit_log" => format!(
            "INSERT INTO audit_log (tenant_id, actor, action, resource_type) VALUES ('{t}', 'test', 'create', 'project')"
        ),
        "idempotency_keys" => format!(
            "INSERT INTO idempotency_keys (tenant_id, credential, idem_key, request_hash, status, body, expires_at) \
             VALUES ('{t}', 'test', 'k{n}', decode(md5('{n}') || md5('{n}x'), 'hex'), 201, '', now() + interval '1 day')"
        ),
        other => panic!("unknown table {other}"),
    }
}

/// Creates a tenant and one row in every tenant table, as the superuser (no RLS).
pub async fn graph(su: &Client, name: &str) -> Graph {
    let tenant: Uuid = su
        .query_one(
            "INSERT INTO tenants (name) VALUES ($1) RETURNING id",
            &[&name],
        )
        .await
        .expect("insert tenant")
        .get(0);
    let mut g = Graph {
        tenant,
        member: Uuid::nil(),
        project: Uuid::nil(),
        task: Uuid::nil(),
        document: Uuid::nil(),
        comment: Uuid::nil(),
        invoice: Uuid::nil(),
        api_key: Uuid::nil(),
        webhook: Uuid::nil(),
        audit: Uuid::nil(),
        idempotency: Uuid::nil(),
    };
    for table in TABLES {
        let sql = format!("{} RETURNING id", insert_sql(table, tenant, &g));
        let id: Uuid = su.query_one(&sql, &[]).await.expect(&sql).get(0);
        match table {
            "team_members" => g.member = id,
            "projects" => g.project = id,
            "tasks" => g.task = id,
            "documents" => g.document = id,
            "comments" => g.comment = id,
            "invoices" => g.invoice = id,
            "api_keys" => g.api_key = id,
            "webhooks" => g.webhook = id,
            "audit_log" => g.audit = id,
            "idempotency_keys" => g.idempotency = id,
            _ => unreachable!(),
        }
    }
    g
}

/// A digest of every row of `tenant` in `table`, read as the superuser, to prove rows
/// were left untouched.
pub async fn digest(su: &Client, table: &str, tenant: Uuid) -> (i64, String) {
    let col = if table == "tenants" {
        "id"
    } else {
        "tenant_id"
    };
    let row = su
        .query_one(
            &format!(
                "SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') \
                 FROM {table} t WHERE {col} = $1"
            ),
            &[&tenant],
        )
        .await
        .expect("digest");
    (row.get(0), row.get(1))
}

/// The SQLSTATE of a failed statement, as a string (`"42501"`…).
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no sqlstate: {e}"))
}

/// Inserts `n` tenants as the superuser and returns their ids.
pub async fn tenants(su: &Client, n: usize) -> Vec<Uuid> {
    su.query(
        "INSERT INTO tenants (name) SELECT 't' || g FROM generate_series(1, $1::int) g RETURNING id",
        &[&(n as i32)],
    )
    .await
    .expect("insert tenants")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Runs `rounds` × `tenants` concurrent requests on `pool`: each inserts a project, reads
/// every project it can see and asserts all are its own, inserts another with
/// `query_commit` (a single-statement write), then runs a failing transaction
/// that is dropped (which must not poison the connection for the next user). Afterwards
/// every idle connection is clean and the superuser sees every insert.
pub async fn concurrent_isolation(
    su: &Client,
    pool: &tenantguard::TenantPool,
    tenants: &[Uuid],
    rounds: usize,
) {
    let mut handles = Vec::new();
    for round in 0..rounds {
        for &t in tenants {
            let pool = pool.clone();
            handles.push(tokio::spawn(async move {
                let mut tx = pool.begin(t.into()).await.unwrap();
                tx.execute(
                    "INSERT INTO projects (name) VALUES ($1)",
                    &[&format!("{t}/{round}")],
                )
                .await
                .unwrap();
                tokio::task::yield_now().await;
                let rows = tx
                    .query("SELECT tenant_id, name FROM projects", &[])
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                for r in &rows {
                    let name: String = r.get(1);
                    assert_eq!(r.get::<_, Uuid>(0), t, "saw another tenant's row {name}");
                    assert!(name.starts_with(&t.to_string()), "saw {name}");
                }
                // A single-statement write, committed with its statement.
                let mut tx = pool.begin(t.into()).await.unwrap();
                let row = tx
                    .query_commit(
                        "INSERT INTO projects (name) VALUES ($1) RETURNING tenant_id",
                        &[&format!("{t}/{round}/one")],
                    )
                    .await
                    .unwrap();
                assert_eq!(row[0].get::<_, Uuid>(0), t);
                let mut tx = pool.begin(t.into()).await.unwrap();
                assert!(tx.query("SELECT 1/0", &[]).await.is_err());
                drop(tx);
                rows.len()
            }));
        }
    }
    for h in handles {
        assert!(h.await.unwrap() >= 1);
    }
    for _ in 0..pool.status().max_size {
        let idle = pool.inspect_idle(Some("projects")).await.unwrap();
        assert!(idle.is_clean(), "{idle:?}");
        assert_eq!(idle.visible_rows, Some(0));
    }
    let total: i64 = su
        .query_one("SELECT count(*) FROM projects", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total as usize, tenants.len() * rounds * 2);
}

/// With a one-connection pool the next checkout is the same backend: checks that it is
/// `pid` and has no tenant context and sees no rows.
pub async fn assert_clean(pool: &tenantguard::TenantPool, pid: i32, after: &str) {
    let state = pool.inspect_idle(Some("projects")).await.unwrap();
    assert_eq!(state.backend_pid, pid, "{after}: same connection reused");
    assert!(
        state.is_clean(),
        "{after}: tenant context leaked: {state:?}"
    );
    assert_eq!(
        state.visible_rows,
        Some(0),
        "{after}: rows visible without a tenant"
    );
}

/// Starts `sql` on `tx`, cancels it in flight after `after` (as a timeout or a client that
/// went away would), and drops the transaction.
pub async fn cancel_in_flight(
    mut tx: tenantguard::TenantTx,
    sql: &str,
    after: std::time::Duration,
) {
    let slow = tx.query(sql, &[]);
    assert!(
        tokio::time::timeout(after, slow).await.is_err(),
        "the query was cancelled while in flight"
    );
    drop(tx);
}

pub use tenantguard::pool::ContextCarrier;

/// Both context carriers: every contract test of the pool runs once per carrier.
pub const CARRIERS: [ContextCarrier; 2] =
    [ContextCarrier::SetConfigLocal, ContextCarrier::SetLocal];

/// The app pool of the reference roles with `max_size` connections and `carrier`.
pub async fn app_pool(
    db: &TestDb,
    max_size: usize,
    carrier: ContextCarrier,
) -> tenantguard::TenantPool {
    pool_with(
        db,
        tenantguard::PoolOptions {
            max_size,
            ..tenantguard::PoolOptions::default()
        },
        carrier,
    )
    .await
}

/// The app pool of the reference roles with `opts` and `carrier`.
pub async fn pool_with(
    db: &TestDb,
    opts: tenantguard::PoolOptions,
    carrier: ContextCarrier,
) -> tenantguard::TenantPool {
    tenantguard::TenantPool::connect(
        db.config_as("tenantguard_app"),
        tenantguard::PoolOptions {
            context_carrier: carrier,
            ..opts
        },
    )
    .await
    .unwrap_or_else(|e| panic!("app pool ({carrier:?}): {e}"))
}

/// Declares the test `async fn $name(carrier: ContextCarrier)` once per context carrier,
/// as `$name::set_config` and `$name::set_local`, with `#[tokio::test($args)]`.
macro_rules! per_carrier {
    ($name:ident $(, $($arg:tt)*)?) => {
        mod $name {
            #[tokio::test$(($($arg)*))?]
            async fn set_config() {
                super::$name(tenantguard::pool::ContextCarrier::SetConfigLocal).await
            }
            #[tokio::test$(($($arg)*))?]
            async fn set_local() {
                super::$name(tenantguard::pool::ContextCarrier::SetLocal).await
            }
        }
    };
}
pub(crate) use per_carrier;
