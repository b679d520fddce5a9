//! The attacks. Each runs in its own savepoint, as the app's caller under the table's
//! tenancy model, and is rolled back to that savepoint afterwards; evidence is read back as
//! the privileged user inside the same savepoint. Rows are located by `(tableoid, ctid)`,
//! which needs no key of the table.
//!
//! On Citus ([`RowIdentity::Key`]) rows are located by their key, the context is set with
//! `SET LOCAL`, and nothing runs as the privileged user in the attack transaction (once the
//! app has written a placement, Citus refuses it to any other user until the transaction
//! ends, savepoints or not): evidence is read as tenant B's caller, or (UPDATE and DELETE
//! without WHERE) judged by the rows reached against tenant A's own.
//!
//! Every attack has a *control*: the same operation on tenant A's own row, which must
//! succeed before a refusal counts as `blocked` (the one outcome policy, `src/outcome.rs`).
//! A refusal whose control failed too is `inconclusive`; a command the app holds no
//! privilege for is `n/a`.

use std::collections::HashMap;

use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::Transaction;

use super::synth::{self, Row, RowIdentity, Seeds, Tenants};
use super::{db, ProbeError};
use crate::audit::catalog::Table;
use crate::audit::model::{TenantKind, TenantTable};
use crate::audit::Model;
use crate::isolation::{CallerSource, ContextCarrier, TenancyModel, JWT_CLAIMS_SETTING};
use crate::outcome::Verdict;
use crate::policy::{ident, literal};

/// An attack of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attack {
    /// SELECT tenant B's row with tenant A's context.
    ReadOther,
    /// UPDATE (without WHERE, so SELECT policies are not consulted) reaches B's row.
    UpdateOther,
    /// DELETE (without WHERE) reaches B's row.
    DeleteOther,
    /// INSERT a row for tenant B.
    InsertOther,
    /// UPDATE A's row so that it belongs to B.
    MoveToOther,
    /// Reference B's parent row through each foreign key.
    ReferenceOther,
    /// Learn B's unique values through duplicate-key errors.
    UniqueOracle,
    /// Read with no tenant set.
    ReadUnset,
    /// Read with the tenant set to ''.
    ReadEmpty,
    /// TRUNCATE (not subject to RLS).
    Truncate,
}

impl Attack {
    /// Every attack, in matrix order.
    pub const ALL: [Attack; 10] = [
        Attack::ReadOther,
        Attack::UpdateOther,
        Attack::DeleteOther,
        Attack::InsertOther,
        Attack::MoveToOther,
        Attack::ReferenceOther,
        Attack::UniqueOracle,
        Attack::ReadUnset,
        Attack::ReadEmpty,
        Attack::Truncate,
    ];

    /// The snake_case name used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Attack::ReadOther => "read_other",
            Attack::UpdateOther => "update_other",
            Attack::DeleteOther => "delete_other",
            Attack::InsertOther => "insert_other",
            Attack::MoveToOther => "move_to_other",
            Attack::ReferenceOther => "reference_other",
            Attack::UniqueOracle => "unique_oracle",
            Attack::ReadUnset => "read_unset",
            Attack::ReadEmpty => "read_empty",
            Attack::Truncate => "truncate",
        }
    }
}

/// One judged cell: the verdict, its evidence, and the control that makes a refusal count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cell {
    /// The verdict, by the one outcome policy.
    pub verdict: Verdict,
    /// The evidence (what crossed, the SQLSTATE or row count of the refusal) or the reason.
    pub detail: String,
    /// The control that succeeded (for `blocked`), e.g. "tenant A reads its own row".
    pub control: Option<String>,
}

impl Cell {
    fn of(verdict: Verdict, detail: impl Into<String>) -> Cell {
        Cell {
            verdict,
            detail: detail.into(),
            control: None,
        }
    }
    fn blocked(detail: impl Into<String>) -> Cell {
        Cell::of(Verdict::Blocked, detail)
    }
    fn leak(detail: impl Into<String>) -> Cell {
        Cell::of(Verdict::Leaked, detail)
    }
    fn na(detail: impl Into<String>) -> Cell {
        Cell::of(Verdict::NotApplicable, detail)
    }
    fn inconclusive(detail: impl Into<String>) -> Cell {
        Cell::of(Verdict::Inconclusive, detail)
    }

    /// The verdict's word (`blocked`, `LEAKED`, `inconclusive`, `n/a`, …).
    pub fn label(&self) -> &'static str {
        self.verdict.label()
    }

    /// Whether this cell is a finding (a leak or an existence oracle).
    pub fn leaked(&self) -> bool {
        self.verdict.is_finding()
    }

    /// A refusal counts as blocked only next to a control that succeeded.
    fn judged(mut self, control: &Control) -> Cell {
        if self.verdict != Verdict::Blocked {
            return self;
        }
        match control {
            Ok(c) => {
                self.control = Some(c.clone());
                self
            }
            Err(e) => Cell::inconclusive(format!(
                "refused ({}), but the control failed too, so the refusal proves nothing: {e}",
                self.detail
            )),
        }
    }
}

/// The result of a control: what succeeded, or why it failed.
type Control = Result<String, String>;

/// The cells of one table (or view).
#[derive(Debug, Clone, Serialize)]
pub struct TableResult {
    /// `schema.table`.
    pub table: String,
    /// The tenancy model the table follows (`setting`, `jwt-claim`, …).
    pub model: String,
    /// One cell per attack, in [`Attack::ALL`] order.
    pub cells: Vec<(Attack, Cell)>,
}

impl TableResult {
    /// The cell of `attack`.
    pub fn get(&self, attack: Attack) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|(a, _)| *a == attack)
            .map(|(_, o)| o)
    }

    /// Whether any cell of this table was really attacked (blocked with a control, or a
    /// finding).
    pub fn attacked(&self) -> bool {
        self.cells
            .iter()
            .any(|(_, c)| c.verdict == Verdict::Blocked || c.verdict.is_finding())
    }
}

/// Everything [`run_all`] produced.
#[derive(Debug, Clone, Default)]
pub struct RunOutput {
    /// table × attack.
    pub tables: Vec<TableResult>,
    /// Notes from seeding and caller setup.
    pub notes: Vec<String>,
    /// Roles the probe created inside its transaction (per-tenant roles); the rollback
    /// removes them, and the caller checks they are gone.
    pub created_roles: Vec<String>,
}

fn err_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        None => crate::error_chain(e),
    }
}

fn code(e: &tokio_postgres::Error) -> Option<SqlState> {
    e.as_db_error().map(|d| d.code().clone())
}

/// Who the attack runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// Synthetic tenant 0 (A) or 1 (B), set up the way the table's model does.
    Tenant(usize),
    /// The app with no context at all.
    Unset,
    /// The app with every context carrier set to ''.
    Empty,
}

/// What a context setting carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carrier {
    /// The tenant id.
    Tenant,
    /// The caller's user id.
    User,
    /// A JSON document of claims (`request.jwt.claims`).
    Claims,
}

/// The settings the models here read, what each carries, and the claims.
#[derive(Debug, Clone, Default)]
pub(crate) struct Carriers {
    settings: Vec<(String, Carrier)>,
    tenant_claims: Vec<String>,
    user_claims: Vec<String>,
}

