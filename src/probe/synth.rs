//! Synthesizes rows: fills every required column by its type, takes foreign-key columns
//! from the parent rows already made for the same tenant, supplies explicit values for
//! serial and identity columns (so no sequence moves), and works around CHECK constraints
//! best-effort: on a check violation it tries the next candidate values (literals quoted
//! in the constraint first, then common shapes: e-mail, URL, upper-case code, long
//! secret) for the constraint's columns.

use std::collections::HashMap;

use rand::Rng;
use tokio_postgres::error::SqlState;
use tokio_postgres::Transaction;

use crate::audit::catalog::{Column, Table};
use crate::audit::Model;
use crate::policy::{ident, literal};

/// A row the probe made (or found) and where it lives.
#[derive(Debug, Clone)]
pub struct Row {
    /// The table it was inserted through.
    pub via: u32,
    /// The table it lives in (a partition, for a partitioned table).
    pub tableoid: u32,
    /// Its ctid there.
    pub ctid: String,
    /// Which synthetic tenant (0 = A, 1 = B).
    pub tenant: usize,
    /// Column values as text.
    pub values: HashMap<String, Option<String>>,
    /// Under [`RowIdentity::Key`]: the SQL condition on the row's key columns that selects
    /// it (then `tableoid` is the table's own and `ctid` is empty).
    pub key: Option<String>,
}

impl Row {
    /// SQL condition selecting exactly this row in `via` or the table it lives in.
    pub fn locator(&self) -> String {
        match &self.key {
            Some(k) => k.clone(),
            None => format!(
                "(tableoid = {} AND ctid = {}::tid)",
                self.tableoid,
                literal(&self.ctid)
            ),
        }
    }
}

/// How the probe identifies the rows it made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RowIdentity {
    /// By `(tableoid, ctid)`: needs no key of the table (plain PostgreSQL).
    #[default]
    Physical,
    /// By the values of the primary key (or a unique key of NOT NULL columns), read back
    /// with `RETURNING` of the bare columns as text: on Citus, where `tableoid`/`ctid` are
    /// a shard's and a cast in `RETURNING` is refused on a distributed table (a cast to
    /// text is STABLE for many types).
    Key,
}

/// The columns that identify a row of `t` under [`RowIdentity::Key`]: the primary key, else
/// a unique, non-partial index over NOT NULL columns only.
pub fn key_columns(model: &Model, t: &Table) -> Option<Vec<String>> {
    let usable = |i: &&crate::audit::catalog::Index| {
        i.table == t.oid
            && i.unique
            && !i.partial
            && !i.columns.is_empty()
            && i.columns.iter().all(|c| {
                c.as_deref()
                    .and_then(|c| t.column(c))
                    .is_some_and(|c| c.not_null)
            })
    };
    let mut keys: Vec<&crate::audit::catalog::Index> =
        model.catalog.indexes.iter().filter(usable).collect();
    keys.sort_by_key(|i| (!i.primary, i.columns.len()));
    keys.first()
        .map(|i| i.columns.iter().flatten().cloned().collect())
}

/// The condition selecting the row of `t` whose key columns hold `values` (text).
fn key_condition(
    t: &Table,
    cols: &[String],
    values: &HashMap<String, Option<String>>,
) -> Result<String, SynthError> {
    let mut parts = Vec::new();
    for c in cols {
        let (Some(col), Some(Some(v))) = (t.column(c), values.get(c)) else {
            return Err(format!("the key column {c} came back NULL"));
        };
        parts.push(format!("{} = {}", ident(c), cast(&literal(v), col)));
    }
    Ok(format!("({})", parts.join(" AND ")))
}

/// The synthetic tenants and the rows made for them so far.
#[derive(Debug, Clone)]
pub struct Seeds {
    /// Tenants A and B.
    pub tenants: Tenants,
    /// The users (callers) of tenants A and B: the owners of per-user rows and the members
    /// in a membership table.
    pub users: Tenants,
    /// Rows made (parents before children).
    pub rows: Vec<Row>,
    /// How the rows are identified.
    pub identity: RowIdentity,
}

