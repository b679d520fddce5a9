//! `tenantguard probe` against the reference schema and the exploitable fixtures.

use tenantguard::outcome::Verdict;
use tenantguard::probe::{Attack, ProbeReport};

use crate::support::*;

pub async fn probe(db: &TestDb, config: &AuditConfig) -> ProbeReport {
    let mut su = db.superuser().await;
    tenantguard::probe::probe(&mut su, config)
        .await
        .unwrap_or_else(|e| panic!("probe: {}", tenantguard::error_chain(&e)))
}

#[tokio::test]
async fn reference_schema_has_no_leaks_and_is_left_unchanged() {
    let db = TestDb::new().await;
    let report = probe(&db, &AuditConfig::default()).await;
    eprintln!("{}", report.text());
    assert_eq!(report.leaks(), 0, "{}", report.text());
    assert!(report.unchanged(), "{}", report.text());
    // Every tenant table got rows and was attacked (nothing silently skipped).
    for t in &report.tables {
        assert_eq!(
            t.get(Attack::ReadOther).map(|o| o.label()),
            Some("blocked"),
            "{}",
            t.table
        );
    }
    assert_eq!(report.tables.len(), 11);
}

#[tokio::test]
async fn clean_prelude_has_no_leaks() {
    let fx = Fixture::load("clean").await;
    let report = probe(&fx.db, &fx.config()).await;
    assert_eq!(report.leaks(), 0, "{}", report.text());
    assert!(report.unchanged(), "{}", report.text());
}

/// The probe shows the planted weakness as LEAKED in the right cells, and only in tables
/// the fixture broke; the database is unchanged afterwards.
macro_rules! leaks {
    ($test:ident, $fixture:literal, $table:literal, [$($attack:ident),+]) => {
        #[tokio::test]
        async fn $test() {
            let fx = Fixture::load($fixture).await;
            let report = probe(&fx.db, &fx.config()).await;
            $(
                let cell = report.cell($table, Attack::$attack);
                assert!(
                    cell.is_some_and(|o| o.leaked()),
                    "{} {:?} is {:?}\n{}", $table, Attack::$attack, cell, report.text()
                );
            )+
            assert!(report.unchanged(), "{}", report.text());
        }
    };
}

leaks!(
    probe_rls_disabled,
    "rls_disabled",
    "public.leaky",
    [
        ReadOther,
        UpdateOther,
        DeleteOther,
        InsertOther,
        MoveToOther,
        ReadUnset
    ]
);
leaks!(
    probe_dormant_policies,
    "dormant_policies",
    "public.notes",
    [ReadOther, InsertOther]
);
leaks!(
    probe_app_owns_table,
    "app_owns_table",
    "public.notes",
    [ReadOther, DeleteOther]
);
leaks!(
    probe_permissive_true,
    "permissive_true",
    "public.docs",
    [
        ReadOther,
        UpdateOther,
        DeleteOther,
        InsertOther,
        MoveToOther,
        ReadEmpty
    ]
);
leaks!(
    probe_or_widened,
    "or_widened",
    "public.notes",
    [ReadOther, UpdateOther]
);
leaks!(
    probe_several_permissive,
    "several_permissive",
    "public.notes",
    [ReadOther]
);
leaks!(
    probe_insert_check_true,
    "insert_check_true",
    "public.notes",
    [InsertOther]
);
leaks!(
    probe_update_check_moves,
    "update_check_moves",
    "public.notes",
    [MoveToOther]
);
leaks!(
    probe_fail_open,
    "fail_open",
    "public.notes",
    [ReadUnset, ReadEmpty]
);
leaks!(
    probe_fail_open_coalesce,
    "fail_open_coalesce",
    "public.notes",
    [ReadUnset, ReadEmpty]
);
leaks!(
    probe_app_bypassrls,
    "app_bypassrls",
    "public.notes",
    [ReadOther]
);
leaks!(
    probe_truncate_granted,
    "truncate_granted",
    "public.notes",
    [Truncate]
);
leaks!(
    probe_fk_without_tenant,
    "fk_without_tenant",
    "public.replies",
    [ReferenceOther]
);
leaks!(
    probe_unique_without_tenant,
    "unique_without_tenant",
    "public.notes",
    [UniqueOracle]
);
leaks!(
    probe_unique_nullable_without_tenant,
    "unique_nullable_without_tenant",
    "public.notes",
    [UniqueOracle]
);
leaks!(
    probe_unprotected_partition,
    "unprotected_partition",
    "public.events_all",
    [ReadOther, ReadUnset]
);