impl Carriers {
    pub(crate) fn of(model: &Model) -> Carriers {
        let mut c = Carriers::default();
        let push = |c: &mut Carriers, name: String, k: Carrier| {
            if !c
                .settings
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(&name))
            {
                c.settings.push((name, k));
            }
        };
        for m in model.models() {
            match m {
                TenancyModel::Setting { name } => push(&mut c, name.clone(), Carrier::Tenant),
                TenancyModel::JwtClaim { claim, .. } => {
                    push(&mut c, JWT_CLAIMS_SETTING.into(), Carrier::Claims);
                    push(
                        &mut c,
                        format!("request.jwt.claim.{claim}"),
                        Carrier::Tenant,
                    );
                    c.tenant_claims.push(claim.clone());
                }
                TenancyModel::Membership { caller, .. } | TenancyModel::Owner { caller, .. } => {
                    match caller {
                        CallerSource::Setting { name } => push(&mut c, name.clone(), Carrier::User),
                        CallerSource::Claim { claim, .. } => {
                            push(&mut c, JWT_CLAIMS_SETTING.into(), Carrier::Claims);
                            push(&mut c, format!("request.jwt.claim.{claim}"), Carrier::User);
                            c.user_claims.push(claim.clone());
                        }
                    }
                }
                TenancyModel::Role { .. } => {}
            }
        }
        c
    }

    /// The names of the settings.
    pub(crate) fn names(&self) -> Vec<String> {
        self.settings.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The value of each setting for tenant `tenant` / user `user`.
    pub(crate) fn values(&self, tenant: &str, user: &str) -> Vec<(String, String)> {
        let mut claims = serde_json::json!({
            "role": "authenticated",
            "aud": "authenticated",
            "sub": user,
        });
        for c in &self.user_claims {
            put_claim(&mut claims, c, user);
        }
        for c in &self.tenant_claims {
            put_claim(&mut claims, c, tenant);
        }
        let claims = claims.to_string();
        self.settings
            .iter()
            .map(|(n, k)| {
                let v = match k {
                    Carrier::Tenant => tenant.to_string(),
                    Carrier::User => user.to_string(),
                    Carrier::Claims => claims.clone(),
                };
                (n.clone(), v)
            })
            .collect()
    }
}

/// Sets the claim at `path` (`app_metadata.org_id` nests) to `value`.
fn put_claim(claims: &mut serde_json::Value, path: &str, value: &str) {
    let mut cur = claims;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        if i + 1 == parts.len() {
            obj.insert(part.to_string(), value.into());
            return;
        }
        cur = obj
            .entry(part.to_string())
            .or_insert_with(|| serde_json::json!({}));
    }
}

struct Ctx<'a> {
    tx: &'a Transaction<'a>,
    model: &'a Model,
    seeds: Seeds,
    carriers: Carriers,
    /// Per-tenant roles (role model), A and B.
    roles: Option<[String; 2]>,
    /// On Citus: the context is set with `SET LOCAL` (propagated to the workers), and no
    /// statement runs as the privileged user once the app has written in the transaction
    /// (Citus refuses a placement modified by another user: 25001).
    citus: bool,
    /// On Citus: the rows of tenant A (or its user) in each table with a tenant column,
    /// counted when the synthetic rows were committed.
    own: HashMap<u32, i64>,
}

/// What the database answered an attack step (an error is evidence, not a failure).
type Attempt<T> = Result<T, tokio_postgres::Error>;

impl Ctx<'_> {
    /// Runs `work` in its own savepoint and rolls it back afterwards, whatever `work`
    /// returned: nothing an attack does survives it.
    async fn in_savepoint<R>(
        &self,
        work: impl AsyncFnOnce() -> Result<R, ProbeError>,
    ) -> Result<R, ProbeError> {
        self.tx
            .batch_execute("SAVEPOINT tg_attack")
            .await
            .map_err(db("opening an attack savepoint"))?;
        let r = work().await;
        // One statement per message: Citus forwards a multi-statement string whole.
        let mut ended = Ok(());
        for end in [
            "ROLLBACK TO SAVEPOINT tg_attack",
            "RELEASE SAVEPOINT tg_attack",
        ] {
            if ended.is_ok() {
                ended = self
                    .tx
                    .batch_execute(end)
                    .await
                    .map_err(db("rolling back an attack"));
            }
        }
        let r = r?;
        ended?;
        Ok(r)
    }

    /// Becomes `who` for `t` (see [`Ctx::become_caller`]) and runs `act`; failing to become
    /// the caller is the step's answer. Call it inside [`Ctx::in_savepoint`].
    async fn as_caller<T>(
        &self,
        t: &Table,
        who: Who,
        act: impl AsyncFnOnce() -> Result<Attempt<T>, ProbeError>,
    ) -> Result<Attempt<T>, ProbeError> {
        match self.become_caller(t, who).await {
            Ok(()) => act().await,
            Err(e) => Ok(Err(e)),
        }
    }

    /// The one shape of an attack step: savepoint, become `who`, `act`, roll back.
    async fn attempt<T>(
        &self,
        t: &Table,
        who: Who,
        act: impl AsyncFnOnce() -> Result<Attempt<T>, ProbeError>,
    ) -> Result<Attempt<T>, ProbeError> {
        self.in_savepoint(async || self.as_caller(t, who, act).await)
            .await
    }

    /// Runs `sql` in a nested savepoint as the privileged user; whether it succeeded (a
    /// failure is rolled back and leaves the attack's savepoint usable).
    async fn try_privileged(&self, sql: &str) -> Result<bool, ProbeError> {
        self.tx
            .batch_execute("SAVEPOINT tg_clear")
            .await
            .map_err(db("clearing a synthetic row"))?;
        let done = self.tx.batch_execute(sql).await.is_ok();
        self.end_clear(done).await?;
        Ok(done)
    }

    async fn end_clear(&self, done: bool) -> Result<(), ProbeError> {
        let ends: &[&str] = if done {
            &["RELEASE SAVEPOINT tg_clear"]
        } else {
            &[
                "ROLLBACK TO SAVEPOINT tg_clear",
                "RELEASE SAVEPOINT tg_clear",
            ]
        };
        for end in ends {
            self.tx
                .batch_execute(end)
                .await
                .map_err(db("clearing a synthetic row"))?;
        }
        Ok(())
    }

    /// Deletes synthetic `row` of `t` inside the current savepoint (in a nested one, so a
    /// failure leaves it usable); whether it is gone. On plain PostgreSQL as the privileged
    /// user; on Citus as the row's own tenant, since a privileged write would make every
    /// later statement of the app on that placement fail (25001).
    async fn clear(&self, t: &Table, row: &Row) -> Result<bool, ProbeError> {
        let delete = format!("DELETE FROM {} WHERE {}", t.qualified(), row.locator());
        if !self.citus {
            return self.try_privileged(&delete).await;
        }
        self.tx
            .batch_execute("SAVEPOINT tg_clear")
            .await
            .map_err(db("clearing a synthetic row"))?;
        let done = match self.become_caller(t, Who::Tenant(row.tenant)).await {
            Ok(()) => matches!(self.tx.execute(&delete, &[]).await, Ok(n) if n > 0),
            Err(_) => false,
        };
        self.end_clear(done).await?;
        Ok(done)
    }

    fn role_model(&self, t: &Table) -> bool {
        matches!(
            self.model.detection.model_of(t.oid),
            TenancyModel::Role { .. }
        )
    }

    /// Becomes the caller `who` for table `t`: the per-tenant role under the role model,
    /// else the app role; then every context carrier the models read.
    async fn become_caller(&self, t: &Table, who: Who) -> Result<(), tokio_postgres::Error> {
        let app = &self.model.config.app_role;
        let role = match (who, self.role_model(t), &self.roles) {
            (Who::Tenant(i), true, Some(r)) => r[i].clone(),
            _ => app.clone(),
        };
        self.tx
            .batch_execute(&format!("SET LOCAL ROLE {}", ident(&role)))
            .await?;
        let values = match who {
            Who::Unset => return Ok(()),
            Who::Tenant(i) => self
                .carriers
                .values(&self.seeds.tenants.text[i], &self.seeds.users.text[i]),
            Who::Empty => self
                .carriers
                .names()
                .into_iter()
                .map(|n| (n, String::new()))
                .collect(),
        };
        // The contract's carrier: the context lives until the attack's savepoint ends. On
        // Citus the SET LOCAL form, the only one that reaches the workers.
        for (name, v) in values {
            let statements = if self.citus {
                crate::isolation::sql::citus_context(&name, &v).to_vec()
            } else {
                vec![ContextCarrier::default().set_statement(&name, &v)]
            };
            for s in statements {
                self.tx.batch_execute(&s).await?;
            }
        }
        Ok(())
    }

    async fn count(&self, sql: &str) -> Result<i64, tokio_postgres::Error> {
        Ok(self.tx.query_one(sql, &[]).await?.get(0))
    }

    /// Leaves the caller's role (`RESET ROLE`, still inside the savepoint) and counts as
    /// the privileged user: the evidence of what the step did.
    async fn privileged_count(&self, sql: &str) -> Result<i64, ProbeError> {
        self.tx
            .batch_execute("RESET ROLE")
            .await
            .map_err(db("RESET ROLE"))?;
        self.count(sql).await.map_err(db("reading evidence"))
    }

    /// Runs `sql` (a count) as `who` in its own savepoint.
    async fn count_as(&self, t: &Table, who: Who, sql: &str) -> Result<Attempt<i64>, ProbeError> {
        self.attempt(t, who, async || Ok(self.count(sql).await))
            .await
    }

    /// Executes `sql` as `who` in its own savepoint; the number of rows.
    async fn exec_as(&self, t: &Table, who: Who, sql: &str) -> Result<Attempt<u64>, ProbeError> {
        self.attempt(t, who, async || Ok(self.tx.execute(sql, &[]).await))
            .await
    }

    /// Inserts a synthetic row of tenant `tenant` as tenant A's caller, in a savepoint.
    /// Where the table holds one row per tenant (or user), that tenant's synthetic row is
    /// removed first (privileged, inside the savepoint), so that only the policies can
    /// refuse.
    async fn insert_as_a(
        &self,
        t: &Table,
        tenant: usize,
        overrides: &HashMap<String, Option<String>>,
    ) -> Result<Result<(), String>, ProbeError> {
        let r = self
            .in_savepoint(async || {
                if self.one_row_per_key(t) && self.citus {
                    if let Some(r) = self.row(t, tenant) {
                        self.clear(t, r).await?;
                    }
                } else if self.one_row_per_key(t) {
                    if let Some(r) = self.row(t, tenant) {
                        let delete =
                            format!("DELETE FROM {} WHERE {}", t.qualified(), r.locator());
                        // Other synthetic rows reference it; in replica mode (superuser
                        // only) no foreign-key or user trigger fires, and all of it is
                        // rolled back anyway.
                        let replica = format!(
                            "SET LOCAL session_replication_role = replica; {delete}; SET LOCAL session_replication_role = origin"
                        );
                        if !self.try_privileged(&replica).await? {
                            self.try_privileged(&delete).await?;
                        }
                    }
                }
                self.as_caller(t, Who::Tenant(0), async || {
                    Ok(Ok(synth::insert(
                        self.tx,
                        self.model,
                        t,
                        &self.seeds,
                        tenant,
                        overrides,
                        false,
                    )
                    .await
                    .map(|_| ())))
                })
                .await
            })
            .await?;
        Ok(match r {
            Ok(inner) => inner,
            Err(e) => Err(err_text(&e)),
        })
    }

    /// A unique key made only of the table's tenant (or user) column: one row per key.
    fn one_row_per_key(&self, t: &Table) -> bool {
        let Some(col) = self
            .model
            .tenant
            .get(&t.oid)
            .and_then(|tt| tt.column.clone())
        else {
            return false;
        };
        self.model.catalog.indexes.iter().any(|i| {
            i.table == t.oid
                && i.unique
                && !i.partial
                && !i.columns.is_empty()
                && i.columns.iter().all(|c| c.as_deref() == Some(col.as_str()))
        })
    }

    fn row(&self, t: &Table, tenant: usize) -> Option<&Row> {
        self.seeds
            .rows
            .iter()
            .find(|r| r.tenant == tenant && (r.via == t.oid || r.tableoid == t.oid))
    }
}

