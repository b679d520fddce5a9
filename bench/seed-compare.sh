#!/usr/bin/env bash
# tenantguard against the seed's own stack (Hono + node-postgres), same rows, wrk -t1 -c32
# (see bench/seed_compare.rs). Installs wrk and the seed's npm dependencies
# (bench/seed-node/node_modules, gitignored) when missing.
# Usage: bench/seed-compare.sh          (2 rounds × 10 s per scenario and server, ~2 minutes)
#        BENCH_DURATION=5 BENCH_ROUNDS=4 bench/seed-compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null 2>&1 || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
}
command -v node >/dev/null 2>&1 || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
}
[ -d bench/seed-node/node_modules/hono ] || (cd bench/seed-node && npm ci --no-audit --no-fund)
exec timeout 900 cargo bench --bench seed_compare
