// A video call between two browsers through the server's SFU: Chromium's
// fake camera and microphone on both sides, a direct chat, the call seen from
// outside before joining, each person's video actually playing on the other
// side, the microphone and camera switches, and leaving. The call screen is
// photographed for the README (see SCREENSHOTS in harness.ts).

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { SCREENSHOTS, launchBrowser, startServer, type TestServer } from './harness';

const WAIT = { timeout: 20_000, interval: 100 };
const ALICE = '@alice:localhost';
const BOB = '@bob:localhost';

let server: TestServer;
let browser: Browser;
const contexts: BrowserContext[] = [];
const consoleLines: string[] = [];
let alice: Page;
let bob: Page;

async function openPage(name: string, width: number, height: number): Promise<Page> {
  const context = await browser.newContext({ viewport: { width, height } });
  contexts.push(context);
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT.timeout);
  page.on('console', (message) => consoleLines.push(`[${name}] ${message.type()}: ${message.text()}`));
  await page.goto(server.baseUrl);
  return page;
}

async function register(page: Page, username: string): Promise<void> {
  await page.getByRole('button', { name: 'I am new here' }).click();
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill('correct horse battery staple');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.locator('.connection.live').waitFor({ state: 'attached' });
}

function callRegion(page: Page) {
  return page.getByRole('region', { name: 'Call' });
}

function videoOf(page: Page, userId: string) {
  return page.getByRole('region', { name: 'Call' }).getByLabel(`Video of ${userId}`);
}

/** The other person's video plays: decoded frames of a real size, and its clock moving on. */
async function expectPlaying(page: Page, userId: string): Promise<void> {
  const video = videoOf(page, userId);
  await video.waitFor();
  await expect
    .poll(() => video.evaluate((v: HTMLVideoElement) => ({ ready: v.readyState >= 2, width: v.videoWidth > 0, paused: v.paused })), WAIT)
    .toEqual({ ready: true, width: true, paused: false });
  const start = await video.evaluate((v: HTMLVideoElement) => v.currentTime);
  await expect.poll(() => video.evaluate((v: HTMLVideoElement) => v.currentTime), WAIT).toBeGreaterThan(start + 0.5);
}

/** Whether the page's own audio or video track is enabled (what the switches change). */
function localTrackEnabled(page: Page, kind: 'audio' | 'video'): Promise<boolean | undefined> {
  return page.getByLabel('Your video').evaluate((v: HTMLVideoElement, which) => {
    const stream = v.srcObject as MediaStream | null;
    return stream?.getTracks().find((track) => track.kind === which)?.enabled;
  }, kind);
}

beforeAll(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  // Media sockets on loopback, where both browsers reach them.
  server = await startServer({ TEATIME_SFU_BIND_IP: '127.0.0.1' });
  browser = await launchBrowser();
  alice = await openPage('alice', 1280, 800);
  bob = await openPage('bob', 390, 844);
});

beforeEach(({ onTestFailed }) => {
  onTestFailed(() => {
    console.log(`browser console:\n${consoleLines.join('\n')}\n\nserver output:\n${server.output()}`);
  });
});

afterAll(async () => {
  for (const context of contexts) await context.close().catch(() => undefined);
  await browser.close().catch(() => undefined);
  await server.stop();
});

