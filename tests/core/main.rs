//! Isolation-core tests against real PostgreSQL (a private throwaway cluster, or
//! TEST_DATABASE_URL): policies on every table and command, composite keys, the tenant
//! context's lifetime in the scoped pool (and its one-Sync read and write paths), pool start-up
//! refusals, migrate and rls apply.

mod carrier;
mod citus;
mod cluster;
mod cluster_restart;
mod context;
mod errors;
mod isolation;
mod migrate;
mod pgbouncer;
mod plans;
mod pool_safety;
mod read_path;
mod rls_apply;
mod support;
mod versions;
mod write_path;
