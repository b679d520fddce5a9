//! Start-up checks: a pool refuses a role that would make RLS moot.

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::PoolError;

/// Why a role must not back the app pool: superuser or BYPASSRLS (its own or one it can
/// become through membership: in PostgreSQL 15 every membership allows SET ROLE), or it
/// owns (directly or through membership) a table under RLS or with the tenant column.
/// Owners can `ALTER TABLE … NO FORCE` and drop policies even when FORCE is set.
pub(crate) async fn app_role_problems(
    client: &Client,
    tenant_column: &str,
) -> Result<(String, Vec<String>), PoolError> {
    // query_typed: one unnamed statement, so this works behind a transaction-mode pooler.
    let row = client
        .query_typed(
            "SELECT current_user::text,
                    ARRAY(SELECT r.rolname::text FROM pg_roles r
                          WHERE r.rolsuper AND pg_has_role(current_user, r.oid, 'MEMBER') ORDER BY 1),
                    ARRAY(SELECT r.rolname::text FROM pg_roles r
                          WHERE r.rolbypassrls AND pg_has_role(current_user, r.oid, 'MEMBER') ORDER BY 1),
                    ARRAY(SELECT format('%I.%I (owner %s)', n.nspname, c.relname, pg_get_userbyid(c.relowner))
                          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE c.relkind IN ('r', 'p')
                            AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                            AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
                            AND pg_has_role(current_user, c.relowner, 'MEMBER')
                            AND (c.relrowsecurity OR EXISTS (
                                  SELECT 1 FROM pg_attribute a
                                  WHERE a.attrelid = c.oid AND a.attname = $1 AND NOT a.attisdropped))
                          ORDER BY 1 LIMIT 20)",
            &[(&tenant_column, Type::TEXT)],
        )
        .await
        .map_err(PoolError::db("checking the pool role"))?
        .into_iter()
        .next()
        .ok_or_else(|| PoolError::Unavailable("the role check returned no row".into()))?;
    let role: String = row.get(0);
    let supers: Vec<String> = row.get(1);
    let bypass: Vec<String> = row.get(2);
    let owned: Vec<String> = row.get(3);
    let mut problems = Vec::new();
    if supers.contains(&role) {
        problems.push("it is SUPERUSER (superusers skip every policy)".to_string());
    } else {
        for r in &supers {
            problems.push(format!(
                "it can become SUPERUSER role {r} through membership"
            ));
        }
    }
    for r in &bypass {
        if r == &role {
            problems.push("it has BYPASSRLS".to_string());
        } else {
            problems.push(format!(
                "it can become BYPASSRLS role {r} through membership"
            ));
        }
    }
    if !supers.contains(&role) {
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
    let row = client
        .query_typed(
            "SELECT current_user::text,
                    (SELECT rolbypassrls FROM pg_roles WHERE rolname = current_user),
                    ARRAY(SELECT r.rolname::text FROM pg_roles r
                          WHERE r.rolsuper AND pg_has_role(current_user, r.oid, 'MEMBER') ORDER BY 1),
                    ARRAY(SELECT format('%I.%I', n.nspname, c.relname)
                          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE c.relkind IN ('r', 'p')
                            AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                            AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
                            AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
                          ORDER BY 1 LIMIT 20)",
            &[],
        )
        .await
        .map_err(PoolError::db("checking the admin role"))?
        .into_iter()
        .next()
        .ok_or_else(|| PoolError::Unavailable("the role check returned no row".into()))?;
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
