import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ROOT, runCli } from './helpers.js';

/**
 * WMI/DCOM after 135: an export whose rules open the RPC endpoint mapper but not the dynamic port
 * WMI moves to says so as a warning; the PlateSpin setting wmi-dynamic-ports: open adds the range,
 * which the Windows export names by the firewall's keyword (-LocalPort RPC).
 */

const EXAMPLE = `${ROOT}examples/platespin.yaml`;
const WARNING_TAIL =
  ': tcp/135 opens the RPC endpoint mapper only; WMI/DCOM then moves to a dynamic port (49152-65535 by default) that these rules do not open; set products.platespin.wmi-dynamic-ports: open to add it (Windows export: -LocalPort RPC)\n';
/** The pairs the warning names: one host's export names its own pair, the whole site's names every Windows pair. */
const PAIRS: Record<string, string> = {
  windows: 'ps-server -> win-src',
  nftables: 'ps-server -> win-src',
  csv: 'ps-server -> win-src, ps-server -> targets',
};

describe('export: the dynamic RPC port WMI moves to after 135', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-rpc-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const opened = join(dir, 'open.yaml');
  writeFileSync(
    opened,
    readFileSync(EXAMPLE, 'utf8').replace(
      /platespin: \{([^}]*)\}/,
      'platespin: {$1, wmi-dynamic-ports: open }',
    ),
  );

  for (const format of ['windows', 'nftables', 'csv'])
    it(`--to ${format}: 135 without the dynamic range is a warning on stderr`, () => {
      const args = ['export', EXAMPLE, '--to', format, ...(format === 'csv' ? [] : ['--host', 'win-src'])];
      const r = runCli(args);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stderr.endsWith(`warning: platespin ${PAIRS[format]}${WARNING_TAIL}`), r.stderr);
    });

  for (const format of ['csv', 'markdown', 'html'])
    it(`--to ${format}: the change request carries the warning too, once on stderr`, () => {
      const r = runCli(['export', EXAMPLE, '--to', format, '--network']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /tcp\/135 opens the RPC endpoint mapper only/);
      assert.equal(r.stderr.split('RPC endpoint mapper only').length - 1, 1, r.stderr);
    });

  it('a host with no RPC flow gets no warning', () => {
    const r = runCli(['export', EXAMPLE, '--to', 'windows', '--host', 'lnx-src']);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /RPC endpoint mapper/);
  });

  it("the warning's advice, once followed, silences it: every Windows pair, and the advisories for the same range", () => {
    // The whole site: the sources and the targets the warning names, for every format above.
    for (const format of ['windows', 'nftables', 'csv']) {
      const r = runCli([
        'export',
        opened,
        '--to',
        format,
        ...(format === 'windows' ? ['--host', 'win-src'] : []),
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /RPC endpoint mapper/, format);
      assert.doesNotMatch(r.stderr, /wmi-dynamic-rpc not planned/, format);
    }
    // Without the setting, the advisories still say what to add.
    const closed = runCli(['plan', EXAMPLE, '--format', 'json']);
    assert.match(closed.stderr, /advisory platespin server-to-source-wmi-dynamic-rpc not planned/);
    assert.match(closed.stderr, /advisory platespin server-to-target-wmi-dynamic-rpc not planned/);
  });

  it('wmi-dynamic-ports: open adds 49152-65535, as -LocalPort RPC in its own Windows rule, and no warning', () => {
    assert.notEqual(readFileSync(opened, 'utf8'), readFileSync(EXAMPLE, 'utf8'), 'the setting was written');
    const plan = runCli(['plan', opened, '--format', 'json']);
    assert.equal(plan.code, 0, plan.stderr);
    const flows = (
      JSON.parse(plan.stdout) as { flows: { to: { host: string }; service: string; ports: number[][] }[] }
    ).flows;
    const dyn = flows.filter((f) => f.service === 'msrpc-dynamic');
    assert.deepEqual(
      dyn.map((f) => [f.to.host, f.ports]),
      [
        ['win-src', [[49152, 65535]]],
        ['targets', [[49152, 65535]]],
      ],
    );
    const win = runCli(['export', opened, '--to', 'windows', '--host', 'win-src']);
    assert.equal(win.code, 0, win.stderr);
    assert.doesNotMatch(win.stderr, /RPC endpoint mapper/);
    const rules = win.stdout.split('\n').filter((l) => l.startsWith('New-NetFirewallRule'));
    const rpc = rules.filter((l) => / -LocalPort RPC /.test(l));
    assert.equal(rpc.length, 1, win.stdout);
    assert.match(
      rpc[0] as string,
      /-Direction Inbound -Action Allow -Protocol TCP -LocalPort RPC -RemoteAddress '10\.50\.0\.10'$/,
    );
    assert.ok(!win.stdout.includes("'49152-65535'"), 'the range is the keyword, not numbers');
    assert.ok(
      rules.some((l) => /-LocalPort '135', /.test(l)),
      'the endpoint mapper keeps its own port',
    );
    const nft = runCli(['export', opened, '--to', 'nftables', '--host', 'win-src']);
    assert.equal(nft.code, 0, nft.stderr);
    assert.match(nft.stdout, /49152-65535/);
  });
});
