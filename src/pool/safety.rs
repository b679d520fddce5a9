//! Start-up checks: a pool refuses a role that would make RLS moot, reading role
//! membership the way the server's version defines it (PostgreSQL 16 split it into
//! INHERIT, SET and ADMIN per grant).

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::PoolError;
use crate::isolation::roles::{self, createrole_is_unsafe, set_role_mode, OWNER_REACHED};
use crate::isolation::tables::tenant_tables_cte;

/// The roles `current_user` can reach through role membership (the contract's rule, see
/// [`roles::reach_cte`]).
fn reach_cte(server_version_num: i32) -> String {
    roles::reach_cte(server_version_num, "current_user")
}

/// The one row of `sql` (`query_typed`: one unnamed statement, so this works behind a
/// transaction-mode pooler).
async fn one_row(
    client: &Client,
    sql: &str,
    params: &[(&(dyn tokio_postgres::types::ToSql + Sync), Type)],
    doing: &'static str,
) -> Result<tokio_postgres::Row, PoolError> {
    client
        .query_typed(sql, params)
        .await
        .map_err(PoolError::db(doing))?
        .into_iter()
        .next()
        .ok_or_else(|| PoolError::missing_row(doing))
}

async fn server_version_num(client: &Client) -> Result<i32, PoolError> {
    let sql = "SELECT current_setting('server_version_num')::int";
    Ok(one_row(client, sql, &[], "reading the server version")
        .await?
        .get(0))
}

/// Why a role must not back the app pool: superuser or BYPASSRLS (its own or one it can
/// reach through membership, see [`reach_cte`]), CREATEROLE on PostgreSQL 15 (it can grant
/// itself any non-superuser role there), or it owns (directly or through membership) a
/// table under RLS or a tenant table (the contract's definition,
/// [`crate::isolation::tables`]: the column, the registry, FK children, partitions). Owners can `ALTER TABLE … NO FORCE` and drop
/// policies even when FORCE is set.
pub(crate) async fn app_role_problems(
    client: &Client,
    tenant_column: &str,
) -> Result<(String, Vec<String>), PoolError> {
    let version = server_version_num(client).await?;
    // How a privileged role is reached: `SET ROLE` (PostgreSQL 15: every membership), or on
    // 16+ only through INHERIT / ADMIN OPTION grants.
    let can_set = set_role_mode(version);
    let sql = format!(
        "{reach},
         {tenant_tables}
         SELECT current_user::text,
                ARRAY(SELECT r.rolname || CASE WHEN pg_has_role(current_user, r.oid, '{can_set}') THEN ' true' ELSE ' false' END
                      FROM pg_roles r JOIN reach USING (oid) WHERE r.rolsuper ORDER BY 1),
                ARRAY(SELECT r.rolname || CASE WHEN pg_has_role(current_user, r.oid, '{can_set}') THEN ' true' ELSE ' false' END
                      FROM pg_roles r JOIN reach USING (oid) WHERE r.rolbypassrls ORDER BY 1),
                ARRAY(SELECT format('%I.%I (owner %s)', n.nspname, c.relname, pg_get_userbyid(c.relowner))
                      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE c.relkind IN ('r', 'p', 'f')
                        AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                        AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
                        AND {OWNER_REACHED}
                        AND (c.relrowsecurity OR c.oid IN (SELECT oid FROM tenant_tables))
                      ORDER BY 1 LIMIT 20),
                ARRAY(SELECT r.rolname::text FROM pg_roles r JOIN reach USING (oid)
                      WHERE r.rolcreaterole AND {createrole} ORDER BY 1)",
        reach = reach_cte(version),
        tenant_tables = tenant_tables_cte("$1"),
        createrole = createrole_is_unsafe(version),
    );
    let params = [(&tenant_column as _, Type::TEXT)];
    let row = one_row(client, &sql, &params, "checking the pool role").await?;
    let role: String = row.get(0);
    // "name true|false": whether `SET ROLE name` works.
    let split = |v: Vec<String>| -> Vec<(String, bool)> {
        v.into_iter()
            .map(|s| match s.rsplit_once(' ') {
                Some((name, set)) => (name.to_string(), set == "true"),
                None => (s, true),
            })
            .collect()
    };
    let supers = split(row.get(1));
    let bypass = split(row.get(2));
    let owned: Vec<String> = row.get(3);
    let createrole: Vec<String> = row.get(4);
    let how = |set: bool, attr: &str, r: &str| {
        if set {
            format!("it can become {attr} role {r} through membership")
        } else {
            format!(
                "it reaches {attr} role {r} through INHERIT or ADMIN OPTION grants (it can \
                 replace that role's views and SECURITY DEFINER functions, which run as it, or \
                 grant itself SET)"
            )
        }
    };
    let is_super = supers.iter().any(|(r, _)| r == &role);
    let mut problems = Vec::new();
    if is_super {
        problems.push("it is SUPERUSER (superusers skip every policy)".to_string());
    } else {
        for (r, set) in &supers {
            problems.push(how(*set, "SUPERUSER", r));
        }
    }
    for (r, set) in &bypass {
        if r == &role {
            problems.push("it has BYPASSRLS".to_string());
        } else {
            problems.push(how(*set, "BYPASSRLS", r));
        }
    }
    if !is_super {
        for r in &createrole {
            let who = if r == &role {
                "it has CREATEROLE".to_string()
            } else {
                format!("it can become CREATEROLE role {r}")
            };
            problems.push(format!(
                "{who}: on PostgreSQL 15 that grants itself membership in any non-superuser \
                 role, BYPASSRLS and table owners included"
            ));
        }
        for t in &owned {
            problems.push(format!(
                "it owns tenant table {t} (owners can disable RLS and drop policies)"
            ));
        }
    }
    Ok((role, problems))
}

/// Why a role must not back the admin pool: it is (or can become) superuser, lacks
/// BYPASSRLS (reports would silently see nothing), or can write tables.
pub(crate) async fn admin_role_problems(
    client: &Client,
) -> Result<(String, Vec<String>), PoolError> {
    let version = server_version_num(client).await?;
    let sql = format!(
        "{}
         SELECT current_user::text,
                    (SELECT rolbypassrls FROM pg_roles WHERE rolname = current_user),
                    ARRAY(SELECT r.rolname::text FROM pg_roles r JOIN reach USING (oid)
                          WHERE r.rolsuper ORDER BY 1),
                    ARRAY(SELECT format('%I.%I', n.nspname, c.relname)
                          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE c.relkind IN ('r', 'p')
                            AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                            AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
                            AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
                          ORDER BY 1 LIMIT 20)",
        reach_cte(version)
    );
    let row = one_row(client, &sql, &[], "checking the admin role").await?;
    let role: String = row.get(0);
    let bypass: bool = row.get::<_, Option<bool>>(1).unwrap_or(false);
    let supers: Vec<String> = row.get(2);
    let writable: Vec<String> = row.get(3);
    let mut problems = Vec::new();
    if !supers.is_empty() {
        problems.push(format!(
            "it is or can become SUPERUSER ({}); the admin role must not be",
            supers.join(", ")
        ));
    }
    if !bypass {
        problems.push("it lacks BYPASSRLS, so cross-tenant reports would see no rows".into());
    }
    for t in writable {
        problems.push(format!(
            "it can write table {t}; the admin role is read-only"
        ));
    }
    Ok((role, problems))
}
