//! TG010–TG017: policy logic, judged per table × command on the combined effect of the
//! policies that apply to the app (`AND(restrictive) AND OR(permissive)`).

use super::{declare_rule, obj_policy, obj_table, tenant_predicate, Rule, Sink};
use crate::audit::{Model, Severity};
use crate::isolation::TenancyModel;
use crate::policy::{ident, Command};

declare_rule!(TG008 "tenancy-not-modeled" Info "A table's policies read a context the tenancy model cannot express; it is not judged");
declare_rule!(TG010 "permissive-ignores-tenant" Critical "A permissive policy does not restrict rows to the current tenant");
declare_rule!(TG011 "permissive-or-widened" Critical "A permissive policy ORs the tenant predicate with another condition");
declare_rule!(TG012 "permissive-policies-widen" Critical "Several permissive policies together are wider than the tenant predicate");
declare_rule!(TG014 "insert-check-not-scoped" High "INSERT's WITH CHECK does not constrain the tenant: rows can be planted in another tenant");
declare_rule!(TG015 "update-check-allows-tenant-change" High "UPDATE's WITH CHECK lets a row move to another tenant");
declare_rule!(TG013 "policy-for-public" Medium "A policy applies to PUBLIC instead of the app role");
declare_rule!(TG016 "insert-policy-without-check" Info "An INSERT policy without WITH CHECK rejects every insert");
declare_rule!(TG017 "writable-shared-rows" High "A write policy admits rows whose tenant column IS NULL");
declare_rule!(TG020 "fail-open-context" High "The predicate opens up when the tenant setting is missing or empty");
declare_rule!(TG027 "membership-self-grant" High "The app can write the membership table without a tenant check: a caller joins any tenant");

pub(super) fn check(model: &Model, sink: &mut Sink) {
    let app = ident(&model.config.app_role);
    membership_self_grant(model, sink);
    for (t, tt) in model.tenant_tables() {
        if !t.rls {
            continue;
        }
        if let Some((_, why)) = model
            .detection
            .not_modeled
            .iter()
            .find(|(n, _)| *n == t.display())
        {
            sink.add(
                &TG008,
                obj_table(t),
                format!("Not judged: {why}. The audit does not guess what such a policy allows; tenantguard probe attacks it."),
                "-- declare the tenancy model with --tenancy …, or check the policy function by hand".to_string(),
            );
            continue;
        }
        let qt = t.qualified();
        let col = tt
            .column
            .clone()
            .unwrap_or_else(|| model.config.tenant_column.clone());
        let pred = tenant_predicate(model, t.oid, &col);
        for p in model.app_policies(t.oid) {
            if p.public {
                sink.add(
                    &TG013,
                    obj_policy(p, t),
                    "The policy has no TO clause (PUBLIC), so it applies to every role, including ones added later; name the app role.",
                    format!("ALTER POLICY {} ON {qt} TO {app};", ident(&p.name)),
                );
            }
            if p.cmd == 'a' && p.check.is_none() {
                sink.add(
                    &TG016,
                    obj_policy(p, t),
                    "An INSERT policy without WITH CHECK rejects every insert on PostgreSQL 15; if inserts are meant to work, add the tenant check.",
                    format!("ALTER POLICY {} ON {qt} WITH CHECK {pred};", ident(&p.name)),
                );
            }
        }
        let sides = [
            (Command::Select, false),
            (Command::Update, false),
            (Command::Delete, false),
            (Command::Insert, true),
            (Command::Update, true),
        ];
        let roles: Vec<&str> = model.policy_roles().collect();
        for (role, (cmd, check_side)) in roles
            .iter()
            .flat_map(|r| sides.iter().map(move |s| (*r, *s)))
        {
            // Under another role the app has to SET ROLE first; say so in the object.
            let via = if role == model.config.app_role {
                String::new()
            } else {
                format!(" (after SET ROLE {role})")
            };
            let eff = model.effective_as(role, t, tt, cmd, check_side);
            if eff.scoped() {
                continue;
            }
            let has_priv = match cmd {
                Command::Select => t.privileges.select,
                Command::Insert => t.privileges.insert,
                Command::Update => t.privileges.update,
                Command::Delete => t.privileges.delete,
            };
            let lower = |s: Severity| if has_priv { s } else { Severity::Low };
            let some_scoped = eff
                .permissive
                .iter()
                .any(|x| x.expr.is_some() && x.analysis.scoped);
            let side = if check_side { "WITH CHECK" } else { "USING" };
            for term in eff
                .permissive
                .iter()
                .filter(|x| x.expr.is_some() && !x.analysis.scoped)
            {
                let p = term.policy;
                let a = &term.analysis;
                let expr = term.expr.unwrap_or_default();
                let obj = format!("{}{via}", obj_policy(p, t));
                let alter = if check_side {
                    format!("ALTER POLICY {} ON {qt} WITH CHECK {pred};", ident(&p.name))
                } else {
                    format!("ALTER POLICY {} ON {qt} USING {pred};", ident(&p.name))
                };
                if a.fail_open {
                    sink.add_at(
                        &TG020, lower(Severity::High),
                        obj,
                        format!(
                            "{side} {expr} admits rows when the tenant setting is missing or empty (IS NULL, '' or coalesce), so a request without tenant context sees every tenant."
                        ),
                        alter,
                    );
                } else if a.null_share && !a.always_true {
                    if cmd != Command::Select {
                        sink.add_at(
                            &TG017, lower(Severity::High),
                            obj,
                            format!(
                                "{side} {expr} admits rows whose tenant column IS NULL for {}: every tenant can create or change the shared rows (read-only sharing is fine).",
                                cmd.sql()
                            ),
                            format!(
                                "-- Keep shared rows readable only: restrict this policy to FOR SELECT, and add\nCREATE POLICY tenant_{} ON {qt} FOR {} TO {app} {} {pred};",
                                cmd.name(), cmd.sql(), if check_side { "WITH CHECK" } else { "USING" }
                            ),
                        );
                    }
                } else if check_side {
                    let how = if a.widened_by_or {
                        "ORs the tenant predicate with another condition"
                    } else {
                        "does not constrain the tenant column"
                    };
                    let (rule, why) = if cmd == Command::Insert {
                        (&TG014, format!("WITH CHECK {expr} {how}, so the app can insert rows into another tenant."))
                    } else {
                        (&TG015, format!("WITH CHECK {expr} {how}, so an UPDATE can move a row into another tenant."))
                    };
                    sink.add_at(rule, lower(Severity::High), obj, why, alter);
                } else if a.widened_by_or {
                    sink.add_at(
                        &TG011, lower(Severity::Critical),
                        obj,
                        format!(
                            "USING {expr} ORs the tenant predicate with another condition, so {} reaches other tenants' rows whenever that condition holds.",
                            cmd.sql()
                        ),
                        alter,
                    );
                } else if some_scoped {
                    sink.add_at(
                        &TG012, lower(Severity::Critical),
                        obj,
                        format!(
                            "Permissive policies are OR-ed: next to the tenant policy, USING {expr} opens {} to rows of every tenant.",
                            cmd.sql()
                        ),
                        format!(
                            "DROP POLICY {} ON {qt};\n-- or guard the table: CREATE POLICY tenant_guard ON {qt} AS RESTRICTIVE TO {app} USING {pred} WITH CHECK {pred};",
                            ident(&p.name)
                        ),
                    );
                } else {
                    sink.add_at(
                        &TG010, lower(Severity::Critical),
                        obj,
                        format!(
                            "USING {expr} does not compare the tenant column with the tenant setting, so {} reaches every tenant's rows{}.",
                            cmd.sql(),
                            guard_note(model, t, tt, role, cmd)
                        ),
                        alter,
                    );
                }
            }
        }
    }
}

