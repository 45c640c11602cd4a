import type { Endpoint, Flow, Protocol } from '../model/flow.js';
import { formatPorts, mergePortRanges, type PortRange } from '../model/ports.js';
import { maxOf, pushAll } from '../util/arrays.js';
import { oneLine } from './header.js';
import { type ExportModel, setIsEmpty } from './model.js';

/**
 * The site diagram shared by the mermaid, dot and svg generators: hosts grouped by role, one edge
 * per directed host pair with every protocol and port between them, peers the documents leave
 * unspecified as nodes of their own, and (host mode) local flows as loops on the host. Text here is
 * plain; each generator escapes it with its own format's one escaping function.
 */

export interface GraphNode {
  /** Stable, unique, plain ASCII identifier: `n1`, `n2`, ... in cluster order. */
  id: string;
  kind: 'host' | 'unspecified';
  /** Host name, or the description of an unspecified peer. */
  name: string;
  /** The host's address as the inventory gives it (empty for an unspecified peer). */
  address: string;
  /** `product:role` for every role the host plays in these flows, sorted; the first is its cluster. */
  roles: string[];
  /** The label, one plain-text line per entry (long text wrapped at word boundaries). */
  label: string[];
}

export interface GraphCluster {
  /** `product:role`, or UNSPECIFIED_CLUSTER. */
  key: string;
  label: string;
  /** Layer, left to right: initiators first, then what they reach (cycles broken). */
  column: number;
  nodes: GraphNode[];
}

export interface GraphEdge {
  from: GraphNode;
  to: GraphNode;
  /** A flow that stays on one host (host mode): drawn as a loop, needs no firewall change. */
  local: boolean;
  /** One line per protocol: `tcp 443, 902`, `udp 123`, `icmp echo-request`; `local ` in front for a loop. */
  label: string[];
}

export interface SiteGraph {
  title: string;
  clusters: GraphCluster[];
  nodes: GraphNode[];
  edges: GraphEdge[];
  warnings: string[];
}

export const UNSPECIFIED_CLUSTER = 'unspecified';
const UNSPECIFIED_LABEL = 'unspecified peers (name them before opening)';
/** Characters per label line before wrapping: boxes stay readable in every renderer. */
export const LABEL_WIDTH = 40;

/** Words (runs of non-space) packed into lines of at most `width` characters; a longer word is cut. */
export function wrap(text: string, width = LABEL_WIDTH): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    for (let w = word; w.length; ) {
      const room = line ? width - line.length - 1 : width;
      if (w.length <= room) {
        line = line ? `${line} ${w}` : w;
        w = '';
      } else if (line) {
        out.push(line);
        line = '';
      } else {
        out.push(w.slice(0, width));
        w = w.slice(width);
      }
    }
  }
  if (line) out.push(line);
  return out.length ? out : [''];
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const PROTOCOL_ORDER: Record<Protocol, number> = { tcp: 0, udp: 1, icmp: 2 };

interface Peer {
  kind: GraphNode['kind'];
  name: string;
  address: string;
  roles: Set<string>;
}

function peerKey(e: Endpoint): string {
  return e.host === null ? `?${e.description ?? ''}` : `=${e.host}`;
}

