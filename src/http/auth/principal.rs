//! Who is calling: the tenant role, the [`Principal`] and the role-checking [`Need`]
//! extractor.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};

use crate::http::error::ApiError;
use crate::pool::TenantId;

/// A role inside a tenant, weakest first: each role can do what the ones before it can.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads.
    Viewer,
    /// Also writes projects, tasks, documents and comments.
    Member,
    /// Also manages members, API keys, webhooks and invoices, and reads the audit log.
    Admin,
    /// Everything, including granting the owner role.
    Owner,
}

impl Role {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "viewer" => Role::Viewer,
            "member" => Role::Member,
            "admin" => Role::Admin,
            "owner" => Role::Owner,
            _ => return None,
        })
    }
}

/// Who is calling, established by [`super::tenant_scope`] from the credential alone.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The tenant: from the credential, never from the request's path, query or body.
    pub tenant: TenantId,
    /// The caller's role in that tenant.
    pub role: Role,
    /// How audit rows name the caller: `api_key:<id>` or `user:<sub>`.
    pub actor: String,
}

impl Principal {
    /// 403 unless the caller has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this needs the {} role; the credential has {}",
                role.as_str(),
                self.role.as_str()
            )))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<super::scope::Scoped>()
            .map(|s| s.principal.clone())
            .ok_or_else(|| ApiError::Internal("route is not behind tenant_scope".into()))
    }
}

/// A minimum role, as a type, for [`Need`].
pub trait MinRole: Send + Sync {
    /// The role.
    const ROLE: Role;
}
/// Marker: at least viewer.
#[derive(Debug)]
pub struct Viewer;
/// Marker: at least member.
#[derive(Debug)]
pub struct Member;
/// Marker: at least admin.
#[derive(Debug)]
pub struct Admin;
impl MinRole for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl MinRole for Member {
    const ROLE: Role = Role::Member;
}
impl MinRole for Admin {
    const ROLE: Role = Role::Admin;
}

/// The caller, checked to have at least role `R` before the body is even read: a
/// handler's signature states who may call it.
#[derive(Debug)]
pub struct Need<R: MinRole>(pub Principal, pub PhantomData<R>);

impl<S: Send + Sync, R: MinRole> FromRequestParts<S> for Need<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Checked before the clone: a refused caller costs no copy of its actor.
        let p = parts
            .extensions
            .get::<super::scope::Scoped>()
            .map(|s| &s.principal)
            .ok_or_else(|| ApiError::Internal("route is not behind tenant_scope".into()))?;
        p.require(R::ROLE)?;
        Ok(Need(p.clone(), PhantomData))
    }
}
