import { test, expect, type Page } from '@playwright/test';
import { hydrated } from './support';
import * as fs from 'fs';
import * as path from 'path';

// Seeded by the webServer command in playwright.config.ts.
const SECRET = 'e2e-marker-secret-7f3a9c';
const CONNECTIONS_URL = /\/env\/DEV\/connections(\?.*)?$/;

// Fails the test on any uncaught page error (a wasm panic or a hydration
// failure shows up here).
function trackPageErrors(page: Page): Error[] {
  const errors: Error[] = [];
  page.on('pageerror', (err) => errors.push(err));
  return errors;
}

// Accounts seeded by the webServer command in playwright.config.ts.
const OWNER = { email: 'owner@example.com', password: 'owner password for e2e' };
const DEVELOPER = { email: 'dev@example.com', password: 'developer password for e2e' };

async function signIn(page: Page, who = OWNER) {
  await page.goto('/sign-in');
  await page.getByLabel('Email').fill(who.email);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByTestId('signed-in-as')).toHaveText(who.email);
}

function connectionsTable(page: Page) {
  return page.locator('table[data-testid="connections"]');
}

function billingRow(page: Page) {
  return connectionsTable(page).locator('tr', { hasText: 'Billing_API' });
}

test('GET /health answers {"status":"ok"}', async ({ request }) => {
  const res = await request.get('/health');
  expect(res.status()).toBe(200);
  expect(res.headers()['content-type'] ?? '').toContain('application/json');
  expect(await res.json()).toEqual({ status: 'ok' });
});

test('a visitor who is not signed in is sent to the sign-in page and sees no data', async ({ page }) => {
  const errors = trackPageErrors(page);
  await page.goto('/env/DEV/connections');
  await expect(page).toHaveURL(/\/sign-in$/);
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  expect(await page.content()).not.toContain('Billing_API');
  await hydrated(page);
  expect(errors).toEqual([]);
});

test('a wrong password is explained and nothing opens', async ({ page }) => {
  await page.goto('/sign-in');
  await hydrated(page);
  await page.getByLabel('Email').fill(OWNER.email);
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toContainText('email or password is not right');
  await expect(page.getByTestId('signed-in-as')).toHaveCount(0);
});

test('a developer sees only the environments they have a role in', async ({ page }) => {
  await signIn(page, DEVELOPER);
  const nav = page.getByRole('navigation', { name: 'Environments' });
  await expect(nav.getByRole('link')).toHaveText(['DEV']);
  await page.goto('/env/QA/connections');
  await expect(page.getByRole('alert')).toContainText('you have no role in QA');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page).toHaveURL(/\/sign-in$/);
  await page.goto('/env/DEV/connections');
  await expect(page).toHaveURL(/\/sign-in$/);
});

test('home page names the app and lists DEV, QA, PROD in order', async ({ page }) => {
  const errors = trackPageErrors(page);
  await signIn(page);
  await page.goto('/');
  await expect(page.getByRole('heading', { name: /connvault/i }).first()).toBeVisible();

  const nav = page.getByRole('navigation', { name: 'Environments' });
  await expect(nav).toBeVisible();
  const links = nav.getByRole('link');
  await expect(links).toHaveCount(3);
  const names = (await links.allTextContents()).map((t) => t.trim());
  expect(names).toEqual(['DEV', 'QA', 'PROD']);

  await hydrated(page);
  expect(errors).toEqual([]);
});

test('DEV link leads to its connections; the secret never reaches the page', async ({ page }) => {
  const errors = trackPageErrors(page);
  const bodies: Promise<string>[] = [];
  page.on('response', (res) => {
    if ((res.headers()['content-type'] ?? '').includes('wasm')) return;
    bodies.push(res.text().catch(() => ''));
  });

  await signIn(page);
  await page.goto('/');
  await hydrated(page);
  await page
    .getByRole('navigation', { name: 'Environments' })
    .getByRole('link', { name: 'DEV', exact: true })
    .click();
  await expect(page).toHaveURL(CONNECTIONS_URL);

  await expect(connectionsTable(page)).toBeVisible();
  const row = billingRow(page);
  await expect(row).toHaveCount(1);
  await expect(row).toContainText('http');
  await expect(row).toContainText(/\bset\b/);
  await expect(row).not.toContainText(SECRET);

  await hydrated(page);
  expect(await page.content()).not.toContain(SECRET);
  for (const body of await Promise.all(bodies)) {
    expect(body).not.toContain(SECRET);
  }
  expect(errors).toEqual([]);
});

