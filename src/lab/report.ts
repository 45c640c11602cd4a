import { formatPorts } from '../model/ports.js';
import { xml } from '../probe/report.js';
import { maxOf } from '../util/arrays.js';
import { counted } from '../util/plural.js';
import type { AblateReport } from './ablate.js';
import type { FlowOutcome, UnplannedOutcome, VerifyReport } from './verify.js';

/** `lab verify` output: a host x host matrix on a terminal, JSON, JUnit and a self-contained HTML/SVG page. */

export type LabFormat = 'table' | 'json' | 'junit' | 'html';
export const LAB_FORMATS: readonly LabFormat[] = ['table', 'json', 'junit', 'html'];

export interface Cell {
  from: string;
  to: string;
  planned: number;
  failed: number;
  unplanned: number;
  /** Unplanned probes the firewall let through (open or closed). */
  leaked: number;
}

/** One cell per ordered pair (rows: source, columns: target; the diagonal holds local flows). */
export function matrix(r: VerifyReport): Cell[][] {
  return r.hosts.map((s) =>
    r.hosts.map((t) => {
      const flows = r.flows.filter((f) => f.from === s.name && f.to === t.name);
      const probes = r.unplanned.filter((u) => u.from === s.name && u.to === t.name);
      return {
        from: s.name,
        to: t.name,
        planned: flows.length,
        failed: flows.filter((f) => f.failed).length,
        unplanned: probes.length,
        leaked: probes.filter((u) => u.result !== 'blocked').length,
      };
    }),
  );
}

export function cellText(c: Cell): string {
  const parts: string[] = [];
  if (c.planned) parts.push(c.failed ? `FAIL ${c.failed}/${c.planned}` : `ok ${c.planned}`);
  if (c.leaked) parts.push(`LEAK ${c.leaked}`);
  if (!parts.length) return c.unplanned ? '-' : c.from === c.to ? '' : '.';
  return parts.join(' ');
}

function flowLine(f: FlowOutcome): string {
  return `${f.from} -> ${f.to}${f.local ? ' (local)' : ''}  ${f.protocol}/${formatPorts(f.ports)}  ${f.service}`;
}

function rows(f: FlowOutcome): string {
  return f.sources.map((s) => `${s.doc} ${s.ref}`).join('; ');
}

function summary(r: VerifyReport): string {
  const failed = r.flows.filter((f) => f.failed).length;
  const counts = new Map<string, number>();
  for (const f of r.flows) counts.set(f.verdict, (counts.get(f.verdict) ?? 0) + 1);
  const verdicts = [...counts].map(([v, n]) => `${n} ${v}`).join(', ');
  const leaked = r.unplanned.filter((u) => u.result !== 'blocked').length;
  const pairs = new Set(r.unplanned.map((u) => `${u.from}>${u.to}`)).size;
  return [
    `${r.flows.length} planned flows: ${verdicts || 'none'}; ${failed} failed`,
    `${r.unplanned.length} unplanned probes${r.exhaustive ? ' (exhaustive)' : ' (sample)'} over ${pairs} pairs: ${leaked ? `${leaked} NOT blocked` : 'all blocked'}`,
    r.notProbed.length ? `${r.notProbed.length} planned flows not probed (unspecified peers, ICMP)` : '',
    `(${(r.durationMs / 1000).toFixed(1)} s)`,
  ]
    .filter(Boolean)
    .join('; ');
}

