//! `/v1/members`: the tenant's team. Viewers read, admins manage; only an owner can
//! grant the owner role or change or remove an owner.
//!
//! Emails are stored in one form: trimmed, NFC-normalised and lower-cased (Unicode case
//! mapping), then NFC again (lower-casing can undo NFC). Uniqueness is on that form, so
//! the NFC and NFD spellings of one address, or its upper-case spelling, are one member
//! (a 409). The database checks `email IS NFC NORMALIZED` too (migration V3).

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{Admin, Db, Need, Principal, Role, Viewer};
use super::error::{ApiError, Problem};
use super::extract::{
    delete_cascading, get_json_by_id, not_null, record, Cascade, Check, Insert, Json, ListQuery,
    Page, PageParams, Patch, Path, Query,
};
use super::AppState;

record! {
table = "team_members", resource = "member", time = created_at;
/// A team member.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TeamMember {
    /// Id.
    pub id: Uuid,
    /// Email: trimmed, NFC-normalised and lower-cased as stored (unique in the tenant in
    /// that form).
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}
}

/// Body of `POST /v1/members`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    /// Email.
    #[schema(
        min_length = 3,
        max_length = 320,
        pattern = "^[^@\\s\\u0000]+@[^@\\s\\u0000]+$"
    )]
    pub email: String,
    /// Display name.
    #[serde(default)]
    #[schema(min_length = 0, max_length = 200, pattern = "^[^\\u0000]*$")]
    pub name: String,
    /// Role.
    pub role: Role,
}

/// Body of `PATCH /v1/members/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberPatch {
    /// New display name.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(
        nullable = false,
        min_length = 0,
        max_length = 200,
        pattern = "^[^\\u0000]*$"
    )]
    pub name: Option<String>,
    /// New role.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    pub role: Option<Role>,
}

/// The stored form of an email: NFC, lower case, NFC. Not trimmed: [`valid_email`] has
/// already refused every character the document calls whitespace, and trimming by Rust's
/// wider definition (U+0085) would store what the client did not send.
pub(crate) fn normalize_email(e: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let nfc: String = e.nfc().collect();
    nfc.to_lowercase().nfc().collect()
}

/// What the documented pattern (`^[^@\s\u0000]+@[^@\s\u0000]+$`) says, checked on what the
/// client sent: one `@` with something on both sides, no NUL, and no whitespace as
/// ECMAScript's `\s` (JSON Schema's regex dialect) has it, so the document and the server
/// agree exactly (Rust's `char::is_whitespace` differs: U+0085 in, U+FEFF out).
pub(crate) fn valid_email(e: &str) -> bool {
    matches!(e.split_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty() && !d.contains('@'))
        && !e.chars().any(|c| c == '\0' || is_ecma_space(c))
}

/// ECMAScript's `\s`: its WhiteSpace and LineTerminator characters.
fn is_ecma_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

fn may_grant(p: &Principal, role: Role) -> Result<(), ApiError> {
    if role == Role::Owner {
        p.require(Role::Owner)
    } else {
        Ok(())
    }
}

/// An owner can only be changed by an owner: 404 if absent, 403 if not allowed.
async fn guard_target(p: &Principal, db: &mut Db, id: Uuid) -> Result<(), ApiError> {
    let tenant = db.tenant().as_uuid();
    let row = db
        .query_opt(
            "SELECT role FROM team_members WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
            &[&id, &tenant],
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    if row.get::<_, &str>(0) == "owner" {
        p.require(Role::Owner)?;
    }
    Ok(())
}

/// The routes and their OpenAPI operations, from one declaration: each handler's
/// `#[utoipa::path]` gives both its route and its document entry.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, remove))
}

/// Lists members, newest first.
#[utoipa::path(get, path = "/v1/members", tag = "members", operation_id = "members_list", extensions(("x-min-role" = json!("viewer"))), params(PageParams),
    responses((status = 200, body = Page<TeamMember>), (status = 400, body = Problem)))]
pub(crate) async fn list(
    _: Need<Viewer>,
    mut db: Db,
    Query(page): Query<PageParams>,
) -> Result<super::json::JsonBytes, ApiError> {
    ListQuery::new()
        .run_json::<TeamMember>(&mut db, &page)
        .await
}

