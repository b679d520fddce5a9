//! Live state → list of changes, and applying them.

use std::collections::{BTreeSet, HashMap};

use tokio_postgres::{Client, Transaction};

use super::model::{ident, literal, Command, PolicySet, TenantTable, FUNCTION_SCHEMA};
use super::PolicyError;
use crate::audit::catalog::{Catalog, Policy, Table};
use crate::audit::{AuditConfig, AuditError};
use crate::isolation::context_function_call;
use crate::isolation::roles::PER_GRANT_OPTIONS;

/// One difference between the database and the declaration, with the SQL that fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The object concerned, e.g. `table public.projects`.
    pub object: String,
    /// What differs, in words.
    pub difference: String,
    /// Statements that make the object match, run in order. Empty when the engine cannot
    /// fix the difference itself (a missing table, a tenant column of the wrong type…):
    /// [`check`] reports it and [`apply`] refuses to start.
    pub sql: Vec<String>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.difference)
    }
}

fn change(object: impl Into<String>, difference: impl Into<String>, sql: Vec<String>) -> Change {
    Change {
        object: object.into(),
        difference: difference.into(),
        sql,
    }
}

/// Reports what [`apply`] would change, without changing anything.
pub async fn check(client: &mut Client, set: &PolicySet) -> Result<Vec<Change>, PolicyError> {
    let tx = client
        .transaction()
        .await
        .map_err(PolicyError::db("starting a transaction"))?;
    let changes = plan(&tx, set).await?;
    tx.rollback()
        .await
        .map_err(PolicyError::db("rolling back"))?;
    Ok(changes)
}

/// Makes the database match `set` in one transaction and returns what was changed.
/// Running it again returns an empty list. On any error nothing is changed.
pub async fn apply(client: &mut Client, set: &PolicySet) -> Result<Vec<Change>, PolicyError> {
    let tx = client
        .transaction()
        .await
        .map_err(PolicyError::db("starting a transaction"))?;
    let changes = plan(&tx, set).await?;
    refuse_blocking(&changes, "nothing was changed; fix these first")?;
    execute(&tx, &changes).await?;
    tx.commit().await.map_err(PolicyError::db("committing"))?;
    Ok(changes)
}

/// Refuses a plan holding changes it cannot make itself (an empty `sql`: a precondition the
/// user must fix), naming every one after `why`.
pub(crate) fn refuse_blocking(changes: &[Change], why: &str) -> Result<(), PolicyError> {
    let blocking: Vec<String> = changes
        .iter()
        .filter(|c| c.sql.is_empty())
        .map(|c| c.to_string())
        .collect();
    if blocking.is_empty() {
        Ok(())
    } else {
        Err(PolicyError::Precondition(format!(
            "{why}: {}",
            blocking.join("; ")
        )))
    }
}

/// Computes the changes inside `tx`. Uses a savepoint (rolled back) to learn how
/// PostgreSQL deparses the desired policy expressions; nothing else is written.
pub async fn plan(tx: &Transaction<'_>, set: &PolicySet) -> Result<Vec<Change>, PolicyError> {
    set.validate()?;
    let mut changes = plan_prelude(tx, set).await?;
    let canon = canonical_predicates(tx, set).await?;
    let catalog = load_catalog(tx, set).await?;
    for table in &set.tables {
        plan_table(set, table, &catalog, &canon, &mut changes);
    }
    Ok(changes)
}

/// The declared tables' schemas, read by the one catalog loader the audit and the probe
/// use (`audit::catalog`). Privileges there are resolved for a role that must exist, and
/// the app role may not yet (the plan creates it): they are read for the connecting user,
/// and the plan compares the tables' ACLs instead.
async fn load_catalog(tx: &Transaction<'_>, set: &PolicySet) -> Result<Catalog, PolicyError> {
    let me: String = tx
        .query_one("SELECT current_user::text", &[])
        .await
        .map_err(PolicyError::db("reading the current user"))?
        .get(0);
    let mut schemas: Vec<String> = set.tables.iter().map(|t| t.schema.clone()).collect();
    schemas.sort();
    schemas.dedup();
    let config = AuditConfig {
        app_role: me,
        tenant_column: set.tenant_column.clone(),
        tenant_setting: set.tenant_setting.clone(),
        schemas,
        tenancy: None,
    };
    crate::audit::catalog::load(tx, &config)
        .await
        .map_err(|e| match e {
            AuditError::Db { context, source } => PolicyError::Db {
                context: format!("reading {context}"),
                source,
            },
            other => PolicyError::Precondition(other.to_string()),
        })
}