export function labTable(r: VerifyReport, opts: { color: boolean }): string {
  const paint = (code: string, s: string) => (opts.color ? `\x1b[${code}m${s}\x1b[0m` : s);
  const m = matrix(r);
  const names = r.hosts.map((h) => h.name);
  const first = Math.max(9, maxOf(names.map((n) => n.length)));
  const widths = names.map((n, j) =>
    Math.max(n.length, maxOf(m.map((row) => cellText(row[j] as Cell).length))),
  );
  const out: string[] = [
    `portolan lab verify: lab ${r.lab}, site ${r.site}, ${counted(r.hosts.length, 'host')} (rows: from, columns: to)`,
    '',
    `${'from \\ to'.padEnd(first)}  ${names.map((n, j) => n.padEnd(widths[j] as number)).join('  ')}`,
  ];
  m.forEach((row, i) => {
    const cells = row.map((c, j) => {
      const t = cellText(c).padEnd(widths[j] as number);
      return c.failed || c.leaked ? paint('31', t) : c.planned ? paint('32', t) : t;
    });
    out.push(`${(names[i] as string).padEnd(first)}  ${cells.join('  ')}`);
  });
  out.push(
    '',
    'ok N: N planned flows passed   FAIL k/N: k of them failed   -: no planned flow, sampled ports blocked',
    'LEAK k: k unplanned probes got through   .: not probed in this run',
  );
  const failing = r.flows.filter((f) => f.failed);
  if (failing.length) out.push('', 'failing flows:');
  for (const f of failing) {
    out.push(`  ${paint('31', f.verdict.padEnd(15))} ${flowLine(f)}`);
    if (f.expectedFailure) out.push(`                  expected: ${f.expectedFailure}`);
    if (f.reason) out.push(`                  ${f.reason}`);
    for (const x of f.results.filter((x) => x.verdict === f.verdict).slice(0, 2))
      out.push(`                  ${x.address} ${formatPorts([x.ports])}: ${x.detail}`);
    out.push(`                  catalog: ${f.product}: ${rows(f)}`);
  }
  const leaks = r.unplanned.filter((u) => u.result !== 'blocked');
  if (leaks.length) out.push('', 'unplanned ports that were not blocked:');
  for (const u of leaks)
    out.push(
      `  ${paint('31', u.result.padEnd(8))} ${u.from} -> ${u.to} ${u.protocol}/${u.port} (${u.address}): ${u.detail}`,
    );
  for (const e of r.errors) out.push(`error: ${e}`);
  out.push('', summary(r));
  return `${out.join('\n')}\n`;
}

export function labJson(r: VerifyReport): string {
  return `${JSON.stringify({ ...r, matrix: matrix(r).flat() }, null, 2)}\n`;
}

