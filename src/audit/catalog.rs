//! Reads the catalogs into plain structs, in one transaction (so the picture is
//! consistent) and with read-only queries only. The roles the app reaches, and whether it
//! reaches an owner, follow the contract's membership rule (`crate::isolation::roles`, the
//! one the pool's start-up check uses); privileges are resolved for the app role *and
//! every role it is a member of* (`pg_has_role(app, r, 'MEMBER')`), because in PostgreSQL
//! 15 membership always allows `SET ROLE`.

use tokio_postgres::Transaction;

use super::{AuditConfig, AuditError};
use crate::isolation::roles::{reach_cte, set_role_mode, OWNER_REACHED};

/// A role the app role is, or can become.
#[derive(Debug, Clone)]
pub struct Role {
    /// `pg_roles.oid`.
    pub oid: u32,
    /// The name.
    pub name: String,
    /// `rolsuper`.
    pub superuser: bool,
    /// `rolbypassrls`.
    pub bypass_rls: bool,
    /// The app may `SET ROLE` to it. Before PostgreSQL 16 every membership allows it; from
    /// 16 each grant has its own SET option (`pg_auth_members.set_option`), so a member
    /// granted `WITH SET FALSE` only inherits privileges (never BYPASSRLS or SUPERUSER).
    pub can_set: bool,
    /// The app holds its privileges (`pg_has_role(…, 'USAGE')`: every grant on the way
    /// carries INHERIT), ownership rights over its objects included.
    pub inherits: bool,
}

/// A role that is a member of the app role (it can become the app).
#[derive(Debug, Clone)]
pub struct Member {
    /// The name.
    pub name: String,
    /// `rolcanlogin`.
    pub login: bool,
    /// Its `ALTER ROLE … SET` entries for the tenant setting (any database or this one).
    pub tenant_settings: Vec<String>,
}

/// Table-level privileges of the app role (through any role it can become).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Privileges {
    /// SELECT on the table or any column.
    pub select: bool,
    /// INSERT on the table or any column.
    pub insert: bool,
    /// UPDATE on the table or any column.
    pub update: bool,
    /// DELETE.
    pub delete: bool,
    /// TRUNCATE (never subject to RLS).
    pub truncate: bool,
    /// REFERENCES (lets the app build its own foreign-key probe).
    pub references: bool,
    /// TRIGGER (lets the app attach code).
    pub trigger: bool,
    /// MAINTAIN (PostgreSQL 17+: VACUUM, ANALYZE, CLUSTER, REINDEX, REFRESH, LOCK TABLE).
    pub maintain: bool,
}

impl Privileges {
    /// Whether the app holds any privilege at all.
    pub fn any(&self) -> bool {
        self.select
            || self.insert
            || self.update
            || self.delete
            || self.truncate
            || self.references
            || self.trigger
    }

    /// Whether the app can change rows.
    pub fn writes(&self) -> bool {
        self.insert || self.update || self.delete
    }
}

/// A column.
#[derive(Debug, Clone)]
pub struct Column {
    /// `attnum`.
    pub num: i16,
    /// The name.
    pub name: String,
    /// `format_type(atttypid, atttypmod)`.
    pub type_name: String,
    /// `pg_type.typcategory` (`A` array, `S` string, `N` numeric, …).
    pub type_category: String,
    /// `attnotnull`.
    pub not_null: bool,
    /// The default expression, if any.
    pub default: Option<String>,
    /// `attidentity` (`a` always, `d` by default, empty otherwise).
    pub identity: String,
    /// `attgenerated` (`s` stored, empty otherwise).
    pub generated: String,
}

