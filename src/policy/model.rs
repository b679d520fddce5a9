//! The declaration: which tables are tenant tables, which commands the app may run on
//! each, and the names of the roles and the tenant setting.

use serde::Deserialize;

use super::PolicyError;

/// A command an RLS policy governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// `SELECT` (also `COPY TO`, and the read side of `RETURNING`).
    Select,
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
}

impl Command {
    /// All four commands, in policy order.
    pub const ALL: [Command; 4] = [
        Command::Select,
        Command::Insert,
        Command::Update,
        Command::Delete,
    ];

    /// The SQL keyword.
    pub fn sql(self) -> &'static str {
        match self {
            Command::Select => "SELECT",
            Command::Insert => "INSERT",
            Command::Update => "UPDATE",
            Command::Delete => "DELETE",
        }
    }

    /// `pg_policy.polcmd` for this command.
    pub fn polcmd(self) -> char {
        match self {
            Command::Select => 'r',
            Command::Insert => 'a',
            Command::Update => 'w',
            Command::Delete => 'd',
        }
    }

    /// The lower-case name used in policy names and TOML.
    pub fn name(self) -> &'static str {
        match self {
            Command::Select => "select",
            Command::Insert => "insert",
            Command::Update => "update",
            Command::Delete => "delete",
        }
    }

    /// Whether a policy for this command has a USING clause (rows it may see or touch).
    pub fn has_using(self) -> bool {
        !matches!(self, Command::Insert)
    }

    /// Whether a policy for this command has a WITH CHECK clause (rows it may write).
    pub fn has_check(self) -> bool {
        matches!(self, Command::Insert | Command::Update)
    }
}

/// The roles the engine manages. Defaults: `tenantguard_owner`, `tenantguard_app`,
/// `tenantguard_admin`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// NOLOGIN role that owns every object. `None` leaves ownership as it is (for
    /// `rls apply` on someone else's database).
    #[serde(default)]
    pub owner: Option<String>,
    /// The application role: LOGIN, subject to RLS, DML grants only.
    pub app: String,
    /// The cross-tenant reporting role: LOGIN, BYPASSRLS, SELECT only. `None` skips it.
    #[serde(default)]
    pub admin: Option<String>,
}

impl Default for Roles {
    fn default() -> Self {
        Self {
            owner: Some("tenantguard_owner".into()),
            app: "tenantguard_app".into(),
            admin: Some("tenantguard_admin".into()),
        }
    }
}

/// One table under tenant isolation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantTable {
    /// Schema name.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Table name.
    pub name: String,
    /// The column holding the tenant id; defaults to the policy set's column.
    #[serde(default)]
    pub tenant_column: Option<String>,
    /// The commands the app role may run (each gets a policy and a grant).
    #[serde(default = "all_commands")]
    pub commands: Vec<Command>,
    /// Whether the tenant column defaults to the current tenant (false for a table whose
    /// tenant column is its own primary key, like `tenants.id`).
    #[serde(default = "yes")]
    pub default_to_current_tenant: bool,
    /// For `rls apply`: an SQL expression, evaluated per row, that yields the tenant id of
    /// an existing row when the table has no tenant column yet. It may refer to the
    /// table's columns by name and to other tables, e.g.
    /// `(SELECT p.tenant_id FROM projects p WHERE p.id = project_id)`.
    #[serde(default)]
    pub backfill: Option<String>,
}

fn default_schema() -> String {
    "public".into()
}
fn all_commands() -> Vec<Command> {
    Command::ALL.to_vec()
}
fn yes() -> bool {
    true
}

impl TenantTable {
    /// A table in `public` with all four commands.
    pub fn new(name: &str) -> Self {
        Self {
            schema: default_schema(),
            name: name.into(),
            tenant_column: None,
            commands: all_commands(),
            default_to_current_tenant: true,
            backfill: None,
        }
    }

    /// Restricts the commands the app role may run.
    pub fn commands(mut self, commands: &[Command]) -> Self {
        self.commands = commands.to_vec();
        self
    }

    /// Uses another column as the tenant column.
    pub fn tenant_column(mut self, column: &str) -> Self {
        self.tenant_column = Some(column.into());
        self
    }

    /// Does not default the tenant column to the current tenant.
    pub fn no_default(mut self) -> Self {
        self.default_to_current_tenant = false;
        self
    }

    /// `"schema"."name"`, quoted.
    pub fn qualified(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.name))
    }
}

/// The whole declaration the engine applies.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySet {
    /// Role names.
    #[serde(default)]
    pub roles: Roles,
    /// The custom setting holding the current tenant id (default `app.tenant_id`).
    #[serde(default = "default_setting")]
    pub tenant_setting: String,
    /// Default tenant column name (default `tenant_id`).
    #[serde(default = "default_column")]
    pub tenant_column: String,
    /// The tenant tables.
    #[serde(default, rename = "table")]
    pub tables: Vec<TenantTable>,
    /// How policies compare the tenant column with the context: the InitPlan form by
    /// default, the inline form on Citus (chosen by `migrate --citus` and `rls apply` on a
    /// Citus database, never by the TOML).
    #[serde(skip)]
    pub predicate_form: crate::isolation::PredicateForm,
}

fn default_setting() -> String {
    "app.tenant_id".into()
}
fn default_column() -> String {
    "tenant_id".into()
}

