//! Tests on a real Citus: one coordinator and two workers, started from the installed
//! PostgreSQL binaries with `shared_preload_libraries=citus`, only when
//! `TENANTGUARD_TEST_CITUS=1`. Without it (or when Citus does not load) every test prints
//! why it skipped and passes, so `cargo test` and CI need no Citus.
//!
//! Reset strategy: one distributed database per run (`tg_citus`, created on all three
//! nodes, `migrate --citus`ed once), and per-test tenants: every test makes tenants with
//! fresh ids and only looks at those, so tests share the database and still run in
//! parallel (`rls apply`, which manages database-wide objects, gets a distributed database
//! of its own). The API harness's template clone cannot work here: a Citus database's
//! shards live on the workers, and `CREATE DATABASE … TEMPLATE` copies only the
//! coordinator. `plain.rs` always runs, on the suite's plain PostgreSQL.

mod api;
mod context;
mod diagnose;
mod isolation;
mod migrate;
mod plain;
mod plans;
mod probe;
mod support;
