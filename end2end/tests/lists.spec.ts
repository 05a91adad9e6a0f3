import { test, expect, type Page } from '@playwright/test';
import { spawnSync, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import { binary, hydrated, PHONE, repoRoot, restClient, signedIn, startVault, stopAll, type Vault } from './support';

// Status that tells the truth and lists that scale, on a vault of this file's own: a promoted
// placeholder is amber "Bound · not set up", green only after a passing check; the grid's cells
// link to their next step and each environment says how many things need attention; 220
// connections (seeded through the REST API) with a count, sorting, a status filter and
// Previous/Next; the grid's cells keep their labels at phone width.

const PORT = 3250;
const BASE = `http://127.0.0.1:${PORT}`;
const OWNER = { email: 'owner@example.com', password: 'lists owner password' };
const DEVELOPER = { email: 'dev@example.com', password: 'lists developer password' };

const children: ChildProcess[] = [];
let vault: Vault;
let key = '';

test.describe.configure({ mode: 'serial' });

const api = restClient(BASE, () => key);

function http(name: string, baseUrl: string) {
  return { name, provider: 'http', settings: { base_url: baseUrl, auth: 'bearer' }, secrets: { token: `token-of-${name}` } };
}

test.beforeAll(async () => {
  vault = await startVault('lists', PORT, OWNER, children, async (env) => {
    const made = spawnSync(binary, ['api-key', 'create', '--name', 'seed', '--grant', '*:*:rw'], { cwd: repoRoot, env });
    expect(made.status, made.stderr?.toString()).toBe(0);
    key = made.stdout.toString().trim();
    // Five environments, as many teams have them.
    for (const [name, position] of [['SIT', '2'], ['UAT', '4']]) {
      const added = spawnSync(binary, ['environment', 'add', name, '--position', position], { cwd: repoRoot, env });
      expect(added.status, added.stderr?.toString()).toBe(0);
    }
    // A developer in QA only.
    const dev = spawnSync(binary, ['user', 'create', '--email', DEVELOPER.email], { cwd: repoRoot, env, input: `${DEVELOPER.password}\n` });
    expect(dev.status, dev.stderr?.toString()).toBe(0);
    const role = spawnSync(binary, ['user', 'role', '--email', DEVELOPER.email, '--env', 'QA', '--role', 'developer'], { cwd: repoRoot, env });
    expect(role.status, role.stderr?.toString()).toBe(0);
  });
  // DEV: Ledger answers its check (this server's own /health), Broken does not.
  await api('POST', '/environments/DEV/connections', http('Ledger', `${BASE}/health`));
  await api('POST', '/environments/DEV/connections', http('Broken', 'http://127.0.0.1:9/'));
  for (const [integration, connection] of [['Ledger_Sync', 'Ledger'], ['Broken_Sync', 'Broken']]) {
    await api('PUT', `/environments/DEV/integrations/${integration}`, { provider: 'http', objects: ['Invoice'] });
    await api('PUT', `/environments/DEV/integrations/${integration}/binding`, { connection });
  }
});

test.afterAll(async () => {
  await stopAll(children);
});

function cell(page: Page, integration: string, env: string) {
  return page.locator(`table[data-testid="overview"] tr[data-integration="${integration}"] td[data-env="${env}"]`);
}

test('a promoted placeholder is amber "Bound · not set up"; green comes only after a passing check', async ({ browser }) => {
  // Promote DEV to QA with placeholders: QA's Ledger has a name and a provider, nothing else.
  const bundle = await api('GET', '/environments/DEV/export');
  await api('POST', '/environments/QA/import?mode=apply&create_placeholders=true', bundle);

  const page = await signedIn(browser, BASE, OWNER);
  await page.goto('/integrations');
  await hydrated(page);
  const qa = cell(page, 'Ledger_Sync', 'QA');
  await expect(qa.getByTestId('cell-status')).toHaveText('Bound · not set up');
  await expect(qa).toHaveClass(/status-needs_connection/);
  expect(await qa.evaluate((el) => getComputedStyle(el).backgroundColor)).toBe('rgb(255, 242, 217)');
  await expect(qa.getByTestId('cell-link')).toHaveAttribute('href', '/env/QA/connections/Ledger');
  // Bound and set up, but never checked: not green either.
  const dev = cell(page, 'Ledger_Sync', 'DEV');
  await expect(dev.getByTestId('cell-status')).toHaveText('Bound · not tested');
  await expect(dev).not.toHaveClass(/status-bound/);

  // A passing check turns it green; a failing one red, with since when.
  expect((await api('POST', '/environments/DEV/connections/Ledger/test')).ok).toBe(true);
  expect((await api('POST', '/environments/DEV/connections/Broken/test')).ok).toBe(false);
  await page.reload();
  await expect(dev.getByTestId('cell-status')).toHaveText('Bound');
  await expect(dev).toHaveClass(/status-bound/);
  expect(await dev.evaluate((el) => getComputedStyle(el).backgroundColor)).toBe('rgb(227, 244, 234)');
  const broken = cell(page, 'Broken_Sync', 'DEV');
  await expect(broken.getByTestId('cell-status')).toHaveText('Failing');
  await expect(broken).toContainText(/failing since \d{4}-\d\d-\d\d \d\d:\d\d UTC/);
  await expect(broken.getByTestId('cell-link')).toHaveAttribute('href', '/env/DEV/connections/Broken');
  // A cell needing a connection links to the binding on its environment's page.
  await expect(cell(page, 'Ledger_Sync', 'PROD')).toContainText('not published');

  // Each environment says how many things need attention, linking to the start page's list.
  const header = page.locator('table[data-testid="overview"] thead th[data-env="DEV"]');
  await expect(header.getByTestId('attention-count')).toHaveText('1 thing needs attention');
  await header.getByRole('link', { name: '1 thing needs attention' }).click();
  await expect(page).toHaveURL(`${BASE}/`);
  await expect(page.getByTestId('attention').locator('[data-env="DEV"]')).toContainText('Broken');

  // My integrations says the same, with the next step.
  await page.goto('/env/QA/integrations');
  const row = page.locator('tr[data-integration="Ledger_Sync"]');
  await expect(row.getByTestId('status')).toHaveText('Bound · not set up');
  await expect(row).toContainText('Ledger is not set up yet');
  await row.getByTestId('next-step').click();
  await expect(page).toHaveURL(/\/env\/QA\/connections\/Ledger$/);
  await page.goto('/env/DEV/integrations');
  await expect(page.locator('tr[data-integration="Broken_Sync"]').getByTestId('failing-since')).toContainText('failing since');
  await expect(page.locator('tr[data-integration="Ledger_Sync"]').getByTestId('status')).toHaveText('Bound');

  // The connections list: failing since when, not "tested".
  await page.goto('/env/DEV/connections');
  const brokenRow = page.locator('table[data-testid="connections"] tr', { hasText: 'Broken' });
  await expect(brokenRow.getByTestId('check')).toContainText('Failing');
  await expect(brokenRow.getByTestId('failing-since')).toContainText(/since \d{4}-\d\d-\d\d/);

  // At phone width every grid cell says its environment.
  const phone = await signedIn(browser, BASE, OWNER, PHONE);
  await phone.goto('/integrations');
  await expect(cell(phone, 'Ledger_Sync', 'QA')).toHaveText(/^QA: Bound · not set up/, { useInnerText: true });
  await expect(cell(phone, 'Ledger_Sync', 'PROD')).toHaveText('PROD: not published', { useInnerText: true });
  // The header row is hidden there: its counts come before the cards.
  await expect(phone.getByTestId('attention-summary')).toBeVisible();
  await expect(phone.getByTestId('attention-summary').locator('li').first()).toHaveText('DEV: 1 thing needs attention');
  await phone.screenshot({ path: '/work/notes/shots/lists-grid-375.png', fullPage: true });
  await page.goto('/integrations');
  // At 1280 the header row has the counts; the summary for phones stays hidden.
  await expect(page.getByTestId('attention-summary')).toHaveCount(1);
  await expect(page.getByTestId('attention-summary')).toBeHidden();
  await page.screenshot({ path: '/work/notes/shots/lists-grid-1280.png', fullPage: true });
});

test('220 connections: a count, sorting, a status filter, Previous and Next, compact rows', async ({ browser }) => {
  // Seeded through the REST API, a few at a time.
  const names = Array.from({ length: 220 }, (_, i) => `Svc_${String(i).padStart(3, '0')}`);
  for (let i = 0; i < names.length; i += 20) {
    await Promise.all(names.slice(i, i + 20).map((n) => api('POST', '/environments/PROD/connections', http(n, 'https://svc.example.com/api'))));
  }
  // Three fail their check (their address refuses; loopback is allowed on this server).
  for (const n of ['Svc_150', 'Svc_007', 'Svc_219']) {
    await api('PATCH', `/environments/PROD/connections/${n}`, { settings: { base_url: 'http://127.0.0.1:9/' }, secrets: { token: 'again' } });
    expect((await api('POST', `/environments/PROD/connections/${n}/test`)).ok).toBe(false);
  }

  const page = await signedIn(browser, BASE, OWNER);
  await page.goto('/env/PROD/connections');
  await hydrated(page);
  const rows = page.locator('table[data-testid="connections"] tbody tr');
  await expect(page.getByTestId('count')).toHaveText('1–50 of 220 connections');
  await expect(page.getByTestId('page')).toHaveText('Page 1 of 5');
  await expect(rows).toHaveCount(50);
  await expect(rows.first()).toContainText('Svc_000');
  await expect(rows.first().getByTestId('secrets')).toHaveText('1 secret · set just now');
  // Compact: a row is one line, not a paragraph.
  const height = (await rows.nth(3).boundingBox())!.height;
  expect(height, 'row height').toBeLessThan(48);
  await expect(page.getByRole('link', { name: 'Previous page' })).toHaveCount(0);

  await page.getByRole('link', { name: 'Next page' }).click();
  await expect(page.getByTestId('count')).toHaveText('51–100 of 220 connections');
  await expect(rows.first()).toContainText('Svc_050');
  await page.getByRole('link', { name: 'Next page' }).click();
  await expect(page.getByTestId('page')).toHaveText('Page 3 of 5');
  await page.getByRole('link', { name: 'Previous page' }).click();
  await expect(page.getByTestId('count')).toHaveText('51–100 of 220 connections');
  await expect(rows.first()).toContainText('Svc_050');

  // Sorting by status puts the failing ones first.
  await page.goto('/env/PROD/connections');
  await hydrated(page);
  await page.getByLabel('Sort by').selectOption('status');
  await page.getByRole('button', { name: 'Show' }).click();
  await expect(page).toHaveURL(/sort=status/);
  await expect(rows.nth(0)).toContainText('Svc_007');
  await expect(rows.nth(1)).toContainText('Svc_150');
  await expect(rows.nth(2)).toContainText('Svc_219');
  await expect(rows.nth(3)).toContainText('not tested');
  // By last change: the three changed last come first.
  await page.goto('/env/PROD/connections?sort=changed');
  await expect(rows.nth(0)).toContainText('Svc_219');

  // The status filter: failing, then not tested, with their counts; the next page keeps it.
  await page.goto('/env/PROD/connections');
  await hydrated(page);
  await page.getByLabel('Status').selectOption('failing');
  await page.getByRole('button', { name: 'Show' }).click();
  await expect(page.getByTestId('count')).toHaveText('3 connections');
  await expect(rows).toHaveCount(3);
  await expect(rows.first().getByTestId('failing-since')).toContainText('since');
  await page.goto('/env/PROD/connections?status=not_tested');
  await expect(page.getByTestId('count')).toHaveText('1–50 of 217 connections');
  await page.getByRole('link', { name: 'Next page' }).click();
  await expect(page).toHaveURL(/status=not_tested/);
  await expect(page.getByTestId('count')).toHaveText('51–100 of 217 connections');
  await page.screenshot({ path: '/work/notes/shots/lists-connections-1280.png', fullPage: false });
  const phone = await signedIn(browser, BASE, OWNER, PHONE);
  await phone.goto('/env/PROD/connections?status=failing');
  await phone.screenshot({ path: '/work/notes/shots/lists-connections-375.png', fullPage: true });
});

test('the audit trail reads in words, before → after, links its objects and downloads as CSV', async ({ browser }) => {
  await api('PATCH', '/environments/DEV/connections/Broken', { settings: { base_url: 'http://127.0.0.1:10/' }, secrets: { token: 'again' } });
  const page = await signedIn(browser, BASE, OWNER);
  await page.goto('/audit?environment=DEV');
  await hydrated(page);
  const table = page.locator('table[data-testid="audit"]');
  const changed = table.locator('tr', { hasText: 'Connection changed' }).first();
  await expect(changed.getByTestId('change')).toHaveText('base_url: http://127.0.0.1:9/ → http://127.0.0.1:10/');
  await expect(changed.getByRole('link', { name: 'connection Broken' })).toHaveAttribute('href', '/env/DEV/connections/Broken');
  const bound = table.locator('tr', { hasText: 'Integration bound to a connection' }).first();
  await expect(bound.getByTestId('change')).toHaveText(/^connection: none → (Ledger|Broken)$/);
  await expect(bound.locator('[data-action]')).toHaveAttribute('data-action', 'binding.set');
  // The action filter offers words too.
  await page.getByLabel('Action').selectOption({ label: 'Connection tested' });
  await page.getByRole('button', { name: 'Show' }).click();
  await expect(page).toHaveURL(/action=connection\.test/);
  await expect(table.locator('tbody tr').first()).toContainText('Connection tested');

  // The CSV holds the same events, safe in a spreadsheet.
  await page.goto('/audit?environment=DEV');
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('csv').click()]);
  expect(download.suggestedFilename()).toBe('audit-DEV.csv');
  const csv = fs.readFileSync((await download.path())!, 'utf8');
  expect(csv.split('\r\n')[0]).toBe('id,time_utc,actor,action,what,outcome,environment,object_kind,object,change,client_addr,detail');
  expect(csv).toContain(',connection.update,Connection changed,success,DEV,connection,Broken,base_url: http://127.0.0.1:9/ → http://127.0.0.1:10/,');
  expect(csv).not.toContain('again');
  await page.screenshot({ path: '/work/notes/shots/lists-audit-1280.png', fullPage: false });
  const phone = await signedIn(browser, BASE, OWNER, PHONE);
  await phone.goto('/audit?environment=DEV');
  await phone.screenshot({ path: '/work/notes/shots/lists-audit-375.png', fullPage: false });
});

