//! TG080–TG084: what breaks isolation's machinery or the sharding on Citus. None of them
//! is a leak (a missing context fails closed there too): they are why a Citus database
//! returns no rows, refuses writes, or sends every tenant query to every shard.

use std::collections::BTreeMap;

use super::{declare_rule, obj_table, Rule, Sink};
use crate::audit::citus::Placement;
use crate::audit::{Model, Severity};
use crate::policy::{ident, literal};

declare_rule!(TG080 "citus-set-config-context" Medium "On Citus, a function sets the tenant context with set_config, which never reaches the workers");
declare_rule!(TG081 "citus-no-set-propagation" Medium "On Citus, the app role's SET LOCAL of the context is not passed on to the workers");
declare_rule!(TG082 "citus-tenant-table-local" Medium "On Citus, a tenant table is not distributed");
declare_rule!(TG083 "citus-not-colocated-by-tenant" Medium "On Citus, a tenant table is distributed by another column or in another colocation group");
declare_rule!(TG084 "citus-reference-table-tenant-rows" Medium "On Citus, a reference table holds tenant rows");

pub(super) fn check(model: &Model, sink: &mut Sink) {
    let Some(citus) = model.catalog.citus.as_ref() else {
        return;
    };
    let tenant: Vec<_> = model
        .tenant_tables()
        .filter(|(t, tt)| matches!(t.kind, 'r' | 'p') && tt.column.is_some())
        .collect();
    let distributed = tenant.iter().any(|(t, _)| {
        matches!(
            citus.tables.get(&t.oid),
            Some(Placement::Distributed { .. })
        )
    });
    // The group most tenant tables distributed by their tenant column share: the one the
    // others should join.
    let mut groups: BTreeMap<i32, (usize, String)> = BTreeMap::new();
    for (t, tt) in &tenant {
        if let Some(Placement::Distributed { column, colocation }) = citus.tables.get(&t.oid) {
            if Some(column) == tt.column.as_ref() {
                let e = groups.entry(*colocation).or_insert((0, t.qualified()));
                e.0 += 1;
            }
        }
    }
    let main = groups
        .iter()
        // Most tables wins; on a tie the oldest group (lowest id).
        .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.0.cmp(a.0)))
        .map(|(g, (_, anchor))| (*g, anchor.clone()));

    if distributed && !model.settings.is_empty() {
        for f in &model.catalog.functions {
            let src = f.source.to_lowercase();
            if src.contains("set_config") && model.settings.iter().any(|s| src.contains(s.as_str()))
            {
                sink.add(
                    &TG080,
                    format!("function {}.{}({})", f.schema, f.name, f.args),
                    "It sets the tenant context with set_config(). Citus does not pass set_config on to the workers (only SET LOCAL, inside BEGIN … COMMIT, with citus.propagate_set_commands = 'local'), so on every distributed table the workers see no tenant: reads return no rows and writes are refused.",
                    format!(
                        "Set the context with SET LOCAL {} = '<tenant id>' inside the request's transaction block (SET takes no parameter: inline a validated id), and ALTER ROLE {} SET citus.propagate_set_commands = 'local';",
                        model.settings[0],
                        ident(&model.config.app_role)
                    ),
                );
            }
        }
        if !citus.app_propagates_set_local() {
            let now = match &citus.app_propagate_set {
                Some((v, source)) => format!("it is {v:?} (set for {source})"),
                None => "nothing sets it, so it is the default, 'none'".into(),
            };
            sink.add(
                &TG081,
                format!("role {}", model.config.app_role),
                format!("citus.propagate_set_commands must be 'local' for the app's sessions, or a SET LOCAL of the tenant context stays on the coordinator and every worker sees no tenant (no rows, refused writes); {now}."),
                format!(
                    "ALTER ROLE {} SET citus.propagate_set_commands = 'local';",
                    ident(&model.config.app_role)
                ),
            );
        }
    }
    if !distributed {
        return;
    }
    for (t, tt) in &tenant {
        let col = tt.column.as_deref().unwrap_or_default();
        let colocate = main
            .as_ref()
            .map(|(_, anchor)| format!(", colocate_with => {}", literal(anchor)))
            .unwrap_or_default();
        match citus.tables.get(&t.oid) {
            None | Some(Placement::CitusLocal) => sink.add(
                &TG082,
                obj_table(t),
                "It stays on the coordinator while the other tenant tables are sharded by tenant: the coordinator keeps every tenant's rows of it, and a query joining it with a distributed table cannot be routed to one shard.",
                format!(
                    "SELECT create_distributed_table({}, {}{colocate});",
                    literal(&t.qualified()),
                    literal(col)
                ),
            ),
            Some(Placement::Reference) => sink.add(
                &TG084,
                obj_table(t),
                format!("It has the tenant column {col:?} but is a reference table, copied in full to every node: every node holds every tenant's rows, and each write locks all of them."),
                format!(
                    "SELECT undistribute_table({0}); SELECT create_distributed_table({0}, {1}{colocate});",
                    literal(&t.qualified()),
                    literal(col)
                ),
            ),
            Some(Placement::Distributed { column, colocation }) => {
                if column != col {
                    sink.add(
                        &TG083,
                        obj_table(t),
                        format!("It is distributed by {column:?}, not by its tenant column {col:?}: one tenant's rows are spread over every shard, so no tenant query of it is routed to one shard."),
                        format!(
                            "SELECT alter_distributed_table({}, distribution_column := {}{});",
                            literal(&t.qualified()),
                            literal(col),
                            main.as_ref().map(|(_, a)| format!(", colocate_with := {}", literal(a))).unwrap_or_default()
                        ),
                    );
                } else if let Some((group, anchor)) = &main {
                    if colocation != group {
                        sink.add(
                            &TG083,
                            obj_table(t),
                            format!("It is distributed by {col:?} but in colocation group {colocation}, not with the other tenant tables (group {group}, e.g. {anchor}): a tenant's rows of it may sit on another node, so joins and foreign keys with them are not local to one shard."),
                            format!(
                                "SELECT update_distributed_table_colocation({}, colocate_with => {});",
                                literal(&t.qualified()),
                                literal(anchor)
                            ),
                        );
                    }
                }
            }
        }
    }
}

/// Whether Citus keeps this table distributed or replicated (its policies then cannot
/// hold a subquery: Citus refuses `(SELECT fn())` there).
pub(super) fn is_citus_table(model: &Model, table: u32) -> bool {
    model.catalog.citus.as_ref().is_some_and(|c| {
        matches!(
            c.tables.get(&table),
            Some(Placement::Distributed { .. } | Placement::Reference)
        )
    })
}