use crate::isolation::{context_function_body, context_function_call};
pub use crate::isolation::{ident, literal, FUNCTION_SCHEMA};

impl PolicySet {
    /// Parses and validates a TOML declaration (the `tenantguard.toml` of `rls apply`).
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let set: PolicySet =
            toml::from_str(text).map_err(|e| PolicyError::Config(e.to_string()))?;
        set.validate()?;
        Ok(set)
    }

    /// Checks names and shape before anything touches a database.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let bad = |m: String| Err(PolicyError::Config(m));
        // Custom settings need a dot (PostgreSQL's rule for placeholder variables).
        let setting_ok = {
            let mut parts = self.tenant_setting.split('.');
            let ok_part = |p: &str| {
                !p.is_empty()
                    && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !p.starts_with(|c: char| c.is_ascii_digit())
            };
            matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if ok_part(a) && ok_part(b))
        };
        if !setting_ok {
            return bad(format!(
                "tenant_setting {:?} must look like `prefix.name` (letters, digits, _)",
                self.tenant_setting
            ));
        }
        let mut names = vec![self.roles.app.as_str()];
        names.extend(self.roles.owner.as_deref());
        names.extend(self.roles.admin.as_deref());
        for n in &names {
            if n.is_empty() || n.len() > 63 {
                return bad(format!("role name {n:?} must be 1 to 63 bytes"));
            }
        }
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != names.len() {
            return bad("the owner, app and admin roles must be different roles".into());
        }
        if self.tables.is_empty() {
            return bad("no tenant tables declared (add [[table]] entries)".into());
        }
        let mut seen = std::collections::HashSet::new();
        for t in &self.tables {
            if t.name.is_empty() || t.schema.is_empty() {
                return bad("a table needs a non-empty name and schema".into());
            }
            if !seen.insert((t.schema.clone(), t.name.clone())) {
                return bad(format!("table {}.{} is declared twice", t.schema, t.name));
            }
            if t.commands.is_empty() {
                return bad(format!(
                    "table {}.{} allows no command; remove it or list commands",
                    t.schema, t.name
                ));
            }
        }
        Ok(())
    }

    /// The tenant column of `table`.
    pub fn column_of<'a>(&'a self, table: &'a TenantTable) -> &'a str {
        table
            .tenant_column
            .as_deref()
            .unwrap_or(&self.tenant_column)
    }

    /// The SQL body of `tenantguard.current_tenant_id()`: NULL when the setting is unset or
    /// `''` (after RESET or in a later transaction), so every policy fails closed.
    pub fn current_tenant_body(&self) -> String {
        context_function_body(&self.tenant_setting)
    }

    /// The tenant predicate for `column`, in [`PolicySet::predicate_form`] (the contract's
    /// form: by default the InitPlan form, the function evaluated once per statement so the
    /// comparison is an index condition; inline on Citus).
    pub fn predicate(&self, column: &str) -> String {
        self.predicate_form.render(column, &context_function_call())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_with_defaults() {
        let set = PolicySet::from_toml(
            r#"
            tenant_setting = "app.current_tenant_id"
            [roles]
            app = "app_user"
            [[table]]
            name = "projects"
            [[table]]
            name = "audit_log"
            commands = ["select", "insert"]
            backfill = "(SELECT 1)"
            "#,
        )
        .expect("valid");
        assert_eq!(set.roles.app, "app_user");
        assert_eq!(set.roles.owner, None);
        assert_eq!(set.tables[0].commands, Command::ALL.to_vec());
        assert_eq!(
            set.tables[1].commands,
            vec![Command::Select, Command::Insert]
        );
        assert_eq!(set.column_of(&set.tables[0]), "tenant_id");
    }

    #[test]
    fn rejects_bad_declarations() {
        for (toml, needle) in [
            (
                "tenant_setting = \"nodot\"\n[roles]\napp=\"a\"\n[[table]]\nname=\"t\"",
                "tenant_setting",
            ),
            ("[roles]\napp=\"a\"", "no tenant tables"),
            (
                "[roles]\napp=\"a\"\nowner=\"a\"\n[[table]]\nname=\"t\"",
                "different roles",
            ),
            (
                "[roles]\napp=\"a\"\n[[table]]\nname=\"t\"\n[[table]]\nname=\"t\"",
                "twice",
            ),
            (
                "[roles]\napp=\"a\"\n[[table]]\nname=\"t\"\ncolour=1",
                "unknown field",
            ),
            (
                "[roles]\napp=\"a\"\n[[table]]\nname=\"t\"\ncommands=[\"truncate\"]",
                "unknown variant",
            ),
        ] {
            let err = PolicySet::from_toml(toml).expect_err(toml).to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn setting_name_is_quoted_as_a_literal() {
        let set = PolicySet {
            roles: Roles::default(),
            tenant_setting: "app.tenant_id".into(),
            tenant_column: "tenant_id".into(),
            tables: vec![TenantTable::new("t")],
            predicate_form: Default::default(),
        };
        assert_eq!(
            set.current_tenant_body(),
            "SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid"
        );
        assert_eq!(
            set.predicate("tenant_id"),
            "(\"tenant_id\" = (SELECT tenantguard.current_tenant_id()))"
        );
    }
}
