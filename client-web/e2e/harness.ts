// What the end-to-end tests run against: the real `teatime` debug binary on
// a free loopback port with a fresh data directory, serving the built client,
// and Debian's Chromium driven by playwright-core.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { chromium, type Browser } from 'playwright-core';

const clientDir = resolve(import.meta.dirname, '..');
export const WEB_DIR = join(clientDir, 'dist');
/**
 * Where the tests put their screenshots: client-web/e2e-screenshots/ (ignored
 * by git), or the committed docs/screenshots/ with TEATIME_UPDATE_SCREENSHOTS=1,
 * so an ordinary run leaves the tree clean.
 */
export const SCREENSHOTS =
  process.env.TEATIME_UPDATE_SCREENSHOTS === '1' ? resolve(clientDir, '..', 'docs', 'screenshots') : join(clientDir, 'e2e-screenshots');
export const TEATIME_BIN =
  process.env.TEATIME_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(homedir(), '.cache', 'teatime-target'), 'debug', 'teatime');
export const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.on('error', fail);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => { done(port); });
    });
  });
}

/** A running teatime; `pause` stops it (SIGTERM), `resume` starts it again on the same port and data. */
export interface TestServer {
  baseUrl: string;
  output: () => string;
  pause: () => Promise<void>;
  resume: () => Promise<void>;
  stop: () => Promise<void>;
}

/** Starts teatime; `env` adds settings (TEATIME_* variables). */
export async function startServer(env: Record<string, string> = {}): Promise<TestServer> {
  if (!existsSync(TEATIME_BIN)) {
    throw new Error(`teatime not found at ${TEATIME_BIN}: run \`cargo build -p homeserver --bin teatime\` or set TEATIME_BIN`);
  }
  if (!existsSync(join(WEB_DIR, 'index.html'))) {
    throw new Error(`the client is not built in ${WEB_DIR}: run \`npm run build\` in client-web/`);
  }
  const port = await freePort();
  const federationPort = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'teatime-web-e2e-'));
  const baseUrl = `http://127.0.0.1:${port}`;
  let output = '';
  let child: ChildProcess | null = null;
  // The server refuses unknown TEATIME_* variables, and inherited ones would
  // change the server under test: pass only ours.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('TEATIME_')));

  const launch = async () => {
    const started = spawn(TEATIME_BIN, ['serve'], {
      env: {
        ...inherited,
        RUST_LOG: process.env.RUST_LOG ?? 'warn',
        TEATIME_LISTEN: `127.0.0.1:${port}`,
        TEATIME_FEDERATION_LISTEN: `127.0.0.1:${federationPort}`,
        TEATIME_DATA_DIR: dataDir,
        TEATIME_SERVER_NAME: 'localhost',
        TEATIME_WEB_DIR: WEB_DIR,
        TEATIME_REGISTRATION_BURST: '1000',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = started;
    started.stdout.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    started.stderr.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    for (let i = 0; i < 300; i++) {
      if (started.exitCode !== null) throw new Error(`teatime exited with ${started.exitCode}:\n${output}`);
      try {
        const health = await fetch(`${baseUrl}/healthz`);
        if (health.ok) return;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    throw new Error(`teatime did not answer /healthz within 30 s:\n${output}`);
  };

  const halt = async () => {
    const running = child;
    child = null;
    if (!running || running.exitCode !== null) return;
    const exited = new Promise((done) => running.once('exit', done));
    running.kill('SIGTERM');
    const killed = setTimeout(() => running.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(killed);
  };

  // Last resort if the test process ends without stopping the server.
  process.once('exit', () => {
    child?.kill('SIGKILL');
  });
  await launch();
  return {
    baseUrl,
    output: () => output,
    pause: halt,
    resume: launch,
    stop: async () => {
      await halt();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A running s3s-fs (an S3-compatible server that checks signatures like R2) with one bucket. */
export interface TestS3 {
  endpoint: string;
  bucket: string;
  accessKey: string;
  secretKey: string;
  /** The bucket's directory: s3s-fs keeps each object as a file. */
  bucketDir: string;
  stop: () => void;
}

export async function startS3(): Promise<TestS3> {
  const binary = [...(process.env.PATH ?? '').split(':').map((dir) => join(dir, 's3s-fs')), join(homedir(), '.cargo', 'bin', 's3s-fs')].find(
    (candidate) => existsSync(candidate),
  );
  if (!binary) throw new Error('s3s-fs is not on PATH nor in ~/.cargo/bin: run scripts/install-test-deps.sh');
  const dataDir = mkdtempSync(join(tmpdir(), 'teatime-web-s3-'));
  const bucket = 'teatime';
  mkdirSync(join(dataDir, bucket));
  const port = await freePort();
  const [accessKey, secretKey] = ['web-e2e-access', 'web-e2e-secret'];
  const child = spawn(binary, ['--host', '127.0.0.1', '--port', String(port), '--access-key', accessKey, '--secret-key', secretKey, dataDir], {
    stdio: 'ignore',
  });
  const endpoint = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`s3s-fs exited with ${child.exitCode}`);
    const up = await fetch(endpoint).then(() => true, () => false);
    if (up) break;
    if (i > 100) throw new Error('s3s-fs did not start listening within 10 s');
    await sleep(100);
  }
  return {
    endpoint,
    bucket,
    accessKey,
    secretKey,
    bucketDir: join(dataDir, bucket),
    stop: () => {
      child.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Headless Debian Chromium with the flags this machine needs (RECIPES.md), a
 * fake camera and microphone that need no permission prompt, and `extraArgs`.
 */
export function launchBrowser(extraArgs: string[] = []): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: run scripts/install-test-deps.sh (Debian package chromium)`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      ...extraArgs,
    ],
  });
}