/// Values of the two synthetic tenants as SQL literals, plus their text.
#[derive(Debug, Clone)]
pub struct Tenants {
    /// Text values of A and B.
    pub text: [String; 2],
    /// The SQL type of the tenant column.
    pub type_name: String,
}

impl Tenants {
    /// Picks two fresh tenant ids of the tenant column's type.
    pub fn new(type_name: &str) -> Tenants {
        let mut rng = rand::thread_rng();
        let t = type_name.to_lowercase();
        let pick = |rng: &mut rand::rngs::ThreadRng| -> String {
            if t == "uuid" {
                uuid::Uuid::new_v4().to_string()
            } else if t.contains("int") || t.contains("numeric") {
                rng.gen_range(1_000_000_000i64..2_000_000_000).to_string()
            } else {
                format!("tgprobe-{:08x}", rng.gen::<u32>())
            }
        };
        Tenants {
            text: [pick(&mut rng), pick(&mut rng)],
            type_name: type_name.to_string(),
        }
    }

    /// SQL expression of tenant `i`.
    pub fn sql(&self, i: usize) -> String {
        format!("{}::{}", literal(&self.text[i]), self.type_name)
    }
}

fn cast(value: &str, c: &Column) -> String {
    format!("CAST({value} AS {})", c.type_name)
}

/// Candidate SQL expressions for a column, most likely first; `None` is NULL. A nullable
/// column under a unique index gets a value first: NULLs never collide, and the
/// unique-oracle attack needs tenant B's row to hold a value to collide with.
fn candidates(model: &Model, t: &Table, c: &Column, attempt: usize) -> Vec<Option<String>> {
    let mut out = value_candidates(model, t, c, attempt);
    let unique = model.catalog.indexes.iter().any(|i| {
        i.table == t.oid
            && i.unique
            && i.columns
                .iter()
                .any(|x| x.as_deref() == Some(c.name.as_str()))
    });
    if unique {
        if let Some(pos) = out.iter().position(Option::is_none) {
            let null = out.remove(pos);
            out.push(null);
        }
    }
    out
}

