/**
 * Long text in every export (issue 10, item 1): a catalog purpose, note, source reference and
 * unspecified-peer description of 10 KB, 100 KB and 1 MB, ending in an iptables rule, are rendered in
 * every format and mode. Every line stays within its format's LINE_LIMITS; the iptables files load
 * into a throwaway network namespace with exactly their own rules (iptables-restore reads 10240-byte
 * chunks, so an over-long comment line would have loaded the smuggled accept-all rule), and the
 * nftables files pass `nft -c`.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { FORMAT_NAMES } from '../src/export/index.js';
import { IPTABLES_LINE_MAX, LINE_LIMITS } from '../src/export/limits.js';
import { runCli } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'portolan-limits-'));
// `-` ends the pid: `ptl12-34` and `ptl123-4` are two runs (`ptl1234` was both).
const NS_PREFIX = `ptl${process.pid}-`;
const namespaces: string[] = [];
after(() => {
  for (const ns of namespaces) spawnSync('ip', ['netns', 'del', ns]);
  rmSync(tmp, { recursive: true, force: true });
});

const INJECTED = '-I INPUT 1 -j ACCEPT -m comment --comment smuggled';

/** A site whose catalog's free text is `size` bytes long and ends in an iptables rule. */
function longSite(size: number): string {
  const dir = join(tmp, `s${size}`);
  mkdirSync(join(dir, 'cat'), { recursive: true });
  const text = `${'A'.repeat(size - INJECTED.length - 1)} ${INJECTED}`;
  writeFileSync(
    join(dir, 'cat', 'long.yaml'),
    `product: long-product
title: Long text
documents:
  - { file: d.txt, title: D }
roles:
  client: { title: client }
  server: { title: server }
entries:
  - id: web
    from: client
    to: server
    protocol: tcp
    ports: [8443]
    service: web
    purpose: "${text}"
    sources: [{ doc: d.txt, table: t, row: 1, ref: "${size < 1_000_000 ? text : 'row 1'}" }]
    notes: ["${text}"]
  - id: dns
    from: { any: "${text}" }
    to: server
    protocol: udp
    ports: [53]
    service: dns
    purpose: "${text}"
    sources: [{ doc: d.txt, table: t, row: 2 }]
`,
  );
  writeFileSync(
    join(dir, 'site.yaml'),
    `site: long
catalogs: [cat]
products:
  long-product: {}
hosts:
  a: { address: 192.0.2.10, roles: [long-product:client] }
  b: { address: 192.0.2.20, roles: [long-product:server] }
`,
  );
  return join(dir, 'site.yaml');
}

const SKIP =
  process.getuid?.() !== 0 ||
  spawnSync('sh', ['-c', 'command -v nft && command -v iptables-nft-restore && command -v iptables-nft-save'])
    .status !== 0
    ? 'needs root, nft and iptables-nft'
    : false;

let nsCount = 0;
function addNs(): string {
  const ns = `${NS_PREFIX}${++nsCount}`;
  assert.equal(spawnSync('ip', ['netns', 'add', ns]).status, 0, `ip netns add ${ns}`);
  namespaces.push(ns);
  return ns;
}

function inNs(ns: string, cmd: string, args: string[], input?: string) {
  const r = spawnSync('ip', ['netns', 'exec', ns, cmd, ...args], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    ...(input !== undefined ? { input } : {}),
  });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

describe('long catalog text in every export', () => {
  test('the iptables limit is the restore buffer less newline and NUL', () => {
    assert.equal(IPTABLES_LINE_MAX, 10238);
  });

  for (const size of [10_000, 100_000, 1_000_000]) {
    describe(`${size} bytes`, () => {
      const file = longSite(size);
      for (const format of FORMAT_NAMES)
        for (const mode of [['--host', 'b'], ['--network']]) {
          test(`${format} ${mode.join(' ')}: every line within ${LINE_LIMITS[format].max} bytes`, {
            timeout: 120_000,
          }, (t) => {
            const out = join(tmp, `out-${size}-${format}-${mode.length}`);
            const r = runCli(['export', file, '--to', format, ...mode, '-o', `${out}/`]);
            if (r.code === 2 && /does not support/.test(r.stderr)) return t.skip(r.stderr.trim());
            assert.equal(r.code, 0, r.stderr.slice(0, 500));
            const names = readdirSync(out, { recursive: true })
              .map(String)
              .filter((n) => statSync(join(out, n)).isFile() && !n.startsWith('.portolan-'));
            for (const name of names) {
              const content = readFileSync(join(out, name), 'utf8');
              content.split('\n').forEach((line, i) => {
                const bytes = Buffer.byteLength(line);
                assert.ok(bytes <= LINE_LIMITS[format].max, `${name}:${i + 1} is ${bytes} bytes`);
              });
              if (format === 'iptables' || format === 'nftables') assert.ok(!content.includes('\r'), name);
            }
            for (const line of r.stderr.split('\n'))
              assert.ok(line.length <= 8192, `a warning line of ${line.length} characters`);
            if (SKIP || (format !== 'iptables' && format !== 'nftables')) return;
            const ns = addNs();
            for (const name of names) {
              const path = join(out, name);
              if (format === 'nftables') {
                const check = inNs(ns, 'nft', ['-c', '-f', path]);
                assert.equal(check.code, 0, `nft -c -f ${name}: ${check.stderr.slice(0, 500)}`);
                continue;
              }
              const v6 = name.includes('ip6');
              const load = inNs(ns, v6 ? 'ip6tables-nft-restore' : 'iptables-nft-restore', [path]);
              assert.equal(load.code, 0, `restore ${name}: ${load.stderr.slice(0, 500)}`);
              const saved = inNs(ns, v6 ? 'ip6tables-nft-save' : 'iptables-nft-save', ['-t', 'filter']);
              const loaded = saved.stdout.split('\n').filter((l) => l.startsWith('-A '));
              const written = readFileSync(path, 'utf8')
                .split('\n')
                .filter((l) => l.startsWith('-A ') || l.startsWith('-I '));
              assert.equal(loaded.length, written.length, `${name}: loaded rules\n${loaded.join('\n')}`);
              assert.ok(!saved.stdout.includes('smuggled'), `${name}: the smuggled rule loaded`);
            }
          });
        }
    });
  }
});
