/**
 * Sites the size of real estates (issue 14): the inventory size limit is an option, plan json and csv
 * are written flow by flow, a plan too large for memory is a clear exit-2 error, a multi-file export
 * without -o DIR is refused before the inventory is read, and a one-host plan is the whole plan's
 * flows of that host. No assertion here depends on timing.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse as parseCsv } from 'csv-parse/sync';
import { loadSite } from '../src/inventory/load.js';
import { planCsvChunks, planJson, planJsonChunks } from '../src/plan/format.js';
import { buildPlan } from '../src/plan/plan.js';
import { BIN, cliEnv, ROOT, runCli } from './helpers.js';

/** A site whose plan is every backup proxy to every guest: far more flows than its file suggests. */
function crossSite(proxies: number, guests: number): string {
  const lines = [
    'site: cross',
    'products:',
    '  druva-vmware: { features: [app-aware-sql, dr-restore] }',
    'hosts:',
    '  vc: { address: 10.0.0.10, roles: [druva-vmware:vcenter] }',
  ];
  for (let i = 0; i < proxies; i++)
    lines.push(`  proxy-${i}: { address: 10.1.0.${i + 1}, roles: [druva-vmware:backup-proxy] }`);
  for (let i = 0; i < guests; i++)
    lines.push(
      `  vm-${i}: { address: 10.2.${i >> 8}.${i & 255}, roles: [druva-vmware:guest], facts: { os: linux } }`,
    );
  return `${lines.join('\n')}\n`;
}

