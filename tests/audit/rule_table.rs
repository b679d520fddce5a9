//! `docs/audit-json.md`'s rule table is checked against the registry (`tenantguard::audit::RULES`):
//! every rule has exactly one row, with the registry's id, default severity and name, and
//! the table lists no rule the registry does not have. The "what" column is prose for
//! readers and may say more than the rule's one-line title.

use std::collections::BTreeMap;

use tenantguard::audit::RULES;

/// `id -> (severity, name)` for every row of the table under `## Rules`.
fn doc_rows() -> (BTreeMap<String, (String, String)>, Vec<String>) {
    let path = format!("{}/docs/audit-json.md", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let section = text
        .split("\n## Rules\n")
        .nth(1)
        .unwrap_or_else(|| panic!("{path} has no `## Rules` section"));
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut rows = BTreeMap::new();
    let mut repeated = Vec::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // `| id | default | name | what |` splits into 6 cells, the outer two empty.
        if cells.len() < 6 || !cells[1].starts_with("TG") {
            continue;
        }
        let old = rows.insert(
            cells[1].to_string(),
            (cells[2].to_string(), cells[3].to_string()),
        );
        if old.is_some() {
            repeated.push(cells[1].to_string());
        }
    }
    (rows, repeated)
}

#[test]
fn the_documented_rule_table_is_the_registry() {
    let (doc, repeated) = doc_rows();
    assert!(
        repeated.is_empty(),
        "rules listed twice in the doc: {repeated:?}"
    );
    let registry: BTreeMap<String, (String, String)> = RULES
        .iter()
        .map(|r| {
            (
                r.id.to_string(),
                (r.severity.name().to_string(), r.name.to_string()),
            )
        })
        .collect();
    let mut problems = Vec::new();
    for (id, want) in &registry {
        match doc.get(id) {
            None => problems.push(format!(
                "{id} ({} {}) is missing from the doc",
                want.0, want.1
            )),
            Some(have) if have != want => problems.push(format!(
                "{id}: the doc says {} {}, the registry {} {}",
                have.0, have.1, want.0, want.1
            )),
            Some(_) => {}
        }
    }
    for id in doc.keys().filter(|id| !registry.contains_key(*id)) {
        problems.push(format!("{id} is in the doc but not in the registry"));
    }
    assert!(
        problems.is_empty(),
        "docs/audit-json.md's rule table: {problems:#?}"
    );
    assert_eq!(doc.len(), RULES.len());
}
