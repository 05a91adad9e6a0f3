import { test, expect } from '@playwright/test';
import { spawnSync, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { binary, repoRoot, spawnPrinting, startVault, stopAll } from './support';
// jsforce (npm): the Salesforce REST client apps use, pointed at the proxy as if it were the org.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const jsforce = require('jsforce');

// Client libraries from the registries, pointed at connvault's proxy as if it were the system,
// each through an expired token that the proxy renews without the client noticing:
// - jsforce runs a SOQL query against the Salesforce stand-in (`connvault dev-salesforce`);
// - pyodata (SAP's OData client, PyPI) reads and creates business partners on the SAP stand-in
//   (`connvault dev-sap`) with OAuth client credentials, the proxy adding the CSRF token.
// The apps hold only an API key with the proxy grant; no secret or token ever reaches them.

const PORT = 3218;
const SF_PORT = 3219;
const SAP_PORT = 3220;
const BASE = `http://127.0.0.1:${PORT}`;
const SF = `http://127.0.0.1:${SF_PORT}`;
const OWNER = { email: 'owner@example.com', password: 'clients e2e owner password' };
const SF_USER = 'proxy-client@acme.example';
const VENV = process.env.CONNVAULT_VENV ?? path.join(process.env.HOME ?? '/root', '.cache', 'connvault', 'venv');

const children: ChildProcess[] = [];
let adminKey = '';
let appKey = '';
let sap = { service: '', token: '', client: '', secret: '' };

test.describe.configure({ mode: 'serial' });

function apiKey(env: NodeJS.ProcessEnv, name: string, grant: string): string {
  const made = spawnSync(binary, ['api-key', 'create', '--name', name, '--grant', grant], { cwd: repoRoot, env });
  expect(made.status, made.stderr?.toString()).toBe(0);
  return made.stdout.toString().trim();
}

async function api(method: string, p: string, body?: unknown): Promise<any> {
  const r = await fetch(`${BASE}/api/v1/environments/DEV${p}`, {
    method,
    headers: { Authorization: `Bearer ${adminKey}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  expect(r.status, `${method} ${p}: ${text}`).toBeLessThan(300);
  return r.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text;
}

test.beforeAll(async () => {
  await startVault('clients', PORT, OWNER, children, async (env) => {
    await spawnPrinting(['dev-salesforce', '--addr', `127.0.0.1:${SF_PORT}`], env, children, /stand-in/);
    const printed = await spawnPrinting(
      ['dev-sap', '--addr', `127.0.0.1:${SAP_PORT}`],
      env,
      children,
      /service URL: (\S+)\s+token URL: (\S+)[\s\S]*client ID (\S+), client secret (\S+)/,
    );
    sap = { service: printed[1], token: printed[2], client: printed[3], secret: printed[4] };
    adminKey = apiKey(env, 'setup', 'DEV:*:rw');
    appKey = apiKey(env, 'app', 'DEV:proxy:rw');
  });
});

test.afterAll(async () => {
  await stopAll(children);
});

test('jsforce queries Salesforce through the proxy, across an expired session', async () => {
  await api('POST', '/connections', { name: 'SF_Proxy', provider: 'salesforce', settings: { login_url: SF, username: SF_USER } });
  await api('POST', '/connections/SF_Proxy/certificate', {});
  const pem: string = await api('GET', '/connections/SF_Proxy/certificate');
  // The Salesforce admin's part, on the stand-in's setup page: a connected app for the certificate.
  const form = new URLSearchParams({ certificate: pem, username: SF_USER, permitted_users: 'admin_approved' });
  const page = await (await fetch(`${SF}/apps`, { method: 'POST', body: form })).text();
  const consumerKey = /<code id="consumer-key">([^<]+)<\/code>/.exec(page)?.[1];
  expect(consumerKey, page).toBeTruthy();
  await api('PATCH', '/connections/SF_Proxy', { settings: { consumer_key: consumerKey } });
  await api('PUT', '/integrations/Accounts', { provider: 'salesforce', objects: ['Account'] });
  await api('PUT', '/integrations/Accounts/binding', { connection: 'SF_Proxy' });

  // The app's whole configuration: the proxy as the instance, its API key as the session.
  const conn = new jsforce.Connection({ instanceUrl: `${BASE}/proxy/v1/DEV/Accounts`, accessToken: appKey, version: '60.0' });
  const first = await conn.query('SELECT Id, Name FROM Account');
  expect(first.totalSize).toBe(3);
  expect(first.records.map((r: any) => r.Name)).toContain('Edge Communications');

  // Every Salesforce session ends; the app notices nothing.
  expect((await fetch(`${SF}/sessions/expire`, { method: 'POST' })).status).toBe(200);
  const again = await conn.query('SELECT Id, Name, Industry FROM Account LIMIT 2');
  expect(again.totalSize).toBe(2);
  expect(again.records[0].Industry).toBe('Electronics');

  // The token broker's audit shows the second mint; the app never held a token.
  const audit = await (await fetch(`${BASE}/api/v1/audit?environment=DEV&limit=1000`, { headers: { Authorization: `Bearer ${adminKey}` } })).json();
  const mints = audit.items.filter((e: any) => e.action === 'token.mint' && e.outcome === 'success');
  expect(mints.length).toBeGreaterThanOrEqual(2);
});

test('pyodata reads and writes SAP business partners through the proxy, across an expired token', async () => {
  await api('POST', '/connections', {
    name: 'S4_Proxy',
    provider: 'sap_odata',
    settings: { service_url: sap.service, auth: 'oauth_client_credentials', token_url: sap.token, client_id: sap.client },
    secrets: { client_secret: sap.secret },
  });
  await api('PUT', '/integrations/Partners', { provider: 'sap_odata', objects: ['A_BusinessPartner'] });
  await api('PUT', '/integrations/Partners/binding', { connection: 'S4_Proxy' });

  const script = path.join(__dirname, 'pyodata_client.py');
  const expire = `http://127.0.0.1:${SAP_PORT}/stand-in/expire`;
  const run = spawnSync(path.join(VENV, 'bin', 'python'), [script, `${BASE}/proxy/v1/DEV/Partners/`, appKey, expire], { encoding: 'utf8', timeout: 60_000 });
  expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
  const out = JSON.parse(run.stdout.trim().split('\n').pop()!);
  expect(out.before).toBeGreaterThanOrEqual(2);
  expect(out.created).toBe('Proxy Client GmbH');
  expect(out.after).toBe(out.before + 1);
  expect(run.stdout + run.stderr).not.toContain(sap.secret);
});
