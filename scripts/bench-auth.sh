#!/usr/bin/env bash
# Benchmark: what checking an access token costs. Serves a release build of
# teatime and loads, in the same run, GET /_matrix/client/versions (no auth)
# and GET /_matrix/client/v3/account/whoami (JWT + live-session check) with wrk.
# The server is pinned to CPU 0 and wrk to CPU 1 so they do not share a core.
#
# Settings: DURATION (10s), CONNECTIONS (32), TEATIME_DATABASE_URL (SQLite in a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=$HOME/.cache/teatime-target}"
export CARGO_TARGET_DIR
duration=${DURATION:-10s}
connections=${CONNECTIONS:-32}

if ! command -v wrk >/dev/null 2>&1; then
    echo "installing wrk"
    if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null
    else sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null; fi
fi
cargo build --release -q -p homeserver --bin teatime

data_dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
server_cpu="taskset -c 0"; client_cpu="taskset -c 1"
command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ] || { server_cpu=""; client_cpu=""; }

TEATIME_LISTEN="127.0.0.1:$port" TEATIME_FEDERATION_LISTEN=127.0.0.1:0 TEATIME_DATA_DIR="$data_dir" RUST_LOG=warn \
    $server_cpu "$CARGO_TARGET_DIR/release/teatime" serve &
server_pid=$!
trap 'kill $server_pid 2>/dev/null; wait $server_pid 2>/dev/null; rm -rf "$data_dir"' EXIT
for _ in $(seq 1 100); do curl -fs "$base/healthz" >/dev/null && break; sleep 0.1; done

token=$(curl -fs -X POST "$base/_matrix/client/v3/register" \
    -d '{"username":"bench","password":"bench password","auth":{"type":"m.login.dummy"}}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')

requests_per_sec() {
    $client_cpu wrk -t1 -c"$connections" -d"$duration" --latency "$@" | tee /dev/stderr |
        awk '/^Requests\/sec:/ { print $2 }'
}

echo "== GET /_matrix/client/versions (no authentication)" >&2
versions=$(requests_per_sec "$base/_matrix/client/versions")
echo "== GET /_matrix/client/v3/account/whoami (access token checked)" >&2
whoami=$(requests_per_sec -H "Authorization: Bearer $token" "$base/_matrix/client/v3/account/whoami")

python3 - "$versions" "$whoami" <<'PY'
import sys
versions, whoami = map(float, sys.argv[1:])
print(f"versions: {versions:,.0f} req/s")
print(f"whoami:   {whoami:,.0f} req/s")
print(f"token checking costs {100 * (1 - whoami / versions):.1f}% of the throughput (target: under 20%)")
PY
