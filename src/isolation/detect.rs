//! Detects the tenancy model of each table from the text of its policies, and states
//! plainly what was assumed. A model given explicitly (`--tenancy`) wins: every table with
//! the model's column follows it, nothing is guessed.
//!
//! The signals, per table (policies' USING and WITH CHECK, lower-cased, and the bodies of
//! the functions they call):
//!
//! * `current_setting('<tenant setting>')` → the setting model;
//! * a JWT reader (`request.jwt.claim…`, `auth.uid()`, `auth.jwt()`): a subquery over
//!   another table → membership; the tenant column compared with a claim → JWT claim;
//!   no tenant column but a column compared with the caller → per-user (owner);
//! * another custom setting: the same three shapes with that setting as the source;
//! * `current_user`/`session_user` compared with the tenant column, or roles that are
//!   members of the app role (one per tenant) → role per tenant.
//!
//! A table whose policies read none of these is judged under the schema's main model
//! (that is how `USING (true)` is still a critical finding). A table whose policies call a
//! function that reads no context this module knows is *not modeled*, and says why.

use std::collections::HashMap;

use regex::Regex;
use serde::Serialize;

use super::{CallerSource, ClaimVia, TenancyModel, JWT_CLAIMS_SETTING};
use crate::audit::catalog::{Catalog, Table};
use crate::audit::AuditConfig;

/// The model one table follows, and the column that carries its tenant (or owner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableTenancy {
    /// The model.
    pub model: TenancyModel,
    /// The column compared with the context (`tenant_id`, `org_id`, `user_id`).
    pub column: String,
}

/// What detection (or the declaration) decided, per table.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    /// The main model: the one most tables follow (or the declared one).
    pub primary: TenancyModel,
    /// Given with `--tenancy` rather than detected.
    pub declared: bool,
    /// Tables with a model of their own, by oid.
    #[serde(skip)]
    pub tables: HashMap<u32, TableTenancy>,
    /// Tables with policies this cannot model, and why (`schema.name`, reason).
    pub not_modeled: Vec<(String, String)>,
    /// `schema.name` of tables per model word, for the statement.
    #[serde(skip)]
    followers: Vec<(String, String)>,
}

impl Detection {
    /// The plain statement of what was assumed: "the tenant context here is X; these
    /// tables follow it; these do not (reason)".
    pub fn statement(&self) -> String {
        let mut out = format!(
            "tenant context ({}): {}",
            if self.declared {
                "declared"
            } else {
                "detected"
            },
            self.primary.describe()
        );
        let mut by_model: Vec<(String, Vec<String>)> = Vec::new();
        for (model, table) in &self.followers {
            match by_model.iter_mut().find(|(m, _)| m == model) {
                Some((_, v)) => v.push(table.clone()),
                None => by_model.push((model.clone(), vec![table.clone()])),
            }
        }
        for (model, tables) in &by_model {
            out.push_str(&format!("\n  follow {model}: {}", tables.join(", ")));
        }
        for (t, why) in &self.not_modeled {
            out.push_str(&format!("\n  not modeled, not judged: {t} ({why})"));
        }
        out
    }

    /// The model a table follows (its own, else the primary).
    pub fn model_of(&self, oid: u32) -> &TenancyModel {
        self.tables
            .get(&oid)
            .map(|t| &t.model)
            .unwrap_or(&self.primary)
    }

    /// Whether `oid` was left unmodeled.
    pub fn is_modeled(&self, table: &Table) -> bool {
        !self.not_modeled.iter().any(|(n, _)| *n == table.display())
    }
}

struct Patterns {
    setting_read: Regex,
    claim: Regex,
    from: Regex,
    eq_uid: Regex,
    eq_uid_rev: Regex,
    eq_setting: Regex,
    eq_setting_rev: Regex,
    identity: Regex,
    call: Regex,
    quoted: Regex,
}

