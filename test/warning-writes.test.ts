/**
 * Long warning lists reach stderr in a few writes, not one write (one system call: Node.js writes
 * stderr synchronously) per line: plan and export of a generated site with thousands of warnings.
 * Per-host warnings of one kind are summed up on a terminal (warning-lines.test.ts), so the site has
 * thousands that are not alike: every host inside one CIDR host's /12 is its own address-in-cidr.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ROOT, runCli } from './helpers.js';

const { generateSite } = (await import(join(ROOT, 'bench/gen-site.mjs'))) as {
  generateSite: (n: number) => string;
};

const dir = mkdtempSync(join(tmpdir(), 'portolan-writes-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const site = join(dir, 'site.yaml');
writeFileSync(
  site,
  `${generateSite(3000)}  subnet-all: { address: 10.16.0.0/12, roles: [druva-vmware:ntp-server] }\n`,
);
// Loaded before the CLI: counts the calls of process.stderr.write, and leaves the count in a file.
const counter = join(dir, 'count.mjs');
writeFileSync(
  counter,
  `import { writeFileSync } from 'node:fs';
const write = process.stderr.write.bind(process.stderr);
let calls = 0;
process.stderr.write = (...args) => {
  calls++;
  return write(...args);
};
process.on('exit', () => writeFileSync(process.env.PORTOLAN_TEST_COUNT, String(calls)));
`,
);

/** The CLI's stderr for `args`, and how many writes made it. */
function stderrWrites(args: string[]): { lines: number; writes: number } {
  const count = join(dir, 'count.txt');
  const r = runCli(args, { env: { NODE_OPTIONS: `--import=${counter}`, PORTOLAN_TEST_COUNT: count } });
  assert.equal(r.code, 0, r.stderr.slice(0, 500));
  return { lines: r.stderr.split('\n').length - 1, writes: Number(readFileSync(count, 'utf8')) };
}

describe('warnings on stderr', () => {
  it('are written in a few writes of many lines each, by plan and by export', () => {
    for (const args of [
      ['plan', site, '--format', 'json', '-o', join(dir, 'plan.json')],
      ['export', site, '--to', 'nftables', '-o', join(dir, 'site.nft')],
    ]) {
      const { lines, writes } = stderrWrites(args);
      assert.ok(lines > 800, `${args[0]}: ${lines} lines`);
      // Batched by size: a write carries a hundred lines and more, where one per line was the fault.
      assert.ok(writes * 100 <= lines, `${args[0]}: ${lines} lines in ${writes} writes`);
    }
  });
});
