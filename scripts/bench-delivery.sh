#!/usr/bin/env bash
# Benchmark: real-time delivery. Builds release teatime and teatime-loadgen,
# serves a fresh teatime on SQLite (temporary data directory) for each
# scenario and runs it:
# - ws-fanout with 100 and 1000 WebSocket listeners in one room, and
#   sync-fanout with 100 long-polling /sync listeners: one user sends MESSAGES
#   messages, each once every listener has the previous one; send-to-delivery
#   latency over every (listener, message) pair, and every listener must get
#   every message exactly once and in order;
# - idle-sockets: IDLE_SOCKETS authenticated idle WebSockets, all on the
#   access token of one user by default (each registration leaves argon2
#   working memory in the server's allocator, which would blur the socket
#   figure); the server's VmRSS is read from /proc at start, after
#   registering and while the sockets are open, then a sample of 1000 must
#   answer ping.
# Prints a summary against the targets (p99 under 10 ms for 100 sockets;
# 10,000 idle sockets in under 300 MB RSS). Any lost, duplicated or reordered
# message, or any error, fails the run. The server is pinned to CPU 0 and
# loadgen to CPU 1. Open files are raised to 65536 (or the hard limit).
#
# Settings: MESSAGES (200), WS_CLIENTS ("100 1000"), SYNC_CLIENTS (100),
# IDLE_SOCKETS (10000), IDLE_SOCKETS_PER_USER (10000).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=$HOME/.cache/teatime-target}"
export CARGO_TARGET_DIR
messages=${MESSAGES:-200}
ws_clients=${WS_CLIENTS:-100 1000}
sync_clients=${SYNC_CLIENTS:-100}
idle_sockets=${IDLE_SOCKETS:-10000}
idle_sockets_per_user=${IDLE_SOCKETS_PER_USER:-10000}

cargo build --release -q -p homeserver --bin teatime -p loadgen --bin teatime-loadgen
teatime="$CARGO_TARGET_DIR/release/teatime"
loadgen="$CARGO_TARGET_DIR/release/teatime-loadgen"
server_cpu="taskset -c 0"; client_cpu="taskset -c 1"
command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ] || { server_cpu=""; client_cpu=""; }

# Every socket is a file descriptor on both sides.
want_files=65536
hard_files=$(ulimit -Hn)
files_note=""
if [ "$hard_files" = unlimited ] || [ "$hard_files" -ge "$want_files" ]; then
    ulimit -n "$want_files"
else
    ulimit -n "$hard_files"
    files_note="open files: hard limit $hard_files < $want_files, using $hard_files"
    echo "$files_note" >&2
fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((idle_sockets + 256)) ]; then
    echo "open files limited to $(ulimit -n): too few for $idle_sockets sockets" >&2
fi

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(mktemp -d)
server_pid=""
loadgen_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
cleanup() {
    exec 3>&- 2>/dev/null || true
    if [ -n "$loadgen_pid" ]; then
        kill "$loadgen_pid" 2>/dev/null || true
        wait "$loadgen_pid" 2>/dev/null || true
    fi
    stop_server
    rm -rf "$work"
}
trap cleanup EXIT

# start_server NAME: a fresh teatime on SQLite in $work/NAME; sets $base and $server_pid.
start_server() {
    local name=$1 port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    base="http://127.0.0.1:$port"
    mkdir -p "$work/$name"
    env -u TEATIME_DATABASE_URL TEATIME_LISTEN="127.0.0.1:$port" TEATIME_FEDERATION_LISTEN=127.0.0.1:0 TEATIME_DATA_DIR="$work/$name" \
        TEATIME_REGISTRATION_BURST=100000 RUST_LOG=warn \
        $server_cpu "$teatime" serve 2>"$work/$name.log" &
    server_pid=$!
    for _ in $(seq 1 100); do curl -fs "$base/healthz" >/dev/null && break; sleep 0.1; done
    curl -fs "$base/healthz" >/dev/null || { cat "$work/$name.log" >&2; echo "teatime did not start" >&2; exit 1; }
    echo "== $name" >&2
}

