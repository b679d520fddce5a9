//! `tenantguard probe` (the database probe) on Citus: the synthetic rows are committed
//! before the attacks and deleted after them, rows are identified by their key, the
//! context is carried with `SET LOCAL`. Each test has a distributed database of its own:
//! the probe proves the database unchanged by comparing row counts, which the other tests
//! (making tenants in the shared one) would move.

use tenantguard::audit::AuditConfig;
use tenantguard::outcome::Verdict;
use tenantguard::probe::{Attack, ProbeReport};

use crate::support::*;

async fn run_probe(cfg: &tokio_postgres::Config, config: &AuditConfig) -> ProbeReport {
    let mut db = connect(cfg).await.expect("own database");
    tenantguard::probe::probe(&mut db, config)
        .await
        .unwrap_or_else(|e| panic!("probe: {}", tenantguard::error_chain(&e)))
}

/// `tenantguard probe` through the CLI: its exit code and output.
fn cli(url: &str, app: &str) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenantguard"))
        .args(["probe", "--app-role", app])
        .env("DATABASE_URL", url)
        .output()
        .expect("run tenantguard");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn label(report: &ProbeReport, table: &str, attack: Attack) -> &'static str {
    report
        .cell(table, attack)
        .unwrap_or_else(|| panic!("no cell {table} {attack:?}:\n{}", report.text()))
        .label()
}

#[tokio::test]
async fn probe_attacks_every_cell_of_the_migrated_citus_schema_and_leaves_it_unchanged() {
    let Some(c) =
        citus("probe_attacks_every_cell_of_the_migrated_citus_schema_and_leaves_it_unchanged")
    else {
        return;
    };
    let (url, cfg) = c.own_database("tg_citus_probe").await;
    let mut db = connect(&cfg).await.expect("own database");
    tenantguard::schema::citus::migrate(&mut db, &policy(), "tenantguard_provisioner")
        .await
        .unwrap_or_else(|e| panic!("migrate --citus: {}", tenantguard::error_chain(&e)));
    // A real tenant's rows: a context that fell back to some tenant would show them.
    let _real = tenant(&db).await;
    let started = std::time::Instant::now();
    let report = run_probe(&cfg, &AuditConfig::default()).await;
    // Printed, not asserted: a measurement on a shared machine.
    eprintln!(
        "probe on Citus (11 tables, coordinator + 2 workers): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let text = report.text();
    assert_eq!(report.leaks(), 0, "{text}");
    assert!(report.unchanged(), "{text}");
    assert_eq!(report.tables.len(), 11, "{text}");
    assert_eq!(report.tables_attacked(), 11, "{text}");
    for t in &report.tables {
        for (a, cell) in &t.cells {
            // Every cell is either really attacked (blocked next to a control that
            // succeeded) or structurally n/a; none is inconclusive.
            match cell.verdict {
                Verdict::Blocked => assert!(
                    cell.control.is_some(),
                    "{} {a:?} blocked without a control: {text}",
                    t.table
                ),
                Verdict::NotApplicable => {}
                v => panic!("{} {a:?}: {v:?} {}\n{text}", t.table, cell.detail),
            }
        }
        assert_eq!(label(&report, &t.table, Attack::ReadOther), "blocked");
        assert_eq!(label(&report, &t.table, Attack::ReadUnset), "blocked");
        assert_eq!(label(&report, &t.table, Attack::ReadEmpty), "blocked");
    }
    // The write attacks ran on the distributed tables too.
    for a in [
        Attack::UpdateOther,
        Attack::DeleteOther,
        Attack::InsertOther,
        Attack::MoveToOther,
        Attack::ReferenceOther,
        Attack::UniqueOracle,
    ] {
        assert_eq!(
            label(&report, "public.tasks", a),
            "blocked",
            "{a:?}: {text}"
        );
    }
    assert!(
        report
            .connection
            .iter()
            .all(|c| c.cell.verdict == Verdict::Blocked),
        "{text}"
    );
    assert!(text.contains("SET LOCAL"), "{text}");
    // The CLI says the same with exit 0.
    let (code, out) = cli(&url, "tenantguard_app");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("11 of 11 table(s) attacked"), "{out}");
    assert!(out.contains("0 finding(s)"), "{out}");
    assert!(out.contains("database unchanged"), "{out}");
}

/// A tenant table's DDL: the tenant column, a key, a text column; RLS with `policy` (none
/// when `None`).
fn table(name: &str, policy: Option<&str>, app: &str) -> String {
    let rls = match policy {
        Some(p) => format!(
            "ALTER TABLE {name} ENABLE ROW LEVEL SECURITY;
             ALTER TABLE {name} FORCE ROW LEVEL SECURITY;
             CREATE POLICY p ON {name} {p};"
        ),
        None => String::new(),
    };
    format!(
        "CREATE TABLE {name} (tenant_id uuid NOT NULL, id uuid NOT NULL, body text NOT NULL,
           PRIMARY KEY (tenant_id, id));
         {rls}
         GRANT SELECT, INSERT, UPDATE, DELETE ON {name} TO {app};"
    )
}

