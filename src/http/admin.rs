//! `/admin/v1`: the operator's cross-tenant API, behind the admin token.
//!
//! Reads go through the [`AdminPool`](crate::AdminPool) (BYPASSRLS, read-only). Creating a
//! tenant goes through `tenantguard.provision_tenant(…)`, a SECURITY DEFINER function
//! owned by a NOLOGIN provisioner role that can only INSERT (see
//! `schema::provisioning`): the app pool is never used here, and the admin role itself
//! still cannot write any table. Issuing a key for an existing tenant (the way back in
//! when its owner keys are lost) goes through `tenantguard.issue_api_key(…)`, made the
//! same way; it writes the tenant's audit row and is logged.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::api_keys::{ApiKey, CreatedApiKey, NewApiKey};
use super::auth::new_api_key;
use super::error::{ApiError, Problem};
use super::extract::{Check, Cursor, Json, Page, PageParams, Path, Query};
use super::AppState;
use crate::pool::{PoolError, TenantId};

/// A tenant as the operator sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Tenant {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Row counts of one tenant.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// Team members.
    pub members: i64,
    /// Projects.
    pub projects: i64,
    /// Tasks.
    pub tasks: i64,
    /// Documents.
    pub documents: i64,
    /// Comments.
    pub comments: i64,
    /// Invoices.
    pub invoices: i64,
    /// API keys not revoked.
    pub active_api_keys: i64,
    /// Webhooks.
    pub webhooks: i64,
}

/// A tenant with its usage.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantDetail {
    /// The tenant.
    #[serde(flatten)]
    pub tenant: Tenant,
    /// Its usage.
    pub usage: Usage,
}

/// A new tenant and its first owner key (shown once).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProvisionedTenant {
    /// The tenant.
    #[serde(flatten)]
    pub tenant: Tenant,
    /// Id of the owner key.
    pub api_key_id: Uuid,
    /// The owner key: store it now, it cannot be shown again.
    pub api_key: String,
}

/// Body of `POST /admin/v1/tenants`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Name, 1–200 characters.
    #[schema(min_length = 1, max_length = 200, pattern = "^[^\\u0000]*$")]
    pub name: String,
    /// Optionally, the first owner's email (added as a team member).
    #[serde(default)]
    #[schema(
        min_length = 3,
        max_length = 320,
        pattern = "^[^@\\s\\u0000]+@[^@\\s\\u0000]+$"
    )]
    pub owner_email: Option<String>,
}

/// One row of the cross-tenant project report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectStats {
    /// Tenant id.
    pub tenant_id: Uuid,
    /// Tenant name.
    pub tenant_name: String,
    /// Number of projects.
    pub project_count: i64,
    /// Latest project change or audited mutation, if any.
    pub last_activity: Option<DateTime<Utc>>,
}

/// The report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectStatsReport {
    /// One row per tenant, most projects first.
    pub tenants: Vec<ProjectStats>,
}

/// The routes and their OpenAPI operations, from one declaration: each handler's
/// `#[utoipa::path]` gives both its route and its document entry.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(get_tenant))
        .routes(routes!(issue_api_key))
        .routes(routes!(project_stats))
}

fn db_err(context: &'static str) -> impl Fn(tokio_postgres::Error) -> ApiError {
    move |e| ApiError::from(PoolError::db(context)(e))
}

async fn admin_client(state: &AppState) -> Result<deadpool_postgres::Object, ApiError> {
    let pool = state.admin_pool().ok_or(ApiError::Unavailable)?;
    Ok(pool.get().await?)
}

/// Lists tenants, newest first.
#[utoipa::path(get, path = "/admin/v1/tenants", tag = "admin", operation_id = "admin_tenants_list", params(PageParams),
    responses((status = 200, body = Page<Tenant>), (status = 401, body = Problem)))]
pub(crate) async fn list_tenants(
    State(state): State<AppState>,
    Query(page): Query<PageParams>,
) -> Result<Json<Page<Tenant>>, ApiError> {
    let limit = page.limit()?;
    let client = admin_client(&state).await?;
    let rows = match page.cursor()? {
        None => client
            .query(
                "SELECT id, name, created_at FROM tenants ORDER BY created_at DESC, id DESC LIMIT $1",
                &[&(limit + 1)],
            )
            .await,
        Some(c) => client
            .query(
                "SELECT id, name, created_at FROM tenants WHERE (created_at, id) < ($1, $2) \
                 ORDER BY created_at DESC, id DESC LIMIT $3",
                &[&c.at, &c.id, &(limit + 1)],
            )
            .await,
    }
    .map_err(db_err("listing tenants"))?;
    let mut items: Vec<Tenant> = rows
        .iter()
        .map(|r| Tenant {
            id: r.get(0),
            name: r.get(1),
            created_at: r.get(2),
        })
        .collect();
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|t| {
            Cursor {
                at: t.created_at,
                id: t.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(Json(Page { items, next_cursor }))
}

/// One tenant with its usage counts.
#[utoipa::path(get, path = "/admin/v1/tenants/{id}", tag = "admin", operation_id = "admin_tenants_get", params(("id" = Uuid, Path)),
    responses((status = 200, body = TenantDetail), (status = 404, body = Problem)))]
