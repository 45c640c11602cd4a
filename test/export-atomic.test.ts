/**
 * `export -o` writes atomically (issue 10, item 15): temporary names renamed into place, so a full
 * disk leaves the earlier file whole and no partial one; files an earlier export of the same format
 * wrote that the new one no longer produces are removed, and nothing else in the directory is.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { BIN, ROOT, runCli } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'portolan-atomic-'));
const mounts: string[] = [];
after(() => {
  for (const m of mounts) spawnSync('umount', [m]);
  rmSync(tmp, { recursive: true, force: true });
});

describe('export -o is atomic and tidy', () => {
  test('a file an earlier export wrote and this one does not is removed; other files stay', () => {
    const out = join(tmp, 'tidy');
    let r = runCli([
      'export',
      'tests/fixtures/hostile/site.yaml',
      '--to',
      'iptables',
      '--network',
      '-o',
      `${out}/`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(existsSync(join(out, 'ip6tables.rules')), 'the IPv6 file of the first export');
    writeFileSync(join(out, 'notes.txt'), 'mine\n');
    writeFileSync(join(out, 'ip6tables.rules.bak'), 'mine too\n');
    r = runCli(['export', 'examples/druva-vmware.yaml', '--to', 'iptables', '--network', '-o', `${out}/`]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readdirSync(out).sort(), [
      '.portolan-iptables.files',
      'ip6tables.rules.bak',
      'iptables.rules',
      'notes.txt',
    ]);
  });

  test('a manifest naming a path outside the directory removes nothing there', () => {
    const out = join(tmp, 'escape');
    mkdirSync(out, { recursive: true });
    const victim = join(tmp, 'victim.txt');
    writeFileSync(victim, 'keep\n');
    writeFileSync(join(out, '.portolan-iptables.files'), `../victim.txt\n${victim}\n`);
    const r = runCli([
      'export',
      'examples/druva-vmware.yaml',
      '--to',
      'iptables',
      '--network',
      '-o',
      `${out}/`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(victim, 'utf8'), 'keep\n');
  });

  test('a manifest reaching outside through a linked directory removes nothing there', () => {
    // sub/victim.txt passed the check (relative, no ..) while sub was a link to another directory.
    const out = join(tmp, 'linked');
    const elsewhere = join(tmp, 'elsewhere');
    mkdirSync(out, { recursive: true });
    mkdirSync(elsewhere, { recursive: true });
    writeFileSync(join(elsewhere, 'victim.txt'), 'keep\n');
    symlinkSync(elsewhere, join(out, 'sub'));
    writeFileSync(join(out, '.portolan-iptables.files'), 'sub/victim.txt\n');
    const r = runCli([
      'export',
      'examples/druva-vmware.yaml',
      '--to',
      'iptables',
      '--network',
      '-o',
      `${out}/`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(join(elsewhere, 'victim.txt'), 'utf8'), 'keep\n');
  });

  test("a FIFO or a link in the manifest's place is replaced by the list, never written through", () => {
    // A FIFO there blocked the export for good; a link there had the list written over its target.
    const out = join(tmp, 'odd-manifest');
    mkdirSync(out, { recursive: true });
    const manifest = join(out, '.portolan-iptables.files');
    spawnSync('mkfifo', [manifest]);
    const args = ['export', 'examples/druva-vmware.yaml', '--to', 'iptables', '--network', '-o', `${out}/`];
    const fifo = spawnSync(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(fifo.status, 0, `${fifo.error ?? ''} ${fifo.stderr}`);
    assert.ok(lstatSync(manifest).isFile());
    const precious = join(tmp, 'precious.txt');
    writeFileSync(precious, 'keep\n');
    rmSync(manifest);
    symlinkSync(precious, manifest);
    const link = runCli(args);
    assert.equal(link.code, 0, link.stderr);
    assert.equal(readFileSync(precious, 'utf8'), 'keep\n');
    assert.ok(lstatSync(manifest).isFile());
    assert.match(readFileSync(manifest, 'utf8'), /^iptables\.rules\n/);
  });

  test('a full disk leaves the earlier files whole and no partial file', {
    skip: process.getuid?.() !== 0 ? 'needs root to mount a tmpfs' : false,
  }, () => {
    const disk = join(tmp, 'disk');
    mkdirSync(disk);
    assert.equal(
      spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=16k', 'tmpfs', disk]).status,
      0,
      'mount tmpfs',
    );
    mounts.push(disk);
    const file = join(disk, 'change-request.html');
    writeFileSync(file, 'the earlier, complete export\n');
    const r = runCli(['export', 'examples/mixed-site.yaml', '--to', 'html', '--network', '-o', file]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /^portolan: cannot write \S+change-request\.html: ENOSPC \(no space left on device\)\n$/,
    );
    assert.equal(readFileSync(file, 'utf8'), 'the earlier, complete export\n');
    assert.deepEqual(readdirSync(disk), ['change-request.html']);
    const dir = runCli(['export', 'examples/mixed-site.yaml', '--to', 'html', '--network', '-o', `${disk}/`]);
    assert.equal(dir.code, 1, dir.stderr);
    assert.equal(readFileSync(file, 'utf8'), 'the earlier, complete export\n');
    assert.deepEqual(readdirSync(disk), ['change-request.html']);
  });
});