export function labJunit(r: VerifyReport): string {
  const failing = r.flows.filter((f) => f.failed).length;
  const pairs = new Map<string, UnplannedOutcome[]>();
  for (const u of r.unplanned)
    pairs.set(`${u.from} -> ${u.to}`, [...(pairs.get(`${u.from} -> ${u.to}`) ?? []), u]);
  const leakedPairs = [...pairs.values()].filter((l) => l.some((u) => u.result !== 'blocked')).length;
  const out = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="${xml(`portolan lab ${r.lab}`)}" tests="${r.flows.length + pairs.size}" failures="${failing + leakedPairs}" time="${(r.durationMs / 1000).toFixed(3)}">`,
    `  <testsuite name="planned flows" tests="${r.flows.length}" failures="${failing}">`,
  ];
  for (const f of r.flows) {
    const name = xml(`${flowLine(f)}: ${f.verdict}`);
    out.push(`    <testcase classname="${xml(`${r.site}.${f.from}`)}" name="${name}">`);
    if (f.failed)
      out.push(
        `      <failure message="${xml(f.verdict)}">${xml([f.expectedFailure ? `expected: ${f.expectedFailure}` : '', f.reason ?? '', f.hint ?? '', `catalog: ${rows(f)}`].filter(Boolean).join('\n'))}</failure>`,
      );
    out.push('    </testcase>');
  }
  out.push(
    '  </testsuite>',
    `  <testsuite name="unplanned ports blocked" tests="${pairs.size}" failures="${leakedPairs}">`,
  );
  for (const [pair, list] of pairs) {
    const leaks = list.filter((u) => u.result !== 'blocked');
    out.push(
      `    <testcase classname="${xml(`${r.site}.unplanned`)}" name="${xml(`${pair}: ${counted(list.length, 'port')}`)}">`,
    );
    if (leaks.length)
      out.push(
        `      <failure message="not blocked">${xml(leaks.map((u) => `${u.protocol}/${u.port}: ${u.result} (${u.detail})`).join('\n'))}</failure>`,
      );
    out.push('    </testcase>');
  }
  out.push('  </testsuite>', '</testsuites>');
  return `${out.join('\n')}\n`;
}

/** One page, no scripts or external resources: the matrix as SVG (hover a cell for its flows), then the failures. */
export function labHtml(r: VerifyReport): string {
  const m = matrix(r);
  const names = r.hosts.map((h) => h.name);
  const cell = 64;
  const label = Math.max(90, maxOf(names.map((n) => n.length * 7 + 12)));
  const size = label + names.length * cell;
  const svg: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${size + 10}" height="${size + 10}" viewBox="0 0 ${size + 10} ${size + 10}" font-family="sans-serif" font-size="11">`,
  ];
  names.forEach((n, i) => {
    svg.push(
      `<text x="${label - 6}" y="${label + i * cell + cell / 2 + 4}" text-anchor="end">${xml(n)}</text>`,
    );
    const x = label + i * cell + cell / 2;
    svg.push(`<text x="${x}" y="${label - 6}" transform="rotate(-45 ${x} ${label - 6})">${xml(n)}</text>`);
  });
  for (const [i, row] of m.entries())
    for (const [j, c] of row.entries()) {
      const fill =
        c.failed || c.leaked ? '#e05d5d' : c.planned ? '#5cb85c' : c.unplanned ? '#dfe6ee' : '#ffffff';
      const flows = r.flows.filter((f) => f.from === c.from && f.to === c.to);
      const tip = [
        `${c.from} -> ${c.to}`,
        ...flows.map(
          (f) =>
            `${f.verdict}: ${f.protocol}/${formatPorts(f.ports)} ${f.service}${f.reason ? ` (${f.reason})` : ''}`,
        ),
        c.unplanned ? `${c.unplanned} unplanned probes, ${c.leaked} not blocked` : '',
      ].filter(Boolean);
      const x = label + j * cell;
      const y = label + i * cell;
      svg.push(
        `<g><title>${xml(tip.join('\n'))}</title><rect x="${x}" y="${y}" width="${cell - 2}" height="${cell - 2}" fill="${fill}" stroke="#999"/>` +
          `<text x="${x + cell / 2 - 1}" y="${y + cell / 2 + 4}" text-anchor="middle">${xml(cellText(c))}</text></g>`,
      );
    }
  svg.push('</svg>');
  const failing = r.flows.filter((f) => f.failed);
  const leaks = r.unplanned.filter((u) => u.result !== 'blocked');
  const tr = (cells: string[]) => `<tr>${cells.map((c) => `<td>${xml(c)}</td>`).join('')}</tr>`;
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${xml(`portolan lab ${r.lab}: ${r.site}`)}</title>
<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}.bad{color:#b00}</style>
</head><body>
<h1>${xml(`lab ${r.lab}: site ${r.site}`)}</h1>
<p>${xml(summary(r))}</p>
<p>Rows: from, columns: to. Green: every planned flow passed; red: a planned flow failed or an unplanned port got through; grey: no planned flow and the sampled ports were blocked.</p>
${svg.join('\n')}
<h2>Failing flows (${failing.length})</h2>
<table><tr><th>verdict</th><th>flow</th><th>why</th><th>catalog rows</th></tr>
${failing.map((f) => tr([f.verdict, flowLine(f), [f.expectedFailure ? `expected: ${f.expectedFailure}` : '', f.reason ?? ''].filter(Boolean).join(' '), `${f.product}: ${rows(f)}`])).join('\n')}
</table>
<h2>Unplanned ports not blocked (${leaks.length})</h2>
<table><tr><th>result</th><th>from</th><th>to</th><th>port</th><th>detail</th></tr>
${leaks.map((u) => tr([u.result, u.from, u.to, `${u.protocol}/${u.port}`, u.detail])).join('\n')}
</table>
</body></html>
`;
}

export function ablateTable(r: AblateReport): string {
  const out = [`portolan lab ablate: lab ${r.lab}, site ${r.site}, ${counted(r.rules.length, 'rule')}`, ''];
  for (const x of r.rules) {
    const head = `${x.host}  ${x.rule}  ${x.protocol}/${x.ports}  from ${x.sources.join(', ') || 'unspecified peers'}`;
    if (x.status === 'needed') {
      out.push(`needed     ${head}`);
      for (const f of x.breaks)
        out.push(
          `             breaks ${f.verdict}: ${f.from} -> ${f.to} ${f.protocol}/${formatPorts(f.ports)} ${f.service}  [${f.product}: ${f.sources.map((s) => `${s.doc} ${s.ref}`).join('; ')}]`,
        );
    } else out.push(`${x.status.padEnd(10)} ${head}${x.note ? `\n             ${x.note}` : ''}`);
  }
  if (r.failingBefore.length)
    out.push(
      '',
      `already failing before any rule was removed (not counted against a rule): ${r.failingBefore.join('; ')}`,
    );
  if (r.errors.length) out.push('', ...r.errors.map((e) => `error: ${e}`));
  const n = (s: string) => r.rules.filter((x) => x.status === s).length;
  out.push(
    '',
    `${n('needed')} needed, ${n('redundant')} redundant, ${n('untestable')} not testable in the lab; ${r.fullRanges ? 'ranges in full' : 'ranges sampled'} (${(r.durationMs / 1000).toFixed(1)} s)`,
  );
  return `${out.join('\n')}\n`;
}

export function ablateJson(r: AblateReport): string {
  return `${JSON.stringify(r, null, 2)}\n`;
}
