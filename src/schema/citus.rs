//! `migrate --citus`: the reference schema on a Citus coordinator, sharded by tenant.
//!
//! Same isolation as on plain PostgreSQL, in the forms Citus accepts (see
//! `docs/citus.md` for the why of each):
//!
//! * **DDL as the superuser.** Citus propagates DDL by connecting to the workers as the
//!   *current* role, and the owner role is NOLOGIN (Citus issue #7719). So migrations run as
//!   the connecting superuser (no `SET ROLE owner`) and every object is then handed to the
//!   owner with `ALTER … OWNER`, which Citus propagates as the superuser. The owner stays
//!   NOLOGIN; nothing ever connects as it.
//! * **The provisioner can log in** (no password): a SECURITY DEFINER function's
//!   distributed statements run over connections as its owner
//!   ([`super::provisioning::plan_for`]).
//! * **Policies without a subquery** ([`PredicateForm::Inline`]): Citus refuses any
//!   subquery in a policy on a distributed table.
//! * **No `ON DELETE SET NULL (col)`** (Citus refuses SET NULL when the distribution key is
//!   in the key): `tasks_assignee_fkey` and `comments_author_fkey` become `NO ACTION`, and a
//!   BEFORE DELETE trigger on `team_members` unassigns the member's tasks and comments in
//!   the same statement, on the shard, so deleting a member behaves as before. Triggers on
//!   distributed tables need `citus.enable_unsafe_triggers` when they are created; this one
//!   touches only the colocated shards of the deleted row's tenant (`tenant_id =
//!   OLD.tenant_id`), which Citus runs locally on the worker, the case Citus allows in
//!   triggers.
//! * **Distribution:** the first declared table (`tenants`, by `id`) first, then every tenant
//!   table by its tenant column, `colocate_with` it, in dependency order.
//! * **The app role's default** `citus.propagate_set_commands = 'local'`, so that the
//!   `SET LOCAL` context of a transaction block reaches the workers.

use tokio_postgres::{Client, Transaction};

use super::{db, pending_migrations, provisioning, run_migrations, MigrateReport, SchemaError};
use crate::isolation::PredicateForm;
use crate::policy::{self, ident, literal, Change, PolicyError, PolicySet, FUNCTION_SCHEMA};

/// The role setting that makes Citus send `SET LOCAL` to the workers.
pub const PROPAGATE_SETTING: &str = "citus.propagate_set_commands";

/// The foreign keys that are `ON DELETE SET NULL (col)` on plain PostgreSQL:
/// (table, constraint, column). Both reference `team_members (tenant_id, id)`.
const UNLINKED: [(&str, &str, &str); 2] = [
    ("tasks", "tasks_assignee_fkey", "assignee_id"),
    ("comments", "comments_author_fkey", "author_id"),
];

/// The trigger that does their `SET NULL` on Citus.
const UNLINK_FUNCTION: &str = "unlink_member";
const UNLINK_TRIGGER: &str = "tenantguard_unlink_member";

/// Its body (compared with `pg_proc.prosrc`). SECURITY INVOKER: it runs as whoever deletes
/// the member (the app role, confined by RLS to its tenant), and only touches the deleted
/// row's tenant, which is also what routes it to the colocated shard.
const UNLINK_BODY: &str = r#"
BEGIN
    UPDATE public.tasks SET assignee_id = NULL
     WHERE tenant_id = OLD.tenant_id AND assignee_id = OLD.id;
    UPDATE public.comments SET author_id = NULL
     WHERE tenant_id = OLD.tenant_id AND author_id = OLD.id;
    RETURN OLD;
END
"#;

/// Whether the database has the `citus` extension.
pub async fn is_citus(client: &Client) -> Result<bool, SchemaError> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')",
            &[],
        )
        .await
        .map_err(db("looking for the citus extension"))?
        .get(0))
}

/// `set` with the policy form Citus accepts.
pub fn citus_policy(set: &PolicySet) -> PolicySet {
    PolicySet {
        predicate_form: PredicateForm::Inline,
        ..set.clone()
    }
}

async fn require_citus_superuser(client: &Client) -> Result<(), SchemaError> {
    if !is_citus(client).await? {
        return Err(PolicyError::Precondition(
            "--citus: this database has no citus extension (CREATE EXTENSION citus and add \
             the workers first; without Citus, run migrate without --citus)"
                .into(),
        )
        .into());
    }
    let sup: bool = client
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(db("reading the current role"))?
        .get(0);
    if !sup {
        return Err(PolicyError::Precondition(
            "--citus: connect as a superuser: on Citus migrations run as the connecting role \
             (Citus connects to the workers as the current role, and the owner role never \
             logs in)"
                .into(),
        )
        .into());
    }
    Ok(())
}

