//! One error type for every handler, rendered as RFC 9457 `application/problem+json`.
//!
//! Database errors are mapped by SQLSTATE and the error's table, constraint and column
//! fields (unique → 409, foreign key → 422 or 409 by which side the failed write was on,
//! check and not-null → 422, unavailable → 503, a bug → 500), never by the message's
//! wording, which depends on `lc_messages`; where a backend strips the fields (Citus
//! workers), the names are read from the message's quoted identifiers (see
//! [`ApiError::from_write`]). The text never reaches the client.
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

/// What a failed statement was writing, so that a foreign-key violation can be told
/// the right way round without reading the message: PostgreSQL reports both directions
/// with the same SQLSTATE and with the *referencing* table in the `table` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write {
    /// The table the statement inserts into, updates or deletes from.
    pub table: &'static str,
    /// Which of the three.
    pub kind: WriteKind,
}

/// The kind of a [`Write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// `INSERT`: a foreign-key violation means a referenced row is missing (422).
    Insert,
    /// `UPDATE`: missing referenced row (422) if the key is on the updated table,
    /// otherwise rows elsewhere still reference it (409).
    Update,
    /// `DELETE`: rows elsewhere still reference it (409).
    Delete,
}

/// What a database error says, in the parts the mapping reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DbFacts<'a> {
    code: &'a SqlState,
    table: Option<&'a str>,
    constraint: Option<&'a str>,
    column: Option<&'a str>,
    message: &'a str,
}

/// The name without a Citus shard suffix (`tasks_project_fkey_102290` →
/// `tasks_project_fkey`): a worker's error names the shard's relation and constraint.
/// No name in the reference schema ends in `_<digits>`.
fn unsharded(name: &str) -> &str {
    match name.rsplit_once('_') {
        Some((base, digits))
            if !base.is_empty()
                && !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            base
        }
        _ => name,
    }
}

/// The quoted identifiers of a server message, in order, whatever the language: the
/// quotes PostgreSQL's translations use (`"x"`, `»x«`, `«x»`, `« x »`, `“x”`, `„x“`,
/// `「x」`, `'x'`), each opener with its closer. Only what is inside quotes is read,
/// never the words around it.
fn quoted_identifiers(message: &str) -> Vec<&str> {
    const PAIRS: [(char, char); 8] = [
        ('"', '"'),
        ('»', '«'),
        ('«', '»'),
        ('“', '”'),
        ('„', '“'),
        ('「', '」'),
        ('\'', '\''),
        ('‘', '’'),
    ];
    let mut out = Vec::new();
    let mut rest = message;
    while let Some((at, open)) = rest
        .char_indices()
        .find(|(_, c)| PAIRS.iter().any(|p| p.0 == *c))
    {
        let close = PAIRS.iter().find(|p| p.0 == open).map_or(open, |p| p.1);
        let inner = &rest[at + open.len_utf8()..];
        let Some(end) = inner.find(close) else { break };
        let ident = inner[..end].trim_matches(|c: char| c.is_whitespace());
        if !ident.is_empty()
            && ident
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '.')
        {
            out.push(ident);
        }
        rest = &inner[end + close.len_utf8()..];
    }
    out
}

/// The tables a reference-schema message can name.
fn known_table(name: &str) -> bool {
    name == "tenants" || crate::schema::TENANT_TABLES.contains(&name)
}

/// Table, constraint and column of an error, from its fields, shard suffixes stripped.
///
/// **Fallback**, where the backend sent no such fields (a Citus worker's error, relayed
/// by the coordinator, carries none): the names are read from the message's quoted
/// identifiers (see [`quoted_identifiers`]), never from its wording, so it holds under
/// any `lc_messages`. A quoted name that is one of the schema's tables is the table; the
/// first other one is the constraint (or, for a NOT NULL violation, the column). The
/// table is otherwise the one whose name, plus `_`, starts the constraint's (PostgreSQL's
/// default constraint names; the reference schema keeps them).
fn names(f: &DbFacts<'_>) -> (Option<String>, Option<String>, Option<String>) {
    let quoted: Vec<&str> = if f.table.is_none() || f.constraint.is_none() || f.column.is_none() {
        quoted_identifiers(f.message)
            .into_iter()
            .map(unsharded)
            .collect()
    } else {
        Vec::new()
    };
    let other = quoted.iter().copied().find(|n| !known_table(n));
    let not_null = *f.code == SqlState::NOT_NULL_VIOLATION;
    let constraint = f
        .constraint
        .map(unsharded)
        .or(if not_null { None } else { other });
    let column = f.column.or(if not_null { other } else { None });
    let table = f
        .table
        .map(unsharded)
        .or_else(|| quoted.iter().copied().find(|n| known_table(n)))
        .or_else(|| {
            let c = constraint?;
            std::iter::once("tenants")
                .chain(crate::schema::TENANT_TABLES)
                .filter(|t| c.len() > t.len() && c.starts_with(t) && c[t.len()..].starts_with('_'))
                .max_by_key(|t| t.len())
        });
    (
        table.map(str::to_string),
        constraint.map(str::to_string),
        column.map(str::to_string),
    )
}

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