/// The part of the plan that does not depend on tables: roles, the function schema and
/// `current_tenant_id()`. Migrations need it applied first (they run as the owner role).
pub async fn plan_prelude(
    tx: &Transaction<'_>,
    set: &PolicySet,
) -> Result<Vec<Change>, PolicyError> {
    let mut changes = Vec::new();
    plan_roles(tx, set, &mut changes).await?;
    plan_function(tx, set, &mut changes).await?;
    Ok(changes)
}

/// Applies [`plan_prelude`] inside `tx` and returns what it changed.
pub async fn apply_prelude(
    tx: &Transaction<'_>,
    set: &PolicySet,
) -> Result<Vec<Change>, PolicyError> {
    let changes = plan_prelude(tx, set).await?;
    execute(tx, &changes).await?;
    Ok(changes)
}

async fn execute(tx: &Transaction<'_>, changes: &[Change]) -> Result<(), PolicyError> {
    for c in changes {
        for stmt in &c.sql {
            tx.batch_execute(stmt)
                .await
                .map_err(PolicyError::db(format!("applying `{c}` with `{stmt}`")))?;
        }
    }
    Ok(())
}

/// The attributes a role the engine manages must have; every other privilege attribute
/// (SUPERUSER, CREATEDB, CREATEROLE, REPLICATION) must be off.
#[derive(Clone, Copy)]
pub(crate) struct RoleSpec {
    /// LOGIN or NOLOGIN.
    pub login: bool,
    /// BYPASSRLS or NOBYPASSRLS.
    pub bypassrls: bool,
}

impl RoleSpec {
    /// The attribute list for `CREATE ROLE` / `ALTER ROLE`.
    pub(crate) fn attributes(self) -> String {
        format!(
            "{} NOSUPERUSER {} NOCREATEDB NOCREATEROLE NOREPLICATION",
            if self.login { "LOGIN" } else { "NOLOGIN" },
            if self.bypassrls {
                "BYPASSRLS"
            } else {
                "NOBYPASSRLS"
            }
        )
    }
}

/// How a managed role differs from its [`RoleSpec`].
pub(crate) enum RoleDrift {
    /// No such role.
    Missing,
    /// The role exists with other attributes; the text says which.
    Attributes(String),
}

/// Compares role `name` with `spec` (`None`: it matches).
pub(crate) async fn role_drift(
    tx: &Transaction<'_>,
    name: &str,
    spec: RoleSpec,
) -> Result<Option<RoleDrift>, tokio_postgres::Error> {
    let row = tx
        .query_opt(
            "SELECT rolsuper, rolbypassrls, rolcanlogin, rolcreatedb, rolcreaterole, rolreplication
             FROM pg_roles WHERE rolname = $1",
            &[&name],
        )
        .await?;
    let Some(r) = row else {
        return Ok(Some(RoleDrift::Missing));
    };
    let (sup, byp, login, cdb, crole, repl): (bool, bool, bool, bool, bool, bool) =
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
    if sup || byp != spec.bypassrls || login != spec.login || cdb || crole || repl {
        return Ok(Some(RoleDrift::Attributes(format!(
            "superuser={sup}, bypassrls={byp}, login={login}, createdb={cdb}, \
             createrole={crole}, replication={repl}; want {}",
            spec.attributes()
        ))));
    }
    Ok(None)
}

