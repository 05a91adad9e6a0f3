import { defineConfig } from '@playwright/test';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

// Browser tests for connvault, run against the debug build in ../target
// (build it first: `scripts/build.sh`, or `make e2e`).
//
// The browser is the system Chromium (Debian package `chromium`); Playwright's
// own browser downloads are never used (`playwright install` is not needed).
//
// The server gets a fresh, empty data directory. The Playwright runner and its
// worker processes each load this file; workers inherit the runner's
// environment, so the directory is created once (or taken from
// CONNVAULT_E2E_DATA_DIR when scripts/test.sh already made one) and every
// process sees the same path.
const dataDir =
  process.env.CONNVAULT_E2E_DATA_DIR ||
  fs.mkdtempSync(path.join(os.tmpdir(), 'connvault-e2e-'));
process.env.CONNVAULT_E2E_DATA_DIR = dataDir;

const repoRoot = path.resolve(__dirname, '..');
// CONNVAULT_E2E_PORT moves it (several worktrees on one machine).
const port = Number(process.env.CONNVAULT_E2E_PORT || 3210);
const baseURL = `http://127.0.0.1:${port}`;

// A known value that must never reach the browser (or the data dir in clear);
// tests/foundation.spec.ts checks for the same string.
const E2E_SECRET = 'e2e-marker-secret-7f3a9c';

const binary = './target/debug/connvault';

// One connection is seeded with the CLI before the server starts (the
// webServer starts before any globalSetup would run, so seeding is done here).
// `--secret token=-` makes the CLI read the secret's value from stdin.
// Accounts: an owner, and a developer with a role in DEV only (passwords from stdin).
const seedAndServe = [
  `printf '%s\\n' "$E2E_OWNER_PASSWORD" | ${binary} user create --email owner@example.com --owner`,
  `printf '%s\\n' "$E2E_DEV_PASSWORD" | ${binary} user create --email dev@example.com`,
  `${binary} user role --email dev@example.com --env DEV --role developer`,
  `printf %s "$E2E_SECRET" | ${binary} connection create` +
    ' --env DEV --name Billing_API --provider http' +
    ' --setting base_url=https://billing.example.com/v1' +
    ' --setting auth=bearer' +
    ' --secret token=-',
  `exec ${binary} serve`,
].join(' && ');

export default defineConfig({
  testDir: './tests',
  // Each spec file runs in order inside one worker; two files run at once. Every file but
  // foundation.spec.ts starts a server of its own on its own port and data folder, so files
  // share nothing (the Playwright run took 2 minutes with one worker).
  fullyParallel: false,
  forbidOnly: !!process.env.CI,
  workers: 2,
  retries: 0,
  // list for people; the JSON report feeds end2end/failures.js, the digest at the end of make test.
  reporter: [['list'], ['json', { outputFile: 'test-results/results.json' }]],
  timeout: 30_000,
  expect: { timeout: 10_000 },
  use: {
    baseURL,
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
  },
  projects: [
    {
      name: 'chromium',
      use: {
        browserName: 'chromium',
        launchOptions: {
          executablePath: '/usr/bin/chromium',
          args: [
            '--no-sandbox',
            '--disable-gpu',
            '--disable-background-networking',
            '--disable-component-update',
            '--disable-sync',
          ],
        },
      },
    },
  ],
  webServer: {
    command: seedAndServe,
    cwd: repoRoot,
    env: {
      LEPTOS_SITE_ROOT: 'target/site',
      LEPTOS_SITE_PKG_DIR: 'pkg',
      LEPTOS_OUTPUT_NAME: 'connvault',
      LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
      CONNVAULT_DATA_DIR: dataDir,
      CONNVAULT_ALLOW_LOOPBACK: '1',
      RUST_LOG: 'info',
      E2E_SECRET,
      E2E_OWNER_PASSWORD: 'owner password for e2e',
      E2E_DEV_PASSWORD: 'developer password for e2e',
    },
    url: `${baseURL}/health`,
    reuseExistingServer: false,
    timeout: 120_000,
    stdout: 'pipe',
    stderr: 'pipe',
    gracefulShutdown: { signal: 'SIGTERM', timeout: 5_000 },
  },
});
