//! The SQL text of the contract, written once: the robust read of a setting, the body of
//! the context function `migrate` installs, and the tenant predicate in each
//! [`PredicateForm`]. `policy` installs these strings, `audit` proposes them as fixes, so
//! what the audit recommends is what `migrate` would install.

use super::{
    CallerSource, ClaimVia, ContextCarrier, PredicateForm, TenancyModel, JWT_CLAIMS_SETTING,
};

/// Schema holding the engine's functions (`current_tenant_id()`).
pub const FUNCTION_SCHEMA: &str = "tenantguard";

/// The context function's name, in [`FUNCTION_SCHEMA`].
pub const CONTEXT_FUNCTION: &str = "current_tenant_id";

/// Quotes an SQL identifier.
pub fn ident(s: &str) -> String {
    postgres_protocol::escape::escape_identifier(s)
}

/// Quotes an SQL string literal.
pub fn literal(s: &str) -> String {
    postgres_protocol::escape::escape_literal(s)
}

/// `NULLIF(current_setting('<setting>', true), '')::<ty>`: NULL when the setting is unset
/// (a fresh session) or `''` (what a placeholder becomes after any `SET LOCAL` or
/// `set_config(…, true)` has ended), so a policy comparing with it fails closed instead of
/// raising.
pub fn setting_read(setting: &str, ty: &str) -> String {
    format!(
        "NULLIF(current_setting({}, true), '')::{ty}",
        literal(setting)
    )
}

/// The SQL body of `tenantguard.current_tenant_id()` for the tenant setting `setting`.
pub fn context_function_body(setting: &str) -> String {
    format!("SELECT {}", setting_read(setting, "uuid"))
}

/// The call of the context function `migrate` installs: `tenantguard.current_tenant_id()`
/// (also the tenant column's default).
pub fn context_function_call() -> String {
    format!("{FUNCTION_SCHEMA}.{CONTEXT_FUNCTION}()")
}

impl PredicateForm {
    /// How this form places the context expression in a comparison. The one place a new
    /// form adds its arm.
    pub fn context(self, context_expr: &str) -> String {
        match self {
            // A scalar subquery is evaluated once per statement (an InitPlan), so the
            // comparison is an index condition and the function is not called per row.
            PredicateForm::InitPlan => format!("(SELECT {context_expr})"),
            // Citus refuses any subquery in a policy on a distributed table; on a shard the
            // STABLE SQL function is inlined, so the comparison is still an index condition.
            PredicateForm::Inline => context_expr.to_string(),
        }
    }

    /// The tenant predicate: `column` equals the context (`(tenant_id = (SELECT …))`).
    pub fn render(self, column: &str, context_expr: &str) -> String {
        format!("({} = {})", ident(column), self.context(context_expr))
    }

    /// The membership predicate: `column` is one of the tenants the caller belongs to
    /// (`(org_id IN (SELECT m.org_id FROM members m WHERE m.user_id = (SELECT …)))`).
    pub fn render_membership(
        self,
        column: &str,
        table: &str,
        user_column: &str,
        tenant_column: &str,
        caller_expr: &str,
    ) -> String {
        format!(
            "({} IN (SELECT m.{} FROM {table} m WHERE m.{} = {}))",
            ident(column),
            ident(tenant_column),
            ident(user_column),
            self.context(caller_expr)
        )
    }
}

impl ContextCarrier {
    /// The statement that gives `setting` the value `value` until the end of the current
    /// transaction (and no longer: behind a transaction pooler the next transaction on the
    /// connection may be another tenant's). The one place a new carrier adds its arm.
    pub fn set_statement(self, setting: &str, value: &str) -> String {
        match self {
            ContextCarrier::SetConfigLocal => {
                format!(
                    "SELECT set_config({}, {}, true)",
                    literal(setting),
                    literal(value)
                )
            }
            // SET takes no parameter: the value is a literal; only SET LOCAL reaches Citus
            // workers (inside a transaction block).
            ContextCarrier::SetLocal => {
                format!("SET LOCAL {} = {}", setting_name(setting), literal(value))
            }
        }
    }
}

/// What Citus needs before a `SET LOCAL` reaches its workers: with this on (in the
/// transaction, or as the role's default) Citus passes every later `SET LOCAL` on to the
/// worker connections of the transaction.
pub const CITUS_PROPAGATE_LOCAL: &str = "SET LOCAL citus.propagate_set_commands = 'local'";

/// The statements that give `setting` the value `value` for the rest of the current
/// transaction on a Citus coordinator *and its workers*: [`CITUS_PROPAGATE_LOCAL`], then
/// [`ContextCarrier::SetLocal`]'s `SET LOCAL`. Send each as its own message: Citus
/// forwards a `SET`'s whole query string to the workers.
pub fn citus_context(setting: &str, value: &str) -> [String; 2] {
    [
        CITUS_PROPAGATE_LOCAL.to_string(),
        ContextCarrier::SetLocal.set_statement(setting, value),
    ]
}

