// Presigned direct uploads: with media on S3 (s3s-fs here), the client asks
// for an upload URL, PUTs the file straight to the bucket with the signed
// headers, completes it, and the image is then served like any other.

import { readdirSync } from 'node:fs';

import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { launchBrowser, startS3, startServer, type TestS3, type TestServer } from './harness';
import { gradientPng } from './png';

let s3: TestS3;
let server: TestServer;
let browser: Browser;

beforeAll(async () => {
  s3 = await startS3();
  server = await startServer({
    TEATIME_MEDIA_BACKEND: 's3',
    TEATIME_S3_ENDPOINT: s3.endpoint,
    TEATIME_S3_BUCKET: s3.bucket,
    TEATIME_S3_ACCESS_KEY_ID: s3.accessKey,
    TEATIME_S3_SECRET_ACCESS_KEY: s3.secretKey,
    TEATIME_S3_FORCE_PATH_STYLE: 'true',
  });
  // s3s-fs answers no CORS preflights; a real bucket gets a CORS rule for the
  // client's origin (README, "Media on Cloudflare R2").
  browser = await launchBrowser(['--disable-web-security']);
});

afterAll(async () => {
  await browser.close().catch(() => undefined);
  await server.stop();
  s3.stop();
});

it('uploads an image straight to the bucket and shows it', async () => {
  const page = await browser.newPage();
  page.setDefaultTimeout(15_000);
  const requests: string[] = [];
  page.on('request', (request) => requests.push(`${request.method()} ${request.url()}`));
  await page.goto(server.baseUrl);
  await page.getByRole('button', { name: 'I am new here' }).click();
  await page.getByLabel('Username').fill('carol');
  await page.getByLabel('Password').fill('correct horse battery staple');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('button', { name: 'New group' }).click();
  await page.getByLabel('Group name').fill('Uploads');
  await page.getByRole('button', { name: 'Create group' }).click();
  await page.getByRole('heading', { name: 'Uploads' }).waitFor();

  await page.locator('input[type=file]').setInputFiles({ name: 'direct.png', mimeType: 'image/png', buffer: gradientPng(200, 120) });
  const image = page.getByRole('img', { name: 'direct.png' });
  await image.waitFor();
  await expect.poll(() => image.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0)).toBe(true);
  await page.getByRole('article').filter({ hasText: 'direct.png' }).getByText('Sent', { exact: true }).waitFor();

  expect(requests.some((r) => r.startsWith('POST') && r.endsWith('/_teatime/media/v1/upload_url'))).toBe(true);
  expect(requests.some((r) => r.startsWith(`PUT ${s3.endpoint}/`))).toBe(true);
  expect(requests.some((r) => r.endsWith('/_teatime/media/v1/complete'))).toBe(true);
  expect(requests.some((r) => r.includes('/_matrix/media/v3/upload'))).toBe(false);
  expect(readdirSync(s3.bucketDir, { recursive: true }).length).toBeGreaterThan(0);
});
