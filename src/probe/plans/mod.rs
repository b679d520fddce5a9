//! `tenantguard probe plans`: the real workload's query plans under tenant context,
//! read-only.
//!
//! Statements come from `pg_stat_statements` (the app role's top N by calls or time) or a
//! file. Each is planned as the app role with a real tenant's context (the largest tenant
//! by rows and a small one), inside a transaction that is always rolled back, under a
//! statement timeout; normalized statements with `$n` are planned as generic plans
//! (`EXPLAIN (GENERIC_PLAN)` on 16+, `PREPARE` + `EXPLAIN EXECUTE` with
//! `plan_cache_mode = force_generic_plan` before). Nothing is executed unless `analyze` is
//! asked for. The [`rules`] judge each plan; a statement that cannot be planned, or a
//! workload that cannot be read, is inconclusive, never a pass.

pub mod report;
pub mod rules;

use std::collections::BTreeMap;

use serde::Serialize;
use tokio_postgres::Client;

pub use report::PlansReport;
pub use rules::PlanFinding;

/// Where the statements come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `pg_stat_statements`, the top `top` statements of the app role.
    Stats {
        /// How many.
        top: usize,
        /// Order: by calls, or by total execution time.
        by_time: bool,
    },
    /// Statements given directly (from a file).
    Given(Vec<String>),
}

/// What to plan and how.
#[derive(Debug, Clone)]
pub struct PlansConfig {
    /// The role the application connects as (plans are made as it, under RLS).
    pub app_role: String,
    /// The custom setting that carries the tenant.
    pub tenant_setting: String,
    /// The tenant column.
    pub tenant_column: String,
    /// Tenants to plan for; empty: the largest by rows and the smallest.
    pub tenants: Vec<String>,
    /// Where statements come from.
    pub source: Source,
    /// A sequential scan on a tenant table with at least this many rows is a finding.
    pub min_rows: f64,
    /// Statement timeout per EXPLAIN, milliseconds.
    pub statement_timeout_ms: u64,
    /// Run EXPLAIN ANALYZE (still rolled back). Off by default.
    pub analyze: bool,
}

impl Default for PlansConfig {
    fn default() -> Self {
        PlansConfig {
            app_role: "tenantguard_app".into(),
            tenant_setting: "app.tenant_id".into(),
            tenant_column: "tenant_id".into(),
            tenants: Vec::new(),
            source: Source::Stats {
                top: 50,
                by_time: false,
            },
            min_rows: 10_000.0,
            statement_timeout_ms: 5_000,
            analyze: false,
        }
    }
}

/// Errors that stop a run before anything is judged (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum PlansError {
    /// A statement of the probe itself failed.
    #[error("database error while {context}: {message}")]
    Db {
        /// What was being done.
        context: String,
        /// The error.
        message: String,
    },
    /// The configuration does not fit the database.
    #[error("{0}")]
    Config(String),
}

fn db(context: &str) -> impl FnOnce(tokio_postgres::Error) -> PlansError + '_ {
    move |e| PlansError::Db {
        context: context.to_string(),
        message: crate::error_chain(&e),
    }
}

/// A tenant table as the catalog shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TenantTable {
    /// `schema.name`.
    pub name: String,
    /// `pg_class.reltuples` (estimated rows).
    pub rows: f64,
    /// Its indexes: (name, definition).
    pub indexes: Vec<(String, String)>,
}

/// One statement planned for one tenant.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    /// The tenant whose context was set.
    pub tenant: String,
    /// Why it could not be planned, if it could not.
    pub inconclusive: Option<String>,
    /// The plan as text (one line per node), for evidence.
    pub plan: Vec<String>,
}

/// One statement and its plans.
#[derive(Debug, Clone, Serialize)]
pub struct Statement {
    /// The SQL.
    pub query: String,
    /// Calls and total time from pg_stat_statements, if from there.
    pub calls: Option<i64>,
    /// Total execution time, ms.
    pub total_ms: Option<f64>,
    /// One per tenant.
    pub plans: Vec<Planned>,
}

