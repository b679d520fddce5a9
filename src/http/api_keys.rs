//! `/v1/api-keys`: admins create and revoke the tenant's API keys. A key is shown once,
//! at creation; only its hash and a short display prefix are stored. A key can never get
//! a stronger role than the caller's. Keys of the owner role follow the rule of members
//! of the owner role: only an owner creates or revokes them; and a tenant's last active
//! owner key cannot be revoked by anyone (403 / 409). The admin API can issue a key for
//! an existing tenant (`POST /admin/v1/tenants/{id}/api-keys`).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{new_api_key, Admin, Db, Need, Role};
use super::error::{ApiError, Problem, Write, WriteKind};
use super::extract::{
    audited, get_row_by_id, record, row_json, Check, Insert, Json, ListQuery, Page, PageParams,
    Path, Query, Record,
};
use super::AppState;

record! {
table = "api_keys", resource = "api_key", time = created_at;
/// An API key, without its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    /// Id.
    pub id: Uuid,
    /// Label.
    pub name: String,
    /// Display prefix (not usable as a key).
    pub prefix: String,
    /// Role it grants.
    pub role: Role,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last use (recorded within seconds).
    pub last_used_at: Option<DateTime<Utc>>,
    /// Revocation time.
    pub revoked_at: Option<DateTime<Utc>>,
}
}

/// A new key: the only time its secret is shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
    /// The key's metadata.
    #[serde(flatten)]
    pub key: ApiKey,
    /// The secret key, `tgk_…`: store it now, it cannot be shown again.
    pub api_key: String,
}

/// Body of `POST /v1/api-keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// Label.
    #[schema(min_length = 1, max_length = 200, pattern = "^[^\\u0000]*$")]
    pub name: String,
    /// Role (at most the caller's).
    pub role: Role,
}

/// The routes and their OpenAPI operations, from one declaration: each handler's
/// `#[utoipa::path]` gives both its route and its document entry.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, revoke))
}

/// Lists keys, newest first.
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", operation_id = "api_keys_list", extensions(("x-min-role" = json!("admin"))), params(PageParams),
    responses((status = 200, body = Page<ApiKey>), (status = 403, body = Problem)))]
pub(crate) async fn list(
    _: Need<Admin>,
    mut db: Db,
    Query(page): Query<PageParams>,
) -> Result<super::json::JsonBytes, ApiError> {
    ListQuery::new().run_json::<ApiKey>(&mut db, &page).await
}

/// Creates a key and shows it once (a replay of an `Idempotency-Key` request answers with
/// `api_key` empty: the secret is never stored).
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", operation_id = "api_keys_create", extensions(("x-min-role" = json!("admin"))), request_body = NewApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create(
    Need(p, ..): Need<Admin>,
    db: Db,
    Json(b): Json<NewApiKey>,
) -> Result<
    (
        StatusCode,
        axum::Extension<super::idempotency::Redact>,
        Json<CreatedApiKey>,
    ),
    ApiError,
> {
    Check::new().len("name", Some(&b.name), 1, 200).done()?;
    p.require(b.role)?;
    let key = new_api_key(p.tenant);
    let mut insert = Insert::new();
    insert
        .set("name", b.name)
        .set_unaudited("prefix", key.prefix)
        .set_unaudited("key_hash", key.hash.to_vec())
        .set("role", b.role.as_str())
        .detail("role", b.role.as_str());
    let created = insert.run(db, &p.actor).await?;
    Ok((
        StatusCode::CREATED,
        axum::Extension(super::idempotency::Redact(&["api_key"])),
        Json(CreatedApiKey {
            key: created,
            api_key: key.key,
        }),
    ))
}

/// Gets one active key's metadata. A revoked key is 404, as any resource after its DELETE
/// (the DELETE revoked it); the list still shows it, with its `revoked_at`.
#[utoipa::path(get, path = "/v1/api-keys/{id}", tag = "api-keys", operation_id = "api_keys_get", extensions(("x-min-role" = json!("admin"))), params(("id" = Uuid, Path)),
    responses((status = 200, body = ApiKey),
        (status = 404, description = "no such key in this tenant, or a revoked one (its DELETE is done; `GET /v1/api-keys` still lists it with its `revoked_at`)", body = Problem)))]
pub(crate) async fn get_one(
    _: Need<Admin>,
    mut db: Db,
    Path(id): Path<Uuid>,
) -> Result<super::json::JsonBytes, ApiError> {
    let row = get_row_by_id::<ApiKey>(&mut db, id).await?;
    let revoked: Option<DateTime<Utc>> = row
        .try_get("revoked_at")
        .map_err(|e| super::extract::record::column_error("revoked_at", &e))?;
    if revoked.is_some() {
        return Err(ApiError::NotFound);
    }
    row_json::<ApiKey>(&row)
}

/// Revokes a key: it stops working at once on this server, within the cache TTL elsewhere.
/// An owner key can only be revoked by an owner (403), and never the tenant's last active
/// owner key (409).
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys", operation_id = "api_keys_revoke", extensions(("x-min-role" = json!("admin"))), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Need(p, ..): Need<Admin>,
    mut db: Db,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    // Locks the target and every active owner key, in id order (so two revocations
    // cannot deadlock, and the second one waits and then sees what the first did): two
    // owners revoking each other's key at once cannot leave the tenant without one.
    let tenant = db.tenant().as_uuid();
    let rows = db
        .query(
            "SELECT id, role FROM api_keys \
             WHERE tenant_id = $2 AND revoked_at IS NULL AND (id = $1 OR role = 'owner') \
             ORDER BY id FOR UPDATE",
            &[&id, &tenant],
        )
        .await?;
    let target = rows
        .iter()
        .find(|r| r.get::<_, Uuid>(0) == id)
        .ok_or(ApiError::NotFound)?;
    if target.get::<_, &str>(1) == Role::Owner.as_str() {
        p.require(Role::Owner)?;
        let owners = rows
            .iter()
            .filter(|r| r.get::<_, &str>(1) == Role::Owner.as_str())
            .count();
        if owners <= 1 {
            return Err(ApiError::Conflict(
                "this is the tenant's last active owner key; create another owner key first".into(),
            ));
        }
    }
    let sql = audited(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL",
        "id",
        3,
        1,
        Some(2),
        true,
    );
    let details = serde_json::json!({ "changed": ["revoked_at"] });
    let write = Write {
        table: ApiKey::TABLE.name,
        kind: WriteKind::Update,
    };
    let resource = ApiKey::TABLE.resource;
    let row = db
        .finish(
            write,
            &sql,
            &[&id, &tenant, &p.actor, &"revoke", &resource, &details],
        )
        .await?;
    if row.is_none() {
        return Err(ApiError::NotFound);
    }
    state.auth().evict_key(id);
    Ok(StatusCode::NO_CONTENT)
}
