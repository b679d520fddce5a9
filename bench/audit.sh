#!/usr/bin/env bash
# Benchmark (not a test): time `tenantguard audit` on a generated schema with $TABLES
# tenant tables (default 1,000) in a private, throwaway PostgreSQL cluster.
#
#   bench/audit.sh                 # uses target/debug/tenantguard (build it first)
#   TABLES=2000 RUNS=5 BIN=target/release/tenantguard bench/audit.sh
#
# Each table has the tenant column, a composite primary key, a composite foreign key to
# the previous table, FORCEd RLS, one tenant policy for the app role and grants; so the
# audit does its full work (policy analysis, keys, indexes) on every table.
set -euo pipefail

TABLES=${TABLES:-1000}
RUNS=${RUNS:-3}
BIN=${BIN:-target/debug/tenantguard}
PORT=${PORT:-54$((RANDOM % 90 + 10))}
[ -x "$BIN" ] || { echo "build first: cargo build (or set BIN)" >&2; exit 2; }
BIN=$(realpath "$BIN")

dir=$(mktemp -d /tmp/tg-bench.XXXXXX)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$dir"
cleanup() { as_pg pg_ctl -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT

as_pg initdb -D "$dir/data" -U postgres --auth=trust >/dev/null
as_pg pg_ctl -D "$dir/data" -l "$dir/log" -w \
  -o "-k $dir -p $PORT -c listen_addresses='' -c fsync=off -c full_page_writes=off" start >/dev/null
url="postgresql://postgres@$(printf %s "$dir" | sed 's,/,%2F,g'):$PORT/postgres"

{
  echo "CREATE ROLE bench_app NOLOGIN; CREATE ROLE bench_owner NOLOGIN;"
  echo "GRANT CREATE, USAGE ON SCHEMA public TO bench_owner; GRANT USAGE ON SCHEMA public TO bench_app;"
  echo "SET ROLE bench_owner;"
  echo "CREATE FUNCTION current_tenant() RETURNS uuid LANGUAGE sql STABLE AS \$\$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid \$\$;"
  echo "CREATE TABLE tenants (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL);"
  echo "ALTER TABLE tenants ENABLE ROW LEVEL SECURITY; ALTER TABLE tenants FORCE ROW LEVEL SECURITY;"
  echo "CREATE POLICY tenants_select ON tenants FOR SELECT TO bench_app USING (id = (SELECT current_tenant()));"
  echo "GRANT SELECT ON tenants TO bench_app;"
  echo "BEGIN;"
  for i in $(seq 1 "$TABLES"); do
    fk=""
    [ "$i" -gt 1 ] && fk=", parent_id uuid, FOREIGN KEY (tenant_id, parent_id) REFERENCES t_$((i - 1)) (tenant_id, id)"
    echo "CREATE TABLE t_$i (tenant_id uuid NOT NULL REFERENCES tenants (id), id uuid NOT NULL DEFAULT gen_random_uuid(), name text NOT NULL CHECK (length(name) > 0), created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant_id, id), UNIQUE (tenant_id, name)$fk);"
    echo "ALTER TABLE t_$i ENABLE ROW LEVEL SECURITY; ALTER TABLE t_$i FORCE ROW LEVEL SECURITY;"
    echo "CREATE POLICY t_${i}_all ON t_$i TO bench_app USING (tenant_id = (SELECT current_tenant()));"
    echo "GRANT SELECT, INSERT, UPDATE, DELETE ON t_$i TO bench_app;"
  done
  echo "COMMIT;"
} > "$dir/schema.sql"
chmod a+r "$dir/schema.sql"
psql -q -X -v ON_ERROR_STOP=1 -d "$url" -f "$dir/schema.sql" >/dev/null

echo "schema: $TABLES tenant tables; binary: $BIN"
times=()
for r in $(seq 1 "$RUNS"); do
  start=$(date +%s.%N)
  set +e
  "$BIN" audit --database-url "$url" --app-role bench_app --format json > "$dir/out.json"
  code=$?
  set -e
  end=$(date +%s.%N)
  [ "$code" -le 1 ] || { echo "audit failed (exit $code)" >&2; exit 1; }
  t=$(echo "$end - $start" | bc)
  times+=("$t")
  echo "run $r: ${t}s (exit $code, $(grep -c '"rule"' "$dir/out.json") findings)"
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "median: %.3fs over %d runs\n", a[int((NR+1)/2)], NR}'
