#!/usr/bin/env bash
# End-to-end benchmarks of carerecord: builds release, generates synthetic UK data, serves it on a
# fresh database (SQLite, and PostgreSQL when a URL is given) and measures every load driver
# scenario at each size, then writes benches/results/<backend>.jsonl and <backend>.md.
#
#   benches/run.sh                                   # SQLite
#   benches/run.sh postgres://postgres@127.0.0.1:5432/test   # SQLite, then PostgreSQL
#   CARERECORD_BENCH_POSTGRES_URL=... benches/run.sh # the same
#
# Settings (environment):
#   BENCH_SIZES           resources per data set            "10000 1000000"
#   BENCH_BACKENDS        which backends to run              "sqlite postgres" (postgres only with a URL)
#   BENCH_SEED            generator seed                     1
#   BENCH_DURATION        seconds per closed-loop run        15
#   BENCH_FIXED_DURATION  seconds per fixed-rate run         10
#   BENCH_INGEST_DURATION seconds the ingest scenario runs   60 (the rest is bulk-loaded)
#   BENCH_IMPORT_TIMEOUT  seconds the bulk load may take     1800
#   BENCH_CONCURRENCY     clients for reads and searches     8
#   BENCH_RATE            fixed rate for reads, searches     500 (requests/s)
#   BENCH_RATE_EVERYTHING fixed rate for $everything         50
#   BENCH_JOBS            import workers                     2
#   BENCH_WORK            data and databases                 target/bench
#   BENCH_PORT            port of the server under test      18180
#   BENCH_PG_SCHEMA       PostgreSQL schema prefix (dropped and re-made per size)  carerecord_bench
# Everything runs on this machine; the load driver refuses any non-loopback server.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PG_URL=${1:-${CARERECORD_BENCH_POSTGRES_URL:-}}
SIZES=${BENCH_SIZES:-"10000 1000000"}
BACKENDS=${BENCH_BACKENDS:-"sqlite postgres"}
SEED=${BENCH_SEED:-1}
DURATION=${BENCH_DURATION:-15}
FIXED_DURATION=${BENCH_FIXED_DURATION:-10}
INGEST_DURATION=${BENCH_INGEST_DURATION:-60}
IMPORT_TIMEOUT=${BENCH_IMPORT_TIMEOUT:-1800}
CONCURRENCY=${BENCH_CONCURRENCY:-8}
RATE=${BENCH_RATE:-500}
RATE_EVERYTHING=${BENCH_RATE_EVERYTHING:-50}
JOBS=${BENCH_JOBS:-2}
WORK=${BENCH_WORK:-$ROOT/target/bench}
PORT=${BENCH_PORT:-18180}
PG_SCHEMA=${BENCH_PG_SCHEMA:-carerecord_bench}
RESULTS="$ROOT/benches/results"
BIN="$ROOT/target/release/carerecord"
GENERATE="$ROOT/target/release/examples/generate"
LOADGEN="$ROOT/target/release/examples/loadgen"
BASE="http://127.0.0.1:$PORT/fhir/default"

export CARERECORD_RATE_LIMIT=0
export CARERECORD_JWT_SECRET=${CARERECORD_JWT_SECRET:-carerecord-bench-secret-$(date +%s)-not-for-production}
export RUST_LOG=${RUST_LOG:-warn}
mkdir -p "$WORK" "$RESULTS"
export CARERECORD_DATA_DIR="$WORK/keys"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

echo "building release..." >&2
cargo build --release --bin carerecord --example generate --example loadgen >&2

SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
trap stop_server EXIT

start_server() { # database-url log-file
    "$BIN" serve --listen "127.0.0.1:$PORT" --database-url "$1" >>"$2" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        if curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.2
    done
    log "the server did not start:"; tail -20 "$2" >&2
    exit 1
}

machine_json() {
    local cpu cores memory os commit
    cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
    cores=$(nproc)
    memory=$(awk '/MemTotal/ {printf "%.1f GB", $2/1048576}' /proc/meminfo)
    os="$(uname -sr)"
    commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    jq -cn --arg cpu "$cpu" --arg cores "$cores" --arg memory "$memory" --arg os "$os" \
        --arg commit "$commit" --arg date "$(date -u +%Y-%m-%dT%H:%MZ)" --arg backend "$1" \
        --arg rustc "$(rustc --version)" \
        '{machine: {cpu: $cpu, cores: $cores, memory: $memory, os: $os, commit: $commit, date: $date, rustc: $rustc}, backend: $backend}'
}

stored_count() { # token
    local total=0 n t
    for t in Patient Encounter ServiceRequest Organization Practitioner Location; do
        n=$(curl -sf -H "Authorization: Bearer $1" "$BASE/$t?_summary=count" | jq -r '.total // 0')
        total=$((total + n))
    done
    echo "$total"
}

