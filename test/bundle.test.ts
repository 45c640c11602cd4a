import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { FORMATS } from '../src/export/index.js';
import { isFailure, VERDICT_ORDER } from '../src/probe/verdict.js';
import { ROOT, runCli } from './helpers.js';

const CLI = join(ROOT, 'dist', 'cli');

/** The commands `portolan help` lists. */
function commands(): string[] {
  const block = runCli(['help']).stdout.split('Commands:\n')[1]?.split('\n\n')[0] ?? '';
  return [...block.matchAll(/^ {2}([a-z]+) /gm)].map((m) => m[1] as string);
}

describe('the bundled CLI (scripts/bundle.mjs)', () => {
  const files = readdirSync(CLI).filter((f) => f.endsWith('.js'));

  it('is one file per command beside main.js, errors.js and the two worker threads', () => {
    const names = commands();
    assert.ok(names.length >= 10, `help lists ${names.join(', ')}`);
    assert.deepEqual(
      files.sort(),
      [...names, 'main', 'errors', 'tcp-worker', 'checkpoint-worker'].map((n) => `${n}.js`).sort(),
    );
  });

  it('defines the error classes once, in errors.js, which every file that uses them imports', () => {
    for (const f of files) {
      const text = readFileSync(join(CLI, f), 'utf8');
      const defines = /\bclass PortolanError\b|\bPortolanError = class\b/.test(text);
      assert.equal(defines, f === 'errors.js', `${f} ${defines ? 'defines' : 'lacks'} PortolanError`);
      if (f !== 'errors.js' && /\bPortolanError\b|\bInputError\b|\bUsageError\b/.test(text))
        assert.match(
          text,
          /from "\.\/errors\.js"/,
          `${f} uses the error classes without importing errors.js`,
        );
    }
  });

  it('has yaml in yaml.cjs, the whole package, for the bundles that load it at first use', () => {
    const require = createRequire(import.meta.url);
    const bundled = require(join(CLI, 'yaml.cjs')) as Record<string, unknown>;
    const installed = require('yaml') as Record<string, unknown>;
    assert.deepEqual(Object.keys(bundled).sort(), Object.keys(installed).sort());
    const doc = (bundled.parseDocument as (s: string) => { toJS(): unknown })('a: [1, {b: c}]\n');
    assert.deepEqual(doc.toJS(), { a: [1, { b: 'c' }] });
  });

  it('has js-yaml in js-yaml.cjs, and loads neither YAML package for a file the line reader takes', () => {
    const require = createRequire(import.meta.url);
    const bundled = require(join(CLI, 'js-yaml.cjs')) as Record<string, unknown>;
    const installed = require('js-yaml') as Record<string, unknown>;
    assert.deepEqual(Object.keys(bundled).sort(), Object.keys(installed).sort());
    assert.equal(typeof bundled.parseEvents, 'function');
    // Loaded before the CLI: at exit, the CommonJS files it loaded (the bundles' lazy requires).
    const dir = mkdtempSync(join(tmpdir(), 'portolan-bundle-'));
    try {
      const preload = join(dir, 'loaded.mjs');
      const out = join(dir, 'loaded.json');
      writeFileSync(
        preload,
        `import { writeFileSync } from 'node:fs';
import Module from 'node:module';
process.on('exit', () => writeFileSync(process.env.PORTOLAN_TEST_LOADED, JSON.stringify(Object.keys(Module._cache))));
`,
      );
      const yamlFiles = (args: string[]): string[] => {
        const r = runCli(args, { env: { NODE_OPTIONS: `--import=${preload}`, PORTOLAN_TEST_LOADED: out } });
        assert.equal(r.code, 0, r.stderr);
        const loaded = JSON.parse(readFileSync(out, 'utf8')) as string[];
        return loaded.filter((f) => /yaml/.test(f)).map((f) => f.slice(f.lastIndexOf('/') + 1));
      };
      assert.deepEqual(yamlFiles(['plan', 'examples/mixed-site.yaml', '--format', 'json']), []);
      assert.deepEqual(yamlFiles(['export', 'examples/mixed-site.yaml', '--to', 'nftables']), []);
      // A flow mapping over two lines: the line reader declines it, js-yaml's events read it.
      const site = join(dir, 'two-lines.yaml');
      writeFileSync(
        site,
        'site: t\nproducts:\n  druva-vmware: {}\nhosts:\n  a: { address: 10.0.0.1,\n       roles: [druva-vmware:backup-proxy] }\n',
      );
      assert.deepEqual(yamlFiles(['plan', site, '--format', 'json']), ['js-yaml.cjs']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reports a command's input error as one line and exit 2 (its errors are main.js's errors)", () => {
    const r = runCli(['export', 'no-such-site.yaml', '--to', 'nftables']);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^portolan: no-such-site\.yaml: .*\n$/);
    assert.doesNotMatch(r.stderr, /internal error|\n {4}at /);
  });
});

describe('the console (web/app.js)', () => {
  /** The string elements of the list that follows `const NAME = ` in the console's source. */
  const listIn = (source: string, name: string): string[] => {
    const at = source.indexOf(`const ${name} = `);
    assert.ok(at >= 0, `web/app.js defines ${name}`);
    const body = source.slice(at, source.indexOf(']', at));
    return [...body.matchAll(/'([^']+)'/g)].map((m) => m[1] as string);
  };
  const source = readFileSync(join(ROOT, 'web', 'app.js'), 'utf8');

  it('marks as failing exactly the verdicts check fails on', () => {
    assert.deepEqual(listIn(source, 'FAILING').sort(), VERDICT_ORDER.filter((v) => isFailure(v)).sort());
  });

  it('offers every export format, as the whole version and as the delta', () => {
    assert.deepEqual(listIn(source, 'FORMATS'), Object.keys(FORMATS));
  });

  it('words a catalog entry as the CLI does: peers, ports and sources in words, advisories marked', async () => {
    const text = (await import(pathToFileURL(join(ROOT, 'web', 'catalog-text.js')).href)) as {
      peerText(p: unknown): string;
      portsText(p: unknown[]): string;
      sourceText(s: unknown): string;
      isAdvisory(e: unknown): boolean;
    };
    type Entry = {
      id: string;
      from: unknown;
      to: unknown;
      ports?: unknown[];
      sources: object[];
      basis?: string;
    };
    const products = JSON.parse(runCli(['catalog', '--format', 'json']).stdout) as { entries: Entry[] }[];
    const entries = products.flatMap((p) => p.entries);
    assert.ok(entries.some((e) => e.basis === 'advisory'));
    for (const e of entries) {
      for (const peer of [e.from, e.to]) assert.doesNotMatch(text.peerText(peer), /[{}"]/, e.id);
      assert.doesNotMatch(text.portsText(e.ports ?? []), /[{}"]|object/, e.id);
      for (const s of e.sources) assert.doesNotMatch(text.sourceText(s), /undefined/, e.id);
      // The API's entries may come without `basis`: the sources alone tell an advisory.
      const { basis: _basis, ...bare } = e;
      assert.equal(text.isAdvisory(bare), e.basis === 'advisory', e.id);
      assert.equal(text.isAdvisory(e), e.basis === 'advisory', e.id);
    }
    assert.equal(text.peerText({ any: 'NFS clients' }), 'any (NFS clients)');
    assert.equal(text.peerText({ role: 'guest', local: true }), 'guest (same host)');
  });
});
