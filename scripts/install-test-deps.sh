#!/usr/bin/env bash
# Installs and starts what the test suite needs, idempotently: cargo-nextest,
# rustfmt/clippy, PostgreSQL on 127.0.0.1:5432, Redis on 127.0.0.1:6379,
# Synapse (in a virtualenv), the npm packages of the client interoperability
# tests and of the web client, and Debian's Chromium for the web client's
# end-to-end tests. Safe to run on every `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=
apt_install() {
    if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest"
    cargo install cargo-nextest --locked
fi
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done

# PostgreSQL: the tests create and drop their own databases on 127.0.0.1:5432.
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "installing PostgreSQL"
    apt_install postgresql
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "starting PostgreSQL"
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 >/dev/null || { echo "PostgreSQL is not accepting connections on 127.0.0.1:5432" >&2; exit 1; }
# Trust auth on loopback for the `postgres` role, as on the dev machines.
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
    echo "PostgreSQL at 127.0.0.1:5432 does not let role postgres in without a password;" >&2
    echo "set TEATIME_TEST_POSTGRES_URL to an admin URL that can CREATE DATABASE" >&2
    [ -n "${TEATIME_TEST_POSTGRES_URL:-}" ] || exit 1
fi
# Databases left behind by interrupted test runs.
for db in $(psql -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'teatime_test_%'" 2>/dev/null); do
    psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
done

# Redis: the multi-instance tests share changes through 127.0.0.1:6379.
if ! command -v redis-server >/dev/null 2>&1; then
    echo "installing Redis"
    apt_install redis-server
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "Redis is not answering on 127.0.0.1:6379" >&2; exit 1; }

# s3s-fs: the media tests start it as their S3-compatible server (0.17 needs a newer rustc).
if ! command -v s3s-fs >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/s3s-fs" ]; then
    echo "installing s3s-fs"
    cargo install s3s-fs@0.14.1 --locked --features binary
fi

# Synapse, the federation interop tests' peer: a pinned install in a
# virtualenv outside the clone (scripts/synapse.sh), which needs Python's
# venv module and openssl (its certificates).
python_packages=()
if ! command -v python3 >/dev/null 2>&1; then
    python_packages+=(python3 python3-venv)
elif ! python3 -m venv --help >/dev/null 2>&1; then
    python_packages+=(python3-venv)
fi
command -v openssl >/dev/null 2>&1 || python_packages+=(openssl)
if [ ${#python_packages[@]} -gt 0 ]; then
    echo "installing ${python_packages[*]}"
    apt_install "${python_packages[@]}"
fi
scripts/synapse.sh install

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "installing Node.js"
    apt_install nodejs npm
fi
if [ -f interop/matrix-js-sdk/package-lock.json ]; then
    npm ci --prefix interop/matrix-js-sdk --no-audit --no-fund --loglevel=error
fi
# The web client's packages (Vite, Vitest, eslint, playwright-core), again only
# when the lock file is newer than the last install.
if [ ! client-web/node_modules/.package-lock.json -nt client-web/package-lock.json ]; then
    echo "installing the web client's npm packages"
    npm ci --prefix client-web --no-audit --no-fund --loglevel=error
fi
# The end-to-end tests drive Debian's Chromium through playwright-core; no
# browser is ever downloaded (`playwright install` cannot work here).
if [ ! -x /usr/bin/chromium ]; then
    echo "installing Chromium"
    apt_install --no-install-recommends chromium fonts-liberation fonts-dejavu-core
fi

# Deployment checks (scripts/check-infra.sh): caddy, coturn's turnserver,
# systemd-analyze and a Compose client (`docker compose`, else Debian's
# docker-compose without its recommended docker.io: `config` needs no daemon).
# The packages may enable services (caddy on :80, coturn on every address); the
# checks start their own on loopback, so stop and disable those where systemd runs.
infra_packages=()
command -v caddy >/dev/null 2>&1 || infra_packages+=(caddy)
command -v turnserver >/dev/null 2>&1 || infra_packages+=(coturn)
command -v systemd-analyze >/dev/null 2>&1 || infra_packages+=(systemd)
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
    infra_packages+=(docker-compose)
fi
if [ ${#infra_packages[@]} -gt 0 ]; then
    echo "installing ${infra_packages[*]}"
    apt_install --no-install-recommends "${infra_packages[@]}"
    if [ -d /run/systemd/system ]; then
        for unit in caddy.service coturn.service; do
            as_root systemctl disable --now "$unit" >/dev/null 2>&1 || true
        done
    fi
fi
