import { test, expect, type Browser, type Page } from '@playwright/test';
import { type ChildProcess } from 'child_process';
import { fitsWidth, healthy, hydrated, PHONE, signedIn, spawnPrinting, startVault, stopAll } from './support';

// A Dataverse connection in the browser, from "New connection" through the Entra admin's
// one-time link to "connected", on a vault of its own with the Microsoft stand-in
// (`connvault dev-microsoft`) playing Entra ID and the Dataverse environment: Request admin
// help → the email waits in the outbox with the certificate and the Entra steps → the "admin"
// registers the app on the stand-in's page (certificate, application user) and sends the
// tenant and client IDs through the link → WhoAmI answers.

const PORT = 3214;
const MS_PORT = 3215;
const BASE = `http://127.0.0.1:${PORT}`;
const AUTHORITY = `http://127.0.0.1:${MS_PORT}`;
const OWNER = { email: 'owner@example.com', password: 'dataverse e2e owner password' };

const children: ChildProcess[] = [];
let environmentUrl = '';
let adminLink = '';

test.describe.configure({ mode: 'serial' });

/** Starts the stand-in and reads the Dataverse environment URL it prints. */
async function startMicrosoft(env: NodeJS.ProcessEnv): Promise<string> {
  const m = await spawnPrinting(['dev-microsoft', '--addr', `127.0.0.1:${MS_PORT}`], env, children, /Dataverse environment URL: (http:\/\/127\.0\.0\.1:\d+)/);
  return m[1];
}

test.beforeAll(async () => {
  await startVault('dataverse', PORT, OWNER, children, async (env) => {
    environmentUrl = await startMicrosoft(env);
    await healthy(`${AUTHORITY}/`);
  });
});

test.afterAll(async () => {
  await stopAll(children);
});

function ownerPage(browser: Browser): Promise<Page> {
  return signedIn(browser, BASE, OWNER);
}

test('a developer creates a Dataverse connection and asks the Entra admin for help', async ({ browser }) => {
  const page = await ownerPage(browser);
  await page.goto('/env/DEV/connections/new');
  await hydrated(page);
  await page.locator('#f-name').fill('DV_Sales');
  await page.locator('#f-provider').selectOption('dataverse');
  await page.locator('#f-environment_url').fill(environmentUrl);
  await page.locator('#f-admin_email').fill('entra-admin@contoso.example');
  // The authority is an advanced setting: folded away until opened.
  await page.getByText('Advanced settings').click();
  await page.locator('#f-authority_url').fill(AUTHORITY);
  await page.getByRole('button', { name: 'Create connection' }).click();
  await expect(page).toHaveURL(/\/env\/DEV\/connections\/DV_Sales/);
  await hydrated(page);

  await expect(page.getByTestId('connection-status')).toContainText('No certificate yet');
  await expect(page.getByTestId('step-certificate').getByTestId('request-to').first()).toContainText('entra-admin@contoso.example');
  await page.getByRole('button', { name: 'Request admin help' }).click();
  await expect(page.getByTestId('connection-status')).toContainText('Not sent: no mail server is configured');
  await expect(page.getByRole('link', { name: 'Download certificate (.crt)' })).toBeVisible();

  await page.goto('/outbox');
  await hydrated(page);
  const row = page.getByTestId('outbox').getByRole('row', { name: /requests your help to register an app in Microsoft Entra ID/ });
  await expect(row).toContainText('DV_Sales-DEV.crt');
  await row.getByRole('link', { name: 'Show' }).click();
  const message = page.getByTestId('outbox-message');
  await expect(message).toContainText('Application users');
  await expect(message).toContainText(environmentUrl);
  const text = (await message.textContent())!;
  adminLink = text.match(/http:\/\/127\.0\.0\.1:3214\/respond\/DEV\/DV_Sales\?token=[A-Za-z0-9_-]+/)![0];
  await page.context().close();
});

test('the Entra admin registers the app and answers through the link; the connection works', async ({ browser }) => {
  const owner = await ownerPage(browser);
  const certificate = await (await owner.request.get('/api/v1/environments/DEV/connections/DV_Sales/certificate')).text();
  expect(certificate).toContain('BEGIN CERTIFICATE');
  expect(certificate).not.toContain('PRIVATE');

  // The admin registers the app with the certificate (the stand-in also creates its
  // application user) and reads the tenant and client IDs off the page.
  const portal = await (await browser.newContext()).newPage();
  await portal.goto(AUTHORITY);
  await portal.locator('#name').fill('connvault DV_Sales DEV');
  await portal.locator('#certificate').fill(certificate);
  await portal.getByRole('button', { name: 'Register and show the client ID' }).click();
  const tenant = (await portal.locator('#tenant-id').first().textContent())!.trim();
  const client = (await portal.locator('#client-id').textContent())!.trim();
  expect(client).toMatch(/^[0-9a-f-]{36}$/);

  // The admin has no account: the link is the permission. They may well open it on a phone.
  const admin = await (await browser.newContext({ viewport: PHONE })).newPage();
  await admin.goto(adminLink);
  await hydrated(admin);
  await expect(admin.getByRole('heading', { name: 'Send the directory (tenant) ID and application (client) ID to connvault' })).toBeVisible();
  await expect(admin.getByTestId('thumbprint')).toHaveText(/^[0-9A-F]{40}$/);
  await fitsWidth(admin);
  await admin.getByLabel('Directory (tenant) ID').fill(tenant);
  await admin.getByLabel('Application (client) ID').fill(client);
  await admin.getByRole('button', { name: 'Send' }).click();
  await expect(admin.getByTestId('answer-result')).toContainText('Thank you: the connection works');
  await expect(admin.getByTestId('answer-result')).toContainText('connected to Dataverse org');

  await owner.goto('/env/DEV/connections/DV_Sales');
  await hydrated(owner);
  await expect(owner.getByTestId('connection-status')).toContainText('Works');
  await owner.getByRole('button', { name: 'Test connection' }).click();
  await expect(owner.getByTestId('test-result')).toContainText('Works');
  await expect(owner.getByTestId('test-result')).toContainText('as application user');

  // The certificate panel at phone width: status, thumbprints and actions, no sideways scrolling.
  const phone = await signedIn(browser, BASE, OWNER, PHONE);
  await phone.goto('/env/DEV/connections/DV_Sales');
  await hydrated(phone);
  await expect(phone.getByTestId('connection-status')).toContainText('Works');
  // The certificate step is done, so folded: opened, it shows the certificate.
  await phone.getByTestId('step-certificate').locator('summary').first().click();
  const download = phone.getByRole('link', { name: 'Download certificate (.crt)' });
  await download.scrollIntoViewIfNeeded();
  await expect(download).toBeInViewport();
  await fitsWidth(phone);
});
