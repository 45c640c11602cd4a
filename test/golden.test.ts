import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ROOT, runCli } from './helpers.js';

/**
 * Every example site is planned end to end through the CLI and compared with its golden file.
 * A missing golden file fails; `UPDATE_GOLDEN=1 npm test` rewrites them (review the diff).
 */
const examples = readdirSync(`${ROOT}examples`).filter((f) => f.endsWith('.yaml'));
const update = process.env.UPDATE_GOLDEN === '1';

describe('golden plans', () => {
  it('has at least one example per product and a mixed one', () => {
    for (const name of ['druva-vmware', 'platespin', 'veeam-proxmox', 'mixed-site'])
      assert.ok(examples.includes(`${name}.yaml`), name);
  });

  for (const example of examples) {
    for (const format of ['json', 'csv', 'markdown'] as const) {
      it(`${example} as ${format}`, () => {
        const r = runCli(['plan', `examples/${example}`, '--format', format]);
        assert.equal(r.code, 0, r.stderr);
        const ext = { json: 'json', csv: 'csv', markdown: 'md' }[format];
        const golden = `${ROOT}tests/golden/plan/${example.replace(/\.yaml$/, '')}.${ext}`;
        if (update) {
          mkdirSync(`${ROOT}tests/golden/plan`, { recursive: true });
          writeFileSync(golden, r.stdout);
        }
        assert.ok(
          existsSync(golden),
          `missing golden file ${golden} (run UPDATE_GOLDEN=1 npm test and review it)`,
        );
        assert.equal(r.stdout, readFileSync(golden, 'utf8'));
      });
    }
  }
});