test('server-rendered connections page does not carry the secret', async ({ request, baseURL }) => {
  const signIn = await request.post('/rpc/sign_in', {
    form: { email: OWNER.email, password: OWNER.password },
    headers: { Origin: baseURL! },
    maxRedirects: 0,
  });
  expect(signIn.status()).toBeLessThan(400);
  const res = await request.get('/env/DEV/connections');
  expect(res.status()).toBe(200);
  const html = await res.text();
  expect(html).toContain('Billing_API');
  expect(html).not.toContain(SECRET);
});

test('search filters connections through a server function', async ({ page }) => {
  const errors = trackPageErrors(page);
  await signIn(page);
  await page.goto('/env/DEV/connections');
  await hydrated(page);
  await expect(billingRow(page)).toHaveCount(1);

  const q = page.locator('input[name="q"]');
  // connvault serves its Leptos server functions under /rpc/ (the REST API owns /api/v1).
  const serverFnCall = (res: { url(): string }) => new URL(res.url()).pathname.startsWith('/rpc/');

  let call = page.waitForResponse(serverFnCall);
  await q.fill('Bill');
  expect((await call).ok()).toBe(true);
  await expect(billingRow(page)).toHaveCount(1);
  await expect(page.getByText('No connections match')).toHaveCount(0);

  call = page.waitForResponse(serverFnCall);
  await q.fill('zzz');
  expect((await call).ok()).toBe(true);
  await expect(page.getByText('No connections match')).toBeVisible();
  await expect(billingRow(page)).toHaveCount(0);

  expect(await page.content()).not.toContain(SECRET);
  expect(errors).toEqual([]);
});

test('unknown environment is reported', async ({ page }) => {
  await signIn(page);
  await page.goto('/env/NOPE/connections');
  await expect(page.getByText('No environment named NOPE')).toBeVisible();
});

test('the data directory does not hold the secret in clear', async () => {
  const dataDir = process.env.CONNVAULT_E2E_DATA_DIR;
  expect(dataDir, 'CONNVAULT_E2E_DATA_DIR is set by playwright.config.ts').toBeTruthy();
  const needle = Buffer.from(SECRET);
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.isFile()) files.push(p);
    }
  };
  walk(dataDir!);
  expect(files.length, 'the server keeps its data in CONNVAULT_DATA_DIR').toBeGreaterThan(0);
  for (const f of files) {
    expect(fs.readFileSync(f).includes(needle), `${f} contains the secret in clear`).toBe(false);
  }
});

test('the audit trail shows who changed what, scoped by role', async ({ page }) => {
  const errors = trackPageErrors(page);
  await signIn(page, DEVELOPER);
  await page.goto('/env/DEV/connections');
  await page.getByRole('link', { name: 'Audit trail of DEV' }).click();
  await expect(page).toHaveURL(/\/audit\?environment=DEV$/);
  const row = page.locator('table[data-testid="audit"] tr', { hasText: 'Connection created' });
  await expect(row).toHaveCount(1);
  await expect(row.locator('[data-action]')).toHaveAttribute('data-action', 'connection.create');
  await expect(row.getByRole('link', { name: 'connection Billing_API' })).toHaveAttribute('href', '/env/DEV/connections/Billing_API');
  await expect(row).toContainText('operator');
  expect(await page.content()).not.toContain(SECRET);

  // All environments (and sign-ins) are for owners only: a developer's audit page opens on the
  // environment they can see. QA is not the developer's.
  await page.goto('/audit');
  await expect(page.getByLabel('Environment', { exact: true })).toHaveValue('DEV');
  await expect(page.getByRole('alert')).toHaveCount(0);
  await expect(page.locator('table[data-testid="audit"] tr', { hasText: 'Connection created' })).toHaveCount(1);
  await page.goto('/audit?environment=QA');
  await expect(page.getByRole('alert')).toContainText('no role in QA');

  await signIn(page, OWNER);
  await page.goto('/audit');
  await expect(page.locator('table[data-testid="audit"] tr', { hasText: 'Signed in' }).first()).toBeVisible();
  expect(errors).toEqual([]);
});
