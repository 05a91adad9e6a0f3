import { test, expect } from '@playwright/test';
import { spawnSync, type ChildProcess } from 'child_process';
import { binary, hydrated, repoRoot, signedIn, spawnPrinting, startVault, stopAll } from './support';

// Connecting by signing in, in the browser, on a vault of its own with the Salesforce stand-in
// (`connvault dev-salesforce`) playing Salesforce: the admin creates a connected app for the web
// server flow on the stand-in's page; in connvault a web_server connection → "Connect with
// Salesforce" → the stand-in's login page → back on the connection page, connected; then an
// app gets a token from the broker, and Salesforce accepts it.

const PORT = 3230;
const SF_PORT = 3231;
const BASE = `http://127.0.0.1:${PORT}`;
const SF = `http://127.0.0.1:${SF_PORT}`;
const OWNER = { email: 'owner@example.com', password: 'sign-in e2e owner password' };
const ADMIN = 'admin@acme.example';
const ADMIN_PASSWORD = 'salesforce admin password';

const children: ChildProcess[] = [];
let vaultEnv: NodeJS.ProcessEnv = {};

test.describe.configure({ mode: 'serial' });

test.beforeAll(async () => {
  const vault = await startVault('sign-in', PORT, OWNER, children, async (env) => {
    await spawnPrinting(['dev-salesforce', '--addr', `127.0.0.1:${SF_PORT}`], env, children, /stand-in/);
  });
  vaultEnv = vault.env;
});

test.afterAll(async () => {
  await stopAll(children);
});

test('Connect with Salesforce signs in at the stand-in, and the broker hands out a token Salesforce accepts', async ({ browser }) => {
  // The Salesforce admin's part: a connected app whose callback URL is connvault's.
  const sf = await (await browser.newContext()).newPage();
  await sf.goto(SF);
  await sf.locator('#callback_url').fill(`${BASE}/oauth/callback`);
  await sf.locator('#web_username').fill(ADMIN);
  await sf.locator('#web_password').fill(ADMIN_PASSWORD);
  await sf.getByRole('button', { name: 'Create the web server app' }).click();
  const consumerKey = (await sf.locator('#web-consumer-key').textContent())!.trim();
  const consumerSecret = (await sf.locator('#web-consumer-secret').textContent())!.trim();
  expect(consumerKey).toMatch(/^3MVG9/);
  await sf.context().close();

  const page = await signedIn(browser, BASE, OWNER);
  await page.goto('/env/DEV/connections/new');
  await hydrated(page);
  await page.locator('#f-name').fill('SF_Web');
  await page.locator('#f-provider').selectOption('salesforce');
  await page.locator('#f-auth').selectOption('web_server');
  await page.locator('#f-login_url-choice').selectOption({ label: 'My Domain or another URL…' });
  await page.locator('#f-login_url').fill(SF);
  await page.locator('#f-username').fill(ADMIN);
  await page.locator('#f-consumer_key').fill(consumerKey);
  await page.locator('#f-consumer_secret').fill(consumerSecret);
  await page.getByRole('button', { name: 'Create connection' }).click();
  await expect(page).toHaveURL(/\/env\/DEV\/connections\/SF_Web/);
  await hydrated(page);
  await expect(page.getByTestId('sign-in-status')).toContainText('Needs someone to sign in');
  await expect(page.getByTestId('callback-url')).toHaveText(`${BASE}/oauth/callback`);
  // No certificate panel: this flow signs in instead.
  await expect(page.getByRole('button', { name: 'Request admin help' })).toHaveCount(0);

  await page.getByRole('link', { name: 'Connect with Salesforce' }).click();
  await expect(page).toHaveURL(new RegExp(`^${SF}/services/oauth2/authorize`));
  await expect(page.getByText('Sign in to allow')).toContainText('api refresh_token offline_access');
  await page.locator('#username').fill(ADMIN);
  await page.locator('#password').fill('not the password');
  await page.getByRole('button', { name: 'Allow' }).click();
  await expect(page.getByRole('alert')).toContainText('Wrong username or password');
  await page.locator('#username').fill(ADMIN);
  await page.locator('#password').fill(ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Allow' }).click();

  await expect(page).toHaveURL(/\/env\/DEV\/connections\/SF_Web\?sign_in=\d+/);
  await hydrated(page);
  const result = page.getByTestId('sign-in-result');
  await expect(result).toContainText('Connected');
  await expect(result).toContainText(`as ${ADMIN}`);
  await expect(page.getByTestId('sign-in-status')).toContainText(/Connected: connected to org 00D\w+ as admin@acme\.example/);

  // An app asks the broker for the connection's token, and Salesforce (the stand-in) accepts it.
  const made = spawnSync(binary, ['api-key', 'create', '--name', 'app', '--grant', 'DEV:*:rw'], { cwd: repoRoot, env: vaultEnv });
  expect(made.status, made.stderr?.toString()).toBe(0);
  const key = made.stdout.toString().trim();
  const call = async (method: string, p: string, body?: unknown) => {
    const r = await fetch(`${BASE}/api/v1/environments/DEV${p}`, {
      method,
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    expect(r.status, `${method} ${p}: ${text}`).toBeLessThan(300);
    return JSON.parse(text);
  };
  await call('PUT', '/integrations/Accounts', { provider: 'salesforce', objects: ['Account'] });
  await call('PUT', '/integrations/Accounts/binding', { connection: 'SF_Web' });
  const token = await call('POST', '/integrations/Accounts/token?force_refresh=true');
  expect(token.instance_url).toBe(SF);
  const info = await fetch(`${SF}/services/oauth2/userinfo`, { headers: { Authorization: `Bearer ${token.access_token}` } });
  expect(info.status).toBe(200);
  expect((await info.json()).preferred_username).toBe(ADMIN);

  // Disconnect: revoked at the stand-in; the page says someone must sign in again.
  await page.getByRole('button', { name: 'Disconnect' }).click();
  await expect(page.getByTestId('disconnect-result')).toContainText('the provider revoked the refresh token');
  await expect(page.getByTestId('sign-in-status')).toContainText('Needs someone to sign in');
  await page.goto('/env/DEV/connections');
  await hydrated(page);
  await expect(page.getByRole('row', { name: /SF_Web/ }).getByTestId('check')).toContainText('Needs someone to sign in');
});