async fn plan_roles(
    tx: &Transaction<'_>,
    set: &PolicySet,
    out: &mut Vec<Change>,
) -> Result<(), PolicyError> {
    let mut wanted: Vec<(&str, RoleSpec)> = vec![(
        set.roles.app.as_str(),
        RoleSpec {
            login: true,
            bypassrls: false,
        },
    )];
    if let Some(o) = &set.roles.owner {
        wanted.push((
            o,
            RoleSpec {
                login: false,
                bypassrls: false,
            },
        ));
    }
    if let Some(a) = &set.roles.admin {
        wanted.push((
            a,
            RoleSpec {
                login: true,
                bypassrls: true,
            },
        ));
    }
    for (name, spec) in wanted {
        let drift = role_drift(tx, name, spec)
            .await
            .map_err(PolicyError::db("reading roles"))?;
        let object = format!("role {name}");
        match drift {
            None => {}
            Some(RoleDrift::Missing) => out.push(change(
                object,
                "missing",
                vec![format!("CREATE ROLE {} {}", ident(name), spec.attributes())],
            )),
            Some(RoleDrift::Attributes(what)) => out.push(change(
                object,
                format!("attributes differ ({what})"),
                vec![format!("ALTER ROLE {} {}", ident(name), spec.attributes())],
            )),
        }
    }
    // The app role must not reach the owner's or the admin's rights through membership,
    // directly or through roles that are members of them: every grant to the app of such a
    // role is drift (whatever its INHERIT/SET options on 16+: fail closed). PostgreSQL 16
    // records who granted each membership, and a superuser's plain REVOKE only removes the
    // grants recorded as its own (a CREATEROLE role's grant stays, with a warning), so the
    // repair names the grantor.
    let v16: bool = tx
        .query_one(
            &format!("SELECT current_setting('server_version_num')::int >= {PER_GRANT_OPTIONS}"),
            &[],
        )
        .await
        .map_err(PolicyError::db("reading the server version"))?
        .get(0);
    for other in [&set.roles.owner, &set.roles.admin].into_iter().flatten() {
        let grants = tx
            .query(
                "SELECT g.rolname::text, pg_get_userbyid(m.grantor)::text
                 FROM pg_auth_members m
                 JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
                 JOIN pg_roles o ON o.rolname = $1
                 WHERE u.rolname = $2 AND (g.oid = o.oid OR pg_has_role(g.oid, o.oid, 'MEMBER'))
                 ORDER BY 1, 2",
                &[other, &set.roles.app],
            )
            .await
            .map_err(PolicyError::db("reading role memberships"))?;
        for g in grants {
            let (role, grantor): (String, String) = (g.get(0), g.get(1));
            let mut revoke = format!("REVOKE {} FROM {}", ident(&role), ident(&set.roles.app));
            if v16 {
                revoke.push_str(&format!(" GRANTED BY {} CASCADE", ident(&grantor)));
            }
            let what = if &role == other {
                format!("is a member of {other}")
            } else {
                format!("is a member of {role}, which is a member of {other}")
            };
            out.push(change(
                format!("role {}", set.roles.app),
                what,
                vec![revoke],
            ));
        }
    }
    Ok(())
}

