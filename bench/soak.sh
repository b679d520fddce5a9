#!/bin/sh
# The soak with faults (issue 8): 50 tenants, >= 100,000 operations at c=64, PostgreSQL
# stopped -m immediate twice and the server killed -9 once, the noisy-neighbour case, the
# same checks through a transaction-mode pgbouncer, and the ledger check. Loopback only,
# bounded by SOAK_OPS / SOAK_MAX_SECS. Prints a table (also target/bench/soak.md).
#
#   SOAK_TENANTS=50 SOAK_WORKERS=64 SOAK_OPS=110000 SOAK_BOUNCER_OPS=20000 SOAK_MAX_SECS=300 bench/soak.sh
set -eu
cd "$(dirname "$0")/.."
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || {
    echo "pgbouncer is needed (apt-get install pgbouncer)" >&2
    exit 2
}
exec cargo bench --locked --bench soak
