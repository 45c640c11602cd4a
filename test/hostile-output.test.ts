/**
 * Hostile text on its way out (issue 10, items 5, 6, 8, 11): the hostile corpus
 * (tests/fixtures/hostile/) carries terminal escapes (ESC, C1 CSI), bidirectional overrides, an
 * `<img onerror>`, a `javascript:` link and a formula behind a `;`. None of it may reach a terminal,
 * a generated file or a spreadsheet as anything but text.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { FORMAT_NAMES } from '../src/export/index.js';
import { sanitizeDeep, UNSAFE_CHARS } from '../src/util/terminal.js';
import { BIN, ROOT, runCli } from './helpers.js';

const HOSTILE = 'tests/fixtures/hostile/site.yaml';
const UNSAFE = new RegExp(UNSAFE_CHARS.source);
const tmp = mkdtempSync(join(tmpdir(), 'portolan-hostile-out-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function assertSafe(text: string, what: string): void {
  const m = UNSAFE.exec(text);
  assert.equal(
    m,
    null,
    `${what}: U+${m?.[0].codePointAt(0)?.toString(16).padStart(4, '0')} at ${m?.index}: ${JSON.stringify(text.slice(Math.max(0, (m?.index ?? 0) - 40), (m?.index ?? 0) + 10))}`,
  );
}

/** RFC 4180 records split on `sep` (quotes honoured), as a spreadsheet with that separator reads them. */
function readCsv(text: string, sep: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"' && cell === '') quoted = true;
    else if (c === sep) {
      row.push(cell);
      cell = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
      i++;
    } else cell += c;
  }
  if (cell !== '' || row.length) rows.push([...row, cell]);
  return rows;
}

describe('hostile text reaches no terminal raw', () => {
  test('validate, plan (table, csv summary), catalog listing and an error line are sanitised', () => {
    const outputs = [
      runCli(['validate', HOSTILE]),
      runCli(['plan', HOSTILE, '--format', 'table']),
      runCli(['plan', HOSTILE, '--format', 'csv']),
      runCli(['catalog', 'evil-product', '--catalog', 'tests/fixtures/hostile/catalog']),
      runCli(['catalog', '--catalog', 'tests/fixtures/hostile/catalog']),
    ];
    for (const [i, r] of outputs.entries()) {
      assert.equal(r.code, 0, r.stderr);
      assertSafe(r.stdout, `output ${i} stdout`);
      assertSafe(r.stderr, `output ${i} stderr`);
    }
    assert.match(outputs[3]?.stdout ?? '', /\?evil/, 'the override shows as ?');
    // A line break inside a catalog text stays inside its entry: nothing starts a line at column 0.
    assert.match(outputs[3]?.stdout ?? '', /newline \} accept; table/, 'the line break shows as a space');
    const bad = join(tmp, 'bad-role.yaml');
    writeFileSync(
      bad,
      'site: s\nproducts:\n  druva-vmware: {}\nhosts:\n  a: { address: 10.0.0.1, roles: ["druva-vmware:\u202eproxy\u009b31m"] }\n',
    );
    const r = runCli(['validate', bad]);
    assert.equal(r.code, 2);
    assertSafe(r.stderr, 'error line');
  });

  test('validate lists every error sanitised, as the one-line report of the first', () => {
    // validate printed its list raw: a JSON-quoted value keeps C1 controls and U+202E as they are;
    // an inventory refuses them now, and the error quotes them escaped.
    const bad = join(tmp, 'bad-addresses.yaml');
    writeFileSync(
      bad,
      'site: s\nproducts:\n  druva-vmware: {}\nhosts:\n  a: { address: "\u009b31m\u202e", roles: [druva-vmware:backup-proxy] }\n  b: { address: "10.0.0.2\u009b2J", roles: [druva-vmware:vcenter] }\n',
    );
    const r = runCli(['validate', bad]);
    assert.equal(r.code, 2, r.stderr);
    assertSafe(r.stderr, 'validate errors');
    // Refused where written, each named by its code point and quoted with it escaped.
    assert.match(
      r.stderr,
      /:5:17 hosts\.a\.address: "\\u009b31m\\u202e" holds U\+009B \(a C1 control character\)/,
    );
    assert.match(r.stderr, /:6:17 hosts\.b\.address: "10\.0\.0\.2\\u009b2J" holds U\+009B/);
    assert.match(r.stderr, /: 2 errors\n$/);
  });

  test('export warnings on stderr are sanitised', () => {
    const r = runCli(['export', HOSTILE, '--to', 'iptables', '--network', '-o', `${join(tmp, 'warn')}/`]);
    assert.equal(r.code, 0, r.stderr);
    assertSafe(r.stderr, 'warnings');
  });

  test('a check report is sanitised before the table renders it (certificate subjects, banners)', () => {
    const report = {
      results: [{ detail: 'TLS subject CN=\u001b]0;pwned\u0007\u001b[31mevil\u202etxt.exe', ports: [443] }],
    };
    const clean = sanitizeDeep(report);
    assertSafe(JSON.stringify(clean), 'report');
    assert.equal(clean.results[0]?.detail, 'TLS subject CN=?]0;pwned??[31mevil?txt.exe');
    assert.deepEqual(clean.results[0]?.ports, [443]);
  });

  for (const format of FORMAT_NAMES)
    for (const mode of [['--host', 'web-server'], ['--network']])
      test(`export ${format} ${mode.join(' ')}: no terminal control or bidi override in any file`, (t) => {
        const out = join(tmp, `${format}-${mode.length}`);
        const r = runCli(['export', HOSTILE, '--to', format, ...mode, '-o', `${out}/`]);
        if (r.code === 2 && /does not support/.test(r.stderr)) return t.skip('mode not supported');
        assert.equal(r.code, 0, r.stderr);
        for (const name of readdirSync(out, { recursive: true }).map(String)) {
          const path = join(out, name);
          if (!statSync(path).isFile()) continue;
          const text = readFileSync(path, 'utf8');
          assertSafe(text.replace(/\r\n/g, '\n'), `${format}/${name}`);
          assert.doesNotMatch(text, /&#x0*202e;|&#8238;/i, `${format}/${name}: an override as an entity`);
        }
      });
});