async fn plan_function(
    tx: &Transaction<'_>,
    set: &PolicySet,
    out: &mut Vec<Change>,
) -> Result<(), PolicyError> {
    let schema = FUNCTION_SCHEMA;
    let body = set.current_tenant_body();
    let owner_clause = |what: &str| {
        set.roles
            .owner
            .as_ref()
            .map(|o| format!("ALTER {what} OWNER TO {}", ident(o)))
    };
    let schema_row = tx
        .query_opt(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1",
            &[&schema],
        )
        .await
        .map_err(PolicyError::db("reading schemas"))?;
    match schema_row {
        None => {
            let mut sql = vec![format!("CREATE SCHEMA {schema}")];
            sql.extend(owner_clause(&format!("SCHEMA {schema}")));
            out.push(change(format!("schema {schema}"), "missing", sql));
        }
        Some(r) => {
            let owner: String = r.get(0);
            if let Some(o) = &set.roles.owner {
                if &owner != o {
                    out.push(change(
                        format!("schema {schema}"),
                        format!("owned by {owner}, not {o}"),
                        owner_clause(&format!("SCHEMA {schema}"))
                            .into_iter()
                            .collect(),
                    ));
                }
            }
        }
    }
    let mut users = vec![set.roles.app.clone()];
    users.extend(set.roles.admin.clone());
    for u in &users {
        let has = tx
            .query_opt(
                "SELECT 1 FROM pg_namespace n, aclexplode(n.nspacl) x
                 WHERE n.nspname = $1 AND x.grantee = (SELECT oid FROM pg_roles WHERE rolname = $2)
                   AND x.privilege_type = 'USAGE'",
                &[&schema, u],
            )
            .await
            .map_err(PolicyError::db("reading schema privileges"))?;
        if has.is_none() {
            out.push(change(
                format!("schema {schema}"),
                format!("{u} lacks USAGE"),
                vec![format!("GRANT USAGE ON SCHEMA {schema} TO {}", ident(u))],
            ));
        }
    }

    let func = context_function_call();
    let create = format!(
        "CREATE OR REPLACE FUNCTION {func} RETURNS uuid LANGUAGE sql STABLE PARALLEL SAFE \
         SECURITY INVOKER AS {}",
        literal(&body)
    );
    let row = tx
        .query_opt(
            "SELECT p.prosrc, p.provolatile::text, p.prosecdef, pg_get_userbyid(p.proowner),
                    COALESCE(ARRAY(SELECT CASE WHEN x.grantee = 0 THEN 'public' ELSE pg_get_userbyid(x.grantee) END
                                   FROM aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) x
                                   WHERE x.privilege_type = 'EXECUTE' ORDER BY 1), '{}')
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = $1 AND p.proname = 'current_tenant_id' AND p.pronargs = 0",
            &[&schema],
        )
        .await
        .map_err(PolicyError::db("reading functions"))?;
    let mut want_exec: BTreeSet<String> = users.iter().cloned().collect();
    if let Some(o) = &set.roles.owner {
        want_exec.insert(o.clone());
    }
    let grant_sql = || {
        let mut v = vec![format!("REVOKE ALL ON FUNCTION {func} FROM PUBLIC")];
        for u in &users {
            v.push(format!("GRANT EXECUTE ON FUNCTION {func} TO {}", ident(u)));
        }
        v
    };
    match row {
        None => {
            let mut sql = vec![create];
            sql.extend(owner_clause(&format!("FUNCTION {func}")));
            sql.extend(grant_sql());
            out.push(change(format!("function {func}"), "missing", sql));
        }
        Some(r) => {
            let (src, vol, secdef, owner, exec): (String, String, bool, String, Vec<String>) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            if src.trim() != body || vol != "s" || secdef {
                out.push(change(
                    format!("function {func}"),
                    format!("definition differs (body `{}`, volatility {vol}, security definer {secdef})", src.trim()),
                    vec![
                        // CREATE OR REPLACE cannot drop SECURITY DEFINER on its own.
                        format!("ALTER FUNCTION {func} SECURITY INVOKER"),
                        create,
                    ],
                ));
            }
            if let Some(o) = &set.roles.owner {
                if &owner != o {
                    out.push(change(
                        format!("function {func}"),
                        format!("owned by {owner}, not {o}"),
                        owner_clause(&format!("FUNCTION {func}"))
                            .into_iter()
                            .collect(),
                    ));
                }
            }
            let have: BTreeSet<String> = exec.into_iter().filter(|g| g != &owner).collect();
            let want: BTreeSet<String> =
                want_exec.iter().filter(|g| *g != &owner).cloned().collect();
            if have != want {
                out.push(change(
                    format!("function {func}"),
                    format!("EXECUTE granted to {have:?}, want {want:?}"),
                    grant_sql(),
                ));
            }
        }
    }
    Ok(())
}

/// How PostgreSQL deparses the desired USING and WITH CHECK expressions, per tenant column.
type Canon = HashMap<String, String>;

