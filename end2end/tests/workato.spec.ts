import { test, expect, type Browser, type Page } from '@playwright/test';
import { type ChildProcess } from 'child_process';
import { fitsWidth, hydrated, PHONE, signedIn, spawnPrinting, startVault, stopAll } from './support';

// A Workato connection whose token only the workspace admin has, in the browser, on a vault of
// its own with the Workato stand-in (`connvault dev-workato`) playing Workato: the developer
// creates the connection without a token → Request credentials → the email waits in the outbox
// with the steps and a one-time link → the admin enters the API client's token on the link's
// page (on a phone) and sees at once that it works → the developer sees who set it, never the
// value, and the connection is connected.

const PORT = 3216;
const WK_PORT = 3217;
const BASE = `http://127.0.0.1:${PORT}`;
const API = `http://127.0.0.1:${WK_PORT}/api/`;
const OWNER = { email: 'owner@example.com', password: 'workato e2e owner password' };
const ADMIN = 'workato-admin@acme.example';

const children: ChildProcess[] = [];
let apiToken = '';
let adminLink = '';

test.describe.configure({ mode: 'serial' });

/** Starts the stand-in and reads the demo API client's token it prints. */
async function startWorkato(env: NodeJS.ProcessEnv): Promise<string> {
  const m = await spawnPrinting(['dev-workato', '--addr', `127.0.0.1:${WK_PORT}`], env, children, /API client token \(DEV, all privileges\): ([0-9a-f]{64})/);
  return m[1];
}

test.beforeAll(async () => {
  await startVault('workato', PORT, OWNER, children, async (env) => {
    apiToken = await startWorkato(env);
  });
});

test.afterAll(async () => {
  await stopAll(children);
});

function ownerPage(browser: Browser): Promise<Page> {
  return signedIn(browser, BASE, OWNER);
}

test('a developer creates a Workato connection without its token and asks the workspace admin', async ({ browser }) => {
  const page = await ownerPage(browser);
  await page.goto('/env/DEV/connections/new');
  await hydrated(page);
  await page.locator('#f-name').fill('WK_Main');
  await page.locator('#f-provider').selectOption('workato');
  // The API base URL is an override: an advanced setting, folded away until opened.
  await page.getByText('Advanced settings').click();
  await page.locator('#f-base_url').fill(API);
  await page.getByRole('button', { name: 'Create connection' }).click();
  await expect(page).toHaveURL(/\/env\/DEV\/connections\/WK_Main/);
  await hydrated(page);

  await expect(page.getByTestId('credential-request')).toContainText('No request yet');
  await page.locator('#cred-admin').fill(ADMIN);
  await page.getByRole('button', { name: 'Request credentials' }).click();
  await expect(page.getByTestId('request-line')).toContainText(`Request to ${ADMIN}`);
  await expect(page.getByTestId('request-line')).toContainText('open');
  // No mail server in these tests: the page says the email was not sent.
  await expect(page.getByTestId('connection-status')).toContainText('Not sent: no mail server is configured');
  await expect(page.getByTestId('not-sent')).toContainText('Not sent: no mail server is configured');
  await expect(page.getByRole('button', { name: 'Send the request again' })).toBeVisible();

  await page.goto('/outbox');
  await hydrated(page);
  const row = page.getByTestId('outbox').getByRole('row', { name: /asks you for the Workato credentials of WK_Main/ });
  await expect(row.getByTestId('delivery')).toHaveText('Not sent: pass it on');
  await row.getByRole('link', { name: 'Show' }).click();
  const message = page.getByTestId('outbox-message');
  await expect(message).toContainText('API platform');
  const text = (await message.textContent())!;
  adminLink = text.match(/http:\/\/127\.0\.0\.1:3216\/credentials\/DEV\/WK_Main\?token=[A-Za-z0-9_-]+/)![0];
  await page.context().close();
});

test('the admin enters the token through the link; the developer sees who set it, and it works', async ({ browser }) => {
  // The admin has no account: the link is the permission. They may well open it on a phone.
  const admin = await (await browser.newContext({ viewport: PHONE })).newPage();
  await admin.goto(adminLink);
  await hydrated(admin);
  await expect(admin.getByRole('heading', { name: 'Enter the Workato credentials for WK_Main' })).toBeVisible();
  await expect(admin.getByTestId('credential-steps')).toContainText('Client roles');
  await fitsWidth(admin);
  await expect(admin.getByLabel('API client token')).toHaveAttribute('type', 'password');
  await admin.getByLabel('API client token').fill(apiToken);
  await admin.getByRole('button', { name: 'Send' }).click();
  await expect(admin.getByTestId('credential-result')).toContainText('Thank you: the connection works');
  await expect(admin.getByTestId('credential-result')).toContainText('workspace Acme Automation');

  const owner = await ownerPage(browser);
  await owner.goto('/env/DEV/connections/WK_Main');
  await hydrated(owner);
  await expect(owner.getByTestId('secret-state').first()).toContainText(`by the admin (${ADMIN})`);
  expect(await owner.content()).not.toContain(apiToken);
  await expect(owner.getByTestId('request-line')).toContainText('answered');
  await expect(owner.getByTestId('step-credentials')).toHaveAttribute('data-state', 'done');
  await owner.getByRole('button', { name: 'Test connection' }).click();
  await expect(owner.getByTestId('test-result')).toContainText('Works');
  await expect(owner.getByTestId('test-result')).toContainText('workspace Acme Automation');
  await owner.getByRole('button', { name: 'Read from Workato' }).click();
  await expect(owner.getByTestId('details')).toContainText('Ada Admin');

  // The link is used up.
  await admin.reload();
  await hydrated(admin);
  await expect(admin.getByText('this link is not valid')).toBeVisible();
});
