import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { loadCatalogs } from '../src/catalog/load.js';
import { type ConsoleRun, skipConsole, startConsole } from './console-helpers.js';

/**
 * The console's catalog page in real headless Chromium cites as `portolan catalog` does: a
 * document row with what the row says there, an advisory by its vendor page, and the advisories
 * apart from the document entries (never "undefined undefined row undefined").
 */
let run: ConsoleRun | undefined;
after(() => run?.close());

test('console catalog: document rows with their ref, advisories apart with their page', {
  skip: skipConsole,
  timeout: 120_000,
}, async () => {
  run = await startConsole('ptcatalog-');
  const { base } = run;
  const page = await run.newPage({ viewport: { width: 1280, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(base);
  await run.signIn(page);
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
