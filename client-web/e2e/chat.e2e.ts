// Two people in two browser contexts against a real teatime: register, a
// direct chat with typing and receipts, an image, a group renamed and a member
// removed, unread counts, and both reconnecting after a server restart.
// Screenshots of the main screens go to SCREENSHOTS (see harness.ts).

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { SCREENSHOTS, launchBrowser, startServer, type TestServer } from './harness';
import { gradientPng } from './png';

const WAIT = { timeout: 15_000 };

let server: TestServer;
let browser: Browser;
const contexts: BrowserContext[] = [];
let alice: Page;
let bob: Page;

async function openPage(width = 1280, height = 800): Promise<Page> {
  const context = await browser.newContext({ viewport: { width, height } });
  contexts.push(context);
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT.timeout);
  await page.goto(server.baseUrl);
  return page;
}

async function register(page: Page, username: string, screenshot?: string): Promise<void> {
  await page.getByRole('button', { name: 'I am new here' }).click();
  await expect.poll(() => page.getByLabel('Server').inputValue()).toBe(server.baseUrl);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill('correct horse battery staple');
  if (screenshot) await page.screenshot({ path: join(SCREENSHOTS, screenshot) });
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByText(`@${username}:localhost`).waitFor();
  await live(page);
}

/** Waits until the page's WebSocket is connected (the status is hidden behind an open room on a phone). */
async function live(page: Page): Promise<void> {
  await page.locator('.connection.live').waitFor({ state: 'attached' });
}

function roomButton(page: Page, name: string | RegExp) {
  return page.getByRole('list', { name: 'Rooms' }).getByRole('button', { name });
}

function timeline(page: Page) {
  return page.getByRole('log');
}

async function send(page: Page, text: string): Promise<void> {
  await page.getByRole('textbox', { name: 'Message' }).fill(text);
  await page.getByRole('textbox', { name: 'Message' }).press('Enter');
}

/** The page's access token, from its stored session. */
async function tokenOf(page: Page): Promise<string> {
  const stored = await page.evaluate(() => localStorage.getItem('teatime.session'));
  return (JSON.parse(stored ?? '{}') as { accessToken: string }).accessToken;
}

async function accountData(page: Page, userId: string, type: string): Promise<Record<string, string[] | undefined>> {
  const response = await fetch(`${server.baseUrl}/_matrix/client/v3/user/${encodeURIComponent(userId)}/account_data/${type}`, {
    headers: { Authorization: `Bearer ${await tokenOf(page)}` },
  });
  return response.ok ? ((await response.json()) as Record<string, string[]>) : {};
}

async function accept(page: Page, name: string | RegExp): Promise<void> {
  const invite = page.locator('li.invite').filter({ hasText: name });
  await invite.getByRole('button', { name: 'Accept' }).click();
  await roomButton(page, name).click();
}

beforeAll(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  server = await startServer();
  browser = await launchBrowser();
  alice = await openPage();
  bob = await openPage(390, 844);
});

afterAll(async () => {
  for (const context of contexts) await context.close().catch(() => undefined);
  await browser.close().catch(() => undefined);
  await server.stop();
});

