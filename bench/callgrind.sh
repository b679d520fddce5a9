#!/usr/bin/env bash
# Server CPU per request in instructions: the release server under callgrind, PostgreSQL
# and the client native (see bench/callgrind.rs for what is measured and the settings).
# Usage: bench/callgrind.sh                      (300 requests per kind, ~3-5 minutes)
#        BENCH_REQUESTS=100 BENCH_KINDS=get,list100 bench/callgrind.sh
#        BENCH_TOOL=strace BENCH_KINDS=get bench/callgrind.sh   (system calls per request instead:
#        the server native, strace -f -c attached for the measured requests only)
# Results: target/bench/callgrind/summary.md (and raw callgrind files beside it), or syscalls.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v valgrind >/dev/null 2>&1 || ! command -v strace >/dev/null 2>&1; then
  echo "installing valgrind and strace"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind strace >/dev/null
fi
# Bounded: the whole run is killed after 20 minutes.
exec timeout 1200 cargo bench --bench callgrind