# finish_server NAME: stops the server and shows its warnings and errors.
finish_server() {
    local name=$1
    stop_server
    if grep -Eqi 'error|warn|panic' "$work/$name.log"; then
        echo "server log of the $name run:" >&2
        grep -Ei 'error|warn|panic' "$work/$name.log" | head -20 >&2
    fi
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

failed=()
# fanout SCENARIO CLIENTS: one fan-out run into $work/SCENARIO-CLIENTS.txt.
fanout() {
    local scenario=$1 clients=$2 name="$1-$2"
    start_server "$name"
    if ! $client_cpu "$loadgen" --base "$base" "$scenario" --clients "$clients" \
        --messages "$messages" >"$work/$name.txt"; then
        failed+=("$name")
    fi
    cat "$work/$name.txt" >&2
    finish_server "$name"
}

for clients in $ws_clients; do fanout ws-fanout "$clients"; done
for clients in $sync_clients; do fanout sync-fanout "$clients"; done

# idle-sockets: loadgen pauses after registering and after opening the
# sockets (reading a line from the fifo each time) while the RSS is read.
name="idle-sockets-$idle_sockets"
start_server "$name"
rss_start=$(rss_kb "$server_pid")
server_files=$(awk '/^Max open files/ { print $4 }' "/proc/$server_pid/limits")
mkfifo "$work/go"
$client_cpu "$loadgen" --base "$base" idle-sockets --clients "$idle_sockets" \
    --sockets-per-user "$idle_sockets_per_user" --pause-on-stdin \
    <"$work/go" >"$work/$name.txt" &
loadgen_pid=$!
exec 3>"$work/go"
trap '' PIPE # a write to the fifo after loadgen has gone fails instead of killing the script
# wait_phase PHASE: until loadgen prints it (at most 600 s) or exits.
wait_phase() {
    for _ in $(seq 1 6000); do
        grep -q "phase=$1" "$work/$name.txt" && return 0
        kill -0 "$loadgen_pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
rss_registered="" rss_open="" loadgen_rss_open=""
if wait_phase registered; then
    rss_registered=$(rss_kb "$server_pid")
    echo >&3 || true
    if wait_phase open; then
        rss_open=$(rss_kb "$server_pid")
        loadgen_rss_open=$(rss_kb "$loadgen_pid" || true)
        echo >&3 || true
    fi
fi
exec 3>&-
trap - PIPE
if ! wait "$loadgen_pid"; then failed+=("$name"); fi
loadgen_pid=""
cat "$work/$name.txt" >&2
finish_server "$name"
cat >"$work/$name.rss" <<EOF
start=${rss_start:-} registered=${rss_registered:-} open=${rss_open:-} loadgen_open=${loadgen_rss_open:-} server_files=$server_files
EOF

load_end=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$work" "$messages" "$ws_clients" "$sync_clients" "$idle_sockets" "$files_note" \
    "$load_start" "$load_end" <<'PY'
import sys
work, messages, ws_clients, sync_clients, idle, files_note, load_start, load_end = sys.argv[1:9]
def fields(path):
    rows = {}
    try:
        for line in open(path):
            scenario, *rest = line.split()
            row = dict(f.split("=", 1) for f in rest if "=" in f)
            rows[row.get("phase", scenario)] = row
    except FileNotFoundError:
        pass
    return rows
def ms(value):
    try:
        return float(value.removesuffix("ms"))
    except (AttributeError, ValueError):
        return None
print(f"\nReal-time delivery on SQLite: {messages} messages per fan-out run, each sent once every listener has the previous one")
print(f"{'scenario':<14}{'listeners':>10}{'deliveries':>14}{'missing':>9}{'dup':>5}{'order':>7}{'p50':>10}{'p99':>10}{'max':>10}{'send p50':>10}  errors")
runs = [("ws-fanout", c) for c in ws_clients.split()] + [("sync-fanout", c) for c in sync_clients.split()]
p99_at_100 = None
for scenario, clients in runs:
    row = next(iter(fields(f"{work}/{scenario}-{clients}.txt").values()), {})
    print(f"{scenario:<14}{clients:>10}{row.get('deliveries', '-'):>14}{row.get('missing', '-'):>9}"
          f"{row.get('duplicates', '-'):>5}{row.get('out_of_order', '-'):>7}{row.get('p50', '-'):>10}"
          f"{row.get('p99', '-'):>10}{row.get('max', '-'):>10}{row.get('send_p50', '-'):>10}  {row.get('errors', 'no result')}")
    if scenario == "ws-fanout" and clients == "100":
        p99_at_100 = ms(row.get("p99"))
rows = fields(f"{work}/idle-sockets-{idle}.txt")
rss = dict(f.split("=", 1) for f in open(f"{work}/idle-sockets-{idle}.rss").read().split())
mb = lambda kb: f"{int(kb) / 1024:.1f} MB" if kb else "-"
opened, checked = rows.get("open", {}), rows.get("checked", {})
print(f"\nidle-sockets: {opened.get('sockets', '-')} of {idle} sockets open in {opened.get('secs', '-')} s "
      f"({opened.get('errors', '-')} connect errors, {rows.get('registered', {}).get('users', '-')} users); "
      f"pings {checked.get('pongs', '-')}/{checked.get('pinged', '-')} answered, p99 {checked.get('p99', '-')}; "
      f"closed by the server {checked.get('closed_before_check', '-')}, failed {checked.get('failed', '-')}")
print(f"server VmRSS: at start {mb(rss.get('start'))}, users registered {mb(rss.get('registered'))}, "
      f"with the sockets open {mb(rss.get('open'))}", end="")
if rss.get("open") and rss.get("registered") and opened.get("sockets", "0") != "0":
    print(f" ({(int(rss['open']) - int(rss['registered'])) / int(opened['sockets']):.1f} KB per socket)", end="")
print(f"; loadgen VmRSS {mb(rss.get('loadgen_open'))}; server open-file limit {rss.get('server_files', '-')}")
if files_note:
    print(files_note)
print(f"load average (1, 5, 15 min) at start {load_start}, at end {load_end} (2 cores: more than 2 means the pinned processes shared their cores)")
print("\ntargets:")
verdict = lambda ok: "met" if ok else "NOT met"
print(f"  p99 under 10 ms with 100 WebSockets: {verdict(p99_at_100 is not None and p99_at_100 < 10)} ({p99_at_100} ms)")
rss_open = int(rss["open"]) if rss.get("open") else None
all_open = opened.get("sockets") == idle and checked.get("failed") == "0"
print(f"  {int(idle):,} idle sockets in under 300 MB RSS: {verdict(rss_open is not None and rss_open < 300 * 1024 and all_open)} "
      f"({mb(rss.get('open'))})")
PY

if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
