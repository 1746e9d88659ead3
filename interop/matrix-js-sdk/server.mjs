// The TeaTime server under test, shared by the interop tests: starts the
// `teatime` binary (TEATIME_BIN, or the default cargo target path) on a free
// loopback port with a fresh data directory, waits for GET /healthz (the only
// raw HTTP the tests use), and stops it again.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export const TEATIME_BIN =
  process.env.TEATIME_BIN || join(homedir(), ".cache", "teatime-target", "debug", "teatime");
export const SERVER_NAME = "localhost";

/** A port on 127.0.0.1 that nothing listens on right now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** The running server: child process, base URL, data dir, captured output. */
export const server = { child: null, baseUrl: null, dataDir: null, output: "", exited: null };

function killServer() {
  if (server.child && server.exited === null) {
    server.child.kill("SIGKILL");
  }
}
// Last resort if the test process ends without running `after`.
process.on("exit", killServer);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    killServer();
    process.exit(1);
  });
}

/**
 * Starts `teatime serve` and resolves once /healthz answers. `env` adds
 * variables for the server (e.g. RUST_LOG).
 */
export async function startServer({ env = {} } = {}) {
  if (!existsSync(TEATIME_BIN)) {
    throw new Error(
      `teatime binary not found at ${TEATIME_BIN}. Build it with ` +
        "`cargo build -p homeserver` (CARGO_TARGET_DIR=$HOME/.cache/teatime-target) " +
        "or point TEATIME_BIN at it.",
    );
  }
  const port = await freePort();
  const federationPort = await freePort();
  server.dataDir = mkdtempSync(join(tmpdir(), "teatime-interop-js-"));
  server.baseUrl = `http://127.0.0.1:${port}`;
  server.output = "";
  server.exited = null;
  // The server's configuration refuses unknown TEATIME_* variables (such as
  // TEATIME_BIN), and inherited ones (TEATIME_DATABASE_URL, ...) would change
  // the server under test: pass none but ours.
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith("TEATIME_")),
  );
  server.child = spawn(TEATIME_BIN, ["serve"], {
    env: {
      ...inherited,
      ...env,
      TEATIME_LISTEN: `127.0.0.1:${port}`,
      TEATIME_FEDERATION_LISTEN: `127.0.0.1:${federationPort}`,
      TEATIME_DATA_DIR: server.dataDir,
      TEATIME_SERVER_NAME: SERVER_NAME,
      TEATIME_REGISTRATION: "open",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const collect = (chunk) => {
    server.output += chunk.toString();
  };
  server.child.stdout.on("data", collect);
  server.child.stderr.on("data", collect);
  server.child.on("exit", (code, signal) => {
    server.exited = { code, signal };
  });
  server.child.on("error", (err) => {
    server.exited = { error: err };
  });

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (server.exited !== null) {
      throw new Error(
        `teatime exited before it was ready (${JSON.stringify(server.exited)}):\n${server.output}`,
      );
    }
    try {
      const res = await fetch(`${server.baseUrl}/healthz`);
      if (res.ok) {
        const body = await res.json();
        assert.deepEqual(body, { status: "ok" });
        return;
      }
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      throw new Error(`teatime did not answer /healthz within 30 s:\n${server.output}`);
    }
    await sleep(100);
  }
}

/** Stops the server (SIGTERM, then SIGKILL after 5 s) and removes its data dir. */
export async function stopServer() {
  if (server.child && server.exited === null) {
    const exited = new Promise((resolve) => server.child.once("exit", resolve));
    server.child.kill("SIGTERM");
    const grace = sleep(5_000, true, { ref: false });
    const timedOut = await Promise.race([exited.then(() => false), grace]);
    if (timedOut) {
      server.child.kill("SIGKILL");
      await exited;
    }
  }
  if (server.dataDir) {
    rmSync(server.dataDir, { recursive: true, force: true });
    server.dataDir = null;
  }
}
