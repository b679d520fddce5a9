//! The `tenantguard audit` and `probe` binaries: exit codes, output formats validated
//! against their schemas, and baselines.

use std::process::Output;

use serde_json::Value;

use crate::support::*;

async fn run(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantguard"))
        .args(&args)
        .env_remove("DATABASE_URL")
        .output()
        .await
        .expect("run tenantguard")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn schema(name: &str) -> jsonschema::Validator {
    let path = format!("{}/tests/audit/schemas/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

fn assert_valid(v: &jsonschema::Validator, doc: &Value) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
}

async fn audit_fixture(fx: &Fixture, extra: &[&str]) -> Output {
    let url = fx.db.superuser_url();
    let mut args = vec!["audit", "--database-url", &url, "--app-role", &fx.app];
    args.extend_from_slice(extra);
    run(&args).await
}

#[tokio::test]
async fn reference_schema_exits_zero() {
    let db = TestDb::new().await;
    let o = run(&["audit", "--database-url", &db.superuser_url()]).await;
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("ok (nothing at or above high)"),
        "{}",
        stdout(&o)
    );
}

#[tokio::test]
async fn fail_on_sets_the_threshold() {
    // not_forced has a low finding only.
    let fx = Fixture::load("not_forced").await;
    let o = audit_fixture(&fx, &[]).await;
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stdout(&o).contains("TG004"));
    let o = audit_fixture(&fx, &["--fail-on", "low"]).await;
    assert_eq!(code(&o), 1, "{}", stdout(&o));
}

#[tokio::test]
async fn json_output_matches_its_schema() {
    let fx = Fixture::load("permissive_true").await;
    let o = audit_fixture(&fx, &["--format", "json"]).await;
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let doc: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_valid(&schema("audit.schema.json"), &doc);
    assert_eq!(doc["failed"], true);
    let rules: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"TG010"), "{rules:?}");
    assert!(doc["summary"]["critical"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn the_json_schema_rejects_a_malformed_report() {
    // The schema is strict enough to fail: a finding without a fix, an unknown severity.
    let v = schema("audit.schema.json");
    let fx = Fixture::load("rls_disabled").await;
    let o = audit_fixture(&fx, &["--format", "json"]).await;
    let mut doc: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_valid(&v, &doc);
    doc["findings"][0].as_object_mut().unwrap().remove("fix");
    assert!(!v.is_valid(&doc));
    let mut doc: Value = serde_json::from_str(&stdout(&o)).unwrap();
    doc["findings"][0]["severity"] = "urgent".into();
    assert!(!v.is_valid(&doc));
}

#[tokio::test]
async fn sarif_output_matches_the_github_subset_schema() {
    let fx = Fixture::load("permissive_true").await;
    let o = audit_fixture(&fx, &["--format", "sarif"]).await;
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let doc: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_valid(&schema("sarif-github.schema.json"), &doc);
    // Optionally against the official OASIS schema, when a copy is provided.
    if let Ok(path) = std::env::var("SARIF_SCHEMA") {
        let official: Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_valid(&jsonschema::validator_for(&official).unwrap(), &doc);
    }
    let results = doc["runs"][0]["results"].as_array().unwrap();
    assert!(results
        .iter()
        .any(|r| r["ruleId"] == "TG010" && r["level"] == "error"));
    // Every result's ruleIndex points at its rule.
    let rules = doc["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    for r in results {
        let i = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[i]["id"], r["ruleId"]);
    }
}

#[tokio::test]
async fn baseline_accepts_known_findings_and_fails_on_new_ones() {
    let fx = Fixture::load("rls_disabled").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("baseline.json");
    let file = file.to_str().unwrap();
    let o = audit_fixture(&fx, &["--write-baseline", file]).await;
    assert_eq!(
        code(&o),
        1,
        "writing a baseline still reports: {}",
        stdout(&o)
    );
    let o = audit_fixture(&fx, &["--baseline", file, "--format", "json"]).await;
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let doc: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(doc["summary"]["total"], 0);
    assert!(doc["summary"]["suppressed"].as_u64().unwrap() >= 1);
    // A new weakness is not covered by the baseline.
    fx.db
        .superuser()
        .await
        .batch_execute(&format!("GRANT TRUNCATE ON notes TO \"{}\"", fx.app))
        .await
        .unwrap();
    let o = audit_fixture(&fx, &["--baseline", file, "--format", "json"]).await;
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let doc: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let new: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(new, vec!["TG033:table public.notes"]);
}

#[tokio::test]
async fn usage_and_connection_errors_exit_two() {
    let o = run(&[
        "audit",
        "--database-url",
        "postgresql://nobody@127.0.0.1:1/none",
    ])
    .await;
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("cannot connect"), "{}", stderr(&o));
    let o = run(&["audit", "--database-url", "not a url ::"]).await;
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let o = run(&[
        "audit",
        "--database-url",
        "postgresql://x@127.0.0.1/x",
        "--fail-on",
        "urgent",
    ])
    .await;
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let db = TestDb::new().await;
    let o = run(&[
        "audit",
        "--database-url",
        &db.superuser_url(),
        "--app-role",
        "no_such_role_here",
    ])
    .await;
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    let o = run(&[
        "audit",
        "--database-url",
        &db.superuser_url(),
        "--baseline",
        "/nonexistent/b.json",
    ])
    .await;
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("baseline"), "{}", stderr(&o));
}