#[tokio::test]
async fn one_argument_current_setting_fails_closed() {
    // TG021 is low because the probe shows it errors rather than leaks.
    let fx = Fixture::load("one_argument").await;
    let report = probe(&fx.db, &fx.config()).await;
    assert_eq!(report.leaks(), 0, "{}", report.text());
    let cell = report.cell("public.notes", Attack::ReadEmpty).unwrap();
    assert!(
        cell.verdict == Verdict::Blocked && cell.detail.contains("fails closed"),
        "{cell:?}"
    );
    assert!(cell.control.is_some(), "{cell:?}");
}

#[tokio::test]
async fn unsynthesizable_rows_make_attacks_inconclusive_with_the_reason() {
    // A table that could not be attacked is never a pass: inconclusive, and exit 3.
    let fx = Fixture::load("unsynthesizable").await;
    let report = probe(&fx.db, &fx.config()).await;
    for attack in Attack::ALL {
        let cell = report.cell("public.codes", attack).unwrap();
        assert!(
            cell.verdict == Verdict::Inconclusive && cell.detail.contains("CHECK"),
            "{attack:?}: {cell:?}"
        );
    }
    assert_eq!(report.status().code(), 3, "{}", report.text());
    // The other tables are still attacked.
    assert_eq!(
        report
            .cell("public.notes", Attack::ReadOther)
            .map(|o| o.label()),
        Some("blocked")
    );
    assert_eq!(report.leaks(), 0, "{}", report.text());
    assert!(report.unchanged());
}

#[tokio::test]
async fn custom_column_and_setting_names() {
    let fx = Fixture::load("standalone_custom_names").await;
    let config = AuditConfig {
        app_role: fx.app.clone(),
        tenant_column: "org_id".into(),
        tenant_setting: "app.current_tenant_id".into(),
        schemas: vec!["public".into()],
        tenancy: None,
    };
    let report = probe(&fx.db, &config).await;
    assert_eq!(report.leaks(), 0, "{}", report.text());
    assert_eq!(
        report
            .cell("public.items", Attack::ReadOther)
            .map(|o| o.label()),
        Some("blocked"),
        "{}",
        report.text()
    );
    assert_eq!(
        report
            .cell("public.items", Attack::InsertOther)
            .map(|o| o.label()),
        Some("blocked"),
        "{}",
        report.text()
    );
    let findings = audit(&fx.db, &config).await;
    assert!(
        findings.iter().all(|f| f.severity < Severity::High),
        "{}",
        dump(&findings)
    );
    // Declared with the wrong setting name (a declaration wins over detection), every
    // policy ignores "the" tenant: the audit says so.
    let wrong = AuditConfig {
        tenant_setting: "app.tenant_id".into(),
        tenancy: Some(tenantguard::isolation::TenancyModel::Setting {
            name: "app.tenant_id".into(),
        }),
        ..config.clone()
    };
    let findings = audit(&fx.db, &wrong).await;
    expect(&findings, "TG010", "\"items_all\" on public.items");
}

#[tokio::test]
async fn the_snapshot_notices_a_change() {
    // The "unchanged" proof can fail: one inserted row is a difference.
    let fx = Fixture::load("clean").await;
    let su = fx.db.superuser().await;
    let before = tenantguard::probe::snapshot::take(&su, &fx.app, &[])
        .await
        .unwrap();
    su.batch_execute("INSERT INTO tenants (name) VALUES ('x')")
        .await
        .unwrap();
    let after = tenantguard::probe::snapshot::take(&su, &fx.app, &[])
        .await
        .unwrap();
    let diff = before.diff(&after);
    assert_eq!(diff.len(), 1, "{diff:?}");
    assert!(
        diff[0].starts_with("rows public.tenants: 0 -> 1"),
        "{diff:?}"
    );
}

