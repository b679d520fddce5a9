//! The isolation contract, stated once: *who* the current tenant is (the tenancy model),
//! *how* a policy compares a row with it (the predicate form) and *how* the context reaches
//! the database (the context carrier). `audit` judges policies against the model, `probe`
//! sets up its callers the way the model does.
//!
//! Every variation point is a type. The predicate form has the InitPlan form `migrate`
//! installs and the inline form `migrate --citus` installs; the context carrier has
//! `set_config` and Citus's `SET LOCAL` (the pool's
//! [`PoolOptions`](crate::PoolOptions)`::context_carrier`); the tenancy model has the five
//! common ones found in real multi-tenant schemas, declared with `--tenancy` or
//! [`detect`]ed.
//!
//! The rules themselves live here too, each once: [`sql`] (the tenant predicate in each
//! form, the context function `migrate` installs, the robust read of a setting),
//! [`tables`] (what a tenant table is) and [`roles`] (which roles must not be the app).
//! `policy` installs them, `audit` judges and proposes fixes with them, `probe` attacks
//! under them, and the pool's start-up check renders the same rules into its one query.

pub mod detect;
pub mod roles;
pub mod sql;
pub mod tables;

use serde::Serialize;

pub use detect::{detect, Detection, TableTenancy};
pub use sql::{
    context_function_body, context_function_call, ident, literal, setting_read, CONTEXT_FUNCTION,
    FUNCTION_SCHEMA,
};

/// The setting PostgREST (and Supabase) put the verified JWT claims in, as JSON.
pub const JWT_CLAIMS_SETTING: &str = "request.jwt.claims";

/// Where a model reads the JWT claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimVia {
    /// `current_setting('request.jwt.claims', true)::json ->> '<claim>'` (PostgREST).
    RequestJwtClaims,
    /// A platform function such as `auth.jwt()` or `auth.uid()` (Supabase), which reads the
    /// same setting (or the older per-claim `request.jwt.claim.<claim>`).
    AuthFunctions,
}

/// Where the caller's identity comes from (for membership and per-user models).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CallerSource {
    /// A custom setting holding the user id (`app.user_id`).
    Setting {
        /// The setting.
        name: String,
    },
    /// A JWT claim (`sub` for `auth.uid()`).
    Claim {
        /// The claim name.
        claim: String,
        /// How it is read.
        via: ClaimVia,
    },
}

impl CallerSource {
    /// The settings a database-side reader of this source reads.
    pub fn settings(&self) -> Vec<String> {
        match self {
            CallerSource::Setting { name } => vec![name.clone()],
            CallerSource::Claim { claim, .. } => claim_settings(claim),
        }
    }

    fn describe(&self) -> String {
        match self {
            CallerSource::Setting { name } => format!("setting {name}"),
            CallerSource::Claim { claim, via } => match via {
                ClaimVia::RequestJwtClaims => {
                    format!("JWT claim {claim:?} in {JWT_CLAIMS_SETTING}")
                }
                ClaimVia::AuthFunctions => {
                    format!("JWT claim {claim:?} through auth.uid()/auth.jwt()")
                }
            },
        }
    }
}

fn claim_settings(claim: &str) -> Vec<String> {
    // The older per-claim settings exist for top-level claims only.
    let mut out = vec![JWT_CLAIMS_SETTING.to_string()];
    if !claim.contains('.') {
        out.push(format!("request.jwt.claim.{claim}"));
    }
    out
}

/// The tenancy variation point: what "the current tenant" is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum TenancyModel {
    /// A tenant id in one custom setting (`app.tenant_id`), compared with the tenant column.
    Setting {
        /// The setting.
        name: String,
    },
    /// The tenant id is a JWT claim.
    JwtClaim {
        /// The claim holding the tenant id; a dotted path (`app_metadata.org_id`) for a
        /// nested claim.
        claim: String,
        /// How it is read.
        via: ClaimVia,
    },
    /// The tenant comes from a lookup keyed by the caller: the rows of `table` whose
    /// `user_column` is the caller list the tenants (`tenant_column`) the caller belongs to.
    Membership {
        /// The membership table (`schema.name` or `name`).
        table: String,
        /// Its column holding the user id.
        user_column: String,
        /// Its column holding the tenant id.
        tenant_column: String,
        /// Where the caller's user id comes from.
        caller: CallerSource,
    },
    /// Per-user rows: `user_column = <caller>`.
    Owner {
        /// The column holding the owning user.
        user_column: String,
        /// Where the caller's user id comes from.
        caller: CallerSource,
    },
    /// One database role per tenant: the tenant is `current_user`.
    Role {
        /// How a tenant id becomes a role name: `{}` is replaced by the id (`tenant_{}`).
        pattern: String,
    },
}