fn value_candidates(model: &Model, t: &Table, c: &Column, attempt: usize) -> Vec<Option<String>> {
    let mut rng = rand::thread_rng();
    let tag = format!("{:08x}{attempt}", rng.gen::<u32>());
    let mut out: Vec<Option<String>> = Vec::new();
    if !c.not_null {
        out.push(None);
    }
    // Literals quoted in CHECK constraints on this column (e.g. `role IN ('owner', …)`).
    if let Ok(re) = regex::Regex::new(r"'((?:[^']|'')*)'") {
        for chk in model
            .catalog
            .checks
            .iter()
            .filter(|k| k.table == t.oid && k.columns.contains(&c.name))
        {
            for cap in re.captures_iter(&chk.definition) {
                let v = cap[1].replace("''", "'");
                if !v.is_empty() {
                    out.push(Some(cast(&literal(&v), c)));
                }
            }
        }
    }
    let ty = c.type_name.to_lowercase();
    let base = ty.split('(').next().unwrap_or(&ty).trim().to_string();
    let lit = |s: &str| Some(cast(&literal(s), c));
    if c.type_category == "A" {
        let elem = base.trim_end_matches("[]");
        let v = if elem.contains("int") || elem == "numeric" {
            "{1}".to_string()
        } else if elem == "uuid" {
            format!("{{{}}}", uuid::Uuid::new_v4())
        } else {
            format!("{{tgprobe{tag}}}")
        };
        out.push(lit(&v));
        out.push(lit("{}"));
        return out;
    }
    if c.type_category == "E" {
        out.push(Some(format!("enum_first(NULL::{})", c.type_name)));
        out.push(Some(format!("enum_last(NULL::{})", c.type_name)));
        return out;
    }
    match base.as_str() {
        "uuid" => out.push(lit(&uuid::Uuid::new_v4().to_string())),
        "text" | "character varying" | "character" | "citext" | "name" | "varchar" | "bpchar" => {
            let max = ty
                .split('(')
                .nth(1)
                .and_then(|x| x.trim_end_matches(')').parse::<usize>().ok())
                .unwrap_or(usize::MAX);
            for v in [
                format!("tgprobe{tag}"),
                format!("tgprobe{tag}@example.com"),
                format!("https://example.com/tgprobe{tag}"),
                "TGP".to_string(),
                format!("tgprobe-{tag}-0123456789abcdef"),
                "t".to_string(),
            ] {
                let v: String = v.chars().take(max).collect();
                out.push(lit(&v));
            }
        }
        "smallint" => {
            out.push(lit(&rng.gen_range(1000..30000).to_string()));
            out.push(lit("0"));
            out.push(lit("1"));
        }
        "integer" | "bigint" | "numeric" | "real" | "double precision" | "money" => {
            out.push(lit(&rng.gen_range(100_000..1_000_000_000).to_string()));
            out.push(lit("0"));
            out.push(lit("1"));
        }
        "boolean" => {
            out.push(lit("false"));
            out.push(lit("true"));
        }
        "date" => out.push(Some(cast("current_date", c))),
        "timestamp with time zone" | "timestamp without time zone" => {
            out.push(Some(cast("now()", c)))
        }
        "time without time zone" | "time with time zone" => out.push(lit("12:00")),
        "interval" => out.push(lit("1 day")),
        "json" | "jsonb" => {
            out.push(lit("{}"));
            out.push(lit("[]"));
        }
        "bytea" => {
            for n in [32usize, 16, 64] {
                let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                out.push(lit(&format!("\\x{}", hex::encode(bytes))));
            }
        }
        "inet" | "cidr" => out.push(lit("10.0.0.1")),
        _ => {}
    }
    out
}

/// The constraint an error names. A Citus worker's error carries no constraint field, and
/// the name in its message has the shard id appended (`invoices_currency_check_102050`).
fn constraint_name(dbe: &tokio_postgres::error::DbError) -> String {
    if let Some(c) = dbe.constraint() {
        return c.to_string();
    }
    let quoted = dbe.message().rsplit('"').nth(1).unwrap_or_default();
    crate::probe::plans::rules::strip_shard_suffix(quoted).to_string()
}

/// What an INSERT answered.
enum Made {
    /// Nothing read back (no RETURNING).
    Nothing,
    /// `tableoid, ctid::text, ARRAY[<columns>::text]`.
    Typed(tokio_postgres::Row),
    /// The bare columns in the simple protocol's text form.
    Text(Vec<tokio_postgres::SimpleQueryMessage>),
}

/// Why a row could not be made.
pub type SynthError = String;

