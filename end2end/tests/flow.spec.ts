import { test, expect, type Browser, type Page } from '@playwright/test';
import { spawnSync, type ChildProcess } from 'child_process';
import { binary, createSalesforce, hydrated, repoRoot, signedIn, spawnPrinting, startVault, stopAll, type Vault } from './support';

// The connection page as a guided flow, on a vault of its own without a mail server, with the
// Salesforce stand-in (`connvault dev-salesforce`) playing Salesforce:
// - the new-connection form keeps every field after a refusal, lists every mistake in a summary
//   that takes the focus and links to each field, and a name already taken links to that
//   connection (generic HTTP and Salesforce);
// - a developer's Salesforce connection goes through its steps (settings → certificate and
//   request → the admin's answer → test → bind), each with its state, only the next action the
//   primary button;
// - without a mail server the request is "Not sent", and the requester passes it on themselves
//   (its text, the .eml, the one-time link), which a viewer never sees;
// - the admin's page names who asked and offers the certificate; the requester sees the outcome
//   of each answer on the connection page, and is emailed it.

const PORT = 3240;
const SF_PORT = 3241;
const BASE = `http://127.0.0.1:${PORT}`;
const SF = `http://127.0.0.1:${SF_PORT}`;
const OWNER = { email: 'owner@example.com', password: 'flow e2e owner password' };
const DEV = { email: 'dev@example.com', password: 'flow e2e developer password' };
const VIEWER = { email: 'viewer@example.com', password: 'flow e2e viewer password' };
const USER = 'integration@acme.example';
const HTTP_SECRET = 'flow-typed-token-5e1f';

const children: ChildProcess[] = [];
let vault: Vault;

test.describe.configure({ mode: 'serial' });

function cli(args: string[], input?: string) {
  const r = spawnSync(binary, args, { cwd: repoRoot, env: vault.env, input });
  expect(r.status, r.stderr?.toString()).toBe(0);
  return r.stdout.toString();
}

test.beforeAll(async () => {
  vault = await startVault('flow', PORT, OWNER, children, async (env) => {
    await spawnPrinting(['dev-salesforce', '--addr', `127.0.0.1:${SF_PORT}`], env, children, /stand-in/);
  });
  cli(['user', 'create', '--email', DEV.email], `${DEV.password}\n`);
  cli(['user', 'role', '--email', DEV.email, '--env', 'DEV', '--role', 'developer']);
  cli(['user', 'create', '--email', VIEWER.email], `${VIEWER.password}\n`);
  cli(['user', 'role', '--email', VIEWER.email, '--env', 'DEV', '--role', 'viewer']);
  cli(['connection', 'create', '--env', 'DEV', '--name', 'Billing', '--provider', 'http', '--setting', 'base_url=https://billing.example.com', '--setting', 'auth=bearer']);
});

test.afterAll(async () => {
  await stopAll(children);
});

async function newConnection(browser: Browser, who = DEV): Promise<Page> {
  const page = await signedIn(browser, BASE, who);
  await page.goto('/env/DEV/connections/new');
  await hydrated(page);
  return page;
}

/// Plays the Salesforce admin on the stand-in's page: a connected app for `certificate`.
async function createConnectedApp(browser: Browser, certificate: string): Promise<string> {
  const page = await (await browser.newContext()).newPage();
  await page.goto(SF);
  await page.locator('#certificate').fill(certificate);
  await page.locator('#username').fill(USER);
  await page.locator('input[name=permitted_users][value=admin_approved]').check();
  await page.getByRole('button', { name: 'Save and show the Consumer Key' }).click();
  const key = (await page.locator('#consumer-key').textContent())!.trim();
  await page.context().close();
  return key;
}

