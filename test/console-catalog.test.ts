import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { type Browser, chromium } from 'playwright-core';
import { loadCatalogs } from '../src/catalog/load.js';
import { BIN } from './helpers.js';

/**
 * The console's catalog page in real headless Chromium cites as `portolan catalog` does: a
 * document row with what the row says there, an advisory by its vendor page, and the advisories
 * apart from the document entries (never "undefined undefined row undefined").
 */
const CHROMIUM = '/usr/bin/chromium';

let server: ChildProcess | undefined;
let browser: Browser | undefined;
const dir = mkdtempSync(join(tmpdir(), 'ptcatalog-'));
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

test('console catalog: document rows with their ref, advisories apart with their page', {
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
  const admin = readFileSync(join(dir, 'admin'), 'utf8').trim();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  });
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(base);
  await page.getByLabel('API token').fill(admin);
  await page.getByRole('button', { name: 'Use token' }).click();
  await page.getByRole('heading', { name: 'Sites' }).waitFor();
  await page.goto(`${base}/#/catalog`);
  const entries = page.getByRole('table', { name: 'druva-vmware entries' });
  const advisories = page.getByRole('table', { name: 'druva-vmware advisories' });
  await entries.locator('tbody tr').first().waitFor();
  const cat = loadCatalogs();
  for (const [product, c] of cat) {
    const docs = c.entries.filter((e) => e.basis !== 'advisory').length;
    const advs = c.entries.length - docs;
    assert.equal(
      await page
        .getByRole('table', { name: `${product} entries` })
        .locator('tbody tr')
        .count(),
      docs,
      product,
    );
    assert.equal(
      await page
        .getByRole('table', { name: `${product} advisories` })
        .locator('tbody tr')
        .count(),
      advs,
      product,
    );
  }
  const text = (await page.locator('main').textContent()) ?? '';
  assert.doesNotMatch(text, /undefined/, 'every citation has its parts');
  // 001 ports row 1 (the standalone-ESXi note) is cited with what the row says there.
  const standalone = entries.locator('tr[data-entry="proxy-to-esxi-https-standalone"]');
  assert.match(
    (await standalone.textContent()) ?? '',
    /001_2091beaa97dc5a7a\.txt ports row 1: note: 443 to ESXi only if registered as Standalone ESXi/,
  );
  assert.match((await standalone.textContent()) ?? '', /^backup-proxy\s*esxi\s*tcp 443/);
  // An advisory: its page, and not among the document entries.
  const nfc = advisories.locator('tr[data-entry="proxy-to-standalone-esxi-nfc"]');
  assert.match(
    (await nfc.textContent()) ?? '',
    /Firewall rules for protecting Enterprise Workloads <https:\/\/help\.druva\.com\/[^>]+> \(read 2026-11-30\)/,
  );
  assert.equal(await entries.locator('tr[data-entry="proxy-to-standalone-esxi-nfc"]').count(), 0);
  // Peers and per-drive ports as `portolan catalog` prints them.
  assert.match(
    (await entries.locator('tr[data-entry="incoming-ssh-to-proxy"]').textContent()) ?? '',
    /^any \(peers sending incoming requests/,
  );
  assert.match(
    (await page
      .getByRole('table', { name: 'platespin entries' })
      .locator('tr[data-entry="legacy-source-to-target-drive-mirror"]')
      .textContent()) ?? '',
    /tcp 10000\+drive\(A\.\.Z\)/,
  );
  assert.deepEqual(errors, []);
});
