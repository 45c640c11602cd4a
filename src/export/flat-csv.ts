import type { Flow } from '../model/flow.js';
import type { PortRange } from '../model/ports.js';
import { csvField } from '../plan/format.js';
import { pushAll } from '../util/arrays.js';
import type { Generator } from './generator.js';
import type { AddressSet, ExportModel } from './model.js';

/**
 * flat-csv: one row per source, destination, protocol and port range, for firewall-management
 * import (Tufin, AlgoSec, FireMon and spreadsheets alike read one flat row per object pair). Row 1
 * is the header; addresses are single CIDRs (IPv4 and IPv6 rows are never crossed) or DNS names;
 * peers the documents leave unspecified get no row and a warning, since an import would read an
 * empty cell as "any". A delta change request adds `remove` rows after the `allow` rows: the object
 * pairs the previous version allowed for flows that are gone (see removalRecords).
 */

export const FLAT_CSV_FILE = 'rules-flat.csv';
export const FLAT_COLUMNS = [
  'rule',
  'action',
  'source',
  'destination',
  'protocol',
  'port_low',
  'port_high',
  'icmp_type',
  'services',
  'products',
] as const;

function addresses(set: AddressSet): { text: string; family: 4 | 6 | 0 }[] {
  return [
    ...set.v4.map((text) => ({ text, family: 4 as const })),
    ...set.v6.map((text) => ({ text, family: 6 as const })),
    ...set.names.map((text) => ({ text, family: 0 as const })),
  ];
}

export function renderFlatCsv(model: ExportModel): { content: string; warnings: string[] } {
  const records: string[][] = [[...FLAT_COLUMNS]];
  const warnings: string[] = [...(model.planWarnings ?? [])];
  for (const r of model.rules) {
    if (r.src.unspecified.length || r.dst.unspecified.length)
      warnings.push(
        `rule ${r.id}: peers the documents leave unspecified get no row (${[...r.src.unspecified, ...r.dst.unspecified].join('; ')}); add their addresses`,
      );
    const products = [...new Set(r.flows.map((f) => f.product))].join(' ');
    const ranges: (PortRange | null)[] = r.protocol === 'icmp' ? [null] : r.ports;
    for (const s of addresses(r.src))
      for (const d of addresses(r.dst)) {
        // A name matches either family; two literal addresses must be of one family.
        if (s.family && d.family && s.family !== d.family) continue;
        for (const range of ranges)
          records.push([
            r.id,
            'allow',
            s.text,
            d.text,
            r.protocol,
            range ? String(range[0]) : '',
            range ? String(range[1]) : '',
            r.protocol === 'icmp' ? (r.icmpType ?? 'any') : '',
            r.services.join(' '),
            products,
          ]);
      }
  }
  pushAll(records, removalRecords(model));
  return { content: `${records.map((row) => row.map(csvField).join(',')).join('\r\n')}\r\n`, warnings };
}

/**
 * Delta change requests: `remove` rows for the object pairs of the previous version's rules (their
 * ids as that export numbered them) that the leaving flows alone needed. A pair that a staying flow
 * of the same rule still uses (same addresses, protocol and port range) gets no row.
 */
function removalRecords(model: ExportModel): string[][] {
  const out: string[][] = [];
  for (const { rule, leaving } of model.removals ?? []) {
    const leavingIds = new Set(leaving.map((f) => f.id));
    const key = (f: Flow, range: PortRange | null) =>
      `${f.from.address}|${f.to.address}|${f.protocol}|${range ? `${range[0]}-${range[1]}` : (f.icmpType ?? 'any')}`;
    const ranges = (f: Flow): (PortRange | null)[] => (f.protocol === 'icmp' ? [null] : f.ports);
    const staying = new Set(
      rule.flows.filter((f) => !leavingIds.has(f.id)).flatMap((f) => ranges(f).map((r) => key(f, r))),
    );
    const done = new Set<string>();
    for (const f of leaving) {
      if (f.from.address === null || f.to.address === null) continue;
      for (const range of ranges(f)) {
        const k = key(f, range);
        if (staying.has(k) || done.has(k)) continue;
        done.add(k);
        out.push([
          rule.id,
          'remove',
          f.from.address,
          f.to.address,
          f.protocol,
          range ? String(range[0]) : '',
          range ? String(range[1]) : '',
          f.protocol === 'icmp' ? (f.icmpType ?? 'any') : '',
          f.service,
          f.product,
        ]);
      }
    }
  }
  return out;
}

export const generator: Generator = {
  name: 'flat-csv',
  family: 'table',
  summary: 'one CSV row per source, destination, protocol and port range, for firewall-management import',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render(model) {
    const { content, warnings } = renderFlatCsv(model);
    return { files: [{ path: FLAT_CSV_FILE, content }], warnings };
  },
};
