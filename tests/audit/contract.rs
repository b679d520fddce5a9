//! The isolation contract is stated once: the predicate the audit proposes as a fix is the
//! contract's predicate form, the one `migrate` installs, and applying it fixes the table.

use tenantguard::isolation::{context_function_call, setting_read, PredicateForm};

use crate::support::*;

#[tokio::test]
async fn the_proposed_fix_is_the_contracts_predicate_and_fixes_the_table() {
    let fx = Fixture::load("rls_disabled").await;
    let findings = fx.audit().await;
    let fix = expect(&findings, "TG001", "public.leaky").fix.clone();
    let form = PredicateForm::default();
    let proposed = form.render("tenant_id", &setting_read("app.tenant_id", "uuid"));
    assert!(fix.contains(&proposed), "{fix}\nshould use {proposed}");
    // The same form as the installed predicate: only the context expression differs.
    let installed = form.render("tenant_id", &context_function_call());
    assert_eq!(
        proposed.replace(&setting_read("app.tenant_id", "uuid"), "X"),
        installed.replace(&context_function_call(), "X")
    );
    let su = fx.db.superuser().await;
    su.batch_execute(&fix)
        .await
        .unwrap_or_else(|e| panic!("{fix}: {}", tenantguard::error_chain(&e)));
    let after = fx.audit().await;
    let left: Vec<&Finding> = after
        .iter()
        .filter(|f| f.object.contains("public.leaky") && f.severity >= Severity::Medium)
        .collect();
    assert!(left.is_empty(), "after the fix:\n{}", dump(&after));
}