/// A table, partitioned table, view, materialized view or foreign table.
#[derive(Debug, Clone)]
pub struct Table {
    /// `pg_class.oid`.
    pub oid: u32,
    /// Schema name.
    pub schema: String,
    /// Relation name.
    pub name: String,
    /// `relkind`: `r`, `p`, `v`, `m` or `f`.
    pub kind: char,
    /// Owner's name.
    pub owner: String,
    /// The app reaches the owner through membership (`crate::isolation::roles`).
    pub owner_reachable: bool,
    /// The owner is a superuser or has BYPASSRLS.
    pub owner_bypasses: bool,
    /// `relrowsecurity`.
    pub rls: bool,
    /// `relforcerowsecurity`.
    pub force: bool,
    /// `relispartition`.
    pub is_partition: bool,
    /// The parent in `pg_inherits` (partition or inheritance child).
    pub parent: Option<u32>,
    /// `security_invoker=true` in the view's options.
    pub security_invoker: bool,
    /// What the app may do with it.
    pub privileges: Privileges,
    /// Columns in order.
    pub columns: Vec<Column>,
    /// The definition of a view or materialized view (`pg_get_viewdef`).
    pub view_definition: Option<String>,
    /// Its privileges as granted, per grantee (`public` for PUBLIC) and privilege type
    /// (`aclexplode` of the ACL, the owner's default when it has none): what `rls apply`
    /// compares with the declaration.
    pub acl: Vec<(String, String)>,
}

impl Table {
    /// `schema.name`, each part quoted if needed.
    pub fn qualified(&self) -> String {
        format!(
            "{}.{}",
            crate::policy::ident(&self.schema),
            crate::policy::ident(&self.name)
        )
    }

    /// `schema.name` for messages.
    pub fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// An index (unique constraints and primary keys are backed by one).
#[derive(Debug, Clone)]
pub struct Index {
    /// The table.
    pub table: u32,
    /// The index name.
    pub name: String,
    /// The constraint it backs, if any.
    pub constraint: Option<String>,
    /// `indisunique`.
    pub unique: bool,
    /// `indisprimary`.
    pub primary: bool,
    /// Has a WHERE clause.
    pub partial: bool,
    /// Key columns in order; `None` for an expression.
    pub columns: Vec<Option<String>>,
}

/// A foreign key.
#[derive(Debug, Clone)]
pub struct ForeignKey {
    /// The referencing table.
    pub table: u32,
    /// The referenced table.
    pub references: u32,
    /// The constraint name.
    pub name: String,
    /// Referencing columns.
    pub columns: Vec<String>,
    /// Referenced columns, in the same order.
    pub ref_columns: Vec<String>,
}

/// A CHECK constraint.
#[derive(Debug, Clone)]
pub struct Check {
    /// The table.
    pub table: u32,
    /// The constraint name.
    pub name: String,
    /// `pg_get_constraintdef`.
    pub definition: String,
    /// The columns it mentions.
    pub columns: Vec<String>,
}

/// A row-level security policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `pg_policy.oid`.
    pub oid: u32,
    /// The table.
    pub table: u32,
    /// The policy name.
    pub name: String,
    /// `polcmd`: `r` select, `a` insert, `w` update, `d` delete, `*` all.
    pub cmd: char,
    /// Permissive (OR-ed) rather than restrictive (AND-ed).
    pub permissive: bool,
    /// Role names (`public` for PUBLIC).
    pub roles: Vec<String>,
    /// Granted to PUBLIC (`{0}` in `polroles`).
    pub public: bool,
    /// Applies to the app role (directly, through PUBLIC or an inherited role).
    pub applies_to_app: bool,
    /// The roles the app is or can become (see [`Catalog::app_roles`]) it applies to.
    pub applies_to: Vec<String>,
    /// USING, deparsed.
    pub using: Option<String>,
    /// WITH CHECK, deparsed.
    pub check: Option<String>,
    /// Functions the policy's expressions call (`pg_depend`).
    pub functions: Vec<u32>,
    /// Other relations the expressions read (`pg_depend`).
    pub relations: Vec<u32>,
}

/// A function or procedure outside the system schemas.
#[derive(Debug, Clone)]
pub struct Function {
    /// `pg_proc.oid`.
    pub oid: u32,
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// Identity arguments, for `ALTER FUNCTION`.
    pub args: String,
    /// `prosecdef`.
    pub security_definer: bool,
    /// `provolatile`: `i`, `s` or `v`.
    pub volatility: char,
    /// `proleakproof`.
    pub leakproof: bool,
    /// `proconfig` entries (`search_path=…`).
    pub config: Vec<String>,
    /// `prosrc`.
    pub source: String,
    /// Language name.
    pub language: String,
    /// Owner's name.
    pub owner: String,
    /// The app can become the owner.
    pub owner_reachable: bool,
    /// The owner is a superuser or has BYPASSRLS.
    pub owner_bypasses: bool,
    /// The app can EXECUTE it.
    pub app_can_execute: bool,
    /// Returns `trigger`.
    pub is_trigger: bool,
    /// `prokind`: `f` function, `p` procedure, `a` aggregate, `w` window.
    pub kind: char,
    /// The input argument types (`format_type` of `proargtypes`).
    pub arg_types: Vec<String>,
    /// PUBLIC holds EXECUTE (the default for new functions).
    pub public_execute: bool,
}

