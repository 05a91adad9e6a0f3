import { test, expect } from '@playwright/test';
import { type ChildProcess } from 'child_process';
import { fitsWidth, hydrated, PHONE, signedIn, startVault, stopAll } from './support';

// The schedule on the Environments page (owners): how often connections are checked and how
// many days before expiry certificates renew by themselves. A refused value keeps what was
// typed beside the error; a good one is saved and shown after a reload; the row fits a phone.

const PORT = 3260;
const BASE = `http://127.0.0.1:${PORT}`;
const OWNER = { email: 'owner@example.com', password: 'schedule e2e owner password' };
const children: ChildProcess[] = [];

test.describe.configure({ mode: 'serial' });

test.beforeAll(async () => {
  await startVault('schedule', PORT, OWNER, children);
});

test.afterAll(async () => {
  await stopAll(children);
});

test('an owner sets how often QA is checked and when its certificates renew', async ({ browser }) => {
  const page = await signedIn(browser, BASE, OWNER);
  await page.goto('/environments');
  await hydrated(page);
  const check = page.getByLabel('Check connections every').nth(1);
  const renew = page.getByLabel('Renew certificates').nth(1);
  await expect(check).toHaveValue('6');
  await expect(renew).toHaveValue('0');

  // Out of range: the error names the rule, and what was typed stays.
  await check.fill('12');
  await renew.evaluate((el: HTMLInputElement) => {
    el.removeAttribute('max');
    el.value = '400';
  });
  await page.locator('li[data-env="QA"]').getByRole('button', { name: 'Save schedule' }).click();
  await expect(page.getByRole('alert')).toContainText('1 to 90 days before expiry');
  await expect(check).toHaveValue('12');
  await expect(renew).toHaveValue('400');

  await renew.fill('30');
  await page.locator('li[data-env="QA"]').getByRole('button', { name: 'Save schedule' }).click();
  await expect(page.getByRole('alert')).toHaveCount(0);
  await page.reload();
  await expect(page.getByLabel('Check connections every').nth(1)).toHaveValue('12');
  await expect(page.getByLabel('Renew certificates').nth(1)).toHaveValue('30');
  await expect(page.getByLabel('Check connections every').nth(0)).toHaveValue('6', { timeout: 1000 });
  await page.screenshot({ path: 'test-results/environments-1280.png', fullPage: true });

  const phone = await signedIn(browser, BASE, OWNER, PHONE);
  await phone.goto('/environments');
  await fitsWidth(phone);
  await expect(phone.getByLabel('Renew certificates').nth(1)).toBeVisible();
  await phone.screenshot({ path: 'test-results/environments-375.png', fullPage: true });
});
