import type { Flow } from '../model/flow.js';
import { formatPorts, mergePortRanges, type PortRange } from '../model/ports.js';
import { palette, width } from '../util/color.js';
import { wrapIndented } from '../util/wrap.js';
import { type CheckReport, countFlows } from './engine.js';
import { type FlowResult, type PortResult, VERDICT_ORDER, type Verdict } from './verdict.js';

export type CheckFormat = 'table' | 'json' | 'junit';
export const CHECK_FORMATS: readonly CheckFormat[] = ['table', 'json', 'junit'];

/** Exceptions listed under a range summary before "and N more". */
const MAX_EXCEPTIONS = 12;
/** Exceptions shown with their detail under a range summary. */
const MAX_EXCEPTION_DETAILS = 4;
/** Ranges up to this many ports are shown port by port. */
const SMALL_RANGE = 8;

/** Consecutive ports of one address with the same verdict, as one entry (evidence of the first). */
export interface Run {
  address: string;
  ports: PortRange;
  verdict: Verdict;
  detail: string;
  evidence: PortResult['evidence'];
}

export function runs(results: readonly PortResult[]): Run[] {
  const out: Run[] = [];
  for (const r of results) {
    const last = out[out.length - 1];
    if (last && last.address === r.address && last.verdict === r.verdict && last.ports[1] + 1 === r.port)
      last.ports = [last.ports[0], r.port];
    else
      out.push({
        address: r.address,
        ports: [r.port, r.port],
        verdict: r.verdict,
        detail: r.detail,
        evidence: r.evidence,
      });
  }
  return out;
}

export interface RangeSummary {
  address: string;
  ports: PortRange;
  counts: Partial<Record<Verdict, number>>;
  /** The verdict most ports got. */
  verdict: Verdict;
  /** Ports with another verdict. */
  exceptions: PortResult[];
}

/** Per address and per port range of the flow: counts, the majority verdict and the exceptions. */
export function summarize(fr: FlowResult): RangeSummary[] {
  const out: RangeSummary[] = [];
  const ranges = fr.flow.ports;
  for (const address of fr.addresses) {
    // One pass over the results (a range may hold all 65535 ports): each into its range's bucket.
    // Results come range by range, so the range of the previous result is nearly always right.
    const buckets: PortResult[][] = ranges.map(() => []);
    let k = 0;
    for (const r of fr.results) {
      if (r.address !== address) continue;
      const range = ranges[k];
      if (!range || r.port < range[0] || r.port > range[1])
        k = ranges.findIndex(([lo, hi]) => r.port >= lo && r.port <= hi);
      if (k >= 0) (buckets[k] as PortResult[]).push(r);
      else k = 0;
    }
    for (const inRange of buckets) {
      if (!inRange.length) continue;
      const counts: Partial<Record<Verdict, number>> = {};
      for (const r of inRange) counts[r.verdict] = (counts[r.verdict] ?? 0) + 1;
      const verdict = (Object.entries(counts) as [Verdict, number][]).sort(
        (a, b) => b[1] - a[1] || VERDICT_ORDER.indexOf(a[0]) - VERDICT_ORDER.indexOf(b[0]),
      )[0]?.[0] as Verdict;
      const first = inRange[0] as PortResult;
      const last = inRange[inRange.length - 1] as PortResult;
      out.push({
        address,
        ports: [first.port, last.port],
        counts,
        verdict,
        exceptions: inRange.filter((r) => r.verdict !== verdict),
      });
    }
  }
  return out;
}

function countsText(counts: Partial<Record<Verdict, number>>): string {
  return VERDICT_ORDER.filter((v) => counts[v])
    .map((v) => `${counts[v]} ${v}`)
    .join(', ');
}

export function rangeText(s: RangeSummary): string {
  const head = `${formatPorts([s.ports])}: ${countsText(s.counts)}`;
  if (!s.exceptions.length) return head;
  const shown = s.exceptions.slice(0, MAX_EXCEPTIONS).map((e) => `${e.port} ${e.verdict}`);
  const more =
    s.exceptions.length > MAX_EXCEPTIONS ? `, and ${s.exceptions.length - MAX_EXCEPTIONS} more` : '';
  return `${head} (${shown.join(', ')}${more})`;
}

function endpoint(e: Flow['from']): string {
  return e.host ?? `any (${e.description ?? 'unspecified'})`;
}

function flowTitle(f: Flow, probed?: readonly PortRange[]): string {
  const all = formatPorts(f.ports);
  const some = probed?.length ? formatPorts(probed) : all;
  const ports = f.protocol === 'icmp' ? (f.icmpType ?? 'any') : some === all ? all : `${some} (of ${all})`;
  return `${endpoint(f.from)} -> ${endpoint(f.to)}  ${f.protocol}/${ports}  ${f.service}${f.tls && f.service !== 'https' ? ' (TLS)' : ''}`;
}

