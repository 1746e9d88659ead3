#!/usr/bin/env bash
# Synapse as a federation peer on loopback, for the interop tests and by hand.
#
#   scripts/synapse.sh install
#       Installs the pinned Synapse (scripts/synapse-requirements.txt) into a
#       virtualenv outside the clone: $TEATIME_SYNAPSE_VENV, by default
#       ~/.cache/teatime-synapse-venv. Idempotent; concurrent calls wait for
#       each other.
#   scripts/synapse.sh run DIR FEDERATION_PORT CLIENT_PORT
#       Prepares DIR on first use (config, signing key, certificate; Synapse
#       adds its SQLite database and media) and runs Synapse in the foreground, as this process (exec:
#       the PID of the command is Synapse's), logging to stderr. Synapse stops
#       when the process that ran the command exits.
#   scripts/synapse.sh start DIR FEDERATION_PORT CLIENT_PORT
#       The same in the background: waits until Synapse answers, keeps its
#       PID in DIR/synapse.pid, its log in DIR/synapse.log, and prints the PID.
#   scripts/synapse.sh stop DIR
#       Stops the Synapse that `start` left running in DIR.
#
# The server is named localhost:FEDERATION_PORT (an explicit port, so other
# servers connect straight to it) and listens on 127.0.0.1 only: the client
# API over plain HTTP on CLIENT_PORT, federation and keys over HTTPS with a
# self-signed certificate on FEDERATION_PORT. It accepts other servers'
# self-signed certificates and loopback addresses, fetches keys only from
# their servers, has open registration and rate limits far above test loads.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
requirements="$repo/scripts/synapse-requirements.txt"
venv=${TEATIME_SYNAPSE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/teatime-synapse-venv}
python=${PYTHON:-python3}