/** Builds the diagram of an export model: the flows of every rendered rule, plus local flows. */
export function siteGraph(model: ExportModel): SiteGraph {
  const warnings: string[] = [];
  const flows: Flow[] = [];
  for (const r of model.rules) {
    // An empty side would mean "any" on a firewall; the diagram shows exactly what is rendered.
    if (setIsEmpty(r.src) || setIsEmpty(r.dst)) {
      warnings.push(
        `rule ${r.id} not drawn: its ${setIsEmpty(r.src) ? 'source' : 'destination'} address set is empty`,
      );
      continue;
    }
    pushAll(flows, r.flows);
  }
  pushAll(flows, model.localFlows);

  const peers = new Map<string, Peer>();
  for (const f of flows)
    for (const e of [f.from, f.to]) {
      const key = peerKey(e);
      const p: Peer = peers.get(key) ?? {
        kind: e.host === null ? 'unspecified' : 'host',
        name: e.host ?? (e.description ?? 'not described').replace(/\s+/g, ' ').trim(),
        address: e.address ?? '',
        roles: new Set(),
      };
      if (e.host !== null && e.role !== null) p.roles.add(`${f.product}:${e.role}`);
      peers.set(key, p);
    }

  // Clusters: a host sits in the cluster of its first role (sorted); unspecified peers in their own.
  const clusterOf = new Map<string, string>();
  for (const [key, p] of peers)
    clusterOf.set(
      key,
      p.kind === 'unspecified' ? UNSPECIFIED_CLUSTER : ([...p.roles].sort()[0] ?? 'no role'),
    );
  const columns = layers(
    [...new Set(clusterOf.values())],
    flows
      .filter((f) => !f.local)
      .map(
        (f) => [clusterOf.get(peerKey(f.from)) as string, clusterOf.get(peerKey(f.to)) as string] as const,
      ),
  );

  const clusterKeys = [...columns.keys()];
  // Peers grouped by cluster in one pass (not one scan of every peer per cluster).
  const membersOf = new Map<string, [string, Peer][]>();
  for (const entry of peers) {
    const key = clusterOf.get(entry[0]) as string;
    const list = membersOf.get(key);
    if (list) list.push(entry);
    else membersOf.set(key, [entry]);
  }
  let n = 0;
  const nodeOf = new Map<string, GraphNode>();
  const clusters: GraphCluster[] = clusterKeys.map((key) => {
    const members = (membersOf.get(key) ?? []).sort(([, a], [, b]) => cmp(a.name, b.name));
    const nodes = members.map(([k, p]) => {
      const roles = [...p.roles].sort();
      const node: GraphNode = {
        id: `n${++n}`,
        kind: p.kind,
        name: p.name,
        address: p.address,
        roles,
        label:
          p.kind === 'unspecified'
            ? wrap(p.name)
            : [
                ...wrap(p.name),
                ...(p.address ? wrap(p.address) : []),
                ...roles.slice(1).flatMap((r) => wrap(`+ ${r}`)),
              ],
      };
      nodeOf.set(k, node);
      return node;
    });
    return {
      key,
      label: key === UNSPECIFIED_CLUSTER ? UNSPECIFIED_LABEL : key,
      column: columns.get(key) ?? 0,
      nodes,
    };
  });
  const nodes = clusters.flatMap((c) => c.nodes);

  // Edges: one per directed pair of nodes, protocols in a fixed order, ports merged.
  const pairs = new Map<
    string,
    { from: GraphNode; to: GraphNode; local: boolean; byProtocol: Map<Protocol, Flow[]> }
  >();
  for (const f of flows) {
    const from = nodeOf.get(peerKey(f.from)) as GraphNode;
    const to = nodeOf.get(peerKey(f.to)) as GraphNode;
    const key = `${from.id}>${to.id}|${f.local}`;
    let e = pairs.get(key);
    if (!e) {
      e = { from, to, local: f.local, byProtocol: new Map() };
      pairs.set(key, e);
    }
    const same = e.byProtocol.get(f.protocol);
    if (same) same.push(f);
    else e.byProtocol.set(f.protocol, [f]);
  }
  const order = new Map(nodes.map((x, i) => [x.id, i]));
  const edges: GraphEdge[] = [...pairs.values()]
    .sort(
      (a, b) =>
        (order.get(a.from.id) ?? 0) - (order.get(b.from.id) ?? 0) ||
        (order.get(a.to.id) ?? 0) - (order.get(b.to.id) ?? 0) ||
        Number(a.local) - Number(b.local),
    )
    .map((e) => ({
      from: e.from,
      to: e.to,
      local: e.local,
      label: [...e.byProtocol]
        .sort(([a], [b]) => PROTOCOL_ORDER[a] - PROTOCOL_ORDER[b])
        .map(([protocol, fs]) => `${e.local ? 'local ' : ''}${protocolText(protocol, fs)}`),
    }));

  // One line, spaces collapsed: every renderer shows the title the same way.
  const title = oneLine(`${model.site}: ${scopeText(model)}`)
    .replace(/\s+/g, ' ')
    .trim();
  return { title, clusters, nodes, edges, warnings };
}