impl Function {
    /// `schema.name(args)` for SQL.
    pub fn signature(&self) -> String {
        format!(
            "{}.{}({})",
            crate::policy::ident(&self.schema),
            crate::policy::ident(&self.name),
            self.args
        )
    }
}

/// A user trigger.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// The table.
    pub table: u32,
    /// Trigger name.
    pub name: String,
    /// The function it runs.
    pub function: u32,
}

/// A role-level or database-level default of the tenant setting.
#[derive(Debug, Clone)]
pub struct SettingDefault {
    /// Role name, or empty for all roles.
    pub role: String,
    /// Set for this database only (else for all databases).
    pub database: bool,
    /// The `name=value` entry.
    pub entry: String,
}

/// A default privilege on future tables that the app would receive.
#[derive(Debug, Clone)]
pub struct DefaultAcl {
    /// The role whose future tables get it.
    pub owner: String,
    /// The schema, or empty for all.
    pub schema: String,
    /// The privilege (TRUNCATE, TRIGGER, REFERENCES, SELECT, INSERT, UPDATE, DELETE).
    pub privilege: String,
}

/// Everything the rules look at.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// `server_version_num`.
    pub server_version_num: i32,
    /// The app role and every role it can become (itself first).
    pub app_roles: Vec<Role>,
    /// Roles that are members of the app role (per-tenant roles in a role-per-tenant
    /// schema, or login roles that SET ROLE into it), with their settings of interest.
    pub app_members: Vec<Member>,
    /// The app can create objects in some schema.
    pub app_can_create: bool,
    /// Relations of the audited schemas.
    pub tables: Vec<Table>,
    /// Indexes on those relations.
    pub indexes: Vec<Index>,
    /// Foreign keys of those relations.
    pub foreign_keys: Vec<ForeignKey>,
    /// CHECK constraints.
    pub checks: Vec<Check>,
    /// Policies.
    pub policies: Vec<Policy>,
    /// Non-system functions (all schemas, since policies may call any).
    pub functions: Vec<Function>,
    /// User triggers.
    pub triggers: Vec<Trigger>,
    /// (view or matview, relation it reads).
    pub view_deps: Vec<(u32, u32)>,
    /// Defaults of the tenant setting that apply to the app.
    pub setting_defaults: Vec<SettingDefault>,
    /// Where the server's own configuration sets the tenant setting, if it does.
    pub setting_config_source: Option<String>,
    /// Default privileges the app would get on future tables.
    pub default_acls: Vec<DefaultAcl>,
    /// Server-file and large-object functions a non-superuser role of the app may execute.
    pub file_functions: Vec<String>,
    /// The Citus metadata, when the `citus` extension is installed.
    pub citus: Option<super::citus::CitusCatalog>,
}