#[tokio::test]
async fn probe_cli_reports_leaks_with_exit_one_and_valid_json() {
    let fx = Fixture::load("rls_disabled").await;
    let url = fx.db.superuser_url();
    let o = run(&["probe", "--database-url", &url, "--app-role", &fx.app]).await;
    assert_eq!(code(&o), 1, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("LEAKED public.leaky read_other"),
        "{}",
        stdout(&o)
    );
    let o = run(&[
        "probe",
        "--database-url",
        &url,
        "--app-role",
        &fx.app,
        "--format",
        "json",
    ])
    .await;
    let doc: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_valid(&schema("probe.schema.json"), &doc);
    assert_eq!(doc["unchanged"], true);
    assert!(doc["leaks"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn probe_cli_on_the_reference_schema_exits_zero() {
    let db = TestDb::new().await;
    let o = run(&[
        "probe",
        "--database-url",
        &db.superuser_url(),
        "--app-role",
        "tenantguard_app",
    ])
    .await;
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("11 of 11 table(s) attacked; 0 finding(s)"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains(" 0 inconclusive"), "{}", stdout(&o));
}

#[tokio::test]
async fn probe_interrupted_by_ctrl_c_leaves_nothing_behind() {
    let fx = Fixture::load("clean").await;
    let su = fx.db.superuser().await;
    let before = tenantguard::probe::snapshot::take(&su, &fx.app, &[])
        .await
        .unwrap();
    // EXCLUSIVE lets the snapshot count `notes` but makes the probe's insert wait, after it
    // has already inserted its synthetic tenants.
    let mut locker = fx.db.superuser().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE notes IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantguard"))
        .args([
            "probe",
            "--database-url",
            &fx.db.superuser_url(),
            "--app-role",
            &fx.app,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let waiting = "SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND wait_event_type = 'Lock'";
    let mut seen = false;
    for _ in 0..80 {
        if su.query_one(waiting, &[]).await.unwrap().get::<_, i64>(0) > 0 {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seen, "the probe never waited on the lock");
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(code(&out), 2, "{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    lock.rollback().await.unwrap();
    // The server ends the probe's session; its inserts are gone.
    let others = "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
                    AND state <> 'idle'";
    for _ in 0..100 {
        if su.query_one(others, &[]).await.unwrap().get::<_, i64>(0) == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let after = tenantguard::probe::snapshot::take(&su, &fx.app, &[])
        .await
        .unwrap();
    assert!(before.diff(&after).is_empty(), "{:?}", before.diff(&after));
}

#[tokio::test]
async fn a_probe_that_can_attack_nothing_exits_three() {
    // "0 findings" over zero attacked cells is never a pass.
    let fx = Fixture::load("standalone_nothing_to_attack").await;
    let url = fx.db.superuser_url();
    let o = run(&["probe", "--database-url", &url, "--app-role", &fx.app]).await;
    assert_eq!(code(&o), 3, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("0 of 1 table(s) attacked; 0 finding(s)"),
        "{}",
        stdout(&o)
    );
    let o = run(&[
        "probe",
        "--database-url",
        &url,
        "--app-role",
        &fx.app,
        "--format",
        "json",
    ])
    .await;
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let doc: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_valid(&schema("probe.schema.json"), &doc);
    assert_eq!(doc["status"], "inconclusive");
    assert_eq!(doc["summary"]["tables_attacked"], 0);
}

#[tokio::test]
async fn a_declared_tenancy_model_wins_and_is_stated() {
    let fx = Fixture::load_variant("standalone_postgrest", None).await;
    let o = audit_fixture(&fx, &["--tenancy", "jwt-claim", "--claim", "tenant_id"]).await;
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).starts_with("tenant context (declared): the JWT claim \"tenant_id\""),
        "{}",
        stdout(&o)
    );
    // Declared as the setting model, the same policies ignore "the" tenant.
    let o = audit_fixture(&fx, &["--tenancy", "setting", "--format", "json"]).await;
    assert_eq!(code(&o), 1, "{}{}", stdout(&o), stderr(&o));
    let doc: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_valid(&schema("audit.schema.json"), &doc);
    assert_eq!(doc["tenancy"]["declared"], true);
    assert_eq!(doc["tenancy"]["primary"]["model"], "setting");
    // A membership model needs its table.
    let o = audit_fixture(&fx, &["--tenancy", "membership"]).await;
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--membership-table"), "{}", stderr(&o));
    // The probe takes the same flags and sets its callers up that way.
    let url = fx.db.superuser_url();
    let o = run(&[
        "probe",
        "--database-url",
        &url,
        "--app-role",
        &fx.app,
        "--tenancy",
        "jwt-claim",
        "--claim",
        "tenant_id",
    ])
    .await;
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
}
