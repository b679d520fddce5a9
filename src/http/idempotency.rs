//! `Idempotency-Key` on POST and PATCH: a retry gets the first answer and never writes
//! twice.
//!
//! A reply can be lost after the commit (the connection drops between COMMIT and the
//! response, and the client sees a 503 or a reset), so "retry on failure" can create a
//! duplicate. With an `Idempotency-Key: <1–255 visible ASCII characters>` header, the
//! server records the final answer (status, content type, body; 2xx and 4xx, never 5xx,
//! 408 or 429) in `idempotency_keys`, in the same transaction as the request's writes:
//! either both are committed or neither is. Keys are scoped per tenant (RLS, like every
//! tenant table) and per credential (`api_key:<id>` / `user:<sub>`), and kept for
//! [`HttpConfig::idempotency_ttl`](super::HttpConfig::idempotency_ttl) (24 h by default).
//!
//! * a retry with the same key and the same request (method, path and query, body) gets
//!   the recorded answer, with `Idempotent-Replayed: true`, and writes nothing;
//! * the same key with another request is a 422;
//! * the same key while the first request is still in flight is a 409 (`Retry-After: 1`).
//!
//! How, without triggers (the design has to carry over to Citus, where the table is
//! distributed by `tenant_id`): the request's transaction starts with
//! `pg_try_advisory_xact_lock(hash(tenant, credential, key))` and the lookup, in one
//! statement; a lock held by another transaction means one is in flight (409). Then a
//! savepoint, then the handler, whose final write does not commit (see
//! [`deferring_commit`]); then the answer is inserted and the request's layer commits
//! both. A 4xx rolls back to the savepoint and commits the record alone. The unique key
//! `(tenant_id, credential, idem_key)` is what guarantees a single write: if a duplicate
//! slipped past the lock (the first one committed between this statement's snapshot and
//! its lock), inserting the record finds it, and this request rolls back everything and
//! answers 409. The advisory lock's 64-bit key is a hash: two different keys colliding
//! only cause a spurious 409, never a wrong answer.
//!
//! Expired records are never served (`expires_at > now()`); each recorded answer also
//! deletes up to [`PURGE_BATCH`] of the tenant's expired records in the same statement.
//!
//! Requests without the header, and GET/DELETE, pass through untouched: the cost of this
//! layer for them is a header lookup (and one task-local lookup per mutation).

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::auth::{Db, Principal};
use super::error::{ApiError, FieldError};
use super::AppState;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The response header on a replayed answer.
pub const REPLAYED: &str = "idempotent-replayed";
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;
/// Most expired records deleted by one recorded answer.
pub const PURGE_BATCH: i64 = 100;

const SAVEPOINT: &str = "SAVEPOINT tenantguard_idempotency";
const ROLLBACK_TO: &str = "ROLLBACK TO SAVEPOINT tenantguard_idempotency";

/// The lock and the lookup, as the transaction's first statement. Every statement here
/// names the request's tenant (`$4` here, `$9` in [`RECORD`]) as the routing hint, always:
/// on Citus 13.2 the unhinted form of this LEFT JOIN crashed the coordinator (signal 11),
/// and the hinted one runs on the tenant's shard (the advisory lock then lives on that
/// shard's node, where every transaction of the tenant goes too). RLS bounds it either way.
const LOOKUP: &str = "SELECT l.got, k.request_hash, k.status, k.content_type, k.body \
     FROM (SELECT pg_try_advisory_xact_lock($1) AS got) l \
     LEFT JOIN idempotency_keys k \
       ON k.tenant_id = $4 AND k.credential = $2 AND k.idem_key = $3 AND k.expires_at > now()";

/// Records the answer (replacing an expired record of the same key) and purges some of
/// the tenant's expired records. No row back: a live record exists (see the module docs).
/// The conflict clause compares with `EXCLUDED.created_at` (the column default, `now()`)
/// rather than calling `now()`: Citus refuses non-IMMUTABLE functions in `ON CONFLICT`.
const RECORD: &str = "WITH purge AS ( \
       DELETE FROM idempotency_keys WHERE tenant_id = $9 AND id IN ( \
         SELECT id FROM idempotency_keys \
         WHERE tenant_id = $9 AND expires_at <= now() AND NOT (credential = $1 AND idem_key = $2) \
         ORDER BY expires_at LIMIT $8)) \
     INSERT INTO idempotency_keys (tenant_id, credential, idem_key, request_hash, status, content_type, body, expires_at) \
     VALUES ($9, $1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7)) \
     ON CONFLICT (tenant_id, credential, idem_key) DO UPDATE \
       SET request_hash = EXCLUDED.request_hash, status = EXCLUDED.status, \
           content_type = EXCLUDED.content_type, body = EXCLUDED.body, \
           created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at \
       WHERE idempotency_keys.expires_at <= EXCLUDED.created_at \
     RETURNING 1";

