//! What the catalogs mean for isolation: which tables are tenant tables (and which column
//! carries the tenant there), which functions read the tenant setting, and what each
//! table × command effectively allows the app (`AND(restrictive) AND OR(permissive)`).

use std::collections::{HashMap, HashSet};

use super::catalog::{Catalog, Policy, Table};
use super::predicate::{self, Analysis, Context};
use super::AuditConfig;
use crate::isolation::{Detection, TenancyModel};
use crate::policy::Command;

pub use crate::isolation::tables::{TenantKind, TenantTable};

/// One policy, analysed for one side (USING or WITH CHECK).
#[derive(Debug, Clone)]
pub struct Term<'a> {
    /// The policy.
    pub policy: &'a Policy,
    /// The expression that applies on this side (`None`: an INSERT policy without WITH
    /// CHECK, which rejects every row).
    pub expr: Option<&'a str>,
    /// The analysis of `expr`.
    pub analysis: Analysis,
}

/// What one command on one table effectively allows the app.
#[derive(Debug, Clone)]
pub struct Effective<'a> {
    /// The command.
    pub command: Command,
    /// Whether this is the WITH CHECK side (rows written) rather than USING (rows reached).
    pub check_side: bool,
    /// Permissive policies that apply.
    pub permissive: Vec<Term<'a>>,
    /// Restrictive policies that apply.
    pub restrictive: Vec<Term<'a>>,
}

impl Effective<'_> {
    /// No permissive policy applies, so the command matches no row (fails closed).
    pub fn denied(&self) -> bool {
        self.permissive.iter().all(|t| t.expr.is_none())
    }

    /// Restricted to the current tenant: a restrictive policy is the tenant predicate, or
    /// every permissive one is.
    pub fn scoped(&self) -> bool {
        self.denied()
            || self
                .restrictive
                .iter()
                .any(|t| t.expr.is_some() && t.analysis.scoped)
            || self
                .permissive
                .iter()
                .all(|t| t.expr.is_none() || t.analysis.scoped)
    }
}

/// The catalog plus what it means.
#[derive(Debug, Clone)]
pub struct Model {
    /// The raw catalog.
    pub catalog: Catalog,
    /// The configuration.
    pub config: AuditConfig,
    /// Tenant tables by oid.
    pub tenant: HashMap<u32, TenantTable>,
    /// Functions whose body reads the tenant setting (directly or through another).
    pub source_functions: HashSet<u32>,
    /// Their lower-case names, qualified and bare, for matching deparsed text.
    pub source_names: Vec<String>,
    /// Lower-case names of tenant tables with row-level security enabled.
    pub scoped_relations: Vec<String>,
    /// Compiled patterns for the tenant setting.
    pub setting: predicate::SettingPatterns,
    /// Lower-case names of every setting a tenancy model here reads.
    pub settings: Vec<String>,
    /// Compiled patterns for each of them.
    pub readers: Vec<predicate::SettingPatterns>,
    /// Which tenancy model each table follows, and the plain statement of it.
    pub detection: Detection,
    /// Position of each table in `catalog.tables`, by oid.
    index: HashMap<u32, usize>,
}