async fn canonical_predicates(tx: &Transaction<'_>, set: &PolicySet) -> Result<Canon, PolicyError> {
    let columns: BTreeSet<&str> = set.tables.iter().map(|t| set.column_of(t)).collect();
    let db = PolicyError::db("deparsing the desired policy expressions");
    tx.batch_execute("SAVEPOINT tenantguard_canon")
        .await
        .map_err(PolicyError::db("creating a savepoint"))?;
    let result: Result<Canon, tokio_postgres::Error> = async {
        // The function must exist for the expression to parse; create it inside the
        // savepoint if it does not (rolled back below).
        tx.batch_execute(&format!(
            "SET LOCAL client_min_messages = warning;
             CREATE SCHEMA IF NOT EXISTS {FUNCTION_SCHEMA};
             CREATE OR REPLACE FUNCTION {} RETURNS uuid
             LANGUAGE sql STABLE AS {}",
            context_function_call(),
            literal(&set.current_tenant_body())
        ))
        .await?;
        let mut canon = Canon::new();
        for (i, col) in columns.iter().enumerate() {
            let t = format!("pg_temp.tenantguard_canon_{i}");
            tx.batch_execute(&format!(
                "CREATE TEMP TABLE tenantguard_canon_{i} ({} uuid);
                 CREATE POLICY p ON {t} USING {}",
                ident(col),
                set.predicate(col)
            ))
            .await?;
            let row = tx
                .query_one(
                    &format!("SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = '{t}'::regclass"),
                    &[],
                )
                .await?;
            canon.insert(col.to_string(), row.get(0));
        }
        Ok(canon)
    }
    .await;
    // Roll back even when the block failed, so the outer transaction stays usable.
    tx.batch_execute(
        "ROLLBACK TO SAVEPOINT tenantguard_canon; RELEASE SAVEPOINT tenantguard_canon",
    )
    .await
    .map_err(PolicyError::db("rolling back the savepoint"))?;
    result.map_err(db)
}

/// One declared table: what `plan_table` hands to each of its parts.
struct Target<'a> {
    set: &'a PolicySet,
    table: &'a TenantTable,
    /// `"schema"."name"`.
    qt: String,
    /// The tenant column, and quoted.
    col: &'a str,
    qcol: String,
    /// `table schema.name`, the object of every change.
    object: String,
}

impl Target<'_> {
    fn change(&self, difference: impl Into<String>, sql: Vec<String>) -> Change {
        change(self.object.clone(), difference, sql)
    }
}

/// Plans one declared table: its tenant column, index, owner and RLS flags, then (once the
/// column can exist) its policies and grants.
fn plan_table(
    set: &PolicySet,
    table: &TenantTable,
    catalog: &Catalog,
    canon: &Canon,
    out: &mut Vec<Change>,
) {
    let col = set.column_of(table);
    let target = Target {
        set,
        table,
        qt: table.qualified(),
        col,
        qcol: ident(col),
        object: format!("table {}.{}", table.schema, table.name),
    };
    let live = catalog
        .tables
        .iter()
        .find(|t| t.schema == table.schema && t.name == table.name && matches!(t.kind, 'r' | 'p'));
    let Some(live) = live else {
        out.push(target.change("does not exist (declared as a tenant table)", Vec::new()));
        return;
    };
    if !plan_column(&target, live, catalog, out) {
        return;
    }
    plan_flags(&target, live, out);
    plan_policies(&target, live, catalog, canon, out);
    plan_grants(&target, live, out);
}

/// The tenant column: added and backfilled (`rls apply` on an existing database), or
/// tightened; its default and its index. `false` when the table cannot be planned further
/// (no column and nothing to fill it from, or a column of the wrong type).
fn plan_column(
    target: &Target<'_>,
    live: &Table,
    catalog: &Catalog,
    out: &mut Vec<Change>,
) -> bool {
    let (table, col, qt, qcol) = (target.table, target.col, &target.qt, &target.qcol);
    let column = live.column(col);
    if column.is_none() {
        let Some(expr) = &table.backfill else {
            out.push(target.change(
                format!(
                    "has no column {col:?} and no `backfill` expression to fill it from; add \
                     `backfill = \"<SQL expression yielding the tenant uuid per row>\"` to its \
                     [[table]] entry"
                ),
                Vec::new(),
            ));
            return false;
        };
        out.push(target.change(
            format!("no tenant column {col}; adding it, backfilled from {expr}"),
            backfill_sql(qt, qcol, expr),
        ));
    } else if let Some(c) = column {
        if c.type_name != "uuid" {
            out.push(target.change(
                format!("column {col} has type {}, expected uuid", c.type_name),
                Vec::new(),
            ));
            return false;
        }
        if !c.not_null {
            let sql = match &table.backfill {
                Some(expr) => backfill_sql(qt, qcol, expr)[1..].to_vec(),
                None => vec![format!("ALTER TABLE {qt} ALTER COLUMN {qcol} SET NOT NULL")],
            };
            out.push(target.change(format!("{col} is nullable"), sql));
        }
    }
    if table.default_to_current_tenant {
        let want = context_function_call();
        if column.and_then(|c| c.default.as_deref()) != Some(want.as_str()) {
            out.push(target.change(
                format!("{col} does not default to the current tenant"),
                vec![format!(
                    "ALTER TABLE {qt} ALTER COLUMN {qcol} SET DEFAULT {want}"
                )],
            ));
        }
    }
    let indexed = column.is_some()
        && catalog
            .indexes
            .iter()
            .any(|i| i.table == live.oid && i.columns.first() == Some(&Some(col.to_string())));
    if !indexed {
        let name = ident(&truncate63(&format!("{}_{}_idx", table.name, col)));
        out.push(target.change(
            format!("no index leads with {col}"),
            vec![format!("CREATE INDEX {name} ON {qt} ({qcol})")],
        ));
    }
    true
}

