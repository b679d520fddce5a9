//! The plan rules of `probe plans`, with stable ids:
//!
//! | id | name | severity |
//! |---|---|---|
//! | TGP001 | `seq-scan-on-tenant-table` | high |
//! | TGP002 | `tenant-predicate-as-filter` | medium |
//! | TGP003 | `non-leakproof-blocks-index` | high |
//! | TGP004 | `tenant-query-fans-out` | medium |
//!
//! On Citus the coordinator's plan is a `Custom Scan (Citus Adaptive)` whose shard plans sit
//! under `Distributed Query` → `Job` → `Tasks` → `Remote Plan`; every rule reads those too,
//! with shard names (`tasks_102008`) mapped back to their table.

use std::sync::OnceLock;

use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Client;

use super::{PlansConfig, TenantTable};
use crate::audit::Severity;

/// A rule.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Stable id.
    pub id: &'static str,
    /// Kebab-case name.
    pub name: &'static str,
    /// Default severity.
    pub severity: Severity,
    /// One line.
    pub title: &'static str,
}

/// Every rule.
pub const RULES: [Rule; 4] = [
    Rule {
        id: "TGP001",
        name: "seq-scan-on-tenant-table",
        severity: Severity::High,
        title: "A statement scans a large tenant table sequentially under tenant context",
    },
    Rule {
        id: "TGP002",
        name: "tenant-predicate-as-filter",
        severity: Severity::Medium,
        title:
            "The tenant predicate is evaluated per row as a Filter, not used as an index condition",
    },
    Rule {
        id: "TGP003",
        name: "non-leakproof-blocks-index",
        severity: Severity::High,
        title:
            "A non-LEAKPROOF function or operator in WHERE keeps an index from being used under RLS",
    },
    Rule {
        id: "TGP004",
        name: "tenant-query-fans-out",
        severity: Severity::Medium,
        title: "On Citus, a statement under tenant context runs on every shard instead of one",
    },
];

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct PlanFinding {
    /// Rule id.
    pub rule: &'static str,
    /// Rule name.
    pub name: &'static str,
    /// Severity.
    pub severity: Severity,
    /// The relation (`schema.table`).
    pub relation: String,
    /// The statement.
    pub statement: String,
    /// The tenant(s) whose context showed it.
    pub tenant: String,
    /// Why it matters, with the plan evidence.
    pub why: String,
    /// What fixes it.
    pub fix: String,
    /// `rule:relation:statement-hash`, stable across runs.
    pub fingerprint: String,
}

/// A short stable hash of a statement (FNV-1a; only for fingerprints, not security).
pub fn short_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.split_whitespace().collect::<Vec<_>>().join(" ").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
}

fn nodes(plan: &Value) -> Vec<&Value> {
    let mut out = vec![plan];
    if let Some(children) = plan.get("Plans").and_then(Value::as_array) {
        for c in children {
            out.extend(nodes(c));
        }
    }
    for remote in remote_plans(plan) {
        out.extend(nodes(remote));
    }
    out
}

/// The shard plans Citus shows under a distributed node (`Remote Plan` is a list of
/// EXPLAIN outputs, each a list of `{"Plan": …}`).
fn remote_plans(node: &Value) -> Vec<&Value> {
    let tasks = node
        .pointer("/Distributed Query/Job/Tasks")
        .and_then(Value::as_array);
    tasks
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("Remote Plan").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|p| p.get("Plan"))
        .collect()
}

/// The largest `Task Count` of the plan's distributed nodes; `None` when the plan is not
/// a Citus distributed plan.
pub fn task_count(plan: &Value) -> Option<i64> {
    nodes(plan)
        .into_iter()
        .filter_map(|n| n.pointer("/Distributed Query/Job/Task Count"))
        .filter_map(Value::as_i64)
        .max()
}

