import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { Page } from 'playwright-core';
import { type ConsoleRun, skipConsole, startConsole } from './console-helpers.js';
import { ROOT } from './helpers.js';

// The console as a backup admin reads it on a bad day: a site nobody checked, an agent never heard
// from and one gone silent, a flow that failed then passed, two agents that disagree, a site of
// a thousand flows and more, and names written to break the page. Nothing unknown may read as good.

const SHOTS = join(ROOT, 'test-artifacts', 'console-truth');
const LOOPBACK = readFileSync(`${ROOT}examples/lab/loopback.yaml`, 'utf8');
const PLATFORM = 'veeam-proxmox vbr/backup-server vbr/backup-server tcp veeam-platform';
const SSH = 'veeam-proxmox vbr/backup-server flr/flr-appliance tcp ssh';
const EVIL = `<img src=x onerror="window.__pwned=1">'"`;

let run: ConsoleRun | undefined;
after(() => run?.close());

async function shot(page: Page, name: string) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

test('console: unknown is never good news, agents that disagree are shown, a huge site pages, hostile names stay text', {
  skip: skipConsole,
  timeout: 300_000,
}, async () => {
  run = await startConsole('ptctruth-', ['--stale-after', '3s']);
  const { base, admin } = run;
  const api = async (method: string, path: string, body?: unknown, token = admin) => {
    const r = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const json = (await r.json()) as Record<string, unknown>;
    assert.ok(r.ok, `${method} ${path}: ${JSON.stringify(json)}`);
    return json;
  };

  // Sites: one nobody checked, named to break the page; the lab; one of over a thousand flows.
  await api('POST', '/api/sites', {
    yaml: LOOPBACK.replace('site: lab-loopback', `site: ${JSON.stringify(EVIL)}`),
  });
  await api('POST', '/api/sites', { yaml: LOOPBACK });
  const { generateSite } = (await import(`${ROOT}bench/gen-site.mjs`)) as {
    generateSite: (n: number) => string;
  };
  const big = await api('POST', '/api/sites', { yaml: generateSite(500) });
  assert.ok((big.flows as number) > 1000, `${big.flows} flows`);

  // Agents: one never heard from, two on vbr that disagree about one flow, which first failed then
  // passed for one of them.
  await api('POST', '/api/agents', { site: 'lab-loopback', host: 'vbr', name: `never ${EVIL}` });
  const a = await api('POST', '/api/agents', { site: 'lab-loopback', host: 'vbr', name: 'vbr-a' });
  const b = await api('POST', '/api/agents', { site: 'lab-loopback', host: 'vbr', name: 'vbr-b' });
  let t = Date.now() - 60_000;
  const post = (token: unknown, key: string, verdicts: Record<string, string>) => {
    t += 1000;
    return api(
      'POST',
      '/api/agent/results',
      {
        key: key.padEnd(16, '0'),
        version: 1,
        startedAt: new Date(t).toISOString(),
        isolated: false,
        results: Object.entries(verdicts).map(([flowId, verdict]) => ({
          flowId,
          verdict,
          detail: { reason: `${verdict}: ${EVIL}` },
        })),
      },
      token as string,
    );
  };
  await api('POST', '/api/agent/heartbeat', {}, a.token as string);
  await post(a.token, 'truth-a-1', { [PLATFORM]: 'filtered', [SSH]: 'ok' });
  await post(a.token, 'truth-a-2', { [PLATFORM]: 'ok', [SSH]: 'ok' });
  await post(b.token, 'truth-b-1', { [SSH]: 'filtered' });
  const beat = setInterval(
    () => void api('POST', '/api/agent/heartbeat', {}, b.token as string).catch(() => {}),
    500,
  );
  after(() => clearInterval(beat));

  const page = await run.newPage({ viewport: { width: 1280, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('dialog', (d) => {
    errors.push(`dialog: ${d.message()}`);
    void d.dismiss();
  });
  await page.goto(base);
  await page.getByLabel('API token').fill(admin);
  await page.getByRole('button', { name: 'Use token' }).click();
  await page.getByRole('heading', { name: 'Sites' }).waitFor();

  // A site nobody checked counts its flows unchecked, in grey; the hostile name is text.
  const evilRow = page.locator('tr', { has: page.getByRole('link', { name: EVIL }) });
  await evilRow.waitFor();
  assert.equal(await evilRow.locator('td.verdicts').textContent(), '4 unchecked');
  assert.equal(await evilRow.locator('td.verdicts .v-ok').count(), 0);
  assert.equal(await evilRow.locator('td.checked').textContent(), 'never');
  const labRow = page.locator('tr[data-site="lab-loopback"] td.verdicts');
  assert.match((await labRow.textContent()) ?? '', /1 filtered/);
  await shot(page, '1-sites');

  // Agents: never reported is not green; all three as stated.
  await page.goto(`${base}/#/agents`);
  const state = (name: string) =>
    page.locator('tr', { has: page.getByRole('cell', { name, exact: true }) }).locator('td.state');
  await state(`never ${EVIL}`).waitFor();
  assert.match((await state(`never ${EVIL}`).textContent()) ?? '', /^never reported \(enrolled at /);
  assert.doesNotMatch((await state(`never ${EVIL}`).getAttribute('class')) ?? '', /v-ok/);
  assert.match((await state('vbr-b').textContent()) ?? '', /^reporting/);
  // vbr-a goes silent once --stale-after passes with no heartbeat; vbr-b keeps sending them.
  const silent = async () => {
    for (let i = 0; i < 60; i++) {
      await page.goto(`${base}/#/events`);
      await page.goto(`${base}/#/agents`);
      await state('vbr-a').waitFor();
      if (/^silent: no heartbeat since /.test((await state('vbr-a').textContent()) ?? '')) return true;
      await new Promise((r) => setTimeout(r, 500));
    }
    return false;
  };
  assert.ok(await silent(), 'vbr-a is shown silent once its heartbeats stop');
  assert.match((await state('vbr-a').getAttribute('class')) ?? '', /v-bad/);
  await shot(page, '2-agents');

  // The lab's matrix: the flow that failed then passed is ok with a failing mark in its history;
  // the flow the agents disagree about is failing, and says who sees what.
  await page.goto(`${base}/#/site/lab-loopback`);
  const matrix = page.getByRole('table', { name: 'flow matrix' });
  await matrix.locator(`tr[data-flow="${PLATFORM}"]`).waitFor();
  const platform = matrix.locator(`tr[data-flow="${PLATFORM}"]`);
  assert.equal(await platform.locator('td.verdict > span').textContent(), 'ok');
  assert.deepEqual(await platform.locator('.spark i').evaluateAll((is) => is.map((i) => i.className)), [
    'bad',
    'ok',
  ]);
  const ssh = matrix.locator(`tr[data-flow="${SSH}"]`);
  assert.equal(await ssh.locator('td.verdict > span').textContent(), 'filtered');
  assert.equal(await ssh.getByRole('note').textContent(), 'agents disagree: vbr-a ok, vbr-b filtered');
  // The evidence is shown as text, markup and all.
  assert.match((await ssh.locator('td.verdict .reason').first().textContent()) ?? '', /<img src=x onerror=/);
  await shot(page, '3-matrix');

  // The hostile site's own pages.
  await page.goto(`${base}/#/site/${encodeURIComponent(EVIL)}`);
  await page.getByRole('heading', { name: EVIL }).waitFor();
  await page.goto(`${base}/#/events`);
  await page.getByRole('cell', { name: `${EVIL}: version 1 stored (4 flows)` }).waitFor();

  // A site of over a thousand flows: a page of 200 at a time, and the next page works.
  await page.goto(`${base}/#/site/scale-500`);
  const pager = page.getByRole('navigation', { name: 'flow pages' });
  await pager.waitFor({ timeout: 120_000 });
  const total = big.flows as number;
  assert.equal(
    await pager.getByRole('status').textContent(),
    `flows 1-200 of ${total} (page 1 of ${Math.ceil(total / 200)})`,
  );
  assert.equal(await matrix.locator('tbody tr').count(), 200);
  await pager.getByRole('button', { name: 'Next' }).click();
  await pager.getByRole('status').getByText(`flows 201-400 of ${total}`).waitFor();
  // A filter starts again at the first page.
  await page.getByLabel('filter verdict').selectOption('unchecked');
  await pager
    .getByRole('status')
    .getByText(/^flows 1-200 of /)
    .waitFor();
  await shot(page, '4-huge-site');

  assert.equal(await page.evaluate(() => (globalThis as { __pwned?: number }).__pwned), undefined);
  assert.deepEqual(errors, []);
});