/// Adds a member.
#[utoipa::path(post, path = "/v1/members", tag = "members", operation_id = "members_create", extensions(("x-min-role" = json!("admin"))), request_body = NewMember,
    responses((status = 201, body = TeamMember), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create(
    Need(p, ..): Need<Admin>,
    db: Db,
    Json(b): Json<NewMember>,
) -> Result<(StatusCode, Json<TeamMember>), ApiError> {
    // Judged as sent (what the document describes), stored normalised.
    Check::new()
        .len("email", Some(&b.email), 3, 320)
        .that(valid_email(&b.email), "email", "must be an email address")
        .done()?;
    let email = normalize_email(&b.email);
    Check::new().len("name", Some(&b.name), 0, 200).done()?;
    may_grant(&p, b.role)?;
    let mut insert = Insert::new();
    insert
        .set("email", email)
        .set("name", b.name)
        .set("role", b.role.as_str());
    Ok((StatusCode::CREATED, Json(insert.run(db, &p.actor).await?)))
}

/// Gets one member.
#[utoipa::path(get, path = "/v1/members/{id}", tag = "members", operation_id = "members_get", extensions(("x-min-role" = json!("viewer"))), params(("id" = Uuid, Path)),
    responses((status = 200, body = TeamMember), (status = 404, body = Problem)))]
pub(crate) async fn get_one(
    _: Need<Viewer>,
    mut db: Db,
    Path(id): Path<Uuid>,
) -> Result<super::json::JsonBytes, ApiError> {
    get_json_by_id::<TeamMember>(&mut db, id).await
}

/// Changes a member's name or role.
#[utoipa::path(patch, path = "/v1/members/{id}", tag = "members", operation_id = "members_update", extensions(("x-min-role" = json!("admin"))), params(("id" = Uuid, Path)),
    request_body = MemberPatch,
    responses((status = 200, body = TeamMember), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn update(
    Need(p, ..): Need<Admin>,
    mut db: Db,
    Path(id): Path<Uuid>,
    Json(b): Json<MemberPatch>,
) -> Result<Json<TeamMember>, ApiError> {
    Check::new().len("name", b.name.as_deref(), 0, 200).done()?;
    if let Some(r) = b.role {
        may_grant(&p, r)?;
    }
    guard_target(&p, &mut db, id).await?;
    let mut patch = Patch::new(id);
    patch
        .set("name", b.name)
        .set("role", b.role.map(Role::as_str));
    Ok(Json(patch.run(db, &p.actor).await?))
}

/// Removes a member (their tasks become unassigned, their comments authorless; the audit
/// row lists both in `details.cascade`).
#[utoipa::path(delete, path = "/v1/members/{id}", tag = "members", operation_id = "members_delete", extensions(("x-min-role" = json!("admin"))), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn remove(
    Need(p, ..): Need<Admin>,
    mut db: Db,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    guard_target(&p, &mut db, id).await?;
    delete_cascading::<TeamMember>(
        db,
        id,
        &p.actor,
        // guard_target has locked the member, which holds off new assignments.
        Cascade {
            lock: None,
            dependents: &[
                (
                    "tasks_unassigned",
                    "SELECT id FROM tasks WHERE assignee_id = $1 AND tenant_id = $2",
                ),
                (
                    "comments_author_cleared",
                    "SELECT id FROM comments WHERE author_id = $1 AND tenant_id = $2",
                ),
            ],
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::valid_email;

    /// The document's pattern (`^[^@\s\u0000]+@[^@\s\u0000]+$`) in ECMAScript's regex
    /// dialect, character for character: U+0085 is not `\s` there, U+FEFF is.
    #[test]
    fn emails_are_judged_as_the_documented_pattern() {
        assert!(valid_email("a@b"));
        assert!(valid_email("9\u{106}\u{85},@\u{85}"));
        assert!(!valid_email("a@b\u{feff}"));
        assert!(!valid_email(" a@b") && !valid_email("a@b\u{3000}") && !valid_email("a@\u{0}"));
        assert!(!valid_email("a@b@c") && !valid_email("@b") && !valid_email("a@"));
    }
}