test('a refused generic HTTP connection comes back as typed, every mistake listed and linked, the name taken linked to its connection', async ({ browser }) => {
  const page = await newConnection(browser);
  await page.locator('#f-name').fill('billing');
  await page.locator('#f-provider').selectOption('http');
  await page.locator('#f-base_url').fill('not a url');
  await page.locator('#f-auth').selectOption('header');
  await expect(page.locator('#f-header_name')).toBeVisible();
  await page.locator('#f-token').fill(HTTP_SECRET);
  await page.getByRole('button', { name: 'Create connection' }).click();

  const summary = page.getByTestId('error-summary');
  await expect(summary).toBeVisible();
  await expect(summary).toBeFocused();
  await expect(summary.getByRole('heading')).toHaveText('There are 3 problems');
  await expect(summary).toContainText('Name: DEV already has a connection named Billing');
  await expect(summary).toContainText('Base URL:');
  await expect(summary).toContainText('Header name');
  await expect(summary.getByRole('link', { name: 'Open the existing connection' })).toHaveAttribute('href', '/env/DEV/connections/Billing');
  await expect(page).toHaveURL(/\/env\/DEV\/connections\/new$/);
  // Everything typed is still there, the secret too (the page is hydrated).
  await expect(page.locator('#f-name')).toHaveValue('billing');
  await expect(page.locator('#f-provider')).toHaveValue('http');
  await expect(page.locator('#f-base_url')).toHaveValue('not a url');
  await expect(page.locator('#f-auth')).toHaveValue('header');
  await expect(page.locator('#f-header_name')).toHaveValue('');
  await expect(page.locator('#f-token')).toHaveValue(HTTP_SECRET);
  await expect(page.locator('#f-base_url')).toHaveAttribute('aria-invalid', 'true');
  // Each line links to its field.
  await summary.getByRole('link', { name: /^Base URL/ }).click();
  await expect(page.locator('#f-base_url')).toBeFocused();
  await summary.getByRole('link', { name: /^Header name/ }).click();
  await expect(page.locator('#f-header_name')).toBeFocused();
  await summary.getByRole('link', { name: /^Name/ }).click();
  await expect(page.locator('#f-name')).toBeFocused();

  // Fixed, it is created.
  await page.locator('#f-name').fill('Payments');
  await page.locator('#f-base_url').fill('https://payments.example.com');
  await page.locator('#f-header_name').fill('X-Api-Key');
  await page.getByRole('button', { name: 'Create connection' }).click();
  await expect(page).toHaveURL(/\/env\/DEV\/connections\/Payments\?saved=1/);
  await page.context().close();
});

