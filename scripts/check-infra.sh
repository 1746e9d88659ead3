#!/usr/bin/env bash
# Validates the deployment files in infra/ with the tools that read them:
#   - infra/.env.example lists every setting of homeserver/src/config.rs, and the
#     compose file and systemd unit set no TEATIME_* variable the server lacks
#     (it refuses to start on unknown ones);
#   - infra/Caddyfile: `caddy validate` (and `caddy adapt` shows both sites);
#   - infra/teatime.service: `systemd-analyze verify`, warnings count as failures;
#   - infra/compose.yaml: `docker compose config -q` (or Debian's docker-compose),
#     with infra/compose.env.example as its .env;
#   - infra/turnserver.conf: coturn started with it on 127.0.0.1, answering a STUN
#     binding request and granting a TURN allocation to TeaTime-style REST
#     credentials (and refusing wrong or expired ones), then stopped.
# Installs nothing (scripts/install-test-deps.sh does), writes only to a temp
# dir, leaves nothing running. Exits non-zero naming the first check that failed.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "check-infra: FAILED: $*" >&2; exit 1; }
ok() { echo "check-infra: ok: $*"; }

tmp=$(mktemp -d)
turn_pid=
cleanup() {
    if [ -n "$turn_pid" ] && kill -0 "$turn_pid" 2>/dev/null; then
        kill "$turn_pid" 2>/dev/null || true
        wait "$turn_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

missing=()
for tool in caddy systemd-analyze turnserver python3; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
else
    missing+=("docker compose (or docker-compose)")
fi
[ ${#missing[@]} -eq 0 ] || fail "missing tools: ${missing[*]}; run scripts/install-test-deps.sh"

# --- settings: config.rs <-> .env.example, compose.yaml, teatime.service -------
settings=$(sed -n '/^pub struct Config {/,/^}/p' homeserver/src/config.rs |
    sed -n 's/^ *pub \([a-z0-9_]*\):.*/\1/p' | tr '[:lower:]' '[:upper:]' | sed 's/^/TEATIME_/')
[ -n "$settings" ] || fail "found no settings in homeserver/src/config.rs (struct Config moved?)"
for var in $settings; do
    grep -Eq "^(# )?$var=" infra/.env.example ||
        fail "infra/.env.example does not list $var (a setting in homeserver/src/config.rs)"
done
# Variables each file really sets (not commented out), which the server must know.
set_vars() {
    case "$1" in
        *.yaml) grep -Eo '^ +TEATIME_[A-Z0-9_]+:' "$1" | tr -d ' :' ;;
        *.service) grep -Eo '^Environment=TEATIME_[A-Z0-9_]+' "$1" | sed 's/^Environment=//' ;;
        *) grep -Eo '^TEATIME_[A-Z0-9_]+=' "$1" | tr -d '=' ;;
    esac
}
for file in infra/.env.example infra/compose.yaml infra/teatime.service; do
    for var in $(set_vars "$file"); do
        grep -qx "$var" <<<"$settings" ||
            fail "$file sets $var, which homeserver/src/config.rs does not have (the server would refuse to start)"
    done
done
ok "infra/.env.example lists all $(wc -w <<<"$settings") settings; no unknown TEATIME_* variables are set"

# --- Caddy ---------------------------------------------------------------------
# Caddy keeps its state (a local CA for `localhost`) under HOME/XDG dirs: use the temp dir.
caddy_env=(env -u TEATIME_DOMAIN -u TEATIME_UPSTREAM HOME="$tmp/caddy" XDG_DATA_HOME="$tmp/caddy/data" XDG_CONFIG_HOME="$tmp/caddy/config")
# Once with the defaults (TEATIME_DOMAIN unset: localhost), once with a domain.
for domain in "" TEATIME_DOMAIN=matrix.example.org; do
    if ! out=$("${caddy_env[@]}" $domain caddy validate --config infra/Caddyfile --adapter caddyfile 2>&1); then
        echo "$out" >&2
        fail "caddy validate --config infra/Caddyfile --adapter caddyfile (${domain:-TEATIME_DOMAIN unset})"
    fi
done
adapted=$("${caddy_env[@]}" TEATIME_DOMAIN=matrix.example.org caddy adapt --config infra/Caddyfile --adapter caddyfile 2>/dev/null)
for want in '":443"' '":8448"' '"dial":"127.0.0.1:8008"' '"matrix.example.org"'; do
    grep -qF "$want" <<<"$adapted" || fail "infra/Caddyfile: the adapted config lacks $want"
