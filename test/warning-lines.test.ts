import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Warning } from '../src/model/flow.js';
import { SHOWN_PER_KIND, warningLines } from '../src/plan/warning-lines.js';
import { ROOT, runCli } from './helpers.js';

const { generateSite } = (await import(join(ROOT, 'bench/gen-site.mjs'))) as {
  generateSite: (n: number) => string;
};

const guest = (host: string): Warning => ({
  code: 'sql-guests-unknown',
  product: 'druva-vmware',
  host,
  message: `druva-vmware: guest ${host} runs Windows but does not give its databases`,
});

describe('warnings on a terminal', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-warnings-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('say a per-host warning in full for the first hosts, then sum up the rest of its kind on one line', () => {
    const hosts = Array.from({ length: 12 }, (_, i) => `vm-${i}`);
    const other: Warning = { code: 'role-without-hosts', message: 'no host has role x:y' };
    const lines = warningLines([other, ...hosts.map(guest)]);
    assert.deepEqual(lines, [
      'no host has role x:y',
      ...hosts.slice(0, SHOWN_PER_KIND).map((h) => guest(h).message),
      `druva-vmware: the same sql-guests-unknown warning for ${12 - SHOWN_PER_KIND} more hosts: vm-3, vm-4, vm-5, vm-6, vm-7, ... (plan --format json lists each)`,
    ]);
  });

  it('sum up hosts named like words of the message, and never take a name inside a longer one', () => {
    const named = ['a', 'e', 's', 'guest', 'vm-1', 'vm-10'].map(guest);
    const lines = warningLines(named);
    // A host named like a word the message also says on its own ("guest guest runs ...") cannot be
    // told from that word: its warning stays whole, after the kind's summary, never merged wrongly.
    assert.deepEqual(lines, [
      ...named.slice(0, SHOWN_PER_KIND).map((w) => w.message),
      'druva-vmware: the same sql-guests-unknown warning for 2 more hosts: vm-1, vm-10 (plan --format json lists each)',
      guest('guest').message,
    ]);
  });

  it('keep every warning when summing up would save no line, and never merge warnings that differ beyond the host', () => {
    const four = ['a1', 'a2', 'a3', 'a4'].map(guest);
    assert.deepEqual(
      warningLines(four),
      four.map((w) => w.message),
    );
    const differ = ['b1', 'b2', 'b3', 'b4', 'b5'].map((h, i) => ({
      ...guest(h),
      message: `${guest(h).message} (${i})`,
    }));
    assert.deepEqual(
      warningLines(differ),
      differ.map((w) => w.message),
    );
    const noHost = Array.from({ length: 6 }, (_, i) => ({ code: 'advisory', message: `advisory ${i}` }));
    assert.deepEqual(
      warningLines(noHost),
      noHost.map((w) => w.message),
    );
  });

  it('plan and export print a few lines where a 2,000-host site has hundreds of per-guest warnings; the JSON keeps each', () => {
    const site = join(dir, 'site.yaml');
    writeFileSync(site, generateSite(2000));
    const json = runCli(['plan', site, '--format', 'json']);
    assert.equal(json.code, 0, json.stderr);
    const perGuest = (JSON.parse(json.stdout) as { warnings: Warning[] }).warnings.filter(
      (w) => w.code === 'sql-guests-unknown',
    );
    assert.ok(perGuest.length > 100, String(perGuest.length));
    for (const run of [json, runCli(['export', site, '--to', 'csv'])]) {
      assert.equal(run.code, 0, run.stderr);
      const said = run.stderr
        .split('\n')
        .filter((l) => l.includes('sql-guests-unknown') || l.includes('does not give its databases'));
      assert.equal(said.length, SHOWN_PER_KIND + 1, said.join('\n'));
      assert.equal(
        said[SHOWN_PER_KIND],
        `warning: druva-vmware: the same sql-guests-unknown warning for ${perGuest.length - SHOWN_PER_KIND} more hosts: ${perGuest
          .slice(SHOWN_PER_KIND, SHOWN_PER_KIND + 5)
          .map((w) => w.host)
          .join(', ')}, ... (plan --format json lists each)`,
      );
    }
  });
});