/// The answer to a constraint violation (23xxx), or `None` for any other error.
fn constraint_error(f: &DbFacts<'_>, write: Option<Write>) -> Option<ApiError> {
    let (table, constraint, column) = names(f);
    let table = table.unwrap_or_default();
    let constraint = constraint.unwrap_or_default();
    let field = constraint_field(&table, &constraint);
    let c = f.code;
    Some(if *c == SqlState::UNIQUE_VIOLATION {
        ApiError::Conflict(format!("a resource with this {field} already exists"))
    } else if *c == SqlState::FOREIGN_KEY_VIOLATION {
        // The referencing side of the violated key: the table the constraint is on.
        let on_written = write.map(|w| w.table == table);
        if constraint.ends_with("_tenant_id_fkey") {
            // A signed JWT naming a tenant that does not exist: it can read (nothing)
            // but not write.
            ApiError::Forbidden("the credential's tenant does not exist".into())
        } else if match write.map(|w| w.kind) {
            Some(WriteKind::Delete) => true,
            Some(WriteKind::Update) => on_written == Some(false),
            // An insert cannot be referenced yet; without a known write, statements
            // that are not builders' are inserts or reads.
            Some(WriteKind::Insert) | None => false,
        } {
            ApiError::Conflict("the resource is still referenced".into())
        } else {
            ApiError::field(field, "refers to a resource that does not exist")
        }
    } else if *c == SqlState::CHECK_VIOLATION {
        ApiError::field(field, "violates a constraint")
    } else if *c == SqlState::NOT_NULL_VIOLATION {
        // The column field, as `<table>_<column>_not_null` is a constraint name only on
        // PostgreSQL 18.
        let field = column.unwrap_or_else(|| field.clone());
        ApiError::field(field, "is required")
    } else {
        return None;
    })
}

/// Whether the pool error means the database could not be reached: the pool timed out,
/// the connection is closed, or its I/O failed. Anything else without a SQLSTATE (a
/// value that cannot be encoded, a wrong parameter count, a row that does not decode) is
/// a bug of ours: a logged 500, never a 503 that would invite a retry.
fn unavailable(e: &PoolError) -> bool {
    if !e.is_unavailable() {
        return false;
    }
    match e {
        PoolError::Db { source, .. } if source.code().is_none() => {
            source.is_closed() || {
                let mut cause = std::error::Error::source(source);
                let mut io = false;
                while let Some(c) = cause {
                    io |= c.is::<std::io::Error>();
                    cause = c.source();
                }
                io
            }
        }
        _ => true,
    }
}

impl ApiError {
    /// A pool error from a statement that wrote `write` (see [`Write`]), mapped by
    /// SQLSTATE and the error's table, constraint and column fields (see [`names`] for
    /// the fallback where a backend strips those), never by message wording: unique →
    /// 409, foreign key → 422 (a referenced row is missing) or 409 (the row is still
    /// referenced), check and not-null → 422, unavailable → 503, a bug → 500.
    pub fn from_write(e: PoolError, write: Write) -> Self {
        Self::from_pool(e, Some(write))
    }

