//! `/v1/invoices`: viewers read, admins write. Invoice numbers are unique per tenant
//! (a duplicate is a 409).

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auth::{Admin, Db, Need, Viewer};
use super::error::{ApiError, Problem};
use super::extract::{
    delete, get_by_id, nullable, record, Check, Insert, Json, ListQuery, Page, PageParams, Patch,
    Path, Query,
};
use super::AppState;

const STATUSES: [&str; 4] = ["draft", "issued", "paid", "void"];

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

/// Body of `POST /v1/invoices`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvoice {
    /// Number.
    pub number: String,
    /// Customer.
    pub customer_name: String,
    /// Amount in minor units, ≥ 0.
    pub amount_minor: i64,
    /// Currency, three capital letters.
    pub currency: String,
    /// Status (default `draft`).
    #[serde(default)]
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
    #[serde(default)]
    pub customer_name: Option<String>,
    /// New amount.
    #[serde(default)]
    pub amount_minor: Option<i64>,
    /// New currency.
    #[serde(default)]
    pub currency: Option<String>,
    /// New status.
    #[serde(default)]
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
    pub status: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
    /// Cursor.
    pub cursor: Option<String>,
}

fn valid_currency(c: &str) -> bool {
    c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())
}

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/invoices", get(list).post(create))
        .route(
            "/v1/invoices/{id}",
            get(get_one).patch(update).delete(remove),
        )
}

/// Lists invoices, newest first.
#[utoipa::path(get, path = "/v1/invoices", tag = "invoices", params(InvoiceFilter),
    responses((status = 200, body = Page<Invoice>), (status = 400, body = Problem)))]
pub(crate) async fn list(
    _: Need<Viewer>,
    mut db: Db,
    Query(f): Query<InvoiceFilter>,
) -> Result<Json<Page<Invoice>>, ApiError> {
    Check::new()
        .one_of("status", f.status.as_deref(), &STATUSES)
        .done()?;
    let page = PageParams {
        limit: f.limit,
        cursor: f.cursor,
    };
    let mut q = ListQuery::new();
    q.eq("status", f.status);
    Ok(Json(q.run(&mut db, &page).await?))
}

/// Creates an invoice.
#[utoipa::path(post, path = "/v1/invoices", tag = "invoices", request_body = NewInvoice,
    responses((status = 201, body = Invoice), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create(
    Need(p, ..): Need<Admin>,
    db: Db,
    Json(b): Json<NewInvoice>,
) -> Result<(StatusCode, Json<Invoice>), ApiError> {
    Check::new()
        .len("number", Some(&b.number), 1, 64)
        .len("customer_name", Some(&b.customer_name), 1, 255)
        .that(b.amount_minor >= 0, "amount_minor", "must not be negative")
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
#[utoipa::path(get, path = "/v1/invoices/{id}", tag = "invoices", params(("id" = Uuid, Path)),
    responses((status = 200, body = Invoice), (status = 404, body = Problem)))]
pub(crate) async fn get_one(
    _: Need<Viewer>,
    mut db: Db,
    Path(id): Path<Uuid>,
) -> Result<Json<Invoice>, ApiError> {
    Ok(Json(get_by_id(&mut db, id).await?))
}

/// Changes an invoice (its number is fixed).
#[utoipa::path(patch, path = "/v1/invoices/{id}", tag = "invoices", params(("id" = Uuid, Path)),
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
            b.amount_minor.is_none_or(|a| a >= 0),
            "amount_minor",
            "must not be negative",
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
#[utoipa::path(delete, path = "/v1/invoices/{id}", tag = "invoices", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub(crate) async fn remove(
    Need(p, ..): Need<Admin>,
    db: Db,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    delete::<Invoice>(db, id, &p.actor).await
}