/** The ports a flow's probes covered (all of the flow's, unless --port narrowed them). */
function probedPorts(fr: FlowResult): PortRange[] {
  return mergePortRanges(fr.results.map((r) => [r.port, r.port] as PortRange));
}

function evidenceText(r: PortResult): string {
  const e = r.evidence;
  const bits: string[] = [];
  if (e.rttMs !== undefined) bits.push(`rtt ${e.rttMs} ms`);
  if (e.attempts !== undefined && e.attempts > 1) bits.push(`${e.attempts} attempts`);
  if (e.bytesSeen !== undefined) bits.push(`${e.bytesSeen} bytes seen`);
  return bits.length ? ` [${bits.join(', ')}]` : '';
}

/** The human report: one block per flow, worst verdicts painted red. */
export function checkTable(
  report: CheckReport,
  opts: { color: boolean; title?: string; columns?: number },
): string {
  const p = palette(opts.color);
  const paint = (v: Verdict) =>
    v === 'ok' || v === 'ok (responder)'
      ? p.green(v)
      : v === 'skipped'
        ? p.dim(v)
        : v === 'open-unverified' || v === 'open|filtered'
          ? p.yellow(v)
          : p.red(v);
  const pad = Math.max(...VERDICT_ORDER.map((v) => v.length)) + 1;
  const lines: string[] = [];
  lines.push(
    p.bold(
      `${opts.title ?? `portolan check: site ${report.site}, from ${report.from.join(', ') || 'nowhere'} (${report.how})`}, ${report.results.length} flow${report.results.length === 1 ? '' : 's'}`,
    ),
  );
  for (const w of report.warnings ?? []) lines.push(p.yellow(`warning: ${w}`));
  if (report.warnings?.length) {
    const sources = [...new Set(report.results.flatMap((fr) => fr.results.map((r) => r.evidence.source)))];
    const known = sources.filter((x): x is string => x !== undefined);
    if (known.length) lines.push(`probes left from ${known.join(', ')}`);
  }
  for (const fr of report.results) {
    const v = paint(fr.verdict);
    lines.push('');
    lines.push(`${v}${' '.repeat(Math.max(1, pad - width(v)))}${flowTitle(fr.flow, probedPorts(fr))}`);
    const indent = ' '.repeat(pad);
    if (fr.reason) lines.push(`${indent}${fr.reason}`);
    for (const n of fr.notes ?? []) lines.push(`${indent}note: ${n}`);
    const line = (r: PortResult, withAddress: boolean) =>
      `${indent}${withAddress ? `${r.address} ` : ''}${r.port}: ${paint(r.verdict)}: ${r.detail}${evidenceText(r)}`;
    if (fr.results.length === 1) {
      const r = fr.results[0] as PortResult;
      lines.push(`${indent}${r.address}: ${r.detail}${evidenceText(r)}`);
    } else
      for (const s of summarize(fr)) {
        const inRange = fr.results.filter(
          (r) => r.address === s.address && r.port >= s.ports[0] && r.port <= s.ports[1],
        );
        if (inRange.length <= SMALL_RANGE) {
          for (const r of inRange) lines.push(line(r, true));
          continue;
        }
        lines.push(`${indent}${s.address} ${rangeText(s)}`);
        const example = inRange.find((r) => r.verdict === s.verdict);
        if (example)
          lines.push(
            `${indent}  ${s.verdict}, e.g. ${example.port}: ${example.detail}${evidenceText(example)}`,
          );
        for (const r of s.exceptions.slice(0, MAX_EXCEPTION_DETAILS)) lines.push(`  ${line(r, false)}`);
      }
    if (fr.verdict !== 'ok' && fr.verdict !== 'ok (responder)' && fr.verdict !== 'skipped')
      lines.push(`${indent}${p.dim(`hint: ${fr.hint}`)}`);
  }
  const failed = report.results.filter((r) => r.failed).length;
  const byFlow = report.flowCounts ?? countFlows(report.results);
  lines.push('');
  if (report.interrupted)
    lines.push(
      p.red(
        `INTERRUPTED: ${report.undecided ?? 0} flow${report.undecided === 1 ? ' was' : 's were'} not decided and ${report.undecided === 1 ? 'is' : 'are'} left out`,
      ),
    );
  lines.push(
    p.bold(
      `${report.results.length} flow${report.results.length === 1 ? '' : 's'}: ${countsText(byFlow) || 'none'}; ${failed ? p.red(`${failed} failed`) : p.green('none failed')} (${(report.durationMs / 1000).toFixed(1)} s)`,
    ),
  );
  const columns = opts.columns;
  if (!columns) return `${lines.join('\n')}\n`;
  // Fit the terminal: long lines wrap on word boundaries, continuations under their own text.
  const fitted = lines.flatMap((l) => {
    if (width(l) <= columns) return [l];
    const indent = /^ */.exec(l)?.[0] ?? '';
    return wrapIndented(indent, l.slice(indent.length), columns);
  });
  return `${fitted.join('\n')}\n`;
}