fn patterns() -> Option<Patterns> {
    Some(Patterns {
        setting_read: Regex::new(r"current_setting\(\s*'([^']+)'").ok()?,
        // `-> 'app_metadata' ->> 'org_id'` is the claim path app_metadata.org_id.
        claim: Regex::new(r"((?:->\s*'[^']+'(?:::text)?\s*\)?\s*)*)->>\s*'([^']+)'").ok()?,
        from: Regex::new(r#"\bfrom\s+([a-z0-9_."]+)"#).ok()?,
        eq_uid: Regex::new(r"([a-z_][a-z0-9_]*)\s*=\s*[\(\s]*(?:select\s+)?auth\.uid\(\)").ok()?,
        eq_uid_rev: Regex::new(
            r"auth\.uid\(\)(?:\s+as\s+\w+)?[\s\)]*=\s*[\(\s]*(?:[a-z_][a-z0-9_]*\.)?([a-z_][a-z0-9_]*)",
        )
        .ok()?,
        eq_setting_rev: Regex::new(
            r"current_setting\(\s*'([^']+)'[^=;]*?=\s*[\(\s]*(?:[a-z_][a-z0-9_]*\.)?([a-z_][a-z0-9_]*)",
        )
        .ok()?,
        eq_setting: Regex::new(
            r"([a-z_][a-z0-9_]*)\s*=\s*[\(\s]*(?:select\s+)?(?:nullif\s*\()?[\(\s]*current_setting\(\s*'([^']+)'",
        )
        .ok()?,
        identity: Regex::new(r"\b(current_user|session_user|current_role)\b").ok()?,
        call: Regex::new(r"([a-z_][a-z0-9_]*\.)?([a-z_][a-z0-9_]*)\s*\(").ok()?,
        quoted: Regex::new(r"'([^']+)'").ok()?,
    })
}

fn is_jwt_setting(s: &str) -> bool {
    s == JWT_CLAIMS_SETTING || s.starts_with("request.jwt.claim.")
}

/// Decides the model of every table of `catalog` (see the module docs).
pub fn detect(catalog: &Catalog, config: &AuditConfig) -> Detection {
    let default = TenancyModel::Setting {
        name: config.tenant_setting.clone(),
    };
    if let Some(model) = &config.tenancy {
        return declared(catalog, config, model.clone());
    }
    let Some(p) = patterns() else {
        return Detection {
            primary: default,
            declared: false,
            tables: HashMap::new(),
            not_modeled: Vec::new(),
            followers: Vec::new(),
        };
    };
    let tcol = config.tenant_column.as_str();
    let per_tenant_roles = !catalog.app_members.is_empty();
    let mut tables = HashMap::new();
    let mut not_modeled = Vec::new();
    let mut followers = Vec::new();
    let mut counts: Vec<(TenancyModel, usize)> = Vec::new();
    for t in catalog
        .tables
        .iter()
        .filter(|t| matches!(t.kind, 'r' | 'p' | 'f'))
    {
        let mut text = String::new();
        let mut called: Vec<String> = Vec::new();
        for pol in catalog.policies.iter().filter(|x| x.table == t.oid) {
            for e in [pol.using.as_deref(), pol.check.as_deref()]
                .into_iter()
                .flatten()
            {
                text.push_str(&e.to_lowercase());
                text.push('\n');
            }
            for f in catalog
                .functions
                .iter()
                .filter(|f| pol.functions.contains(&f.oid))
            {
                called.push(format!("{}.{}", f.schema, f.name));
                text.push_str(&f.source.to_lowercase());
                text.push('\n');
            }
        }
        if text.is_empty() {
            continue;
        }
        let settings: Vec<String> = p
            .setting_read
            .captures_iter(&text)
            .map(|c| c[1].to_string())
            .collect();
        let auth_fn = text.contains("auth.uid(") || text.contains("auth.jwt(");
        let jwt = auth_fn || settings.iter().any(|s| is_jwt_setting(s));
        let has_tcol = t.column(tcol).is_some();
        let via = if auth_fn {
            ClaimVia::AuthFunctions
        } else {
            ClaimVia::RequestJwtClaims
        };
        let other_setting = settings
            .iter()
            .find(|s| !is_jwt_setting(s) && !s.eq_ignore_ascii_case(&config.tenant_setting))
            .cloned();
        let found: Option<TableTenancy> = if settings
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&config.tenant_setting))
        {
            has_tcol.then(|| TableTenancy {
                model: default.clone(),
                column: tcol.to_string(),
            })
        } else if jwt || other_setting.is_some() {
            let caller = if jwt {
                CallerSource::Claim {
                    claim: "sub".into(),
                    via: via.clone(),
                }
            } else {
                CallerSource::Setting {
                    name: other_setting.clone().unwrap_or_default(),
                }
            };
            // The column compared with the caller (in a subquery or in the table itself).
            let user_col = p
                .eq_uid
                .captures(&text)
                .or_else(|| p.eq_uid_rev.captures(&text))
                .map(|c| c[1].to_string())
                .or_else(|| {
                    p.eq_setting
                        .captures_iter(&text)
                        .find(|c| jwt || Some(c[2].to_string()) == other_setting)
                        .map(|c| c[1].to_string())
                })
                .or_else(|| {
                    p.eq_setting_rev
                        .captures_iter(&text)
                        .find(|c| jwt || Some(c[1].to_string()) == other_setting)
                        .map(|c| c[2].to_string())
                });
            // The claims compared, as paths (`app_metadata.org_id`).
            let claims: Vec<String> = p
                .claim
                .captures_iter(&text)
                .map(|c| {
                    let mut path: Vec<String> = p
                        .quoted
                        .captures_iter(&c[1])
                        .map(|x| x[1].to_string())
                        .collect();
                    path.push(c[2].to_string());
                    path.join(".")
                })
                .collect();
            let tenant_claim = claims.iter().find(|c| *c != "sub").cloned();
            let membership = p.from.captures_iter(&text).find_map(|c| {
                let name = c[1].replace('"', "");
                let bare = name.rsplit('.').next().unwrap_or(&name).to_string();
                catalog
                    .tables
                    .iter()
                    .find(|x| {
                        x.oid != t.oid
                            && x.name == bare
                            && (!name.contains('.') || name.starts_with(&format!("{}.", x.schema)))
                            && x.column(tcol).is_some()
                    })
                    .map(|x| (x.display(), x))
            });
            match (has_tcol, membership) {
                (true, Some((mt, mtable))) => {
                    let user_column = user_col
                        .filter(|c| mtable.column(c).is_some())
                        .unwrap_or_else(|| "user_id".into());
                    Some(TableTenancy {
                        model: TenancyModel::Membership {
                            table: mt,
                            user_column,
                            tenant_column: tcol.to_string(),
                            caller,
                        },
                        column: tcol.to_string(),
                    })
                }
                (true, None)
                    if user_col
                        .as_deref()
                        .is_some_and(|c| c != tcol && t.column(c).is_some()) =>
                {
                    // e.g. a membership table itself: `user_id = auth.uid()`.
                    let c = user_col.clone().unwrap_or_default();
                    Some(TableTenancy {
                        model: TenancyModel::Owner {
                            user_column: c.clone(),
                            caller,
                        },
                        column: c,
                    })
                }
                (true, None) if jwt => {
                    let claim = tenant_claim.clone().unwrap_or_else(|| "sub".into());
                    Some(TableTenancy {
                        model: TenancyModel::JwtClaim { claim, via },
                        column: tcol.to_string(),
                    })
                }
                (true, None) => Some(TableTenancy {
                    model: TenancyModel::Setting {
                        name: other_setting.unwrap_or_default(),
                    },
                    column: tcol.to_string(),
                }),
                // A table without the tenant column compared with a *tenant* claim is the
                // tenant registry (found through foreign keys), not per-user rows.
                (false, _) if jwt && !text.contains("auth.uid(") && tenant_claim.is_some() => None,
                // Another setting that names a tenant, compared with a column of a table
                // without the configured tenant column: the setting model on that column.
                (false, _)
                    if !jwt
                        && other_setting.as_deref().is_some_and(|s| {
                            !["user", "uid", "sub", "member", "account"]
                                .iter()
                                .any(|w| s.contains(w))
                        }) =>
                {
                    user_col
                        .filter(|c| t.column(c).is_some())
                        .map(|c| TableTenancy {
                            model: TenancyModel::Setting {
                                name: other_setting.clone().unwrap_or_default(),
                            },
                            column: c,
                        })
                }
                (false, _) => user_col
                    .filter(|c| t.column(c).is_some())
                    .map(|c| TableTenancy {
                        model: TenancyModel::Owner {
                            user_column: c.clone(),
                            caller,
                        },
                        column: c,
                    }),
            }
        } else if has_tcol
            && p.identity.is_match(&text)
            && (identity_compared(&text, tcol) || (per_tenant_roles && text.contains("from ")))
        {
            Some(TableTenancy {
                model: TenancyModel::Role {
                    pattern: "{}".into(),
                },
                column: tcol.to_string(),
            })
        } else {
            // No context read at all: judged under the main model, unless the policies
            // call a function we cannot see into.
            let opaque: Vec<String> = p
                .call
                .captures_iter(&text)
                .filter_map(|c| {
                    let name = format!("{}{}", c.get(1).map(|m| m.as_str()).unwrap_or(""), &c[2]);
                    called
                        .iter()
                        .find(|f| {
                            f.to_lowercase() == name
                                || f.to_lowercase().ends_with(&format!(".{name}"))
                        })
                        .cloned()
                })
                .collect();
            if let Some(f) = opaque.first() {
                not_modeled.push((
                    t.display(),
                    format!("its policies call {f}(), which reads no tenant context this tool can model"),
                ));
            }
            None
        };
        if let Some(tt) = found {
            followers.push((tt.model.describe(), t.display()));
            match counts.iter_mut().find(|(m, _)| *m == tt.model) {
                Some((_, n)) => *n += 1,
                None => counts.push((tt.model.clone(), 1)),
            }
            tables.insert(t.oid, tt);
        }
    }
    // The main model: tenant-column models first (per-user tables sit beside them).
    let primary = counts
        .iter()
        .filter(|(m, _)| !matches!(m, TenancyModel::Owner { .. }))
        .max_by_key(|(_, n)| *n)
        .or_else(|| counts.iter().max_by_key(|(_, n)| *n))
        .map(|(m, _)| m.clone())
        .unwrap_or(default);
    Detection {
        primary,
        declared: false,
        tables,
        not_modeled,
        followers,
    }
}

