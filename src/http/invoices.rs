//! `/v1/invoices`: viewers read, admins write. Invoice numbers are unique per tenant
//! (a duplicate is a 409).

use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{Admin, Db, Need, Viewer};
use super::error::{ApiError, Problem};
use super::extract::{
    delete, get_json_by_id, integer, not_null, nullable, record, some_integer, Check, Insert, Json,
    ListQuery, Page, PageParams, Patch, Path, Query,
};
use super::AppState;

pub(crate) const STATUSES: [&str; 4] = ["draft", "issued", "paid", "void"];

/// An invoice's status: the OpenAPI schema of [`STATUSES`] (the document's test checks they
/// agree).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // Only its schema is used.
enum InvoiceStatus {
    Draft,
    Issued,
    Paid,
    Void,
}

record! {
table = "invoices", resource = "invoice", time = created_at;
/// An invoice.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Invoice {
    /// Id.
    pub id: Uuid,
    /// Number, unique in the tenant.
    pub number: String,
    /// Customer.
    pub customer_name: String,
    /// Amount in minor units (cents).
    pub amount_minor: i64,
    /// ISO 4217 currency code.
    pub currency: String,
    /// `draft`, `issued`, `paid` or `void`.
    pub status: String,
    /// Issue date.
    pub issued_on: Option<NaiveDate>,
    /// Due date (not before the issue date).
    pub due_on: Option<NaiveDate>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}
}

/// The largest amount: 2^53 − 1, the largest integer every JSON client reads exactly (the
/// document's `maximum`; a bigint column would take more, a JavaScript client would not).
pub const MAX_AMOUNT: i64 = 9_007_199_254_740_991;
const AMOUNT_RANGE: &str = "must be between 0 and 9007199254740991";

/// Body of `POST /v1/invoices`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvoice {
    /// Number.
    #[schema(min_length = 1, max_length = 64, pattern = "^[^\\u0000]*$")]
    pub number: String,
    /// Customer.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\u0000]*$")]
    pub customer_name: String,
    /// Amount in minor units, ≥ 0.
    #[serde(deserialize_with = "integer")]
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    pub amount_minor: i64,
    /// Currency, three capital letters.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
    /// Status (default `draft`).
    #[serde(default)]
    #[schema(value_type = Option<InvoiceStatus>)]
    pub status: Option<String>,
    /// Issue date.
    #[serde(default)]
    pub issued_on: Option<NaiveDate>,
    /// Due date.
    #[serde(default)]
    pub due_on: Option<NaiveDate>,
}

/// Body of `PATCH /v1/invoices/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoicePatch {
    /// New customer.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000]*$"
    )]
    pub customer_name: Option<String>,
    /// New amount.
    #[serde(default, deserialize_with = "some_integer")]
    #[schema(nullable = false, minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    pub amount_minor: Option<i64>,
    /// New currency.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false, pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
    /// New status.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false, value_type = Option<InvoiceStatus>)]
    pub status: Option<String>,
    /// New issue date (`null` clears).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<NaiveDate>)]
    pub issued_on: Option<Option<NaiveDate>>,
    /// New due date (`null` clears).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<NaiveDate>)]
    pub due_on: Option<Option<NaiveDate>>,
}

/// Filters of `GET /v1/invoices`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InvoiceFilter {
    /// Only invoices with this status.
    #[param(value_type = InvoiceStatus, required = false)]
    pub status: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// Cursor.
    pub cursor: Option<String>,
}

fn valid_currency(c: &str) -> bool {
    c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())
}

/// The routes and their OpenAPI operations, from one declaration: each handler's
/// `#[utoipa::path]` gives both its route and its document entry.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, remove))
}

/// Lists invoices, newest first.
#[utoipa::path(get, path = "/v1/invoices", tag = "invoices", operation_id = "invoices_list", extensions(("x-min-role" = json!("viewer"))), params(InvoiceFilter),
    responses((status = 200, body = Page<Invoice>), (status = 400, body = Problem)))]