describe('two people chatting in the browser', () => {
  it('register from the login screen, server prefilled with the page origin', async () => {
    await alice.getByLabel('Username').fill('alice');
    await alice.getByLabel('Password').fill('not yet');
    await alice.getByRole('button', { name: 'Sign in' }).click();
    await alice.getByRole('alert').getByText('Wrong username or password').waitFor();
    await register(alice, 'alice', 'login.png');
    await register(bob, 'bob');
  });

  it('start a direct chat with a user id, accepted on the other side', async () => {
    await alice.getByRole('button', { name: 'New chat' }).click();
    await alice.getByLabel('User id').fill('@bob:localhost');
    await alice.getByRole('button', { name: 'Start chat' }).click();
    await alice.getByRole('heading', { name: /bob/ }).waitFor();

    await accept(bob, /alice/);
    await bob.getByRole('heading', { name: /alice/ }).waitFor();
    await bob.locator('.room-header').getByText('Direct chat').waitFor();

    // Both sides list the room under m.direct, as every Matrix client reads it.
    const aliceDirect = await accountData(alice, '@alice:localhost', 'm.direct');
    const roomId = aliceDirect['@bob:localhost']?.[0];
    expect(roomId).toMatch(/^!/);
    await expect.poll(() => accountData(bob, '@bob:localhost', 'm.direct')).toEqual({ '@alice:localhost': [roomId] });
  });

  it('chat live, with the typing indicator, sending state and read receipts', async () => {
    await alice.getByRole('textbox', { name: 'Message' }).pressSequentially('Hello Bob');
    await bob.getByText(/alice.* is typing…/).waitFor();

    await alice.getByRole('textbox', { name: 'Message' }).press('Enter');
    await timeline(bob).getByText('Hello Bob').waitFor();
    const mine = alice.getByRole('article').filter({ hasText: 'Hello Bob' });
    await mine.getByText('Sent', { exact: true }).waitFor();
    await expect.poll(() => bob.getByText(/is typing…/).count()).toBe(0);
    // Bob has the room open, so his client reads the message and says so.
    await mine.getByText(/Seen by .*bob/).waitFor();

    await send(bob, 'Hi Alice! Tea at four?');
    await timeline(alice).getByText('Hi Alice! Tea at four?').waitFor();
    expect(await timeline(alice).getByText('Hello Bob').count()).toBe(1);
  });

  it('share an image: previewed for the other person, with a download link', async () => {
    await alice.locator('input[type=file]').setInputFiles({ name: 'teapot.png', mimeType: 'image/png', buffer: gradientPng(320, 200) });
    const image = bob.getByRole('img', { name: 'teapot.png' });
    await image.waitFor();
    await expect.poll(() => image.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0)).toBe(true);
    expect(await image.getAttribute('src')).toMatch(/^blob:/);
    await bob.getByRole('button', { name: 'Download teapot.png' }).waitFor();
    await alice.getByRole('img', { name: 'teapot.png' }).waitFor();
    await alice.screenshot({ path: join(SCREENSHOTS, 'chat.png') });
    await bob.screenshot({ path: join(SCREENSHOTS, 'phone.png') });
  });

  it('create a group, count unread messages elsewhere, rename the group and remove a member', async () => {
    await alice.getByRole('button', { name: 'New group' }).click();
    await alice.getByLabel('Group name').fill('Tea club');
    await alice.getByLabel('Members').fill('@bob:localhost');
    await alice.getByRole('button', { name: 'Create group' }).click();
    await alice.getByRole('heading', { name: 'Tea club' }).waitFor();

    await bob.getByRole('button', { name: 'Back to conversations' }).click();
    await accept(bob, 'Tea club');
    await bob.getByRole('heading', { name: 'Tea club' }).waitFor();
    await send(bob, 'Thanks for the invite');
    await timeline(alice).getByText('Thanks for the invite').waitFor();

    // A message in the direct chat while Bob is in the group shows as unread.
    await roomButton(alice, /bob/).click();
    await send(alice, 'Psst, over here');
    await bob.getByRole('button', { name: 'Back to conversations' }).click();
    await roomButton(bob, /alice/).getByLabel('1 unread').waitFor();
    await bob.screenshot({ path: join(SCREENSHOTS, 'rooms-phone.png') });
    await roomButton(bob, /alice/).click();
    await timeline(bob).getByText('Psst, over here').waitFor();
    await bob.getByRole('button', { name: 'Back to conversations' }).click();
    await expect.poll(() => roomButton(bob, /alice/).getByLabel(/unread/).count()).toBe(0);
    await roomButton(bob, 'Tea club').click();

    await roomButton(alice, 'Tea club').click();
    await alice.getByRole('button', { name: 'Rename' }).click();
    await alice.getByLabel('New name').fill('Tea & biscuits');
    await alice.getByRole('dialog').getByRole('button', { name: 'Rename' }).click();
    await alice.getByRole('heading', { name: 'Tea & biscuits' }).waitFor();
    await bob.getByRole('heading', { name: 'Tea & biscuits' }).waitFor();

    await alice.getByRole('button', { name: 'Members' }).click();
    const members = alice.getByRole('dialog');
    await members.getByText('@bob:localhost').waitFor();
    await alice.screenshot({ path: join(SCREENSHOTS, 'group-members.png') });
    await members.getByRole('button', { name: 'Remove @bob:localhost' }).click();
    await expect.poll(() => members.getByText('@bob:localhost').count()).toBe(0);

    const carol = await fetch(`${server.baseUrl}/_matrix/client/v3/register`, {
      method: 'POST',
      body: JSON.stringify({ username: 'carol', password: 'correct horse battery staple', auth: { type: 'm.login.dummy' } }),
    });
    expect(carol.status).toBe(200);
    await members.getByLabel('Add someone').fill('@carol:localhost');
    await members.getByRole('button', { name: 'Invite' }).click();
    await members.getByRole('listitem').filter({ hasText: '@carol:localhost' }).getByText('invited').waitFor();
    await members.getByRole('button', { name: 'Close' }).click();

    await bob.getByText('You were removed from Tea & biscuits').waitFor();
    await expect.poll(() => roomButton(bob, 'Tea & biscuits').count()).toBe(0);
    await timeline(alice).getByText(/removed .*bob/).waitFor();

    await alice.getByRole('button', { name: 'Leave' }).click();
    await alice.getByRole('dialog').getByRole('button', { name: 'Leave' }).click();
    await expect.poll(() => roomButton(alice, 'Tea & biscuits').count()).toBe(0);
    await alice.getByText('Welcome to TeaTime').waitFor();
  });

  it('a message sent while the server is down fails, and goes out once on retry', async () => {
    await roomButton(alice, /bob/).click();
    await roomButton(bob, /alice/).click();
    await server.pause();
    await alice.getByRole('status').filter({ hasText: 'Connection lost' }).waitFor();
    await send(alice, 'Are you still there?');
    const failed = alice.getByRole('article').filter({ hasText: 'Are you still there?' });
    await failed.getByText(/Not sent: Cannot reach the server/).waitFor();

    await server.resume();
    await live(alice);
    await live(bob);
    await failed.getByRole('button', { name: 'Retry' }).click();
    await failed.getByText('Sent', { exact: true }).waitFor();
    await timeline(bob).getByText('Are you still there?').waitFor();
    expect(await timeline(bob).getByText('Are you still there?').count()).toBe(1);
  });

  it('reconnect after a server restart and resume without losing or repeating messages', async () => {
    await server.pause();
    await server.resume();
    await live(alice);
    await live(bob);
    await send(bob, 'Back after the restart');
    await timeline(alice).getByText('Back after the restart').waitFor();
    expect(await timeline(alice).getByText('Back after the restart').count()).toBe(1);
    expect(await timeline(alice).getByText('Hi Alice! Tea at four?').count()).toBe(1);
  });

  it('stay signed in across a reload and read older history by scrolling up', async () => {
    const token = await tokenOf(bob);
    const roomId = (await accountData(bob, '@bob:localhost', 'm.direct'))['@alice:localhost']?.[0] ?? '';
    for (let i = 1; i <= 45; i++) {
      const response = await fetch(`${server.baseUrl}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/history${i}`, {
        method: 'PUT',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ msgtype: 'm.text', body: `History ${i}` }),
      });
      expect(response.status).toBe(200);
    }
    await alice.reload();
    await live(alice);
    await roomButton(alice, /bob/).click();
    await timeline(alice).getByText('History 45', { exact: true }).waitFor();
    expect(await timeline(alice).getByText('History 1', { exact: true }).count()).toBe(0);
    for (let i = 0; i < 20 && (await timeline(alice).getByText('This is the beginning of the conversation.').count()) === 0; i++) {
      await timeline(alice).evaluate((log) => { log.scrollTop = 0; });
      await alice.waitForTimeout(250);
    }
    await timeline(alice).getByText('History 1', { exact: true }).waitFor();
    await timeline(alice).getByText('Hello Bob').waitFor();
    expect(await timeline(alice).getByText('History 20', { exact: true }).count()).toBe(1);
  });
});
