import { test, expect } from '@playwright/test';
import { spawnSync, type ChildProcess } from 'child_process';
import { binary, hydrated, repoRoot, restClient, signedIn, startVault, stopAll } from './support';

// Promotion leaves each environment's settings alone, in the browser: DEV's Salesforce
// connection reaches QA as a placeholder (a name and a provider, nothing of DEV's login URL,
// user or consumer key); once QA has its own consumer key, the next DEV → QA plan says
// "Unchanged" for it (no conflict, nothing to overwrite, nothing to apply) and QA keeps its own.

const PORT = 3262;
const BASE = `http://127.0.0.1:${PORT}`;
const OWNER = { email: 'owner@example.com', password: 'promotion e2e owner password' };
const children: ChildProcess[] = [];
let key = '';

test.describe.configure({ mode: 'serial' });

const api = restClient(BASE, () => key);

test.beforeAll(async () => {
  await startVault('promotion', PORT, OWNER, children, async (env) => {
    const made = spawnSync(binary, ['api-key', 'create', '--name', 'seed', '--grant', '*:*:rw'], { cwd: repoRoot, env });
    expect(made.status, made.stderr?.toString()).toBe(0);
    key = made.stdout.toString().trim();
  });
  const settings = { login_url: 'https://login.salesforce.com', username: 'int@dev.acme.com', consumer_key: '3MVG9-DEV-key', admin_email: 'sf-admin@acme.com' };
  await api('POST', '/environments/DEV/connections', { name: 'SF_Main', provider: 'salesforce', settings });
  await api('PUT', '/environments/DEV/integrations/Accounts', { provider: 'salesforce', objects: ['Account'] });
  await api('PUT', '/environments/DEV/integrations/Accounts/binding', { connection: 'SF_Main' });
});

test.afterAll(async () => {
  await stopAll(children);
});

test('a promotion into an environment with its own consumer key plans "Unchanged" and carries nothing', async ({ browser }) => {
  const page = await signedIn(browser, BASE, OWNER);
  const promote = async (placeholders: boolean) => {
    await page.goto('/promote');
    await hydrated(page);
    await expect(page.getByLabel('To', { exact: true })).toHaveValue('QA');
    if (placeholders) {
      await page.getByLabel(/Create the connections the target lacks/).check();
    }
    await page.getByRole('button', { name: 'Show plan' }).click();
    await expect(page.getByTestId('plan')).toBeVisible();
  };

  // The first promotion makes QA's placeholder: nothing of DEV's own settings.
  await promote(true);
  await page.getByRole('button', { name: 'Apply' }).click();
  await expect(page.getByTestId('promote-result')).toContainText('Promoted DEV → QA');
  const placeholder = await api('GET', '/environments/QA/connections/SF_Main');
  for (const own of ['login_url', 'username', 'consumer_key', 'admin_email']) {
    expect(placeholder.settings[own], `${own} came from DEV`).toBeUndefined();
  }

  // QA gets its own org, user and consumer key; DEV changes its consumer key meanwhile.
  await api('PATCH', '/environments/QA/connections/SF_Main', { settings: { login_url: 'https://test.salesforce.com', username: 'int@qa.acme.com', consumer_key: '3MVG9-QA-key' } });
  await api('PATCH', '/environments/DEV/connections/SF_Main', { settings: { consumer_key: '3MVG9-DEV-key-2' } });

  await promote(true);
  const row = page.getByTestId('plan').getByRole('row', { name: /connection SF_Main/ });
  await expect(row).toContainText('Unchanged');
  await expect(page.getByTestId('plan')).not.toContainText('Conflict');
  await expect(page.getByTestId('plan')).not.toContainText('3MVG9');
  // Nothing to change, so nothing to apply.
  await expect(page.getByRole('status').filter({ hasText: 'Plan for DEV → QA' })).toContainText('0 to create, 0 to update, 3 unchanged, 0 conflicts');
  await expect(page.getByRole('button', { name: 'Apply' })).toHaveCount(0);
  const qa = await api('GET', '/environments/QA/connections/SF_Main');
  expect([qa.settings.login_url, qa.settings.username, qa.settings.consumer_key]).toEqual(['https://test.salesforce.com', 'int@qa.acme.com', '3MVG9-QA-key']);
});