pub(crate) async fn list(
    _: Need<Viewer>,
    mut db: Db,
    Query(f): Query<InvoiceFilter>,
) -> Result<super::json::JsonBytes, ApiError> {
    Check::new()
        .one_of("status", f.status.as_deref(), &STATUSES)
        .done()?;
    let page = PageParams {
        limit: f.limit,
        cursor: f.cursor,
    };
    let mut q = ListQuery::new();
    q.eq("status", f.status);
    q.run_json::<Invoice>(&mut db, &page).await
}

/// Creates an invoice.
#[utoipa::path(post, path = "/v1/invoices", tag = "invoices", operation_id = "invoices_create", extensions(("x-min-role" = json!("admin"))), request_body = NewInvoice,
    responses((status = 201, body = Invoice), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create(
    Need(p, ..): Need<Admin>,
    db: Db,
    Json(b): Json<NewInvoice>,
) -> Result<(StatusCode, Json<Invoice>), ApiError> {
    Check::new()
        .len("number", Some(&b.number), 1, 64)
        .len("customer_name", Some(&b.customer_name), 1, 255)
        .that(
            (0..=MAX_AMOUNT).contains(&b.amount_minor),
            "amount_minor",
            AMOUNT_RANGE,
        )
        .that(
            valid_currency(&b.currency),
            "currency",
            "must be three capital letters (ISO 4217)",
        )
        .one_of("status", b.status.as_deref(), &STATUSES)
        .that(
            !matches!((b.issued_on, b.due_on), (Some(i), Some(d)) if d < i),
            "due_on",
            "must not be before issued_on",
        )
        .done()?;
    let mut insert = Insert::new();
    insert
        .set("number", b.number)
        .set("customer_name", b.customer_name)
        .set("amount_minor", b.amount_minor)
        .set("currency", b.currency)
        .set_or("status", b.status, "'draft'")
        .set("issued_on", b.issued_on)
        .set("due_on", b.due_on);
    Ok((StatusCode::CREATED, Json(insert.run(db, &p.actor).await?)))
}

/// Gets one invoice.
#[utoipa::path(get, path = "/v1/invoices/{id}", tag = "invoices", operation_id = "invoices_get", extensions(("x-min-role" = json!("viewer"))), params(("id" = Uuid, Path)),
    responses((status = 200, body = Invoice), (status = 404, body = Problem)))]
pub(crate) async fn get_one(
    _: Need<Viewer>,
    mut db: Db,
    Path(id): Path<Uuid>,
) -> Result<super::json::JsonBytes, ApiError> {
    get_json_by_id::<Invoice>(&mut db, id).await
}

/// Changes an invoice (its number is fixed).
#[utoipa::path(patch, path = "/v1/invoices/{id}", tag = "invoices", operation_id = "invoices_update", extensions(("x-min-role" = json!("admin"))), params(("id" = Uuid, Path)),
    request_body = InvoicePatch,
    responses((status = 200, body = Invoice), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn update(
    Need(p, ..): Need<Admin>,
    db: Db,
    Path(id): Path<Uuid>,
    Json(b): Json<InvoicePatch>,
) -> Result<Json<Invoice>, ApiError> {
    Check::new()
        .len("customer_name", b.customer_name.as_deref(), 1, 255)
        .that(
            b.amount_minor.is_none_or(|a| (0..=MAX_AMOUNT).contains(&a)),
            "amount_minor",
            AMOUNT_RANGE,
        )
        .that(
            b.currency.as_deref().is_none_or(valid_currency),
            "currency",
            "must be three capital letters (ISO 4217)",
        )
        .one_of("status", b.status.as_deref(), &STATUSES)
        .done()?;
    let mut patch = Patch::new(id);
    patch
        .set("customer_name", b.customer_name)
        .set("amount_minor", b.amount_minor)
        .set("currency", b.currency)
        .set("status", b.status)
        .set("issued_on", b.issued_on)
        .set("due_on", b.due_on);
    Ok(Json(patch.run(db, &p.actor).await?))
}

/// Deletes an invoice.
#[utoipa::path(delete, path = "/v1/invoices/{id}", tag = "invoices", operation_id = "invoices_delete", extensions(("x-min-role" = json!("admin"))), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub(crate) async fn remove(
    Need(p, ..): Need<Admin>,
    db: Db,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    delete::<Invoice>(db, id, &p.actor).await
}
