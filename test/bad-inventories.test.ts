/**
 * The bad-inventory corpus: every way a site file can be wrong gives one located line on stderr,
 * exit code 2, nothing on stdout and no stack trace (docs/contracts.md, the inventory contract).
 *
 * Each tests/fixtures/bad/NN-name.yaml has NN-name.expected: the exact line `portolan validate`
 * prints for it when run from the repository root. Inputs too large or too binary to commit are
 * generated into a temporary directory.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type CliResult, ROOT, runCli } from './helpers.js';

const DIR = 'tests/fixtures/bad';
const STACK_LINE = /^\s+at /m;

const files = readdirSync(join(ROOT, DIR)).filter((f) => statSync(join(ROOT, DIR, f)).isFile());
const fixtures = files.filter((f) => f.endsWith('.yaml')).sort();

function expectedFor(fixture: string): string {
  const text = readFileSync(join(ROOT, DIR, fixture.replace(/\.yaml$/, '.expected')), 'utf8');
  const line = text.replace(/\n$/, '');
  assert.ok(!line.includes('\n'), `${fixture}: the .expected file must hold one line`);
  return line;
}

/** Exit 2, nothing on stdout, exactly one line on stderr, no stack trace. */
function assertOneLineError(r: CliResult, what: string): string {
  assert.equal(r.code, 2, `${what}: exit code (stderr: ${r.stderr})`);
  assert.equal(r.stdout, '', `${what}: stdout must be empty`);
  assert.ok(r.stderr.endsWith('\n'), `${what}: stderr must end with a newline: ${JSON.stringify(r.stderr)}`);
  const lines = r.stderr.slice(0, -1).split('\n');
  assert.equal(lines.length, 1, `${what}: stderr must be one line: ${JSON.stringify(r.stderr)}`);
  assert.doesNotMatch(r.stderr, STACK_LINE, `${what}: no stack trace`);
  return lines[0] ?? '';
}

describe('bad inventory corpus', () => {
  test('the corpus is complete: at least 35 fixtures, each with its .expected line', () => {
    assert.ok(fixtures.length >= 35, `expected at least 35 fixtures, found ${fixtures.length}`);
    for (const f of files) {
      assert.match(
        f,
        /^\d{2}-[a-z0-9-]+\.(yaml|expected)$/,
        `${f}: expected NN-short-name.yaml or .expected`,
      );
      const pair = f.endsWith('.yaml')
        ? f.replace(/\.yaml$/, '.expected')
        : f.replace(/\.expected$/, '.yaml');
      assert.ok(files.includes(pair), `${f} has no ${pair}`);
    }
    const numbers = fixtures.map((f) => f.slice(0, 2));
    assert.equal(new Set(numbers).size, numbers.length, 'fixture numbers are unique');
  });

  for (const fixture of fixtures) {
    test(`validate ${fixture}`, () => {
      const expected = expectedFor(fixture);
      assert.match(
        expected,
        /^portolan: \S+:\d+:\d+[: ]/,
        `${fixture}: the expected line names file:line:column`,
      );
      const line = assertOneLineError(runCli(['validate', `${DIR}/${fixture}`]), fixture);
      assert.equal(line, expected);
    });
  }

  for (const fixture of [
    '05-duplicate-host.yaml',
    '14-unknown-role.yaml',
    '25-cidr-host-bits.yaml',
    '35-hostile-host-name.yaml',
    '36-alias-bomb.yaml',
    '39-invalid-custom-catalog.yaml',
  ]) {
    test(`plan ${fixture} fails as validate does`, () => {
      const line = assertOneLineError(
        runCli(['plan', `${DIR}/${fixture}`, '--format', 'json']),
        `plan ${fixture}`,
      );
      assert.equal(line, expectedFor(fixture));
    });
  }

  test('--debug adds the stack trace after the same first line', () => {
    const fixture = '14-unknown-role.yaml';
    const r = runCli(['validate', `${DIR}/${fixture}`, '--debug']);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.split('\n')[0], expectedFor(fixture));
    assert.match(r.stderr, STACK_LINE, 'a stack trace with --debug');
  });
});

describe('generated bad inventories', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'portolan-bad-'));
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a 70 MiB file (over the 64 MiB default) is refused before it is read', () => {
    const file = join(dir, 'big.yaml');
    const head = Buffer.from('site: big\nhosts:\n');
    writeFileSync(file, Buffer.concat([head, Buffer.alloc(70 * 1024 * 1024 - head.length, '#')]));
    const line = assertOneLineError(runCli(['validate', file]), 'big.yaml');
    assert.match(
      line,
      /^portolan: \S+\/big\.yaml: the inventory is 73400320 bytes; the limit is 67108864 bytes \(64 MiB\); raise it with --max-inventory-size/,
    );
  });

  test('a Latin-1 file is refused at its first non-UTF-8 byte', () => {
    const file = join(dir, 'latin1.yaml');
    const text =
      'site: m\u00fcnchen\nhosts:\n  a: { address: 10.0.0.1, roles: [druva-vmware:backup-proxy] }\n';
    writeFileSync(file, Buffer.from(text, 'latin1'));
    const line = assertOneLineError(runCli(['validate', file]), 'latin1.yaml');
    assert.match(line, /^portolan: \S+\/latin1\.yaml:1:8: the inventory is not valid UTF-8 text/);
  });

  test('a carriage return without a line feed is refused where it is; CRLF is read', () => {
    // yaml read a lone CR as text, so a classic Mac file failed as "Nested mappings are not allowed
    // in compact mappings", and `# note<CR>hosts: {}` (two lines in an editor) was one comment.
    const body = [
      'site: cr',
      'products:',
      '  druva-vmware: {}',
      'hosts:',
      '  a: { address: 10.0.0.1, roles: [druva-vmware:backup-proxy] }',
      '',
    ];
    const mac = join(dir, 'mac.yaml');
    writeFileSync(mac, body.join('\r'));
    assert.match(
      assertOneLineError(runCli(['validate', mac]), 'mac.yaml'),
      /^portolan: \S+\/mac\.yaml:1:9: the inventory has a carriage return without a line feed after it \(expected lines that end in LF or CRLF/,
    );
    const hidden = join(dir, 'hidden.yaml');
    writeFileSync(hidden, `${body.slice(0, 3).join('\n')}\n# note\rhosts: {}\n${body.slice(3).join('\n')}`);
    assert.match(
      assertOneLineError(runCli(['validate', hidden]), 'hidden.yaml'),
      /^portolan: \S+\/hidden\.yaml:4:7: the inventory has a carriage return without a line feed/,
    );
    const dos = join(dir, 'dos.yaml');
    writeFileSync(dos, body.join('\r\n'));
    const ok = runCli(['validate', dos]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /dos\.yaml: ok \(site cr: 1 host/);
  });

  test('a file with a NUL byte is refused at the NUL', () => {
    const file = join(dir, 'nul.yaml');
    writeFileSync(
      file,
      'site: east\nhosts:\n  a\u0000b: { address: 10.0.0.1, roles: [druva-vmware:backup-proxy] }\n',
    );
    const line = assertOneLineError(runCli(['validate', file]), 'nul.yaml');
    assert.match(line, /^portolan: \S+\/nul\.yaml:3:4: the inventory contains a NUL byte/);
  });
});
