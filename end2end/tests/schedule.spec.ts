import { test, expect } from '@playwright/test';
import { spawnSync, type ChildProcess } from 'child_process';
import * as path from 'path';
import { binary, fitsWidth, hydrated, PHONE, repoRoot, restClient, signedIn, startVault, stopAll, type Vault } from './support';

// The schedule on the Environments page (owners): how often connections are checked and how
// many days before expiry certificates renew by themselves. A refused value keeps what was
// typed beside the error; a good one is saved and shown after a reload; the row fits a phone.
// And a certificate that expires soon offers "Renew" on its connection's page, unfolded.

const PORT = 3260;
const BASE = `http://127.0.0.1:${PORT}`;
const OWNER = { email: 'owner@example.com', password: 'schedule e2e owner password' };
const children: ChildProcess[] = [];
let vault: Vault;
let key = '';

test.describe.configure({ mode: 'serial' });

const api = restClient(BASE, () => key);

test.beforeAll(async () => {
  vault = await startVault('schedule', PORT, OWNER, children, async (env) => {
    const made = spawnSync(binary, ['api-key', 'create', '--name', 'seed', '--grant', '*:*:rw'], { cwd: repoRoot, env });
    expect(made.status, made.stderr?.toString()).toBe(0);
    key = made.stdout.toString().trim();
  });
});

test.afterAll(async () => {
  await stopAll(children);
});

test('an owner sets how often QA is checked and when its certificates renew', async ({ browser }) => {
  const page = await signedIn(browser, BASE, OWNER);
  await page.goto('/environments');
  await hydrated(page);
  const check = page.getByLabel('Check connections every').nth(1);
  const renew = page.getByLabel('Renew certificates').nth(1);
  await expect(check).toHaveValue('6');
  await expect(renew).toHaveValue('0');

  // Out of range: the error names the rule, and what was typed stays.
  await check.fill('12');
  await renew.evaluate((el: HTMLInputElement) => {
    el.removeAttribute('max');
    el.value = '400';
  });
  await page.locator('li[data-env="QA"]').getByRole('button', { name: 'Save schedule' }).click();
  await expect(page.getByRole('alert')).toContainText('1 to 90 days before expiry');
  await expect(check).toHaveValue('12');
  await expect(renew).toHaveValue('400');

  await renew.fill('30');
  await page.locator('li[data-env="QA"]').getByRole('button', { name: 'Save schedule' }).click();
  await expect(page.getByRole('alert')).toHaveCount(0);
  await page.reload();
  await expect(page.getByLabel('Check connections every').nth(1)).toHaveValue('12');
  await expect(page.getByLabel('Renew certificates').nth(1)).toHaveValue('30');
  await expect(page.getByLabel('Check connections every').nth(0)).toHaveValue('6', { timeout: 1000 });
  await page.screenshot({ path: 'test-results/environments-1280.png', fullPage: true });

  const phone = await signedIn(browser, BASE, OWNER, PHONE);
  await phone.goto('/environments');
  await fitsWidth(phone);
  await expect(phone.getByLabel('Renew certificates').nth(1)).toBeVisible();
  await phone.screenshot({ path: 'test-results/environments-375.png', fullPage: true });
});

test('a certificate that expires soon offers Renew: a new certificate and admin request in one step', async ({ browser }) => {
  const settings = { login_url: 'https://login.salesforce.com', username: 'int@acme.com', admin_email: 'sf-admin@acme.com' };
  await api('POST', '/environments/DEV/connections', { name: 'SF_Soon', provider: 'salesforce', settings });
  await api('POST', '/environments/DEV/connections/SF_Soon/certificate', {});
  // Ten days left (the database is this vault's own SQLite file).
  const soon = new Date(Date.now() + 10 * 86400_000).toISOString().replace(/\.\d+Z$/, '.000000Z');
  const db = path.join(vault.dataDir, 'connvault.db');
  const script = `import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("UPDATE certificates SET not_after=?", (sys.argv[2],)); c.commit()`;
  const moved = spawnSync('python3', ['-c', script, db, soon]);
  expect(moved.status, moved.stderr?.toString()).toBe(0);

  const page = await signedIn(browser, BASE, OWNER);
  await page.goto('/env/DEV/connections/SF_Soon');
  await hydrated(page);
  await expect(page.getByTestId('certificate')).toContainText('expires within 30 days: renew it');
  const renew = page.getByRole('button', { name: 'Renew: new certificate and admin request' });
  await expect(renew).toBeVisible();
  // Beside the step's own next action, not instead of it.
  await expect(renew).toHaveClass(/secondary/);
  await page.screenshot({ path: 'test-results/renew-1280.png', fullPage: true });
  await renew.click();
  await expect.poll(async () => (await api('GET', '/environments/DEV/connections/SF_Soon/status')).request?.state).toBe('open');
  const status = await api('GET', '/environments/DEV/connections/SF_Soon/status');
  expect(status.pending_certificate, JSON.stringify(status)).toBeTruthy();
  expect(status.certificate.state, 'the current certificate stays in use').toBe('active');
});
