import { mdCell } from '../plan/format.js';
import { pushAll } from '../util/arrays.js';
import {
  type ChangeRow,
  COLUMNS,
  changeRequest,
  changeTitle,
  LOCAL_IN_HOST_MODE,
  removeHeading,
} from './change-request.js';
import type { Generator } from './generator.js';
import { headerLines, oneLine } from './header.js';
import type { ExportModel } from './model.js';

/**
 * markdown: the change request as GitHub-flavoured markdown tables, every piece of user text through
 * `mdCell` from the plan's markdown (pipes and backslashes escaped, `<>&` as entities, line breaks as
 * `<br>`). The header lines open the file as HTML comments (mdCell turns `>` into `&gt;`, so no text
 * can close one) and are repeated visibly under the title for the reviewer.
 */

export const MARKDOWN_FILE = 'change-request.md';

/** The columns shown: `change` is implied by the section a row is in. */
const SHOWN = COLUMNS.map((c, i) => [c, i] as const).filter(([c]) => c !== 'change');
/** Removal rows keep `change`: it says whether the whole rule goes or only some of its flows. */
const REMOVE_SHOWN = COLUMNS.map((c, i) => [c, i] as const);

function table(rows: readonly ChangeRow[]): string[] {
  return [
    `| ${SHOWN.map(([c]) => c).join(' | ')} |`,
    `|${SHOWN.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${SHOWN.map(([, i]) => mdCell(r.cells[i] ?? '')).join(' | ')} |`),
  ];
}

export function renderMarkdown(model: ExportModel): { content: string; warnings: string[] } {
  const { rows, removals, warnings } = changeRequest(model);
  const header = headerLines(model, 'markdown').map(oneLine);
  const rules = rows.filter((r) => r.kind === 'rule');
  const local = rows.filter((r) => r.kind === 'local');
  const out = [
    ...header.map((l) => `<!-- ${mdCell(l)} -->`),
    '',
    `# ${mdCell(changeTitle(model))}`,
    '',
    ...header.map((l) => `- ${mdCell(l)}`),
    '',
    `## Rules to allow (${rules.length})`,
    '',
    ...(rules.length ? table(rules) : ['None.']),
    '',
    `## Local flows: no firewall change needed${model.mode === 'host' ? ` (${local.length})` : ''}`,
    '',
    ...(model.mode === 'network' ? [LOCAL_IN_HOST_MODE] : local.length ? table(local) : ['None.']),
  ];
  if (removals.length)
    pushAll(out, [
      '',
      `## ${removeHeading(removals.length)}`,
      '',
      `| ${REMOVE_SHOWN.map(([c]) => c).join(' | ')} |`,
      `|${REMOVE_SHOWN.map(() => '---').join('|')}|`,
      ...removals.map((r) => `| ${REMOVE_SHOWN.map(([, i]) => mdCell(r.cells[i] ?? '')).join(' | ')} |`),
    ]);
  if (warnings.length)
    pushAll(out, ['', '## Warnings and what is not covered', '', ...warnings.map((w) => `- ${mdCell(w)}`)]);
  return { content: `${out.join('\n')}\n`, warnings };
}

export const generator: Generator = {
  name: 'markdown',
  family: 'table',
  summary:
    'change-request table as markdown: one row per rule, local flows listed as "no firewall change needed"',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render(model) {
    const { content, warnings } = renderMarkdown(model);
    return { files: [{ path: MARKDOWN_FILE, content }], warnings };
  },
};