tokio::task_local! {
    static DEFER_COMMIT: ();
}

/// Whether the current request carries an idempotency key, so that its final write must
/// not commit by itself ([`super::extract::mutate`] asks).
pub fn deferring_commit() -> bool {
    DEFER_COMMIT.try_with(|_| ()).is_ok()
}

/// Put in a response's extensions by a handler whose body holds a secret that must not
/// be stored (`POST /v1/api-keys`): the record keeps these top-level JSON string fields
/// as `""`, so a replay shows the key's metadata but never its secret again.
#[derive(Debug, Clone, Copy)]
pub struct Redact(pub &'static [&'static str]);

/// The layer (inside the tenant layer, which provides the principal and the transaction).
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    handle(state, req, |req| next.run(req)).await
}

/// [`layer`] with the rest of the stack as a function of the request (a `Next`, or the
/// inner service of [`TenantScopeLayer`](crate::http::auth::TenantScopeLayer)).
pub(crate) async fn handle<F, Fut>(state: AppState, req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    if !matches!(*req.method(), Method::POST | Method::PATCH) || !req.headers().contains_key(HEADER)
    {
        return inner(req).await;
    }
    // Boxed: the keyed path's future (its statements, the digest, the stored response)
    // is large, and inline it would make every request's future that size, moved into
    // its box by memcpy per request (≈ 11k instructions of a GET with the other rare
    // paths); only a request with the header pays this allocation.
    match Box::pin(run(state, req, inner)).await {
        Ok(r) | Err(Stop::Answer(r)) => r,
        Err(Stop::Error(e)) => e.into_response(),
    }
}

enum Stop {
    Error(ApiError),
    Answer(Response),
}

impl From<ApiError> for Stop {
    fn from(e: ApiError) -> Self {
        Stop::Error(e)
    }
}

impl From<crate::pool::PoolError> for Stop {
    fn from(e: crate::pool::PoolError) -> Self {
        Stop::Error(e.into())
    }
}

fn parse_key(v: &HeaderValue) -> Result<String, ApiError> {
    let bytes = v.as_bytes();
    if bytes.is_empty()
        || bytes.len() > MAX_KEY_LEN
        || !bytes.iter().all(|b| (0x21..=0x7e).contains(b))
    {
        return Err(ApiError::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
        )));
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// What identifies the request: method, path and query, body.
fn fingerprint(method: &Method, uri: &axum::http::Uri, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update([0]);
    h.update(
        uri.path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("")
            .as_bytes(),
    );
    h.update([0]);
    h.update(body);
    h.finalize().into()
}

