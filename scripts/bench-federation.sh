#!/usr/bin/env bash
# Benchmark: federation between two TeaTime servers. Builds release teatime
# and teatime-loadgen, serves A and B on loopback, each on SQLite in a
# temporary data directory, federating as the multi-server tests do (server
# name 127.0.0.1:<federation port>, self-signed certificates accepted, retries
# within 2 s), makes an administrator of A with `teatime admin create-user`,
# then runs two loadgen scenarios:
# - federation-backlog: B's user joins a public room of A through A; A's
#   administrator denies B in A's federation rules; CLIENTS users of A send
#   SENDS messages; A's queue for B (as A's admin API lists its
#   destinations) must hold them all;
#   the rules are restored and the clock runs until B has the last one.
#   A sends transactions of up to 50 PDUs, so SENDS / seconds is B's inbound
#   rate of such transactions. Run twice, in two rooms: watched by B's user
#   on the WebSocket (every message must arrive exactly once), then by
#   polling B's /messages, which adds no writes on B (each incremental sync
#   of a socket deletes the device's acknowledged to-device messages, a write
#   that waits for SQLite's lock like the incoming events). Every message
#   must be stored exactly once in B's /messages.
# - big-join: a room of A with MEMBERS members and STATE_EVENTS state events
#   (the members, then org.teatime.bench events of the creator); a user of B
#   joins it through A: the wall time of that request, and B's GET /state
#   must hold the same state as A's.
# Prints a summary table with the targets (5,000 PDUs/s inbound, the big join
# in under 3 s) and where the time went, from the servers' request logs. A is
# pinned to CPU 0, B to CPU 1; loadgen is not pinned (during the measured
# phases it only reads one socket or polls, or waits for one request). Any
# error fails the run.
#
# Settings: SENDS (10000), CLIENTS (32), MEMBERS (1000), STATE_EVENTS (10000),
# SERVER_LOG (the servers' RUST_LOG; default: warnings, plus the request log
# and the federation sender's per-transaction lines the summary reads;
# TEATIME_LOG is not a setting and the server refuses unknown TEATIME_*
# variables), PROFILE=1 samples both servers with perf during the measured
# phases and prints the top symbols (PERF_ARGS: perf record's options, e.g.
# "-F 299 --call-graph dwarf"), KEEP=1 keeps the data directories, logs and
# profiles (their path is printed).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=$HOME/.cache/teatime-target}"
export CARGO_TARGET_DIR
sends=${SENDS:-10000}
clients=${CLIENTS:-32}
members=${MEMBERS:-1000}
state_events=${STATE_EVENTS:-10000}
server_log=${SERVER_LOG:-warn,homeserver::http=debug,homeserver::servers::sender=debug}

