#!/usr/bin/env bash
# Benchmark: call forwarding through the SFU. Builds release teatime and
# teatime-loadgen, serves a fresh teatime on SQLite (temporary data directory,
# media sockets on 127.0.0.1) pinned to CPU 0, and runs loadgen's `calls`
# scenario pinned to CPU 1: one call of each size in PARTICIPANTS, every
# participant a webrtc-rs peer sending Opus-sized audio and VIDEO_KBPS of
# video, signalled over the WebSocket. For each size it prints the forwarded
# packets/s, the server's CPU per forwarded packet and the latency the SFU
# adds (one-way latency through the SFU minus that of two peers connected
# directly), and checks the target: 8 participants (56 forwarded video
# streams) on one core with added latency p99 under 5 ms.
#
# Settings: PARTICIPANTS ("2,4,8"), VIDEO_KBPS (1000), SECONDS_PER_CALL (10).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=$HOME/.cache/teatime-target}"
export CARGO_TARGET_DIR
participants=${PARTICIPANTS:-2,4,8}
video_kbps=${VIDEO_KBPS:-1000}
seconds=${SECONDS_PER_CALL:-10}

cargo build --release -q -p homeserver --bin teatime -p loadgen --bin teatime-loadgen
teatime="$CARGO_TARGET_DIR/release/teatime"
loadgen="$CARGO_TARGET_DIR/release/teatime-loadgen"
server_cpu="taskset -c 0"; client_cpu="taskset -c 1"
command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ] || { server_cpu=""; client_cpu=""; }

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
env -u TEATIME_DATABASE_URL TEATIME_LISTEN="127.0.0.1:$port" TEATIME_FEDERATION_LISTEN=127.0.0.1:0 \
    TEATIME_DATA_DIR="$work/data" TEATIME_REGISTRATION_BURST=100000 TEATIME_SFU_BIND_IP=127.0.0.1 \
    RUST_LOG=warn $server_cpu "$teatime" serve 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 100); do curl -fs "$base/healthz" >/dev/null && break; sleep 0.1; done
curl -fs "$base/healthz" >/dev/null || { cat "$work/server.log" >&2; echo "teatime did not start" >&2; exit 1; }

status=0
$client_cpu "$loadgen" --base "$base" calls --participants "$participants" \
    --video-kbps "$video_kbps" --seconds "$seconds" --server-pid "$server_pid" \
    | tee "$work/calls.txt" || status=$?
if grep -Eqi 'error|panic' "$work/server.log"; then
    echo "server log:" >&2
    grep -Ei 'error|panic' "$work/server.log" | head -20 >&2
fi

echo
echo "== summary (load average at start: $load_start)"
echo "command: make bench-calls (PARTICIPANTS=$participants VIDEO_KBPS=$video_kbps SECONDS_PER_CALL=$seconds)"
grep '^calls' "$work/calls.txt" || true
target=$(sed -n 's/^calls 8 participants: .*added by the SFU p50 [-0-9.]* ms p99 \([-0-9.]*\) ms.*/\1/p' "$work/calls.txt")
cpu=$(sed -n 's/^calls 8 participants: .*server CPU \([0-9]*\)% of a core.*/\1/p' "$work/calls.txt")
if [ -n "$target" ]; then
    verdict=$(python3 -c "print('met' if $target < 5 and ${cpu:-0} < 100 else 'MISSED')")
    echo "target (8 participants on one core, added p99 < 5 ms): $verdict (added p99 $target ms, server CPU ${cpu:-?}% of a core)"
fi
exit $status