impl Model {
    /// Derives the model.
    pub fn build(catalog: Catalog, config: &AuditConfig) -> Model {
        let detection = crate::isolation::detect(&catalog, config);
        let col = config.tenant_column.as_str();
        // The contract's definition of a tenant table; the column is the table's own
        // model's (detected or declared), else the configured one.
        let tenant = crate::isolation::tables::classify(&catalog, |t| {
            if let Some(tt) = detection.tables.get(&t.oid) {
                let per_user = matches!(tt.model, TenancyModel::Owner { .. });
                return Some((tt.column.clone(), per_user));
            }
            let per_user = matches!(detection.primary, TenancyModel::Owner { .. });
            t.column(col).map(|_| (col.to_string(), per_user))
        });
        let index: HashMap<u32, usize> = catalog
            .tables
            .iter()
            .enumerate()
            .map(|(i, t)| (t.oid, i))
            .collect();

        let setting = predicate::SettingPatterns::new(&config.tenant_setting);
        // Every setting any model here reads, and the platform functions (auth.uid …).
        let mut settings: Vec<String> = vec![config.tenant_setting.to_lowercase()];
        let mut platform: Vec<String> = Vec::new();
        for m in
            std::iter::once(&detection.primary).chain(detection.tables.values().map(|t| &t.model))
        {
            for s in m.settings() {
                let s = s.to_lowercase();
                if !settings.contains(&s) {
                    settings.push(s);
                }
            }
            for f in m.platform_functions() {
                if !platform.contains(&f) {
                    platform.push(f);
                }
            }
        }
        let readers: Vec<predicate::SettingPatterns> = settings
            .iter()
            .map(|s| predicate::SettingPatterns::new(s))
            .collect();
        let mut source_functions: HashSet<u32> = catalog
            .functions
            .iter()
            .filter(|f| {
                readers.iter().any(|r| r.find(&f.source).reads)
                    || platform.contains(&format!("{}.{}", f.schema, f.name).to_lowercase())
            })
            .map(|f| f.oid)
            .collect();
        loop {
            let names = names_of(&catalog, &source_functions);
            let more: Vec<u32> = catalog
                .functions
                .iter()
                .filter(|f| !source_functions.contains(&f.oid))
                .filter(|f| {
                    let body = f.source.to_lowercase();
                    names
                        .iter()
                        .any(|n| n.contains('.') && body.contains(&format!("{n}(")))
                })
                .map(|f| f.oid)
                .collect();
            if more.is_empty() {
                break;
            }
            source_functions.extend(more);
        }
        let mut source_names = names_of(&catalog, &source_functions);
        source_names.extend(platform.iter().cloned());
        let mut scoped_relations = Vec::new();
        for t in catalog
            .tables
            .iter()
            .filter(|t| t.rls && tenant.contains_key(&t.oid))
        {
            scoped_relations.push(format!("{}.{}", t.schema, t.name).to_lowercase());
            scoped_relations.push(t.name.to_lowercase());
        }
        Model {
            index,
            setting,
            settings,
            readers,
            detection,
            scoped_relations,
            catalog,
            config: config.clone(),
            tenant,
            source_functions,
            source_names,
        }
    }

    /// How `text` uses any context setting of the models here (the union over them).
    pub fn setting_use(&self, text: &str) -> predicate::SettingUse {
        let mut out = predicate::SettingUse::default();
        for r in &self.readers {
            let u = r.find(text);
            out.reads |= u.reads;
            out.one_argument |= u.one_argument;
            out.missing_nullif |= u.missing_nullif;
            out.session_scoped_set |= u.session_scoped_set;
        }
        out
    }

    /// Whether `text` (a function body or view definition) reads the tenant context: a
    /// `current_setting` of a setting some model reads, a call of a function that does
    /// (`current_tenant_id()`, `auth.uid()`), or `current_user` under one role per tenant.
    pub fn reads_context(&self, text: &str) -> bool {
        let lower = text.to_lowercase();
        let setting = self.settings.iter().any(|s| {
            regex::Regex::new(&format!(r"current_setting\s*\(\s*'{}'", regex::escape(s)))
                .is_ok_and(|r| r.is_match(&lower))
        });
        let function = self.source_names.iter().any(|n| {
            regex::Regex::new(&format!(r"(^|[^a-z0-9_.]){}\s*\(", regex::escape(n)))
                .is_ok_and(|r| r.is_match(&lower))
        });
        let identity = self.models().iter().any(|m| m.identity_is_context())
            && (lower.contains("current_user") || lower.contains("session_user"));
        setting || function || identity
    }

    /// Every tenancy model in play: the main one, then each table's own (deduplicated).
    pub fn models(&self) -> Vec<&TenancyModel> {
        let mut out = vec![&self.detection.primary];
        // In catalog order, so that reports come out the same every run.
        for t in &self.catalog.tables {
            if let Some(tt) = self.detection.tables.get(&t.oid) {
                if !out.contains(&&tt.model) {
                    out.push(&tt.model);
                }
            }
        }
        out
    }