    fn from_pool(e: PoolError, write: Option<Write>) -> Self {
        if unavailable(&e) {
            tracing::warn!(error = %crate::error_chain(&e), "database unavailable");
            return ApiError::Unavailable;
        }
        let db = match &e {
            PoolError::Db { source, .. } => source.as_db_error(),
            _ => None,
        };
        if let Some(d) = db {
            let facts = DbFacts {
                code: d.code(),
                table: d.table(),
                constraint: d.constraint(),
                column: d.column(),
                message: d.message(),
            };
            if let Some(mapped) = constraint_error(&facts, write) {
                return mapped;
            }
        }
        match e.code() {
            Some(c) if *c == SqlState::INVALID_SQL_STATEMENT_NAME => ApiError::StatementsLost,
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

impl From<PoolError> for ApiError {
    /// [`ApiError::from_write`] for a statement that is not a builder's write (a read,
    /// a lock, a layer's own insert): a foreign-key violation is then read as a missing
    /// referenced row.
    fn from(e: PoolError) -> Self {
        ApiError::from_pool(e, None)
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
    use super::*;

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

    fn facts<'a>(code: &'a SqlState, message: &'a str) -> DbFacts<'a> {
        DbFacts {
            code,
            table: None,
            constraint: None,
            column: None,
            message,
        }
    }

    const TASKS_INSERT: Write = Write {
        table: "tasks",
        kind: WriteKind::Insert,
    };
    const PROJECTS_DELETE: Write = Write {
        table: "projects",
        kind: WriteKind::Delete,
    };

    #[test]
    fn shard_suffixes_are_stripped() {
        assert_eq!(unsharded("tasks_project_fkey_102290"), "tasks_project_fkey");
        assert_eq!(unsharded("tasks_102008"), "tasks");
        assert_eq!(unsharded("tasks_project_fkey"), "tasks_project_fkey");
        assert_eq!(unsharded("_1"), "_1");
    }

    #[test]
    fn quoted_identifiers_in_any_language() {
        for (message, want) in [
            (
                r#"insert or update on table "tasks_102008" violates foreign key constraint "tasks_project_fkey_102290""#,
                vec!["tasks_102008", "tasks_project_fkey_102290"],
            ),
            (
                "Einfügen oder Aktualisieren in Tabelle »tasks« verletzt Fremdschlüssel-Constraint »tasks_project_fkey«",
                vec!["tasks", "tasks_project_fkey"],
            ),
            (
                "la mise à jour ou la suppression sur la table « projects » viole la contrainte de clé étrangère « tasks_project_fkey » de la table « tasks »",
                vec!["projects", "tasks_project_fkey", "tasks"],
            ),
            (
                "テーブル\"tasks\"への挿入、更新は外部キー制約\"tasks_project_fkey\"に違反しています",
                vec!["tasks", "tasks_project_fkey"],
            ),
            ("no quotes here", vec![]),
            (r#"unterminated "tasks"#, vec![]),
        ] {
            assert_eq!(quoted_identifiers(message), want, "{message}");
        }
    }

    /// Field-less errors, as a Citus worker's reach the coordinator's client, in
    /// another language: the names come from the quoted identifiers.
    #[test]
    fn the_fallback_maps_field_less_errors_by_their_quoted_names() {
        let fk = SqlState::FOREIGN_KEY_VIOLATION;
        let missing = facts(
            &fk,
            "Einfügen oder Aktualisieren in Tabelle »tasks_102008« verletzt Fremdschlüssel-Constraint »tasks_project_fkey_102290«",
        );
        match constraint_error(&missing, Some(TASKS_INSERT)) {
            Some(ApiError::Validation(e)) => assert_eq!(e[0].field, "project_id"),
            other => panic!("{other:?}"),
        }
        let referenced = facts(
            &fk,
            "Aktualisieren oder Löschen in Tabelle »projects_102009« verletzt Fremdschlüssel-Constraint »tasks_project_fkey_102290« von Tabelle »tasks_102008«",
        );
        assert!(matches!(
            constraint_error(&referenced, Some(PROJECTS_DELETE)),
            Some(ApiError::Conflict(m)) if m.contains("still referenced")
        ));
        let tenant = facts(
            &fk,
            "insert or update on table \"projects_102040\" violates foreign key constraint \"projects_tenant_id_fkey_102041\"",
        );
        assert!(matches!(
            constraint_error(&tenant, None),
            Some(ApiError::Forbidden(_))
        ));
        let unique = SqlState::UNIQUE_VIOLATION;
        let dup = facts(
            &unique,
            "doppelter Schlüsselwert verletzt Unique-Constraint »invoices_tenant_id_number_key_102100«",
        );
        assert!(matches!(
            constraint_error(&dup, None),
            Some(ApiError::Conflict(m)) if m.contains("tenant_id_number")
        ));
        let nn = SqlState::NOT_NULL_VIOLATION;
        let null = facts(
            &nn,
            "NULL-Wert in Spalte »title« von Relation »tasks_102008« verletzt Not-Null-Constraint",
        );
        match constraint_error(&null, None) {
            Some(ApiError::Validation(e)) => assert_eq!(e[0].field, "title"),
            other => panic!("{other:?}"),
        }
    }

    /// With the fields present, the message is not read at all: any text, even one
    /// that says the opposite, gives the same answer.
    #[test]
    fn fields_win_over_the_message() {
        let fk = SqlState::FOREIGN_KEY_VIOLATION;
        let f = DbFacts {
            code: &fk,
            table: Some("tasks_102008"),
            constraint: Some("tasks_project_fkey_102290"),
            column: None,
            message: r#"update or delete on table "x" violates foreign key constraint "y""#,
        };
        match constraint_error(&f, Some(TASKS_INSERT)) {
            Some(ApiError::Validation(e)) => assert_eq!(e[0].field, "project_id"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            constraint_error(&f, Some(PROJECTS_DELETE)),
            Some(ApiError::Conflict(_))
        ));
        // An update of the referencing table: its own key (422); of the referenced
        // table: still referenced (409).
        let upd = |table| Write {
            table,
            kind: WriteKind::Update,
        };
        assert!(matches!(
            constraint_error(&f, Some(upd("tasks"))),
            Some(ApiError::Validation(_))
        ));
        assert!(matches!(
            constraint_error(&f, Some(upd("projects"))),
            Some(ApiError::Conflict(_))
        ));
    }
}