const TENANT: &str = "NULLIF(current_setting('app.tenant_id', true), '')::uuid";

async fn schema(cfg: &tokio_postgres::Config, app: &str, tables: &[(&str, Option<String>, &str)]) {
    let db = connect(cfg).await.expect("own database");
    db.batch_execute(&format!(
        "CREATE ROLE {app} LOGIN;
         ALTER ROLE {app} SET citus.propagate_set_commands = 'local';"
    ))
    .await
    .unwrap_or_else(|e| panic!("role: {}", tenantguard::error_chain(&e)));
    for (name, policy, how) in tables {
        db.batch_execute(&table(name, policy.as_deref(), app))
            .await
            .unwrap_or_else(|e| panic!("{name}: {}", tenantguard::error_chain(&e)));
        let dist = match *how {
            "reference" => format!("SELECT create_reference_table('{name}')"),
            _ => format!("SELECT create_distributed_table('{name}', 'tenant_id')"),
        };
        db.batch_execute(&dist)
            .await
            .unwrap_or_else(|e| panic!("{dist}: {}", tenantguard::error_chain(&e)));
        // A real tenant's row in every table.
        db.batch_execute(&format!(
            "INSERT INTO {name} VALUES (gen_random_uuid(), gen_random_uuid(), 'real')"
        ))
        .await
        .unwrap_or_else(|e| panic!("{name} row: {}", tenantguard::error_chain(&e)));
    }
}

#[tokio::test]
async fn probe_finds_planted_leaks_on_citus_in_the_right_cells() {
    let Some(c) = citus("probe_finds_planted_leaks_on_citus_in_the_right_cells") else {
        return;
    };
    let (url, cfg) = c.own_database("tg_citus_probe_leaks").await;
    let app = "probe_leaks_app";
    let good = format!("USING (tenant_id = {TENANT}) WITH CHECK (tenant_id = {TENANT})");
    schema(
        &cfg,
        app,
        &[
            ("good", Some(good.clone()), "distributed"),
            (
                "open_policy",
                Some("USING (true) WITH CHECK (true)".into()),
                "distributed",
            ),
            ("no_rls", None, "distributed"),
            ("ref_good", Some(good.clone()), "reference"),
            ("ref_open", None, "reference"),
        ],
    )
    .await;
    // One row per tenant (the key is the tenant column alone), and a reference table whose
    // unique code spans every tenant (a distributed table's unique key must include the
    // distribution column; a reference table's need not).
    let db = connect(&cfg).await.expect("own database");
    db.batch_execute(&format!(
        "CREATE TABLE settings (tenant_id uuid PRIMARY KEY, theme text NOT NULL);
         CREATE TABLE ref_codes (tenant_id uuid NOT NULL, id uuid NOT NULL, code text NOT NULL UNIQUE,
           PRIMARY KEY (tenant_id, id));
         ALTER TABLE settings ENABLE ROW LEVEL SECURITY;
         ALTER TABLE ref_codes ENABLE ROW LEVEL SECURITY;
         CREATE POLICY p ON settings {good};
         CREATE POLICY p ON ref_codes {good};
         GRANT SELECT, INSERT, UPDATE, DELETE ON settings, ref_codes TO {app};
         SELECT create_distributed_table('settings', 'tenant_id');
         SELECT create_reference_table('ref_codes');"
    ))
    .await
    .unwrap_or_else(|e| panic!("settings, ref_codes: {}", tenantguard::error_chain(&e)));
    let config = AuditConfig {
        app_role: app.into(),
        ..AuditConfig::default()
    };
    let report = run_probe(&cfg, &config).await;
    let text = report.text();
    assert!(report.unchanged(), "{text}");
    for a in Attack::ALL {
        let l = label(&report, "public.settings", a);
        assert!(l == "blocked" || l == "n/a", "settings {a:?}: {l}\n{text}");
    }
    assert_eq!(
        label(&report, "public.settings", Attack::InsertOther),
        "blocked"
    );
    assert_eq!(
        label(&report, "public.ref_codes", Attack::UniqueOracle),
        "DISTINGUISHABLE",
        "{text}"
    );
    assert_eq!(
        label(&report, "public.ref_codes", Attack::ReadOther),
        "blocked"
    );
    for t in ["public.good", "public.ref_good"] {
        for a in Attack::ALL {
            let l = label(&report, t, a);
            assert!(l == "blocked" || l == "n/a", "{t} {a:?}: {l}\n{text}");
        }
        assert_eq!(label(&report, t, Attack::MoveToOther), "blocked", "{text}");
    }
    for t in ["public.open_policy", "public.no_rls"] {
        for a in [
            Attack::ReadOther,
            Attack::UpdateOther,
            Attack::DeleteOther,
            Attack::InsertOther,
            Attack::ReadUnset,
            Attack::ReadEmpty,
        ] {
            assert_eq!(label(&report, t, a), "LEAKED", "{t} {a:?}\n{text}");
        }
    }
    // The reference table holding tenant rows without RLS: every tenant reads and moves
    // every other's rows (Citus allows changing a reference table's tenant column).
    for a in [
        Attack::ReadOther,
        Attack::UpdateOther,
        Attack::DeleteOther,
        Attack::MoveToOther,
        Attack::ReadUnset,
    ] {
        assert_eq!(
            label(&report, "public.ref_open", a),
            "LEAKED",
            "{a:?}\n{text}"
        );
    }
    let (code, out) = cli(&url, app);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("LEAKED public.open_policy read_other"),
        "{out}"
    );
    assert!(out.contains("database unchanged"), "{out}");
}