/// Runs the probe.
pub async fn probe_plans(
    client: &mut Client,
    config: &PlansConfig,
) -> Result<PlansReport, PlansError> {
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(db("reading the server version"))?
        .get(0);
    let role_ok: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)
                    AND pg_has_role(current_user, (SELECT oid FROM pg_roles WHERE rolname = $1), 'MEMBER')",
            &[&config.app_role],
        )
        .await
        .map_err(db("checking the app role"))?
        .get(0);
    if !role_ok {
        return Err(PlansError::Config(format!(
            "the connecting user cannot SET ROLE {:?} (it must exist, and the user must be a superuser or a member of it)",
            config.app_role
        )));
    }
    let citus = client
        .query_opt("SELECT 1 FROM pg_extension WHERE extname = 'citus'", &[])
        .await
        .map_err(db("looking for the citus extension"))?
        .is_some();
    let tables = tenant_tables(client, &config.tenant_column).await?;
    let mut notes = Vec::new();
    let mut inconclusive = Vec::new();
    let (statements, source_note) = load_statements(client, config).await;
    if let Some(n) = source_note {
        inconclusive.push(n);
    }
    let tenants = if config.tenants.is_empty() {
        pick_tenants(client, config, &tables).await?
    } else {
        config.tenants.clone()
    };
    if tenants.is_empty() {
        inconclusive.push(format!(
            "no tenant found: no table has a {:?} column with rows (give --tenant)",
            config.tenant_column
        ));
    }
    let mut out = Vec::new();
    let mut findings = Vec::new();
    for (query, calls, total_ms) in statements {
        let mut plans = Vec::new();
        for tenant in &tenants {
            match plan_one(client, config, version, citus, &query, Some(tenant)).await {
                Ok(plan) => {
                    let bypass = if rules::wants_comparison(&plan, &tables) {
                        plan_one(client, config, version, citus, &query, None)
                            .await
                            .ok()
                    } else {
                        None
                    };
                    let found = rules::judge(&plan, bypass.as_ref(), &tables, config, client).await;
                    if citus && !fan_out_decidable(&query, &config.tenant_column, &plan) {
                        inconclusive.push(format!(
                            "fan-out of statement {} (tenant {tenant}) not decided: its parameters other than {} were planned as NULL, which Citus may prune on (give the statement with literals in --queries)",
                            rules::short_hash(&query),
                            config.tenant_column
                        ));
                    }
                    for mut f in found {
                        f.statement = query.clone();
                        f.tenant = tenant.clone();
                        f.fingerprint =
                            format!("{}:{}:{}", f.rule, f.relation, rules::short_hash(&query));
                        findings.push(f);
                    }
                    plans.push(Planned {
                        tenant: tenant.clone(),
                        inconclusive: None,
                        plan: rules::plan_lines(&plan),
                    });
                }
                Err(why) => plans.push(Planned {
                    tenant: tenant.clone(),
                    inconclusive: Some(why),
                    plan: Vec::new(),
                }),
            }
        }
        out.push(Statement {
            query,
            calls,
            total_ms,
            plans,
        });
    }
    // The same finding for two tenants is one finding (the tenants are listed in it).
    let mut merged: BTreeMap<String, PlanFinding> = BTreeMap::new();
    for f in findings {
        merged
            .entry(f.fingerprint.clone())
            .and_modify(|m| {
                if !m.tenant.split(", ").any(|t| t == f.tenant) {
                    m.tenant = format!("{}, {}", m.tenant, f.tenant);
                }
            })
            .or_insert(f);
    }
    if out.is_empty() && inconclusive.is_empty() {
        inconclusive.push("no statement to plan".into());
    }
    if citus {
        notes.push("Citus: context set with SET LOCAL (citus.propagate_set_commands = local), statements with parameters planned through PREPARE with the tenant bound to `<tenant column> = $n`; shard plans read from the distributed plan".into());
    }
    if version < 160000 {
        notes.push("PostgreSQL before 16: generic plans via PREPARE and EXPLAIN EXECUTE with plan_cache_mode = force_generic_plan".into());
    }
    Ok(PlansReport {
        config: config.clone(),
        server_version: version,
        tenants,
        tables,
        statements: out,
        findings: merged.into_values().collect(),
        inconclusive,
        notes,
    })
}