test("a developer's audit page opens on the environment they can see", async ({ browser }) => {
  const page = await signedIn(browser, BASE, DEVELOPER);
  await page.goto('/audit');
  await expect(page.getByRole('alert')).toHaveCount(0);
  await expect(page.getByLabel('Environment', { exact: true })).toHaveValue('QA');
  await expect(page.locator('table[data-testid="audit"] tr', { hasText: 'Promotion applied' })).toHaveCount(1);
  await expect(page.getByTestId('csv')).toHaveAttribute('href', '/api/v1/audit/export?environment=QA');
});

test('People: every matrix cell is labelled at phone width; Deactivate is in view at 1280 px', async ({ browser }) => {
  const page = await signedIn(browser, BASE, OWNER);
  await page.goto('/users');
  await hydrated(page);
  // Someone invited, with a long address: their row has the most buttons.
  const invited = 'integration.platform.team.lead@subsidiary.example.com';
  await page.getByLabel('Email').fill(invited);
  await page.getByRole('button', { name: 'Invite' }).click();
  await expect(page.getByTestId('once-dialog')).toContainText(invited);
  const row = page.locator(`tr[data-email="${invited}"]`);
  // Scrolled to the row (the page only, never the table sideways): the whole button shows, and
  // the table needs no sideways scrolling.
  await row.evaluate((el) => window.scrollTo(0, el.getBoundingClientRect().top + window.scrollY - 100));
  await expect(row.getByRole('button', { name: 'Deactivate' })).toBeInViewport({ ratio: 1 });
  const wrap = page.locator('.table-wrap').filter({ has: page.locator('table[data-testid="people"]') });
  expect(await wrap.evaluate((el) => el.scrollWidth - el.clientWidth), 'the people table scrolls sideways').toBeLessThanOrEqual(0);
  // At 1280 the header names the columns; the cells' own labels stay hidden.
  await expect(page.locator(`tr[data-email="${DEVELOPER.email}"] td[data-env="QA"] .cell-label`)).toBeHidden();
  await page.screenshot({ path: '/work/notes/shots/lists-people-1280.png', fullPage: false });

  const phone = await signedIn(browser, BASE, OWNER, PHONE);
  await phone.goto('/users');
  const card = phone.locator(`tr[data-email="${DEVELOPER.email}"]`);
  for (const env of ['DEV', 'QA', 'PROD']) {
    await expect(card.locator(`td[data-env="${env}"] .cell-label`)).toBeVisible();
    await expect(card.locator(`td[data-env="${env}"] .cell-label`)).toHaveText(`${env}: `);
  }
  await expect(card.getByLabel(`Role of ${DEVELOPER.email} in QA`)).toHaveValue('developer');
  await expect(card).toContainText('Last sign-in:', { useInnerText: true });
  await expect(card.getByRole('button', { name: 'Deactivate' })).toBeVisible();
  await phone.screenshot({ path: '/work/notes/shots/lists-people-375.png', fullPage: true });
});

