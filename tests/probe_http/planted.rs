//! The two test servers, each once correct and once with each planted bug: every bug is
//! caught in the cell it belongs to, and the correct servers give no finding.

use tenantguard::outcome::{RunStatus, Verdict};
use tenantguard::probe::http::{self, Attack};

use crate::servers::{intapi, nested, Bug, Served, BUGS};
use crate::support::{config, findings};

/// Where each bug must show up, on each server: (collection, attack, verdict).
fn expected(server: &str, bug: Bug) -> (&'static str, Attack, Verdict) {
    use Attack::*;
    use Verdict::*;
    match (server, bug) {
        ("intapi", Bug::GetIgnoresTenant) => ("/tasks", Get, Leaked),
        ("intapi", Bug::WriteIgnoresTenant) => ("/tasks", Patch, Leaked),
        ("intapi", Bug::DeleteIgnoresTenant) => ("/tasks", Delete, Leaked),
        ("intapi", Bug::WriteApplies404) => ("/tasks", Patch, Leaked),
        ("intapi", Bug::ChildUnderForeignParent) => ("/tasks", CreateRef, Leaked),
        ("intapi", Bug::ListFilterCrosses) => ("/tasks", Filter, Leaked),
        ("intapi", Bug::Oracle403) => ("/tasks", Get, Distinguishable),
        ("intapi", Bug::BodyTenantHonoured) => ("/tasks", TenantBody, Leaked),
        ("intapi", Bug::UniqueAcrossTenants) => ("", List, Blocked),
        (_, Bug::GetIgnoresTenant) => ("/projects/{projectId}/notes", Get, Leaked),
        (_, Bug::WriteIgnoresTenant) => ("/projects/{projectId}/notes", Put, Leaked),
        (_, Bug::DeleteIgnoresTenant) => ("/projects/{projectId}/notes", Delete, Leaked),
        (_, Bug::WriteApplies404) => ("/projects/{projectId}/notes", Put, Leaked),
        (_, Bug::ChildUnderForeignParent) => ("/projects/{projectId}/notes", CreateRef, Leaked),
        (_, Bug::ListFilterCrosses) => ("/projects/{projectId}/notes", Nested, Leaked),
        (_, Bug::Oracle403) => ("/projects/{projectId}/notes", Get, Distinguishable),
        (_, Bug::BodyTenantHonoured) => ("/projects", TenantBody, Leaked),
        (_, Bug::UniqueAcrossTenants) => ("/projects", Unique, Distinguishable),
    }
}

async fn probe(server: &str, bug: Option<Bug>) -> tenantguard::probe::http::HttpReport {
    let (app, a, b, openapi) = match server {
        "intapi" => (intapi::app(bug), intapi::KEY_A, intapi::KEY_B, None),
        _ => (
            nested::app(bug),
            nested::TOKEN_A,
            nested::TOKEN_B,
            Some("/openapi.yaml"),
        ),
    };
    let served = Served::start(app).await;
    let mut cfg = config(&served.base, a, b);
    cfg.openapi = openapi.map(|p| format!("{}{p}", served.base));
    let report = http::probe_http(&cfg).await.expect("probe");
    served.stop().await;
    report
}

async fn every_bug_caught(server: &str) {
    let clean = probe(server, None).await;
    assert!(
        findings(&clean).is_empty(),
        "{server} correct: {:#?}\n{}",
        findings(&clean),
        clean.text()
    );
    assert_eq!(
        clean.status(),
        RunStatus::Clean,
        "{server} correct:\n{}",
        clean.text()
    );
    let mut missed = Vec::new();
    for bug in BUGS {
        let (collection, attack, verdict) = expected(server, bug);
        if collection.is_empty() {
            continue; // not planted on this server
        }
        let report = probe(server, Some(bug)).await;
        let got = report.cell(collection, attack).map(|c| c.verdict);
        if got != Some(verdict) || report.status() != RunStatus::Findings {
            missed.push(format!(
                "{bug:?}: {collection} {} is {got:?}, wanted {verdict:?}\n{}",
                attack.name(),
                report.text()
            ));
        }
    }
    assert!(missed.is_empty(), "{server}: {}", missed.join("\n\n"));
}

#[tokio::test]
async fn intapi_integer_ids_and_envelopes() {
    every_bug_caught("intapi").await;
}

#[tokio::test]
async fn nested_routes_put_and_cursors() {
    every_bug_caught("nested").await;
}

/// A rate-limited API: every 40th request is 429 with `Retry-After: 1`; the probe waits
/// and retries, and the run is as clean as without the limit (and POST /tasks, which
/// requires the documented Idempotency-Key, still works).
#[tokio::test]
async fn honours_429_retry_after_and_idempotency_keys() {
    let served = Served::start(intapi::app_limited(None, 40)).await;
    let cfg = config(&served.base, intapi::KEY_A, intapi::KEY_B);
    let started = std::time::Instant::now();
    let report = http::probe_http(&cfg).await.expect("probe");
    served.stop().await;
    assert!(findings(&report).is_empty(), "{}", report.text());
    assert_eq!(report.status(), RunStatus::Clean, "{}", report.text());
    assert_eq!(
        report.cell("/tasks", Attack::Get).map(|c| c.verdict),
        Some(Verdict::Blocked)
    );
    // At least one Retry-After second was waited per 40 requests.
    let waits = report.requests / 40;
    assert!(
        waits >= 1 && started.elapsed().as_secs() as usize >= waits,
        "{} requests in {:?}",
        report.requests,
        started.elapsed()
    );
}

/// A request budget too small for the matrix: whatever was not attacked is inconclusive,
/// so the run can never pass (exit 3), and the budget is never exceeded.
#[tokio::test]
async fn a_spent_budget_is_inconclusive_never_clean() {
    let served = Served::start(intapi::app(None)).await;
    let mut cfg = config(&served.base, intapi::KEY_A, intapi::KEY_B);
    cfg.limits.max_requests = 40;
    let report = http::probe_http(&cfg).await.expect("probe");
    served.stop().await;
    assert!(report.requests <= 40, "{}", report.requests);
    assert_eq!(
        report.status(),
        RunStatus::Inconclusive,
        "{}",
        report.text()
    );
    assert_eq!(report.status().code(), 3);
    assert!(report.text().contains("budget"), "{}", report.text());
}
