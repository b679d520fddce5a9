//! One error type for every handler, rendered as RFC 9457 `application/problem+json`.
//!
//! Database errors are mapped by SQLSTATE and constraint name (unique → 409, foreign key
//! and check → 422, unavailable → 503) and logged; their text never reaches the client.
//! Anything a client can send maps to a 4xx: a 500 means a bug on our side.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio_postgres::error::SqlState;

use crate::pool::PoolError;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field of a request, in a 422's `errors` list.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's name in the request body or query.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed JSON, ids, cursors or query parameters.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no credential, or one that does not authenticate.
    #[error("missing or invalid credentials")]
    Unauthorized,
    /// 403: authenticated, but the role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource (in this tenant: another tenant's id looks the same).
    #[error("not found")]
    NotFound,
    /// 409: the request conflicts with existing data.
    #[error("{0}")]
    Conflict(String),
    /// 408: the client did not send the whole body in time.
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// 413: the body exceeds the limit.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    #[error("expected `Content-Type: application/json`")]
    UnsupportedMediaType,
    /// 422: well-formed but invalid; per-field details.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 429: the caller's tenant or credential is at its concurrency or rate limit; retry
    /// after this many seconds.
    #[error("too many requests: {what}; retry after {retry_after_secs} s")]
    TooManyRequests {
        /// Which limit (`tenant concurrency`, `credential rate`, …).
        what: &'static str,
        /// Seconds until a retry can succeed (the `Retry-After` header).
        retry_after_secs: u64,
    },
    /// 503: the database cannot be reached, or the server is overloaded.
    #[error("service temporarily unavailable")]
    Unavailable,
    /// 503: a prepared statement was lost between transactions (SQLSTATE 26000): a
    /// transaction-mode pooler that does not keep prepared statements is in front of the
    /// database and the statement cache is on. Logged with the fix; `/readyz` reports it.
    #[error(
        "service temporarily unavailable: the database pooler does not keep prepared statements"
    )]
    StatementsLost,
    /// 500: a bug; logged with its cause, shown as a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 422 about one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable | ApiError::StatementsLost => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The RFC 9457 body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type (`about:blank`: the status says it all).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// A human-readable explanation of this occurrence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Per-field validation errors (422 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// Builds a problem+json response for `status`.
pub fn problem(status: StatusCode, detail: Option<String>, errors: Vec<FieldError>) -> Response {
    let body = Problem {
        kind: "about:blank",
        title: status.canonical_reason().unwrap_or("Error").to_string(),
        status: status.as_u16(),
        detail,
        errors,
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut res = (status, bytes).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    res
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            ApiError::Validation(errors) => problem(
                status,
                Some("the request has invalid fields".into()),
                errors,
            ),
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                problem(status, Some("internal error".into()), Vec::new())
            }
            ApiError::TooManyRequests {
                retry_after_secs, ..
            } => {
                let detail = self.to_string();
                let mut res = problem(status, Some(detail), Vec::new());
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                res
            }
            ApiError::RequestTimeout | ApiError::PayloadTooLarge => {
                let mut res = problem(status, Some(self.to_string()), Vec::new());
                // The rest of the body is not read: the connection cannot be reused.
                res.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                res
            }
            ApiError::StatementsLost => {
                tracing::error!(
                    "{} (SQLSTATE 26000): {STATEMENTS_LOST_FIX}",
                    "a prepared statement was lost between transactions"
                );
                let mut res = problem(status, Some(self.to_string()), Vec::new());
                res.extensions_mut().insert(StatementsLostMarker);
                res
            }
            other => problem(status, Some(other.to_string()), Vec::new()),
        }
    }
}

/// What to do when the pooler loses prepared statements (logged, and shown by `/readyz`).
pub const STATEMENTS_LOST_FIX: &str = "a transaction-mode pooler that does not keep prepared statements (pgbouncer before 1.21, or max_prepared_statements = 0) is in front of the database: set TENANTGUARD_STATEMENT_CACHE=off (--statement-cache off), or use pgbouncer 1.21 or later with max_prepared_statements > 0";

/// Set on a response answered [`ApiError::StatementsLost`], so the server (which owns the
/// state) can report it in `/readyz`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StatementsLostMarker;

/// The field a constraint is about: `<table>_<field>_check` → `<field>`,
/// `<table>_<field>_fkey` → `<field>_id`, a named table constraint → its name.
fn constraint_field(table: &str, constraint: &str) -> String {
    let rest = constraint
        .strip_prefix(table)
        .and_then(|s| s.strip_prefix('_'))
        .unwrap_or(constraint);
    if let Some(f) = rest.strip_suffix("_check") {
        f.to_string()
    } else if let Some(f) = rest.strip_suffix("_fkey") {
        format!("{f}_id")
    } else if let Some(f) = rest.strip_suffix("_key") {
        f.to_string()
    } else {
        rest.to_string()
    }
}