/// When a restrictive tenant guard exists for other commands only (pitfalls item 8).
fn guard_note(
    model: &Model,
    t: &crate::audit::catalog::Table,
    tt: &crate::audit::model::TenantTable,
    role: &str,
    cmd: Command,
) -> String {
    let guarded: Vec<&str> = Command::ALL
        .iter()
        .filter(|c| **c != cmd)
        .filter(|c| {
            model
                .effective_as(role, t, tt, **c, **c == Command::Insert)
                .restrictive
                .iter()
                .any(|x| x.expr.is_some() && x.analysis.scoped)
        })
        .map(|c| c.sql())
        .collect();
    if guarded.is_empty() {
        String::new()
    } else {
        format!(
            " (the restrictive tenant guard covers only {}; UPDATE and DELETE without WHERE never consult SELECT policies)",
            guarded.join(", ")
        )
    }
}

/// TG027: under a membership model, the membership table decides who is in which tenant;
/// if the app can insert (or update) rows there without a check on the tenant column, a
/// caller can make itself a member of any tenant.
fn membership_self_grant(model: &Model, sink: &mut Sink) {
    for m in model.models() {
        let TenancyModel::Membership {
            table,
            tenant_column,
            ..
        } = m
        else {
            continue;
        };
        let Some(t) = model
            .catalog
            .tables
            .iter()
            .find(|t| t.display() == *table || t.name == *table)
        else {
            continue;
        };
        let Some(tt) = model.tenant.get(&t.oid) else {
            continue;
        };
        let qtcol = tenant_column.to_lowercase();
        for (cmd, held) in [
            (Command::Insert, t.privileges.insert),
            (Command::Update, t.privileges.update),
        ] {
            if !held || !t.rls {
                if held {
                    sink.add_at(
                        &TG027, Severity::Critical,
                        obj_table(t),
                        format!("The membership table has no row-level security and the app may {} it: any caller can make itself a member of any tenant.", cmd.sql()),
                        format!("ALTER TABLE {} ENABLE ROW LEVEL SECURITY;\nREVOKE INSERT, UPDATE ON {} FROM {};", t.qualified(), t.qualified(), ident(&model.config.app_role)),
                    );
                }
                continue;
            }
            let eff = model.effective(t, tt, cmd, true);
            if eff.denied() {
                continue;
            }
            let constrains = |x: &crate::audit::model::Term<'_>| {
                x.expr.is_some_and(|e| e.to_lowercase().contains(&qtcol))
            };
            let guarded = eff.restrictive.iter().any(constrains)
                || eff
                    .permissive
                    .iter()
                    .filter(|x| x.expr.is_some())
                    .all(constrains);
            if !guarded {
                sink.add(
                    &TG027,
                    obj_table(t),
                    format!(
                        "The membership table decides which tenants a caller belongs to, and {}'s WITH CHECK does not constrain {tenant_column}: a caller can make itself a member of any tenant and then reach all its rows.",
                        cmd.sql()
                    ),
                    format!(
                        "-- only existing admins of the tenant may add members, e.g.\nCREATE POLICY members_guard ON {} AS RESTRICTIVE FOR {} TO {} WITH CHECK ({} IN (SELECT … WHERE role = 'admin' AND user_id = <caller>));",
                        t.qualified(),
                        cmd.sql(),
                        ident(&model.config.app_role),
                        ident(tenant_column)
                    ),
                );
            }
        }
    }
}