fn lock_key(p: &Principal, key: &str) -> i64 {
    let mut h = Sha256::new();
    h.update(b"tenantguard-idempotency\0");
    h.update(p.tenant.as_uuid().as_bytes());
    h.update(p.actor.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    i64::from_be_bytes(first)
}

async fn db(parts: &axum::http::request::Parts, state: &AppState) -> Result<Db, ApiError> {
    let mut p = parts.clone();
    Db::from_request_parts(&mut p, state).await
}

fn replay(status: i16, content_type: Option<String>, body: Vec<u8>) -> Response {
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut res = (status, body).into_response();
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        res.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    res.headers_mut().insert(
        HeaderName::from_static(REPLAYED),
        HeaderValue::from_static("true"),
    );
    res
}

fn in_flight() -> Response {
    let mut res = ApiError::Conflict(
        "a request with this Idempotency-Key is still in progress; retry it later".into(),
    )
    .into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

/// Whether an answer is final, so recorded: 2xx and 4xx, except the transient 408 and 429.
fn recordable(status: StatusCode) -> bool {
    (status.is_success() || status.is_client_error())
        && status != StatusCode::REQUEST_TIMEOUT
        && status != StatusCode::TOO_MANY_REQUESTS
}

fn redacted(body: &Bytes, fields: &[&str]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut m)) => {
            for f in fields {
                if let Some(v) = m.get_mut(*f) {
                    *v = serde_json::Value::String(String::new());
                }
            }
            serde_json::to_vec(&m).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

async fn run<F, Fut>(state: AppState, req: Request, inner: F) -> Result<Response, Stop>
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let key = req
        .headers()
        .get(HEADER)
        .map(parse_key)
        .transpose()?
        .ok_or_else(|| ApiError::Internal("idempotency layer without its header".into()))?;
    let principal = req
        .extensions()
        .get::<crate::http::auth::Scoped>()
        .map(|s| s.principal.clone())
        .ok_or_else(|| ApiError::Internal("idempotency layer outside tenant_scope".into()))?;
    // The body is read before the first statement, so no connection waits on the client
    // here. Bytes honours the router's body limit (413).
    let (parts, body) = req.into_parts();
    let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), &state)
        .await
        .map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest("could not read the request body".into())
            }
        })?;
    let hash = fingerprint(&parts.method, &parts.uri, &bytes);

    let mut tx = db(&parts, &state).await?;
    let row = tx
        .query_one(
            LOOKUP,
            &[
                &lock_key(&principal, &key),
                &principal.actor,
                &key,
                &principal.tenant.as_uuid(),
            ],
        )
        .await?;
    let got: bool = row.get(0);
    let recorded: Option<Vec<u8>> = row.get(1);
    if let Some(recorded) = recorded {
        drop(tx);
        if recorded[..] != hash[..] {
            return Err(Stop::Error(ApiError::Validation(vec![FieldError::new(
                "Idempotency-Key",
                "this key was already used with a different request (method, path or body)",
            )])));
        }
        return Ok(replay(row.get(2), row.get(3), row.get(4)));
    }
    if !got {
        return Err(Stop::Answer(in_flight()));
    }
    tx.execute(SAVEPOINT, &[]).await?;
    drop(tx);

    let req = Request::from_parts(parts.clone(), Body::from(bytes));
    let response = DEFER_COMMIT.scope((), inner(req)).await;
    let status = response.status();
    if !recordable(status) {
        // 5xx, 408, 429: the tenant layer rolls back; a retry runs the request again.
        return Ok(response);
    }
    let (rparts, rbody) = response.into_parts();
    let rbytes = axum::body::to_bytes(rbody, usize::MAX)
        .await
        .map_err(|_| ApiError::Unavailable)?;
    let stored = match rparts.extensions.get::<Redact>() {
        Some(Redact(fields)) => redacted(&rbytes, fields),
        None => rbytes.to_vec(),
    };
    let content_type = rparts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ttl = state.config().idempotency_ttl.as_secs_f64();
    let status_code = status.as_u16() as i16;
    let tenant = principal.tenant.as_uuid();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
        &principal.actor,
        &key,
        &&hash[..],
        &status_code,
        &content_type,
        &stored,
        &ttl,
        &PURGE_BATCH,
        &tenant,
    ];
    let mut tx = db(&parts, &state).await?;
    if status.is_success() {
        // Not committed here: the tenant layer commits the write and the record together.
        if tx.query(RECORD, &params).await?.is_empty() {
            // A duplicate committed first (see the module docs): answer as if in flight,
            // and let the error status roll back this request's writes.
            return Err(Stop::Answer(in_flight()));
        }
    } else {
        // A 4xx wrote nothing that may stay: back to before the handler, then the record
        // commits alone (the tenant layer finds the transaction finished).
        tx.execute(ROLLBACK_TO, &[]).await?;
        tx.query_commit(RECORD, &params).await?;
    }
    drop(tx);
    Ok(Response::from_parts(rparts, Body::from(rbytes)))
}

/// Documents the header and its 409/422 on every POST and PATCH of `/v1` in the OpenAPI
/// document.
#[derive(Debug)]
pub struct OpenApiDoc;

impl utoipa::Modify for OpenApiDoc {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{
            ContentBuilder, ObjectBuilder, Ref, Required, ResponseBuilder, Type,
        };
        let param = ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Makes the request safe to retry: the first final answer (2xx or 4xx) is \
                 recorded with the write, per tenant and credential, for 24 h by default; a \
                 retry with the same key and request gets it back (`Idempotent-Replayed: \
                 true`) and writes nothing. 1–255 visible ASCII characters.",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(MAX_KEY_LEN)),
            ))
            .build();
        let problem = |d: &str| {
            ResponseBuilder::new()
                .description(d)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            for op in [item.post.as_mut(), item.patch.as_mut()]
                .into_iter()
                .flatten()
            {
                op.parameters
                    .get_or_insert_with(Vec::new)
                    .push(param.clone());
                let r = &mut op.responses.responses;
                r.entry("409".into()).or_insert_with(|| {
                    problem("Conflict; or a request with the same Idempotency-Key is in flight")
                        .into()
                });
                r.entry("422".into()).or_insert_with(|| {
                    problem("Invalid; or the Idempotency-Key was used with another request").into()
                });
            }
        }
    }
}