#[tokio::test]
async fn audit_changes_nothing() {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let before = tenantguard::probe::snapshot::take(&su, "tenantguard_app", &[])
        .await
        .unwrap();
    audit(&db, &AuditConfig::default()).await;
    let after = tenantguard::probe::snapshot::take(&su, "tenantguard_app", &[])
        .await
        .unwrap();
    assert!(before.diff(&after).is_empty(), "{:?}", before.diff(&after));
}
leaks!(
    probe_owner_rights_view,
    "owner_rights_view",
    "public.all_notes",
    [ReadOther, ReadUnset, ReadEmpty]
);
leaks!(
    probe_matview,
    "matview_readable",
    "public.note_copies",
    [ReadOther]
);

#[tokio::test]
async fn a_security_invoker_view_is_blocked() {
    let fx = Fixture::load("clean").await;
    fx.db
        .superuser()
        .await
        .batch_execute(&format!(
            "CREATE VIEW safe_notes WITH (security_invoker = true) AS SELECT tenant_id, id FROM notes;
             GRANT SELECT ON safe_notes TO \"{}\"",
            fx.app
        ))
        .await
        .unwrap();
    let report = probe(&fx.db, &fx.config()).await;
    assert_eq!(
        report
            .cell("public.safe_notes", Attack::ReadOther)
            .map(|o| o.label()),
        Some("blocked"),
        "{}",
        report.text()
    );
    assert_eq!(report.leaks(), 0, "{}", report.text());
    let findings = audit(&fx.db, &fx.config()).await;
    assert!(
        !findings.iter().any(|f| f.rule == "TG040"),
        "{}",
        dump(&findings)
    );
}
leaks!(
    probe_set_role_policy,
    "set_role_policy",
    "public.notes",
    [ReadOther]
);
leaks!(
    probe_app_superuser,
    "app_superuser",
    "public.notes",
    [ReadOther]
);

#[tokio::test]
async fn probe_partial_guard_reads_blocked_writes_leak() {
    let fx = Fixture::load("partial_guard").await;
    let report = probe(&fx.db, &fx.config()).await;
    let label = |a| {
        report
            .cell("public.docs", a)
            .map(|o: &tenantguard::probe::Cell| o.label())
    };
    assert_eq!(
        label(Attack::ReadOther),
        Some("blocked"),
        "{}",
        report.text()
    );
    assert_eq!(
        label(Attack::UpdateOther),
        Some("LEAKED"),
        "{}",
        report.text()
    );
    assert_eq!(
        label(Attack::DeleteOther),
        Some("LEAKED"),
        "{}",
        report.text()
    );
    let findings = audit(&fx.db, &fx.config()).await;
    let f = expect(&findings, "TG010", "\"docs_all\" on public.docs");
    assert!(f.why.contains("covers only SELECT"), "{}", f.why);
}
leaks!(
    probe_fail_open_helper,
    "fail_open_helper",
    "public.notes",
    [ReadUnset, ReadEmpty]
);

/// The connection check calls the schema's own context helpers as the app.
async fn helper_check(fixture: &str, helper: &str) -> tenantguard::probe::Cell {
    let fx = Fixture::load(fixture).await;
    let report = probe(&fx.db, &fx.config()).await;
    assert!(report.unchanged(), "{}", report.text());
    report
        .connection
        .iter()
        .find(|c| c.check.contains(helper))
        .unwrap_or_else(|| panic!("no check of {helper}:\n{}", report.text()))
        .cell
        .clone()
}

#[tokio::test]
async fn probe_reports_a_helper_whose_setting_outlives_the_transaction() {
    let c = helper_check("session_scoped", "public.set_tenant").await;
    assert_eq!(c.verdict, Verdict::Leaked, "{c:?}");
    assert!(c.detail.contains("outlives the transaction"), "{c:?}");
}

#[tokio::test]
async fn probe_reports_a_helper_that_mints_context_for_a_made_up_secret() {
    let c = helper_check("definer_mints_context", "public.login_as").await;
    assert_eq!(c.verdict, Verdict::Leaked, "{c:?}");
    assert!(c.detail.contains("made-up secret"), "{c:?}");
}

#[tokio::test]
async fn a_view_that_filters_by_the_tenant_is_blocked() {
    let fx = Fixture::load("filtering_view").await;
    let report = probe(&fx.db, &fx.config()).await;
    let c = report.cell("public.my_notes", Attack::ReadOther).unwrap();
    assert_eq!(c.verdict, Verdict::Blocked, "{}", report.text());
    assert!(c.control.is_some());
    assert_eq!(report.status().code(), 0, "{}", report.text());
}