/// Brings a Citus coordinator's database to the reference schema, distributed by tenant
/// (see the module docs). `client` connects to the coordinator as a superuser. Idempotent:
/// a second run changes nothing.
pub async fn migrate(
    client: &mut Client,
    set: &PolicySet,
    provisioner: &str,
) -> Result<MigrateReport, SchemaError> {
    require_citus_superuser(client).await?;
    let set = citus_policy(set);
    let owner = super::owner_role(&set)?;
    let mut report = MigrateReport::default();

    let tx = client
        .transaction()
        .await
        .map_err(db("starting a transaction"))?;
    report.changes = policy::apply_prelude(&tx, &set).await?;
    tx.commit().await.map_err(db("committing the prelude"))?;

    // As the connecting superuser: Citus would connect to the workers as a NOLOGIN owner.
    report.migrations = run_migrations(client).await?;

    let tx = client
        .transaction()
        .await
        .map_err(db("starting a transaction"))?;
    let before = plan_before_distribution(&tx, &set, &owner).await?;
    // Needed to create a trigger on a table that is (or will be) distributed.
    tx.batch_execute("SET LOCAL citus.enable_unsafe_triggers = on")
        .await
        .map_err(db("allowing the unlink trigger"))?;
    execute(&tx, &before).await?;
    tx.commit()
        .await
        .map_err(db("committing the Citus preparation"))?;
    report.changes.extend(before);

    // Policies (inline form) before distribution: a table still carrying the InitPlan
    // form from a plain migrate could not be distributed.
    report.changes.extend(policy::apply(client, &set).await?);

    let dist = plan_distribution(client, &set).await?;
    crate::policy::refuse_blocking(&dist, "cannot distribute")?;
    if !dist.is_empty() {
        // One table at a time, outside a transaction block: create_distributed_table
        // copies the rows and creates the shards, and a failed one leaves the earlier ones
        // distributed for the next run to skip.
        client
            .batch_execute("SET citus.enable_unsafe_triggers = on")
            .await
            .map_err(db("allowing the unlink trigger"))?;
        for c in &dist {
            for stmt in &c.sql {
                client
                    .batch_execute(stmt)
                    .await
                    .map_err(db(&format!("distributing ({c}) with `{stmt}`")))?;
            }
        }
        client
            .batch_execute("RESET citus.enable_unsafe_triggers")
            .await
            .map_err(db("resetting citus.enable_unsafe_triggers"))?;
    }
    report.changes.extend(dist);

    let tx = client
        .transaction()
        .await
        .map_err(db("starting a transaction"))?;
    // Citus refuses a function command in a transaction that already ran a parallel
    // (multi-connection) statement on a distributed table ("cannot run function command
    // because there was a parallel operation"); the plan's reads of the distributed tables
    // can be one, depending on the session's cached worker connections. Sequential mode
    // keeps the whole transaction on one connection per node.
    tx.batch_execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
        .await
        .map_err(db("choosing sequential mode for the provisioning function"))?;
    report.changes.extend(
        provisioning::apply_for(&tx, &set, provisioner, true)
            .await
            .map_err(db("applying the provisioning function"))?,
    );
    tx.commit()
        .await
        .map_err(db("committing the provisioning function"))?;
    Ok(report)
}

/// Lists every difference from the Citus form without changing anything: pending
/// migrations, policy drift (inline form), the Citus preparation (ownership, foreign keys,
/// the unlink trigger, the app role's setting), tables not distributed by their tenant
/// column or not colocated, and the provisioning path.
pub async fn check(
    client: &mut Client,
    set: &PolicySet,
    provisioner: &str,
) -> Result<Vec<String>, SchemaError> {
    if !is_citus(client).await? {
        return Err(PolicyError::Precondition(
            "--citus: this database has no citus extension".into(),
        )
        .into());
    }
    let set = citus_policy(set);
    let mut out = pending_migrations(client).await?;
    if !out.is_empty() {
        out.push(
            "(tables, RLS, policies, grants and distribution are checked once migrations are \
             applied)"
                .into(),
        );
        return Ok(out);
    }
    let owner = set.roles.owner.clone().unwrap_or_default();
    out.extend(
        policy::check(client, &set)
            .await?
            .into_iter()
            .map(|c| c.to_string()),
    );
    let tx = client
        .transaction()
        .await
        .map_err(db("starting a transaction"))?;
    out.extend(
        plan_before_distribution(&tx, &set, &owner)
            .await?
            .into_iter()
            .map(|c| c.to_string()),
    );
    out.extend(
        provisioning::plan_for(&tx, &set, provisioner, true)
            .await
            .map_err(db("checking the provisioning function"))?
            .into_iter()
            .map(|c| c.to_string()),
    );
    tx.rollback().await.map_err(db("rolling back"))?;
    out.extend(
        plan_distribution(client, &set)
            .await?
            .into_iter()
            .map(|c| c.to_string()),
    );
    Ok(out)
}