/** JSON for pipelines: the plan's flow fields, the verdict, and the per-port results as runs. */
export function checkJson(report: CheckReport): string {
  const doc = {
    site: report.site,
    from: report.from,
    how: report.how,
    startedAt: report.startedAt,
    durationMs: report.durationMs,
    // Connects per second the check was capped at (--max-rate); absent when uncapped.
    ...(report.maxRate ? { maxRate: report.maxRate } : {}),
    failed: report.failed,
    ...(report.interrupted ? { interrupted: true, undecided: report.undecided ?? 0 } : {}),
    // Ports per verdict: `counts` is portCounts under its first name.
    counts: report.counts,
    portCounts: report.counts,
    flowCounts: report.flowCounts ?? countFlows(report.results),
    ...(report.warnings?.length ? { warnings: report.warnings } : {}),
    flows: report.results.map((fr) => ({
      id: fr.flow.id,
      product: fr.flow.product,
      from: fr.flow.from,
      to: fr.flow.to,
      protocol: fr.flow.protocol,
      ports: fr.flow.ports,
      service: fr.flow.service,
      tls: fr.flow.tls,
      local: fr.flow.local,
      sources: fr.flow.sources,
      verdict: fr.verdict,
      failed: fr.failed,
      addresses: fr.addresses,
      ...(fr.reason ? { reason: fr.reason } : {}),
      hint: fr.hint,
      ...(fr.notes ? { notes: fr.notes } : {}),
      summary: summarize(fr).map((s) => ({
        address: s.address,
        ports: s.ports,
        verdict: s.verdict,
        counts: s.counts,
        exceptions: s.exceptions.length,
      })),
      results: runs(fr.results),
    })),
  };
  return `${JSON.stringify(doc, null, 2).replace(/\[\s+(\d+),\s+(\d+)\s+\]/g, '[$1, $2]')}\n`;
}

/** XML 1.0 text: the five entities escaped, characters XML cannot carry dropped. */
export function xml(text: string): string {
  return text
    .replace(/[^\t\n\r\x20-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/gu, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/** JUnit XML: one test case per flow; failing verdicts are failures, skipped flows are skipped. */
export function checkJunit(report: CheckReport): string {
  const failures = report.results.filter((r) => r.failed).length;
  const skipped = report.results.filter((r) => r.verdict === 'skipped').length;
  const secs = (report.durationMs / 1000).toFixed(3);
  const attrs = `tests="${report.results.length}" failures="${failures}" errors="0" skipped="${skipped}" time="${secs}"`;
  const out: string[] = ['<?xml version="1.0" encoding="UTF-8"?>'];
  out.push(`<testsuites name="portolan check${report.interrupted ? ' (interrupted)' : ''}" ${attrs}>`);
  out.push(
    `  <testsuite name="${xml(`${report.site} from ${report.from.join(', ')}`)}" ${attrs} timestamp="${xml(report.startedAt)}">`,
  );

  for (const fr of report.results) {
    const details = [
      ...(fr.reason ? [fr.reason] : []),
      ...(fr.results.length === 1
        ? [`${fr.results[0]?.address}: ${fr.results[0]?.detail}`]
        : summarize(fr).map((s) => `${s.address} ${rangeText(s)}`)),
      `hint: ${fr.hint}`,
    ].join('\n');
    out.push(
      `    <testcase classname="${xml(`portolan.${fr.flow.product}`)}" name="${xml(flowTitle(fr.flow, probedPorts(fr)))}">`,
    );
    if (fr.failed)
      out.push(
        `      <failure type="${xml(fr.verdict)}" message="${xml(`${fr.verdict}: ${firstDetail(fr)}`)}">${xml(details)}</failure>`,
      );
    else if (fr.verdict === 'skipped') out.push(`      <skipped message="${xml(fr.reason ?? 'skipped')}"/>`);
    out.push(`      <system-out>${xml(`verdict: ${fr.verdict}\n${details}`)}</system-out>`);
    out.push('    </testcase>');
  }
  if (report.interrupted)
    out.push(
      `    <system-err>${xml(`interrupted: ${report.undecided ?? 0} flows were not decided and are left out`)}</system-err>`,
    );
  out.push('  </testsuite>');
  out.push('</testsuites>');
  return `${out.join('\n')}\n`;
}

function firstDetail(fr: FlowResult): string {
  const r = fr.results.find((x) => x.verdict === fr.verdict);
  return r ? `${r.address}:${r.port} ${r.detail}` : (fr.reason ?? fr.verdict);
}
