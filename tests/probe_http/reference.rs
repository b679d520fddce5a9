//! The reference server: every attack blocked, nothing inconclusive, exit 0.

use tenantguard::outcome::{RunStatus, Verdict};
use tenantguard::probe::http::{self, Attack};

use crate::support::{config, findings, RefServer, ADMIN_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_server_is_clean() {
    let server = RefServer::start().await;
    let token = secrecy::SecretString::from(ADMIN_TOKEN.to_string());
    let a = http::provision(&server.base, &token, "probe A")
        .await
        .expect("A");
    let b = http::provision(&server.base, &token, "probe B")
        .await
        .expect("B");
    let mut cfg = config(&server.base, "X-Placeholder: 1", "X-Placeholder: 1");
    cfg.tenant_a = a.credentials;
    cfg.tenant_b = b.credentials;
    cfg.tenant_a_id = Some(a.id);
    cfg.tenant_b_id = Some(b.id);
    let report = http::probe_http(&cfg).await.expect("probe");
    println!("{}", report.text());
    assert!(findings(&report).is_empty(), "{:#?}", findings(&report));
    let t = report.tally();
    assert_eq!(t.inconclusive, 0, "{}", report.text());
    assert_eq!(report.status(), RunStatus::Clean);
    // It really attacked: reads, writes and references on the nested chain.
    for (c, a) in [
        ("/v1/tasks", Attack::Get),
        ("/v1/tasks", Attack::Patch),
        ("/v1/tasks", Attack::Delete),
        ("/v1/tasks", Attack::CreateRef),
        ("/v1/tasks", Attack::Filter),
        ("/v1/comments", Attack::CreateRef),
        ("/v1/invoices", Attack::Unique),
        ("/v1/projects", Attack::Cursor),
        ("/v1/audit-log", Attack::Get),
    ] {
        assert_eq!(
            report.cell(c, a).map(|x| x.verdict),
            Some(Verdict::Blocked),
            "{c} {a:?}: {:?}",
            report.cell(c, a)
        );
    }
    server.stop().await;
}

/// The CLI end to end: `--provision`, JSON valid against the committed schema, SARIF valid
/// against the SARIF schema audit's tests use, exit 0; and the bare `probe` still parses
/// as the database probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_provisions_and_prints_valid_json_and_sarif() {
    let server = RefServer::start().await;
    let bin = env!("CARGO_BIN_EXE_tenantguard");
    let run = |format: &'static str| {
        let base = server.base.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(bin)
                .args([
                    "probe",
                    "http",
                    "--base",
                    &base,
                    "--provision",
                    "--rate",
                    "0",
                    "--format",
                    format,
                ])
                .env("TENANTGUARD_ADMIN_TOKEN", ADMIN_TOKEN)
                .env_remove("TENANTGUARD_PROBE_TENANT_A")
                .env_remove("TENANTGUARD_PROBE_TENANT_B")
                .output()
                .expect("run")
        })
    };
    let out = run("json").await.expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    crate::support::validate(&doc);
    assert_eq!(doc["exit_code"], 0);
    assert!(
        doc["summary"]["attacked"].as_u64().unwrap_or(0) > 50,
        "{doc}"
    );
    assert!(
        !stdout.contains("tgk_"),
        "an API key leaked into the report"
    );
    let out = run("sarif").await.expect("join");
    assert_eq!(out.status.code(), Some(0));
    let sarif: serde_json::Value = serde_json::from_slice(&out.stdout).expect("sarif");
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../audit/schemas/sarif-github.schema.json"))
            .expect("sarif schema");
    let v = jsonschema::validator_for(&schema).expect("compile");
    assert!(v.is_valid(&sarif), "{sarif}");
    assert_eq!(
        sarif["runs"][0]["results"].as_array().map(Vec::len),
        Some(0)
    );
    // Without credentials: a usage error (2) that names the variable.
    let base = server.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(["probe", "http", "--base", &base])
            .env_remove("TENANTGUARD_PROBE_TENANT_A")
            .output()
            .expect("run")
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TENANTGUARD_PROBE_TENANT_A"));
    server.stop().await;
}