done
ok "caddy validate infra/Caddyfile (sites on 443 and 8448, proxying to 127.0.0.1:8008)"

# --- systemd -------------------------------------------------------------------
# `systemd-analyze verify` refuses a unit whose ExecStart binary does not exist,
# and /usr/local/bin/teatime is not installed on a build machine. So it checks a
# copy of the unit (same name, so the name-dependent checks still apply) whose
# ExecStart points at a binary that exists: a built teatime if there is one,
# else /bin/true. Everything else in the copy is unchanged. verify exits 0 on
# unknown keys and bad values (it only prints them), so any output is a failure.
target=${CARGO_TARGET_DIR:-$HOME/.cache/teatime-target}
exe=/bin/true
for candidate in "$target/release/teatime" "$target/debug/teatime"; do
    if [ -x "$candidate" ]; then exe=$candidate; break; fi
done
grep -q '^ExecStart=/usr/local/bin/teatime serve' infra/teatime.service ||
    fail "infra/teatime.service: expected ExecStart=/usr/local/bin/teatime serve"
mkdir -p "$tmp/systemd"
sed "s#^ExecStart=/usr/local/bin/teatime #ExecStart=$exe #" infra/teatime.service >"$tmp/systemd/teatime.service"
if ! out=$(systemd-analyze verify --man=no "$tmp/systemd/teatime.service" 2>&1) || [ -n "$out" ]; then
    echo "$out" >&2
    fail "systemd-analyze verify infra/teatime.service (ExecStart pointed at $exe)"
fi
ok "systemd-analyze verify infra/teatime.service (ExecStart checked against $exe)"

# --- Compose -------------------------------------------------------------------
if ! out=$("${compose[@]}" -f infra/compose.yaml --env-file infra/compose.env.example config -q 2>&1); then
    echo "$out" >&2
    fail "${compose[*]} -f infra/compose.yaml --env-file infra/compose.env.example config -q"
fi
ok "${compose[*]} -f infra/compose.yaml config -q (with infra/compose.env.example)"

# --- coturn --------------------------------------------------------------------
# The file as shipped, with addresses, ports and files overridden on the command
# line (which takes precedence over the file): loopback only, free ports.
read -r turn_port relay_min < <(python3 - <<'EOF'
import random, socket
def free(port):
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True
ports = [p for p in random.sample(range(20000, 40000), 200) if free(p)]
relay = random.randrange(40000, 60000, 50)
print(ports[0], relay)
EOF
)
secret=check-infra-$RANDOM$RANDOM
mkdir -p "$tmp/turn"
turnserver -c infra/turnserver.conf \
    --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 --listening-port="$turn_port" \
    --min-port="$relay_min" --max-port=$((relay_min + 19)) \
    --static-auth-secret="$secret" --realm=check.local \
    --userdb="$tmp/turn/turndb" --pidfile="$tmp/turn/turnserver.pid" \
    >"$tmp/turn/turn.log" 2>&1 &
turn_pid=$!

if ! out=$(python3 - "$turn_port" "$secret" <<'EOF' 2>&1
# A STUN binding request, then TURN Allocate requests with REST credentials:
# username "<expiry>:<user>", password base64(HMAC-SHA1(secret, username)).
import base64, hashlib, hmac, os, socket, struct, sys, time

port, secret = int(sys.argv[1]), sys.argv[2].encode()
addr = ("127.0.0.1", port)
MAGIC = 0x2112A442

def attr(kind, value):
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)

def message(kind, attrs, key=None):
    txid = os.urandom(12)
    body = b"".join(attrs)
    if key is not None:  # MESSAGE-INTEGRITY covers the header with its length
        header = struct.pack("!HHI", kind, len(body) + 24, MAGIC) + txid
        body += attr(0x0008, hmac.new(key, header + body, hashlib.sha1).digest())
    return struct.pack("!HHI", kind, len(body), MAGIC) + txid + body, txid

