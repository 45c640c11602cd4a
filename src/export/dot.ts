import { pushAll } from '../util/arrays.js';
import type { Generator } from './generator.js';
import { headerLines, oneLine } from './header.js';
import type { ExportModel } from './model.js';
import { type GraphNode, siteGraph, UNSPECIFIED_CLUSTER } from './site-graph.js';

/**
 * dot: the site diagram for Graphviz (`dot -Tsvg site-diagram.dot > site.svg`). Hosts are grouped in
 * one cluster per role, left to right; each edge is a directed host pair labelled with its protocols
 * and ports; unspecified peers are dashed ellipses; local flows (host mode) are dashed loops. Every
 * ID and string is double-quoted and passes through `dotEscape`, comments included.
 */

export const DOT_FILE = 'site-diagram.dot';

/**
 * The one escaping function for DOT text inside double quotes (and `//` comments): `\` and `"`
 * backslash-escaped, so neither a quote nor a label escape such as `\N` or `\l` comes from user
 * text; `&` as `&amp;` (Graphviz decodes entities in every string); a line break as the label
 * break `\n`; other control characters as U+FFFD.
 */
export function dotEscape(text: string): string {
  return text
    .replace(/\r\n?/g, '\n')
    .replace(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/g, '\ufffd')
    .replace(/[\\"]/g, (c) => `\\${c}`)
    .replace(/&/g, '&amp;')
    .replace(/\n/g, '\\n');
}

const q = (text: string): string => `"${dotEscape(text)}"`;

/** The DOT ID of a node: the host name, or `unspecified peer N` (a space keeps it from any host name). */
export function dotId(node: GraphNode, unspecifiedIndex: number): string {
  return node.kind === 'host' ? node.name : `unspecified peer ${unspecifiedIndex}`;
}

export function renderDot(model: ExportModel): { content: string; warnings: string[] } {
  const g = siteGraph(model);
  const ids = new Map<string, string>();
  let u = 0;
  for (const n of g.nodes) ids.set(n.id, dotId(n, n.kind === 'unspecified' ? ++u : 0));
  const id = (n: GraphNode) => q(ids.get(n.id) as string);
  const out = [
    ...headerLines(model, 'dot').map((l) => `// ${dotEscape(oneLine(l))}`),
    `digraph ${q('portolan')} {`,
    `  graph [rankdir=LR, label=${q(g.title)}, labelloc=t, fontname=${q('Helvetica')}, fontsize=14, nodesep=0.3, ranksep=1.2, newrank=true];`,
    `  node [shape=box, style=${q('rounded,filled')}, fillcolor=${q('#ffffff')}, color=${q('#41546b')}, fontname=${q('Helvetica')}, fontsize=10];`,
    `  edge [color=${q('#41546b')}, fontname=${q('Helvetica')}, fontsize=9];`,
  ];
  g.clusters.forEach((c, i) => {
    const unspecified = c.key === UNSPECIFIED_CLUSTER;
    pushAll(out, [
      `  subgraph ${q(`cluster ${i + 1}`)} {`,
      `    label=${q(c.label)}; style=${q(unspecified ? 'dashed,rounded' : 'rounded,filled')}; fillcolor=${q('#eef2f6')}; color=${q('#9aa8b6')};`,
      ...c.nodes.map(
        (n) =>
          `    ${id(n)} [label=${q(n.label.join('\n'))}${unspecified ? `, shape=ellipse, style=${q('dashed,filled')}` : ''}];`,
      ),
      '  }',
    ]);
  });
  for (const e of g.edges)
    out.push(
      `  ${id(e.from)} -> ${id(e.to)} [label=${q(e.label.join('\n'))}${e.local ? `, style=dashed` : ''}];`,
    );
  out.push('}');
  return { content: `${out.join('\n')}\n`, warnings: g.warnings };
}

export const generator: Generator = {
  name: 'dot',
  family: 'diagram',
  summary: 'site diagram for Graphviz: hosts clustered by role, edges labelled with protocol and ports',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render(model) {
    const { content, warnings } = renderDot(model);
    return { files: [{ path: DOT_FILE, content }], warnings };
  },
};
