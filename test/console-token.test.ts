import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { type Browser, chromium } from 'playwright-core';
import { BIN } from './helpers.js';

/**
 * The console before a token is pasted, and with a token the server refuses, in real headless
 * Chromium: it says in its own words what to paste and where a token comes from, never the API's
 * raw "send Authorization: Bearer" message.
 */
const CHROMIUM = '/usr/bin/chromium';

let server: ChildProcess | undefined;
let browser: Browser | undefined;
const dir = mkdtempSync(join(tmpdir(), 'pttoken-'));
after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

test('console without a token, and with a refused one: what to paste, in the console words', {
  skip: existsSync(CHROMIUM) ? false : 'Debian chromium not installed',
  timeout: 120_000,
}, async () => {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  server = spawn(
    process.execPath,
    [
      BIN,
      'serve',
      '--db',
      join(dir, 'store.db'),
      '--listen',
      `127.0.0.1:${port}`,
      '--no-examples',
      '--token-file',
      join(dir, 'admin'),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve) => {
    let out = '';
    server?.stdout?.on('data', (b) => {
      out += String(b);
      if (out.includes('portolan serve: http')) resolve();
    });
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  });
  const page = await (await browser.newContext()).newPage();
  for (const route of ['#/', '#/agents', '#/events', '#/catalog']) {
    await page.goto(`${base}/${route}`);
    await page.getByText('No token yet: paste one in the API token box above.').first().waitFor();
    const text = (await page.locator('main').textContent()) ?? '';
    assert.doesNotMatch(text, /missing token|Authorization: Bearer/, `${route}: ${text}`);
    assert.match(text, /admin token: written to FILE/, route);
    assert.match(text, /POST \/api\/tokens \{"kind":"viewer"\}/, route);
  }
  await page.goto(`${base}/#/`);
  await page.getByLabel('API token').fill('not-a-token');
  await page.getByRole('button', { name: 'Use token' }).click();
  await page.getByText('The server does not accept this token (mistyped, or revoked)').first().waitFor();
  assert.doesNotMatch((await page.locator('main').textContent()) ?? '', /unknown token/);
  // The admin token works as before.
  await page.getByLabel('API token').fill(readFileSync(join(dir, 'admin'), 'utf8').trim());
  await page.getByRole('button', { name: 'Use token' }).click();
  await page.getByRole('heading', { name: 'Sites' }).waitFor();
  assert.doesNotMatch((await page.locator('main').textContent()) ?? '', /token/i);
});
