import { pushAll } from '../util/arrays.js';
import type { Generator } from './generator.js';
import { headerLines, oneLine } from './header.js';
import type { ExportModel } from './model.js';
import { siteGraph, UNSPECIFIED_CLUSTER } from './site-graph.js';

/**
 * mermaid: the site diagram as a `flowchart LR` (paste it into a ```mermaid block). One subgraph per
 * role, one edge per directed host pair labelled with protocols and ports, unspecified peers as
 * dashed stadiums, local flows (host mode) as dotted loops. IDs are generated (`n1`, `g1`); every
 * label passes through `mermaidText`, every comment through `mermaidComment`.
 */

export const MERMAID_FILE = 'site-diagram.mmd';

/** Characters mermaid shows as themselves inside a quoted label; everything else is an entity code. */
const SAFE = /[A-Za-z0-9 .,:/()_+=@*!?'-]/;

/**
 * The one escaping function for mermaid text: characters outside a small safe set become mermaid
 * entity codes (`#quot;` for `"`, `#<decimal>;` otherwise), so no text can end a quoted label, start
 * a directive (`%%{`), a markdown string (`` ` ``), HTML (`<`), or an entity code of its own (`#`).
 */
export function mermaidText(text: string): string {
  let out = '';
  for (const ch of text) {
    if (SAFE.test(ch)) out += ch;
    else if (ch === '"') out += '#quot;';
    else out += `#${ch.codePointAt(0)};`;
  }
  return out;
}

/**
 * The escaping function for the text of a `%%` comment line. Mermaid drops a comment to the end of
 * its line and decodes nothing in it, so entity codes would show as written (`#59;` for `;`) to
 * whoever reads the file: the text stays itself, on one line (oneLine), with every run of `%` cut
 * to one so no `%%{` directive or `}%%` end can form inside it.
 */
export function mermaidComment(text: string): string {
  return oneLine(text).replace(/%+/g, '%');
}

/** A quoted label: lines escaped one by one and joined with mermaid's line break. */
const label = (lines: readonly string[]): string => `"${lines.map(mermaidText).join('<br>')}"`;

export function renderMermaid(model: ExportModel): { content: string; warnings: string[] } {
  const g = siteGraph(model);
  const out = [...headerLines(model, 'mermaid').map((l) => `%% ${mermaidComment(l)}`), 'flowchart LR'];
  g.clusters.forEach((c, i) => {
    const unspecified = c.key === UNSPECIFIED_CLUSTER;
    pushAll(out, [
      `  subgraph g${i + 1}[${label([c.label])}]`,
      ...c.nodes.map((n) =>
        unspecified ? `    ${n.id}([${label(n.label)}])` : `    ${n.id}[${label(n.label)}]`,
      ),
      '  end',
    ]);
  });
  for (const e of g.edges)
    out.push(`  ${e.from.id} ${e.local ? '-.->' : '-->'}|${label(e.label)}| ${e.to.id}`);
  const open = g.nodes.filter((n) => n.kind === 'unspecified');
  if (open.length)
    out.push(
      '  classDef unspecified stroke-dasharray: 5 5',
      `  class ${open.map((n) => n.id).join(',')} unspecified`,
    );
  return { content: `${out.join('\n')}\n`, warnings: g.warnings };
}

export const generator: Generator = {
  name: 'mermaid',
  family: 'diagram',
  summary:
    'site diagram as a mermaid flowchart: hosts in one subgraph per role, edges labelled with protocol and ports',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render(model) {
    const { content, warnings } = renderMermaid(model);
    return { files: [{ path: MERMAID_FILE, content }], warnings };
  },
};