/// A Citus shard's name without its shard id (`tasks_102008` → `tasks`); other names as
/// they are.
pub fn strip_shard_suffix(name: &str) -> &str {
    match name.rsplit_once('_') {
        Some((base, id))
            if !base.is_empty() && id.len() >= 4 && id.bytes().all(|b| b.is_ascii_digit()) =>
        {
            base
        }
        _ => name,
    }
}

fn s<'a>(node: &'a Value, key: &str) -> &'a str {
    node.get(key).and_then(Value::as_str).unwrap_or("")
}

fn relation(node: &Value) -> Option<String> {
    let rel = node.get("Relation Name")?.as_str()?;
    let schema = node
        .get("Schema")
        .and_then(Value::as_str)
        .unwrap_or("public");
    Some(format!("{schema}.{rel}"))
}

/// The tenant table a scan node reads: by its name, or (a Citus shard) by the name without
/// the shard id.
fn table_of<'a>(node: &Value, tables: &'a [TenantTable]) -> Option<(String, &'a TenantTable)> {
    let rel = relation(node)?;
    if let Some(t) = tables.iter().find(|t| t.name == rel) {
        return Some((rel, t));
    }
    let (schema, name) = rel.split_once('.')?;
    let base = format!("{schema}.{}", strip_shard_suffix(name));
    tables.iter().find(|t| t.name == base).map(|t| (base, t))
}

/// The index a node uses, under its table's name for it (shard suffix removed).
fn index_name(node: &Value) -> &str {
    strip_shard_suffix(s(node, "Index Name"))
}

/// The plan as indented text lines (node, relation, index, conditions).
pub fn plan_lines(plan: &Value) -> Vec<String> {
    fn walk(n: &Value, depth: usize, out: &mut Vec<String>) {
        let mut line = format!("{}{}", "  ".repeat(depth), s(n, "Node Type"));
        if !s(n, "Index Name").is_empty() {
            line.push_str(&format!(" using {}", s(n, "Index Name")));
        }
        if let Some(r) = relation(n) {
            line.push_str(&format!(" on {r}"));
        }
        if let Some(rows) = n.get("Plan Rows") {
            line.push_str(&format!(" (rows={rows})"));
        }
        if let Some(tasks) = n.pointer("/Distributed Query/Job/Task Count") {
            line.push_str(&format!(" (Citus tasks={tasks})"));
        }
        out.push(line);
        for key in ["Index Cond", "Recheck Cond", "Filter"] {
            if !s(n, key).is_empty() {
                out.push(format!("{}  {key}: {}", "  ".repeat(depth), s(n, key)));
            }
        }
        if let Some(children) = n.get("Plans").and_then(Value::as_array) {
            for c in children {
                walk(c, depth + 1, out);
            }
        }
        for remote in remote_plans(n) {
            walk(remote, depth + 1, out);
        }
    }
    let mut out = Vec::new();
    walk(plan, 0, &mut out);
    out
}

fn is_scan(node: &Value) -> bool {
    matches!(
        s(node, "Node Type"),
        "Seq Scan" | "Index Scan" | "Index Only Scan" | "Bitmap Heap Scan"
    )
}

fn mentions(text: &str, column: &str) -> bool {
    regex::Regex::new(&format!(
        r"(^|[^A-Za-z0-9_]){}($|[^A-Za-z0-9_])",
        regex::escape(column)
    ))
    .map(|re| re.is_match(text))
    .unwrap_or(false)
}

/// Whether a plan scans a tenant table with a Filter (then the plan without RLS is
/// worth comparing with).
pub fn wants_comparison(plan: &Value, tables: &[TenantTable]) -> bool {
    nodes(plan)
        .into_iter()
        .any(|n| is_scan(n) && !s(n, "Filter").is_empty() && table_of(n, tables).is_some())
}

/// Expressions, normalized for comparison: no casts, no qualification, no blanks.
fn normalize(expr: &str) -> String {
    static CAST: OnceLock<regex::Regex> = OnceLock::new();
    static QUAL: OnceLock<regex::Regex> = OnceLock::new();
    let cast = CAST.get_or_init(|| regex::Regex::new(r"::[a-z_ ]+(\[\])?").expect("static regex"));
    let qual =
        QUAL.get_or_init(|| regex::Regex::new(r"\b[a-z_][a-z0-9_]*\.").expect("static regex"));
    let e = cast.replace_all(expr, "");
    let e = qual.replace_all(&e, "");
    e.chars()
        .filter(|c| !c.is_whitespace() && *c != '(' && *c != ')')
        .collect()
}

