#!/usr/bin/env bash
# Benchmark: the media repository. Builds release teatime and teatime-loadgen
# and, for each backend (the data dir, then s3s-fs as the S3 server), serves a
# fresh teatime on SQLite and runs:
# - media: 1 MB and 100 MB files uploaded one after another (about 200 MB per
#   size), then downloaded and checked byte for byte; throughput in MB/s;
# - big-upload, on a fresh server: one BIG_UPLOAD_MB upload (1024 by default),
#   generated as it is sent; the server's VmRSS is read at start (fresh), once
#   the user is registered (idle; registration's argon2 hash leaves memory in
#   the allocator, so "over fresh" is the stricter figure) and every 20 ms
#   during the upload (peak).
# Prints a summary against the target (peak under 64 MB above idle during a
# 1 GiB upload). Any failed transfer fails the run.
#
# Settings: FILE_MB ("1,100"), BIG_UPLOAD_MB (1024), BACKENDS ("fs s3").
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=$HOME/.cache/teatime-target}"
export CARGO_TARGET_DIR
file_mb=${FILE_MB:-1,100}
big_upload_mb=${BIG_UPLOAD_MB:-1024}
backends=${BACKENDS:-fs s3}

cargo build --release -q -p homeserver --bin teatime -p loadgen --bin teatime-loadgen
teatime="$CARGO_TARGET_DIR/release/teatime"
loadgen="$CARGO_TARGET_DIR/release/teatime-loadgen"
s3s_fs=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
if [[ " $backends " == *" s3 "* ]] && [ ! -x "$s3s_fs" ]; then
    echo "s3s-fs is missing: run scripts/install-test-deps.sh" >&2
    exit 1
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# start_server NAME: a fresh teatime on SQLite in $work/NAME with ${settings[@]};
# sets $base and $server_pid.
start_server() {
    local name=$1 port
    port=$(free_port)
    base="http://127.0.0.1:$port"
    mkdir -p "$work/$name"
    env -u TEATIME_DATABASE_URL "${settings[@]}" TEATIME_LISTEN="127.0.0.1:$port" \
        TEATIME_FEDERATION_LISTEN=127.0.0.1:0 TEATIME_DATA_DIR="$work/$name" RUST_LOG=warn \
        "$teatime" serve 2>"$work/$name.log" &
    server_pid=$!
    pids+=("$server_pid")
    for _ in $(seq 1 100); do curl -fs "$base/healthz" >/dev/null && break; sleep 0.1; done
    curl -fs "$base/healthz" >/dev/null || { cat "$work/$name.log" >&2; echo "teatime did not start" >&2; exit 1; }
}

# stop_server NAME: stops it and shows its errors.
stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    if grep -Eqi 'error|panic' "$work/$1.log"; then
        grep -Ei 'error|panic' "$work/$1.log" | head -10 >&2
    fi
}

failed=()
for backend in $backends; do
    echo "== $backend" >&2
    settings=(TEATIME_MEDIA_BACKEND="$backend" TEATIME_MAX_UPLOAD_SIZE=$(((big_upload_mb + 1) * 1024 * 1024))
        TEATIME_MEDIA_QUOTA_BYTES=0)
    if [ "$backend" = s3 ]; then
        s3_port=$(free_port)
        mkdir -p "$work/s3/teatime-media"
        "$s3s_fs" --host 127.0.0.1 --port "$s3_port" --access-key bench --secret-key bench-secret \
            "$work/s3" >/dev/null 2>&1 &
        pids+=($!)
        for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$s3_port") 2>/dev/null && break; sleep 0.1; done
        settings+=(TEATIME_S3_ENDPOINT="http://127.0.0.1:$s3_port" TEATIME_S3_BUCKET=teatime-media
            TEATIME_S3_ACCESS_KEY_ID=bench TEATIME_S3_SECRET_ACCESS_KEY=bench-secret TEATIME_S3_FORCE_PATH_STYLE=true)
    fi
    start_server "$backend-media"
    "$loadgen" --base "$base" media --file-mb "$file_mb" >"$work/$backend.txt" || failed+=("$backend media")
    stop_server "$backend-media"

    # A fresh server, so the idle figure holds no buffers of the runs above.
    start_server "$backend-big"
    sleep 1
    fresh=$(rss_kb "$server_pid")

    # big-upload waits for a line on the fifo after registering.
    mkfifo "$work/$backend.go"
    "$loadgen" --base "$base" big-upload --big-upload-mb "$big_upload_mb" --pause-on-stdin \
        <"$work/$backend.go" >>"$work/$backend.txt" &
    loadgen_pid=$!
    exec 3>"$work/$backend.go"
    for _ in $(seq 1 300); do grep -q "phase=registered" "$work/$backend.txt" && break; sleep 0.1; done
    sleep 1 # let registration's memory settle
    idle=$(rss_kb "$server_pid")
    peak=$idle
    echo >&3
    exec 3>&-
    while kill -0 "$loadgen_pid" 2>/dev/null; do
        now=$(rss_kb "$server_pid" || echo 0)
        [ "${now:-0}" -gt "$peak" ] && peak=$now
        sleep 0.02
    done
    wait "$loadgen_pid" || failed+=("$backend big-upload")
    echo "rss backend=$backend fresh_kb=$fresh idle_kb=$idle peak_kb=$peak" >>"$work/$backend.txt"
    cat "$work/$backend.txt" >&2
    stop_server "$backend-big"
done

python3 - "$work" "$backends" "$big_upload_mb" <<'PY'
import sys
work, backends, big = sys.argv[1], sys.argv[2].split(), sys.argv[3]
print(f"\nMedia on SQLite, one client on loopback (download = read back and checked)")
print(f"{'backend':<8}{'size':>8}{'files':>7}{'upload MB/s':>13}{'download MB/s':>15}  errors")
summary = []
for backend in backends:
    rows = [dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
            for line in open(f"{work}/{backend}.txt") if line.strip()]
    for row in rows:
        if "download_mbps" in row:
            print(f"{backend:<8}{row['size_mb'] + ' MB':>8}{row['files']:>7}{row['upload_mbps']:>13}"
                  f"{row['download_mbps']:>15}  {row['errors']}")
        elif row.get("phase") == "done":
            summary.append((backend, row))
        elif "peak_kb" in row:
            done = next(r for b, r in summary if b == backend)
            above = (int(row["peak_kb"]) - int(row["idle_kb"])) / 1024
            verdict = "met" if above < 64 and done.get("ok") == "true" else "NOT met"
            print(f"{backend:<8} {big} MB upload: {done.get('upload_mbps')} MB/s, server RSS fresh "
                  f"{int(row['fresh_kb']) / 1024:.1f} MB, idle with the user registered "
                  f"{int(row['idle_kb']) / 1024:.1f} MB, peak {int(row['peak_kb']) / 1024:.1f} MB "
                  f"(+{above:.1f} MB over idle, +{(int(row['peak_kb']) - int(row['fresh_kb'])) / 1024:.1f} MB "
                  f"over fresh; target < 64 MB above idle: {verdict})")
PY
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
