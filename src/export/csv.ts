import { csvField } from '../plan/format.js';
import { COLUMNS, changeRequest } from './change-request.js';
import type { Generator } from './generator.js';
import { headerLines, oneLine } from './header.js';
import type { ExportModel } from './model.js';

/**
 * csv: the change request as one RFC 4180 table (CRLF records, fields quoted by `csvField` from the
 * plan's csv, formula-leading cells defused). Row 1 is the column header, as spreadsheets and
 * import tools expect. CSV has no comments, so the generated-file lines and the warnings follow
 * the table after an empty record: `# ...` or `# warning: ...` in the first field, the others
 * empty, the same field count as every row. Rules and local flows share the table; the `change`
 * column tells them apart. A delta change request adds the previous version's rules to take out
 * after them, `change` "remove" (the whole rule) or "narrow: ..." (only the listed flows).
 */

export const CSV_FILE = 'change-request.csv';

export function renderCsv(model: ExportModel): { content: string; warnings: string[] } {
  const { rows, removals, warnings } = changeRequest(model);
  const pad = COLUMNS.slice(1).map(() => '');
  const records = [
    [...COLUMNS],
    ...rows.map((r) => r.cells),
    ...removals.map((r) => r.cells),
    ['', ...pad],
    ...headerLines(model, 'csv').map((l) => [`# ${oneLine(l)}`, ...pad]),
    ...warnings.map((w) => [`# warning: ${oneLine(w)}`, ...pad]),
  ];
  return { content: `${records.map((r) => r.map(csvField).join(',')).join('\r\n')}\r\n`, warnings };
}

export const generator: Generator = {
  name: 'csv',
  family: 'table',
  summary:
    'change-request table as CSV (RFC 4180): one row per rule, local flows marked "no firewall change"',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render(model) {
    const { content, warnings } = renderCsv(model);
    return { files: [{ path: CSV_FILE, content }], warnings };
  },
};
