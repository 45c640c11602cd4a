import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FORMAT_NAMES, loadGenerator } from '../src/export/index.js';
import { ROOT, runCli } from './helpers.js';

/**
 * Every example x every format, end to end through the CLI, compared with golden files under
 * tests/golden/export/<example>/<format>.<scope>/. A missing golden file fails; refresh with
 * `UPDATE_GOLDEN=1 npm test` and review the diff.
 */
const update = process.env.UPDATE_GOLDEN === '1';
const examples = readdirSync(`${ROOT}examples`).filter((f) => f.endsWith('.yaml'));
const tmp = mkdtempSync(join(tmpdir(), 'portolan-export-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** The host each example is exported for in host mode: its first host. */
export function primaryHost(example: string): string {
  const text = readFileSync(`${ROOT}examples/${example}`, 'utf8');
  const m = /^hosts:\n\s+([A-Za-z0-9._-]+):/m.exec(text);
  assert.ok(m?.[1], `no host in ${example}`);
  return m[1];
}

function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? listFiles(join(dir, d.name), `${prefix}${d.name}/`) : [`${prefix}${d.name}`],
  );
}

describe('export golden files', async () => {
  for (const format of FORMAT_NAMES) {
    const gen = await loadGenerator(format);
    for (const example of examples) {
      for (const mode of gen.capabilities.modes) {
        const scope = mode === 'host' ? `host-${primaryHost(example)}` : 'network';
        it(`${example} --to ${format} (${scope})`, () => {
          const out = join(tmp, example, `${format}.${scope}`);
          const args = ['export', `examples/${example}`, '--to', format, '-o', `${out}/`];
          if (mode === 'host') args.push('--host', primaryHost(example));
          else args.push('--network');
          const r = runCli(args);
          assert.equal(r.code, 0, r.stderr);
          const golden = `${ROOT}tests/golden/export/${example.replace(/\.yaml$/, '')}/${format}.${scope}`;
          const files = listFiles(out).sort();
          if (update) {
            rmSync(golden, { recursive: true, force: true });
            for (const f of files) {
              mkdirSync(join(golden, f, '..'), { recursive: true });
              writeFileSync(join(golden, f), readFileSync(join(out, f)));
            }
          }
          assert.ok(
            existsSync(golden),
            `missing golden directory ${golden} (run UPDATE_GOLDEN=1 npm test and review it)`,
          );
          assert.deepEqual(files, listFiles(golden).sort(), 'the same files');
          for (const f of files)
            assert.equal(readFileSync(join(out, f), 'utf8'), readFileSync(join(golden, f), 'utf8'), f);
        });
      }
    }
  }
});
