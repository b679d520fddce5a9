//! `/v1/invoices`: viewers read, admins write. Invoice numbers are unique per tenant
//! (a duplicate is a 409).

use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{Admin, Db, Need, Viewer};
use super::error::{ApiError, Problem};
use super::extract::{
    audited, created, delete, nullable, Audit, Check, Cursor, Json, ListQuery, Page, PageParams,
    Patch, Path, Query, Source,
};
use super::AppState;

const COLS: &str = "id, number, customer_name, amount_minor, currency, status, issued_on, due_on, created_at, updated_at";
const GET: &str = "SELECT id, number, customer_name, amount_minor, currency, status, issued_on, due_on, created_at, updated_at FROM invoices WHERE id = $1";
const RESOURCE: &str = "invoice";
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

impl Invoice {
    fn from_row(r: &Row) -> Self {
        Self {
            id: r.get(0),
            number: r.get(1),
            customer_name: r.get(2),
            amount_minor: r.get(3),
            currency: r.get(4),
            status: r.get(5),
            issued_on: r.get(6),
            due_on: r.get(7),
            created_at: r.get(8),
            updated_at: r.get(9),
        }
    }
    fn cursor(&self) -> Cursor {
        Cursor {
            at: self.created_at,
            id: self.id,
        }
    }
}

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
    #[schema(minimum = 0)]
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
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\u0000]*$")]
    pub customer_name: Option<String>,
    /// New amount.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub amount_minor: Option<i64>,
    /// New currency.
    #[serde(default)]
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
    /// New status.
    #[serde(default)]
    #[schema(value_type = Option<InvoiceStatus>)]
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
    #[param(max_length = 128)]
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
    Ok(Json(
        q.run(
            &mut db,
            Source {
                table: "invoices",
                columns: COLS,
                time: "created_at",
            },
            &page,
            Invoice::from_row,
            Invoice::cursor,
        )
        .await?,
    ))
}

/// Creates an invoice.
#[utoipa::path(post, path = "/v1/invoices", tag = "invoices", operation_id = "invoices_create", extensions(("x-min-role" = json!("admin"))), request_body = NewInvoice,
    responses((status = 201, body = Invoice), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create(
    Need(p, ..): Need<Admin>,
    mut db: Db,
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
    let sql = audited(
        "INSERT INTO invoices (number, customer_name, amount_minor, currency, status, issued_on, due_on) \
         VALUES ($1, $2, $3, $4, COALESCE($5, 'draft'), $6, $7)",
        COLS,
        8,
    );
    let details = serde_json::json!({ "changed": ["number", "customer_name", "amount_minor", "currency", "status", "issued_on", "due_on"] });
    let row = created(
        &mut db,
        &sql,
        &[
            &b.number,
            &b.customer_name,
            &b.amount_minor,
            &b.currency,
            &b.status,
            &b.issued_on,
            &b.due_on,
            &p.actor,
            &"create",
            &RESOURCE,
            &details,
        ],
    )
    .await?;
    Ok((StatusCode::CREATED, Json(Invoice::from_row(&row))))
}

/// Gets one invoice.
#[utoipa::path(get, path = "/v1/invoices/{id}", tag = "invoices", operation_id = "invoices_get", extensions(("x-min-role" = json!("viewer"))), params(("id" = Uuid, Path)),
    responses((status = 200, body = Invoice), (status = 404, body = Problem)))]
pub(crate) async fn get_one(
    _: Need<Viewer>,
    mut db: Db,
    Path(id): Path<Uuid>,
) -> Result<Json<Invoice>, ApiError> {
    let row = db.query_opt(GET, &[&id]).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(Invoice::from_row(&row)))
}

/// Changes an invoice (its number is fixed).
#[utoipa::path(patch, path = "/v1/invoices/{id}", tag = "invoices", operation_id = "invoices_update", extensions(("x-min-role" = json!("admin"))), params(("id" = Uuid, Path)),
    request_body = InvoicePatch,
    responses((status = 200, body = Invoice), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn update(
    Need(p, ..): Need<Admin>,
    mut db: Db,
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
    let row = patch
        .run(
            &mut db,
            "invoices",
            COLS,
            Audit {
                actor: &p.actor,
                resource: RESOURCE,
            },
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(Invoice::from_row(&row)))
}

/// Deletes an invoice.
#[utoipa::path(delete, path = "/v1/invoices/{id}", tag = "invoices", operation_id = "invoices_delete", extensions(("x-min-role" = json!("admin"))), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub(crate) async fn remove(
    Need(p, ..): Need<Admin>,
    mut db: Db,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    delete(
        &mut db,
        "invoices",
        id,
        Audit {
            actor: &p.actor,
            resource: RESOURCE,
        },
    )
    .await
}
