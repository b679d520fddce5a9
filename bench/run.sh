#!/usr/bin/env bash
# HTTP benchmark: RLS versus explicit tenant filters, from nothing (see bench/api.rs).
# Usage: bench/run.sh            (defaults: 400 tenants, ~1M tasks, 10 s per run, 3 rounds, c=16,64)
#        BENCH_DURATION=5 BENCH_ROUNDS=5 BENCH_CONCURRENCY=32 bench/run.sh
# Results are printed and written to target/bench/api-results.md. The CPU columns are µs of
# CPU per request, user/system apart, of the server under test and of PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
# The bench profile is release: optimised server, same code as `tenantguard serve`.
RUST_LOG="${RUST_LOG:-warn}" exec cargo bench --features bench-baseline --bench api
