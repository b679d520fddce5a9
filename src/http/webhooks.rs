//! `/v1/webhooks`: admins manage the tenant's webhook endpoints. The signing secret is
//! generated here and shown once, at creation.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{Admin, Db, Need};
use super::error::{ApiError, Problem};
use super::extract::{
    delete, get_json_by_id, not_null, record, Check, Insert, Json, ListQuery, Page, PageParams,
    Patch, Path, Query,
};
use super::AppState;

record! {
table = "webhooks", resource = "webhook", time = created_at;
/// A webhook endpoint (its secret is never shown again after creation).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Webhook {
    /// Id.
    pub id: Uuid,
    /// Target URL (http or https).
    pub url: String,
    /// Events delivered.
    pub event_types: Vec<String>,
    /// Whether deliveries are on.
    pub active: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}
}

/// A new webhook with its signing secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedWebhook {
    /// The webhook.
    #[serde(flatten)]
    pub webhook: Webhook,
    /// HMAC signing secret: store it now, it cannot be shown again.
    pub signing_secret: String,
}

/// Body of `POST /v1/webhooks`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Target URL.
    #[schema(
        min_length = 1,
        max_length = 2048,
        pattern = "^https?://[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$"
    )]
    pub url: String,
    /// 1–64 event type names.
    #[schema(min_items = 1, max_items = 64)]
    pub event_types: Vec<String>,
    /// Default true.
    #[serde(default)]
    pub active: Option<bool>,
}

/// Body of `PATCH /v1/webhooks/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    /// New URL.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 2048,
        pattern = "^https?://[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$"
    )]
    pub url: Option<String>,
    /// New event types.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false, min_items = 1, max_items = 64)]
    pub event_types: Option<Vec<String>>,
    /// Turn deliveries on or off.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    pub active: Option<bool>,
}

fn check(url: Option<&str>, events: Option<&[String]>) -> Result<(), ApiError> {
    let mut c = Check::new();
    c.len("url", url, 1, 2048);
    if let Some(u) = url {
        c.that(
            (u.starts_with("https://") || u.starts_with("http://"))
                && !u.chars().any(|ch| ch.is_whitespace() || ch.is_control()),
            "url",
            "must be an http(s) URL",
        );
    }
    if let Some(e) = events {
        c.that(
            (1..=64).contains(&e.len()),
            "event_types",
            "give 1 to 64 event types",
        );
        c.that(
            e.iter()
                .all(|t| (1..=100).contains(&t.chars().count()) && !t.contains('\0')),
            "event_types",
            "each event type must be 1 to 100 characters",
        );
    }
    c.done()
}

/// The routes and their OpenAPI operations, from one declaration: each handler's
/// `#[utoipa::path]` gives both its route and its document entry.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, remove))
}

/// Lists webhooks, newest first.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", operation_id = "webhooks_list", extensions(("x-min-role" = json!("admin"))), params(PageParams),
    responses((status = 200, body = Page<Webhook>), (status = 403, body = Problem)))]
pub(crate) async fn list(
    _: Need<Admin>,
    mut db: Db,
    Query(page): Query<PageParams>,
) -> Result<super::json::JsonBytes, ApiError> {
    ListQuery::new().run_json::<Webhook>(&mut db, &page).await
}

/// Creates a webhook and shows its signing secret once.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", operation_id = "webhooks_create", extensions(("x-min-role" = json!("admin"))), request_body = NewWebhook,
    responses((status = 201, body = CreatedWebhook), (status = 422, body = Problem)))]
pub(crate) async fn create(
    Need(p, ..): Need<Admin>,
    db: Db,
    Json(b): Json<NewWebhook>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    check(Some(&b.url), Some(&b.event_types))?;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!("whsec_{}", hex::encode(bytes));
    let mut insert = Insert::new();
    insert
        .set("url", b.url)
        .set("event_types", b.event_types)
        .set_unaudited("signing_secret", secret.clone())
        .set_or("active", b.active, "true");
    let webhook = insert.run(db, &p.actor).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            webhook,
            signing_secret: secret,
        }),
    ))
}

/// Gets one webhook.
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "webhooks_get", extensions(("x-min-role" = json!("admin"))), params(("id" = Uuid, Path)),
    responses((status = 200, body = Webhook), (status = 404, body = Problem)))]
pub(crate) async fn get_one(
    _: Need<Admin>,
    mut db: Db,
    Path(id): Path<Uuid>,
) -> Result<super::json::JsonBytes, ApiError> {
    get_json_by_id::<Webhook>(&mut db, id).await
}

/// Changes a webhook.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "webhooks_update", extensions(("x-min-role" = json!("admin"))), params(("id" = Uuid, Path)),
    request_body = WebhookPatch,
    responses((status = 200, body = Webhook), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn update(
    Need(p, ..): Need<Admin>,
    db: Db,
    Path(id): Path<Uuid>,
    Json(b): Json<WebhookPatch>,
) -> Result<Json<Webhook>, ApiError> {
    check(b.url.as_deref(), b.event_types.as_deref())?;
    let mut patch = Patch::new(id);
    patch
        .set("url", b.url)
        .set("event_types", b.event_types)
        .set("active", b.active);
    Ok(Json(patch.run(db, &p.actor).await?))
}

/// Deletes a webhook.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "webhooks_delete", extensions(("x-min-role" = json!("admin"))), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub(crate) async fn remove(
    Need(p, ..): Need<Admin>,
    db: Db,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    delete::<Webhook>(db, id, &p.actor).await
}