async fn tenant_tables(client: &Client, column: &str) -> Result<Vec<TenantTable>, PlansError> {
    let rows = client
        .query(
            "SELECT format('%s.%s', n.nspname, c.relname), c.reltuples::float8,
                    coalesce((SELECT array_agg(i.relname::text ORDER BY i.relname) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = c.oid), '{}'),
                    coalesce((SELECT array_agg(pg_get_indexdef(x.indexrelid) ORDER BY i.relname) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = c.oid), '{}')
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p')
                AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
                AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = $1 AND NOT a.attisdropped)
              ORDER BY 1",
            &[&column],
        )
        .await
        .map_err(db("reading tenant tables"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let names: Vec<String> = r.get(2);
            let defs: Vec<String> = r.get(3);
            TenantTable {
                name: r.get(0),
                rows: r.get::<_, f64>(1).max(0.0),
                indexes: names.into_iter().zip(defs).collect(),
            }
        })
        .collect())
}

/// The largest tenant by rows and the smallest, from the largest tenant table.
async fn pick_tenants(
    client: &Client,
    config: &PlansConfig,
    tables: &[TenantTable],
) -> Result<Vec<String>, PlansError> {
    let Some(t) = tables.iter().max_by(|a, b| a.rows.total_cmp(&b.rows)) else {
        return Ok(Vec::new());
    };
    let (schema, name) = t.name.split_once('.').unwrap_or(("public", &t.name));
    let col = crate::policy::ident(&config.tenant_column);
    let sql = format!(
        "SELECT {col}::text, count(*) FROM {}.{} WHERE {col} IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1",
        crate::policy::ident(schema),
        crate::policy::ident(name)
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(db("finding the largest and a small tenant"))?;
    let mut out: Vec<String> = Vec::new();
    if let Some(first) = rows.first() {
        out.push(first.get(0));
    }
    if let Some(last) = rows.last() {
        let s: String = last.get(0);
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// Statements to plan: (query, calls, total ms), and why the source is inconclusive.
async fn load_statements(
    client: &Client,
    config: &PlansConfig,
) -> (Vec<(String, Option<i64>, Option<f64>)>, Option<String>) {
    let (top, by_time) = match &config.source {
        Source::Given(list) => {
            return (list.iter().map(|q| (q.clone(), None, None)).collect(), None)
        }
        Source::Stats { top, by_time } => (*top, *by_time),
    };
    let installed = client
        .query_opt(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'",
            &[],
        )
        .await;
    let schema: String = match installed {
        Ok(Some(r)) => r.get(0),
        Ok(None) => {
            return (
                Vec::new(),
                Some("pg_stat_statements is not installed in this database (shared_preload_libraries = 'pg_stat_statements', then CREATE EXTENSION pg_stat_statements), or give --queries FILE".into()),
            )
        }
        Err(e) => return (Vec::new(), Some(format!("cannot read pg_extension: {}", crate::error_chain(&e)))),
    };
    let order = if by_time { "total_exec_time" } else { "calls" };
    let sql = format!(
        "SELECT query, calls, total_exec_time FROM {}.pg_stat_statements s
          WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND s.userid = (SELECT oid FROM pg_roles WHERE rolname = $1)
          ORDER BY {order} DESC LIMIT $2",
        crate::policy::ident(&schema)
    );
    let rows = match client.query(&sql, &[&config.app_role, &(top as i64)]).await {
        Ok(r) => r,
        Err(e) => {
            return (
                Vec::new(),
                Some(format!("pg_stat_statements cannot be read: {} (it must be in shared_preload_libraries, and reading other roles' statements needs pg_read_all_stats)", crate::error_chain(&e))),
            )
        }
    };
    let mut out = Vec::new();
    let mut hidden = 0;
    for r in rows {
        let q: String = r.get(0);
        if q.contains("<insufficient privilege>") {
            hidden += 1;
            continue;
        }
        if !plannable(&q) {
            continue;
        }
        out.push((q, Some(r.get::<_, i64>(1)), Some(r.get::<_, f64>(2))));
    }
    let note = if hidden > 0 {
        Some(format!("{hidden} statement(s) of pg_stat_statements are hidden (<insufficient privilege>): grant pg_read_all_stats to the connecting user"))
    } else if out.is_empty() {
        Some(format!("pg_stat_statements has no plannable statement of role {:?} in this database (has the workload run? pg_stat_statements_reset()?)", config.app_role))
    } else {
        None
    };
    (out, note)
}

/// DML and queries; not utility statements, transaction control, or our own EXPLAINs.
fn plannable(q: &str) -> bool {
    let first = q
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    matches!(
        first.as_str(),
        "select" | "with" | "insert" | "update" | "delete" | "table" | "values"
    ) && !q.contains("pg_stat_statements")
}

/// The highest `$n` in a statement (0: none), outside quotes.
pub fn param_count(q: &str) -> usize {
    let re = regex::Regex::new(r"\$([0-9]+)").expect("static regex");
    let stripped = strip_literals(q);
    re.captures_iter(&stripped)
        .filter_map(|c| c[1].parse::<usize>().ok())
        .max()
        .unwrap_or(0)
}

fn strip_literals(q: &str) -> String {
    let mut out = String::with_capacity(q.len());
    let mut in_str = false;
    for c in q.chars() {
        if c == '\'' {
            in_str = !in_str;
            continue;
        }
        if !in_str {
            out.push(c);
        }
    }
    out
}

/// Splits a file of statements on `;` outside quotes, dollar quotes and comments.
pub fn split_statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut quote: Option<char> = None;
    let mut dollar: Option<String> = None;
    while i < chars.len() {
        let c = chars[i];
        if let Some(tag) = &dollar {
            cur.push(c);
            if c == '$' && cur.ends_with(tag.as_str()) && cur.len() >= tag.len() * 2 {
                dollar = None;
            }
            i += 1;
            continue;
        }
        if let Some(q) = quote {
            cur.push(c);
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                cur.push(c);
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '$' => {
                let rest: String = chars[i..].iter().collect();
                if let Some(end) = rest[1..].find('$') {
                    let tag = &rest[..end + 2];
                    if tag[1..tag.len() - 1]
                        .chars()
                        .all(|x| x.is_alphanumeric() || x == '_')
                        && !tag[1..].starts_with(|x: char| x.is_ascii_digit())
                    {
                        dollar = Some(tag.to_string());
                        cur.push_str(tag);
                        i += tag.chars().count();
                        continue;
                    }
                }
                cur.push(c);
            }
            ';' => {
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_string());
                }
                cur.clear();
            }
            _ => cur.push(c),
        }
        i += 1;
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Plans one statement: as the app role with `tenant`'s context, or (None) as the
/// connecting user without RLS, for comparison. Always rolled back.
async fn plan_one(
    client: &mut Client,
    config: &PlansConfig,
    version: i32,
    citus: bool,
    query: &str,
    tenant: Option<&String>,
) -> Result<serde_json::Value, String> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| crate::error_chain(&e))?;
    let result = async {
        tx.batch_execute(&format!(
            "SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = '2s'; SET LOCAL plan_cache_mode = force_generic_plan",
            config.statement_timeout_ms
        ))
        .await?;
        if let Some(t) = tenant {
            tx.batch_execute(&format!("SET LOCAL ROLE {}", crate::policy::ident(&config.app_role)))
                .await?;
            if citus {
                // Citus passes only SET LOCAL on to its workers, and only with
                // propagate_set_commands on; one statement per message.
                for s in crate::isolation::sql::citus_context(&config.tenant_setting, t) {
                    tx.batch_execute(&s).await?;
                }
            } else {
                tx.execute("SELECT set_config($1, $2, true)", &[&config.tenant_setting, t])
                    .await?;
            }
        }
        let n = param_count(query);
        let options = if config.analyze && n == 0 {
            "ANALYZE, FORMAT JSON, VERBOSE"
        } else {
            "FORMAT JSON, VERBOSE"
        };
        let first = |rows: Vec<tokio_postgres::Row>| -> Option<serde_json::Value> {
            rows.first().map(|r| r.get(0))
        };
        let plan = if n == 0 {
            first(tx.query(&format!("EXPLAIN ({options}) {query}"), &[]).await?)
        } else if version >= 160000 && !citus {
            // The simple protocol: through the extended one, the statement's `$n` would be
            // taken as parameters of the EXPLAIN itself ("expected 2 parameters but got 0").
            let messages = tx
                .simple_query(&format!("EXPLAIN ({options}, GENERIC_PLAN) {query}"))
                .await?;
            messages.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    r.get(0).and_then(|t| serde_json::from_str(t).ok())
                }
                _ => None,
            })
        } else {
            tx.batch_execute(&format!("PREPARE tenantguard_plan AS {query}")).await?;
            // On Citus the tenant's parameter decides the shard: bind it (the rest stay NULL).
            let tenant_params = if citus {
                tenant_params(query, &config.tenant_column)
            } else {
                Vec::new()
            };
            let nulls = (1..=n)
                .map(|i| match tenant {
                    Some(t) if tenant_params.contains(&i) => crate::isolation::literal(t),
                    _ => "NULL".to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            let r = tx
                .query(&format!("EXPLAIN ({options}) EXECUTE tenantguard_plan({nulls})"), &[])
                .await;
            // Prepared statements outlive a rollback: always deallocate.
            let d = tx.batch_execute("DEALLOCATE tenantguard_plan").await;
            let r = r?;
            d?;
            first(r)
        };
        Ok::<_, tokio_postgres::Error>(plan)
    }
    .await;
    let rolled = tx.rollback().await;
    let plan = match result {
        Ok(r) => r,
        Err(e) => {
            // A failed PREPARE/EXPLAIN leaves the prepared statement (if any) behind.
            let _ = client.batch_execute("DEALLOCATE ALL").await;
            return Err(e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_else(|| crate::error_chain(&e)));
        }
    };
    rolled.map_err(|e| crate::error_chain(&e))?;
    let v = plan.ok_or_else(|| "EXPLAIN returned nothing".to_string())?;
    v.get(0)
        .and_then(|p| p.get("Plan"))
        .cloned()
        .ok_or_else(|| "EXPLAIN returned no plan".to_string())
}

