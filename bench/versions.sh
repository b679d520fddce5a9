#!/usr/bin/env bash
# The RLS-overhead benchmarks on several PostgreSQL versions in one run, rounds alternating
# between the versions (and which goes first), so the noise of a shared machine hits each
# alike. Each round runs `cargo bench --bench pipeline` and `bench/run.sh` once per version
# (BENCH_ROUNDS=1 inside), and the summary gives, per figure, the median over the rounds and
# the range (the noise).
#
# Usage: BENCH_VERSIONS="15=/usr/lib/postgresql/15/bin 18=/var/cache/tenantguard/pg/18.4.0-beta.17/native/bin" \
#          VERSION_ROUNDS=3 BENCH_DURATION=6 bench/versions.sh
#        BENCH_SKIP_API=1 …   only the pgbench rows;  BENCH_DB_ONLY=1 …   no HTTP part;
#        BENCH_SKIP_PIPELINE=1 …   no pgbench rows
#        BENCH_SUMMARY_ONLY=target/bench/versions/<run> …   summarise an earlier run again
# pgbench: PGBENCH, else next to postgres, else Debian's newest (the npm server packages
# have none; a 15 client drives an 18 server fine). Output under target/bench/versions/.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BENCH_VERSIONS:?set BENCH_VERSIONS=\"label=bin_dir …\"}"
rounds="${VERSION_ROUNDS:-3}"
out="${BENCH_SUMMARY_ONLY:-target/bench/versions/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
read -r -a versions <<<"$BENCH_VERSIONS"
# BENCH_SUMMARY_ONLY=<earlier output dir>: summarise those runs again, run nothing.
[ -n "${BENCH_SUMMARY_ONLY:-}" ] && rounds=0

# Build first, so compilation does not land inside anyone's round.
((rounds == 0)) || cargo bench --no-run --features bench-baseline --bench pipeline --bench api >/dev/null 2>&1

for ((r = 1; r <= rounds; r++)); do
  order=("${versions[@]}")
  if ((r % 2 == 0)); then
    order=()
    for ((i = ${#versions[@]} - 1; i >= 0; i--)); do order+=("${versions[$i]}"); done
  fi
  for v in "${order[@]}"; do
    label="${v%%=*}"
    bin="${v#*=}"
    echo "round $r: $label ($("$bin/postgres" -V)) $(date -u +%T), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/log"
    if [ -z "${BENCH_SKIP_PIPELINE:-}" ]; then
      PG_BIN="$bin" BENCH_ROUNDS=1 cargo bench --bench pipeline >"$out/pipeline-$label-$r.txt" 2>"$out/pipeline-$label-$r.err"
    fi
    if [ -z "${BENCH_SKIP_API:-}" ]; then
      PG_BIN="$bin" BENCH_ROUNDS=1 bench/run.sh >"$out/api-$label-$r.txt" 2>"$out/api-$label-$r.err"
    fi
  done
done

python3 - "$out" "${versions[@]}" <<'PY' | tee "$out/summary.md"
import re, sys, statistics
from pathlib import Path
out = Path(sys.argv[1])
labels = [v.split("=", 1)[0] for v in sys.argv[2:]]

def collect(prefix, parse):
    # {label: {row: [ratio per round]}}
    data = {}
    for l in labels:
        for f in sorted(out.glob(f"{prefix}-{l}-*.txt")):
            for row, val in parse(f.read_text()):
                data.setdefault(row, {}).setdefault(l, []).append(val)
    return data

def pipeline(text):
    for line in text.splitlines():
        m = re.match(r"^(\S+)\s+(\d+)\s+([\d.]+)x\s", line)
        if m:
            yield m.group(1), float(m.group(3))

def pipeline_us(text):
    for line in text.splitlines():
        m = re.match(r"^(\S+)\s+(\d+)\s+([\d.]+)x\s+([\d.]+)\s", line)
        if m:
            yield m.group(1), float(m.group(4))

def pipeline_tps(text):
    for line in text.splitlines():
        m = re.match(r"^(\S+)\s+(\d+)\s+([\d.]+)x\s", line)
        if m:
            yield m.group(1), float(m.group(2))

def api(text):
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 9 and cells[8].endswith("×") and cells[1].isdigit():
            yield f"HTTP {cells[0]} c={cells[1]}", float(cells[8].split("×")[0])
        m = re.match(r"^\s+(.+): (\d+) /s \(([\d.]+)×\)", line)
        if m:
            yield f"db-level {m.group(1)}", float(m.group(3))

def api_cpu(text):
    # PostgreSQL's CPU µs per request, RLS server minus explicit baseline: what RLS adds on
    # the database side, less sensitive to a starved scheduler than the req/s ratio.
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 11 and cells[1].isdigit() and " / " in cells[10]:
            r, e = (float(x) for x in cells[10].split(" / "))
            yield f"HTTP {cells[0]} c={cells[1]}", r - e

def api_cpu_base(text):
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 11 and cells[1].isdigit() and " / " in cells[10]:
            yield f"HTTP {cells[0]} c={cells[1]}", float(cells[10].split(" / ")[1])

def table(title, data, what="ratio", fmt="{:.2f}", unit="×"):
    print(f"\n{title}\n")
    print("| row | " + " | ".join(f"{l}: median (range) of per-round {what}" for l in labels) + " |")
    print("|---|" + "---:|" * len(labels))
    for row, per in data.items():
        cells = []
        for l in labels:
            v = per.get(l, [])
            f = lambda x: fmt.format(x)
            cells.append(f"{f(statistics.median(v))}{unit} ({f(min(v))}–{f(max(v))}, n={len(v)})" if v else "—")
        print(f"| {row} | " + " | ".join(cells) + " |")

versions = {}
for l in labels:
    for f in sorted(out.glob(f"pipeline-{l}-*.txt")):
        m = re.search(r"PostgreSQL (\S+)", f.read_text())
        if m:
            versions[l] = m.group(1)
print("versions: " + ", ".join(f"{l} = PostgreSQL {versions.get(l, '?')}" for l in labels))
table("pgbench (`cargo bench --bench pipeline`), ratio to `explicit`", collect("pipeline", pipeline))
table("pgbench, server CPU per transaction", collect("pipeline", pipeline_us), "µs", "{:.1f}", " µs")
table("pgbench, transactions per second", collect("pipeline", pipeline_tps), "tps", "{:.0f}", "")
api_data = collect("api", api)
if api_data:
    table("`bench/run.sh`, RLS/explicit", api_data)
    table("`bench/run.sh`, PostgreSQL CPU per request of the explicit baseline", collect("api", api_cpu_base), "µs", "{:.1f}", " µs")
    table("`bench/run.sh`, PostgreSQL CPU per request, RLS minus explicit", collect("api", api_cpu), "µs", "{:+.1f}", " µs")
PY
echo "raw output: $out"
