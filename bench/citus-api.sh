#!/usr/bin/env bash
# The API on Citus 1+2 nodes: list/get/create router-planned (routing hint on) against
# fanned out (TENANTGUARD_ROUTING_HINT=off), req/s and p99, in one run (see bench/citus_api.rs).
# Needs Citus installed for the PostgreSQL in PG_BIN (or the default one the harness finds);
# without it the bench says so and exits 0.
# Usage: PG_BIN=/usr/lib/postgresql/15/bin bench/citus-api.sh
#        BENCH_DURATION=5 BENCH_ROUNDS=2 BENCH_CONCURRENCY=8 bench/citus-api.sh
# Results: stdout and target/bench/citus-api-results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export TENANTGUARD_TEST_CITUS=1
RUST_LOG="${RUST_LOG:-warn}" exec cargo bench --locked --bench citus_api
