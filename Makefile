# TeaTime: `make run` starts a homeserver with no configuration;
# `make test` installs what the tests need and runs all of them.

# Build output lives outside the checkout so repeated runs and fresh clones
# share compiled dependencies.
CARGO_TARGET_DIR ?= $(HOME)/.cache/teatime-target
export CARGO_TARGET_DIR

TEATIME_DEBUG_BIN := $(CARGO_TARGET_DIR)/debug/teatime

.PHONY: run web test test-deps lint check-infra test-rust test-interop test-web openapi bench bench-rooms bench-delivery bench-media bench-calls bench-federation

run: web
	cargo run --release -p homeserver --bin teatime -- serve

# The browser client, rebuilt only when its sources, its dependencies or the
# OpenAPI document it is typed from changed (not the API types generated from
# that document, which every check rewrites); served by teatime from client-web/dist.
WEB_SOURCES := $(shell find client-web/src client-web/public -type f ! -name schema.d.ts 2>/dev/null) \
	client-web/index.html client-web/package.json client-web/tsconfig.json \
	client-web/vite.config.ts openapi/teatime.json

web:
	@if command -v npm >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory client-web/dist/index.html; \
	else \
		echo "npm not found: the web client is not built (install Node.js 20 and npm); the server runs without it"; \
	fi

client-web/node_modules/.package-lock.json: client-web/package-lock.json
	npm ci --prefix client-web --no-audit --no-fund --loglevel=error

client-web/dist/index.html: client-web/node_modules/.package-lock.json $(WEB_SOURCES)
	npm run --prefix client-web build

test: test-deps lint check-infra test-rust test-interop test-web

test-deps:
	scripts/install-test-deps.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# The deployment files in infra/, checked by the tools that read them.
check-infra:
	cargo build -p homeserver --bin teatime
	scripts/check-infra.sh

test-rust:
	cargo nextest run --workspace --no-fail-fast

test-interop:
	cargo build -p homeserver --bin teatime
	cd interop/matrix-js-sdk && TEATIME_BIN=$(TEATIME_DEBUG_BIN) npm test

# The web client: eslint, TypeScript, Vitest unit tests, then the Playwright
# end-to-end tests in Debian's Chromium against the teatime debug binary.
test-web: client-web/dist/index.html
	cd client-web && npm run lint && npm run typecheck && npm test
	cargo build -p homeserver --bin teatime
	cd client-web && TEATIME_BIN=$(TEATIME_DEBUG_BIN) npm run test:e2e

# Regenerates the committed OpenAPI document (a test fails while it is stale).
openapi:
	cargo run -q -p homeserver --bin teatime -- openapi > openapi/teatime.json

# Requests/s of an authenticated endpoint against an unauthenticated one.
bench:
	scripts/bench-auth.sh

# Sends/s and latency of room sends and /messages on SQLite and PostgreSQL.
bench-rooms: scripts/bench-rooms.sh
	scripts/bench-rooms.sh

# Delivery latency over WebSocket and /sync fan-out, and the RSS of idle sockets.
bench-delivery: scripts/bench-delivery.sh
	scripts/bench-delivery.sh

# Upload/download throughput on disk and S3 (s3s-fs), and RSS during a 1 GiB upload.
bench-media: scripts/bench-media.sh
	scripts/bench-media.sh

# Forwarded packets/s, CPU per forwarded packet and added latency of calls of 2, 4 and 8.
bench-calls: scripts/bench-calls.sh
	scripts/bench-calls.sh

# Inbound PDUs/s of a federation backlog (50-PDU transactions) and the time of a
# join from another server into a room of 1,000 members and 10,000 state events.
bench-federation: scripts/bench-federation.sh
	scripts/bench-federation.sh