def parse(data, txid):
    kind, length, magic = struct.unpack("!HHI", data[:8])
    assert magic == MAGIC and data[8:20] == txid, "response to another request"
    attrs, i = {}, 20
    while i < 20 + length:
        t, n = struct.unpack("!HH", data[i:i + 4])
        attrs[t] = data[i + 4:i + 4 + n]
        i += 4 + n + (-n % 4)
    return kind, attrs

def ask(sock, packet, txid, tries=1):
    for _ in range(tries):
        sock.sendto(packet, addr)
        try:
            return parse(sock.recv(2048), txid)
        except socket.timeout:
            continue
    raise SystemExit(f"no answer from 127.0.0.1:{port}/udp")

def error_code(attrs):
    v = attrs.get(0x0009)
    return v and (v[2] & 7) * 100 + v[3]

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(0.25)
packet, txid = message(0x0001, [])
kind, _ = ask(sock, packet, txid, tries=40)  # up to 10 s while it starts
assert kind == 0x0101, f"binding: unexpected response type {kind:#06x}"
print("STUN binding answered")
tcp = socket.create_connection(addr, timeout=2)
tcp.close()
print("TCP listener accepts")

transport = attr(0x0019, bytes([17, 0, 0, 0]))  # REQUESTED-TRANSPORT: UDP
def allocate(username, password):
    # A fresh client address each time: one allocation per 5-tuple.
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.25)
    packet, txid = message(0x0003, [transport])
    kind, attrs = ask(sock, packet, txid, tries=8)
    assert kind == 0x0113 and error_code(attrs) == 401, "unauthenticated Allocate was not challenged"
    realm, nonce = attrs[0x0014], attrs[0x0015]
    key = hashlib.md5(username.encode() + b":" + realm + b":" + password.encode()).digest()
    packet, txid = message(0x0003, [attr(0x0006, username.encode()), attr(0x0014, realm),
                                    attr(0x0015, nonce), transport], key)
    kind, attrs = ask(sock, packet, txid, tries=8)
    sock.close()
    return kind, attrs

def rest_credentials(expiry, user="@check:check.local", key=secret):
    username = f"{expiry}:{user}"
    return username, base64.b64encode(hmac.new(key, username.encode(), hashlib.sha1).digest()).decode()

kind, attrs = allocate(*rest_credentials(int(time.time()) + 3600))
assert kind == 0x0103, f"allocation with valid credentials refused (error {error_code(attrs)})"
assert 0x0016 in attrs, "allocation without XOR-RELAYED-ADDRESS"
print("TURN allocation granted to REST credentials")
kind, attrs = allocate(*rest_credentials(int(time.time()) + 3600, key=b"wrong secret"))
assert kind == 0x0113 and error_code(attrs) == 401, "allocation with a wrong password was not refused"
kind, attrs = allocate(*rest_credentials(int(time.time()) - 60, user="@expired:check.local"))
assert kind == 0x0113 and error_code(attrs) == 401, "allocation with expired credentials was not refused"
print("wrong and expired credentials refused")
EOF
); then
    echo "$out" >&2
    echo "--- turnserver log:" >&2
    cat "$tmp/turn/turn.log" >&2 || true
    fail "coturn with infra/turnserver.conf on 127.0.0.1:$turn_port"
fi
sed 's/^/check-infra:   /' <<<"$out"
# coturn skips options it does not know (or cannot parse) with a message only.
if grep -iE 'bad configuration format|config error' "$tmp/turn/turn.log" >&2; then
    fail "turnserver did not accept every line of infra/turnserver.conf (above)"
fi
# Every socket it opened must be on loopback.
if command -v ss >/dev/null 2>&1; then
    exposed=$(ss -Hanutp | grep "pid=$turn_pid," | awk '{print $1 " " $5}' | grep -v ' 127\.0\.0\.1:' || true)
    [ -z "$exposed" ] || fail "turnserver had sockets beyond loopback: $(tr '\n' ' ' <<<"$exposed")"
fi
kill "$turn_pid"
for _ in $(seq 1 50); do kill -0 "$turn_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$turn_pid" 2>/dev/null; then
    kill -9 "$turn_pid" 2>/dev/null || true
    fail "turnserver (pid $turn_pid) did not stop on SIGTERM"
fi
wait "$turn_pid" 2>/dev/null || true
turn_pid=
ok "coturn with infra/turnserver.conf: STUN binding and TURN REST allocation on 127.0.0.1:$turn_port, stopped"

echo "check-infra: all infra checks passed"