test('revoking a key takes its typed name; rotating gives a working key and the old one is refused', async ({ browser }) => {
  const page = await signedIn(browser, BASE, OWNER);
  await page.goto('/api-keys');
  await hydrated(page);
  await page.getByLabel('Name', { exact: true }).fill('billing app');
  await page.getByLabel('DEV', { exact: true }).check();
  await page.getByLabel('connections', { exact: true }).selectOption('read');
  await page.getByRole('button', { name: 'Create key' }).click();
  const first = await page.getByTestId('once-dialog').getByTestId('once-value').inputValue();
  const calls = async (value: string) =>
    (await fetch(`${BASE}/api/v1/environments/DEV/connections`, { headers: { Authorization: `Bearer ${value}` } })).status;
  expect(await calls(first)).toBe(200);

  // Rotate: a new key of the same name and grants, shown once; the old one stops at once.
  const keyRow = () => page.locator('table[data-testid="keys"] tbody tr', { hasText: 'billing app' }).filter({ hasNot: page.locator('.muted-tag') });
  await keyRow().getByRole('button', { name: 'Rotate' }).click();
  const dialog = page.getByTestId('once-dialog').filter({ hasText: 'The new key' });
  await expect(dialog).toContainText('billing app');
  const second = await dialog.getByTestId('once-value').inputValue();
  expect(second).toMatch(/^cvk_/);
  expect(second).not.toBe(first);
  expect(await calls(second)).toBe(200);
  expect(await calls(first)).toBe(401);
  await expect(keyRow()).toHaveCount(1);
  await expect(keyRow()).toContainText('DEV connections read');
  await expect(page.locator('table[data-testid="keys"] tbody tr', { hasText: 'billing app' }).filter({ hasText: 'revoked' })).toHaveCount(1);
  await page.screenshot({ path: '/work/notes/shots/lists-keys-1280.png', fullPage: true });

  // Revoke: one click does nothing; a wrong name is refused; the typed name revokes.
  await keyRow().getByText('Revoke…').click();
  const confirm = keyRow().getByLabel(/to revoke it/);
  await confirm.fill('billing');
  await keyRow().getByRole('button', { name: 'Revoke' }).click();
  await expect(page.getByRole('alert')).toContainText("type the key's name, billing app, to revoke it");
  expect(await calls(second)).toBe(200);
  await keyRow().getByLabel(/to revoke it/).fill('billing app');
  await keyRow().getByRole('button', { name: 'Revoke' }).click();
  await expect(page.locator('table[data-testid="keys"] tbody tr', { hasText: 'billing app' }).filter({ hasText: 'revoked' })).toHaveCount(2);
  expect(await calls(second)).toBe(401);
  const phone = await signedIn(browser, BASE, OWNER, PHONE);
  await phone.goto('/api-keys');
  await phone.screenshot({ path: '/work/notes/shots/lists-keys-375.png', fullPage: true });
});
