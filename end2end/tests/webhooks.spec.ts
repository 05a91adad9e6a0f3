import { test, expect } from '@playwright/test';
import { type ChildProcess } from 'child_process';
import * as crypto from 'crypto';
import * as http from 'http';
import { fitsWidth, hydrated, PHONE, signedIn, startVault, stopAll } from './support';

// The Webhooks page on a vault of its own: an owner subscribes a receiver (here, in this test
// process), copies the signing secret shown once, sends a test event, and the receiver gets a
// Standard Webhooks POST whose signature it checks with Node's own HMAC; the page's log shows it
// delivered. Then the same page on a phone.

const PORT = 3222;
const HOOK_PORT = 3223;
const BASE = `http://127.0.0.1:${PORT}`;
const OWNER = { email: 'owner@example.com', password: 'webhooks e2e owner password' };

const children: ChildProcess[] = [];
const received: { headers: http.IncomingHttpHeaders; body: string }[] = [];
let receiver: http.Server;

test.describe.configure({ mode: 'serial' });

test.beforeAll(async () => {
  receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(HOOK_PORT, '127.0.0.1', resolve));
  await startVault('webhooks', PORT, OWNER, children);
});

test.afterAll(async () => {
  await stopAll(children);
  receiver.close();
});

/** Standard Webhooks' check: v1,<base64 HMAC-SHA256 of "id.timestamp.body"> with the key after whsec_. */
function verifies(secret: string, h: http.IncomingHttpHeaders, body: string): boolean {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const signed = `${h['webhook-id']}.${h['webhook-timestamp']}.${body}`;
  const expected = 'v1,' + crypto.createHmac('sha256', key).update(signed).digest('base64');
  return String(h['webhook-signature']).split(' ').includes(expected);
}

test('an owner subscribes a receiver, sends a test event, and it arrives signed', async ({ browser }) => {
  const page = await signedIn(browser, BASE, OWNER);
  await page.goto('/env/DEV/connections');
  await page.getByRole('link', { name: 'Webhooks of DEV' }).click();
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Webhooks · DEV');
  await expect(page.getByText('No webhooks yet.')).toBeVisible();
  await hydrated(page);

  // Bad input says what to fix.
  await page.locator('#hook-url').fill('http://127.0.0.1:3223/hook');
  await page.locator('#hook-events').fill('connection.made');
  await page.getByRole('button', { name: 'Add webhook' }).click();
  await expect(page.getByRole('alert')).toContainText('is not an event type');

  await page.locator('#hook-events').fill('*');
  await page.getByRole('button', { name: 'Add webhook' }).click();
  await expect(page.getByTestId('once-value')).toHaveValue(/^whsec_[A-Za-z0-9+/=]+$/);
  const secret = await page.getByTestId('once-value').inputValue();
  const row = page.getByTestId('webhook');
  await expect(row).toContainText('http://127.0.0.1:3223/hook');
  await expect(row).toContainText('Enabled');

  await row.getByRole('button', { name: 'Send test event' }).click();
  await expect.poll(() => received.length, { timeout: 15_000 }).toBe(1);
  const got = received[0];
  expect(JSON.parse(got.body).type).toBe('webhook.test');
  expect(String(got.headers['webhook-id'])).toMatch(/^msg_/);
  expect(verifies(secret, got.headers, got.body)).toBe(true);
  expect(verifies('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', got.headers, got.body)).toBe(false);
  expect(got.body).not.toContain(secret);

  await row.getByRole('link', { name: 'Log' }).click();
  const log = page.getByTestId('deliveries');
  await expect(log).toContainText('webhook.test');
  await expect(log).toContainText('delivered');

  // Disable, and it says so.
  await page.getByTestId('webhook').getByRole('button', { name: 'Disable' }).click();
  await expect(page.getByTestId('webhook')).toContainText('Disabled');
});

test('the Webhooks page fits a phone', async ({ browser }) => {
  const page = await signedIn(browser, BASE, OWNER, PHONE);
  await page.goto('/env/DEV/webhooks');
  await expect(page.getByTestId('webhook')).toBeVisible();
  await fitsWidth(page);
});
