//! The attacks. Each runs in its own savepoint, as the app role, and is rolled back to
//! that savepoint afterwards; evidence is read back as the privileged user inside the same
//! savepoint. Rows are located by `(tableoid, ctid)`, which needs no key of the table.

use std::collections::HashMap;

use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Transaction};

use super::synth::{self, Row, Seeds, Tenants};
use super::{db, Outcome, ProbeError};
use crate::audit::catalog::Table;
use crate::audit::model::TenantKind;
use crate::audit::{AuditConfig, Model};
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

/// The outcomes for one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableResult {
    /// `schema.table`.
    pub table: String,
    /// One outcome per attack, in [`Attack::ALL`] order.
    pub cells: Vec<(Attack, Outcome)>,
}

impl TableResult {
    /// The outcome of `attack`.
    pub fn get(&self, attack: Attack) -> Option<&Outcome> {
        self.cells
            .iter()
            .find(|(a, _)| *a == attack)
            .map(|(_, o)| o)
    }
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

struct Ctx<'a> {
    tx: &'a Transaction<'a>,
    model: &'a Model,
    seeds: Seeds,
}

impl Ctx<'_> {
    async fn savepoint(&self) -> Result<(), ProbeError> {
        self.tx
            .batch_execute("SAVEPOINT tg_attack")
            .await
            .map_err(db("opening an attack savepoint"))
    }

    /// Switches to the app role; `tenant`: `Some(i)` synthetic tenant i, `Some(usize::MAX)`
    /// the empty string, `None` leaves the setting alone.
    async fn become_app(&self, tenant: Option<usize>) -> Result<(), tokio_postgres::Error> {
        self.tx
            .batch_execute(&format!(
                "SET LOCAL ROLE {}",
                ident(&self.model.config.app_role)
            ))
            .await?;
        if let Some(i) = tenant {
            let v = if i < 2 {
                self.seeds.tenants.text[i].clone()
            } else {
                String::new()
            };
            self.tx
                .execute(
                    "SELECT set_config($1, $2, true)",
                    &[&self.model.config.tenant_setting, &v],
                )
                .await?;
        }
        Ok(())
    }

    async fn end(&self) -> Result<(), ProbeError> {
        self.tx
            .batch_execute("ROLLBACK TO SAVEPOINT tg_attack; RELEASE SAVEPOINT tg_attack")
            .await
            .map_err(db("rolling back an attack"))
    }

    async fn count(&self, sql: &str) -> Result<i64, tokio_postgres::Error> {
        Ok(self.tx.query_one(sql, &[]).await?.get(0))
    }

    fn row(&self, t: &Table, tenant: usize) -> Option<&Row> {
        self.seeds
            .rows
            .iter()
            .find(|r| r.tenant == tenant && (r.via == t.oid || r.tableoid == t.oid))
    }
}