impl From<PoolError> for ApiError {
    fn from(e: PoolError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %crate::error_chain(&e), "database unavailable");
            return ApiError::Unavailable;
        }
        let (table, constraint, message) = match &e {
            PoolError::Db { source, .. } => source
                .as_db_error()
                .map(|d| {
                    (
                        d.table().unwrap_or("").to_string(),
                        d.constraint().unwrap_or("").to_string(),
                        d.message().to_string(),
                    )
                })
                .unwrap_or_default(),
            _ => Default::default(),
        };
        let field = constraint_field(&table, &constraint);
        match e.code() {
            Some(c) if *c == SqlState::INVALID_SQL_STATEMENT_NAME => ApiError::StatementsLost,
            Some(c) if *c == SqlState::UNIQUE_VIOLATION => {
                ApiError::Conflict(format!("a resource with this {field} already exists"))
            }
            Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => {
                if constraint.ends_with("_tenant_id_fkey") {
                    // A signed JWT naming a tenant that does not exist: it can read
                    // (nothing) but not write.
                    ApiError::Forbidden("the credential's tenant does not exist".into())
                } else if message.starts_with("update or delete") {
                    ApiError::Conflict("the resource is still referenced".into())
                } else {
                    ApiError::field(field, "refers to a resource that does not exist")
                }
            }
            Some(c) if *c == SqlState::CHECK_VIOLATION => {
                ApiError::field(field, "violates a constraint")
            }
            Some(c) if *c == SqlState::NOT_NULL_VIOLATION => ApiError::field(field, "is required"),
            Some(c)
                if *c == SqlState::INVALID_TEXT_REPRESENTATION
                    || *c == SqlState::DATETIME_FIELD_OVERFLOW
                    || *c == SqlState::NUMERIC_VALUE_OUT_OF_RANGE
                    || *c == SqlState::STRING_DATA_RIGHT_TRUNCATION
                    || *c == SqlState::CHARACTER_NOT_IN_REPERTOIRE
                    || *c == SqlState::UNTRANSLATABLE_CHARACTER
                    || *c == SqlState::INVALID_DATETIME_FORMAT
                    || *c == SqlState::PROGRAM_LIMIT_EXCEEDED =>
            {
                ApiError::BadRequest("a value is out of range or malformed".into())
            }
            Some(c)
                if *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
                    || *c == SqlState::LOCK_NOT_AVAILABLE =>
            {
                ApiError::Conflict("concurrent update; retry the request".into())
            }
            Some(c)
                if *c == SqlState::QUERY_CANCELED
                    || *c == SqlState::TOO_MANY_CONNECTIONS
                    || *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::CANNOT_CONNECT_NOW =>
            {
                tracing::warn!(error = %crate::error_chain(&e), "database busy");
                ApiError::Unavailable
            }
            Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => {
                // An RLS WITH CHECK failure: the row would belong to another tenant.
                tracing::warn!(error = %crate::error_chain(&e), "row-level security refused a write");
                ApiError::Forbidden("not allowed".into())
            }
            _ => ApiError::Internal(crate::error_chain(&e)),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
            StatusCode::UNPROCESSABLE_ENTITY => {
                let text = r.body_text();
                let msg = text
                    .strip_prefix("Failed to deserialize the JSON body into the target type: ")
                    .unwrap_or(&text);
                // serde_path_to_error prefixes the failing path: `name: invalid type…`.
                let (field, message) = match msg.split_once(": ") {
                    Some((f, m)) if !f.contains(' ') => (f.to_string(), m.to_string()),
                    _ => ("body".to_string(), msg.to_string()),
                };
                // serde names the offending field in backquotes for these two.
                let field = if message.starts_with("unknown field")
                    || message.starts_with("missing field")
                {
                    message
                        .split('`')
                        .nth(1)
                        .map(str::to_string)
                        .unwrap_or(field)
                } else {
                    field
                };
                ApiError::Validation(vec![FieldError::new(field, message)])
            }
            _ => ApiError::BadRequest(format!("malformed JSON body: {}", r.body_text())),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        ApiError::BadRequest("malformed id in the path: expected a UUID".into())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest(format!("invalid query parameters: {}", r.body_text()))
    }
}

/// Rewrites any error response that is not yet problem+json (timeouts, panics, 404/405
/// from routing, limits enforced by tower layers) into one, so every error has one shape.
pub async fn ensure_problem(res: Response) -> Response {
    ensure_problem_now(res)
}

/// [`ensure_problem`] as a plain function, for a synchronous `map_response` layer (no
/// boxed future per request).
pub fn ensure_problem_now(res: Response) -> Response {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON));
    if is_problem {
        return res;
    }
    let detail = match status {
        StatusCode::NOT_FOUND => "no such route",
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this route",
        StatusCode::PAYLOAD_TOO_LARGE => "request body too large",
        StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => {
            "the request took too long or the service is unavailable"
        }
        StatusCode::INTERNAL_SERVER_ERROR => "internal error",
        _ => "request failed",
    };
    let mut out = problem(status, Some(detail.into()), Vec::new());
    // Keep headers such as Allow (405) and the request id.
    for (k, v) in res.headers() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::constraint_field;

    #[test]
    fn constraint_names_map_to_fields() {
        assert_eq!(constraint_field("projects", "projects_name_check"), "name");
        assert_eq!(
            constraint_field("tasks", "tasks_project_fkey"),
            "project_id"
        );
        assert_eq!(
            constraint_field("invoices", "invoices_number_key"),
            "number"
        );
        assert_eq!(constraint_field("invoices", "invoices_dates"), "dates");
    }
}
