//! The narrow path that creates tenants.
//!
//! The admin role is read-only and the app role is confined to one tenant, so neither can
//! create a tenant. `tenantguard.provision_tenant(…)` can: a SECURITY DEFINER function with
//! a pinned `search_path` and fully qualified names, owned by a NOLOGIN provisioner role
//! (BYPASSRLS, never superuser) whose only privileges are INSERT on `tenants`,
//! `team_members`, `api_keys` and `audit_log`. EXECUTE is revoked from PUBLIC and granted
//! to the admin role alone. It inserts the tenant, its first owner key (hash only), an
//! optional owner member, and an audit row, and returns the key id.
//!
//! `tenantguard.issue_api_key(…)`, made the same way (same owner, same grants, no new
//! privilege), adds a key to an *existing* tenant, with its audit row: the way back in
//! for a tenant whose owner keys are lost (the API refuses to revoke the last one, but
//! keys can still be lost). A missing tenant fails its foreign key (23503).
//!
//! Role names are configurable, so this is SQL generated here, not a versioned migration;
//! [`plan`] reports drift and [`apply`] (from [`super::migrate`]) fixes it idempotently.

use tokio_postgres::Transaction;

use crate::policy::{ident, role_drift, Change, PolicySet, RoleDrift, RoleSpec, FUNCTION_SCHEMA};

/// The provisioner: never logs in, bypasses RLS (it writes a tenant that has no context yet).
const PROVISIONER: RoleSpec = RoleSpec {
    login: false,
    bypassrls: true,
};

/// The default provisioner role.
pub const DEFAULT_PROVISIONER: &str = "tenantguard_provisioner";

/// Tables the provisioner may insert into (and nothing else).
const TABLES: [&str; 4] = ["tenants", "team_members", "api_keys", "audit_log"];

/// One SECURITY DEFINER function of the provisioning path.
struct Function {
    name: &'static str,
    /// Argument types, for `ALTER FUNCTION` and messages.
    args: &'static str,
    /// Named arguments as declared.
    params: &'static str,
    returns: &'static str,
    /// Compared with `pg_proc.prosrc` to detect drift.
    body: &'static str,
}

const FUNCTIONS: [Function; 2] = [
    Function {
        name: "provision_tenant",
        args: "uuid, text, text, bytea, text",
        params:
            "p_tenant_id uuid, p_name text, p_key_prefix text, p_key_hash bytea, p_owner_email text",
        returns: "TABLE (key_id uuid, created_at timestamptz)",
        body: BODY,
    },
    Function {
        name: "issue_api_key",
        args: "uuid, text, text, text, bytea",
        params: "p_tenant_id uuid, p_name text, p_role text, p_key_prefix text, p_key_hash bytea",
        returns: "TABLE (key_id uuid, created_at timestamptz)",
        body: ISSUE_BODY,
    },
];

/// `issue_api_key`: the key (hash only) and its audit row; the table's checks validate
/// name and role, its foreign key the tenant.
const ISSUE_BODY: &str = r#"
DECLARE
    v_key_id uuid := tenantguard.uuid_v7();
    v_now timestamptz := pg_catalog.now();
BEGIN
    INSERT INTO public.api_keys (tenant_id, id, name, prefix, key_hash, role, created_at)
        VALUES (p_tenant_id, v_key_id, p_name, p_key_prefix, p_key_hash, p_role, v_now);
    INSERT INTO public.audit_log (tenant_id, id, actor, action, resource_type, resource_id, occurred_at, details)
        VALUES (p_tenant_id, tenantguard.uuid_v7(), 'admin', 'issue', 'api_key', v_key_id, v_now,
                pg_catalog.jsonb_build_object('name', p_name, 'role', p_role));
    key_id := v_key_id;
    created_at := v_now;
    RETURN NEXT;
END
"#;

/// `provision_tenant`'s body (compared with `pg_proc.prosrc` to detect drift).
const BODY: &str = r#"
DECLARE
    v_key_id uuid := tenantguard.uuid_v7();
    v_now timestamptz := pg_catalog.now();
