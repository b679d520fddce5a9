//! `tenantguard audit` and `tenantguard probe` against real PostgreSQL: the reference
//! schema must be clean, and each deliberately broken fixture under
//! `tests/fixtures/audit/` must be reported with the right rule (and, where exploitable,
//! shown LEAKED by the probe).

mod support;

mod cli;
mod contract;
mod fixtures;
mod models;
mod predicate;
mod probe;
mod reference;
mod rule_table;