describe('scale', () => {
  let dir = '';
  let small = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'portolan-scale-'));
    small = join(dir, 'site-300.yaml');
    writeFileSync(small, execFileSync(process.execPath, [join(ROOT, 'bench/gen-site.mjs'), '300']));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('the inventory size limit is --max-inventory-size, or PORTOLAN_MAX_INVENTORY_SIZE, and names itself', () => {
    const bytes = readFileSync(small).length;
    const ok = runCli(['validate', small]);
    assert.equal(ok.code, 0, ok.stderr);
    const r = runCli(['validate', small, '--max-inventory-size', '1KiB']);
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      `portolan: ${small}: the inventory is ${bytes} bytes; the limit is 1024 bytes (1 KiB); raise it with --max-inventory-size SIZE or PORTOLAN_MAX_INVENTORY_SIZE=SIZE (e.g. 128MiB)\n`,
    );
    const env = runCli(['plan', small, '--format', 'json'], { env: { PORTOLAN_MAX_INVENTORY_SIZE: '2000' } });
    assert.equal(env.code, 2);
    assert.match(env.stderr, /the limit is 2000 bytes \(2\.0 KiB\); raise it with --max-inventory-size/);
    // The option wins over the environment.
    const both = runCli(['plan', small, '--format', 'csv', '--max-inventory-size', '1MiB'], {
      env: { PORTOLAN_MAX_INVENTORY_SIZE: '2000' },
    });
    assert.equal(both.code, 0, both.stderr);
    const bad = runCli(['export', small, '--to', 'nftables', '--max-inventory-size', 'lots']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^portolan: --max-inventory-size "lots" is not a size from 1 byte to 256 MiB/);
  });

  test('every command that reads an inventory takes the --max-inventory-size its limit error names', () => {
    const site = join(ROOT, 'examples/lab/loopback.yaml');
    const commands = [
      ['plan', site],
      ['export', site, '--to', 'nftables'],
      ['validate', site],
      ['check', site, '--from', 'vbr'],
      ['listen', site, '--host', 'pve', '--ttl', '1s'],
      // lab up checks for root before it reads the inventory.
      ...(process.getuid?.() === 0 ? [['lab', 'up', site, '--name', 'never-up']] : []),
    ];
    for (const args of commands) {
      const r = runCli([...args, '--max-inventory-size', '64']);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(
        r.stderr,
        /^portolan: \S+loopback\.yaml: the inventory is \d+ bytes; the limit is 64 bytes; raise it with --max-inventory-size SIZE/,
        args.join(' '),
      );
    }
  });

  test('the sizes a refused --max-inventory-size gives as examples are taken', () => {
    const r = runCli(['validate', small, '--max-inventory-size', '1GiB']);
    assert.equal(r.code, 2);
    const examples = /e\.g\. ([^)]+)\)/.exec(r.stderr)?.[1]?.split(', ') ?? [];
    assert.ok(examples.length >= 2, r.stderr);
    for (const size of examples) {
      const ok = runCli(['validate', small, '--max-inventory-size', size]);
      assert.equal(ok.code, 0, `--max-inventory-size ${size}: ${ok.stderr}`);
    }
  });

  test('validate locates its warnings from its one read: a large file, a pipe', () => {
    // A 5 MiB inventory (a long comment, under the 64 MiB default) and the same site through a
    // pipe: the fact warnings are located without reading the file a second time.
    const big = join(dir, 'site-300-big.yaml');
    writeFileSync(big, `${readFileSync(small, 'utf8')}# ${'x'.repeat(5 * 1024 * 1024)}\n`);
    const r = runCli(['validate', big]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /site-300-big\.yaml:\d+:3 hosts\.landing-0: warning: host landing-0 gets fewer flows/,
    );
    assert.match(r.stdout, /site-300-big\.yaml: ok \(site scale-300: /);
    const piped = spawnSync('bash', ['-c', `"$0" "$1" validate <(cat "$2")`, process.execPath, BIN, small], {
      encoding: 'utf8',
    });
    assert.equal(piped.status, 0, piped.stderr);
    assert.match(
      piped.stderr,
      /^\/dev\/fd\/\d+:\d+:3 hosts\.landing-0: warning: host landing-0 gets fewer flows/m,
    );
    assert.match(piped.stdout, /: ok \(site scale-300: /);
  });

  test('an endless input stops at the limit, with the option named; /dev/zero at its first NUL byte', {
    timeout: 120_000,
  }, () => {
    // Endless text without a NUL byte (yes): read up to the limit, then refused.
    const r = spawnSync(
      'sh',
      ['-c', `yes '# filler' | "${process.execPath}" "${BIN}" plan - --max-inventory-size 3MiB`],
      { encoding: 'utf8', env: cliEnv(), timeout: 110_000 },
    );
    assert.equal(r.status, 2, r.stderr);
    assert.equal(
      r.stderr,
      'portolan: -: the inventory is more than 3145728 bytes; the limit is 3145728 bytes (3 MiB); raise it with --max-inventory-size SIZE or PORTOLAN_MAX_INVENTORY_SIZE=SIZE (e.g. 128MiB)\n',
    );
    const zero = runCli(['plan', '/dev/zero', '--max-inventory-size', '3MiB']);
    assert.equal(zero.code, 2);
    assert.equal(
      zero.stderr,
      'portolan: /dev/zero:1:1: the inventory contains a NUL byte (expected YAML text)\n',
    );
  });

  test('plan --format json is written piece by piece and parses to the plan', { timeout: 300_000 }, () => {
    const site = loadSite(small);
    const plan = buildPlan(site.inventory, site.catalogs);
    const chunks = [...planJsonChunks(plan)];
    // No piece holds more than one flow: the text as a whole is never one string.
    const largestFlow = Math.max(...plan.flows.map((f) => JSON.stringify(f, null, 2).length));
    assert.ok(plan.flows.length > 500, `${plan.flows.length} flows`);
    assert.ok(chunks.length >= plan.flows.length + plan.warnings.length);
    for (const c of chunks) assert.ok(c.length <= 2 * largestFlow + 200, `a piece of ${c.length} chars`);
    const r = runCli(['plan', small, '--format', 'json'], {});
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, planJson(plan));
    const parsed = JSON.parse(r.stdout);
    assert.deepEqual(
      parsed,
      JSON.parse(JSON.stringify({ site: plan.site, flows: plan.flows, warnings: plan.warnings })),
    );
    assert.match(r.stderr, new RegExp(`: \\d+ hosts, ${plan.flows.length} flows`));
  });

  test('plan --format csv is written line by line: one record per flow', { timeout: 300_000 }, () => {
    const site = loadSite(small);
    const plan = buildPlan(site.inventory, site.catalogs);
    const r = runCli(['plan', small, '--format', 'csv']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, [...planCsvChunks(plan)].join(''));
    const records = parseCsv(r.stdout) as string[][];
    assert.equal(records.length, plan.flows.length + 1);
    assert.equal(records[0]?.[0], 'product');
    for (const [i, f] of plan.flows.entries()) assert.equal(records[i + 1]?.[7], f.service);
  });

  test('a plan too large for memory is refused with its size, exit 2, never an abort', {
    timeout: 600_000,
  }, () => {
    // 900,000 flows: more than twice what fits in 60% of a 96 MiB heap.
    const file = join(dir, 'cross.yaml');
    writeFileSync(file, crossSite(100, 9000));
    const r = runCli(['plan', file, '--format', 'json'], {
      env: { NODE_OPTIONS: '--max-old-space-size=96' },
    });
    assert.equal(r.code, 2, r.stderr.slice(-500));
    assert.equal(r.stdout, '');
    assert.match(
      r.stderr,
      /^portolan: .*cross\.yaml: the plan is too large for memory: \d+ flows planned so far fill \d+ MiB of the \d+ MiB this process may use, and the site has more \(plan one host with export --host NAME/m,
    );
  });

  test('a multi-file export without -o DIR is refused before the inventory is read', () => {
    // The inventory does not exist: only a check made before reading it can answer about -o.
    for (const [format, what] of [
      ['aws', 'aws.tf.json, aws.cfn.json'],
      ['ufw', 'an application profile and a script'],
      ['firewalld', 'a script and one services/NAME.xml per application'],
    ] as const)
      assert.deepEqual(runCli(['export', join(dir, 'absent.yaml'), '--to', format]), {
        code: 2,
        stdout: '',
        stderr: `portolan: --to ${format} writes several files (${what}); give -o DIR\n`,
      });
    // A site whose plan would not fit in 96 MiB: refused for -o, not planned.
    const file = join(dir, 'cross-o.yaml');
    writeFileSync(file, crossSite(100, 9000));
    const r = runCli(['export', file, '--to', 'aws', '--host', 'proxy-0'], {
      env: { NODE_OPTIONS: '--max-old-space-size=96' },
    });
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      'portolan: --to aws writes several files (aws.tf.json, aws.cfn.json); give -o DIR\n',
    );
  });

  test("a one-host plan is exactly the whole plan's flows from or to that host", { timeout: 300_000 }, () => {
    const site = loadSite(join(ROOT, 'examples/mixed-site.yaml'));
    const whole = buildPlan(site.inventory, site.catalogs);
    for (const h of site.inventory.hosts) {
      const one = buildPlan(site.inventory, site.catalogs, { host: h.name });
      assert.deepEqual(
        one.flows,
        whole.flows.filter((f) => f.from.host === h.name || f.to.host === h.name),
        h.name,
      );
    }
  });
});
