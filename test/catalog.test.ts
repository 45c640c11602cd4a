import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { loadCatalogs } from '../src/catalog/load.js';
import { isPageRef } from '../src/catalog/types.js';
import { SCHEMAS, type SchemaName, validatorPath } from '../src/util/schema.js';
import { runCli } from './helpers.js';

const catalogs = loadCatalogs();

/**
 * Table rows per document, counted by hand from ../shared/seeds (see seeds/README.md). A row is one
 * printed line of a table; an empty From cell in 004 continues the row above but is still a row.
 */
const ROWS: Record<string, Record<string, number>> = {
  '000_43f330ad8c0713db.txt': { ports: 8 },
  '001_2091beaa97dc5a7a.txt': { ports: 7, note: 1 },
  '002_6cdecb47e9aff3d7.txt': { ports: 8 },
  '003_a7e0e83404719d03.txt': { discovery: 3, conversion: 5, 'block-based': 4 },
  '004_55e916f704efc5f3.txt': {
    workers: 5,
    'backup-server': 6,
    'runtime-components': 9,
    'log-shipping-server': 5,
    mssql: 7,
    oracle: 9,
    postgresql: 5,
  },
};

describe('catalogs', () => {
  it('has the three products of the design', () => {
    assert.deepEqual([...catalogs.keys()].sort(), ['druva-vmware', 'platespin', 'veeam-proxmox']);
  });

  it('cites every table row of every seed document, and no row that does not exist', () => {
    const cited = new Map<string, Set<number>>();
    for (const c of catalogs.values())
      for (const e of c.entries)
        for (const s of e.sources) {
          if (isPageRef(s)) continue;
          const key = `${s.doc}#${s.table}`;
          cited.set(key, (cited.get(key) ?? new Set()).add(s.row));
        }
    for (const [doc, tables] of Object.entries(ROWS))
      for (const [table, count] of Object.entries(tables)) {
        const rows = cited.get(`${doc}#${table}`) ?? new Set();
        const want = Array.from({ length: count }, (_, i) => i + 1);
        assert.deepEqual(
          [...rows].sort((a, b) => a - b),
          want,
          `${doc} table ${table}`,
        );
      }
    const known = new Set(Object.entries(ROWS).flatMap(([d, t]) => Object.keys(t).map((k) => `${d}#${k}`)));
    for (const key of cited.keys())
      assert.ok(known.has(key), `cites a table the documents do not have: ${key}`);
  });

  it('keeps the documents’ known defects visible as notes', () => {
    const notes = (product: string) =>
      catalogs
        .get(product)
        ?.entries.flatMap((e) => e.notes ?? [])
        .join('\n') ?? '';
    assert.match(notes('druva-vmware'), /TLS 2\.0/);
    assert.match(notes('druva-vmware'), /TCP\/UDP/);
    assert.match(notes('platespin'), /10000-100025/);
    assert.match(notes('platespin'), /10000-10025/);
    assert.match(notes('platespin'), /stops at 10023/, 'the literal "A to X" reading is noted too');
    assert.match(notes('platespin'), /between/i);
  });

  it('gives every Druva entry Japanese text from 002', () => {
    for (const e of catalogs.get('druva-vmware')?.entries ?? []) assert.ok(e['purpose-ja'], e.id);
  });

  it('lists each entry with its sources as JSON', () => {
    for (const product of catalogs.keys()) {
      const r = runCli(['catalog', product, '--format', 'json']);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as { product: string; entries: { id: string; sources: unknown[] }[] };
      assert.equal(out.product, product);
      assert.equal(out.entries.length, catalogs.get(product)?.entries.length);
      for (const e of out.entries) assert.ok(e.sources.length > 0, e.id);
    }
  });

  it('shows Japanese text with --lang ja', () => {
    const r = runCli(['catalog', 'druva-vmware', '--lang', 'ja']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /バックアッププロキシ/);
  });
});

describe('schema validators', () => {
  it('are compiled at build time from the schemas as they are now', () => {
    const require = createRequire(import.meta.url);
    for (const [name, file] of Object.entries(SCHEMAS)) {
      const built = require(validatorPath(name as SchemaName)) as { sha256?: string };
      const sha256 = createHash('sha256').update(readFileSync(file)).digest('hex');
      assert.equal(built.sha256, sha256, `${validatorPath(name as SchemaName)} is stale: npm run build`);
    }
  });
});