async fn execute(tx: &Transaction<'_>, changes: &[Change]) -> Result<(), SchemaError> {
    for c in changes {
        for stmt in &c.sql {
            tx.batch_execute(stmt)
                .await
                .map_err(db(&format!("applying `{c}` with `{stmt}`")))?;
        }
    }
    Ok(())
}

/// The app role's `citus.propagate_set_commands = 'local'` default (all databases), or the
/// change that sets it. Also used by `rls apply` on Citus.
pub async fn plan_app_setting(
    tx: &Transaction<'_>,
    app: &str,
) -> Result<Option<Change>, SchemaError> {
    let has: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
                            WHERE r.rolname = $1 AND s.setdatabase = 0
                              AND $2 = ANY (s.setconfig))",
            &[&app, &format!("{PROPAGATE_SETTING}=local")],
        )
        .await
        .map_err(db("reading role settings"))?
        .get(0);
    Ok((!has).then(|| Change {
        object: format!("role {app}"),
        difference: format!(
            "{PROPAGATE_SETTING} is not 'local' by default (its SET LOCAL tenant context \
             would never reach the workers: every query would see no rows)"
        ),
        sql: vec![format!(
            "ALTER ROLE {} SET {PROPAGATE_SETTING} = 'local'",
            ident(app)
        )],
    }))
}