BEGIN
    INSERT INTO public.tenants (id, name, created_at) VALUES (p_tenant_id, p_name, v_now);
    INSERT INTO public.api_keys (tenant_id, id, name, prefix, key_hash, role, created_at)
        VALUES (p_tenant_id, v_key_id, 'owner key', p_key_prefix, p_key_hash, 'owner', v_now);
    IF p_owner_email IS NOT NULL THEN
        INSERT INTO public.team_members (tenant_id, id, email, role, created_at, updated_at)
            VALUES (p_tenant_id, tenantguard.uuid_v7(), p_owner_email, 'owner', v_now, v_now);
    END IF;
    INSERT INTO public.audit_log (tenant_id, id, actor, action, resource_type, resource_id, occurred_at, details)
        VALUES (p_tenant_id, tenantguard.uuid_v7(), 'admin', 'provision', 'tenant', p_tenant_id, v_now,
                pg_catalog.jsonb_build_object('name', p_name, 'api_key_id', v_key_id));
    key_id := v_key_id;
    created_at := v_now;
    RETURN NEXT;
END
"#;

/// On Citus the provisioner must be able to log in (on the workers): Citus runs a SECURITY
/// DEFINER function's distributed statements over connections as the function's owner
/// (a NOLOGIN owner fails with "role … is not permitted to log in", Citus issue #7719). It
/// still has no password: only the node-to-node authentication the operator sets up
/// (`pg_dist_authinfo`, certificates, hba from the coordinator) lets it in.
const CITUS_PROVISIONER: RoleSpec = RoleSpec {
    login: true,
    bypassrls: true,
};

fn spec(citus: bool) -> RoleSpec {
    if citus {
        CITUS_PROVISIONER
    } else {
        PROVISIONER
    }
}

/// The statements that create or repair everything (each idempotent).
fn script(set: &PolicySet, provisioner: &str, citus: bool) -> Vec<String> {
    let p = ident(provisioner);
    let s = FUNCTION_SCHEMA;
    let tables = TABLES
        .iter()
        .map(|t| format!("public.{}", ident(t)))
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = vec![
        format!(
            "DO $tg$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {}) THEN \
             CREATE ROLE {p}; END IF; END $tg$",
            crate::policy::literal(provisioner)
        ),
        format!("ALTER ROLE {p} {}", spec(citus).attributes()),
        format!("GRANT USAGE ON SCHEMA public TO {p}"),
        format!("GRANT USAGE ON SCHEMA {s} TO {p}"),
        format!("GRANT EXECUTE ON FUNCTION {s}.uuid_v7() TO {p}"),
        // Everything in public, not just the four tables: a stray grant elsewhere is drift too.
        format!("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {p}"),
        format!("GRANT INSERT ON {tables} TO {p}"),
    ];
    for f in &FUNCTIONS {
        let func = format!("{s}.{}({})", f.name, f.args);
        sql.push(format!(
            "CREATE OR REPLACE FUNCTION {s}.{}({}) RETURNS {} \
             LANGUAGE plpgsql VOLATILE SECURITY DEFINER \
             SET search_path = pg_catalog, pg_temp AS $tgfn${}$tgfn$",
            f.name, f.params, f.returns, f.body
        ));
        sql.push(format!("ALTER FUNCTION {func} OWNER TO {p}"));
        sql.push(format!("REVOKE ALL ON FUNCTION {func} FROM PUBLIC"));
        if let Some(admin) = &set.roles.admin {
            sql.push(format!(
                "GRANT EXECUTE ON FUNCTION {func} TO {}",
                ident(admin)
            ));
        }
    }
    sql
}

/// Lists every way the provisioning path differs from its declaration (empty: in sync).
pub async fn plan(
    tx: &Transaction<'_>,
    set: &PolicySet,
    provisioner: &str,
) -> Result<Vec<Change>, tokio_postgres::Error> {
    plan_for(tx, set, provisioner, false).await
}

