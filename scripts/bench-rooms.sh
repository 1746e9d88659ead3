#!/usr/bin/env bash
# Benchmark: room sends and /messages. Builds release teatime and
# teatime-loadgen, serves teatime on SQLite (temporary data directory) and then
# on a fresh PostgreSQL database, runs every loadgen scenario against each
# (sequential sends, concurrent sends in separate rooms and in one shared room,
# GET /messages) and prints a summary table. Every acknowledged send is checked
# through /messages; any error fails the run. The server is pinned to CPU 0 and
# loadgen to CPU 1 (PostgreSQL itself is not pinned).
#
# Settings: SENDS per scenario (10000), CLIENTS (32), MESSAGE_REQUESTS (200),
# TEATIME_TEST_POSTGRES_URL (admin URL, postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=$HOME/.cache/teatime-target}"
export CARGO_TARGET_DIR
sends=${SENDS:-10000}
clients=${CLIENTS:-32}
message_requests=${MESSAGE_REQUESTS:-200}
admin_url=${TEATIME_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}

cargo build --release -q -p homeserver --bin teatime -p loadgen --bin teatime-loadgen
teatime="$CARGO_TARGET_DIR/release/teatime"
loadgen="$CARGO_TARGET_DIR/release/teatime-loadgen"
server_cpu="taskset -c 0"; client_cpu="taskset -c 1"
command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ] || { server_cpu=""; client_cpu=""; }

work=$(mktemp -d)
database="teatime_bench_$$"
server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
cleanup() {
    stop_server
    psql "$admin_url" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# bench NAME [DATABASE_URL]: serves teatime on the database, runs loadgen into $work/NAME.txt.
bench() {
    local name=$1 database_url=${2:-} port base
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    base="http://127.0.0.1:$port"
    mkdir -p "$work/$name"
    env -u TEATIME_DATABASE_URL ${database_url:+TEATIME_DATABASE_URL="$database_url"} \
        TEATIME_LISTEN="127.0.0.1:$port" TEATIME_FEDERATION_LISTEN=127.0.0.1:0 TEATIME_DATA_DIR="$work/$name" \
        TEATIME_REGISTRATION_BURST=100000 RUST_LOG=warn \
        $server_cpu "$teatime" serve 2>"$work/$name.log" &
    server_pid=$!
    for _ in $(seq 1 100); do curl -fs "$base/healthz" >/dev/null && break; sleep 0.1; done
    curl -fs "$base/healthz" >/dev/null || { cat "$work/$name.log" >&2; echo "teatime did not start" >&2; exit 1; }
    echo "== $name" >&2
    $client_cpu "$loadgen" --base "$base" --sends "$sends" --clients "$clients" \
        --message-requests "$message_requests" | tee "$work/$name.txt" >&2
    stop_server
    if grep -Eqi 'error|warn|panic' "$work/$name.log"; then
        echo "server log of the $name run:" >&2
        grep -Ei 'error|warn|panic' "$work/$name.log" | head -20 >&2
    fi
}

bench SQLite
psql "$admin_url" -qc "CREATE DATABASE $database"
bench PostgreSQL "${admin_url%/*}/$database"

python3 - "$work" "$sends" "$clients" <<'PY'
import sys
work, sends, clients = sys.argv[1], sys.argv[2], sys.argv[3]
def results(name):
    rows = {}
    for line in open(f"{work}/{name}.txt"):
        scenario, *fields = line.split()
        rows[scenario] = dict(field.split("=", 1) for field in fields)
    return rows
backends = {name: results(name) for name in ("SQLite", "PostgreSQL")}
print(f"\n{sends} sends per scenario, {clients} concurrent clients")
print(f"{'scenario':<18}" + "".join(f"{name + ' req/s':>18}{'p50':>10}{'p99':>10}" for name in backends))
for scenario in ("sequential", "concurrent-rooms", "concurrent-room", "messages"):
    cells = ""
    for rows in backends.values():
        row = rows.get(scenario, {})
        cells += f"{row.get('rate', '-').removesuffix('/s'):>18}{row.get('p50', '-'):>10}{row.get('p99', '-'):>10}"
    print(f"{scenario:<18}{cells}")
print("targets (SQLite): 2,000 sequential sends/s, 10,000 concurrent sends/s")
PY
