//! What "the database is unchanged" means: row counts of every table, roles and
//! memberships, role/database settings, sequence positions, and a digest of policies and
//! table privileges. Taken before and after the probe and compared.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use super::{db, ProbeError};

/// A comparable picture of the database.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Named facts (`rows public.t`, `roles`, …) and their values.
    pub facts: BTreeMap<String, String>,
}

impl Snapshot {
    /// The facts that differ, as `name: before -> after`.
    pub fn diff(&self, after: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.facts {
            match after.facts.get(k) {
                Some(w) if w == v => {}
                Some(w) => out.push(format!("{k}: {v} -> {w}")),
                None => out.push(format!("{k}: {v} -> (gone)")),
            }
        }
        for (k, w) in &after.facts {
            if !self.facts.contains_key(k) {
                out.push(format!("{k}: (new) -> {w}"));
            }
        }
        out
    }
}

/// Takes a snapshot (outside any transaction of the probe). Roles are cluster-wide and
/// other sessions may change unrelated ones, so role facts cover the roles that matter
/// here: the app and every role it can become, owners of this database's relations and
/// functions, and the connecting user.
pub async fn take(client: &Client, app: &str, schemas: &[String]) -> Result<Snapshot, ProbeError> {
    let mut facts = BTreeMap::new();
    // The relations the audit's catalog covers (the one loader's filter).
    let tables = client
        .query(
            &format!(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind IN ('r', 'm') AND {}
                 ORDER BY 1",
                crate::audit::catalog::relation_filter("$1")
            ),
            &[&schemas],
        )
        .await
        .map_err(db("listing tables for the snapshot"))?;
    for t in tables {
        let name: String = t.get(0);
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM ONLY {name}"), &[])
            .await
            .map_err(db(format!("counting rows of {name}")))?
            .get(0);
        facts.insert(format!("rows {name}"), n.to_string());
    }
    let set = format!(
        "(SELECT oid FROM pg_roles WHERE pg_has_role({}, oid, 'MEMBER') OR oid IN (SELECT relowner FROM pg_class)
             OR oid IN (SELECT proowner FROM pg_proc) OR rolname = current_user)",
        crate::policy::literal(app)
    );
    let digests = [
        ("roles", "SELECT md5(string_agg(format('%s %s %s %s %s %s %s', rolname, rolsuper, rolinherit, rolcreaterole, rolcanlogin, rolbypassrls, rolconnlimit), ',' ORDER BY rolname)) FROM pg_roles WHERE oid IN {set}"),
        ("memberships", "SELECT md5(COALESCE(string_agg(format('%s %s %s', roleid, member, admin_option), ',' ORDER BY roleid, member), '')) FROM pg_auth_members WHERE member IN {set}"),
        ("settings", "SELECT md5(COALESCE(string_agg(format('%s %s %s', setdatabase, setrole, setconfig), ',' ORDER BY setdatabase, setrole), '')) FROM pg_db_role_setting WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) OR setrole IN {set}"),
        ("sequences", "SELECT md5(COALESCE(string_agg(format('%s.%s %s', schemaname, sequencename, last_value), ',' ORDER BY schemaname, sequencename), '')) FROM pg_sequences"),
        ("policies", "SELECT md5(COALESCE(string_agg(format('%s %s %s %s %s %s', polrelid, polname, polcmd, polroles, pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid)), ',' ORDER BY polrelid, polname), '')) FROM pg_policy"),
        ("tables", "SELECT md5(COALESCE(string_agg(format('%s %s %s %s %s', oid, relname, relacl, relrowsecurity, relforcerowsecurity), ',' ORDER BY oid), '')) FROM pg_class WHERE relkind IN ('r', 'p', 'v', 'm')"),
    ];
    for (name, sql) in digests {
        let sql = sql.replace("{set}", &set);
        let v: Option<String> = client
            .query_one(&sql, &[])
            .await
            .map_err(db(format!("taking the {name} snapshot")))?
            .get(0);
        facts.insert(name.to_string(), v.unwrap_or_default());
    }
    Ok(Snapshot { facts })
}