FAILED=0
run_load() { # scenario results-file args...
    local scenario=$1 out=$2
    shift 2
    log "  $scenario $*"
    if ! "$LOADGEN" "$scenario" --base "$BASE" --token "$TOKEN" --server-pid "$SERVER_PID" \
        --json-out "$out" "$@" >/dev/null; then
        log "  $scenario reported errors"
        FAILED=1
    fi
}

for backend in $BACKENDS; do
    if [ "$backend" = postgres ] && [ -z "$PG_URL" ]; then
        log "no PostgreSQL URL (argument or CARERECORD_BENCH_POSTGRES_URL): skipping postgres"
        continue
    fi
    out="$RESULTS/$backend.jsonl"
    : >"$out"
    machine_json "$backend" >>"$out"
    for size in $SIZES; do
        data="$WORK/data-$size-seed$SEED"
        if [ ! -f "$data/manifest.json" ]; then
            log "generating about $size resources into $data"
            rm -rf "$data"
            "$GENERATE" --resources "$size" --seed "$SEED" --out "$data" >&2
        fi
        patients=$(jq '.patients' "$data/manifest.json")
        average=$(jq '.average_resource_bytes' "$data/manifest.json")
        run="$WORK/$backend-$size"
        rm -rf "$run"
        mkdir -p "$run"
        case $backend in
            sqlite) db="sqlite://$run/carerecord.db" ;;
            postgres)
                schema="${PG_SCHEMA}_$size"
                psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS $schema CASCADE" -c "CREATE SCHEMA $schema" >&2
                case $PG_URL in *\?*) sep='&' ;; *) sep='?' ;; esac
                db="$PG_URL${sep}options=-csearch_path%3D$schema"
                ;;
        esac
        tags=(--tag "backend=$backend" --tag "size=$size")
        log "$backend, $size resources: ingest (at most ${INGEST_DURATION}s)"
        start_server "$db" "$run/server.log"
        TOKEN=$("$BIN" token --system default --role feeder --sub loadgen --ttl 86400)
        run_load ingest "$out" --data "$data" --concurrency 4 --duration "$INGEST_DURATION" "${tags[@]}"
        stop_server
        log "$backend, $size resources: bulk load of the rest (carerecord import, at most ${IMPORT_TIMEOUT}s)"
        started=$(date +%s)
        load="complete"
        for phase in 1-gp 2-hospital; do
            remaining=$((IMPORT_TIMEOUT - ($(date +%s) - started)))
            if [ "$remaining" -le 0 ] || ! timeout "$remaining" "$BIN" import "$data/bundles/$phase" \
                --database-url "$db" --jobs "$JOBS" --quiet >>"$run/import.log" 2>&1; then
                load="incomplete (import stopped or failed: see the log)"
                FAILED=1
                break
            fi
        done
        seconds=$(($(date +%s) - started))
        start_server "$db" "$run/server.log"
        stored=$(stored_count "$TOKEN")
        jq -cn --arg size "$size" --arg patients "$patients" --arg stored "$stored" --arg average "$average" \
            --arg load "ingest scenario, then carerecord import in ${seconds}s: $load" --arg backend "$backend" \
            '{dataset: {size: $size, patients: $patients, stored: $stored, average_bytes: $average, load: $load}, backend: $backend}' >>"$out"
        log "$backend, $size resources: $stored stored; measuring"
        common=(--data "$data" --seed "$SEED" --pool-file "$run/pools.json" "${tags[@]}")
        run_load read "$out" "${common[@]}" --concurrency "$CONCURRENCY" --duration "$DURATION"
        run_load search-identifier "$out" "${common[@]}" --concurrency "$CONCURRENCY" --duration "$DURATION"
        run_load search-patient "$out" "${common[@]}" --concurrency "$CONCURRENCY" --duration "$DURATION"
        run_load everything "$out" "${common[@]}" --concurrency 4 --duration "$DURATION"
        run_load read "$out" "${common[@]}" --concurrency "$CONCURRENCY" --rate "$RATE" --duration "$FIXED_DURATION"
        run_load search-identifier "$out" "${common[@]}" --concurrency "$CONCURRENCY" --rate "$RATE" --duration "$FIXED_DURATION"
        run_load search-patient "$out" "${common[@]}" --concurrency "$CONCURRENCY" --rate "$RATE" --duration "$FIXED_DURATION"
        run_load everything "$out" "${common[@]}" --concurrency 4 --rate "$RATE_EVERYTHING" --duration "$FIXED_DURATION"
        run_load create "$out" "${common[@]}" --concurrency 4 --duration "$DURATION"
        run_load mixed "$out" "${common[@]}" --concurrency "$CONCURRENCY" --duration "$DURATION"
        stop_server
    done
    "$LOADGEN" report "$out" >"$RESULTS/$backend.md"
    log "$backend: results in $RESULTS/$backend.md"
    cat "$RESULTS/$backend.md" >&2
done
exit $FAILED