function protocolText(protocol: Protocol, flows: readonly Flow[]): string {
  if (protocol === 'icmp')
    return `icmp ${[...new Set(flows.map((f) => f.icmpType ?? 'any'))].sort().join(', ')}`;
  return `${protocol} ${formatPorts(mergePortRanges(flows.flatMap((f): PortRange[] => [...f.ports])), ', ')}`;
}

function scopeText(model: ExportModel): string {
  return model.mode === 'host' && model.host ? `host ${model.host.name}` : 'network';
}

/**
 * Columns for clusters: longest path from the initiators after breaking cycles with a depth-first
 * search (clusters that start more flows than they receive are visited first). Within a column,
 * clusters are ordered by the mean position of what feeds them, then by name. Deterministic.
 * Returns the clusters in drawing order (by column, then position) with their column.
 */
export function layers(
  keys: readonly string[],
  links: readonly (readonly [string, string])[],
): Map<string, number> {
  const succ = new Map<string, Set<string>>(keys.map((k) => [k, new Set()]));
  const score = new Map<string, number>(keys.map((k) => [k, 0]));
  for (const [a, b] of links) {
    if (a === b) continue;
    succ.get(a)?.add(b);
    score.set(a, (score.get(a) ?? 0) + 1);
    score.set(b, (score.get(b) ?? 0) - 1);
  }
  const byPriority = (a: string, b: string) => (score.get(b) ?? 0) - (score.get(a) ?? 0) || cmp(a, b);
  // Depth-first search: an edge to a cluster still on the stack closes a cycle and is dropped.
  const state = new Map<string, 'open' | 'done'>();
  const dag = new Map<string, string[]>(keys.map((k) => [k, []]));
  const finished: string[] = [];
  const visit = (k: string): void => {
    state.set(k, 'open');
    for (const s of [...(succ.get(k) ?? [])].sort(byPriority)) {
      if (state.get(s) === 'open') continue;
      dag.get(k)?.push(s);
      if (!state.has(s)) visit(s);
    }
    state.set(k, 'done');
    finished.push(k);
  };
  for (const k of [...keys].sort(byPriority)) if (!state.has(k)) visit(k);
  const column = new Map<string, number>(keys.map((k) => [k, 0]));
  for (const k of finished.reverse())
    for (const s of dag.get(k) ?? []) column.set(s, Math.max(column.get(s) ?? 0, (column.get(k) ?? 0) + 1));

  const preds = new Map<string, string[]>(keys.map((k) => [k, []]));
  for (const [k, ss] of dag) for (const s of ss) preds.get(s)?.push(k);
  const position = new Map<string, number>();
  const out = new Map<string, number>();
  const last = Math.max(0, maxOf(column.values()));
  for (let c = 0; c <= last; c++) {
    const here = keys.filter((k) => column.get(k) === c);
    const bary = (k: string) => {
      const ps = (preds.get(k) ?? []).map((p) => position.get(p)).filter((p): p is number => p !== undefined);
      return ps.length ? ps.reduce((a, b) => a + b, 0) / ps.length : Number.POSITIVE_INFINITY;
    };
    here.sort((a, b) => bary(a) - bary(b) || byPriority(a, b));
    here.forEach((k, i) => {
      position.set(k, i);
      out.set(k, c);
    });
  }
  return out;
}
