import { test, expect, type Browser, type Page } from '@playwright/test';
import { spawn, type ChildProcess } from 'child_process';
import { binary, createSalesforce, healthy, hydrated, repoRoot, signedIn, startVault, stopAll } from './support';

// The Salesforce connected-app flow in the browser, on a vault of its own with the Salesforce
// stand-in (`connvault dev-salesforce`) playing Salesforce: create a connection in DEV →
// Request admin help → the email waits in the outbox with the certificate → the "admin" creates
// the connected app on the stand-in's page and answers through the one-time link → the
// connection works; and an app set to self-authorize gets advice that names the policy.

const PORT = 3212;
const SF_PORT = 3213;
const BASE = `http://127.0.0.1:${PORT}`;
const SF = `http://127.0.0.1:${SF_PORT}`;
const OWNER = { email: 'owner@example.com', password: 'salesforce e2e owner password' };
const USER = 'integration@acme.example';

const children: ChildProcess[] = [];
let adminLink = '';

test.describe.configure({ mode: 'serial' });

test.beforeAll(async () => {
  await startVault('salesforce', PORT, OWNER, children, async (env) => {
    children.push(spawn(binary, ['dev-salesforce', '--addr', `127.0.0.1:${SF_PORT}`], { cwd: repoRoot, env, stdio: 'ignore' }));
    await healthy(`${SF}/`);
  });
});

test.afterAll(async () => {
  await stopAll(children);
});

function ownerPage(browser: Browser): Promise<Page> {
  return signedIn(browser, BASE, OWNER);
}

async function createConnection(page: Page, name: string) {
  await page.goto('/env/DEV/connections/new');
  await hydrated(page);
  await createSalesforce(page, name, SF, USER, 'sf-admin@acme.example');
}

/// Plays the Salesforce admin on the stand-in's page: a connected app for `certificate`.
async function createConnectedApp(browser: Browser, certificate: string, permitted: 'admin_approved' | 'self_authorize'): Promise<string> {
  const page = await (await browser.newContext()).newPage();
  await page.goto(SF);
  await page.locator('#certificate').fill(certificate);
  await page.locator('#username').fill(USER);
  await page.locator(`input[name=permitted_users][value=${permitted}]`).check();
  await page.getByRole('button', { name: 'Save and show the Consumer Key' }).click();
  const key = (await page.locator('#consumer-key').textContent())!.trim();
  expect(key).toMatch(/^3MVG9/);
  await page.context().close();
  return key;
}

test('a developer requests admin help; the email waits in the outbox with the certificate', async ({ browser }) => {
  const page = await ownerPage(browser);
  await createConnection(page, 'SF_Main');
  await expect(page.getByTestId('connection-status')).toContainText('No certificate yet');
  // The admin's address was asked once, with the settings.
  await expect(page.getByTestId('step-certificate').getByTestId('request-to').first()).toContainText('sf-admin@acme.example');
  await page.getByRole('button', { name: 'Request admin help' }).click();
  // No mail server in these tests: the request is not sent, and the page says so.
  await expect(page.getByTestId('connection-status')).toContainText('Not sent: no mail server is configured');
  await expect(page.getByRole('link', { name: 'Download certificate (.crt)' })).toBeVisible();

  await page.goto('/outbox');
  await hydrated(page);
  const row = page.getByTestId('outbox').getByRole('row', { name: /requests your help to create a Salesforce Connected App/ });
  await expect(row).toContainText('SF_Main-DEV.crt');
  await expect(row).toContainText('sf-admin@acme.example');
  await row.getByRole('link', { name: 'Show' }).click();
  const message = page.getByTestId('outbox-message');
  await expect(message).toContainText('Use digital signatures');
  await expect(message).toContainText(USER);
  const text = (await message.textContent())!;
  adminLink = text.match(/http:\/\/127\.0\.0\.1:3212\/respond\/DEV\/SF_Main\?token=[A-Za-z0-9_-]+/)![0];
  await page.context().close();
});

test('the admin creates the app and answers through the link; the connection works', async ({ browser }) => {
  const owner = await ownerPage(browser);
  const certificate = await (await owner.request.get('/api/v1/environments/DEV/connections/SF_Main/certificate')).text();
  expect(certificate).toContain('BEGIN CERTIFICATE');
  expect(certificate).not.toContain('PRIVATE');
  const consumerKey = await createConnectedApp(browser, certificate, 'admin_approved');

  // The admin has no account: the link is the permission.
  const admin = await (await browser.newContext()).newPage();
  await admin.goto(adminLink);
  await hydrated(admin);
  await expect(admin.getByRole('heading', { name: 'Send the consumer key to connvault' })).toBeVisible();
  await expect(admin.locator('body')).toContainText(USER);
  // A typo in the consumer key: told so, and the link survives it (promise 16).
  await admin.getByLabel('Consumer key').fill(consumerKey.slice(0, -3) + 'XYZ');
  await admin.getByRole('button', { name: 'Send' }).click();
  await expect(admin.getByTestId('answer-result')).toContainText('Received, but the connection does not work yet');
  await expect(admin.getByTestId('answer-result')).toContainText('4 more tries with this link');
  await admin.getByLabel('Consumer key').fill(consumerKey);
  await admin.getByRole('button', { name: 'Send' }).click();
  await expect(admin.getByTestId('answer-result')).toContainText('Thank you: the connection works');
  // The link is used up by the answer that worked.
  await admin.goto(adminLink);
  await expect(admin.locator('body')).toContainText('this link is not valid');

  await owner.goto('/env/DEV/connections/SF_Main');
  await hydrated(owner);
  await expect(owner.getByTestId('connection-status')).toContainText('Works');
  await owner.getByRole('button', { name: 'Test connection' }).click();
  await expect(owner.getByTestId('test-result')).toContainText('Works');
  await expect(owner.getByTestId('test-result')).toContainText('connected to org 00D');
  await owner.goto('/env/DEV/connections');
  await expect(owner.getByRole('row', { name: /SF_Main/ })).toContainText('Works');
  await expect(owner.getByRole('row', { name: /SF_Main/ })).toContainText('Certificate expires');
});

test('a connected app set to self-authorize gets advice that names the policy to change', async ({ browser }) => {
  const page = await ownerPage(browser);
  await createConnection(page, 'SF_Bad');
  await page.getByRole('button', { name: 'Request admin help' }).click();
  await expect(page.getByTestId('connection-status')).toContainText('Not sent: no mail server is configured');
  const certificate = await (await page.request.get('/api/v1/environments/DEV/connections/SF_Bad/certificate')).text();
  const consumerKey = await createConnectedApp(browser, certificate, 'self_authorize');

  await page.locator('#f-consumer_key').fill(consumerKey);
  await page.getByRole('button', { name: 'Save changes' }).click();
  await expect(page.getByText('Saved.')).toBeVisible();
  await page.getByRole('button', { name: 'Test connection' }).click();
  const result = page.getByTestId('test-result');
  await expect(result).toContainText('Does not work');
  await expect(result).toContainText("user hasn't approved this consumer");
  await expect(result).toContainText('Admin approved users are pre-authorized');
  // The status above says the same at once, and so does the stored one after a reload.
  await expect(page.getByTestId('connection-status')).toContainText('Does not work');
  await page.reload();
  await hydrated(page);
  await expect(page.getByTestId('connection-status')).toContainText('Does not work');
  await expect(page.getByTestId('step-test')).toHaveAttribute('data-state', 'failed');
});