impl TenancyModel {
    /// The command-line word (`setting`, `jwt-claim`, …).
    pub fn word(&self) -> &'static str {
        match self {
            TenancyModel::Setting { .. } => "setting",
            TenancyModel::JwtClaim { .. } => "jwt-claim",
            TenancyModel::Membership { .. } => "membership",
            TenancyModel::Owner { .. } => "owner",
            TenancyModel::Role { .. } => "role",
        }
    }

    /// One plain sentence: what the tenant context is under this model.
    pub fn describe(&self) -> String {
        match self {
            TenancyModel::Setting { name } => format!("a tenant id in the setting {name}"),
            TenancyModel::JwtClaim { claim, via } => match via {
                ClaimVia::RequestJwtClaims => {
                    format!("the JWT claim {claim:?} in {JWT_CLAIMS_SETTING} (PostgREST)")
                }
                ClaimVia::AuthFunctions => {
                    format!("the JWT claim {claim:?} read through auth.jwt()/auth.uid()")
                }
            },
            TenancyModel::Membership {
                table,
                user_column,
                tenant_column,
                caller,
            } => format!(
                "membership: the tenants ({tenant_column}) of the rows of {table} whose {user_column} is the caller ({})",
                caller.describe()
            ),
            TenancyModel::Owner {
                user_column,
                caller,
            } => format!(
                "per-user rows: {user_column} is the caller ({})",
                caller.describe()
            ),
            TenancyModel::Role { pattern } => {
                format!("one database role per tenant (current_user, roles named {pattern:?})")
            }
        }
    }

    /// The settings whose `current_setting(…)` reads the context under this model.
    pub fn settings(&self) -> Vec<String> {
        match self {
            TenancyModel::Setting { name } => vec![name.clone()],
            TenancyModel::JwtClaim { claim, .. } => claim_settings(claim),
            TenancyModel::Membership { caller, .. } | TenancyModel::Owner { caller, .. } => {
                caller.settings()
            }
            TenancyModel::Role { .. } => Vec::new(),
        }
    }

    /// Platform functions that return the context by themselves (`auth.uid`, `auth.jwt`),
    /// lower-case, qualified and bare.
    pub fn platform_functions(&self) -> Vec<String> {
        let via = match self {
            TenancyModel::JwtClaim { via, .. } => Some(via),
            TenancyModel::Membership {
                caller: CallerSource::Claim { via, .. },
                ..
            }
            | TenancyModel::Owner {
                caller: CallerSource::Claim { via, .. },
                ..
            } => Some(via),
            _ => None,
        };
        match via {
            Some(_) => ["auth.uid", "auth.jwt"].map(String::from).to_vec(),
            None => Vec::new(),
        }
    }

    /// Whether `current_user`/`session_user` is the context (role per tenant).
    pub fn identity_is_context(&self) -> bool {
        matches!(self, TenancyModel::Role { .. })
    }

    /// The membership table, if this is the membership model.
    pub fn membership_table(&self) -> Option<&str> {
        match self {
            TenancyModel::Membership { table, .. } => Some(table),
            _ => None,
        }
    }

    /// The role name of tenant `id` under the role model.
    pub fn role_name(&self, id: &str) -> Option<String> {
        match self {
            TenancyModel::Role { pattern } => Some(pattern.replace("{}", id)),
            _ => None,
        }
    }
}

/// The predicate-form variation point: how a policy compares the row with the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PredicateForm {
    /// `tenant_id = (SELECT current_tenant_fn())`: one InitPlan per query (what `migrate`
    /// installs on plain PostgreSQL).
    #[default]
    InitPlan,
    /// `tenant_id = current_tenant_fn()`, no subquery: what `migrate --citus` installs,
    /// because Citus refuses any subquery in a policy on a distributed table. On a shard the
    /// STABLE SQL function is inlined to `NULLIF(current_setting(…, true), '')::uuid`, which
    /// is still an index condition on the tenant column.
    Inline,
}

/// The context-carrier variation point: how the context reaches the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextCarrier {
    /// `set_config(setting, value, true)` inside the request transaction (gone at its end).
    #[default]
    SetConfigLocal,
    /// `SET LOCAL setting = '<value>'` inside an explicit `BEGIN … COMMIT` (gone at its
    /// end), the value a literal: the only form Citus propagates to its workers (with
    /// `citus.propagate_set_commands = 'local'`).
    SetLocal,
}

impl ContextCarrier {
    /// The setting word (`set-config`, `set-local`).
    pub fn word(&self) -> &'static str {
        match self {
            ContextCarrier::SetConfigLocal => "set-config",
            ContextCarrier::SetLocal => "set-local",
        }
    }
}

/// An isolation contract: the three variation points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contract {
    /// Who the current tenant is.
    pub tenancy: TenancyModel,
    /// How policies compare.
    pub predicate: PredicateForm,
    /// How the context is carried.
    pub carrier: ContextCarrier,
}

impl Contract {
    /// Today's contract with this tenancy model.
    pub fn new(tenancy: TenancyModel) -> Contract {
        Contract {
            tenancy,
            predicate: PredicateForm::InitPlan,
            carrier: ContextCarrier::SetConfigLocal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_read_both_settings() {
        let m = TenancyModel::JwtClaim {
            claim: "org_id".into(),
            via: ClaimVia::RequestJwtClaims,
        };
        assert_eq!(
            m.settings(),
            ["request.jwt.claims", "request.jwt.claim.org_id"]
        );
        assert!(m.platform_functions().contains(&"auth.uid".to_string()));
        let r = TenancyModel::Role {
            pattern: "tenant_{}".into(),
        };
        assert_eq!(r.role_name("7").as_deref(), Some("tenant_7"));
        assert!(r.settings().is_empty() && r.identity_is_context());
    }

    #[test]
    fn predicate_forms_render() {
        let f = "tenantguard.current_tenant_id()";
        assert_eq!(
            PredicateForm::InitPlan.render("tenant_id", f),
            "(\"tenant_id\" = (SELECT tenantguard.current_tenant_id()))"
        );
        assert_eq!(
            PredicateForm::Inline.render("tenant_id", f),
            "(\"tenant_id\" = tenantguard.current_tenant_id())"
        );
    }
}