fn declared(catalog: &Catalog, config: &AuditConfig, model: TenancyModel) -> Detection {
    let column = match &model {
        TenancyModel::Owner { user_column, .. } => user_column.clone(),
        TenancyModel::Membership { tenant_column, .. } => tenant_column.clone(),
        _ => config.tenant_column.clone(),
    };
    let mut tables = HashMap::new();
    let mut followers = Vec::new();
    for t in catalog
        .tables
        .iter()
        .filter(|t| matches!(t.kind, 'r' | 'p' | 'f') && t.column(&column).is_some())
    {
        followers.push((model.describe(), t.display()));
        tables.insert(
            t.oid,
            TableTenancy {
                model: model.clone(),
                column: column.clone(),
            },
        );
    }
    Detection {
        primary: model,
        declared: true,
        tables,
        not_modeled: Vec::new(),
        followers,
    }
}

/// Whether `text` compares the tenant column itself with `current_user` (or
/// `session_user`/`current_role`), in either order, casts allowed.
fn identity_compared(text: &str, tcol: &str) -> bool {
    let c = regex::escape(&tcol.to_lowercase());
    let id = r"(current_user|session_user|current_role)";
    [
        format!(r"(^|[^a-z0-9_]){c}\s*\)?(::\w+)?\s*=\s*[\(\s]*{id}"),
        format!(r"{id}\s*\)?(::\w+)?\s*=\s*[\(\s]*([a-z0-9_]+\.)?{c}([^a-z0-9_]|$)"),
    ]
    .iter()
    .any(|r| Regex::new(r).is_ok_and(|r| r.is_match(text)))
}

#[cfg(test)]
mod tests {
    use super::identity_compared;

    #[test]
    fn the_tenant_column_compared_with_the_role() {
        assert!(identity_compared(
            "(tenant_id = (current_user)::text)",
            "tenant_id"
        ));
        assert!(identity_compared(
            "((current_user)::text = docs.tenant_id)",
            "tenant_id"
        ));
        assert!(!identity_compared("(author = current_user)", "tenant_id"));
    }
}