pub(crate) async fn get_tenant(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<TenantDetail>, ApiError> {
    let client = admin_client(&state).await?;
    let row = client
        .query_opt(
            "SELECT t.id, t.name, t.created_at,
                    (SELECT count(*) FROM team_members WHERE tenant_id = t.id),
                    (SELECT count(*) FROM projects WHERE tenant_id = t.id),
                    (SELECT count(*) FROM tasks WHERE tenant_id = t.id),
                    (SELECT count(*) FROM documents WHERE tenant_id = t.id),
                    (SELECT count(*) FROM comments WHERE tenant_id = t.id),
                    (SELECT count(*) FROM invoices WHERE tenant_id = t.id),
                    (SELECT count(*) FROM api_keys WHERE tenant_id = t.id AND revoked_at IS NULL),
                    (SELECT count(*) FROM webhooks WHERE tenant_id = t.id)
             FROM tenants t WHERE t.id = $1",
            &[&id],
        )
        .await
        .map_err(db_err("reading a tenant"))?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(TenantDetail {
        tenant: Tenant {
            id: row.get(0),
            name: row.get(1),
            created_at: row.get(2),
        },
        usage: Usage {
            members: row.get(3),
            projects: row.get(4),
            tasks: row.get(5),
            documents: row.get(6),
            comments: row.get(7),
            invoices: row.get(8),
            active_api_keys: row.get(9),
            webhooks: row.get(10),
        },
    }))
}

/// Creates a tenant and its first owner key.
#[utoipa::path(post, path = "/admin/v1/tenants", tag = "admin", operation_id = "admin_tenants_create", request_body = NewTenant,
    responses((status = 201, body = ProvisionedTenant), (status = 401, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create_tenant(
    State(state): State<AppState>,
    Json(b): Json<NewTenant>,
) -> Result<(StatusCode, Json<ProvisionedTenant>), ApiError> {
    // The owner's email is judged as sent, by the members' rule (the documented pattern),
    // and stored normalised.
    Check::new()
        .len("name", Some(&b.name), 1, 200)
        .len("owner_email", b.owner_email.as_deref(), 3, 320)
        .that(
            b.owner_email
                .as_deref()
                .is_none_or(super::members::valid_email),
            "owner_email",
            "must be an email address",
        )
        .done()?;
    let email = b
        .owner_email
        .as_deref()
        .map(super::members::normalize_email);
    let tenant = TenantId::from_uuid(Uuid::now_v7());
    let key = new_api_key(tenant);
    let client = admin_client(&state).await?;
    let row = client
        .query_one(
            "SELECT key_id, created_at FROM tenantguard.provision_tenant($1, $2, $3, $4, $5)",
            &[
                &tenant.as_uuid(),
                &b.name,
                &key.prefix,
                &&key.hash[..],
                &email,
            ],
        )
        .await
        .map_err(db_err("provisioning a tenant"))?;
    tracing::info!(target: "tenantguard::admin", tenant = %tenant, "tenant provisioned");
    Ok((
        StatusCode::CREATED,
        Json(ProvisionedTenant {
            tenant: Tenant {
                id: tenant.as_uuid(),
                name: b.name,
                created_at: row.get(1),
            },
            api_key_id: row.get(0),
            api_key: key.key,
        }),
    ))
}

/// Issues an API key of any role (also `owner`) for an existing tenant, shown once. The
/// tenant's audit log records it (actor `admin`, action `issue`).
#[utoipa::path(post, path = "/admin/v1/tenants/{id}/api-keys", tag = "admin", operation_id = "admin_tenant_api_keys_create",
    params(("id" = Uuid, Path)), request_body = NewApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 401, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn issue_api_key(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Json(b): Json<NewApiKey>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    Check::new().len("name", Some(&b.name), 1, 200).done()?;
    let tenant = TenantId::from_uuid(id);
    let key = new_api_key(tenant);
    let client = admin_client(&state).await?;
    let row = client
        .query_one(
            "SELECT key_id, created_at FROM tenantguard.issue_api_key($1, $2, $3, $4, $5)",
            &[&id, &b.name, &b.role.as_str(), &key.prefix, &&key.hash[..]],
        )
        .await
        .map_err(|e| {
            // The key's foreign key names the tenant: a missing one is a 404.
            if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) {
                ApiError::NotFound
            } else {
                db_err("issuing an API key")(e)
            }
        })?;
    let key_id: Uuid = row.get(0);
    tracing::info!(target: "tenantguard::admin", tenant = %tenant, key_id = %key_id,
        role = b.role.as_str(), "API key issued");
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            key: ApiKey {
                id: key_id,
                name: b.name,
                prefix: key.prefix,
                role: b.role,
                created_at: row.get(1),
                last_used_at: None,
                revoked_at: None,
            },
            api_key: key.key,
        }),
    ))
}

/// The seed's cross-tenant report: projects and last activity per tenant.
#[utoipa::path(get, path = "/admin/v1/stats/projects", tag = "admin", operation_id = "admin_stats_projects",
    responses((status = 200, body = ProjectStatsReport), (status = 401, body = Problem)))]
pub(crate) async fn project_stats(
    State(state): State<AppState>,
) -> Result<Json<ProjectStatsReport>, ApiError> {
    let client = admin_client(&state).await?;
    let rows = client
        .query(
            "SELECT t.id, t.name,
                    (SELECT count(*) FROM projects WHERE tenant_id = t.id) AS n,
                    GREATEST((SELECT max(updated_at) FROM projects WHERE tenant_id = t.id),
                             (SELECT max(occurred_at) FROM audit_log WHERE tenant_id = t.id))
             FROM tenants t
             ORDER BY n DESC, t.name",
            &[],
        )
        .await
        .map_err(db_err("building the project report"))?;
    Ok(Json(ProjectStatsReport {
        tenants: rows
            .iter()
            .map(|r| ProjectStats {
                tenant_id: r.get(0),
                tenant_name: r.get(1),
                project_count: r.get(2),
                last_activity: r.get(3),
            })
            .collect(),
    }))
}