#[tokio::test]
async fn probe_on_citus_is_inconclusive_where_it_cannot_attack() {
    let Some(c) = citus("probe_on_citus_is_inconclusive_where_it_cannot_attack") else {
        return;
    };
    let (url, cfg) = c.own_database("tg_citus_probe_keyless").await;
    let app = "probe_keyless_app";
    let good = format!("USING (tenant_id = {TENANT}) WITH CHECK (tenant_id = {TENANT})");
    schema(&cfg, app, &[("good", Some(good.clone()), "distributed")]).await;
    // A distributed table with no key: its shards' tableoid/ctid say nothing on the
    // coordinator, so the probe has no way to name its rows.
    let db = connect(&cfg).await.expect("own database");
    db.batch_execute(&format!(
        "CREATE TABLE keyless (tenant_id uuid NOT NULL, body text);
         ALTER TABLE keyless ENABLE ROW LEVEL SECURITY;
         CREATE POLICY p ON keyless {good};
         GRANT SELECT, INSERT, UPDATE, DELETE ON keyless TO {app};
         SELECT create_distributed_table('keyless', 'tenant_id');"
    ))
    .await
    .unwrap_or_else(|e| panic!("keyless: {}", tenantguard::error_chain(&e)));
    let config = AuditConfig {
        app_role: app.into(),
        ..AuditConfig::default()
    };
    let report = run_probe(&cfg, &config).await;
    let text = report.text();
    assert_eq!(report.leaks(), 0, "{text}");
    assert!(report.unchanged(), "{text}");
    for a in Attack::ALL {
        let cell = report.cell("public.keyless", a).expect("keyless cell");
        assert_eq!(cell.verdict, Verdict::Inconclusive, "{a:?}\n{text}");
        assert!(cell.detail.contains("no primary key"), "{}", cell.detail);
    }
    assert_eq!(label(&report, "public.good", Attack::ReadOther), "blocked");
    let (code, out) = cli(&url, app);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("1 of 2 table(s) attacked"), "{out}");
    assert!(out.contains("database unchanged"), "{out}");
}

#[tokio::test]
async fn a_probe_dropped_after_committing_its_rows_leaves_nothing_once_cleaned() {
    let Some(c) = citus("a_probe_dropped_after_committing_its_rows_leaves_nothing_once_cleaned")
    else {
        return;
    };
    let (_, cfg) = c.own_database("tg_citus_probe_cancel").await;
    let app = "probe_cancel_app";
    let good = format!("USING (tenant_id = {TENANT}) WITH CHECK (tenant_id = {TENANT})");
    schema(
        &cfg,
        app,
        &[
            ("good", Some(good.clone()), "distributed"),
            ("ref_good", Some(good), "reference"),
        ],
    )
    .await;
    let watcher = connect(&cfg).await.expect("own database");
    let before = tenantguard::probe::snapshot::take(&watcher, app, &[])
        .await
        .expect("snapshot");
    let count = async || -> i64 {
        watcher
            .query_one("SELECT count(*) FROM good", &[])
            .await
            .expect("count")
            .get(0)
    };
    let start = count().await;
    let config = AuditConfig {
        app_role: app.into(),
        ..AuditConfig::default()
    };
    let leftovers = tenantguard::probe::Leftovers::default();
    let mut db = connect(&cfg).await.expect("own database");
    // Drop the probe (as Ctrl-C does in the CLI) as soon as its synthetic rows are
    // committed, i.e. in the middle of its attacks.
    let dropped = tokio::select! {
        r = tenantguard::probe::probe_with(&mut db, &config, &leftovers) => {
            panic!("the probe finished before its committed rows were seen: {:?}", r.map(|r| r.summary()))
        }
        _ = async {
            while count().await == start {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        } => true,
    };
    assert!(dropped);
    drop(db);
    assert!(
        !leftovers.is_empty(),
        "the committed rows were not recorded"
    );
    assert_eq!(
        count().await,
        start + 2,
        "tenant A's and B's rows are committed"
    );
    let fresh = connect(&cfg).await.expect("own database");
    let failed = leftovers.clean(&fresh).await;
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(leftovers.is_empty());
    let after = tenantguard::probe::snapshot::take(&watcher, app, &[])
        .await
        .expect("snapshot");
    assert_eq!(before.diff(&after), Vec::<String>::new());
}
