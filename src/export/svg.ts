import { appendTo, maxOf } from '../util/arrays.js';
import type { Generator } from './generator.js';
import { headerLines, oneLine } from './header.js';
import { escapeXml } from './html.js';
import type { ExportModel } from './model.js';
import {
  type GraphEdge,
  type GraphNode,
  LABEL_WIDTH,
  siteGraph,
  UNSPECIFIED_CLUSTER,
  wrap,
} from './site-graph.js';

/**
 * svg: the site diagram drawn by portolan itself (no Graphviz at run time): one column per layer of
 * role clusters (initiators left), hosts as boxes inside their role's cluster, unspecified peers as
 * dashed boxes, one arrow per directed host pair labelled with protocols and ports, local flows as
 * dashed loops. A fixed-width text estimate sizes everything, so the output is deterministic. Every
 * text node, attribute value and comment passes through `escapeXml` (shared with the html page).
 */

export const SVG_FILE = 'site-diagram.svg';

const FONT = 12;
/** Average advance of a 12px sans-serif character, generous so text stays inside its box. */
const CHAR_W = 6.6;
const LABEL_FONT = 11;
const LABEL_CHAR_W = 6.1;
/** Characters per edge-label line: a label stays inside the gap between two columns. */
export const EDGE_LABEL_WIDTH = 30;
const LINE_H = 15;
const PAD = 8;
const NODE_W = Math.ceil(LABEL_WIDTH * CHAR_W) + 2 * PAD;
const CLUSTER_PAD = 12;
const CLUSTER_TITLE = 22;
const CLUSTER_W = NODE_W + 2 * CLUSTER_PAD;
const COLUMN_GAP = Math.ceil(EDGE_LABEL_WIDTH * LABEL_CHAR_W) + 48;
const NODE_GAP = 12;
const CLUSTER_GAP = 24;
const MARGIN = 20;
const TITLE_H = 36;

interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}
type Point = readonly [number, number];

const r1 = (n: number): string => String(Math.round(n * 10) / 10);
const pt = (p: Point): string => `${r1(p[0])},${r1(p[1])}`;
/** A cubic segment to q that leaves p and arrives at q horizontally, in either direction. */
const segment = (p: Point, q: Point): string =>
  `C${pt([(p[0] + q[0]) / 2, p[1]])} ${pt([(p[0] + q[0]) / 2, q[1]])} ${pt(q)}`;

function text(x: number, y: number, s: string, attrs = ''): string {
  return `<text x="${r1(x)}" y="${r1(y)}"${attrs}>${escapeXml(s)}</text>`;
}

interface Placed {
  e: GraphEdge;
  /** Where the path leaves its source and enters its destination (a side of each box). */
  start: Point;
  end: Point;
  /** The label's centre; the path runs through it. */
  lx: number;
  ly: number;
  lines: string[];
  w: number;
  h: number;
}