/// A setting's name as SQL: each dotted part quoted as an identifier (`"app"."tenant_id"`
/// names `app.tenant_id`, as the grammar joins them), so no name can splice SQL.
pub fn setting_name(setting: &str) -> String {
    setting.split('.').map(ident).collect::<Vec<_>>().join(".")
}

/// The expression for a JWT claim (`claim` may be a dotted path), cast to `ty`.
fn claim_read(claim: &str, via: &ClaimVia, ty: &str) -> String {
    let path: Vec<String> = claim.split('.').map(literal).collect();
    let (last, init) = path
        .split_last()
        .map(|(l, i)| (l.clone(), i.to_vec()))
        .unwrap_or_default();
    let doc = match via {
        ClaimVia::AuthFunctions => "auth.jwt()".to_string(),
        ClaimVia::RequestJwtClaims => setting_read(JWT_CLAIMS_SETTING, "jsonb"),
    };
    let nested: String = init.iter().map(|k| format!(" -> {k}")).collect();
    format!("(({doc}{nested}) ->> {last})::{ty}")
}

impl CallerSource {
    /// The expression yielding the caller's id, cast to `ty`.
    pub fn expr(&self, ty: &str) -> String {
        match self {
            CallerSource::Setting { name } => setting_read(name, ty),
            CallerSource::Claim { claim, via }
                if claim == "sub" && *via == ClaimVia::AuthFunctions =>
            {
                "auth.uid()".to_string()
            }
            CallerSource::Claim { claim, via } => claim_read(claim, via, ty),
        }
    }
}

impl TenancyModel {
    /// The tenant predicate of this model on `column` (of type `ty`), in `form`: what a
    /// policy should say (`audit`'s fix SQL). For the setting model with the context
    /// function installed, `policy` renders `form.render(column, context_function_call())`.
    pub fn predicate(&self, form: PredicateForm, column: &str, ty: &str) -> String {
        match self {
            TenancyModel::Setting { name } => form.render(column, &setting_read(name, ty)),
            TenancyModel::JwtClaim { claim, via } => {
                form.render(column, &claim_read(claim, via, ty))
            }
            TenancyModel::Owner { caller, .. } => form.render(column, &caller.expr(ty)),
            TenancyModel::Role { .. } => form.render(column, "current_user"),
            TenancyModel::Membership {
                table,
                user_column,
                tenant_column,
                caller,
            } => {
                form.render_membership(column, table, user_column, tenant_column, &caller.expr(ty))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_carrier_scopes_the_setting_to_the_transaction() {
        assert_eq!(
            ContextCarrier::SetConfigLocal
                .set_statement("request.jwt.claims", "{\"sub\": \"o'k\"}"),
            "SELECT set_config('request.jwt.claims', '{\"sub\": \"o''k\"}', true)"
        );
    }

    #[test]
    fn the_installed_and_the_proposed_predicate_are_one_form() {
        let form = PredicateForm::InitPlan;
        assert_eq!(
            form.render("tenant_id", &context_function_call()),
            "(\"tenant_id\" = (SELECT tenantguard.current_tenant_id()))"
        );
        assert_eq!(
            context_function_body("app.tenant_id"),
            "SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid"
        );
        let m = TenancyModel::Setting {
            name: "app.tenant_id".into(),
        };
        assert_eq!(
            m.predicate(form, "tenant_id", "uuid"),
            form.render("tenant_id", &setting_read("app.tenant_id", "uuid"))
        );
        assert_eq!(
            m.predicate(form, "tenant_id", "uuid"),
            "(\"tenant_id\" = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid))"
        );
        let claim = TenancyModel::JwtClaim {
            claim: "app_metadata.org_id".into(),
            via: ClaimVia::AuthFunctions,
        };
        assert_eq!(
            claim.predicate(form, "org_id", "uuid"),
            "(\"org_id\" = (SELECT ((auth.jwt() -> 'app_metadata') ->> 'org_id')::uuid))"
        );
        let member = TenancyModel::Membership {
            table: "public.members".into(),
            user_column: "user_id".into(),
            tenant_column: "org_id".into(),
            caller: CallerSource::Claim {
                claim: "sub".into(),
                via: ClaimVia::AuthFunctions,
            },
        };
        assert_eq!(
            member.predicate(form, "org_id", "uuid"),
            "(\"org_id\" IN (SELECT m.\"org_id\" FROM public.members m WHERE m.\"user_id\" = (SELECT auth.uid())))"
        );
    }
}