cargo build --release -q -p homeserver --bin teatime -p loadgen --bin teatime-loadgen
teatime="$CARGO_TARGET_DIR/release/teatime"
loadgen="$CARGO_TARGET_DIR/release/teatime-loadgen"
a_cpu="taskset -c 0"; b_cpu="taskset -c 1"
command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ] || { a_cpu=""; b_cpu=""; }

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(mktemp -d)
pids=()
perf_pids=()
loadgen_pid=""
cleanup() {
    exec 3>&- 2>/dev/null || true
    if [ -n "$loadgen_pid" ]; then
        kill "$loadgen_pid" 2>/dev/null || true
        wait "$loadgen_pid" 2>/dev/null || true
    fi
    for pid in "${perf_pids[@]}"; do
        kill -INT "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "${KEEP:-0}" = 1 ]; then
        echo "kept $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# server_env NAME: the settings of server NAME (ports in $work/NAME.ports).
server_env() {
    local name=$1 port federation_port
    read -r port federation_port <"$work/$1.ports"
    echo TEATIME_SERVER_NAME="127.0.0.1:$federation_port" TEATIME_LISTEN="127.0.0.1:$port" \
        TEATIME_FEDERATION_LISTEN="127.0.0.1:$federation_port" TEATIME_DATA_DIR="$work/$name" \
        TEATIME_FEDERATION_VERIFY_TLS=false TEATIME_FEDERATION_RETRY_MAX_SECS=2 \
        TEATIME_REGISTRATION_BURST=100000
}

# prepare NAME: picks its ports and makes its data directory.
prepare() {
    echo "$(free_port) $(free_port)" >"$work/$1.ports"
    mkdir -p "$work/$1"
}

# start NAME [PINNING...]: serves teatime NAME (the command prefix PINNING, e.g. taskset) and waits for it.
start() {
    local name=$1 port base
    shift
    read -r port _ <"$work/$name.ports"
    base="http://127.0.0.1:$port"
    # shellcheck disable=SC2046 # server_env gives NAME=value words
    env -u TEATIME_DATABASE_URL -u TEATIME_CONFIG $(server_env "$name") RUST_LOG="$server_log" \
        "$@" "$teatime" serve 2>"$work/$name.log" &
    pids+=($!)
    for _ in $(seq 1 100); do curl -fs "$base/healthz" >/dev/null && break; sleep 0.1; done
    curl -fs "$base/healthz" >/dev/null || { cat "$work/$name.log" >&2; echo "teatime $name did not start" >&2; exit 1; }
}

prepare A
prepare B
# The administrator of A, made before A starts, as a deployment would.
admin_password="bench-admin-$$-$RANDOM"
# shellcheck disable=SC2046
env -u TEATIME_DATABASE_URL -u TEATIME_CONFIG $(server_env A) RUST_LOG=warn \
    "$teatime" admin create-user bench-admin --password "$admin_password" --admin >/dev/null
start A $a_cpu
start B $b_cpu
read -r a_port _ <"$work/A.ports"
read -r b_port _ <"$work/B.ports"
a_base="http://127.0.0.1:$a_port"
b_base="http://127.0.0.1:$b_port"
admin_token=$(curl -fsS -X POST "$a_base/_matrix/client/v3/login" -H 'content-type: application/json' \
    -d "{\"type\":\"m.login.password\",\"identifier\":{\"type\":\"m.id.user\",\"user\":\"bench-admin\"},\"password\":\"$admin_password\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')

# queued_for DESTINATION: what A's admin API says of sending to DESTINATION
# (GET /_teatime/admin/v1/federation/destinations).
queued_for() {
    curl -fsS -H "Authorization: Bearer $admin_token" "$a_base/_teatime/admin/v1/federation/destinations" |
        python3 -c '
import json, sys
rows = [d for d in json.load(sys.stdin)["destinations"] if d["destination"] == sys.argv[1]]
row = rows[0] if rows else {}
queued, failures, error = row.get("queued", 0), row.get("failures", "-"), row.get("last_error") or "-"
print(f"queued={queued} failures={failures} last_error={error}")
' "$1"
}

lines() { wc -l <"$1" | tr -d ' '; }
# plain LOG FROM_LINE: the log from that line on, without terminal colours.
plain() { tail -n +"$(($2 + 1))" "$1" | sed 's/\x1b\[[0-9;]*m//g'; }
failed=()

# profile_start NAME / profile_stop NAME: with PROFILE=1, perf samples both
# servers between the two (PERF_ARGS, default -F 999: no call graphs), into
# $work/NAME-{A,B}.perf (with KEEP=1) and the top symbols into NAME-{A,B}.perf.txt.
profile_start() {
    [ "${PROFILE:-0}" = 1 ] || return 0
    local server pid
    for server in A B; do
        if [ "$server" = A ]; then pid=${pids[0]}; else pid=${pids[1]}; fi
        # shellcheck disable=SC2086 # PERF_ARGS is a list of options
        perf record -q ${PERF_ARGS:--F 999} -o "$work/$1-$server.perf" -p "$pid" 2>/dev/null &
        perf_pids+=($!)
    done
    sleep 0.5 # perf attaches
}
profile_stop() {
    [ "${PROFILE:-0}" = 1 ] || return 0
    local pid server
    for pid in "${perf_pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    perf_pids=()
    for server in A B; do
        perf report -q -i "$work/$1-$server.perf" --stdio --no-children --sort dso,symbol 2>/dev/null |
            grep -v '^$' | head -40 >"$work/$1-$server.perf.txt" || true
    done
}

# measure NAME PHASE LOADGEN_ARGS...: runs loadgen into $work/NAME.txt; when
# it prints PHASE it pauses (reading a line from a fifo) while on_pause NAME
# runs; the profile covers what follows. The servers' logs of the run go to
# $work/NAME-{A,B}.log.
measure() {
    local name=$1 phase=$2 a_mark b_mark
    shift 2
    a_mark=$(lines "$work/A.log"); b_mark=$(lines "$work/B.log")
    rm -f "$work/go"
    mkfifo "$work/go"
    "$loadgen" --base "$a_base" --remote-base "$b_base" "$@" --pause-on-stdin \
        <"$work/go" >"$work/$name.txt" &
    loadgen_pid=$!
    exec 3>"$work/go"
    trap '' PIPE # a write to the fifo after loadgen has gone fails instead of killing the script
    for _ in $(seq 1 36000); do
        grep -q "phase=$phase" "$work/$name.txt" && break
        kill -0 "$loadgen_pid" 2>/dev/null || break
        sleep 0.1
    done
    if grep -q "phase=$phase" "$work/$name.txt"; then
        on_pause "$name"
        profile_start "$name"
    fi
    echo 2>/dev/null >&3 || true
    exec 3>&-
    trap - PIPE
    if ! wait "$loadgen_pid"; then failed+=("$name"); fi
    loadgen_pid=""
    profile_stop "$name"
    cat "$work/$name.txt" >&2
    plain "$work/A.log" "$a_mark" >"$work/$name-A.log"
    plain "$work/B.log" "$b_mark" >"$work/$name-B.log"
}

# While B is denied: A's queue for B.
on_pause() {
    local destination
    destination=$(sed -n 's/.*phase=queued .*destination=\([^ ]*\).*/\1/p' "$work/$1.txt")
    [ -n "$destination" ] || return 0
    queued_for "$destination" >"$work/$1.queued"
    echo "A's queue for $destination while denied: $(cat "$work/$1.queued")" >&2
}

# The backlog watched on B's WebSocket, then (a new room) through /messages polls.
for watch in socket messages; do
    echo "== federation-backlog --watch $watch: $sends messages from $clients clients of A" >&2
    measure "backlog-$watch" queued --admin-token "$admin_token" federation-backlog \
        --watch "$watch" --sends "$sends" --clients "$clients"
    destination=$(sed -n 's/.*phase=queued .*destination=\([^ ]*\).*/\1/p' "$work/backlog-$watch.txt")
    if [ -n "$destination" ]; then queued_for "$destination" >"$work/backlog-$watch.after"; fi
done

on_pause() { :; }
echo "== big-join: $members members, $state_events state events" >&2
measure big-join built big-join --members "$members" --state-events "$state_events"

for name in A B; do
    if plain "$work/$name.log" 0 | grep -Eqi ' (warn|error) |panic'; then
        echo "server log of $name:" >&2
        plain "$work/$name.log" 0 | grep -Ei ' (warn|error) |panic' | head -20 >&2
    fi
done

load_end=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$work" "$sends" "$clients" "$members" "$state_events" "$load_start" "$load_end" <<'PY'
import re, sys
from datetime import timedelta, datetime
work, sends, clients, members, state_events, load_start, load_end = sys.argv[1:8]
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
def logged(path, pattern):
    """(end, elapsed_ms) of the logged requests whose path matches `pattern`."""
    found = []
    for line in open(path):
        if "request done" in line or "request failed" in line:
            p = re.search(r"path=(\S+?)[}\s]", line)
            e = re.search(r"elapsed_ms=(\d+)", line)
            if p and e and re.search(pattern, p.group(1)):
                end = datetime.fromisoformat(line.split()[0].replace("Z", "+00:00"))
                found.append((end, int(e.group(1))))
    return found
def requests(path, pattern):
    """elapsed_ms of the logged requests whose path matches `pattern`."""
    return [elapsed for _, elapsed in logged(path, pattern)]
def pct(values, p):
    values = sorted(values)
    return values[max(0, min(len(values), -(-len(values) * p // 100)) - 1)] if values else None
def num(value):
    try:
        return float(str(value).removesuffix("/s"))
    except ValueError:
        return None
verdict = lambda ok: "met" if ok else "NOT met"
def first_field(path):
    try:
        return open(path).read().split()[0].split("=", 1)[1]
    except (FileNotFoundError, IndexError):
        return "-"

runs = {watch: fields(f"{work}/backlog-{watch}.txt") for watch in ("socket", "messages")}
joined = fields(f"{work}/big-join.txt")
built, join = joined.get("built", {}), joined.get("joined", {})
join_secs = num(join.get("join_secs"))

print(f"\nFederation on loopback, A (CPU 0) and B (CPU 1), SQLite each, release builds")
print(f"{'scenario':<66}{'result':>10}{'target':>10}")
for watch, label in (("socket", "B's client on the WebSocket"), ("messages", "B polled through /messages")):
    delivered = runs[watch].get("delivered", {})
    rate = num(delivered.get("rate"))
    print(f"{f'inbound PDUs/s, {sends} in 50-PDU txns, {label}':<66}"
          f"{delivered.get('rate', '-').removesuffix('/s'):>10}{'5,000':>10}  {verdict(rate is not None and rate >= 5000)}")
print(f"{f'big join, {members} members, {state_events} state events (s)':<66}"
      f"{join.get('join_secs', '-'):>10}{'< 3':>10}  {verdict(join_secs is not None and join_secs < 3 and join.get('errors') == '0')}")

for watch in ("socket", "messages"):
    queued, delivered = runs[watch].get("queued", {}), runs[watch].get("delivered", {})
    print(f"\nfederation-backlog --watch {watch}: {queued.get('sent', '-')} messages sent by {clients} clients of A in "
          f"{queued.get('send_secs', '-')} s ({queued.get('send_rate', '-')}) while B was denied; A's queue for B "
          f"then held {first_field(f'{work}/backlog-{watch}.queued')} events "
          f"({first_field(f'{work}/backlog-{watch}.after')} after the run)")
    print(f"  after the deny was lifted: the first message on B after {delivered.get('first_ms', '-')} ms, "
          f"the last after {delivered.get('secs', '-')} s; seen on B {delivered.get('received', '-')}, "
          f"in B's /messages {delivered.get('stored', '-')}, duplicates {delivered.get('duplicates', '-')}, "
          f"missing {delivered.get('missing', '-')}, errors {delivered.get('errors', '-')}")
    sent = logged(f"{work}/backlog-{watch}-B.log", r"^/_matrix/federation/v1/send/")
    if sent:
        txns = [elapsed for _, elapsed in sent]
        secs = num(delivered.get("secs")) or float("nan")
        # Between one transaction's answer and the next one's arrival on B, A
        # records the delivery, reads and signs the next batch and sends it.
        gaps = [max(0, (end - timedelta(milliseconds=elapsed) - previous).total_seconds() * 1000)
                for (previous, _), (end, elapsed) in zip(sent, sent[1:])]
        print(f"  B handled {len(txns)} transactions: p50 {pct(txns, 50)} ms, p99 {pct(txns, 99)} ms, "
              f"max {max(txns)} ms, {sum(txns) / 1000:.2f} s in all ({100 * sum(txns) / 1000 / secs:.0f}% of the "
              f"elapsed time), {sum(txns) / len(txns) / 50:.2f} ms per PDU; over 100 ms: "
              f"{sum(1 for t in txns if t > 100)} transactions, {sum(t for t in txns if t > 100) / 1000:.2f} s")
        if gaps:
            print(f"  between transactions (A marks the batch delivered, reads and signs the next, sends it): "
                  f"p50 {pct(gaps, 50):.0f} ms, p99 {pct(gaps, 99):.0f} ms, {sum(gaps) / 1000:.2f} s in all "
                  f"({100 * sum(gaps) / 1000 / secs:.0f}%); one transaction in flight at a time")

print(f"\nbig-join: room built in {built.get('setup_secs', '-')} s ({built.get('members_secs', '-')} s for the "
      f"members, state events at {built.get('state_rate', '-')}); after the join B reports "
      f"{join.get('state_on_b', '-')} state events ({join.get('members_on_b', '-')} joined members), "
      f"errors {join.get('errors', '-')}")
make = requests(f"{work}/big-join-A.log", r"^/_matrix/federation/v1/make_join/")
send = requests(f"{work}/big-join-A.log", r"^/_matrix/federation/v2/send_join/")
client = requests(f"{work}/big-join-B.log", r"^/_matrix/client/v3/join/")
if send and client:
    print(f"  A answered make_join in {make[-1] if make else '-'} ms and send_join in {send[-1]} ms; "
          f"B's join request took {client[-1]} ms, so B spent about "
          f"{client[-1] - send[-1] - (make[-1] if make else 0)} ms on the rest (the transfer, checking the "
          f"signatures and auth of the state and auth chain, storing them)")

print(f"\nload average (1, 5, 15 min) at start {load_start}, at end {load_end} "
      f"(2 cores: more than 2 means the pinned servers shared their cores)")

import glob, os
for path in sorted(glob.glob(f"{work}/*.perf.txt")):
    print(f"\nprofile {os.path.basename(path).removesuffix('.perf.txt')} (self time by symbol):")
    for line in open(path).read().splitlines()[:15]:
        print("  " + line.strip()[:150])
PY

if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