export function renderSvg(model: ExportModel): { content: string; warnings: string[] } {
  const g = siteGraph(model);
  const boxes = new Map<string, Box>();
  const clusterBoxes: { box: Box; label: string; unspecified: boolean }[] = [];
  const columnOf = new Map<string, number>();
  const columns = Math.max(0, maxOf(g.clusters.map((c) => c.column))) + 1;
  const columnX = (col: number) => MARGIN + col * (CLUSTER_W + COLUMN_GAP);
  let right = MARGIN + CLUSTER_W;
  let bottom = MARGIN + TITLE_H;
  for (let col = 0; col < columns; col++) {
    const x = columnX(col);
    let y = MARGIN + TITLE_H;
    for (const c of g.clusters.filter((k) => k.column === col)) {
      const top = y;
      y += CLUSTER_TITLE;
      for (const n of c.nodes) {
        const h = n.label.length * LINE_H + PAD;
        boxes.set(n.id, { x: x + CLUSTER_PAD, y, w: NODE_W, h });
        columnOf.set(n.id, col);
        y += h + NODE_GAP;
      }
      y += CLUSTER_PAD - NODE_GAP;
      clusterBoxes.push({
        box: { x, y: top, w: CLUSTER_W, h: y - top },
        label: c.label,
        unspecified: c.key === UNSPECIFIED_CLUSTER,
      });
      bottom = Math.max(bottom, y);
      right = Math.max(right, x + CLUSTER_W);
      y += CLUSTER_GAP;
    }
  }

  // Each edge's label sits in the gap beside its source (to the right; to the left for an edge back
  // to an earlier column) and the path runs source -> label -> destination. Labels sharing a gap are
  // packed top to bottom, so none covers another.
  const box = (n: GraphNode) => boxes.get(n.id) as Box;
  const gaps = new Map<number, Placed[]>();
  const placed: Placed[] = g.edges.map((e) => {
    const a = box(e.from);
    const b = box(e.to);
    const ca = columnOf.get(e.from.id) ?? 0;
    const cb = columnOf.get(e.to.id) ?? 0;
    const ay = a.y + a.h / 2;
    const by = b.y + b.h / 2;
    const back = !e.local && cb < ca;
    const gap = back ? ca - 1 : ca;
    const lx = columnX(gap) + CLUSTER_W + COLUMN_GAP / 2;
    const start: Point = e.local ? [a.x + a.w, ay - 6] : back ? [a.x, ay] : [a.x + a.w, ay];
    const end: Point = e.local ? [a.x + a.w, ay + 6] : cb > ca ? [b.x, by] : [b.x + b.w, by];
    const along = end[0] === start[0] ? 0.5 : Math.min(1, Math.max(0, (lx - start[0]) / (end[0] - start[0])));
    const lines = e.label.flatMap((l) => wrap(l, EDGE_LABEL_WIDTH));
    const p: Placed = {
      e,
      start,
      end,
      lx,
      ly: start[1] + (end[1] - start[1]) * along,
      lines,
      w: maxOf(lines.map((l) => l.length)) * LABEL_CHAR_W + 8,
      h: lines.length * (LABEL_FONT + 3) + 4,
    };
    appendTo(gaps, gap, p);
    return p;
  });
  for (const inGap of gaps.values()) {
    let cursor = Number.NEGATIVE_INFINITY;
    for (const p of [...inGap].sort((x, y) => x.ly - y.ly)) {
      const top = Math.max(p.ly - p.h / 2, cursor + 4);
      p.ly = top + p.h / 2;
      cursor = top + p.h;
      bottom = Math.max(bottom, cursor);
      right = Math.max(right, p.lx + p.w / 2);
    }
  }
  // Spread the ends that share a side of a box over its height, ordered by where their labels sit,
  // so arrows into one host stay apart.
  const ends = new Map<string, { p: Placed; which: 'start' | 'end'; toward: number }[]>();
  placed.forEach((p, i) => {
    for (const which of ['start', 'end'] as const) {
      const node = which === 'start' ? p.e.from : p.e.to;
      const side = p[which][0] === box(node).x ? 'left' : 'right';
      const key = `${node.id}|${side}`;
      // A loop's two ends keep their order: out above, back in below.
      const toward = p.ly + (p.e.local ? (which === 'start' ? -0.5 : 0.5) : 0) + i * 1e-6;
      appendTo(ends, key, { p, which, toward });
    }
  });
  for (const [key, list] of ends) {
    const b = boxes.get(key.slice(0, key.indexOf('|'))) as Box;
    list.sort((x, y) => x.toward - y.toward);
    list.forEach(({ p, which }, i) => {
      p[which] = [p[which][0], b.y + 4 + ((b.h - 8) * (i + 1)) / (list.length + 1)];
    });
  }
  const width = Math.max(right + MARGIN, 480);
  const height = bottom + MARGIN;
  const data = (e: GraphEdge) => ` data-from="${escapeXml(e.from.name)}" data-to="${escapeXml(e.to.name)}"`;

  const out = [
    ...headerLines(model, 'svg').map((l) => `<!-- ${escapeXml(oneLine(l))} -->`),
    `<svg xmlns="http://www.w3.org/2000/svg" width="${r1(width)}" height="${r1(height)}" viewBox="0 0 ${r1(width)} ${r1(height)}" font-family="Helvetica, Arial, sans-serif" font-size="${FONT}">`,
    `<title>${escapeXml(g.title)}</title>`,
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#41546b"/></marker></defs>',
    `<rect width="${r1(width)}" height="${r1(height)}" fill="#ffffff"/>`,
    text(MARGIN, MARGIN + 16, g.title, ' class="title" font-size="16" font-weight="bold"'),
  ];
  for (const c of clusterBoxes) {
    const b = c.box;
    out.push(
      '<g class="cluster">',
      `<rect x="${r1(b.x)}" y="${r1(b.y)}" width="${r1(b.w)}" height="${r1(b.h)}" rx="6" fill="#eef2f6" stroke="#9aa8b6"${c.unspecified ? ' stroke-dasharray="5 4"' : ''}/>`,
      text(b.x + CLUSTER_PAD, b.y + 16, c.label, ' font-weight="bold"'),
      '</g>',
    );
  }
  for (const p of placed) {
    const mid: Point = [p.lx, p.ly];
    out.push(
      `<g class="edge"${data(p.e)}>`,
      `<path d="M${pt(p.start)} ${segment(p.start, mid)} ${segment(mid, p.end)}" fill="none" stroke="#41546b" stroke-width="1.2"${p.e.local ? ' stroke-dasharray="5 4"' : ''} marker-end="url(#arrow)"/>`,
      '</g>',
    );
  }
  for (const n of g.nodes) {
    const b = box(n);
    const open = n.kind === 'unspecified';
    out.push(
      `<g class="node ${n.kind}" data-name="${escapeXml(n.name)}">`,
      `<rect x="${r1(b.x)}" y="${r1(b.y)}" width="${r1(b.w)}" height="${r1(b.h)}" rx="${open ? 14 : 4}" fill="#ffffff" stroke="#41546b"${open ? ' stroke-dasharray="5 4"' : ''}/>`,
      ...n.label.map((l, i) =>
        text(b.x + b.w / 2, b.y + PAD / 2 + (i + 1) * LINE_H - 3, l, ' text-anchor="middle"'),
      ),
      '</g>',
    );
  }
  for (const p of placed) {
    const top = p.ly - p.h / 2;
    out.push(
      `<g class="edge-label"${data(p.e)}>`,
      `<rect x="${r1(p.lx - p.w / 2)}" y="${r1(top)}" width="${r1(p.w)}" height="${r1(p.h)}" rx="3" fill="#ffffff" stroke="#c5ced8"/>`,
      ...p.lines.map((l, i) =>
        text(
          p.lx,
          top + 2 + (i + 1) * (LABEL_FONT + 3) - 3,
          l,
          ` text-anchor="middle" font-size="${LABEL_FONT}"`,
        ),
      ),
      '</g>',
    );
  }
  out.push('</svg>');
  return { content: `${out.join('\n')}\n`, warnings: g.warnings };
}

export const generator: Generator = {
  name: 'svg',
  family: 'diagram',
  summary:
    'site diagram as a standalone SVG drawn by portolan (no Graphviz needed): role columns, labelled arrows',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render(model) {
    const { content, warnings } = renderSvg(model);
    return { files: [{ path: SVG_FILE, content }], warnings };
  },
};
