//! HTTP tests of the reference API: the real server on a random port, a fresh real
//! PostgreSQL database per test, requests over HTTP only. One file per group.

mod admin;
mod audit;
mod auth;
// Only in builds with the `bench-baseline` feature:
// `cargo test --features bench-baseline --test api baseline`.
#[cfg(feature = "bench-baseline")]
mod baseline;
mod carrier;
mod data_safety;
mod dev;
mod dev_restart;
mod errors;
mod helpers;
mod idempotency;
mod input;
mod isolation;
mod json_bytes;
mod key_cache;
mod openapi_exact;
mod openapi_location;
mod openapi_roles;
mod openapi_schemathesis;
mod openapi_wire;
mod ops;
mod pgbouncer;
mod provisioning;
mod resilience;
mod resources;
mod roles;
mod rollback;
mod rollback_noise;
mod routing;
mod serve_cli;
mod service;
mod tx_rules;