/// What must change before the tables can be distributed (and stay so after).
async fn plan_before_distribution(
    tx: &Transaction<'_>,
    set: &PolicySet,
    owner: &str,
) -> Result<Vec<Change>, SchemaError> {
    let mut out = Vec::new();
    let s = FUNCTION_SCHEMA;
    // Objects the migrations created as the superuser go to the owner (tables: the policy
    // engine; the schema and current_tenant_id(): the prelude).
    let row = tx
        .query_opt(
            "SELECT pg_get_userbyid(p.proowner) FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = $1 AND p.proname = 'uuid_v7' AND p.pronargs = 0",
            &[&s],
        )
        .await
        .map_err(db("reading functions"))?;
    if let Some(r) = row {
        let have: String = r.get(0);
        if have != owner && !owner.is_empty() {
            out.push(Change {
                object: format!("function {s}.uuid_v7()"),
                difference: format!("owned by {have}, not {owner}"),
                sql: vec![format!(
                    "ALTER FUNCTION {s}.uuid_v7() OWNER TO {}",
                    ident(owner)
                )],
            });
        }
    }

    // The two SET NULL keys: NO ACTION plus the unlink trigger.
    for (table, constraint, column) in UNLINKED {
        let row = tx
            .query_opt(
                "SELECT confdeltype::text FROM pg_constraint
                 WHERE conrelid = to_regclass($1) AND conname = $2 AND contype = 'f'",
                &[&format!("public.{table}"), &constraint],
            )
            .await
            .map_err(db("reading foreign keys"))?;
        let add = format!(
            "ADD CONSTRAINT {} FOREIGN KEY (tenant_id, {}) REFERENCES public.team_members \
             (tenant_id, id) ON DELETE NO ACTION",
            ident(constraint),
            ident(column)
        );
        let qt = format!("public.{}", ident(table));
        match row.map(|r| r.get::<_, String>(0)) {
            Some(t) if t == "a" => {}
            Some(t) => out.push(Change {
                object: format!("table public.{table}"),
                difference: format!(
                    "foreign key {constraint} has ON DELETE action {t:?}; Citus needs NO ACTION \
                     (the unlink trigger nulls {column})"
                ),
                sql: vec![format!(
                    "ALTER TABLE {qt} DROP CONSTRAINT {}, {add}",
                    ident(constraint)
                )],
            }),
            None => out.push(Change {
                object: format!("table public.{table}"),
                difference: format!("foreign key {constraint} is missing"),
                sql: vec![format!("ALTER TABLE {qt} {add}")],
            }),
        }
    }
    let func = format!("{s}.{UNLINK_FUNCTION}()");
    let create = format!(
        "CREATE OR REPLACE FUNCTION {func} RETURNS trigger LANGUAGE plpgsql SECURITY INVOKER \
         SET search_path = pg_catalog, pg_temp AS $tgfn${UNLINK_BODY}$tgfn$"
    );
    let mut fsql = vec![create];
    if !owner.is_empty() {
        fsql.push(format!("ALTER FUNCTION {func} OWNER TO {}", ident(owner)));
    }
    fsql.push(format!("REVOKE ALL ON FUNCTION {func} FROM PUBLIC"));
    let row = tx
        .query_opt(
            "SELECT p.prosrc, p.prosecdef, pg_get_userbyid(p.proowner),
                    COALESCE(p.proconfig, '{}'),
                    has_function_privilege('public', p.oid, 'EXECUTE')
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = $1 AND p.proname = $2 AND p.pronargs = 0",
            &[&s, &UNLINK_FUNCTION],
        )
        .await
        .map_err(db("reading functions"))?;
    match row {
        None => out.push(Change {
            object: format!("function {func}"),
            difference: "missing".into(),
            sql: fsql,
        }),
        Some(r) => {
            let (src, secdef, fowner, config, public): (String, bool, String, Vec<String>, bool) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            if src != UNLINK_BODY
                || secdef
                || (fowner != owner && !owner.is_empty())
                || config != ["search_path=pg_catalog, pg_temp"]
                || public
            {
                let mut sql = vec![format!("ALTER FUNCTION {func} SECURITY INVOKER")];
                sql.extend(fsql);
                out.push(Change {
                    object: format!("function {func}"),
                    difference: format!(
                        "differs (security definer {secdef}, owner {fowner}, settings \
                         {config:?}, PUBLIC may execute {public})"
                    ),
                    sql,
                });
            }
        }
    }
    let trig: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
                            JOIN pg_namespace n ON n.oid = p.pronamespace
                            WHERE t.tgrelid = to_regclass('public.team_members')
                              AND t.tgname = $1 AND NOT t.tgisinternal
                              AND t.tgenabled = 'O' AND n.nspname = $2 AND p.proname = $3
                              -- ROW (1) | BEFORE (2) | DELETE (8)
                              AND t.tgtype = 11)",
            &[&UNLINK_TRIGGER, &s, &UNLINK_FUNCTION],
        )
        .await
        .map_err(db("reading triggers"))?
        .get(0);
    if !trig {
        out.push(Change {
            object: "table public.team_members".into(),
            difference: format!(
                "no BEFORE DELETE trigger {UNLINK_TRIGGER} (deleting a member would fail while \
                 tasks or comments reference it, instead of unassigning them)"
            ),
            sql: vec![
                format!("DROP TRIGGER IF EXISTS {UNLINK_TRIGGER} ON public.team_members"),
                format!(
                    "CREATE TRIGGER {UNLINK_TRIGGER} BEFORE DELETE ON public.team_members \
                     FOR EACH ROW EXECUTE FUNCTION {func}"
                ),
            ],
        });
    }
    out.extend(plan_app_setting(tx, &set.roles.app).await?);
    Ok(out)
}

/// How one table is distributed.
struct Placement {
    method: String,
    column: Option<String>,
    colocation: i32,
}

async fn placement(client: &Client, qualified: &str) -> Result<Option<Placement>, SchemaError> {
    let row = client
        .query_opt(
            "SELECT partmethod::text,
                    CASE WHEN partkey IS NULL THEN NULL
                         ELSE column_to_column_name(logicalrelid, partkey) END,
                    colocationid
             FROM pg_dist_partition WHERE logicalrelid = to_regclass($1)",
            &[&qualified],
        )
        .await
        .map_err(db("reading pg_dist_partition"))?;
    Ok(row.map(|r| Placement {
        method: r.get(0),
        column: r.get(1),
        colocation: r.get(2),
    }))
}