/// The `$n` compared with the tenant column (`tenant_id = $1`, `$1 = t.tenant_id`).
fn tenant_params(query: &str, column: &str) -> Vec<usize> {
    let col = regex::escape(column);
    let re = regex::Regex::new(&format!(
        r#"(?i)(?:\b{col}"?\s*=\s*\$([0-9]+))|(?:\$([0-9]+)\s*=\s*(?:[a-z_][a-z0-9_]*\.)?"?{col}\b)"#
    ));
    let Ok(re) = re else { return Vec::new() };
    let stripped = strip_literals(query);
    re.captures_iter(&stripped)
        .filter_map(|c| c.get(1).or_else(|| c.get(2)))
        .filter_map(|m| m.as_str().parse().ok())
        .collect()
}

/// Whether a Citus plan's task count says something: always when the statement fans out
/// (that is evidence whatever the parameters); for one task or none, when every parameter
/// was bound to a real value, or when the tenant's was and no `OR` could make the NULLs
/// of the others decide the routing (Citus prunes on a NULL as on any constant).
fn fan_out_decidable(query: &str, column: &str, plan: &serde_json::Value) -> bool {
    if rules::task_count(plan).is_some_and(|t| t > 1) {
        return true;
    }
    let n = param_count(query);
    let bound = tenant_params(query, column);
    let has_or = strip_literals(query)
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|w| w.eq_ignore_ascii_case("or"));
    (1..=n).all(|i| bound.contains(&i)) || (!bound.is_empty() && !has_or)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_counts() {
        let s = split_statements("SELECT 1; -- a; comment\nSELECT ';' AS x;\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;");
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(
            param_count("SELECT * FROM t WHERE a = $1 AND b = $12 AND c = '$99'"),
            12
        );
        assert!(plannable("  select 1") && plannable("WITH x AS (SELECT 1) SELECT * FROM x"));
        assert!(!plannable("BEGIN") && !plannable("SET search_path = x"));
        assert_eq!(
            tenant_params(
                "SELECT * FROM t WHERE tenant_id = $2 AND id = $1",
                "tenant_id"
            ),
            vec![2]
        );
        assert_eq!(
            tenant_params("SELECT * FROM t x WHERE $1 = x.tenant_id", "tenant_id"),
            vec![1]
        );
        assert!(
            tenant_params("SELECT * FROM t WHERE other_tenant_id = $1", "tenant_id").is_empty()
        );
        let one = serde_json::json!({"Distributed Query": {"Job": {"Task Count": 1}}});
        let q = "SELECT * FROM t WHERE tenant_id = $1 AND id = $2";
        assert!(fan_out_decidable(q, "tenant_id", &one));
        assert!(!fan_out_decidable(
            "SELECT * FROM t WHERE tenant_id = $1 OR id = $2",
            "tenant_id",
            &one
        ));
        assert!(!fan_out_decidable(
            "SELECT * FROM t WHERE id = $1",
            "tenant_id",
            &one
        ));
    }
}