fn key_type(model: &Model, per_user: bool) -> Option<String> {
    model
        .tenant_tables()
        .find_map(|(t, tt)| match (&tt.kind, &tt.column) {
            (TenantKind::Column, Some(c)) if tt.per_user == per_user => {
                t.column(c).map(|c| c.type_name.clone())
            }
            _ => None,
        })
}

fn user_type(model: &Model) -> String {
    key_type(model, true)
        .or_else(|| {
            model.models().into_iter().find_map(|m| match m {
                TenancyModel::Membership {
                    table, user_column, ..
                } => model
                    .catalog
                    .tables
                    .iter()
                    .find(|t| t.display() == *table || t.name == *table)
                    .and_then(|t| t.column(user_column))
                    .map(|c| c.type_name.clone()),
                _ => None,
            })
        })
        .unwrap_or_else(|| "uuid".into())
}

/// Creates the two per-tenant roles of the role model inside the probe's transaction
/// (members of the app role, so they hold its privileges). The rollback removes them.
async fn create_roles(
    tx: &Transaction<'_>,
    model: &Model,
    tenants: &Tenants,
    notes: &mut Vec<String>,
) -> Result<Option<[String; 2]>, ProbeError> {
    let Some(TenancyModel::Role { pattern }) = model
        .models()
        .into_iter()
        .find(|m| matches!(m, TenancyModel::Role { .. }))
        .cloned()
    else {
        return Ok(None);
    };
    let names = [0, 1].map(|i| pattern.replace("{}", &tenants.text[i]));
    tx.batch_execute("SAVEPOINT tg_roles")
        .await
        .map_err(db("opening a savepoint"))?;
    let sql = names
        .iter()
        .map(|n| {
            format!(
                "CREATE ROLE {} NOLOGIN INHERIT IN ROLE {}",
                ident(n),
                ident(&model.config.app_role)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    match tx.batch_execute(&sql).await {
        Ok(()) => {
            tx.batch_execute("RELEASE SAVEPOINT tg_roles")
                .await
                .map_err(db("releasing a savepoint"))?;
            Ok(Some(names))
        }
        Err(e) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT tg_roles; RELEASE SAVEPOINT tg_roles")
                .await
                .map_err(db("rolling back a savepoint"))?;
            notes.push(format!(
                "cannot create the per-tenant roles of the role model: {}",
                err_text(&e)
            ));
            Ok(None)
        }
    }
}

/// The synthetic rows (and per-tenant roles) made before the attacks: what
/// [`attack`] attacks, and on Citus what [`Seeded::cleanup`] removes.
#[derive(Debug, Clone)]
pub struct Seeded {
    seeds: Seeds,
    failed: HashMap<u32, String>,
    notes: Vec<String>,
    roles: Option<[String; 2]>,
    own: HashMap<u32, i64>,
}

impl Seeded {
    /// The statements that delete the synthetic rows, children first (a row's locator
    /// selects it alone).
    pub fn cleanup(&self, model: &Model) -> Vec<String> {
        self.seeds
            .rows
            .iter()
            .rev()
            .filter_map(|r| {
                let t = model.table(r.via)?;
                Some(format!(
                    "DELETE FROM {} WHERE {}",
                    t.qualified(),
                    r.locator()
                ))
            })
            .collect()
    }
}

/// Seeds the synthetic rows and runs every attack on every tenant table, in one
/// transaction (plain PostgreSQL).
pub async fn run_all(tx: &Transaction<'_>, model: &Model) -> Result<RunOutput, ProbeError> {
    let seeded = seed(tx, model, RowIdentity::Physical).await?;
    attack(tx, model, seeded).await
}

/// Makes the synthetic rows of tenants A and B, parents first, identified by `identity`.
/// Under [`RowIdentity::Key`] (Citus) the rows of tenant A in each table are counted too,
/// for [`attack`]'s UPDATE and DELETE, and no per-tenant roles are made (each would be a
/// user of its own on the workers, which Citus refuses next to the app's writes).
pub async fn seed(
    tx: &Transaction<'_>,
    model: &Model,
    identity: RowIdentity,
) -> Result<Seeded, ProbeError> {
    let tenant_type = key_type(model, false).unwrap_or_else(|| "uuid".into());
    let tenants = Tenants::new(&tenant_type);
    let users = Tenants::new(&user_type(model));
    let mut notes = Vec::new();
    let citus = identity == RowIdentity::Key;
    let roles = if citus {
        if model
            .models()
            .iter()
            .any(|m| matches!(m, TenancyModel::Role { .. }))
        {
            notes.push("on Citus the probe makes no per-tenant roles: each would reach the workers as a user of its own, and Citus refuses one transaction's placements to two users".into());
        }
        None
    } else {
        create_roles(tx, model, &tenants, &mut notes).await?
    };
    let mut seeds = Seeds {
        tenants,
        users,
        rows: Vec::new(),
        identity,
    };
    let mut failed: HashMap<u32, String> = HashMap::new();
    let order = seed_order(model);
    for tenant in 0..2 {
        for &oid in &order {
            let Some(t) = model.table(oid) else { continue };
            if failed.contains_key(&oid) {
                continue;
            }
            match synth::insert(tx, model, t, &seeds, tenant, &HashMap::new(), true).await {
                Ok(r) => seeds.rows.push(r),
                Err(e) => {
                    notes.push(format!("{}: cannot synthesize a row: {e}", t.display()));
                    failed.insert(oid, e);
                }
            }
        }
    }
    let mut own = HashMap::new();
    if citus {
        for (t, tt) in model.tenant_tables() {
            let Some(col) = &tt.column else { continue };
            let keys = if tt.per_user {
                &seeds.users
            } else {
                &seeds.tenants
            };
            let sql = format!(
                "SELECT count(*) FROM {} WHERE {} = {}",
                t.qualified(),
                ident(col),
                keys.sql(0)
            );
            let n: i64 = tx
                .query_one(&sql, &[])
                .await
                .map_err(db(format!("counting tenant A's rows of {}", t.display())))?
                .get(0);
            own.insert(t.oid, n);
        }
    }
    Ok(Seeded {
        seeds,
        failed,
        notes,
        roles,
        own,
    })
}

/// Runs every attack on every tenant table, on the rows [`seed`] made. Under
/// [`RowIdentity::Key`] the rows were committed beforehand (Citus), and nothing here runs
/// as the privileged user after the app has written.
pub async fn attack(
    tx: &Transaction<'_>,
    model: &Model,
    seeded: Seeded,
) -> Result<RunOutput, ProbeError> {
    let Seeded {
        seeds,
        failed,
        mut notes,
        roles,
        own,
    } = seeded;
    let citus = seeds.identity == RowIdentity::Key;
    let cx = Ctx {
        tx,
        model,
        carriers: Carriers::of(model),
        roles: roles.clone(),
        seeds,
        citus,
        own,
    };
    if citus
        && !model
            .catalog
            .citus
            .as_ref()
            .is_some_and(|c| c.app_propagates_set_local())
    {
        notes.push(format!(
            "Citus: the app role {} has no citus.propagate_set_commands = 'local' default (audit TG081), so the app's own SET LOCAL would not reach the workers; the probe sets it in each attack itself",
            model.config.app_role
        ));
    }
    if citus {
        notes.push("Citus: the synthetic rows were committed before the attacks (and deleted afterwards), rows are identified by their key, the context is set with SET LOCAL (citus.propagate_set_commands = local), and UPDATE/DELETE without WHERE are judged by the rows they reach against tenant A's own".into());
    }
    let targets: Vec<&Table> = model
        .tenant_tables()
        .filter(|(t, _)| matches!(t.kind, 'r' | 'p'))
        .map(|(t, _)| t)
        .collect();
    // Views and materialized views over tenant tables that expose the tenant column: read
    // attacks only.
    let tcol = &model.config.tenant_column;
    let views: Vec<&Table> = model
        .catalog
        .tables
        .iter()
        .filter(|v| matches!(v.kind, 'v' | 'm') && v.column(tcol).is_some())
        .filter(|v| {
            model
                .catalog
                .view_deps
                .iter()
                .any(|(x, r)| *x == v.oid && model.tenant.contains_key(r))
        })
        .collect();
    // Unset first: once any set_config ran, the setting exists as '' for the session.
    let mut unset: HashMap<u32, Result<i64, String>> = HashMap::new();
    for t in &targets {
        if let (Some(a), Some(b)) = (cx.row(t, 0), cx.row(t, 1)) {
            let r = count_visible(&cx, t, Who::Unset, a, b).await?;
            unset.insert(t.oid, r);
        }
    }
    for v in &views {
        let r = view_count(&cx, v, Who::Unset, false).await?;
        unset.insert(v.oid, r);
    }
    let mut results = Vec::new();
    for t in &targets {
        let tt = &model.tenant[&t.oid];
        let cells = table_cells(&cx, t, tt, &failed, unset.remove(&t.oid)).await?;
        results.push(TableResult {
            table: t.display(),
            model: model.detection.model_of(t.oid).word().to_string(),
            cells,
        });
    }
    for v in &views {
        let cells = view_cells(&cx, v, unset.remove(&v.oid)).await?;
        results.push(TableResult {
            table: v.display(),
            model: model.detection.model_of(v.oid).word().to_string(),
            cells,
        });
    }
    Ok(RunOutput {
        tables: results,
        notes,
        created_roles: roles.map(|r| r.to_vec()).unwrap_or_default(),
    })
}

fn all_cells(cell: Cell) -> Vec<(Attack, Cell)> {
    Attack::ALL.iter().map(|a| (*a, cell.clone())).collect()
}

fn no_privilege(what: &str) -> Cell {
    Cell::na(format!("the app holds no {what} privilege on it"))
}

async fn table_cells(
    cx: &Ctx<'_>,
    t: &Table,
    tt: &TenantTable,
    failed: &HashMap<u32, String>,
    unset: Option<Result<i64, String>>,
) -> Result<Vec<(Attack, Cell)>, ProbeError> {
    if let Some((_, why)) = cx
        .model
        .detection
        .not_modeled
        .iter()
        .find(|(n, _)| *n == t.display())
    {
        return Ok(all_cells(Cell::inconclusive(format!(
            "the tenancy model does not apply here: {why}"
        ))));
    }
    if cx.role_model(t) && cx.roles.is_none() {
        return Ok(all_cells(Cell::inconclusive(
            "the per-tenant roles of the role model could not be created",
        )));
    }
    let (Some(a), Some(b)) = (cx.row(t, 0).cloned(), cx.row(t, 1).cloned()) else {
        return Ok(all_cells(no_rows(t, failed)));
    };
    let p = t.privileges;
    let owns_key = tt.kind == TenantKind::Column;
    // The controls: tenant A's caller does the same to its own row.
    let read_ctl = control_read(cx, t, &a).await?;
    let upd_ctl = if p.update {
        control_update(cx, t, &a).await?
    } else {
        Err("no UPDATE privilege".into())
    };
    let del_ctl = if p.delete {
        control_delete(cx, t, &a).await?
    } else {
        Err("no DELETE privilege".into())
    };
    let ins_ctl = if p.insert {
        match cx.insert_as_a(t, 0, &HashMap::new()).await? {
            Ok(()) => Ok("tenant A inserts a row of its own".to_string()),
            Err(e) => Err(format!("tenant A cannot insert a row of its own: {e}")),
        }
    } else {
        Err("no INSERT privilege".into())
    };
    let mut cells = Vec::new();
    cells.push((
        Attack::ReadOther,
        if p.select {
            read_other(cx, t, &b).await?.judged(&read_ctl)
        } else {
            no_privilege("SELECT")
        },
    ));
    cells.push((
        Attack::UpdateOther,
        if p.update {
            write_other(cx, t, &a, &b, false).await?.judged(&upd_ctl)
        } else {
            no_privilege("UPDATE")
        },
    ));
    cells.push((
        Attack::DeleteOther,
        if p.delete {
            write_other(cx, t, &a, &b, true).await?.judged(&del_ctl)
        } else {
            no_privilege("DELETE")
        },
    ));
    cells.push((
        Attack::InsertOther,
        if !owns_key {
            Cell::na(no_column(tt))
        } else if !p.insert {
            no_privilege("INSERT")
        } else {
            insert_other(cx, t).await?.judged(&ins_ctl)
        },
    ));
    cells.push((
        Attack::MoveToOther,
        if !owns_key {
            Cell::na(no_column(tt))
        } else if !p.update {
            no_privilege("UPDATE")
        } else {
            move_to_other(cx, t, &a).await?.judged(&upd_ctl)
        },
    ));
    cells.push((
        Attack::ReferenceOther,
        if !p.insert {
            no_privilege("INSERT")
        } else {
            reference_other(cx, t).await?.judged(&ins_ctl)
        },
    ));
    cells.push((
        Attack::UniqueOracle,
        if !p.insert {
            no_privilege("INSERT")
        } else {
            unique_oracle(cx, t, &a, &b).await?.judged(&ins_ctl)
        },
    ));
    cells.push((
        Attack::ReadUnset,
        if !p.select {
            no_privilege("SELECT")
        } else {
            match unset {
                Some(Ok(n)) if n >= EXISTING => Cell::leak(format!(
                    "with no tenant context, {} existing row(s) of some tenant were visible (a fallback tenant?)",
                    n / EXISTING
                )),
                Some(Ok(n)) if n > 0 => Cell::leak(format!(
                    "with no tenant context, {n} synthetic row(s) of tenants A and B were visible"
                )),
                Some(Ok(_)) => Cell::blocked("with no tenant context, 0 rows are visible"),
                Some(Err(e)) => Cell::blocked(format!("fails closed: {e}")),
                None => Cell::inconclusive("not attacked"),
            }
            .judged(&read_ctl)
        },
    ));
    cells.push((
        Attack::ReadEmpty,
        if !p.select {
            no_privilege("SELECT")
        } else if cx.role_model(t) {
            Cell::na("under one role per tenant the context is the role itself: it cannot be empty")
        } else {
            read_empty(cx, t, &a, &b).await?.judged(&read_ctl)
        },
    ));
    cells.push((
        Attack::Truncate,
        if !p.truncate {
            no_privilege("TRUNCATE")
        } else {
            truncate(cx, t).await?
        },
    ));
    if cx.citus {
        // A refusal by Citus's own bookkeeping (a placement written by another user in
        // the transaction) says nothing about the policies.
        for (_, c) in cells.iter_mut() {
            if c.verdict == Verdict::Blocked && c.detail.contains("(25001)") {
                *c = Cell::inconclusive(format!(
                    "Citus refused the step, not the policies, so it proves nothing: {}",
                    c.detail
                ));
            }
        }
    }
    Ok(cells)
}

async fn control_read(cx: &Ctx<'_>, t: &Table, a: &Row) -> Result<Control, ProbeError> {
    if !t.privileges.select {
        return Ok(Err("no SELECT privilege".into()));
    }
    let sql = format!(
        "SELECT count(*) FROM {} WHERE {}",
        t.qualified(),
        a.locator()
    );
    Ok(match cx.count_as(t, Who::Tenant(0), &sql).await? {
        Ok(n) if n > 0 => Ok("tenant A reads its own row".into()),
        Ok(_) => Err("tenant A cannot see its own row (the tenancy model did not apply?)".into()),
        Err(e) => Err(format!(
            "tenant A cannot read its own row: {}",
            err_text(&e)
        )),
    })
}

async fn control_update(cx: &Ctx<'_>, t: &Table, a: &Row) -> Result<Control, ProbeError> {
    let Some(set) = touch_column(cx, t, a) else {
        return Ok(Err("no updatable column".into()));
    };
    let sql = format!("UPDATE {} SET {set} WHERE {}", t.qualified(), a.locator());
    Ok(match cx.exec_as(t, Who::Tenant(0), &sql).await? {
        Ok(n) if n > 0 => Ok("tenant A updates its own row".into()),
        Ok(_) => Err("tenant A's UPDATE of its own row matched no row".into()),
        Err(e) => Err(format!(
            "tenant A cannot update its own row: {}",
            err_text(&e)
        )),
    })
}

async fn control_delete(cx: &Ctx<'_>, t: &Table, a: &Row) -> Result<Control, ProbeError> {
    let sql = format!("DELETE FROM {} WHERE {}", t.qualified(), a.locator());
    Ok(match cx.exec_as(t, Who::Tenant(0), &sql).await? {
        Ok(n) if n > 0 => Ok("tenant A deletes its own row".into()),
        Ok(_) => Err("tenant A's DELETE of its own row matched no row".into()),
        Err(e) if code(&e) == Some(SqlState::FOREIGN_KEY_VIOLATION) => Ok(
            "tenant A's DELETE reaches its own row (its children's foreign keys stop it)".into(),
        ),
        Err(e) => Err(format!(
            "tenant A cannot delete its own row: {}",
            err_text(&e)
        )),
    })
}

/// Counts synthetic rows through a view as `who`: tenant B's (with tenant A set) or all of
/// them (`all`). A materialized view is refreshed first (inside the savepoint).
async fn view_count(
    cx: &Ctx<'_>,
    v: &Table,
    who: Who,
    own: bool,
) -> Result<Result<i64, String>, ProbeError> {
    let tcol = ident(&cx.model.config.tenant_column);
    let (a, b) = (cx.seeds.tenants.sql(0), cx.seeds.tenants.sql(1));
    let filter = match (who, own) {
        (_, true) => format!("{tcol} = {a}"),
        (Who::Tenant(_), false) => format!("{tcol} = {b}"),
        _ => format!("{tcol} IN ({a}, {b})"),
    };
    let sql = format!("SELECT count(*) FROM {} WHERE {filter}", v.qualified());
    cx.in_savepoint(async || {
        if v.kind == 'm' {
            if let Err(e) = cx
                .tx
                .batch_execute(&format!("REFRESH MATERIALIZED VIEW {}", v.qualified()))
                .await
            {
                return Ok(Err(format!(
                    "cannot refresh the materialized view: {}",
                    err_text(&e)
                )));
            }
        }
        let r = cx
            .as_caller(v, who, async || Ok(cx.count(&sql).await))
            .await?;
        Ok(r.map_err(|e| err_text(&e)))
    })
    .await
}

async fn view_cells(
    cx: &Ctx<'_>,
    v: &Table,
    unset: Option<Result<i64, String>>,
) -> Result<Vec<(Attack, Cell)>, ProbeError> {
    if !v.privileges.select {
        return Ok(all_cells(no_privilege("SELECT")));
    }
    let ctl: Control = match view_count(cx, v, Who::Tenant(0), true).await? {
        Ok(n) if n > 0 => Ok("through the view, tenant A sees its own rows".into()),
        Ok(_) => Err("through the view, tenant A does not see its own rows".into()),
        Err(e) => Err(format!("tenant A cannot read the view: {e}")),
    };
    let judge = |r: Result<i64, String>, what: &str| match r {
        Ok(n) if n > 0 => Cell::leak(format!("through the view, {what} were visible ({n})")),
        Ok(_) => Cell::blocked(format!("through the view, 0 {what} are visible")),
        Err(e) => Cell::blocked(format!("error: {e}")),
    };
    let read_other = judge(
        view_count(cx, v, Who::Tenant(0), false).await?,
        "with tenant A set, rows of tenant B",
    )
    .judged(&ctl);
    let read_unset = match unset {
        Some(r) => judge(r, "with no tenant set, synthetic rows").judged(&ctl),
        None => Cell::inconclusive("not attacked"),
    };
    let read_empty = judge(
        view_count(cx, v, Who::Empty, false).await?,
        "with the tenant set to '', synthetic rows",
    )
    .judged(&ctl);
    Ok(Attack::ALL
        .iter()
        .map(|a| {
            let c = match a {
                Attack::ReadOther => read_other.clone(),
                Attack::ReadUnset => read_unset.clone(),
                Attack::ReadEmpty => read_empty.clone(),
                _ => Cell::na("a view: only reads are attacked"),
            };
            (*a, c)
        })
        .collect())
}

fn no_column(tt: &TenantTable) -> String {
    match tt.kind {
        TenantKind::Registry => "the tenant registry: its key is the tenant id".into(),
        _ => "no tenant column".into(),
    }
}

fn no_rows(t: &Table, failed: &HashMap<u32, String>) -> Cell {
    Cell::inconclusive(match failed.get(&t.oid) {
        Some(e) => format!("not attacked: no synthetic rows: {e}"),
        None => "not attacked: no synthetic rows for both tenants (a parent could not be synthesized, or no partition received them)".into(),
    })
}

/// Tenant tables that take rows directly (not partitions), parents before children.
fn seed_order(model: &Model) -> Vec<u32> {
    let mut todo: Vec<u32> = model
        .tenant_tables()
        .filter(|(t, _)| matches!(t.kind, 'r' | 'p') && !t.is_partition)
        .map(|(t, _)| t.oid)
        .collect();
    let mut out = Vec::new();
    while !todo.is_empty() {
        let ready: Vec<u32> = todo
            .iter()
            .copied()
            .filter(|oid| {
                model.catalog.foreign_keys.iter().all(|fk| {
                    fk.table != *oid || fk.references == *oid || !todo.contains(&fk.references)
                })
            })
            .collect();
        // A cycle: take the rest as they are (nullable keys stay NULL).
        let take = if ready.is_empty() {
            todo.clone()
        } else {
            ready
        };
        todo.retain(|o| !take.contains(o));
        out.extend(take);
    }
    out
}

/// `col = value` for an UPDATE that reads no column (reading one would add the SELECT
/// policies): a column outside every key, set to the value tenant A's row already has.
/// Falls back to `col = col` when no such column exists.
fn touch_column(cx: &Ctx<'_>, t: &Table, a: &Row) -> Option<String> {
    let keyed = |name: &str| {
        cx.model.catalog.indexes.iter().any(|i| {
            i.table == t.oid && i.unique && i.columns.iter().any(|c| c.as_deref() == Some(name))
        }) || cx
            .model
            .catalog
            .foreign_keys
            .iter()
            .any(|f| f.table == t.oid && f.columns.iter().any(|c| c == name))
    };
    let writable = |c: &&crate::audit::catalog::Column| c.generated.is_empty() && c.identity != "a";
    let constant = t.columns.iter().filter(writable).find_map(|c| {
        if keyed(&c.name) {
            return None;
        }
        match a.values.get(&c.name) {
            Some(Some(v)) => Some(format!(
                "{} = CAST({} AS {})",
                ident(&c.name),
                literal(v),
                c.type_name
            )),
            Some(None) if !c.not_null => Some(format!("{} = NULL", ident(&c.name))),
            _ => None,
        }
    });
    constant.or_else(|| {
        t.columns
            .iter()
            .find(writable)
            .map(|c| format!("{} = {}", ident(&c.name), ident(&c.name)))
    })
}

async fn read_other(cx: &Ctx<'_>, t: &Table, b: &Row) -> Result<Cell, ProbeError> {
    // As tenant A's caller, then as every role the app can SET ROLE to (switching from the
    // caller, so PostgreSQL checks that it may); predefined roles are left out.
    let app = cx.model.config.app_role.clone();
    let mut roles: Vec<Option<String>> = vec![None];
    roles.extend(
        cx.model
            .catalog
            .app_roles
            .iter()
            .map(|r| r.name.clone())
            .filter(|n| *n != app && !n.starts_with("pg_"))
            .map(Some),
    );
    let sql = format!(
        "SELECT count(*) FROM {} WHERE {}",
        t.qualified(),
        b.locator()
    );
    let mut first_err = None;
    for role in &roles {
        let r = cx
            .attempt(t, Who::Tenant(0), async || {
                if let Some(r) = role {
                    let switch = format!("SET LOCAL ROLE {}", ident(r));
                    if let Err(e) = cx.tx.batch_execute(&switch).await {
                        return Ok(Err(e));
                    }
                }
                Ok(cx.count(&sql).await)
            })
            .await?;
        match r {
            Ok(n) if n > 0 => {
                let how = match role {
                    None => "as tenant A's caller".to_string(),
                    Some(r) => format!("as tenant A's caller after SET ROLE {r}"),
                };
                return Ok(Cell::leak(format!("{how}, SELECT returned tenant B's row")));
            }
            Ok(_) => {}
            Err(e) => {
                let who = role.as_deref().unwrap_or("the caller");
                first_err.get_or_insert_with(|| format!("error as {who}: {}", err_text(&e)));
            }
        }
    }
    Ok(Cell::blocked(match (first_err, roles.len()) {
        (Some(e), _) => format!("tenant B's row: 0 rows or an error ({e})"),
        (None, 1) => "tenant B's row: 0 rows".into(),
        (None, n) => format!(
            "tenant B's row: 0 rows, for the caller and the {} role(s) it can become",
            n - 1
        ),
    }))
}

async fn write_other(
    cx: &Ctx<'_>,
    t: &Table,
    a: &Row,
    b: &Row,
    delete: bool,
) -> Result<Cell, ProbeError> {
    let qt = t.qualified();
    let verb = if delete { "DELETE" } else { "UPDATE" };
    let set = touch_column(cx, t, a);
    let stmt = |filter: &str| match (delete, &set) {
        (true, _) => Some(format!("DELETE FROM {qt}{filter}")),
        (false, Some(c)) => Some(format!("UPDATE {qt} SET {c}{filter}")),
        (false, None) => None,
    };
    let Some(plain) = stmt("") else {
        return Ok(Cell::na("no updatable column"));
    };
    // Without WHERE: UPDATE/DELETE USING alone decides (SELECT policies are not consulted).
    let first_err = if cx.citus {
        match write_counted(cx, t, &plain, verb).await? {
            Ok(cell) => return Ok(cell),
            Err(e) => e,
        }
    } else {
        match write_unfiltered(cx, t, &plain, verb, b, delete).await? {
            Ok(cell) => return Ok(cell),
            Err(e) => e,
        }
    };
    // It failed (e.g. a foreign key of A's own rows): aim at B's row alone.
    let Some(targeted) = stmt(&format!(" WHERE {}", b.locator())) else {
        return Ok(Cell::blocked(first_err));
    };
    Ok(match cx.exec_as(t, Who::Tenant(0), &targeted).await? {
        Ok(n) if n > 0 => Cell::leak(format!("{verb} as tenant A reached tenant B's row")),
        Ok(_) => Cell::blocked(format!(
            "{verb} aimed at tenant B's row: 0 rows ({first_err} without WHERE)"
        )),
        Err(e) if code(&e) == Some(SqlState::FOREIGN_KEY_VIOLATION) => Cell::leak(format!(
            "{verb} as tenant A reached tenant B's row; only a foreign key stopped it: {}",
            err_text(&e)
        )),
        Err(e) => Cell::blocked(format!("error: {}", err_text(&e))),
    })
}

/// On Citus: the UPDATE or DELETE without WHERE as tenant A, judged by the number of rows
/// it reached against the rows tenant A owns (counted when the synthetic rows were
/// committed): no privileged read may follow the app's write there. A row
/// reached beyond A's own belongs to another tenant (B's, or a real one's). `Err`: the
/// statement failed (its text).
async fn write_counted(
    cx: &Ctx<'_>,
    t: &Table,
    plain: &str,
    verb: &str,
) -> Result<Result<Cell, String>, ProbeError> {
    let Some(&own) = cx.own.get(&t.oid) else {
        return Ok(Ok(Cell::inconclusive(format!(
            "on Citus the probe judges a {verb} without WHERE by the rows it reaches against tenant A's own, and this table has no tenant column to count them by"
        ))));
    };
    Ok(match cx.exec_as(t, Who::Tenant(0), plain).await? {
        Ok(n) if n as i64 > own => Ok(Cell::leak(format!(
            "{verb} without WHERE as tenant A reached {n} row(s), and tenant A owns {own}: it reached {} row(s) of other tenants",
            n as i64 - own
        ))),
        Ok(n) => Ok(Cell::blocked(format!(
            "{verb} without WHERE as tenant A reached {n} row(s), no more than tenant A's own {own}"
        ))),
        Err(e) => Err(err_text(&e)),
    })
}

/// On plain PostgreSQL: the UPDATE or DELETE without WHERE as tenant A, judged by whether
/// tenant B's row is still there as it was (read back as the privileged user; an UPDATE
/// gives the row a new ctid). `Err`: the statement failed (its text).
async fn write_unfiltered(
    cx: &Ctx<'_>,
    t: &Table,
    plain: &str,
    verb: &str,
    b: &Row,
    delete: bool,
) -> Result<Result<Cell, String>, ProbeError> {
    let evidence = format!(
        "SELECT count(*) FROM {} WHERE {}",
        t.qualified(),
        b.locator()
    );
    let r = cx
        .attempt(t, Who::Tenant(0), async || {
            if let Err(e) = cx.tx.execute(plain, &[]).await {
                return Ok(Err(e));
            }
            Ok(Ok(cx.privileged_count(&evidence).await?))
        })
        .await?;
    Ok(match r {
        Ok(0) => Ok(Cell::leak(format!(
            "{verb} without WHERE as tenant A {} tenant B's row",
            if delete { "deleted" } else { "rewrote" }
        ))),
        Ok(_) => Ok(Cell::blocked(format!(
            "{verb} without WHERE left tenant B's row untouched (1 row still there)"
        ))),
        Err(e) => Err(err_text(&e)),
    })
}

/// The user column of `t` when it is the membership table of a membership model.
fn membership_user_column(cx: &Ctx<'_>, t: &Table) -> Option<String> {
    cx.model.models().into_iter().find_map(|m| match m {
        TenancyModel::Membership {
            table, user_column, ..
        } if (*table == t.display() || *table == t.name) && t.column(user_column).is_some() => {
            Some(user_column.clone())
        }
        _ => None,
    })
}

async fn insert_other(cx: &Ctx<'_>, t: &Table) -> Result<Cell, ProbeError> {
    // In the membership table the attack is to make oneself a member of tenant B.
    if let Some(ucol) = membership_user_column(cx, t) {
        let overrides: HashMap<String, Option<String>> =
            [(ucol.clone(), Some(cx.seeds.users.sql(0)))].into();
        return Ok(match cx.insert_as_a(t, 1, &overrides).await? {
            Ok(()) => Cell::leak(format!(
                "tenant A's caller inserted a membership of itself ({ucol}) in tenant B: it now reaches every row of tenant B"
            )),
            Err(e) => Cell::blocked(e),
        });
    }
    Ok(match cx.insert_as_a(t, 1, &HashMap::new()).await? {
        Ok(()) => Cell::leak("as tenant A, inserted a row that belongs to tenant B"),
        Err(e) => Cell::blocked(e),
    })
}

async fn move_to_other(cx: &Ctx<'_>, t: &Table, a: &Row) -> Result<Cell, ProbeError> {
    let tt = &cx.model.tenant[&t.oid];
    let Some(col) = tt.column.as_deref() else {
        return Ok(Cell::na(no_column(tt)));
    };
    let qt = t.qualified();
    let qc = ident(col);
    let keys = if tt.per_user {
        &cx.seeds.users
    } else {
        &cx.seeds.tenants
    };
    let b = keys.sql(1);
    let count_b = format!("SELECT count(*) FROM {qt} WHERE {qc} = {b}");
    let update = format!("UPDATE {qt} SET {qc} = {b}");
    let r = cx
        .in_savepoint(async || {
            if cx.citus {
                // No privileged read after the app's write on Citus: tenant B's caller
                // counts B's rows, before and after.
                let before = match cx
                    .as_caller(t, Who::Tenant(1), async || Ok(cx.count(&count_b).await))
                    .await?
                {
                    Ok(n) => n,
                    Err(e) => return Ok(Err(e)),
                };
                if before == 0 {
                    return Ok(Ok(None));
                }
                return cx
                    .as_caller(t, Who::Tenant(0), async || {
                        if let Err(e) = cx.tx.execute(&update, &[]).await {
                            return Ok(Err(e));
                        }
                        if let Err(e) = cx.become_caller(t, Who::Tenant(1)).await {
                            return Ok(Err(e));
                        }
                        Ok(cx.count(&count_b).await.map(|after| Some((before, after))))
                    })
                    .await;
            }
            let before = cx.count(&count_b).await.map_err(db("counting rows"))?;
            cx.as_caller(t, Who::Tenant(0), async || {
                if let Err(e) = cx.tx.execute(&update, &[]).await {
                    return Ok(Err(e));
                }
                Ok(Ok(Some((before, cx.privileged_count(&count_b).await?))))
            })
            .await
        })
        .await?;
    let first_err = match r {
        Ok(None) => {
            return Ok(Cell::inconclusive(
                "on Citus, tenant B's caller counts the rows moved into B, and it does not see its own synthetic row",
            ))
        }
        Ok(Some((before, after))) if after > before => {
            return Ok(Cell::leak(format!(
                "UPDATE as tenant A moved {} row(s) into tenant B",
                after - before
            )))
        }
        Ok(_) => {
            return Ok(Cell::blocked(
                "UPDATE … SET tenant = B: 0 rows changed tenant",
            ))
        }
        Err(e) => err_text(&e),
    };
    let sql = format!("UPDATE {qt} SET {qc} = {b} WHERE {}", a.locator());
    Ok(match cx.exec_as(t, Who::Tenant(0), &sql).await? {
        Ok(n) if n > 0 => Cell::leak("UPDATE as tenant A moved its row into tenant B"),
        Ok(_) => Cell::blocked(format!("0 rows changed tenant ({first_err})")),
        Err(e) => Cell::blocked(format!("error: {}", err_text(&e))),
    })
}

async fn reference_other(cx: &Ctx<'_>, t: &Table) -> Result<Cell, ProbeError> {
    let tt = &cx.model.tenant[&t.oid];
    let tcol = tt.column.clone().unwrap_or_default();
    let fks: Vec<_> = cx
        .model
        .catalog
        .foreign_keys
        .iter()
        .filter(|fk| fk.table == t.oid && fk.references != t.oid)
        .filter(|fk| cx.model.tenant.contains_key(&fk.references))
        .filter(|fk| !(fk.columns.len() == 1 && fk.columns[0] == tcol))
        .collect();
    if fks.is_empty() {
        return Ok(Cell::na("no foreign key to another tenant table"));
    }
    let mut leaks = Vec::new();
    let mut blocked = Vec::new();
    let mut untried = Vec::new();
    for fk in fks {
        let Some(parent_b) = cx
            .seeds
            .rows
            .iter()
            .find(|r| r.via == fk.references && r.tenant == 1)
        else {
            untried.push(format!("{}: no synthetic parent row", fk.name));
            continue;
        };
        let mut overrides = HashMap::new();
        for (c, rc) in fk.columns.iter().zip(&fk.ref_columns) {
            if *c == tcol {
                continue;
            }
            let (Some(col), Some(Some(v))) = (t.column(c), parent_b.values.get(rc)) else {
                continue;
            };
            overrides.insert(
                c.clone(),
                Some(format!("CAST({} AS {})", literal(v), col.type_name)),
            );
        }
        match cx.insert_as_a(t, 0, &overrides).await? {
            Ok(()) => leaks.push(fk.name.clone()),
            Err(e) => blocked.push(format!("{}: {e}", fk.name)),
        }
    }
    Ok(if !leaks.is_empty() {
        Cell::leak(format!(
            "a tenant-A row was inserted referencing tenant B's parent row through {}",
            leaks.join(", ")
        ))
    } else if blocked.is_empty() {
        Cell::inconclusive(untried.join("; "))
    } else {
        Cell::blocked(blocked.join("; "))
    })
}

async fn unique_oracle(cx: &Ctx<'_>, t: &Table, a: &Row, b: &Row) -> Result<Cell, ProbeError> {
    let tt = &cx.model.tenant[&t.oid];
    if tt.kind != TenantKind::Column {
        return Ok(Cell::na(no_column(tt)));
    }
    let tcol = tt.column.clone().unwrap_or_default();
    let mut keys: Vec<Vec<String>> = cx
        .model
        .catalog
        .indexes
        .iter()
        .filter(|i| i.table == t.oid && i.unique && !i.partial)
        .filter_map(|i| i.columns.iter().cloned().collect::<Option<Vec<String>>>())
        .filter(|cols| cols.iter().any(|c| *c != tcol))
        .collect();
    // Keys without the tenant column are the suspects; try them first.
    keys.sort_by_key(|cols| cols.contains(&tcol));
    let Some(cols) = keys.first() else {
        return Ok(Cell::na("no unique key besides the tenant column"));
    };
    let mut overrides = HashMap::new();
    for c in cols.iter().filter(|c| **c != tcol) {
        let (Some(col), Some(Some(v))) = (t.column(c), b.values.get(c)) else {
            continue;
        };
        overrides.insert(
            c.clone(),
            Some(format!("CAST({} AS {})", literal(v), col.type_name)),
        );
    }
    let (cleared, r) = cx
        .in_savepoint(async || {
            // Remove tenant A's own synthetic row first (inside the savepoint), so that a
            // duplicate-key error can only come from another tenant's row.
            let cleared = cx.clear(t, a).await?;
            let r = cx
                .as_caller(t, Who::Tenant(0), async || {
                    Ok(Ok(synth::insert(
                        cx.tx, cx.model, t, &cx.seeds, 0, &overrides, false,
                    )
                    .await
                    .map(|_| ())))
                })
                .await?;
            Ok((cleared, r.unwrap_or_else(|e| Err(err_text(&e)))))
        })
        .await?;
    Ok(match r {
        Err(e) if e.contains("(23505)") && !cleared => Cell::inconclusive(format!(
            "duplicate-key error, but tenant A's own synthetic row could not be removed to rule it out: {e}"
        )),
        Ok(()) => Cell::blocked(format!(
            "tenant A may reuse tenant B's ({}): the key is per tenant",
            cols.join(", ")
        )),
        Err(e) if e.contains("(23505)") => Cell::of(Verdict::Distinguishable, format!(
            "inserting tenant B's ({}) as tenant A raised a duplicate-key error, revealing that the value exists: {e}",
            cols.join(", ")
        )),
        Err(e) => Cell::blocked(e),
    })
}

/// Marks a count of existing rows in [`count_visible`]'s result: synthetic rows count 1
/// each, existing (non-synthetic) rows `EXISTING` each.
const EXISTING: i64 = 1 << 32;

/// As `who`, counts the synthetic rows of A and B visible in `t`, plus (scaled by
/// [`EXISTING`]) existing rows with a tenant: a context that falls back to a real tenant
/// shows those, never the synthetic ones.
async fn count_visible(
    cx: &Ctx<'_>,
    t: &Table,
    who: Who,
    a: &Row,
    b: &Row,
) -> Result<Result<i64, String>, ProbeError> {
    let key = cx
        .model
        .tenant
        .get(&t.oid)
        .and_then(|tt| tt.column.clone())
        .map(|c| format!(" AND {} IS NOT NULL", ident(&c)))
        .unwrap_or_default();
    let sql = format!(
        "SELECT count(*) FILTER (WHERE {a} OR {b}) + {EXISTING} * count(*) FILTER (WHERE NOT ({a} OR {b}){key}) FROM {}",
        t.qualified(),
        a = a.locator(),
        b = b.locator()
    );
    Ok(cx.count_as(t, who, &sql).await?.map_err(|e| err_text(&e)))
}

async fn read_empty(cx: &Ctx<'_>, t: &Table, a: &Row, b: &Row) -> Result<Cell, ProbeError> {
    Ok(match count_visible(cx, t, Who::Empty, a, b).await? {
        Ok(n) if n >= EXISTING => Cell::leak(format!(
            "with the tenant context set to '', {} existing row(s) of some tenant were visible (a fallback tenant?)",
            n / EXISTING
        )),
        Ok(n) if n > 0 => Cell::leak(format!(
            "with the tenant context set to '', {n} synthetic row(s) of tenants A and B were visible"
        )),
        Ok(_) => Cell::blocked("with the tenant context set to '', 0 rows are visible"),
        Err(e) => Cell::blocked(format!("fails closed: {e}")),
    })
}

async fn truncate(cx: &Ctx<'_>, t: &Table) -> Result<Cell, ProbeError> {
    let sql = format!("TRUNCATE {}", t.qualified());
    let r = cx
        .attempt(t, Who::Tenant(0), async || {
            Ok(cx.tx.batch_execute(&sql).await)
        })
        .await?;
    let held = "the app holds TRUNCATE".to_string();
    Ok(match r {
        Ok(()) => Cell::leak("TRUNCATE as the app emptied the table for every tenant"),
        Err(e) if code(&e) == Some(SqlState::FEATURE_NOT_SUPPORTED) => Cell::leak(format!(
            "the app holds TRUNCATE; only foreign-key references stopped it here: {}",
            err_text(&e)
        )),
        Err(e) if code(&e) == Some(SqlState::INSUFFICIENT_PRIVILEGE) => {
            Cell::blocked(err_text(&e)).judged(&Ok(held))
        }
        Err(e) => Cell::inconclusive(format!("TRUNCATE failed: {}", err_text(&e))),
    })
}
