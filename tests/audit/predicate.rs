//! The predicate heuristics on deparsed shapes PostgreSQL produces.

use tenantguard::audit::predicate::{analyse, per_row_calls, Analysis, Context};
use tenantguard::audit::rules::server_outdated;

fn run(expr: &str, column: Option<&str>) -> Analysis {
    let fns = vec![
        "tenantguard.current_tenant_id".to_string(),
        "current_tenant_id".to_string(),
    ];
    let scoped = vec!["public.projects".to_string(), "projects".to_string()];
    let settings = vec!["app.tenant_id".to_string()];
    analyse(
        expr,
        &Context {
            column,
            tenant_column: "tenant_id",
            settings: &settings,
            source_functions: &fns,
            scoped_relations: &scoped,
            identity_is_context: false,
        },
    )
}

#[test]
fn tenant_predicates_in_several_shapes_are_scoped() {
    for e in [
        "(tenant_id = ( SELECT tenantguard.current_tenant_id() AS current_tenant_id))",
        "((tenant_id)::text = current_setting('app.tenant_id'::text, true))",
        "(tenant_id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid)",
        "((created_at >= (now() - '1 day'::interval)) AND (tenant_id = current_tenant_id()))",
        "((created_at BETWEEN (now() - '1 day'::interval) AND now()) AND (tenant_id = current_tenant_id()))",
        "((tenant_id = current_tenant_id()) OR (tenant_id = current_tenant_id()))",
        "(tenant_id = ANY (ARRAY[current_tenant_id()]))",
    ] {
        let a = run(e, Some("tenant_id"));
        assert!(a.scoped, "{e}: {a:?}");
    }
    // A child table without the column: a subquery over the parent.
    let a = run(
        "(EXISTS ( SELECT 1 FROM things p WHERE ((p.id = c.thing_id) AND (p.tenant_id = current_tenant_id()))))",
        None,
    );
    assert!(a.scoped, "{a:?}");
    let a = run(
        "(EXISTS ( SELECT 1 FROM projects p WHERE (p.id = c.project_id)))",
        None,
    );
    assert!(a.scoped, "subquery over a scoped table: {a:?}");
    let a = run("(\"Tenant_Id\" = current_tenant_id())", Some("Tenant_Id"));
    assert!(a.scoped, "quoted column: {a:?}");
}

#[test]
fn wider_or_broken_predicates_are_not_scoped() {
    for e in [
        "true",
        "(tenant_id IS NOT NULL)",
        "(tenant_id <> current_tenant_id())",
        "(tenant_id >= current_tenant_id())",
        "(tenant_id = (current_setting('app.other'::text, true))::uuid)",
        "(NOT (tenant_id = current_tenant_id()))",
        "(tenant_id = tenant_id)",
        "((tenant_id = current_tenant_id()) OR is_public)",
        "(EXISTS ( SELECT 1 FROM audit_copies a WHERE (a.id = id)))",
    ] {
        let a = run(e, Some("tenant_id"));
        assert!(!a.scoped, "{e}: {a:?}");
    }
    let a = run(
        "((tenant_id = current_tenant_id()) OR is_public)",
        Some("tenant_id"),
    );
    assert!(a.widened_by_or && !a.fail_open && !a.null_share);
    let a = run(
        "((current_setting('app.tenant_id'::text, true) = ''::text) OR (tenant_id = current_tenant_id()))",
        Some("tenant_id"),
    );
    assert!(a.fail_open, "{a:?}");
    let a = run(
        "((tenant_id IS NULL) OR (tenant_id = current_tenant_id()))",
        Some("tenant_id"),
    );
    assert!(a.null_share && !a.fail_open, "{a:?}");
    let a = run("(owner = CURRENT_USER)", Some("tenant_id"));
    assert!(a.identity_key && !a.scoped);
}

#[test]
fn per_row_calls_need_a_select_wrapper() {
    let f = vec!["public.f".to_string(), "f".to_string()];
    assert_eq!(
        per_row_calls("(tenant_id = f())", &f),
        vec!["f".to_string()]
    );
    assert!(per_row_calls("(tenant_id = ( SELECT f() AS f))", &f).is_empty());
}

#[test]
fn engine_versions() {
    assert!(server_outdated(150013));
    assert!(!server_outdated(150014));
    assert!(!server_outdated(150018));
    assert!(server_outdated(160009));
    assert!(!server_outdated(170006));
    assert!(server_outdated(120022));
    assert!(!server_outdated(180001));
}

#[test]
fn a_context_helper_called_with_the_tenant_column_is_scoped() {
    let fns = vec![
        "public.is_member_of".to_string(),
        "is_member_of".to_string(),
    ];
    let settings = vec!["request.jwt.claims".to_string()];
    let cx = Context {
        column: Some("org_id"),
        tenant_column: "org_id",
        settings: &settings,
        source_functions: &fns,
        scoped_relations: &[],
        identity_is_context: false,
    };
    assert!(analyse("is_member_of(org_id)", &cx).scoped);
    assert!(!analyse("(is_member_of(org_id) OR true)", &cx).scoped);
    assert!(!analyse("is_member_of(id)", &cx).scoped);
}