/// Seeds the synthetic rows and runs every attack on every tenant table. Returns the
/// matrix and notes about seeding.
pub async fn run_all(
    tx: &Transaction<'_>,
    model: &Model,
) -> Result<(Vec<TableResult>, Vec<String>), ProbeError> {
    let type_name = model
        .tenant_tables()
        .find_map(|(t, tt)| match (&tt.kind, &tt.column) {
            (TenantKind::Column, Some(c)) => t.column(c).map(|c| c.type_name.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "uuid".into());
    let mut cx = Ctx {
        tx,
        model,
        seeds: Seeds {
            tenants: Tenants::new(&type_name),
            rows: Vec::new(),
        },
    };
    let mut notes = Vec::new();
    let mut failed: HashMap<u32, String> = HashMap::new();
    let order = seed_order(model);
    for tenant in 0..2 {
        for &oid in &order {
            let Some(t) = model.table(oid) else { continue };
            if failed.contains_key(&oid) {
                continue;
            }
            match synth::insert(tx, model, t, &cx.seeds, tenant, &HashMap::new(), true).await {
                Ok(r) => cx.seeds.rows.push(r),
                Err(e) => {
                    notes.push(format!("{}: cannot synthesize a row: {e}", t.display()));
                    failed.insert(oid, e);
                }
            }
        }
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
    let mut results: Vec<TableResult> = targets
        .iter()
        .chain(views.iter())
        .map(|t| TableResult {
            table: t.display(),
            cells: Vec::new(),
        })
        .collect();
    // Unset first: once any set_config ran, the setting exists as '' for the session.
    for (i, t) in targets.iter().enumerate() {
        let o = match (cx.row(t, 0), cx.row(t, 1)) {
            (Some(a), Some(b)) => read_visible(&cx, t, a, b, None).await?,
            _ => no_rows(t, &failed),
        };
        results[i].cells.push((Attack::ReadUnset, o));
    }
    for (j, v) in views.iter().enumerate() {
        let o = view_read(&cx, v, None).await?;
        results[targets.len() + j]
            .cells
            .push((Attack::ReadUnset, o));
    }
    for (i, t) in targets.iter().enumerate() {
        let tt = &model.tenant[&t.oid];
        let (Some(a), Some(b)) = (cx.row(t, 0).cloned(), cx.row(t, 1).cloned()) else {
            for atk in Attack::ALL {
                if atk != Attack::ReadUnset {
                    results[i].cells.push((atk, no_rows(t, &failed)));
                }
            }
            continue;
        };
        let owns_key = tt.kind == TenantKind::Column;
        let mut cells = vec![
            (Attack::ReadOther, read_other(&cx, t, &b).await?),
            (
                Attack::UpdateOther,
                write_other(&cx, t, &a, &b, false).await?,
            ),
            (
                Attack::DeleteOther,
                write_other(&cx, t, &a, &b, true).await?,
            ),
            (
                Attack::InsertOther,
                if owns_key {
                    insert_other(&cx, t).await?
                } else {
                    Outcome::NotApplicable(no_column(tt))
                },
            ),
            (
                Attack::MoveToOther,
                if owns_key {
                    move_to_other(&cx, t, &a).await?
                } else {
                    Outcome::NotApplicable(no_column(tt))
                },
            ),
            (Attack::ReferenceOther, reference_other(&cx, t).await?),
            (Attack::UniqueOracle, unique_oracle(&cx, t, &a, &b).await?),
            (
                Attack::ReadEmpty,
                read_visible(&cx, t, &a, &b, Some(usize::MAX)).await?,
            ),
            (Attack::Truncate, truncate(&cx, t).await?),
        ];
        results[i].cells.append(&mut cells);
        results[i]
            .cells
            .sort_by_key(|(a, _)| Attack::ALL.iter().position(|x| x == a));
    }
    for (j, v) in views.iter().enumerate() {
        let cells = &mut results[targets.len() + j].cells;
        cells.push((Attack::ReadOther, view_read(&cx, v, Some(0)).await?));
        cells.push((
            Attack::ReadEmpty,
            view_read(&cx, v, Some(usize::MAX)).await?,
        ));
        for atk in Attack::ALL {
            if !cells.iter().any(|(a, _)| *a == atk) {
                cells.push((
                    atk,
                    Outcome::NotApplicable("a view: only reads are attacked".into()),
                ));
            }
        }
        cells.sort_by_key(|(a, _)| Attack::ALL.iter().position(|x| x == a));
    }
    Ok((results, notes))
}

/// Reads a view over tenant tables as the app: with tenant A set (`Some(0)`), B's rows
/// must be invisible; with no tenant or '' (`None`, `Some(usize::MAX)`), all synthetic
/// rows. A materialized view is refreshed first (inside the savepoint) so it holds them.
async fn view_read(cx: &Ctx<'_>, v: &Table, tenant: Option<usize>) -> Result<Outcome, ProbeError> {
    let tcol = ident(&cx.model.config.tenant_column);
    let (a, b) = (cx.seeds.tenants.sql(0), cx.seeds.tenants.sql(1));
    let filter = if tenant == Some(0) {
        format!("{tcol} = {b}")
    } else {
        format!("{tcol} IN ({a}, {b})")
    };
    cx.savepoint().await?;
    if v.kind == 'm' {
        if let Err(e) = cx
            .tx
            .batch_execute(&format!("REFRESH MATERIALIZED VIEW {}", v.qualified()))
            .await
        {
            cx.end().await?;
            return Ok(Outcome::NotApplicable(format!(
                "cannot refresh the materialized view: {}",
                err_text(&e)
            )));
        }
    }
    let r = match cx.become_app(tenant).await {
        Ok(()) => {
            cx.count(&format!(
                "SELECT count(*) FROM {} WHERE {filter}",
                v.qualified()
            ))
            .await
        }
        Err(e) => Err(e),
    };
    cx.end().await?;
    let what = match tenant {
        Some(0) => "with tenant A set, rows of tenant B",
        Some(_) => "with the tenant set to '', synthetic rows",
        None => "with no tenant set, synthetic rows",
    };
    Ok(match r {
        Ok(n) if n > 0 => Outcome::Leaked(format!("through the view, {what} were visible ({n})")),
        Ok(_) => Outcome::Blocked(format!(
            "through the view, no {}",
            &what[what.find(", ").map(|i| i + 2).unwrap_or(0)..]
        )),
        Err(e) => Outcome::Blocked(format!("error: {}", err_text(&e))),
    })
}

fn no_column(tt: &crate::audit::model::TenantTable) -> String {
    match tt.kind {
        TenantKind::Registry => "the tenant registry: its key is the tenant id".into(),
        _ => "no tenant column".into(),
    }
}

fn no_rows(t: &Table, failed: &HashMap<u32, String>) -> Outcome {
    Outcome::NotApplicable(match failed.get(&t.oid) {
        Some(e) => format!("no synthetic rows: {e}"),
        None => "no synthetic rows for both tenants (a parent could not be synthesized, or no partition received them)".into(),
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

async fn read_other(cx: &Ctx<'_>, t: &Table, b: &Row) -> Result<Outcome, ProbeError> {
    // As the app, then as every role it can SET ROLE to (switching from the app itself, so
    // PostgreSQL checks that it may); predefined roles are left out.
    let app = cx.model.config.app_role.clone();
    let mut roles = vec![app.clone()];
    roles.extend(
        cx.model
            .catalog
            .app_roles
            .iter()
            .map(|r| r.name.clone())
            .filter(|n| *n != app && !n.starts_with("pg_")),
    );
    let mut first_err = None;
    for role in &roles {
        cx.savepoint().await?;
        let r = match cx.become_app(Some(0)).await {
            Ok(()) => {
                let switch = if *role == app {
                    Ok(())
                } else {
                    cx.tx
                        .batch_execute(&format!("SET LOCAL ROLE {}", ident(role)))
                        .await
                };
                match switch {
                    Ok(()) => {
                        cx.count(&format!(
                            "SELECT count(*) FROM {} WHERE {}",
                            t.qualified(),
                            b.locator()
                        ))
                        .await
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        cx.end().await?;
        match r {
            Ok(n) if n > 0 => {
                let how = if *role == app {
                    format!("as {app}")
                } else {
                    format!("as {app} after SET ROLE {role}")
                };
                return Ok(Outcome::Leaked(format!(
                    "{how} with tenant A set, SELECT returned tenant B's row"
                )));
            }
            Ok(_) => {}
            Err(e) => {
                first_err.get_or_insert_with(|| format!("error as {role}: {}", err_text(&e)));
            }
        }
    }
    Ok(Outcome::Blocked(match (first_err, roles.len()) {
        (Some(e), _) => format!("tenant B's row is invisible or unreadable ({e})"),
        (None, 1) => "tenant B's row is invisible".into(),
        (None, n) => format!(
            "tenant B's row is invisible to the app and the {} role(s) it can become",
            n - 1
        ),
    }))
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

async fn write_other(
    cx: &Ctx<'_>,
    t: &Table,
    a: &Row,
    b: &Row,
    delete: bool,
) -> Result<Outcome, ProbeError> {
    let qt = t.qualified();
    let verb = if delete { "DELETE" } else { "UPDATE" };
    let set = touch_column(cx, t, a);
    let stmt = |filter: &str| match (delete, &set) {
        (true, _) => Some(format!("DELETE FROM {qt}{filter}")),
        (false, Some(c)) => Some(format!("UPDATE {qt} SET {c}{filter}")),
        (false, None) => None,
    };
    let Some(plain) = stmt("") else {
        return Ok(Outcome::NotApplicable("no updatable column".into()));
    };
    // Without WHERE: UPDATE/DELETE USING alone decides (SELECT policies are not consulted).
    cx.savepoint().await?;
    let r = match cx.become_app(Some(0)).await {
        Ok(()) => match cx.tx.execute(&plain, &[]).await {
            Ok(_) => {
                cx.tx
                    .batch_execute("RESET ROLE")
                    .await
                    .map_err(db("RESET ROLE"))?;
                let left = cx
                    .count(&format!("SELECT count(*) FROM {qt} WHERE {}", b.locator()))
                    .await
                    .map_err(db("reading evidence"))?;
                Ok(left)
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    cx.end().await?;
    let first_err = match r {
        Ok(0) => {
            return Ok(Outcome::Leaked(format!(
                "{verb} without WHERE as tenant A {} tenant B's row",
                if delete { "deleted" } else { "rewrote" }
            )))
        }
        Ok(_) => {
            return Ok(Outcome::Blocked(format!(
                "{verb} reached only tenant A's rows"
            )))
        }
        Err(e) => err_text(&e),
    };
    // It failed (e.g. a foreign key of A's own rows): aim at B's row alone.
    let Some(targeted) = stmt(&format!(" WHERE {}", b.locator())) else {
        return Ok(Outcome::Blocked(first_err));
    };
    cx.savepoint().await?;
    let r = match cx.become_app(Some(0)).await {
        Ok(()) => cx.tx.execute(&targeted, &[]).await,
        Err(e) => Err(e),
    };
    cx.end().await?;
    Ok(match r {
        Ok(n) if n > 0 => Outcome::Leaked(format!("{verb} as tenant A reached tenant B's row")),
        Ok(_) => Outcome::Blocked(format!(
            "{verb} found no row of tenant B ({first_err} without WHERE)"
        )),
        Err(e) if code(&e) == Some(SqlState::FOREIGN_KEY_VIOLATION) => Outcome::Leaked(format!(
            "{verb} as tenant A reached tenant B's row; only a foreign key stopped it: {}",
            err_text(&e)
        )),
        Err(e) => Outcome::Blocked(format!("error: {}", err_text(&e))),
    })
}

async fn insert_other(cx: &Ctx<'_>, t: &Table) -> Result<Outcome, ProbeError> {
    cx.savepoint().await?;
    let r = match cx.become_app(Some(0)).await {
        Ok(()) => synth::insert(cx.tx, cx.model, t, &cx.seeds, 1, &HashMap::new(), false).await,
        Err(e) => Err(err_text(&e)),
    };
    cx.end().await?;
    Ok(match r {
        Ok(_) => Outcome::Leaked("as tenant A, inserted a row that belongs to tenant B".into()),
        Err(e) => Outcome::Blocked(e),
    })
}

async fn move_to_other(cx: &Ctx<'_>, t: &Table, a: &Row) -> Result<Outcome, ProbeError> {
    let tt = &cx.model.tenant[&t.oid];
    let Some(col) = tt.column.as_deref() else {
        return Ok(Outcome::NotApplicable(no_column(tt)));
    };
    let qt = t.qualified();
    let qc = ident(col);
    let b = cx.seeds.tenants.sql(1);
    let count_b = format!("SELECT count(*) FROM {qt} WHERE {qc} = {b}");
    cx.savepoint().await?;
    let before = cx.count(&count_b).await.map_err(db("counting rows"))?;
    let r = match cx.become_app(Some(0)).await {
        Ok(()) => match cx
            .tx
            .execute(&format!("UPDATE {qt} SET {qc} = {b}"), &[])
            .await
        {
            Ok(_) => {
                cx.tx
                    .batch_execute("RESET ROLE")
                    .await
                    .map_err(db("RESET ROLE"))?;
                Ok(cx.count(&count_b).await.map_err(db("reading evidence"))?)
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    cx.end().await?;
    let first_err = match r {
        Ok(after) if after > before => {
            return Ok(Outcome::Leaked(format!(
                "UPDATE as tenant A moved {} row(s) into tenant B",
                after - before
            )))
        }
        Ok(_) => return Ok(Outcome::Blocked("no row changed tenant".into())),
        Err(e) => err_text(&e),
    };
    cx.savepoint().await?;
    let r = match cx.become_app(Some(0)).await {
        Ok(()) => {
            cx.tx
                .execute(
                    &format!("UPDATE {qt} SET {qc} = {b} WHERE {}", a.locator()),
                    &[],
                )
                .await
        }
        Err(e) => Err(e),
    };
    cx.end().await?;
    Ok(match r {
        Ok(n) if n > 0 => Outcome::Leaked("UPDATE as tenant A moved its row into tenant B".into()),
        Ok(_) => Outcome::Blocked(format!("no row changed tenant ({first_err})")),
        Err(e) => Outcome::Blocked(format!("error: {}", err_text(&e))),
    })
}

async fn reference_other(cx: &Ctx<'_>, t: &Table) -> Result<Outcome, ProbeError> {
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
        return Ok(Outcome::NotApplicable(
            "no foreign key to another tenant table".into(),
        ));
    }
    let mut leaks = Vec::new();
    let mut blocked = Vec::new();
    for fk in fks {
        let Some(parent_b) = cx
            .seeds
            .rows
            .iter()
            .find(|r| r.via == fk.references && r.tenant == 1)
        else {
            blocked.push(format!("{}: no synthetic parent row", fk.name));
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
        cx.savepoint().await?;
        let r = match cx.become_app(Some(0)).await {
            Ok(()) => synth::insert(cx.tx, cx.model, t, &cx.seeds, 0, &overrides, false).await,
            Err(e) => Err(err_text(&e)),
        };
        cx.end().await?;
        match r {
            Ok(_) => leaks.push(fk.name.clone()),
            Err(e) => blocked.push(format!("{}: {e}", fk.name)),
        }
    }
    Ok(if leaks.is_empty() {
        Outcome::Blocked(blocked.join("; "))
    } else {
        Outcome::Leaked(format!(
            "a tenant-A row was inserted referencing tenant B's parent row through {}",
            leaks.join(", ")
        ))
    })
}

async fn unique_oracle(cx: &Ctx<'_>, t: &Table, a: &Row, b: &Row) -> Result<Outcome, ProbeError> {
    let tt = &cx.model.tenant[&t.oid];
    if tt.kind != TenantKind::Column {
        return Ok(Outcome::NotApplicable(no_column(tt)));
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
        return Ok(Outcome::NotApplicable(
            "no unique key besides the tenant column".into(),
        ));
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
    cx.savepoint().await?;
    // Remove tenant A's own synthetic row first (inside the savepoint), so that a
    // duplicate-key error can only come from another tenant's row.
    cx.tx
        .batch_execute(&format!(
            "SAVEPOINT tg_clear; DELETE FROM {} WHERE {}",
            t.qualified(),
            a.locator()
        ))
        .await
        .ok();
    let cleared = cx
        .tx
        .batch_execute("RELEASE SAVEPOINT tg_clear")
        .await
        .is_ok();
    if !cleared {
        cx.tx
            .batch_execute("ROLLBACK TO SAVEPOINT tg_clear; RELEASE SAVEPOINT tg_clear")
            .await
            .map_err(db("restoring after a failed clear"))?;
    }
    let r = match cx.become_app(Some(0)).await {
        Ok(()) => synth::insert(cx.tx, cx.model, t, &cx.seeds, 0, &overrides, false).await,
        Err(e) => Err(err_text(&e)),
    };
    cx.end().await?;
    Ok(match r {
        Err(e) if e.contains("(23505)") && !cleared => Outcome::NotApplicable(format!(
            "duplicate-key error, but tenant A's own synthetic row could not be removed to rule it out: {e}"
        )),
        Ok(_) => Outcome::Blocked(format!("tenant A may reuse tenant B's ({}): the key is per tenant", cols.join(", "))),
        Err(e) if e.contains("(23505)") => Outcome::Leaked(format!(
            "inserting tenant B's ({}) as tenant A raised a duplicate-key error, revealing that the value exists: {e}",
            cols.join(", ")
        )),
        Err(e) => Outcome::Blocked(e),
    })
}

async fn read_visible(
    cx: &Ctx<'_>,
    t: &Table,
    a: &Row,
    b: &Row,
    tenant: Option<usize>,
) -> Result<Outcome, ProbeError> {
    cx.savepoint().await?;
    let r = match cx.become_app(tenant).await {
        Ok(()) => {
            cx.count(&format!(
                "SELECT count(*) FROM {} WHERE {} OR {}",
                t.qualified(),
                a.locator(),
                b.locator()
            ))
            .await
        }
        Err(e) => Err(e),
    };
    cx.end().await?;
    let what = if tenant.is_some() {
        "set to ''"
    } else {
        "not set"
    };
    Ok(match r {
        Ok(n) if n > 0 => Outcome::Leaked(format!(
            "with the tenant {what}, {n} synthetic row(s) of tenants A and B were visible"
        )),
        Ok(_) => Outcome::Blocked(format!("with the tenant {what}, no rows are visible")),
        Err(e) => Outcome::Blocked(format!("fails closed: {}", err_text(&e))),
    })
}

async fn truncate(cx: &Ctx<'_>, t: &Table) -> Result<Outcome, ProbeError> {
    // Without the privilege there is nothing to try (and no lock to take on a live table).
    let has: bool = cx
        .tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles r WHERE pg_has_role($1::text, r.oid, 'MEMBER')
                     AND has_table_privilege(r.oid, $2::oid, 'TRUNCATE'))",
            &[&cx.model.config.app_role, &t.oid],
        )
        .await
        .map_err(db("checking TRUNCATE"))?
        .get(0);
    if !has {
        return Ok(Outcome::Blocked("the app has no TRUNCATE privilege".into()));
    }
    cx.savepoint().await?;
    let r = match cx.become_app(Some(0)).await {
        Ok(()) => {
            cx.tx
                .batch_execute(&format!("TRUNCATE {}", t.qualified()))
                .await
        }
        Err(e) => Err(e),
    };
    cx.end().await?;
    Ok(match r {
        Ok(()) => Outcome::Leaked("TRUNCATE as the app emptied the table for every tenant".into()),
        Err(e) if code(&e) == Some(SqlState::INSUFFICIENT_PRIVILEGE) => {
            Outcome::Blocked(err_text(&e))
        }
        Err(e) if code(&e) == Some(SqlState::FEATURE_NOT_SUPPORTED) => Outcome::Leaked(format!(
            "the app holds TRUNCATE; only foreign-key references stopped it here: {}",
            err_text(&e)
        )),
        Err(e) => Outcome::NotApplicable(format!("TRUNCATE failed: {}", err_text(&e))),
    })
}

/// The connection-level guarantee: a tenant set (transaction-locally) in one transaction
/// is gone in the next one on the same connection, after COMMIT and after ROLLBACK. The
/// transactions are READ ONLY, so committing one changes nothing.
pub async fn connection_check(
    client: &Client,
    config: &AuditConfig,
) -> Result<Outcome, ProbeError> {
    let tenant = uuid::Uuid::new_v4().to_string();
    let app = ident(&config.app_role);
    let mut seen = Vec::new();
    for end in ["COMMIT", "ROLLBACK"] {
        client
            .batch_execute(&format!("BEGIN READ ONLY; SET LOCAL ROLE {app}"))
            .await
            .map_err(db("starting the connection check"))?;
        let inside: Option<String> = client
            .query_one(
                "SELECT set_config($1, $2, true)",
                &[&config.tenant_setting, &tenant],
            )
            .await
            .map_err(db("setting the tenant"))?
            .get(0);
        client
            .batch_execute(end)
            .await
            .map_err(db("ending the first transaction"))?;
        client
            .batch_execute(&format!("BEGIN READ ONLY; SET LOCAL ROLE {app}"))
            .await
            .map_err(db("starting the second transaction"))?;
        let next: Option<String> = client
            .query_one(
                "SELECT current_setting($1, true)",
                &[&config.tenant_setting],
            )
            .await
            .map_err(db("reading the tenant"))?
            .get(0);
        client
            .batch_execute("ROLLBACK")
            .await
            .map_err(db("ending the second transaction"))?;
        if inside.as_deref() != Some(tenant.as_str()) {
            return Ok(Outcome::NotApplicable(
                "set_config did not take effect".into(),
            ));
        }
        if let Some(v) = next.filter(|v| !v.is_empty()) {
            seen.push(format!(
                "after {end} the next transaction still had {} = {v:?}",
                config.tenant_setting
            ));
        }
    }
    Ok(if seen.is_empty() {
        Outcome::Blocked("the tenant set in one transaction was gone in the next (after COMMIT and after ROLLBACK)".into())
    } else {
        Outcome::Leaked(seen.join("; "))
    })
}