describe('a video call in the browser', () => {
  it('two people in a direct chat', async () => {
    await register(alice, 'alice');
    await register(bob, 'bob');
    await alice.getByRole('button', { name: 'New chat' }).click();
    await alice.getByLabel('User id').fill(BOB);
    await alice.getByRole('button', { name: 'Start chat' }).click();
    await alice.getByRole('heading', { name: /bob/ }).waitFor();
    await bob.locator('li.invite').getByRole('button', { name: 'Accept' }).click();
    await bob.getByRole('list', { name: 'Rooms' }).getByRole('button', { name: /alice/ }).click();
    await bob.getByRole('heading', { name: /alice/ }).waitFor();
    await alice.getByRole('log').getByText(/bob.* joined/).waitFor();
  });

  it('one starts a call, the other sees it before joining, then both see each other', async () => {
    expect(await callRegion(bob).count()).toBe(0);
    await alice.getByRole('button', { name: 'Start call' }).click();
    await callRegion(alice).getByText('Waiting for others to join').waitFor();

    // Bob has not joined, yet sees who is in the room's call.
    await callRegion(bob).getByRole('status').getByText(/In the call: .*alice/).waitFor();
    expect(await bob.getByLabel('Your video').count()).toBe(0);
    await bob.getByRole('button', { name: 'Join call' }).click();

    await expectPlaying(alice, BOB);
    await expectPlaying(bob, ALICE);
    await callRegion(alice).getByText('In the call with 1 other').waitFor();
    await callRegion(bob).getByText('In the call with 1 other').waitFor();
    // Each tile is labelled with its person's user id.
    await callRegion(alice).locator('figure').filter({ has: alice.getByLabel(`Video of ${BOB}`) }).getByText(BOB).waitFor();
    await callRegion(bob).locator('figure').filter({ has: bob.getByLabel(`Video of ${ALICE}`) }).getByText(ALICE).waitFor();
    await alice.screenshot({ path: join(SCREENSHOTS, 'call.png') });
    await bob.screenshot({ path: join(SCREENSHOTS, 'call-phone.png') });
  });

  it('the microphone and camera switches disable the tracks and say so', async () => {
    const mic = alice.getByRole('button', { name: 'Mute microphone' });
    const camera = alice.getByRole('button', { name: 'Turn off camera' });
    expect(await mic.getAttribute('aria-pressed')).toBe('false');
    expect(await localTrackEnabled(alice, 'audio')).toBe(true);

    await mic.click();
    expect(await mic.getAttribute('aria-pressed')).toBe('true');
    expect(await localTrackEnabled(alice, 'audio')).toBe(false);
    expect(await localTrackEnabled(alice, 'video')).toBe(true);

    await camera.click();
    expect(await camera.getAttribute('aria-pressed')).toBe('true');
    expect(await localTrackEnabled(alice, 'video')).toBe(false);
    await callRegion(alice).getByText('Camera off').waitFor();

    await mic.click();
    await camera.click();
    expect(await localTrackEnabled(alice, 'audio')).toBe(true);
    expect(await localTrackEnabled(alice, 'video')).toBe(true);
    expect(await camera.getAttribute('aria-pressed')).toBe('false');
    // Still connected to Bob throughout.
    await expectPlaying(alice, BOB);
  });

  it('when one leaves, the other sees them go; joining again works', async () => {
    await bob.getByRole('button', { name: 'Leave call' }).click();
    await expect.poll(() => videoOf(alice, BOB).count(), WAIT).toBe(0);
    await callRegion(alice).getByText('Waiting for others to join').waitFor();
    expect(await bob.getByLabel('Your video').count()).toBe(0);
    await callRegion(bob).getByRole('status').getByText(/In the call: .*alice/).waitFor();

    // A fresh connection after leaving: nothing of the first one lingers.
    await bob.getByRole('button', { name: 'Join call' }).click();
    await expectPlaying(alice, BOB);
    await expectPlaying(bob, ALICE);

    await alice.getByRole('button', { name: 'Leave call' }).click();
    await expect.poll(() => videoOf(bob, ALICE).count(), WAIT).toBe(0);
    await callRegion(bob).getByText('Waiting for others to join').waitFor();
    await callRegion(alice).getByRole('status').getByText(/In the call: .*bob/).waitFor();

    await bob.getByRole('button', { name: 'Leave call' }).click();
    await alice.getByRole('button', { name: 'Start call' }).waitFor();
    await bob.getByRole('button', { name: 'Start call' }).waitFor();
    expect(await callRegion(alice).count()).toBe(0);
    expect(await callRegion(bob).count()).toBe(0);
  });
});