die() { echo "synapse.sh: $*" >&2; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

secret() { openssl rand -hex 32; }

check_ports() {
    local port
    for port in "$1" "$2"; do
        [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] ||
            die "not a port: $port"
    done
    [ "$1" != "$2" ] || die "the federation and client ports must differ"
}

# A subshell, so the lock is released when it returns (a Synapse started
# afterwards must not inherit it).
install() (
    mkdir -p "$(dirname "$venv")"
    exec 9>"$venv.lock"
    flock 9
    local stamp="$venv/.teatime-requirements"
    if [ -f "$stamp" ] && cmp -s "$stamp" "$requirements" && [ -x "$venv/bin/python" ]; then
        return 0
    fi
    command -v "$python" >/dev/null ||
        die "$python not found; install Python 3.10 or newer (or set PYTHON)"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
        die "Synapse needs Python 3.10 or newer; $python is $("$python" --version 2>&1)"
    echo "synapse.sh: installing Synapse into $venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv" ||
        die "cannot create a virtualenv with $python (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements" ||
        die "pip could not install $requirements into $venv"
    cp "$requirements" "$stamp"
)

# For `run` and `start`: installs Synapse if needed, writes DIR's
# configuration, signing key and certificate unless they are there (a DIR
# prepared for other ports is refused rather than rewritten), and sets `dir`
# to DIR's absolute path.
prepare() {
    local federation_port=$2 client_port=$3
    check_ports "$federation_port" "$client_port"
    install
    local marker="# teatime synapse.sh: localhost:$federation_port client $client_port"
    mkdir -p "$1"
    dir=$(cd "$1" && pwd)
    if [ -f "$dir/homeserver.yaml" ]; then
        [ "$(head -n 1 "$dir/homeserver.yaml")" = "$marker" ] ||
            die "$dir/homeserver.yaml was written for other ports or by someone else; use a new DIR"
        return 0
    fi
    if [ ! -f "$dir/tls.key" ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=localhost \
            -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
            -keyout "$dir/tls.key" -out "$dir/tls.crt" 2>/dev/null ||
            die "openssl could not make a self-signed certificate in $dir"
    fi
    if [ ! -f "$dir/signing.key" ]; then
        "$venv/bin/python" -c '
import sys
from signedjson.key import generate_signing_key, write_signing_keys
with open(sys.argv[1], "w") as f:
    write_signing_keys(f, [generate_signing_key("a_1")])
' "$dir/signing.key"
    fi
    mkdir -p "$dir/media_store"
    # Rate limits: per_second/burst_count far above what tests send.
    local generous="{per_second: 1000, burst_count: 10000}"
    cat >"$dir/homeserver.yaml.new" <<EOF
$marker
server_name: "localhost:$federation_port"
pid_file: "$dir/homeserver.pid"
report_stats: false
listeners:
  - port: $client_port
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
  - port: $federation_port
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: true
    resources:
      - names: [federation]
        compress: false
tls_certificate_path: "$dir/tls.crt"
tls_private_key_path: "$dir/tls.key"
database:
  name: sqlite3
  args:
    database: "$dir/homeserver.db"
media_store_path: "$dir/media_store"
signing_key_path: "$dir/signing.key"
macaroon_secret_key: "$(secret)"
form_secret: "$(secret)"
registration_shared_secret: "$(secret)"

# Federation on a loopback test network: self-signed certificates, keys
# fetched from each server itself, and loopback peers. Synapse blocks
# loopback by default; ip_range_whitelist would lift that only for names
# that resolve to loopback, not for server names that are IP literals
# (127.0.0.1:PORT), which only ip_range_blacklist decides. So that list is
# Synapse's default without loopback (and federation_ip_range_blacklist,
# which would replace it for federation, stays unset).
federation_verify_certificates: false
ip_range_blacklist: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
  "100.64.0.0/10", "192.0.0.0/24", "169.254.0.0/16", "192.88.99.0/24",
  "198.18.0.0/15", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
  "224.0.0.0/4", "fe80::/10", "fc00::/7", "2001:db8::/32", "ff00::/8",
  "fec0::/10"]
trusted_key_servers: []
suppress_key_server_warning: true
allow_public_rooms_over_federation: true
# Synapse publishes nothing in its room directory unless a rule allows it
# (createRoom with visibility public then quietly keeps the room unlisted).
room_list_publication_rules: [{action: allow}]

# Synapse keeps a /sync answer for 2 minutes and gives it again to the same
# request; the tests poll /sync for what changed since, so no such cache.
caches:
  sync_response_cache_duration: 0

enable_registration: true
enable_registration_without_verification: true
url_preview_enabled: false
enable_metrics: false

rc_message: $generous
rc_registration: $generous
rc_registration_token_validity: $generous
rc_login:
  address: $generous
  account: $generous
  failed_attempts: $generous
rc_joins:
  local: $generous
  remote: $generous
rc_joins_per_room: $generous
rc_invites:
  per_room: $generous
  per_user: $generous
  per_issuer: $generous
rc_3pid_validation: $generous
rc_third_party_invite: $generous
rc_media_create: $generous
rc_presence:
  per_user: $generous
rc_delayed_event_mgmt: $generous
rc_room_creation: $generous
rc_reports: $generous
rc_user_directory: $generous
rc_profile: $generous
rc_admin_redaction: $generous
rc_federation:
  window_size: 1000
  sleep_limit: 10000
  sleep_delay: 1
  reject_limit: 100000
  concurrent: 1000
federation_rr_transactions_per_room_per_second: 10000
EOF
    mv "$dir/homeserver.yaml.new" "$dir/homeserver.yaml"
}

# Synapse answers both listeners (`start` waits for this; the tests poll alike).
answers() {
    local federation_port=$1 client_port=$2
    curl -sf -o /dev/null "http://127.0.0.1:$client_port/_matrix/client/versions" &&
        curl -skf -o /dev/null "https://127.0.0.1:$federation_port/_matrix/key/v2/server"
}

command=${1:-}
case "$command" in
    install)
        [ $# -eq 1 ] || usage
        install
        ;;
    run)
        [ $# -eq 4 ] || usage
        prepare "$2" "$3" "$4"
        # Synapse asks the kernel to stop it when its parent goes (Linux's
        # PR_SET_PDEATHSIG), so a test killed mid-run leaves no Synapse behind.
        exec "$venv/bin/python" -c '
import ctypes, os, runpy, signal, sys
try:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except (AttributeError, OSError):
    pass
if os.getppid() == 1:
    sys.exit("synapse.sh: the process that started Synapse is gone")
sys.argv = ["synapse.app.homeserver", "-c", sys.argv[1]]
runpy.run_module("synapse.app.homeserver", run_name="__main__", alter_sys=True)
' "$dir/homeserver.yaml"
        ;;
    start)
        [ $# -eq 4 ] || usage
        prepare "$2" "$3" "$4"
        if [ -f "$dir/synapse.pid" ] && kill -0 "$(cat "$dir/synapse.pid")" 2>/dev/null; then
            die "a Synapse already runs in $dir (PID $(cat "$dir/synapse.pid"))"
        fi
        "$venv/bin/python" -m synapse.app.homeserver -c "$dir/homeserver.yaml" \
            >>"$dir/synapse.log" 2>&1 </dev/null &
        pid=$!
        echo "$pid" >"$dir/synapse.pid"
        for _ in $(seq 1 600); do
            if answers "$3" "$4"; then
                echo "$pid"
                exit 0
            fi
            if ! kill -0 "$pid" 2>/dev/null; then
                tail -n 30 "$dir/synapse.log" >&2
                die "Synapse exited while starting (log: $dir/synapse.log)"
            fi
            sleep 0.1
        done
        kill "$pid" 2>/dev/null || true
        die "Synapse did not answer within 60 s (log: $dir/synapse.log)"
        ;;
    stop)
        [ $# -eq 2 ] || usage
        pid_file="$2/synapse.pid"
        [ -f "$pid_file" ] || die "no $pid_file: nothing started there"
        pid=$(cat "$pid_file")
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
        fi
        rm -f "$pid_file"
        ;;
    *)
        usage
        ;;
esac