/// The owner, and row-level security enabled and forced.
fn plan_flags(target: &Target<'_>, live: &Table, out: &mut Vec<Change>) {
    let qt = &target.qt;
    if let Some(o) = &target.set.roles.owner {
        if &live.owner != o {
            out.push(target.change(
                format!("owned by {}, not {o}", live.owner),
                vec![format!("ALTER TABLE {qt} OWNER TO {}", ident(o))],
            ));
        }
    }
    if !live.rls {
        out.push(target.change(
            "row level security is disabled",
            vec![format!("ALTER TABLE {qt} ENABLE ROW LEVEL SECURITY")],
        ));
    }
    if !live.force {
        out.push(target.change(
            "row level security is not forced for the owner",
            vec![format!("ALTER TABLE {qt} FORCE ROW LEVEL SECURITY")],
        ));
    }
}

/// Policies, matched by content rather than name: one permissive policy per declared
/// command, to the app alone, with the contract's predicate; every other policy dropped.
fn plan_policies(
    target: &Target<'_>,
    table_live: &Table,
    catalog: &Catalog,
    canon: &Canon,
    out: &mut Vec<Change>,
) {
    let (set, table, col, qt) = (target.set, target.table, target.col, &target.qt);
    // In name order, as the messages and the repair list them.
    let mut live: Vec<&Policy> = catalog
        .policies
        .iter()
        .filter(|p| p.table == table_live.oid)
        .collect();
    live.sort_by(|a, b| a.name.cmp(&b.name));
    let sorted_roles = |p: &Policy| {
        let mut r = p.roles.clone();
        r.sort();
        r
    };
    // The deparsed predicate of a table that does not have its column yet cannot be read
    // from it; the canonical form is per column name, so it is the same.
    let pred = canon.get(col).cloned().unwrap_or_default();
    let mut matched = vec![false; live.len()];
    let mut missing: Vec<Command> = Vec::new();
    for cmd in &table.commands {
        let want_qual = cmd.has_using().then(|| pred.clone());
        let want_check = cmd.has_check().then(|| pred.clone());
        let hit = live.iter().enumerate().position(|(i, p)| {
            !matched[i]
                && p.cmd == cmd.polcmd()
                && p.permissive
                && p.roles == [set.roles.app.clone()]
                && p.using == want_qual
                && p.check == want_check
        });
        match hit {
            Some(i) => matched[i] = true,
            None => missing.push(*cmd),
        }
    }
    let extra: Vec<&Policy> = live
        .iter()
        .zip(&matched)
        .filter(|(_, m)| !**m)
        .map(|(p, _)| *p)
        .collect();
    if extra.is_empty() && missing.is_empty() {
        return;
    }
    let mut sql = Vec::new();
    let mut words = Vec::new();
    for p in &extra {
        words.push(format!(
            "policy {:?} (cmd {}, {}, to {:?}, using {:?}, check {:?}) is not declared",
            p.name,
            p.cmd,
            if p.permissive {
                "permissive"
            } else {
                "restrictive"
            },
            sorted_roles(p),
            p.using,
            p.check
        ));
        sql.push(format!("DROP POLICY {} ON {qt}", ident(&p.name)));
    }
    // A kept policy may already use our name; pick a free one.
    let kept: BTreeSet<&str> = live
        .iter()
        .zip(&matched)
        .filter(|(_, m)| **m)
        .map(|(p, _)| p.name.as_str())
        .collect();
    for cmd in &missing {
        words.push(format!("no matching {} policy", cmd.sql()));
        let mut name = format!("tenantguard_{}", cmd.name());
        let mut n = 2;
        while kept.contains(name.as_str()) {
            name = format!("tenantguard_{}_{n}", cmd.name());
            n += 1;
        }
        sql.push(create_policy(target, *cmd, &name));
    }
    out.push(target.change(words.join("; "), sql));
}

