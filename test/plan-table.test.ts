import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import type { Plan } from '../src/model/flow.js';
import { planTable } from '../src/plan/format.js';
import { width } from '../src/util/color.js';
import { wrap } from '../src/util/wrap.js';
import { BIN, ROOT, runCli } from './helpers.js';

/** The plan's table as a terminal of `columns` shows it: `script` gives the CLI a real tty. */
function inTerminal(columns: number, ...args: string[]): string {
  const command = `stty cols ${columns}; node ${BIN} plan examples/mixed-site.yaml --no-color ${args.join(' ')}`;
  return execFileSync('script', ['-qc', command, '/dev/null'], { cwd: ROOT, encoding: 'utf8' }).replace(
    /\r/g,
    '',
  );
}

/** The table's own lines: from the header to the first warning or the summary. */
function tableLines(table: string): string[] {
  const lines = table.split('\n');
  const from = lines.findIndex((l) => l.startsWith('FROM'));
  const end = lines.findIndex((l, i) => i > from && (l.startsWith('warning:') || /^\S+: \d+ hosts?/.test(l)));
  return lines.slice(from, end < 0 ? undefined : end);
}

/** The cell text of the column headed `name` on each line of the table, taken from under its header. */
function column(table: string, name: string, next?: string): string[] {
  const lines = tableLines(table);
  const head = lines.find((l) => l.startsWith('FROM')) ?? '';
  const start = head.indexOf(name);
  const end = next ? head.indexOf(next) : undefined;
  return lines.filter((l) => l && !l.startsWith('FROM')).map((l) => l.slice(start, end).trim());
}

describe('the plan table fitted to a terminal', () => {
  const plan = JSON.parse(runCli(['plan', 'examples/mixed-site.yaml', '--format', 'json']).stdout) as Plan;
  const services = [...new Set(plan.flows.map((f) => f.service))];
  const hosts = [...new Set(plan.flows.flatMap((f) => [f.from.host, f.to.host]).filter(Boolean))] as string[];

  for (const columns of [80, 100]) {
    it(`mixed-site at ${columns} columns: no line wider, every service name whole, no line of a purpose starts with punctuation`, () => {
      const table = inTerminal(columns);
      const rows = table.split('\n').filter((l) => l && !l.startsWith('warning:'));
      for (const l of rows) assert.ok(width(l) <= columns, `wider than ${columns} (${width(l)}): ${l}`);
      const cells = column(table, 'SERVICE', 'PURPOSE');
      for (const s of services) assert.ok(cells.includes(s), `service ${s} is not whole in its column`);
      for (const p of column(table, 'PURPOSE'))
        assert.doesNotMatch(p, /^[,.;:)]/, `a purpose line starts with punctuation: ${p}`);
      if (columns >= 100) {
        const names = [...column(table, 'FROM', 'TO'), ...column(table, 'TO', 'PROTO')];
        for (const h of hosts)
          assert.ok(
            names.some((n) => n === h || n.startsWith(`${h} `)),
            `host ${h} is not whole`,
          );
      }
    });
  }

  it('at 80 columns the purpose keeps "PhoenixSQLGuestPlugin," with its comma and whole', () => {
    const purposes = column(inTerminal(80), 'PURPOSE');
    assert.ok(
      purposes.some((p) => /(^| )PhoenixSQLGuestPlugin,( |$)/.test(p)),
      purposes.join('\n'),
    );
  });

  it('in Japanese (--lang ja) at 80 columns: no line wider, service names whole, no line starts with 、 or 。', () => {
    const table = inTerminal(80, '--lang', 'ja');
    for (const l of table.split('\n').filter((x) => x && !x.startsWith('warning:')))
      assert.ok(width(l) <= 80, `wider than 80 (${width(l)}): ${l}`);
    const cells = column(table, 'SERVICE', 'PURPOSE');
    for (const s of services) assert.ok(cells.includes(s), `service ${s} is not whole`);
    for (const p of column(table, 'PURPOSE')) assert.doesNotMatch(p, /^[、。）」]/);
  });

  it('a terminal that reports 0 columns (no size set) gets the table of a pipe, not one squeezed to 40', () => {
    const command = `stty cols 0 rows 0; node ${BIN} plan examples/mixed-site.yaml --no-color`;
    const { COLUMNS: _columns, ...env } = process.env;
    const table = execFileSync('script', ['-qc', command, '/dev/null'], {
      cwd: ROOT,
      encoding: 'utf8',
      env,
    }).replace(/\r/g, '');
    const widest = Math.max(...tableLines(table).map((l) => width(l)));
    assert.ok(
      widest > 120,
      `the widest line is ${widest} columns:\n${tableLines(table).slice(0, 6).join('\n')}`,
    );
  });

  it('a terminal too narrow for whole names still keeps every line within it', () => {
    for (const columns of [40, 60]) {
      const table = planTable({ ...plan, warnings: [] }, 12, { color: false, columns });
      for (const l of table.split('\n').filter((x) => x && !x.startsWith('east-dc')))
        assert.ok(width(l) <= Math.max(columns, 60), `${width(l)}: ${l}`);
    }
  });
});

describe('wrap', () => {
  it('breaks on word boundaries, punctuation stays with its word, a too-long name breaks after a hyphen', () => {
    assert.deepEqual(wrap('talks to PhoenixSQLGuestPlugin, which queries VSS', 22), [
      'talks to',
      'PhoenixSQLGuestPlugin,',
      'which queries VSS',
    ]);
    assert.deepEqual(wrap('druva-sql-guest-plugin', 17), ['druva-sql-guest-', 'plugin']);
    assert.deepEqual(wrap('902,443,8000-8010', 8), ['902,443,', '8000-', '8010']);
    // A word cut because it is wider than the line: its comma never starts the next line.
    assert.deepEqual(wrap('PhoenixSQLGuestPlugin, which', 21), ['PhoenixSQLGuestPlugi', 'n, which']);
  });
});
