import { expect, type Browser, type Page } from '@playwright/test';
import { spawn, spawnSync, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

// What the specs that start servers of their own share.

export const repoRoot = path.resolve(__dirname, '..', '..');
/** The debug build the Rust tests made (run from `repoRoot`). */
export const binary = './target/debug/connvault';

export interface Account {
  email: string;
  password: string;
}

/** A vault of one spec file's own. */
export interface Vault {
  base: string;
  dataDir: string;
  /** The server's environment, for stand-ins and CLI calls that share its data folder. */
  env: NodeJS.ProcessEnv;
}

/**
 * A vault of its own for one spec file: a fresh data folder, an owner account, and
 * `connvault serve` on 127.0.0.1:`port` (its log in the data folder; the path is printed, for
 * when a test fails). `before` starts what the server relies on (a stand-in) with the same
 * environment, before the server. Every process goes into `children`, for `stopAll`.
 */
export async function startVault(
  name: string,
  port: number,
  owner: Account,
  children: ChildProcess[],
  before?: (env: NodeJS.ProcessEnv) => Promise<void>,
): Promise<Vault> {
  const base = `http://127.0.0.1:${port}`;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `connvault-${name}-`));
  const env = {
    ...process.env,
    LEPTOS_SITE_ROOT: 'target/site',
    LEPTOS_SITE_PKG_DIR: 'pkg',
    LEPTOS_OUTPUT_NAME: 'connvault',
    LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
    CONNVAULT_DATA_DIR: dataDir,
    CONNVAULT_PUBLIC_URL: base,
    CONNVAULT_ALLOW_LOOPBACK: '1',
    RUST_LOG: 'info,tower_http=debug',
  };
  const created = spawnSync(binary, ['user', 'create', '--email', owner.email, '--owner'], { cwd: repoRoot, env, input: `${owner.password}\n` });
  expect(created.status, created.stderr?.toString()).toBe(0);
  if (before) await before(env);
  const logPath = path.join(dataDir, 'serve.log');
  const log = fs.openSync(logPath, 'w');
  console.log(`${name} e2e: server log in ${logPath}`);
  children.push(spawn(binary, ['serve'], { cwd: repoRoot, env, stdio: ['ignore', log, log] }));
  await healthy(`${base}/health`);
  return { base, dataDir, env };
}

/**
 * Starts `connvault ARGS` (a stand-in) with `env`, adds it to `children`, and waits up to 30 s
 * for its standard output to match `pattern`: the match (what it printed, e.g. a URL or a token).
 */
export async function spawnPrinting(args: string[], env: NodeJS.ProcessEnv, children: ChildProcess[], pattern: RegExp): Promise<RegExpMatchArray> {
  const child = spawn(binary, args, { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return await new Promise<RegExpMatchArray>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`connvault ${args[0]} printed nothing matching ${pattern}: ${out}`)), 30_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = out.match(pattern);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
  });
}

/**
 * Fills in the new-connection form for a Salesforce connection (JWT flow) whose login URL is
 * `loginUrl` (a stand-in: "My Domain or another URL…"), and creates it.
 */
export async function createSalesforce(page: Page, name: string, loginUrl: string, username: string, adminEmail: string) {
  await page.locator('#f-name').fill(name);
  await page.locator('#f-provider').selectOption('salesforce');
  await page.locator('#f-login_url-choice').selectOption({ label: 'My Domain or another URL…' });
  await page.locator('#f-login_url').fill(loginUrl);
  await page.locator('#f-username').fill(username);
  await page.locator('#f-admin_email').fill(adminEmail);
  await page.getByRole('button', { name: 'Create connection' }).click();
  await expect(page).toHaveURL(new RegExp(`/env/[^/]+/connections/${name}`));
  await hydrated(page);
}

/** A phone's width, as the browser-experience checks use it. */
export const PHONE = { width: 375, height: 812 };

/** A new browser context on `base` (at `viewport`, else the default 1280 × 720), signed in as `who`. */
export async function signedIn(browser: Browser, base: string, who: Account, viewport?: { width: number; height: number }): Promise<Page> {
  const page = await (await browser.newContext({ baseURL: base, ...(viewport ? { viewport } : {}) })).newPage();
  await page.goto('/sign-in');
  await hydrated(page);
  await page.getByLabel('Email').fill(who.email);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).not.toHaveURL(/sign-in/);
  return page;
}

/** Waits until `url` answers 2xx (30 s at most). */
export async function healthy(url: string) {
  for (let i = 0; i < 150; i++) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} never answered`);
}

/** Stops the processes and waits until they are gone, so their ports are free again. */
export async function stopAll(children: ChildProcess[]) {
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          const hard = setTimeout(() => c.kill('SIGKILL'), 15_000);
          c.once('exit', () => {
            clearTimeout(hard);
            resolve();
          });
          c.kill('SIGTERM');
        }),
    ),
  );
}

/** The page's WebAssembly has taken over (the app sets `data-hydrated` on the body). */
export async function hydrated(page: Page) {
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
}

/**
 * Nothing on the page reaches past the viewport's right edge, so it reads without sideways
 * scrolling (at phone width): the elements that do are named. Content inside a container that
 * scrolls or clips on its own (a wide table in its wrapper) is left to that container.
 */
export async function fitsWidth(page: Page) {
  const { width, scroll, wide } = await page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const contained = (e: Element) => {
      for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
        if (['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(p).overflowX)) return true;
      }
      return false;
    };
    const wide = [...document.querySelectorAll('body *')]
      .filter((e) => {
        const r = e.getBoundingClientRect();
        return r.width > 0 && r.height > 0 && r.right > width + 1 && !contained(e);
      })
      .slice(0, 5)
      .map((e) => `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}${e.className ? '.' + String(e.className).split(' ').join('.') : ''} (right edge ${Math.round(e.getBoundingClientRect().right)}px)`);
    return { width, scroll: document.documentElement.scrollWidth, wide };
  });
  expect(wide, `elements reaching past the ${width}px viewport`).toEqual([]);
  expect(scroll, 'the page scrolls sideways').toBeLessThanOrEqual(width);
}

/**
 * A caller of the REST API (`/api/v1`) with the API key `key()` gives (read when called, so a
 * key made in `beforeAll` works): `(method, path, body?)` expects a 2xx and returns the JSON.
 */
export function restClient(base: string, key: () => string) {
  return async (method: string, p: string, body?: unknown): Promise<any> => {
    const r = await fetch(`${base}/api/v1${p}`, {
      method,
      headers: { Authorization: `Bearer ${key()}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    expect(r.status, `${method} ${p}: ${text}`).toBeLessThan(300);
    return text ? JSON.parse(text) : null;
  };
}