/// `CREATE POLICY` for `cmd`, to the app, with the contract's predicate.
fn create_policy(target: &Target<'_>, cmd: Command, name: &str) -> String {
    let p = target.set.predicate(target.col);
    let mut stmt = format!(
        "CREATE POLICY {} ON {} AS PERMISSIVE FOR {} TO {}",
        ident(name),
        target.qt,
        cmd.sql(),
        ident(&target.set.roles.app)
    );
    if cmd.has_using() {
        stmt.push_str(&format!(" USING {p}"));
    }
    if cmd.has_check() {
        stmt.push_str(&format!(" WITH CHECK {p}"));
    }
    stmt
}

/// Grants: exactly the declared commands for the app, SELECT for the admin, nothing for
/// PUBLIC.
fn plan_grants(target: &Target<'_>, live: &Table, out: &mut Vec<Change>) {
    let (set, table, qt) = (target.set, target.table, &target.qt);
    let mut have: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (grantee, privilege) in &live.acl {
        have.entry(grantee.clone())
            .or_default()
            .insert(privilege.clone());
    }
    let mut want: Vec<(String, BTreeSet<String>)> = vec![
        (
            set.roles.app.clone(),
            table.commands.iter().map(|c| c.sql().to_string()).collect(),
        ),
        ("public".to_string(), BTreeSet::new()),
    ];
    if let Some(a) = &set.roles.admin {
        want.push((a.clone(), ["SELECT".to_string()].into()));
    }
    for (grantee, privs) in want {
        let current = have.remove(&grantee).unwrap_or_default();
        if current == privs {
            continue;
        }
        let who = if grantee == "public" {
            "PUBLIC".to_string()
        } else {
            ident(&grantee)
        };
        let mut sql = vec![format!("REVOKE ALL ON {qt} FROM {who}")];
        if !privs.is_empty() {
            let list: Vec<&str> = privs.iter().map(String::as_str).collect();
            sql.push(format!("GRANT {} ON {qt} TO {who}", list.join(", ")));
        }
        out.push(target.change(format!("{grantee} has {current:?}, want {privs:?}"), sql));
    }
}

/// Adds a nullable tenant column, fills it, fails (rolling everything back) if any row is
/// left without a tenant, then sets NOT NULL. `ADD COLUMN … NOT NULL` cannot be used
/// directly on a table that has rows.
fn backfill_sql(qt: &str, qcol: &str, expr: &str) -> Vec<String> {
    vec![
        format!("ALTER TABLE {qt} ADD COLUMN {qcol} uuid"),
        format!("UPDATE {qt} SET {qcol} = {expr} WHERE {qcol} IS NULL"),
        format!(
            "DO $tenantguard$ DECLARE n bigint; BEGIN \
             SELECT count(*) INTO n FROM {qt} WHERE {qcol} IS NULL; \
             IF n > 0 THEN RAISE EXCEPTION 'backfill left % row(s) of {} without a tenant; nothing was changed', n; END IF; \
             END $tenantguard$",
            qt.replace('\'', "''").replace('%', "%%")
        ),
        format!("ALTER TABLE {qt} ALTER COLUMN {qcol} SET NOT NULL"),
    ]
}

fn truncate63(s: &str) -> String {
    let mut end = s.len().min(63);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