/// The key expressions of an index definition (`… USING btree (lower(name), id)`).
fn index_keys(def: &str) -> Vec<String> {
    let Some(start) = def.find(" USING ") else {
        return Vec::new();
    };
    let rest = &def[start..];
    let Some(open) = rest.find('(') else {
        return Vec::new();
    };
    let mut depth = 0;
    let mut cur = String::new();
    let mut keys = Vec::new();
    for c in rest[open + 1..].chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' if depth == 0 => break,
            ')' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth == 0 => {
                keys.push(cur.trim().to_string());
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        keys.push(cur.trim().to_string());
    }
    // Drop operator classes and ordering (`name text_pattern_ops`, `id DESC`).
    keys.into_iter()
        .map(|k| {
            if k.starts_with('(') || k.contains('(') {
                k
            } else {
                k.split_whitespace().next().unwrap_or("").to_string()
            }
        })
        .collect()
}

fn conjuncts(filter: &str) -> Vec<String> {
    let inner = filter.trim();
    let inner = inner
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .unwrap_or(inner);
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    let bytes: Vec<char> = inner.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == '(' {
            depth += 1;
        } else if c == ')' {
            depth -= 1;
        }
        let rest: String = bytes[i..bytes.len().min(i + 5)].iter().collect();
        if depth == 0 && rest == " AND " {
            out.push(cur.clone());
            cur.clear();
            i += 5;
            continue;
        }
        cur.push(c);
        i += 1;
    }
    out.push(cur);
    out
}

/// Functions and operators in `expr` of which no overload is LEAKPROOF.
async fn non_leakproof(client: &Client, expr: &str) -> Vec<String> {
    static FUNC: OnceLock<regex::Regex> = OnceLock::new();
    static OP: OnceLock<regex::Regex> = OnceLock::new();
    let func =
        FUNC.get_or_init(|| regex::Regex::new(r"([a-z_][a-z0-9_]*)\(").expect("static regex"));
    let op = OP.get_or_init(|| {
        regex::Regex::new(r"\s(!?~~\*?|!?~\*?|@@|@>|<@|&&)\s").expect("static regex")
    });
    let funcs: Vec<String> = func.captures_iter(expr).map(|c| c[1].to_string()).collect();
    let ops: Vec<String> = op.captures_iter(expr).map(|c| c[1].to_string()).collect();
    let mut out = Vec::new();
    if let Ok(rows) = client
        .query(
            "SELECT proname FROM pg_proc WHERE proname = ANY($1) GROUP BY proname HAVING NOT bool_or(proleakproof)",
            &[&funcs],
        )
        .await
    {
        out.extend(rows.iter().map(|r| format!("{}()", r.get::<_, String>(0))));
    }
    if let Ok(rows) = client
        .query(
            "SELECT o.oprname FROM pg_operator o JOIN pg_proc p ON p.oid = o.oprcode WHERE o.oprname = ANY($1) GROUP BY o.oprname HAVING NOT bool_or(p.proleakproof)",
            &[&ops],
        )
        .await
    {
        out.extend(rows.iter().map(|r| format!("operator {}", r.get::<_, String>(0))));
    }
    out
}