fn db(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> AuditError {
    move |source| AuditError::Db { context, source }
}

/// The relations the catalog covers, on `pg_namespace n`: user schemas (no system, TOAST
/// or temporary schema), limited to the schemas in the `text[]` parameter `schemas` when
/// it is not empty. The probe's snapshot counts rows over the same relations.
pub fn relation_filter(schemas: &str) -> String {
    format!(
        "n.nspname NOT IN ('pg_catalog', 'information_schema')
         AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
         AND (cardinality({schemas}::text[]) = 0 OR n.nspname = ANY({schemas}::text[]))"
    )
}

/// Loads the catalog as seen by `tx` (run it in a read-only, repeatable-read transaction).
pub async fn load(tx: &Transaction<'_>, config: &AuditConfig) -> Result<Catalog, AuditError> {
    let app = &config.app_role;
    let schemas = &config.schemas;
    let exists = tx
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[app])
        .await
        .map_err(db("roles"))?;
    if exists.is_none() {
        return Err(AuditError::Config(format!(
            "the app role {app:?} does not exist in this cluster (set --app-role)"
        )));
    }
    let mut cat = Catalog {
        server_version_num: tx
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .map_err(db("the server version"))?
            .get(0),
        ..Catalog::default()
    };

    // The contract's unsafe-role rule reads membership the way the server's version
    // defines it (crate::isolation::roles); the pool's start-up check reads it the same way.
    let version = cat.server_version_num;
    let set_mode = set_role_mode(version);
    let reach = reach_cte(version, "$1::text");
    let roles = tx
        .query(
            &format!(
                "{reach}
                 SELECT r.oid, r.rolname::text, r.rolsuper, r.rolbypassrls,
                        pg_has_role($1::text, r.oid, $2::text), pg_has_role($1::text, r.oid, 'USAGE')
                 FROM pg_roles r JOIN reach USING (oid) ORDER BY r.rolname <> $1, r.rolname"
            ),
            &[app, &set_mode],
        )
        .await
        .map_err(db("role memberships"))?;
    cat.app_roles = roles
        .iter()
        .map(|r| Role {
            oid: r.get(0),
            name: r.get(1),
            superuser: r.get(2),
            bypass_rls: r.get(3),
            can_set: r.get(4),
            inherits: r.get(5),
        })
        .collect();
    // Members of the app role. PG16+ records per grant whether the member may SET ROLE
    // (set_option); pg_has_role(…, 'MEMBER') is true either way, and a member that can
    // only inherit still acts with the app's privileges, so both count.
    let rows = tx
        .query(
            "SELECT r.rolname::text, r.rolcanlogin,
                    ARRAY(SELECT cfg FROM pg_db_role_setting s, unnest(s.setconfig) cfg
                          WHERE s.setrole = r.oid
                            AND (s.setdatabase = 0 OR s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()))
                            AND lower(cfg) LIKE lower($2::text) || '=%')
             FROM pg_roles r
             WHERE r.rolname <> $1 AND NOT r.rolsuper
               AND pg_has_role(r.oid, (SELECT oid FROM pg_roles WHERE rolname = $1), 'MEMBER')
             ORDER BY r.rolname LIMIT 10000",
            &[app, &config.tenant_setting],
        )
        .await
        .map_err(db("members of the app role"))?;
    cat.app_members = rows
        .iter()
        .map(|r| Member {
            name: r.get(0),
            login: r.get(1),
            tenant_settings: r.get(2),
        })
        .collect();
    cat.app_can_create = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace n, pg_roles r
                 WHERE pg_has_role($1::text, r.oid, 'MEMBER')
                   AND has_schema_privilege(r.oid, n.oid, 'CREATE'))",
            &[app],
        )
        .await
        .map_err(db("schema privileges"))?
        .get(0);

    let priv_expr = |f: &str, p: &str| {
        format!(
            "EXISTS (SELECT 1 FROM pg_roles r WHERE pg_has_role($1::text, r.oid, 'MEMBER') \
             AND {f}(r.oid, c.oid, '{p}'))"
        )
    };
    let rel_filter = relation_filter("$2");
    let sql = format!(
        "{reach}
         SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, o.rolname::text,
                {OWNER_REACHED}, (o.rolsuper OR o.rolbypassrls),
                c.relrowsecurity, c.relforcerowsecurity, c.relispartition,
                (SELECT i.inhparent FROM pg_inherits i WHERE i.inhrelid = c.oid LIMIT 1),
                COALESCE(c.reloptions::text[], '{{}}') && ARRAY['security_invoker=true', 'security_invoker=on', 'security_invoker=1'],
                {}, {}, {}, {}, {}, {}, {},
                CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END, {},
                ARRAY(SELECT CASE WHEN x.grantee = 0 THEN 'public' ELSE pg_get_userbyid(x.grantee)::text END
                      FROM aclexplode(COALESCE(c.relacl, acldefault('r', c.relowner))) x ORDER BY x.grantee, x.privilege_type),
                ARRAY(SELECT x.privilege_type
                      FROM aclexplode(COALESCE(c.relacl, acldefault('r', c.relowner))) x ORDER BY x.grantee, x.privilege_type)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              JOIN pg_roles o ON o.oid = c.relowner
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {rel_filter}
         ORDER BY n.nspname, c.relname",
        priv_expr("has_any_column_privilege", "SELECT"),
        priv_expr("has_any_column_privilege", "INSERT"),
        priv_expr("has_any_column_privilege", "UPDATE"),
        priv_expr("has_table_privilege", "DELETE"),
        priv_expr("has_table_privilege", "TRUNCATE"),
        priv_expr("has_any_column_privilege", "REFERENCES"),
        priv_expr("has_table_privilege", "TRIGGER"),
        // MAINTAIN is a table privilege from PostgreSQL 17 on (an error before).
        if cat.server_version_num >= 170000 {
            priv_expr("has_table_privilege", "MAINTAIN")
        } else {
            "false".to_string()
        },
    );
    let rows = tx
        .query(&sql, &[app, schemas])
        .await
        .map_err(db("tables"))?;
    for r in rows {
        let kind: String = r.get(3);
        let (grantees, privileges): (Vec<String>, Vec<String>) = (r.get(21), r.get(22));
        cat.tables.push(Table {
            oid: r.get(0),
            schema: r.get(1),
            name: r.get(2),
            kind: kind.chars().next().unwrap_or('r'),
            owner: r.get(4),
            owner_reachable: r.get(5),
            owner_bypasses: r.get(6),
            rls: r.get(7),
            force: r.get(8),
            is_partition: r.get(9),
            parent: r.get(10),
            security_invoker: r.get(11),
            privileges: Privileges {
                select: r.get(12),
                insert: r.get(13),
                update: r.get(14),
                delete: r.get(15),
                truncate: r.get(16),
                references: r.get(17),
                trigger: r.get(18),
                maintain: r.get(20),
            },
            columns: Vec::new(),
            view_definition: r.get(19),
            acl: grantees.into_iter().zip(privileges).collect(),
        });
    }
    let oids: Vec<u32> = cat.tables.iter().map(|t| t.oid).collect();

    let rows = tx
        .query(
            "SELECT a.attrelid, a.attnum, a.attname::text, format_type(a.atttypid, a.atttypmod),
                    t.typcategory::text, a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
                    a.attidentity::text, a.attgenerated::text
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attrelid, a.attnum",
            &[&oids],
        )
        .await
        .map_err(db("columns"))?;
    let pos: std::collections::HashMap<u32, usize> = cat
        .tables
        .iter()
        .enumerate()
        .map(|(i, t)| (t.oid, i))
        .collect();
    for r in rows {
        let rel: u32 = r.get(0);
        if let Some(&i) = pos.get(&rel) {
            cat.tables[i].columns.push(Column {
                num: r.get(1),
                name: r.get(2),
                type_name: r.get(3),
                type_category: r.get(4),
                not_null: r.get(5),
                default: r.get(6),
                identity: r.get(7),
                generated: r.get(8),
            });
        }
    }

    let rows = tx
        .query(
            "SELECT i.indrelid, ic.relname::text, con.conname::text, i.indisunique, i.indisprimary,
                    i.indpred IS NOT NULL,
                    ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, ord)
                          LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num
                          WHERE k.ord <= i.indnkeyatts ORDER BY k.ord)
             FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                  LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
                                              AND con.contype IN ('p', 'u', 'x')
             WHERE i.indrelid = ANY($1)
             ORDER BY i.indrelid, ic.relname",
            &[&oids],
        )
        .await
        .map_err(db("indexes"))?;
    cat.indexes = rows
        .iter()
        .map(|r| Index {
            table: r.get(0),
            name: r.get(1),
            constraint: r.get(2),
            unique: r.get(3),
            primary: r.get(4),
            partial: r.get(5),
            columns: r.get(6),
        })
        .collect();

    let colnames = |arr: &str, rel: &str| {
        format!(
            "ARRAY(SELECT a.attname::text FROM unnest(c.{arr}) WITH ORDINALITY k(num, ord)
                   JOIN pg_attribute a ON a.attrelid = c.{rel} AND a.attnum = k.num ORDER BY k.ord)"
        )
    };
    let rows = tx
        .query(
            &format!(
                "SELECT c.conrelid, c.confrelid, c.conname::text, {}, {}
                 FROM pg_constraint c WHERE c.contype = 'f' AND c.conrelid = ANY($1)
                 ORDER BY c.conrelid, c.conname",
                colnames("conkey", "conrelid"),
                colnames("confkey", "confrelid")
            ),
            &[&oids],
        )
        .await
        .map_err(db("foreign keys"))?;
    cat.foreign_keys = rows
        .iter()
        .map(|r| ForeignKey {
            table: r.get(0),
            references: r.get(1),
            name: r.get(2),
            columns: r.get(3),
            ref_columns: r.get(4),
        })
        .collect();

    let rows = tx
        .query(
            &format!(
                "SELECT c.conrelid, c.conname::text, pg_get_constraintdef(c.oid), {}
                 FROM pg_constraint c WHERE c.contype = 'c' AND c.conrelid = ANY($1)
                 ORDER BY c.conrelid, c.conname",
                colnames("conkey", "conrelid")
            ),
            &[&oids],
        )
        .await
        .map_err(db("check constraints"))?;
    cat.checks = rows
        .iter()
        .map(|r| Check {
            table: r.get(0),
            name: r.get(1),
            definition: r.get(2),
            columns: r.get(3),
        })
        .collect();

    let rows = tx
        .query(
            "SELECT p.oid, p.polrelid, p.polname::text, p.polcmd::text, p.polpermissive,
                    ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r)::text END
                          FROM unnest(p.polroles) r),
                    0 = ANY(p.polroles),
                    EXISTS (SELECT 1 FROM unnest(p.polroles) r
                            WHERE r = 0 OR pg_has_role($2::text, r, 'USAGE')),
                    pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid),
                    ARRAY(SELECT DISTINCT d.refobjid FROM pg_depend d
                          WHERE d.classid = 'pg_policy'::regclass AND d.objid = p.oid
                            AND d.refclassid = 'pg_proc'::regclass),
                    ARRAY(SELECT DISTINCT d.refobjid FROM pg_depend d
                          WHERE d.classid = 'pg_policy'::regclass AND d.objid = p.oid
                            AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> p.polrelid),
                    ARRAY(SELECT rr.rolname::text FROM pg_roles rr
                          WHERE pg_has_role($2::text, rr.oid, 'MEMBER')
                            AND EXISTS (SELECT 1 FROM unnest(p.polroles) r
                                        WHERE r = 0 OR pg_has_role(rr.oid, r, 'USAGE')))
             FROM pg_policy p WHERE p.polrelid = ANY($1)
             ORDER BY p.polrelid, p.polname",
            &[&oids, app],
        )
        .await
        .map_err(db("policies"))?;
    cat.policies = rows
        .iter()
        .map(|r| {
            let cmd: String = r.get(3);
            Policy {
                oid: r.get(0),
                table: r.get(1),
                name: r.get(2),
                cmd: cmd.chars().next().unwrap_or('*'),
                permissive: r.get(4),
                roles: r.get(5),
                public: r.get(6),
                applies_to_app: r.get(7),
                using: r.get(8),
                check: r.get(9),
                functions: r.get(10),
                relations: r.get(11),
                applies_to: r.get(12),
            }
        })
        .collect();

    let rows = tx
        .query(
            "SELECT p.oid, n.nspname::text, p.proname::text, pg_get_function_identity_arguments(p.oid),
                    p.prosecdef, p.provolatile::text, p.proleakproof, COALESCE(p.proconfig, '{}'),
                    COALESCE(p.prosrc, ''), l.lanname::text, o.rolname::text,
                    pg_has_role($1::text, p.proowner, 'MEMBER'), (o.rolsuper OR o.rolbypassrls),
                    EXISTS (SELECT 1 FROM pg_roles r WHERE pg_has_role($1::text, r.oid, 'MEMBER')
                            AND has_function_privilege(r.oid, p.oid, 'EXECUTE')),
                    p.prorettype = 'trigger'::regtype, p.prokind::text,
                    ARRAY(SELECT format_type(x, NULL) FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(x, o) ORDER BY o),
                    p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) x WHERE x.grantee = 0 AND x.privilege_type = 'EXECUTE')
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                  JOIN pg_language l ON l.oid = p.prolang JOIN pg_roles o ON o.oid = p.proowner
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
             ORDER BY n.nspname, p.proname, p.oid",
            &[app],
        )
        .await
        .map_err(db("functions"))?;
    cat.functions = rows
        .iter()
        .map(|r| {
            let v: String = r.get(5);
            Function {
                oid: r.get(0),
                schema: r.get(1),
                name: r.get(2),
                args: r.get(3),
                security_definer: r.get(4),
                volatility: v.chars().next().unwrap_or('v'),
                leakproof: r.get(6),
                config: r.get(7),
                source: r.get(8),
                language: r.get(9),
                owner: r.get(10),
                owner_reachable: r.get(11),
                owner_bypasses: r.get(12),
                app_can_execute: r.get(13),
                is_trigger: r.get(14),
                kind: r.get::<_, String>(15).chars().next().unwrap_or('f'),
                arg_types: r.get(16),
                public_execute: r.get(17),
            }
        })
        .collect();

    let rows = tx
        .query(
            "SELECT tgrelid, tgname::text, tgfoid FROM pg_trigger
             WHERE NOT tgisinternal AND tgrelid = ANY($1) ORDER BY tgrelid, tgname",
            &[&oids],
        )
        .await
        .map_err(db("triggers"))?;
    cat.triggers = rows
        .iter()
        .map(|r| Trigger {
            table: r.get(0),
            name: r.get(1),
            function: r.get(2),
        })
        .collect();

    let rows = tx
        .query(
            "SELECT DISTINCT r.ev_class, d.refobjid FROM pg_rewrite r
             JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                             AND d.refclassid = 'pg_class'::regclass
             WHERE r.ev_class = ANY($1) AND d.refobjid <> r.ev_class",
            &[&oids],
        )
        .await
        .map_err(db("view dependencies"))?;
    cat.view_deps = rows.iter().map(|r| (r.get(0), r.get(1))).collect();

    let rows = tx
        .query(
            "SELECT CASE WHEN s.setrole = 0 THEN '' ELSE pg_get_userbyid(s.setrole)::text END,
                    s.setdatabase <> 0, cfg
             FROM pg_db_role_setting s, unnest(s.setconfig) cfg
             WHERE (s.setdatabase = 0 OR s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()))
               AND (s.setrole = 0 OR pg_has_role($1::text, s.setrole, 'MEMBER'))
               AND lower(cfg) LIKE lower($2::text) || '=%'",
            &[app, &config.tenant_setting],
        )
        .await
        .map_err(db("role and database settings"))?;
    cat.setting_defaults = rows
        .iter()
        .map(|r| SettingDefault {
            role: r.get(0),
            database: r.get(1),
            entry: r.get(2),
        })
        .collect();
    cat.setting_config_source = tx
        .query_opt(
            "SELECT source || COALESCE(' ' || sourcefile, '') FROM pg_settings
             WHERE lower(name) = lower($1::text)
               AND source IN ('configuration file', 'command line', 'environment variable', 'global')",
            &[&config.tenant_setting],
        )
        .await
        .map_err(db("server settings"))?
        .map(|r| r.get(0));

    let rows = tx
        .query(
            "SELECT pg_get_userbyid(d.defaclrole)::text, COALESCE(n.nspname::text, ''), x.privilege_type
             FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace,
                  aclexplode(d.defaclacl) x
             WHERE d.defaclobjtype = 'r'
               AND x.privilege_type IN ('TRUNCATE', 'TRIGGER', 'REFERENCES', 'SELECT', 'INSERT', 'UPDATE', 'DELETE')
               AND (x.grantee = 0 OR pg_has_role($1::text, x.grantee, 'MEMBER'))",
            &[app],
        )
        .await
        .map_err(db("default privileges"))?;
    cat.default_acls = rows
        .iter()
        .map(|r| DefaultAcl {
            owner: r.get(0),
            schema: r.get(1),
            privilege: r.get(2),
        })
        .collect();
    let rows = tx
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p
             WHERE p.oid = ANY (ARRAY['pg_catalog.pg_read_file(text)', 'pg_catalog.pg_read_binary_file(text)',
                                      'pg_catalog.pg_read_file(text,bigint,bigint)', 'pg_catalog.pg_ls_dir(text)',
                                      'pg_catalog.lo_import(text)', 'pg_catalog.lo_export(oid,text)']::regprocedure[])
               AND EXISTS (SELECT 1 FROM pg_roles r
                           WHERE pg_has_role($1::text, r.oid, 'MEMBER') AND NOT r.rolsuper
                             AND has_function_privilege(r.oid, p.oid, 'EXECUTE'))
             ORDER BY 1",
            &[app],
        )
        .await
        .map_err(db("server-file functions"))?;
    cat.file_functions = rows.iter().map(|r| r.get(0)).collect();
    cat.citus = super::citus::load(tx, app).await?;
    Ok(cat)
}