/// [`plan`] for plain PostgreSQL (`citus = false`) or Citus (the provisioner can log in).
pub async fn plan_for(
    tx: &Transaction<'_>,
    set: &PolicySet,
    provisioner: &str,
    citus: bool,
) -> Result<Vec<Change>, tokio_postgres::Error> {
    let mut diffs = Vec::new();
    match role_drift(tx, provisioner, spec(citus)).await? {
        Some(RoleDrift::Missing) => diffs.push(format!("role {provisioner} is missing")),
        drift => {
            if let Some(RoleDrift::Attributes(what)) = drift {
                diffs.push(format!("role {provisioner} attributes differ ({what})"));
            }
            let grants = tx
                .query(
                    "SELECT c.relname::text, x.privilege_type
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
                          aclexplode(COALESCE(c.relacl, acldefault('r', c.relowner))) x
                     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
                       AND x.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1)
                     ORDER BY 1, 2",
                    &[&provisioner],
                )
                .await?;
            let have: Vec<(String, String)> = grants.iter().map(|g| (g.get(0), g.get(1))).collect();
            let mut want: Vec<(String, String)> = TABLES
                .iter()
                .map(|t| (t.to_string(), "INSERT".to_string()))
                .collect();
            want.sort();
            if have != want {
                diffs.push(format!(
                    "role {provisioner} has table privileges {have:?}, want INSERT on {TABLES:?} only"
                ));
            }
        }
    }
    for f in &FUNCTIONS {
        let signature = format!("{FUNCTION_SCHEMA}.{}({})", f.name, f.args);
        let func = tx
            .query_opt(
                "SELECT p.prosrc, p.prosecdef, COALESCE(p.proconfig, '{}'), pg_get_userbyid(p.proowner),
                        COALESCE(ARRAY(SELECT CASE WHEN x.grantee = 0 THEN 'public' ELSE pg_get_userbyid(x.grantee) END
                                       FROM aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) x
                                       WHERE x.privilege_type = 'EXECUTE' ORDER BY 1), '{}')
                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = $1 AND p.proname = $2",
                &[&FUNCTION_SCHEMA, &f.name],
            )
            .await?;
        match func {
            None => diffs.push(format!("function {signature} is missing")),
            Some(r) => {
                let (src, secdef, config, owner, exec): (
                    String,
                    bool,
                    Vec<String>,
                    String,
                    Vec<String>,
                ) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
                if src != f.body || !secdef || config != ["search_path=pg_catalog, pg_temp"] {
                    diffs.push(format!(
                        "function {signature}: definition differs (security definer \
                         {secdef}, settings {config:?})"
                    ));
                }
                if owner != provisioner {
                    diffs.push(format!(
                        "function {signature} is owned by {owner}, not {provisioner}"
                    ));
                }
                let mut want: Vec<String> = vec![provisioner.to_string()];
                want.extend(set.roles.admin.clone());
                want.sort();
                if exec != want {
                    diffs.push(format!(
                        "function {signature}: EXECUTE granted to {exec:?}, want {want:?}"
                    ));
                }
            }
        }
    }
    if diffs.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![Change {
        object: format!(
            "provisioning ({FUNCTION_SCHEMA}.provision_tenant, {FUNCTION_SCHEMA}.issue_api_key, role {provisioner})"
        ),
        difference: diffs.join("; "),
        sql: script(set, provisioner, citus),
    }])
}

/// Makes the provisioning path match (in `tx`) and returns what was changed.
pub async fn apply(
    tx: &Transaction<'_>,
    set: &PolicySet,
    provisioner: &str,
) -> Result<Vec<Change>, tokio_postgres::Error> {
    apply_for(tx, set, provisioner, false).await
}

/// [`apply`] for plain PostgreSQL or Citus (see [`plan_for`]).
pub async fn apply_for(
    tx: &Transaction<'_>,
    set: &PolicySet,
    provisioner: &str,
    citus: bool,
) -> Result<Vec<Change>, tokio_postgres::Error> {
    let changes = plan_for(tx, set, provisioner, citus).await?;
    for c in &changes {
        for stmt in &c.sql {
            tx.batch_execute(stmt).await?;
        }
    }
    Ok(changes)
}