/// Judges one plan (made as the app role under a tenant's context); `bypass` is the same
/// statement planned without RLS, when the connecting user could.
pub async fn judge(
    plan: &Value,
    bypass: Option<&Value>,
    tables: &[TenantTable],
    config: &PlansConfig,
    client: &Client,
) -> Vec<PlanFinding> {
    let mut out = Vec::new();
    let col = &config.tenant_column;
    let mk = |rule: usize, relation: &str, why: String, fix: String| PlanFinding {
        rule: RULES[rule].id,
        name: RULES[rule].name,
        severity: RULES[rule].severity,
        relation: relation.to_string(),
        statement: String::new(),
        tenant: String::new(),
        why,
        fix,
        fingerprint: String::new(),
    };
    if let Some(tasks) = task_count(plan).filter(|&t| t > 1) {
        let rel = nodes(plan)
            .into_iter()
            .find_map(|n| table_of(n, tables))
            .map(|(r, _)| r)
            .unwrap_or_else(|| "(distributed)".into());
        out.push(mk(
            3,
            &rel,
            format!(
                "Citus plans this statement as {tasks} tasks, one per shard: under tenant context it still reads every shard, because RLS's predicate does not tell Citus which shard the tenant lives on (it costs latency and every worker's CPU, not isolation)"
            ),
            format!(
                "add {col} = <the tenant id> (a literal or a parameter) to the statement's WHERE, or let the data layer add it, so Citus routes it to the tenant's one shard"
            ),
        ));
    }
    for n in nodes(plan) {
        if !is_scan(n) {
            continue;
        }
        let Some((rel, table)) = table_of(n, tables) else {
            continue;
        };
        let node_type = s(n, "Node Type");
        let filter = s(n, "Filter");
        let cond = format!("{} {}", s(n, "Index Cond"), s(n, "Recheck Cond"));
        if node_type == "Seq Scan" && table.rows >= config.min_rows {
            out.push(mk(
                0,
                &rel,
                format!(
                    "Seq Scan on {rel} (about {} rows{}) reads every tenant's rows to return one tenant's",
                    table.rows as i64,
                    if filter.is_empty() { String::new() } else { format!(", Filter: {filter}") }
                ),
                format!("CREATE INDEX ON {rel} ({col}, …the columns this statement filters or sorts by…);"),
            ));
        }
        if node_type != "Seq Scan" && mentions(filter, col) && !mentions(&cond, col) {
            let used = index_name(n);
            let def = table
                .indexes
                .iter()
                .find(|(name, _)| name == used)
                .map(|(_, d)| d.clone());
            let keys = def.as_deref().map(index_keys).unwrap_or_default();
            out.push(mk(
                1,
                &rel,
                format!(
                    "{node_type} using {used} on {rel}: the tenant predicate is a Filter ({filter}), evaluated per row after the index returns rows of every tenant"
                ),
                format!(
                    "CREATE INDEX ON {rel} ({col}{}); -- lead the index with the tenant column{}",
                    keys.iter().map(|k| format!(", {k}")).collect::<String>(),
                    if used.is_empty() { String::new() } else { format!(", then DROP INDEX {used} if nothing else needs it") }
                ),
            ));
        }
        if filter.is_empty() {
            continue;
        }
        // An index whose key appears in a conjunct with a non-LEAKPROOF function or
        // operator, unused here.
        let used = index_name(n);
        for (iname, idef) in &table.indexes {
            if iname == used {
                continue;
            }
            let keys = index_keys(idef);
            let Some(lead) = keys.first() else { continue };
            let lead_n = normalize(lead);
            if lead_n.is_empty() || lead_n == normalize(col) {
                continue;
            }
            for conj in conjuncts(filter) {
                let cn = normalize(&conj);
                let hit = if lead.contains('(') {
                    cn.contains(&lead_n)
                } else {
                    mentions(&conj.replace(['(', ')'], " "), lead)
                };
                if !hit {
                    continue;
                }
                let leaky = non_leakproof(client, &conj).await;
                if leaky.is_empty() {
                    continue;
                }
                // Without RLS, does the planner use this index? (When we could ask.)
                let confirmed = match bypass {
                    Some(b) => nodes(b).iter().any(|m| index_name(m) == iname),
                    None => true,
                };
                if !confirmed {
                    continue;
                }
                out.push(mk(
                    2,
                    &rel,
                    format!(
                        "{node_type}{} on {rel} filters {} per row: {} {} not LEAKPROOF, so under RLS PostgreSQL may not evaluate it before the policy and cannot use index {iname} ({idef}){}",
                        if used.is_empty() { String::new() } else { format!(" using {used}") },
                        conj.trim(),
                        leaky.join(", "),
                        if leaky.len() == 1 { "is" } else { "are" },
                        if bypass.is_some() { "; planned without RLS, the same statement uses it" } else { "" }
                    ),
                    format!(
                        "CREATE INDEX ON {rel} ({col}, {lead}); -- the tenant condition can then use the index, and the rest is filtered within one tenant. (Or rewrite with a LEAKPROOF operator; marking a function LEAKPROOF needs a superuser and must be true.)"
                    ),
                ));
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_and_conjuncts() {
        assert_eq!(
            index_keys("CREATE INDEX i ON public.t USING btree (lower(name), id DESC)"),
            vec!["lower(name)".to_string(), "id".to_string()]
        );
        assert_eq!(
            index_keys("CREATE INDEX i ON public.t USING btree (name text_pattern_ops)"),
            vec!["name".to_string()]
        );
        let c = conjuncts("((tenant_id = $0) AND (lower((name)::text) = $1))");
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(normalize(&c[1]).contains(&normalize("lower(name)")));
        assert!(mentions("(tenant_id = $0)", "tenant_id") && !mentions("(tenant_id = $0)", "id"));
        assert_eq!(short_hash("SELECT  1"), short_hash("SELECT 1"));
        assert_eq!(
            strip_shard_suffix("tasks_project_fkey_102290"),
            "tasks_project_fkey"
        );
        assert_eq!(strip_shard_suffix("t_102008"), "t");
        assert_eq!(strip_shard_suffix("v_2"), "v_2");
        assert_eq!(strip_shard_suffix("_102008"), "_102008");
    }

    /// A real Citus 13.2 plan (coordinator + 2 workers, PostgreSQL 15): a tenant table
    /// read under RLS alone, 32 shards.
    #[test]
    fn citus_remote_plans_are_read() {
        let plan: Value = serde_json::from_str(
            r#"{"Node Type": "Custom Scan", "Custom Plan Provider": "Citus Adaptive", "Plan Rows": 100000,
                "Distributed Query": {"Job": {"Task Count": 32, "Tasks Shown": "One of 32", "Tasks": [
                  {"Query": "SELECT tenant_id, id, name FROM public.t_102008 t WHERE true",
                   "Node": "host=127.0.0.1 port=55432 dbname=postgres",
                   "Remote Plan": [[{"Plan": {"Node Type": "Bitmap Heap Scan", "Relation Name": "t_102008",
                     "Schema": "public", "Alias": "t", "Plan Rows": 5,
                     "Recheck Cond": "(t.tenant_id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid)",
                     "Plans": [{"Node Type": "Bitmap Index Scan", "Index Name": "t_pkey_102008", "Plan Rows": 5,
                       "Index Cond": "(t.tenant_id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid)"}]}}]]}]}}}"#,
        )
        .expect("plan json");
        assert_eq!(task_count(&plan), Some(32));
        let tables = [TenantTable {
            name: "public.t".into(),
            rows: 20.0,
            indexes: vec![(
                "t_pkey".into(),
                "CREATE UNIQUE INDEX t_pkey ON public.t USING btree (tenant_id, id)".into(),
            )],
        }];
        let scan = nodes(&plan)
            .into_iter()
            .find(|n| s(n, "Node Type") == "Bitmap Heap Scan")
            .expect("the shard's scan is a node");
        assert_eq!(
            table_of(scan, &tables).map(|(r, _)| r).as_deref(),
            Some("public.t")
        );
        let lines = plan_lines(&plan);
        assert!(lines[0].contains("Citus tasks=32"), "{lines:?}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains("Bitmap Heap Scan on public.t_102008")),
            "{lines:?}"
        );
        assert_eq!(
            task_count(&serde_json::json!({"Node Type": "Seq Scan"})),
            None
        );
    }
}