/// Inserts one row into `t` for tenant `tenant` (0 or 1), with `overrides` (column → SQL
/// expression, `None` = NULL) taking precedence. Runs in its own savepoint. Without
/// `returning` (as the app: RETURNING would also apply the SELECT policies to the new
/// row), the returned row has no ctid or values. Errors other
/// than the ones it works around are returned as text (with the SQLSTATE).
pub async fn insert(
    tx: &Transaction<'_>,
    model: &Model,
    t: &Table,
    seeds: &Seeds,
    tenant: usize,
    overrides: &HashMap<String, Option<String>>,
    returning: bool,
) -> Result<Row, SynthError> {
    let (tenants, rows) = (&seeds.tenants, &seeds.rows);
    let tt = model
        .tenant
        .get(&t.oid)
        .ok_or_else(|| "not a tenant table".to_string())?;
    // Fixed values: tenant column, overrides, foreign keys.
    let mut fixed: HashMap<String, Option<String>> = HashMap::new();
    let mut options: HashMap<String, Vec<Option<String>>> = HashMap::new();
    let key_of = |per_user: bool| if per_user { &seeds.users } else { tenants };
    if let Some(col) = &tt.column {
        fixed.insert(col.clone(), Some(key_of(tt.per_user).sql(tenant)));
    }
    // A per-user table that also has the tenant column (a membership table): the row
    // belongs to tenant `tenant` too.
    let tcol = &model.config.tenant_column;
    if tt.per_user && t.column(tcol).is_some() && !fixed.contains_key(tcol) {
        fixed.insert(tcol.clone(), Some(tenants.sql(tenant)));
    }
    // The membership table of a membership model: the member is this tenant's user.
    for m in model.models() {
        if let crate::isolation::TenancyModel::Membership {
            table, user_column, ..
        } = m
        {
            if (*table == t.display() || *table == t.name) && t.column(user_column).is_some() {
                fixed.insert(user_column.clone(), Some(seeds.users.sql(tenant)));
            }
        }
    }
    for fk in model
        .catalog
        .foreign_keys
        .iter()
        .filter(|f| f.table == t.oid)
    {
        let parent_values: Option<HashMap<String, Option<String>>> = if fk.references == t.oid {
            None
        } else if let Some(ptt) = model.tenant.get(&fk.references) {
            let parent = rows
                .iter()
                .find(|r| r.via == fk.references && r.tenant == tenant)
                .map(|r| r.values.clone());
            match parent {
                Some(v) => Some(v),
                None if ptt.kind == crate::audit::model::TenantKind::Registry => {
                    let key = ptt.column.clone().unwrap_or_default();
                    Some([(key, Some(key_of(ptt.per_user).text[tenant].clone()))].into())
                }
                None => None,
            }
        } else if let Some(seeded) = rows.iter().find(|r| r.via == t.oid) {
            // Reuse what the privileged seeding found (the app may not read the lookup).
            Some(
                fk.columns
                    .iter()
                    .zip(&fk.ref_columns)
                    .map(|(c, rc)| (rc.clone(), seeded.values.get(c).cloned().flatten()))
                    .collect(),
            )
        } else {
            // A lookup table: borrow an existing row.
            let p = model.table(fk.references);
            match p {
                Some(p) => {
                    let cols: Vec<String> = fk
                        .ref_columns
                        .iter()
                        .map(|c| format!("{}::text", ident(c)))
                        .collect();
                    let sql = format!("SELECT {} FROM {} LIMIT 1", cols.join(", "), p.qualified());
                    tx.query_opt(&sql, &[]).await.ok().flatten().map(|r| {
                        fk.ref_columns
                            .iter()
                            .enumerate()
                            .map(|(i, c)| (c.clone(), r.get::<_, Option<String>>(i)))
                            .collect()
                    })
                }
                None => None,
            }
        };
        for (c, rc) in fk.columns.iter().zip(&fk.ref_columns) {
            if fixed.contains_key(c) {
                continue;
            }
            let Some(col) = t.column(c) else { continue };
            let v = parent_values
                .as_ref()
                .and_then(|p| p.get(rc).cloned().flatten())
                .map(|v| cast(&literal(&v), col));
            match v {
                Some(v) if col.not_null => {
                    fixed.insert(c.clone(), Some(v));
                }
                Some(v) => {
                    options.insert(c.clone(), vec![None, Some(v)]);
                }
                None if !col.not_null => {
                    fixed.insert(c.clone(), None);
                }
                None => {
                    return Err(format!(
                        "no parent row for foreign key {:?} (column {c})",
                        fk.name
                    ))
                }
            }
        }
    }
    for (k, v) in overrides {
        fixed.insert(k.clone(), v.clone());
        options.remove(k);
    }
    let mut overriding = false;
    let mut attempt_state: HashMap<String, usize> = HashMap::new();
    let mut rng_cols: Vec<&Column> = Vec::new();
    for c in &t.columns {
        if !c.generated.is_empty() || fixed.contains_key(&c.name) || options.contains_key(&c.name) {
            continue;
        }
        let serial =
            !c.identity.is_empty() || c.default.as_deref().is_some_and(|d| d.contains("nextval("));
        if serial {
            // Explicit value: a rolled-back nextval would still move the sequence.
            overriding |= c.identity == "a";
            let n: i64 = rand::thread_rng().gen_range(1_000_000_000..2_000_000_000);
            fixed.insert(c.name.clone(), Some(cast(&n.to_string(), c)));
        } else if c.default.is_some() {
            continue;
        } else {
            rng_cols.push(c);
        }
    }
    let key_cols = match seeds.identity {
        RowIdentity::Physical => None,
        RowIdentity::Key if !returning => None,
        RowIdentity::Key => Some(key_columns(model, t).ok_or_else(|| {
            "no primary key or unique key of NOT NULL columns identifies its rows (on Citus, tableoid and ctid are a shard's)".to_string()
        })?),
    };
    let mut last = String::new();
    for attempt in 0..48 {
        let mut cols: Vec<String> = Vec::new();
        let mut vals: Vec<String> = Vec::new();
        for (k, v) in &fixed {
            cols.push(ident(k));
            vals.push(v.clone().unwrap_or_else(|| "NULL".into()));
        }
        for (k, opts) in &options {
            let i = attempt_state.get(k).copied().unwrap_or(0);
            cols.push(ident(k));
            vals.push(
                opts.get(i)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| "NULL".into()),
            );
        }
        for c in &rng_cols {
            let cands = candidates(model, t, c, attempt);
            if cands.is_empty() {
                return Err(format!(
                    "cannot synthesize a value of type {} for column {}",
                    c.type_name, c.name
                ));
            }
            let i = attempt_state.get(&c.name).copied().unwrap_or(0);
            cols.push(ident(&c.name));
            vals.push(
                cands
                    .get(i % cands.len())
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| "NULL".into()),
            );
        }
        let ret_cols: Vec<String> = t
            .columns
            .iter()
            .map(|c| format!("{}::text", ident(&c.name)))
            .collect();
        // The INSERT without RETURNING (a literal value may hold any text, so it is built
        // apart rather than cut out of the full statement).
        let plain = if cols.is_empty() {
            format!("INSERT INTO {} DEFAULT VALUES", t.qualified())
        } else {
            format!(
                "INSERT INTO {} ({}){} VALUES ({})",
                t.qualified(),
                cols.join(", "),
                if overriding {
                    " OVERRIDING SYSTEM VALUE"
                } else {
                    ""
                },
                vals.join(", ")
            )
        };
        let sql = format!(
            "{plain} RETURNING tableoid, ctid::text, ARRAY[{}]::text[]",
            ret_cols.join(", ")
        );
        tx.batch_execute("SAVEPOINT tg_synth")
            .await
            .map_err(|e| crate::error_chain(&e))?;
        let result = match (&key_cols, returning) {
            (Some(_), _) => {
                // The bare columns, through the simple protocol: the server's own text
                // output, no cast in RETURNING.
                let bare: Vec<String> = t.columns.iter().map(|c| ident(&c.name)).collect();
                tx.simple_query(&format!("{plain} RETURNING {}", bare.join(", ")))
                    .await
                    .map(Made::Text)
            }
            (None, true) => tx.query_one(&sql, &[]).await.map(Made::Typed),
            (None, false) => tx.execute(&plain, &[]).await.map(|_| Made::Nothing),
        };
        match result {
            Ok(made) => {
                tx.batch_execute("RELEASE SAVEPOINT tg_synth")
                    .await
                    .map_err(|e| crate::error_chain(&e))?;
                let mut row = Row {
                    via: t.oid,
                    tableoid: t.oid,
                    ctid: String::new(),
                    tenant,
                    values: HashMap::new(),
                    key: None,
                };
                match made {
                    Made::Nothing => {}
                    Made::Typed(r) => {
                        let values: Vec<Option<String>> = r.get(2);
                        row.tableoid = r.get(0);
                        row.ctid = r.get(1);
                        row.values = t
                            .columns
                            .iter()
                            .map(|c| c.name.clone())
                            .zip(values)
                            .collect();
                    }
                    Made::Text(msgs) => {
                        let Some(r) = msgs.iter().find_map(|m| match m {
                            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                            _ => None,
                        }) else {
                            return Err("the INSERT returned no row".into());
                        };
                        row.values = t
                            .columns
                            .iter()
                            .enumerate()
                            .map(|(i, c)| (c.name.clone(), r.get(i).map(str::to_string)))
                            .collect();
                        if let Some(cols) = &key_cols {
                            row.key = Some(key_condition(t, cols, &row.values)?);
                        }
                    }
                }
                return Ok(row);
            }
            Err(e) => {
                // One statement per message (Citus forwards a multi-statement string whole).
                for end in [
                    "ROLLBACK TO SAVEPOINT tg_synth",
                    "RELEASE SAVEPOINT tg_synth",
                ] {
                    tx.batch_execute(end)
                        .await
                        .map_err(|e| crate::error_chain(&e))?;
                }
                let Some(dbe) = e.as_db_error() else {
                    return Err(crate::error_chain(&e));
                };
                let code = dbe.code();
                if *code == SqlState::CHECK_VIOLATION {
                    // Move to the next combination of the constraint's columns.
                    let cons = constraint_name(dbe);
                    let cons = cons.as_str();
                    let involved: Vec<String> = model
                        .catalog
                        .checks
                        .iter()
                        .find(|k| k.table == t.oid && k.name == cons)
                        .map(|k| k.columns.clone())
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|c| {
                            options.contains_key(c) || rng_cols.iter().any(|x| &x.name == c)
                        })
                        .collect();
                    if involved.is_empty() {
                        return Err(format!(
                            "CHECK constraint {cons:?} rejects the synthetic row"
                        ));
                    }
                    // Odometer over the involved columns.
                    let mut carried = true;
                    for c in &involved {
                        if !carried {
                            break;
                        }
                        let len = options.get(c).map(|o| o.len()).unwrap_or_else(|| {
                            rng_cols
                                .iter()
                                .find(|x| &x.name == c)
                                .map(|x| candidates(model, t, x, 0).len())
                                .unwrap_or(1)
                        });
                        let e = attempt_state.entry(c.clone()).or_insert(0);
                        *e += 1;
                        carried = *e >= len;
                        if carried {
                            *e = 0;
                        }
                    }
                    if carried {
                        return Err(format!(
                            "no candidate values satisfy CHECK constraint {cons:?}"
                        ));
                    }
                } else if *code == SqlState::UNIQUE_VIOLATION && overrides.is_empty() {
                    // Fresh random values next attempt; a literal candidate (one quoted in
                    // a CHECK) collides every time, so move the key's columns on too.
                    last = format!("{} ({})", dbe.message(), code.code());
                    let cons = constraint_name(dbe);
                    let cons = cons.as_str();
                    let key: Vec<String> = model
                        .catalog
                        .indexes
                        .iter()
                        .find(|i| {
                            i.table == t.oid
                                && (i.name == cons || i.constraint.as_deref() == Some(cons))
                        })
                        .map(|i| i.columns.iter().flatten().cloned().collect())
                        .unwrap_or_default();
                    for c in key
                        .iter()
                        .filter(|c| rng_cols.iter().any(|x| &x.name == *c))
                    {
                        *attempt_state.entry(c.clone()).or_insert(0) += 1;
                    }
                    continue;
                } else {
                    return Err(format!("{} ({})", dbe.message(), code.code()));
                }
            }
        }
    }
    Err(format!("gave up after 48 attempts (last: {last})"))
}