    /// The table with this oid.
    pub fn table(&self, oid: u32) -> Option<&Table> {
        self.index.get(&oid).map(|&i| &self.catalog.tables[i])
    }

    /// Tenant tables (relations that hold rows), in catalog order.
    pub fn tenant_tables(&self) -> impl Iterator<Item = (&Table, &TenantTable)> {
        self.catalog
            .tables
            .iter()
            .filter_map(|t| self.tenant.get(&t.oid).map(|tt| (t, tt)))
    }

    /// The analysis context for a table (its model decides what reads the context).
    pub fn context<'a>(&'a self, tt: &'a TenantTable) -> Context<'a> {
        Context {
            column: tt.column.as_deref(),
            tenant_column: &self.config.tenant_column,
            settings: &self.settings,
            source_functions: &self.source_names,
            scoped_relations: &self.scoped_relations,
            identity_is_context: false,
        }
    }

    /// The analysis context for one table, under the model it follows.
    pub fn context_for<'a>(&'a self, table: &Table, tt: &'a TenantTable) -> Context<'a> {
        let mut cx = self.context(tt);
        cx.identity_is_context = self.detection.model_of(table.oid).identity_is_context();
        cx
    }

    /// Policies on a table that apply to the app.
    pub fn app_policies(&self, table: u32) -> impl Iterator<Item = &Policy> {
        self.catalog
            .policies
            .iter()
            .filter(move |p| p.table == table && p.applies_to_app)
    }

    /// Roles whose policies decide what the app sees: the app role and every role it can
    /// SET ROLE to, except superusers and BYPASSRLS roles (which skip policies, and are
    /// findings of their own).
    pub fn policy_roles(&self) -> impl Iterator<Item = &str> {
        self.catalog
            .app_roles
            .iter()
            .filter(|r| !r.superuser && !r.bypass_rls)
            .filter(|r| r.name == self.config.app_role || r.can_set)
            .map(|r| r.name.as_str())
    }

    /// The effective rules of `command` on a tenant table for the app role, for the USING
    /// side and (INSERT, UPDATE) the WITH CHECK side.
    pub fn effective<'a>(
        &'a self,
        table: &'a Table,
        tt: &'a TenantTable,
        command: Command,
        check_side: bool,
    ) -> Effective<'a> {
        self.effective_as(&self.config.app_role, table, tt, command, check_side)
    }

    /// Like [`Model::effective`], for `role` (the app or a role it can become).
    pub fn effective_as<'a>(
        &'a self,
        role: &str,
        table: &'a Table,
        tt: &'a TenantTable,
        command: Command,
        check_side: bool,
    ) -> Effective<'a> {
        let cx = self.context_for(table, tt);
        let mut eff = Effective {
            command,
            check_side,
            permissive: Vec::new(),
            restrictive: Vec::new(),
        };
        let policies = self
            .catalog
            .policies
            .iter()
            .filter(|p| p.table == table.oid && p.applies_to.iter().any(|r| r == role));
        for p in policies {
            if p.cmd != '*' && p.cmd != command.polcmd() {
                continue;
            }
            // Without WITH CHECK, ALL and UPDATE policies reuse USING; INSERT rejects all.
            let expr = if check_side {
                p.check.as_deref().or(if p.cmd == 'a' {
                    None
                } else {
                    p.using.as_deref()
                })
            } else {
                p.using.as_deref()
            };
            let analysis = expr.map(|e| predicate::analyse(e, &cx)).unwrap_or_default();
            let term = Term {
                policy: p,
                expr,
                analysis,
            };
            if p.permissive {
                eff.permissive.push(term);
            } else {
                eff.restrictive.push(term);
            }
        }
        eff
    }
}

fn names_of(catalog: &Catalog, oids: &HashSet<u32>) -> Vec<String> {
    let mut v = Vec::new();
    for f in catalog.functions.iter().filter(|f| oids.contains(&f.oid)) {
        v.push(format!("{}.{}", f.schema, f.name).to_lowercase());
        v.push(f.name.to_lowercase());
    }
    v.sort();
    v.dedup();
    v
}
