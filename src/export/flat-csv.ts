import type { PortRange } from '../model/ports.js';
import { csvField } from '../plan/format.js';
import type { Generator } from './generator.js';
import type { AddressSet, ExportModel } from './model.js';

/**
 * flat-csv: one row per source, destination, protocol and port range, for firewall-management
 * import (Tufin, AlgoSec, FireMon and spreadsheets alike read one flat row per object pair). Row 1
 * is the header; addresses are single CIDRs (IPv4 and IPv6 rows are never crossed) or DNS names;
 * peers the documents leave unspecified get no row and a warning, since an import would read an
 * empty cell as "any".
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
  return { content: `${records.map((row) => row.map(csvField).join(',')).join('\r\n')}\r\n`, warnings };
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