test('before the page hydrates a refused form comes back filled in as it was sent, the summary listing every mistake', async ({ browser }) => {
  const context = await browser.newContext({ baseURL: BASE, javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto('/sign-in');
  await page.getByLabel('Email').fill(DEV.email);
  await page.getByLabel('Password').fill(DEV.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.goto('/env/DEV/connections/new');
  await page.locator('#f-name').fill('Billing');
  await page.locator('#f-base_url').fill('ftp://files.example.com');
  await page.locator('#f-auth').selectOption('basic');
  await page.locator('#f-username').fill('svc-user');
  await page.getByRole('button', { name: 'Create connection' }).click();
  const summary = page.getByTestId('error-summary');
  await expect(summary).toBeVisible();
  await expect(summary).toContainText('Name: DEV already has a connection named Billing');
  await expect(summary).toContainText('Base URL: must start with https://');
  await expect(summary.getByRole('link', { name: 'Open the existing connection' })).toHaveAttribute('href', '/env/DEV/connections/Billing');
  await expect(page.locator('#f-name')).toHaveValue('Billing');
  await expect(page.locator('#f-base_url')).toHaveValue('ftp://files.example.com');
  await expect(page.locator('#f-auth')).toHaveValue('basic');
  await expect(page.locator('#f-username')).toHaveValue('svc-user');
  await context.close();
});

test('a refused Salesforce connection keeps every field, its login URL choice and its advanced settings', async ({ browser }) => {
  const page = await newConnection(browser);
  await page.locator('#f-name').fill('SF Bad name');
  await page.locator('#f-provider').selectOption('salesforce');
  // The login URL is a choice; Production first.
  const choice = page.locator('#f-login_url-choice');
  await expect(choice).toHaveValue('https://login.salesforce.com');
  await expect(page.locator('#f-login_url')).toBeHidden();
  await choice.selectOption({ label: 'My Domain or another URL…' });
  await page.locator('#f-login_url').fill('ftp://acme.my.salesforce.com');
  await page.locator('#f-username').fill(USER);
  await page.locator('#f-consumer_key').fill('3MVG9typed');
  await page.locator('#f-admin_email').fill('not an address');
  // Advanced settings stay folded until opened.
  await expect(page.locator('#f-audience')).toBeHidden();
  await page.getByText('Advanced settings').click();
  await page.locator('#f-audience').fill('https://audience.example.com');
  await page.locator('#f-session_lifetime_minutes').fill('90');
  await page.getByRole('button', { name: 'Create connection' }).click();

  const summary = page.getByTestId('error-summary');
  await expect(summary).toBeFocused();
  await expect(summary).toContainText('Name: a connection name is');
  await expect(summary).toContainText('Login URL');
  await expect(summary).toContainText("Salesforce admin's email");
  // The provider's own checks come with the others, not one round later.
  await expect(summary).toContainText('Audience (advanced): audience.example.com is not a Salesforce login host');
  // Salesforce is still chosen, its fields still filled in; no Generic HTTP field came back.
  await expect(page.locator('#f-provider')).toHaveValue('salesforce');
  await expect(page.locator('#f-base_url')).toHaveCount(0);
  await expect(page.locator('#f-name')).toHaveValue('SF Bad name');
  await expect(page.locator('#f-auth')).toHaveValue('jwt_bearer');
  await expect(choice).toHaveValue('');
  await expect(page.locator('#f-login_url')).toHaveValue('ftp://acme.my.salesforce.com');
  await expect(page.locator('#f-username')).toHaveValue(USER);
  await expect(page.locator('#f-consumer_key')).toHaveValue('3MVG9typed');
  await expect(page.locator('#f-admin_email')).toHaveValue('not an address');
  await expect(page.locator('#f-audience')).toHaveValue('https://audience.example.com');
  await expect(page.locator('#f-session_lifetime_minutes')).toHaveValue('90');
  await summary.getByRole('link', { name: /^Login URL/ }).click();
  await expect(page.locator('#f-login_url')).toBeFocused();

  // A named login URL: Sandbox.
  await page.locator('#f-name').fill('SF_Sandbox');
  await choice.selectOption({ label: 'Sandbox (https://test.salesforce.com)' });
  await page.locator('#f-admin_email').fill('sf-admin@acme.example');
  await page.locator('#f-audience').fill('');
  await page.getByRole('button', { name: 'Create connection' }).click();
  await expect(page).toHaveURL(/\/env\/DEV\/connections\/SF_Sandbox\?saved=1/);
  await hydrated(page);
  await expect(page.locator('#f-login_url-choice')).toHaveValue('https://test.salesforce.com');
  await page.context().close();
});

let adminLink = '';

test('a Salesforce connection goes through its steps; without a mail server the requester passes the request on', async ({ browser }) => {
  const page = await newConnection(browser);
  await createSalesforce(page, 'SF_Flow', SF, USER, 'sf-admin@acme.example');

  const status = page.getByTestId('connection-status');
  const step = (id: string) => page.getByTestId(`step-${id}`);
  await expect(status).toContainText('No certificate yet');
  await expect(step('settings')).toHaveAttribute('data-state', 'done');
  await expect(step('certificate')).toHaveAttribute('data-state', 'next');
  await expect(step('certificate')).toHaveAttribute('aria-current', 'step');
  await expect(step('answer')).toHaveAttribute('data-state', 'todo');
  await expect(step('test')).toHaveAttribute('data-state', 'todo');
  await expect(step('bind')).toHaveAttribute('data-state', 'todo');
  // Only what applies: no request yet, so neither send again nor cancel; the admin's address is asked once.
  await expect(page.getByRole('button', { name: 'Send the request again' })).toBeHidden();
  await expect(page.getByRole('button', { name: 'Cancel the request' })).toBeHidden();
  await expect(step('certificate').getByTestId('request-to').first()).toContainText('sf-admin@acme.example');
  await expect(page.locator('#cert-admin')).toBeHidden();
  // The one primary button is the next step's.
  const request = page.getByRole('button', { name: 'Request admin help' });
  await expect(request).not.toHaveClass(/secondary/);
  // The settings are done: folded, and their button is not the primary one.
  await expect(page.getByRole('button', { name: 'Save changes', includeHidden: true })).toHaveClass(/secondary/);
  await expect(page.getByRole('button', { name: 'Test connection' })).toHaveClass(/secondary/);

  await request.click();
  // Nothing was sent: the status says so, and the requester passes it on.
  await expect(status).toContainText('Not sent: no mail server is configured');
  await expect(status).not.toContainText('Waiting for');
  await expect(step('certificate')).toHaveAttribute('data-state', 'done');
  await expect(step('answer')).toHaveAttribute('data-state', 'next');
  await expect(page.getByRole('button', { name: 'Cancel the request' })).toBeVisible();
  await expect(page.getByRole('button', { name: 'Send the request again' })).toBeVisible();
  const notSent = step('answer').getByTestId('not-sent');
  await expect(notSent).toContainText('Not sent: no mail server is configured');
  await notSent.getByRole('button', { name: 'Show the email to pass it on' }).click();
  const passOn = page.getByTestId('pass-on');
  await expect(passOn).toContainText('sf-admin@acme.example');
  adminLink = await passOn.getByTestId('pass-on-link').inputValue();
  expect(adminLink).toMatch(/^http:\/\/127\.0\.0\.1:3240\/respond\/DEV\/SF_Flow\?token=[A-Za-z0-9_-]+$/);
  await expect(passOn.getByRole('button', { name: 'Copy text' })).toBeVisible();
  const eml = passOn.getByRole('link', { name: 'Download the email (.eml)' });
  await expect(eml).toHaveAttribute('download', 'SF_Flow-DEV-request.eml');
  await expect(eml).toHaveAttribute('href', /^data:message\/rfc822;base64,/);
  await passOn.getByText("The email's text").click();
  await expect(passOn.getByTestId('pass-on-text')).toContainText('Use digital signatures');

  // Owners still find it in the outbox.
  const owner = await signedIn(browser, BASE, OWNER);
  await owner.goto('/outbox');
  await expect(owner.getByTestId('outbox').getByRole('row', { name: /requests your help to create a Salesforce Connected App/ })).toContainText('sf-admin@acme.example');
  await owner.context().close();
  await page.context().close();
});

test('the link is the requester’s: a viewer sees the request is not sent, never the link, and the audit trail never holds it', async ({ browser }) => {
  const viewer = await signedIn(browser, BASE, VIEWER);
  await viewer.goto('/env/DEV/connections/SF_Flow');
  await hydrated(viewer);
  await expect(viewer.getByTestId('connection-status')).toContainText('Not sent: no mail server is configured');
  await expect(viewer.getByRole('button', { name: 'Show the email to pass it on' })).toHaveCount(0);
  const token = adminLink.split('token=')[1];
  expect(await viewer.content()).not.toContain(token);
  // Not by calling the server either.
  const answer = await viewer.request.post('/rpc/undelivered_request', { headers: { Origin: BASE }, form: { environment: 'DEV', name: 'SF_Flow' } });
  expect(answer.status()).toBe(403);
  expect(await answer.text()).not.toContain(token);
  await viewer.context().close();

  const owner = await signedIn(browser, BASE, OWNER);
  const audit = await (await owner.request.get('/api/v1/audit?limit=500')).text();
  expect(audit).toContain('admin_request.message_read');
  expect(audit).not.toContain(token);
  await owner.context().close();
});

test('the admin’s page names who asked and offers the certificate; the requester sees each answer’s outcome and is emailed it', async ({ browser }) => {
  const dev = await signedIn(browser, BASE, DEV);
  const certificate = await (await dev.request.get('/api/v1/environments/DEV/connections/SF_Flow/certificate')).text();
  const consumerKey = await createConnectedApp(browser, certificate);

  const admin = await (await browser.newContext()).newPage();
  await admin.goto(adminLink);
  await hydrated(admin);
  await expect(admin.getByTestId('requested-by')).toContainText(`Asked by ${DEV.email} on 20`);
  const download = admin.getByTestId('certificate-download');
  await expect(download).toHaveAttribute('download', 'SF_Flow-DEV.crt');
  await expect(download).toHaveAttribute('href', /^data:application\/x-x509-ca-cert/);
  // Empty: every mistake at once, focus on the list, what was typed kept.
  await admin.getByRole('button', { name: 'Send' }).click();
  await expect(admin.getByTestId('error-summary')).toBeFocused();
  await expect(admin.getByTestId('error-summary')).toContainText('Consumer key');
  // A wrong key: the requester is told, on the page and by email.
  await admin.getByLabel('Consumer key').fill(consumerKey.slice(0, -3) + 'XYZ');
  await admin.getByRole('button', { name: 'Send' }).click();
  await expect(admin.getByTestId('answer-result')).toContainText('Received, but the connection does not work yet');
  await expect(admin.getByLabel('Consumer key')).toHaveValue(consumerKey.slice(0, -3) + 'XYZ');

  await dev.goto('/env/DEV/connections/SF_Flow');
  await hydrated(dev);
  const outcome = dev.getByTestId('step-answer').getByTestId('answer-outcome');
  await expect(outcome).toContainText("The admin's answer does not work yet");
  await expect(outcome).toContainText('The link takes 4 more answers');
  await expect(dev.getByTestId('step-answer')).toHaveAttribute('data-state', 'waiting');

  await admin.getByLabel('Consumer key').fill(consumerKey);
  await admin.getByRole('button', { name: 'Send' }).click();
  await expect(admin.getByTestId('answer-result')).toContainText('Thank you: the connection works');

  await dev.reload();
  await hydrated(dev);
  const status = dev.getByTestId('connection-status');
  await expect(status).toContainText('Works');
  await expect(status).toContainText('connected to org 00D');
  for (const [id, state] of [['settings', 'done'], ['certificate', 'done'], ['answer', 'done'], ['test', 'done'], ['bind', 'next']]) {
    await expect(dev.getByTestId(`step-${id}`)).toHaveAttribute('data-state', state);
  }
  await expect(dev.getByTestId('step-answer')).toContainText('Consumer key received from the Salesforce admin');
  await expect(dev.getByTestId('used-by')).toContainText('Used by no integration yet');
  await expect(dev.getByTestId('history')).toContainText("Admin's answer");
  await expect(dev.getByTestId('history')).toContainText('Token');
  // A test updates the status box: the two never disagree.
  await dev.getByRole('button', { name: 'Test connection' }).click();
  await expect(dev.getByTestId('test-result')).toContainText('Works');
  await expect(status).toContainText('Last tested');

  // The requester's emails wait in the outbox (no mail server), one per answer.
  const owner = await signedIn(browser, BASE, OWNER);
  await owner.goto('/outbox');
  const box = owner.getByTestId('outbox');
  await expect(box.getByRole('row', { name: /SF_Flow in DEV works: the Salesforce admin answered your request/ })).toContainText(DEV.email);
  await expect(box.getByRole('row', { name: /SF_Flow in DEV: the Salesforce admin's answer does not work yet/ })).toContainText(DEV.email);

  // Bound to an integration: the last step is done, and the page links it.
  const headers = { Origin: BASE, 'Content-Type': 'application/json' };
  expect((await owner.request.put('/api/v1/environments/DEV/integrations/Orders', { headers, data: { provider: 'salesforce', objects: ['Account'] } })).status()).toBe(201);
  expect((await owner.request.put('/api/v1/environments/DEV/integrations/Orders/binding', { headers, data: { connection: 'SF_Flow' } })).status()).toBe(200);
  await dev.reload();
  await expect(dev.getByTestId('step-bind')).toHaveAttribute('data-state', 'done');
  await expect(dev.getByTestId('used-by').getByRole('link', { name: 'Orders' })).toBeVisible();
  await owner.context().close();
  await admin.context().close();
  await dev.context().close();
});
