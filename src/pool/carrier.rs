//! The context carrier on the wire ([`ContextCarrier`]): the statement texts each one
//! needs, and the start-up check that the chosen one can work on this database.
//!
//! `SET` takes no bind parameter, so [`ContextCarrier::SetLocal`] carries the tenant as a
//! literal. That is injection-safe because the value is a [`TenantId`](super::TenantId)
//! (a parsed UUID, formatted by its own encoder) and the setting name is quoted as an
//! identifier. The statement differs per tenant, so it is sent as the unnamed statement,
//! never prepared: no connection accumulates one prepared statement per tenant.

use super::options::ContextCarrier;
use super::PoolError;

/// `set_config` of the tenant, local to the (implicit or explicit) transaction.
pub(crate) const SET_TENANT: &str = "SELECT set_config($1, $2, true)";
/// The prelude of a statement on the one-Sync read path with `set_config`: tenant and
/// read-only mode, both local to the implicit transaction that ends at the Sync.
pub(crate) const SET_TENANT_READ_ONLY: &str =
    "SELECT set_config($1, $2, true), set_config('transaction_read_only', 'on', true)";

/// `SET LOCAL <setting> = '` for `setting`, each dotted part quoted as an identifier
/// (`"app"."tenant_id"` names the setting `app.tenant_id`, as the grammar joins them).
pub(crate) fn set_local_prefix(setting: &str) -> String {
    format!(
        "SET LOCAL {} = '",
        crate::isolation::sql::setting_name(setting)
    )
}

/// `BEGIN` for a transaction block of this access mode.
pub(crate) fn begin(read_only: bool) -> &'static str {
    if read_only {
        "BEGIN READ ONLY"
    } else {
        "BEGIN"
    }
}

/// What the start-up check found about Citus on this database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CitusState {
    /// `pg_extension` has `citus`.
    pub installed: bool,
    /// `citus.propagate_set_commands` for this role's sessions (`None` without Citus).
    pub propagate_set_commands: Option<String>,
}

/// Why `carrier` cannot work on a database in state `citus` (for `role`), if it cannot.
pub(crate) fn carrier_problem(
    carrier: ContextCarrier,
    citus: &CitusState,
    role: &str,
    setting: &str,
) -> Option<String> {
    if !citus.installed {
        return None;
    }
    let role = crate::policy::ident(role);
    match carrier {
        ContextCarrier::SetConfigLocal => Some(format!(
            "the database has the citus extension, and Citus never passes a context set with \
             set_config({setting}, …, true) on to its workers: every query on a distributed \
             table would see no rows and every write would be refused. Carry the context with \
             SET LOCAL instead (TENANTGUARD_CONTEXT_CARRIER=set-local, --context-carrier \
             set-local; PoolOptions::context_carrier = ContextCarrier::SetLocal), with \
             ALTER ROLE {role} SET citus.propagate_set_commands = 'local'"
        )),
        ContextCarrier::SetLocal => match citus.propagate_set_commands.as_deref() {
            Some("local") => None,
            other => Some(format!(
                "the database has the citus extension and citus.propagate_set_commands is {} \
                 for role {role}: SET LOCAL {setting} would stay on the coordinator, every \
                 query on a distributed table would see no rows and every write would be \
                 refused. Run ALTER ROLE {role} SET citus.propagate_set_commands = 'local'",
                other.map_or("unset".to_string(), |v| format!("{v:?}"))
            )),
        },
    }
}

/// Reads what [`carrier_problem`] needs, with one unnamed statement (valid behind a
/// transaction-mode pooler).
pub(crate) async fn citus_state(
    client: &tokio_postgres::Client,
) -> Result<(CitusState, String), PoolError> {
    let rows = client
        .query_typed(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus'), \
                    current_setting('citus.propagate_set_commands', true), current_user::text",
            &[],
        )
        .await
        .map_err(PoolError::db("looking for the citus extension"))?;
    let row = rows
        .first()
        .ok_or_else(|| PoolError::missing_row("the citus check"))?;
    let installed: bool = row
        .try_get(0)
        .map_err(PoolError::db("reading the citus check"))?;
    let propagate: Option<String> = row
        .try_get(1)
        .map_err(PoolError::db("reading the citus check"))?;
    let role: String = row
        .try_get(2)
        .map_err(PoolError::db("reading the citus check"))?;
    Ok((
        CitusState {
            installed,
            propagate_set_commands: propagate.filter(|_| installed),
        },
        role,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_local_quotes_the_setting_and_takes_a_literal() {
        assert_eq!(
            set_local_prefix("app.tenant_id"),
            "SET LOCAL \"app\".\"tenant_id\" = '"
        );
        assert_eq!(
            set_local_prefix("app.x\"; DROP"),
            "SET LOCAL \"app\".\"x\"\"; DROP\" = '"
        );
    }

    #[test]
    fn citus_refuses_set_config_and_set_local_without_propagation() {
        let plain = CitusState {
            installed: false,
            propagate_set_commands: None,
        };
        for c in [ContextCarrier::SetConfigLocal, ContextCarrier::SetLocal] {
            assert_eq!(carrier_problem(c, &plain, "app", "app.tenant_id"), None);
        }
        let citus = |p: Option<&str>| CitusState {
            installed: true,
            propagate_set_commands: p.map(str::to_string),
        };
        let e = carrier_problem(
            ContextCarrier::SetConfigLocal,
            &citus(Some("local")),
            "app",
            "app.tenant_id",
        )
        .expect("set_config refused on Citus");
        assert!(e.contains("TENANTGUARD_CONTEXT_CARRIER=set-local"), "{e}");
        assert_eq!(
            carrier_problem(
                ContextCarrier::SetLocal,
                &citus(Some("local")),
                "app",
                "app.tenant_id"
            ),
            None
        );
        let e = carrier_problem(
            ContextCarrier::SetLocal,
            &citus(Some("none")),
            "app",
            "app.tenant_id",
        )
        .expect("no propagation refused");
        assert!(
            e.contains("ALTER ROLE \"app\" SET citus.propagate_set_commands = 'local'"),
            "{e}"
        );
    }
}