describe('markdown: the one escaping function everywhere', () => {
  test('plan --format markdown: the summary line has no live HTML or link', () => {
    const r = runCli(['plan', HOSTILE, '--format', 'markdown']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes('<img'), 'an <img> tag');
    assert.doesNotMatch(r.stdout, /[^\\]\]\(javascript:/, 'a javascript: link');
    const summary = r.stdout.split('\n')[2] ?? '';
    assert.match(summary, /&lt;img src=x onerror=alert\(1\)&gt; \\\[a\\\]\(javascript:alert\(1\)\)/);
  });
});

describe('CSV: formulas defused for both separators', () => {
  const outputs = () => [
    { what: 'plan csv', text: runCli(['plan', HOSTILE, '--format', 'csv']).stdout },
    { what: 'export csv', text: runCli(['export', HOSTILE, '--to', 'csv', '--network']).stdout },
  ];
  for (const sep of [',', ';'])
    test(`read with "${sep}" as the separator, no cell starts a formula`, () => {
      for (const { what, text } of outputs()) {
        assert.ok(text.includes('=cmd'), `${what}: the payload is in the output`);
        for (const row of readCsv(text, sep))
          for (const cell of row)
            assert.doesNotMatch(
              cell,
              /^\s*[=+\-@\uff1d\uff0b\uff0d\uff20]/,
              `${what} (${sep}): ${cell.slice(0, 80)}`,
            );
      }
    });
});

describe('long text in terminal tables', () => {
  test('plan --format table with a 1,000,000-character purpose: wrapped in linear time', {
    timeout: 300_000,
  }, () => {
    // 100,000 characters took about 12 minutes when each cut re-measured the whole text.
    const dir = join(tmp, 'long-table');
    mkdirSync(join(dir, 'cat'), { recursive: true });
    writeFileSync(
      join(dir, 'cat', 'c.yaml'),
      `product: long-product\ntitle: L\ndocuments:\n  - { file: d.txt, title: D }\nroles:\n  client: { title: c }\n  server: { title: s }\nentries:\n  - id: web\n    from: client\n    to: server\n    protocol: tcp\n    ports: [8443]\n    service: web\n    purpose: "${'\u65e5A'.repeat(500_000)}"\n    sources: [{ doc: d.txt, table: t, row: 1 }]\n`,
    );
    writeFileSync(
      join(dir, 'site.yaml'),
      'site: long\ncatalogs: [cat]\nproducts:\n  long-product: {}\nhosts:\n  a: { address: 192.0.2.10, roles: [long-product:client] }\n  b: { address: 192.0.2.20, roles: [long-product:server] }\n',
    );
    const r = runCli(['plan', join(dir, 'site.yaml'), '--format', 'table']);
    assert.equal(r.code, 0, r.stderr);
    // The purpose wraps under its column: many short lines, none longer than the table.
    const lines = r.stdout.split('\n');
    assert.ok(lines.length > 1000, `${lines.length} lines`);
    for (const l of lines) assert.ok(l.length < 400, `a line of ${l.length} characters`);
  });
});

/** Runs the CLI with its stdout a pipe whose reader is closed before the CLI writes (`| head -0`). */
function runIntoClosedPipe(
  args: string[],
): Promise<{ code: number | null; signal: string | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
}

describe('a closed pipe on stdout ends quietly', () => {
  const commands: string[][] = [
    ['plan', 'examples/mixed-site.yaml'],
    ['plan', 'examples/mixed-site.yaml', '--format', 'json'],
    ['plan', 'examples/mixed-site.yaml', '--format', 'csv'],
    ['plan', 'examples/mixed-site.yaml', '--format', 'table'],
    ['plan', 'examples/mixed-site.yaml', '--format', 'markdown'],
    ['export', 'examples/mixed-site.yaml', '--to', 'nftables'],
    ['export', 'examples/mixed-site.yaml', '--to', 'flat-csv'],
    ['export', 'examples/mixed-site.yaml', '--to', 'html'],
    ['catalog'],
    ['catalog', '--format', 'json'],
    ['validate', 'examples/mixed-site.yaml'],
    ['--help'],
    ['help', 'plan'],
  ];
  for (const args of commands) {
    test(`${args.join(' ')} | head -0: exit 141 (128 + SIGPIPE), no message`, {
      timeout: 120_000,
    }, async () => {
      const r = await runIntoClosedPipe(args);
      assert.equal(r.code, 141, `exit code (stderr: ${r.stderr.slice(0, 300)})`);
      assert.doesNotMatch(r.stderr, /EPIPE|internal error|^\s+at /m);
    });
  }
});
