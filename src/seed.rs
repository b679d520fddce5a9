//! Demo data for `tenantguard dev`: three tenants, each with members, projects, tasks,
//! documents, comments and invoices. Tenants are created through the same provisioning
//! function the admin API uses, and their content through the tenant pool, one tenant
//! transaction each — the demo itself goes through the isolation it shows off.

use uuid::Uuid;

use crate::http::auth::new_api_key;
use crate::pool::{AdminPool, PoolError, TenantId, TenantPool};

/// A seeded tenant and its owner key.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DemoTenant {
    /// Tenant id.
    pub id: Uuid,
    /// Tenant name.
    pub name: String,
    /// The owner API key (plaintext: demo only).
    pub api_key: String,
}

/// Seeding failed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// A pool or tenant-transaction error.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A statement on the admin connection failed.
    #[error("database error while {0}: {1}")]
    Db(&'static str, #[source] tokio_postgres::Error),
}

const TENANTS: [(&str, &str); 3] = [
    ("Acme Corp", "acme.example"),
    ("Globex", "globex.example"),
    ("Initech", "initech.example"),
];

/// Creates the demo tenants and their data, returning each tenant's owner key.
pub async fn seed_demo(admin: &AdminPool, app: &TenantPool) -> Result<Vec<DemoTenant>, SeedError> {
    let mut out = Vec::new();
    for (name, domain) in TENANTS {
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let key = new_api_key(tenant);
        let client = admin.get().await?;
        client
            .query_one(
                "SELECT key_id FROM tenantguard.provision_tenant($1, $2, $3, $4, $5)",
                &[
                    &tenant.as_uuid(),
                    &name,
                    &key.prefix,
                    &&key.hash[..],
                    &format!("owner@{domain}"),
                ],
            )
            .await
            .map_err(|e| SeedError::Db("provisioning a demo tenant", e))?;
        drop(client);
        seed_tenant(app, tenant, name, domain).await?;
        out.push(DemoTenant {
            id: tenant.as_uuid(),
            name: name.to_string(),
            api_key: key.key,
        });
    }
    Ok(out)
}

async fn seed_tenant(
    app: &TenantPool,
    tenant: TenantId,
    name: &str,
    domain: &str,
) -> Result<(), SeedError> {
    let mut tx = app.begin(tenant).await?;
    let mut members = Vec::new();
    for (who, role) in [("alice", "admin"), ("bob", "member"), ("carol", "viewer")] {
        let row = tx
            .query_one(
                "INSERT INTO team_members (email, name, role) VALUES ($1, $2, $3) RETURNING id",
                &[&format!("{who}@{domain}"), &who, &role],
            )
            .await?;
        members.push(row.get::<_, Uuid>(0));
    }
    for (i, project) in ["Website relaunch", "Mobile app", "Q3 planning"]
        .iter()
        .enumerate()
    {
        let pid: Uuid = tx
            .query_one(
                "INSERT INTO projects (name, description) VALUES ($1, $2) RETURNING id",
                &[
                    &format!("{name}: {project}"),
                    &format!("Demo project {} of {name}", i + 1),
                ],
            )
            .await?
            .get(0);
        for (j, (title, status)) in [
            ("Write the brief", "done"),
            ("Design review", "in_progress"),
            ("Build it", "todo"),
            ("Test it", "todo"),
            ("Ship it", "todo"),
        ]
        .iter()
        .enumerate()
        {
            let assignee = members[j % members.len()];
            let tid: Uuid = tx
                .query_one(
                    "INSERT INTO tasks (project_id, title, status, assignee_id, due_date) \
                     VALUES ($1, $2, $3, $4, current_date + $5::int) RETURNING id",
                    &[&pid, title, status, &assignee, &((j as i32 + 1) * 7)],
                )
                .await?
                .get(0);
            if j == 1 {
                tx.execute(
                    "INSERT INTO comments (task_id, author_id, body) VALUES ($1, $2, $3)",
                    &[&tid, &members[0], &"Looks good to me."],
                )
                .await?;
            }
        }
        let did: Uuid = tx
            .query_one(
                "INSERT INTO documents (project_id, title, body) VALUES ($1, $2, $3) RETURNING id",
                &[
                    &pid,
                    &"Notes",
                    &format!("# {project}\n\nMeeting notes for {name}."),
                ],
            )
            .await?
            .get(0);
        tx.execute(
            "INSERT INTO comments (document_id, author_id, body) VALUES ($1, $2, $3)",
            &[&did, &members[1], &"Added my notes."],
        )
        .await?;
    }
    for (n, amount, status) in [
        ("INV-0001", 125_000_i64, "paid"),
        ("INV-0002", 48_000, "issued"),
    ] {
        tx.execute(
            "INSERT INTO invoices (number, customer_name, amount_minor, currency, status, issued_on, due_on) \
             VALUES ($1, $2, $3, 'EUR', $4, current_date - 30, current_date)",
            &[&n, &format!("Customer of {name}"), &amount, &status],
        )
        .await?;
    }
    tx.execute(
        "INSERT INTO audit_log (actor, action, resource_type, details) VALUES ('system', 'seed', 'tenant', '{}')",
        &[],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