/// Every declared table must be hash-distributed by its tenant column and colocated with
/// the first declared table (the reference schema's `tenants`, distributed by `id`).
/// A local table gets `create_distributed_table`; anything else (a reference table, another
/// distribution column, another colocation group) is reported without a fix: changing it
/// moves every row, which is the operator's call (`alter_distributed_table`).
pub async fn plan_distribution(
    client: &Client,
    set: &PolicySet,
) -> Result<Vec<Change>, SchemaError> {
    let mut out = Vec::new();
    let Some(root) = set.tables.first() else {
        return Ok(out);
    };
    let root_name = format!("{}.{}", root.schema, root.name);
    let root_q = root.qualified();
    let root_place = placement(client, &root_q).await?;
    for table in &set.tables {
        let q = table.qualified();
        let col = set.column_of(table);
        let object = format!("table {}.{}", table.schema, table.name);
        let is_root = table.schema == root.schema && table.name == root.name;
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&q])
            .await
            .map_err(db("looking up a table"))?
            .get(0);
        if !exists {
            // The policy engine reports missing tables.
            continue;
        }
        let colocate = if is_root {
            "none".to_string()
        } else {
            q.clone()
        };
        let create = format!(
            "SELECT create_distributed_table({}, {}, colocate_with => {})",
            literal(&q),
            literal(col),
            literal(if is_root { &colocate } else { &root_q })
        );
        match placement(client, &q).await? {
            None => out.push(Change {
                object,
                difference: if is_root {
                    format!("is not distributed (want: hash by {col})")
                } else {
                    format!("is not distributed (want: hash by {col}, colocated with {root_name})")
                },
                sql: vec![create],
            }),
            Some(p) => {
                let what = match p.method.as_str() {
                    "h" => format!("hash-distributed by {}", p.column.as_deref().unwrap_or("?")),
                    "n" => "a reference table or Citus local table".to_string(),
                    m => format!("distributed with method {m:?}"),
                };
                if p.method != "h" || p.column.as_deref() != Some(col) {
                    out.push(Change {
                        object,
                        difference: format!(
                            "is {what}; want hash by {col} colocated with {root_name} \
                             (alter_distributed_table moves every row: not done automatically)"
                        ),
                        sql: Vec::new(),
                    });
                } else if !is_root
                    && root_place
                        .as_ref()
                        .is_none_or(|r| r.colocation != p.colocation)
                {
                    out.push(Change {
                        object,
                        difference: format!(
                            "is distributed by {col} but not colocated with {root_name} \
                             (colocation group {}; fix with update_distributed_table_colocation)",
                            p.colocation
                        ),
                        sql: Vec::new(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// `rls apply --check` on Citus, beyond the policy engine: the app role's setting and
/// every declared table's distribution (colocated with the first declared table).
pub async fn rls_check(client: &mut Client, set: &PolicySet) -> Result<Vec<Change>, SchemaError> {
    let tx = client
        .transaction()
        .await
        .map_err(db("starting a transaction"))?;
    let mut out: Vec<Change> = plan_app_setting(&tx, &set.roles.app)
        .await?
        .into_iter()
        .collect();
    tx.rollback().await.map_err(db("rolling back"))?;
    out.extend(plan_distribution(client, set).await?);
    Ok(out)
}

/// `rls apply` on Citus, beyond the policy engine: sets the app role's
/// `citus.propagate_set_commands` default, and returns (what it changed, what it left):
/// someone else's tables are never distributed by `rls apply` (that moves every row and
/// picks shard counts: the operator's call), only reported.
pub async fn rls_apply(
    client: &mut Client,
    set: &PolicySet,
) -> Result<(Vec<Change>, Vec<Change>), SchemaError> {
    let tx = client
        .transaction()
        .await
        .map_err(db("starting a transaction"))?;
    let applied: Vec<Change> = plan_app_setting(&tx, &set.roles.app)
        .await?
        .into_iter()
        .collect();
    execute(&tx, &applied).await?;
    tx.commit().await.map_err(db("committing"))?;
    let left = plan_distribution(client, set).await?;
    Ok((applied, left))
}

/// `set` adapted to tables that are already distributed: Citus refuses `ALTER TABLE … SET
/// DEFAULT` on a distribution column, so such a table's tenant column keeps the default it
/// has (inserts name the tenant, or rely on a default set before distribution). Returns the
/// adapted set and one note per table concerned. `migrate --citus` sets the defaults before
/// it distributes; this is for `rls apply` on tables someone else distributed.
pub async fn without_defaults_on_distributed(
    client: &Client,
    set: &PolicySet,
) -> Result<(PolicySet, Vec<String>), SchemaError> {
    let mut out = set.clone();
    let mut notes = Vec::new();
    for t in &mut out.tables {
        if !t.default_to_current_tenant {
            continue;
        }
        if placement(client, &t.qualified()).await?.is_some() {
            t.default_to_current_tenant = false;
            notes.push(format!(
                "table {}.{} is distributed: its tenant column's default is left as it is \
                 (Citus refuses ALTER TABLE on the distribution column)",
                t.schema, t.name
            ));
        }
    }
    Ok((out, notes))
}
