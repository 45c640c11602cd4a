import { getHeapStatistics } from 'node:v8';
import { parseCidr } from 'cidr-tools';
import { type ConditionContext, evaluate } from '../catalog/conditions.js';
import type { Catalogs } from '../catalog/load.js';
import {
  type Catalog,
  type CatalogEntry,
  isPageRef,
  type PeerSpec,
  type PortSpec,
  type SourceRef,
} from '../catalog/types.js';
import { InputError } from '../errors.js';
import type { Host, Inventory } from '../inventory/types.js';
import type { Endpoint, Flow, FlowSource, Plan, Warning } from '../model/flow.js';
import { formatPorts, mergePortRanges, type PortRange } from '../model/ports.js';
import { pushAll } from '../util/arrays.js';
import { hasJapaneseDocument, WARNINGS_JA } from './messages-ja.js';

export interface PlanOptions {
  /**
   * Text language. With `ja`, purposes and notes come from the catalog's `-ja` fields where present,
   * and warnings are Japanese for a product whose catalog has a Japanese document (warnings naming
   * no product: when every product of the site has one); any other warning stays English, prefixed
   * with its code in brackets (`[condition-unknown] ...`).
   */
  lang?: 'en' | 'ja';
  /**
   * Plan the catalogs' advisory entries (vendor pages beyond the documents) as flows. When false they
   * are warnings that say what to add and why. Default: the inventory's `advisories` key.
   */
  advisories?: boolean;
  /**
   * Plan only the flows from or to this inventory host (a one-host export): the other hosts are
   * still read for their roles and the catalogs' warnings, but no pair without this host is evaluated
   * (so neither are that pair's warnings). The flows are those of the whole plan that touch the host,
   * in the same order.
   */
  host?: string;
}

/** Shown with every advisory left out of a plan: how to plan it. */
export const ADVISORY_HINT = 'plan it with --advisories or the inventory key "advisories: include"';

/**
 * The share of the JavaScript heap limit (node --max-old-space-size) the plan's flows may fill: past
 * it planning stops with PlanTooLargeError rather than letting the process abort out of memory
 * (exit 134), leaving room for the output and the rules built from the flows.
 */
export const PLAN_HEAP_SHARE = 0.6;
/** How many flows are planned between two looks at the heap. */
const HEAP_CHECK_EVERY = 4096;

/** A plan that does not fit in memory: how many flows were planned before the heap ran short. */
export class PlanTooLargeError extends InputError {
  constructor(file: string, flows: number, usedBytes: number, limitBytes: number) {
    const mib = (b: number) => `${Math.round(b / 2 ** 20)} MiB`;
    super(
      `the plan is too large for memory: ${flows} flows planned so far fill ${mib(usedBytes)} of the ${mib(limitBytes)} this process may use, and the site has more (plan one host with export --host NAME, split the site into several inventories, or give Node.js more memory with NODE_OPTIONS=--max-old-space-size=MIB)`,
      { file },
    );
    this.name = 'PlanTooLargeError';
  }
}

interface Candidate {
  host: Host | null;
  role: string | null;
  description?: string;
}

/**
 * catalog x inventory -> flows. Every applicable entry, for every pair of hosts in its roles.
 * Linear in hosts and flows: hosts are indexed by role once per product. Throws PlanTooLargeError
 * when the flows fill PLAN_HEAP_SHARE of the heap.
 */
export function buildPlan(inv: Inventory, catalogs: Catalogs, opts: PlanOptions = {}): Plan {
  const warnings: Warning[] = [];
  const warned = new Set<string>();
  const focus = opts.host;
  const warn = (w: Warning) => {
    const key = `${w.code}|${w.message}`;
    if (!warned.has(key)) warnings.push(w);
    warned.add(key);
  };
  const raw: Flow[] = [];
  const focusHost = focus === undefined ? undefined : inv.hosts.find((h) => h.name === focus);
  const heapLimit = getHeapStatistics().heap_size_limit;
  const push = (f: Flow) => {
    raw.push(f);
    if (raw.length % HEAP_CHECK_EVERY === 0) {
      const used = getHeapStatistics().used_heap_size;
      if (used > heapLimit * PLAN_HEAP_SHARE)
        throw new PlanTooLargeError(inv.file, raw.length, used, heapLimit);
    }
  };
  const lang = opts.lang ?? 'en';
  const jaProducts = new Set(
    lang === 'ja' ? [...inv.products.keys()].filter((p) => hasJapaneseDocument(catalogs.get(p))) : [],
  );
  const siteJa = lang === 'ja' && inv.products.size > 0 && jaProducts.size === inv.products.size;
  /**
   * The warning text in the plan's language: Japanese where there is some, else `[code] English`;
   * English that opens with the code word ("advisory platespin ...") has that word bracketed, not
   * repeated ("[advisory] platespin ...").
   */
  const say = (code: string, product: string | undefined, en: string, ja?: () => string): string => {
    if (lang !== 'ja') return en;
    const japanese = product === undefined ? siteJa : jaProducts.has(product);
    if (japanese && ja) return ja();
    return `[${code}] ${en.startsWith(`${code} `) ? en.slice(code.length + 1) : en}`;
  };
  const withAdvisories = opts.advisories ?? inv.advisories ?? false;
  const planned = (e: CatalogEntry) => withAdvisories || e.basis !== 'advisory';
  for (const [productId, use] of inv.products) {
    const cat = catalogs.get(productId) as Catalog;
    // Hosts by role, indexed once: a plan of 100,000 hosts asks for them per entry and per pair.
    const byRole = new Map<string, Host[]>();
    for (const h of inv.hosts)
      for (const r of h.roles)
        if (r.product === productId) {
          const list = byRole.get(r.role);
          if (list) list.push(h);
          else byRole.set(r.role, [h]);
        }
    const roleSets = new Map([...byRole].map(([role, hosts]) => [role, new Set(hosts)]));
    const hostsIn = (role: string): Host[] => byRole.get(role) ?? [];
    const setting = (name: string) => use.settings[name] ?? cat.settings?.[name]?.default;
    for (const role of Object.keys(cat.roles)) {
      const used = cat.entries.filter(
        (e) => planned(e) && [e.from, e.to].some((p) => peerRole(p) === role),
      ).length;
      // With one host in focus, a missing role matters only when an entry pairs it with a role of
      // that host: the other pairs' gaps are not in that host's rules.
      const concernsFocus =
        !focusHost ||
        cat.entries.some((e) => {
          if (!planned(e)) return false;
          const [a, b] = [peerRole(e.from), peerRole(e.to)];
          const other = a === role ? b : b === role ? a : undefined;
          return other !== undefined && roleSets.get(other)?.has(focusHost) === true;
        });
      if (used && hostsIn(role).length === 0 && concernsFocus)
        warn({
          code: 'role-without-hosts',
          product: productId,
          message: say(
            'role-without-hosts',
            productId,
            `no host has role ${productId}:${role}; its ${used} catalog entr${used === 1 ? 'y yields' : 'ies yield'} no flows`,
            () => WARNINGS_JA['role-without-hosts'](productId, role, used),
          ),
        });
    }
    // With one host in focus: a role's warning only for that host, a product's only when the host
    // has a role in the product.
    const focusInProduct = !focusHost || focusHost.roles.some((r) => r.product === productId);
    for (const w of cat.warnings ?? []) {
      const hosts =
        w.role === undefined
          ? focusInProduct
            ? [null]
            : []
          : hostsIn(w.role).filter((h) => !focusHost || h === focusHost);
      for (const host of hosts) {
        const c: Candidate = { host, role: w.role ?? null };
        const ctx = context(
          cat,
          use.features,
          setting,
          c,
          c,
          (r) => hostsIn(r).length > 0,
          warn,
          productId,
          say,
        );
        if (evaluate(w.when, ctx) !== true) continue;
        warn({
          code: w.id,
          product: productId,
          ...(host ? { host: host.name } : {}),
          message: say(
            w.id,
            productId,
            `${productId}: ${w.message.replaceAll('{host}', host?.name ?? '')}`,
            w['message-ja']
              ? () => `${productId}: ${w['message-ja']?.replaceAll('{host}', host?.name ?? '')}`
              : undefined,
          ),
        });
      }
    }
    for (const entry of cat.entries) {
      const advisory = entry.basis === 'advisory';
      const leftOut: string[] = [];
      const froms = candidates(entry.from, hostsIn);
      // A one-host plan: the pairs from the host, and from anyone else to the host only.
      const focusIn = (role: string) => {
        const h = focusHost && roleSets.get(role)?.has(focusHost) ? focusHost : undefined;
        return h ? [{ host: h, role }] : [];
      };
      for (const from of froms) {
        const tos = isLocal(entry.to)
          ? from.host &&
            (!focusHost || from.host === focusHost) &&
            roleSets.get(entry.to.role)?.has(from.host)
            ? [{ host: from.host, role: entry.to.role }]
            : []
          : focusHost && from.host !== focusHost
            ? isAny(entry.to)
              ? []
              : focusIn(peerRole(entry.to) as string)
            : candidates(entry.to, hostsIn);
        for (const to of tos) {
          const ctx = context(
            cat,
            use.features,
            setting,
            from,
            to,
            (r) => hostsIn(r).length > 0,
            warn,
            productId,
            say,
          );
          const truth = evaluate(entry.when, ctx);
          if (advisory && !withAdvisories) {
            if (truth !== false) {
              const ports = resolvePorts(entry, from, to, () => {}, productId);
              const what =
                entry.protocol === 'icmp' ? (entry['icmp-type'] ?? 'any') : formatPorts(ports ?? []);
              const pair = `${from.host?.name ?? 'any'} -> ${to.host?.name ?? 'any'} ${entry.protocol} ${what}`;
              const unknown = truth === true ? '' : [...new Set(truth.unknown)].join(', ');
              leftOut.push(
                truth === true
                  ? pair
                  : jaProducts.has(productId)
                    ? WARNINGS_JA.depends(pair, unknown)
                    : `${pair} (depends on ${unknown}, not given)`,
              );
            }
            continue;
          }
          if (truth !== true) {
            if (truth !== false) {
              const who = [from.host?.name, to.host?.name].filter(Boolean).join(' -> ');
              const unknown = [...new Set(truth.unknown)].join(', ');
              // `to.facts.os` -> the destination host's fact os.
              const facts = [...new Set(truth.unknown)].flatMap((u) => {
                const m = /^(from|to)\.facts\.(.+)$/.exec(u);
                const host = m && (m[1] === 'from' ? from : to).host?.name;
                return m && host ? [{ host, fact: m[2] as string }] : [];
              });
              warn({
                code: 'condition-unknown',
                product: productId,
                ...(facts.length ? { facts } : {}),
                message: say(
                  'condition-unknown',
                  productId,
                  `${productId} entry ${entry.id} (${who}) skipped: the inventory does not give ${unknown}`,
                  () => WARNINGS_JA['condition-unknown'](productId, entry.id, who, unknown),
                ),
              });
            }
            continue;
          }
          const ports = resolvePorts(entry, from, to, warn, productId, say);
          if (ports === undefined) continue;
          push(toFlow(productId, entry, from, to, ports, opts));
        }
      }
      if (leftOut.length) {
        const page = entry.sources.find(isPageRef);
        const shown = leftOut.slice(0, 4).join('; ');
        const extra = leftOut.length - 4;
        const more = extra > 0 ? `; and ${extra} more` : '';
        warn({
          code: 'advisory',
          product: productId,
          message: say(
            'advisory',
            productId,
            `advisory ${productId} ${entry.id} not planned: add ${shown}${more}. ${entry.purpose}${page ? ` Source: ${page.title} <${page.url}>, read ${page.read}` : ''}; ${ADVISORY_HINT}.`,
            () =>
              WARNINGS_JA.advisory(
                productId,
                entry.id,
                `${shown}${extra > 0 ? WARNINGS_JA.more(extra) : ''}`,
                entry['purpose-ja'] ?? entry.purpose,
                page ? WARNINGS_JA.page(page.title, page.url, page.read) : '',
              ),
          ),
        });
      }
    }
  }
  const flows = mergeFlows(raw, true);
  raw.length = 0;
  for (const w of hostsInsideCidrs(inv.hosts, siteJa ? 'ja' : 'en', focusHost))
    warn({ ...w, message: say(w.code, undefined, w.message, () => w.message) });
  const inFlows = new Set<string | null>();
  for (const f of flows) inFlows.add(f.from.host).add(f.to.host);
  for (const h of focusHost ? [focusHost] : inv.hosts)
    if (!inFlows.has(h.name))
      warn({
        code: 'host-without-flows',
        host: h.name,
        message: say('host-without-flows', undefined, `host ${h.name} has no flows in this plan`, () =>
          WARNINGS_JA['host-without-flows'](h.name),
        ),
      });
  return { site: inv.site, flows, warnings };
}

/** A warning's text in the plan's language (see PlanOptions.lang). */
type Say = (code: string, product: string | undefined, en: string, ja?: () => string) => string;

function peerRole(p: PeerSpec): string | undefined {
  return typeof p === 'string' ? p : 'role' in p ? p.role : undefined;
}

function isAny(p: PeerSpec): boolean {
  return typeof p === 'object' && 'any' in p;
}

function isLocal(p: PeerSpec): p is { role: string; local: true } {
  return typeof p === 'object' && 'local' in p;
}

function candidates(p: PeerSpec, hostsIn: (role: string) => Host[]): Candidate[] {
  if (typeof p === 'object' && 'any' in p) return [{ host: null, role: null, description: p.any }];
  const role = peerRole(p) as string;
  return hostsIn(role).map((host) => ({ host, role }));
}

function context(
  cat: Catalog,
  features: ReadonlySet<string>,
  setting: (n: string) => string | undefined,
  from: Candidate,
  to: Candidate,
  rolePresent: (r: string) => boolean,
  warn: (w: Warning) => void,
  product: string,
  say: Say,
): ConditionContext {
  return {
    features,
    setting,
    rolePresent,
    given(side, name) {
      const c = side === 'from' ? from : to;
      return c.host?.facts[name] !== undefined;
    },
    fact(side, name) {
      const c = side === 'from' ? from : to;
      if (!c.host || !c.role) return undefined;
      const given = c.host.facts[name];
      if (given !== undefined) return given;
      const spec = cat.facts?.[c.role]?.[name];
      // A per-host override of a product setting (PlateSpin replication-direction): the setting decides.
      if (spec?.setting !== undefined) return setting(spec.setting);
      if (spec?.default !== undefined) {
        const host = c.host;
        const role = c.role;
        const dflt = spec.default;
        warn({
          code: 'fact-default',
          host: c.host.name,
          product,
          message: say(
            'fact-default',
            product,
            `host ${c.host.name} (${product}:${c.role}) does not give fact ${name}; taking the default ${spec.default}`,
            () => WARNINGS_JA['fact-default'](host.name, product, role, name, dflt),
          ),
        });
        return spec.list ? [spec.default] : spec.default;
      }
      // A list fact left out is an empty list: a guest that names no databases has none.
      return spec?.list ? [] : undefined;
    },
  };
}

function resolvePorts(
  entry: CatalogEntry,
  from: Candidate,
  to: Candidate,
  warn: (w: Warning) => void,
  product: string,
  say: Say = (_c, _p, en) => en,
): PortRange[] | undefined {
  if (entry.protocol === 'icmp') return [];
  const out: PortRange[] = [];
  for (const p of entry.ports ?? []) pushAll(out, expandPort(p, from, to, entry, warn, product, say));
  return out.length ? mergePortRanges(out) : undefined;
}

function expandPort(
  p: PortSpec,
  from: Candidate,
  to: Candidate,
  entry: CatalogEntry,
  warn: (w: Warning) => void,
  product: string,
  say: Say,
): PortRange[] {
  if (typeof p === 'number') return [[p, p]];
  if (typeof p === 'string') {
    const [lo, hi] = p.split('-').map(Number) as [number, number];
    return [[lo, hi]];
  }
  // 003: one port per mirrored drive, base + index of the letter (A = 0).
  const d = p['per-drive'];
  const host = (d.of === 'from' ? from : to).host;
  const drives = host?.facts[d.fact];
  if (!host || !Array.isArray(drives) || drives.length === 0) {
    if (host)
      warn({
        code: 'fact-missing',
        host: host.name,
        product,
        message: say(
          'fact-missing',
          product,
          `host ${host.name} does not list its ${d.fact}; ${product} entry ${entry.id} (one port per drive) yields no ports for it`,
          () => WARNINGS_JA['fact-missing'](host.name, d.fact, product, entry.id),
        ),
      });
    return [];
  }
  const first = d.first.charCodeAt(0);
  return drives
    .map((letter) => letter.toUpperCase().charCodeAt(0) - first)
    .filter((i) => i >= 0 && i <= d.last.charCodeAt(0) - first)
    .map((i) => [d.base + i, d.base + i] as PortRange);
}

function endpoint(c: Candidate): Endpoint {
  if (!c.host)
    return {
      host: null,
      role: null,
      address: null,
      ...(c.description ? { description: c.description } : {}),
    };
  return { host: c.host.name, role: c.role, address: c.host.address.text };
}

function sourceRef(s: SourceRef): FlowSource {
  if (isPageRef(s)) return { doc: s.url, ref: `${s.title} (read ${s.read})${s.ref ? `: ${s.ref}` : ''}` };
  return { doc: s.doc, ref: `${s.table} table, row ${s.row}${s.ref ? `: ${s.ref}` : ''}` };
}

/** An entry's sources as a flow cites them, built once per entry (a large plan has a flow per pair). */
const entrySources = new WeakMap<CatalogEntry, readonly FlowSource[]>();
function sourceRefs(e: CatalogEntry): readonly FlowSource[] {
  const known = entrySources.get(e);
  if (known) return known;
  const refs = e.sources.map(sourceRef);
  entrySources.set(e, refs);
  return refs;
}

function toFlow(
  product: string,
  e: CatalogEntry,
  from: Candidate,
  to: Candidate,
  ports: PortRange[],
  opts: PlanOptions,
): Flow {
  const ja = opts.lang === 'ja';
  const notes = ja && e['notes-ja']?.length ? e['notes-ja'] : (e.notes ?? []);
  return {
    id: '',
    product,
    from: endpoint(from),
    to: endpoint(to),
    protocol: e.protocol,
    ports,
    ...(e['icmp-type'] ? { icmpType: e['icmp-type'] } : {}),
    service: e.service,
    tls: e.tls ?? false,
    ...(e['dynamic-ports'] && ports.length ? { dynamicPorts: [...ports] } : {}),
    purpose: (ja ? e['purpose-ja'] : undefined) ?? e.purpose,
    sources: [...sourceRefs(e)],
    notes: [...notes],
    entries: [e.id],
    local: from.host !== null && from.host === to.host,
    ...(e.basis === 'advisory' ? { basis: 'advisory' as const } : {}),
  };
}

/**
 * Flows that differ only in the catalog row (or in their ports) become one flow: ports merged,
 * sources, purposes and notes kept. The key is product, both ends, protocol and service.
 * `own`: the flows are the caller's to change (freshly planned), so the first of each key is kept
 * and merged into rather than copied, which halves the memory a large plan needs.
 */
export function mergeFlows(raw: readonly Flow[], own = false): Flow[] {
  const byKey = new Map<string, Flow>();
  for (const f of raw) {
    const key = flowKey(f);
    const seen = byKey.get(key);
    if (!seen && own) {
      f.id = key;
      byKey.set(key, f);
      continue;
    }
    if (!seen) {
      byKey.set(key, {
        ...f,
        id: key,
        ports: [...f.ports],
        sources: [...f.sources],
        notes: [...f.notes],
        entries: [...f.entries],
        ...(f.dynamicPorts ? { dynamicPorts: [...f.dynamicPorts] } : {}),
      });
      continue;
    }
    // Freshly planned ranges are merged already: the same ranges again (the common case) leave
    // them as they are, rather than sorting a copy per duplicate.
    if (f.dynamicPorts && !(own && samePorts(seen.dynamicPorts, f.dynamicPorts)))
      seen.dynamicPorts = mergePortRanges([...(seen.dynamicPorts ?? []), ...f.dynamicPorts]);
    if (!(own && samePorts(seen.ports, f.ports))) seen.ports = mergePortRanges([...seen.ports, ...f.ports]);
    for (const s of f.sources)
      if (!seen.sources.some((x) => x.doc === s.doc && x.ref === s.ref)) seen.sources.push(s);
    for (const n of f.notes) if (!seen.notes.includes(n)) seen.notes.push(n);
    for (const id of f.entries) if (!seen.entries.includes(id)) seen.entries.push(id);
    if (!seen.purpose.includes(f.purpose)) seen.purpose = `${seen.purpose} ${f.purpose}`;
    seen.tls ||= f.tls;
  }
  return [...byKey.values()];
}

/** Whether two lists of port ranges are the same ranges in the same order. */
function samePorts(a: readonly PortRange[] | undefined, b: readonly PortRange[]): boolean {
  if (!a || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as PortRange;
    const y = b[i] as PortRange;
    if (x[0] !== y[0] || x[1] !== y[1]) return false;
  }
  return true;
}

function flowKey(f: Flow): string {
  const key = `${f.product} ${endKey(f.from)} ${endKey(f.to)} ${f.protocol} ${f.service}`;
  return f.basis ? `${key} ${f.basis}` : key;
}

function endKey(e: Endpoint): string {
  return e.host ? `${e.host}/${e.role}` : `any(${e.description ?? ''})`;
}

/**
 * A host whose address lies inside another host's CIDR: checks of the CIDR host from it probe
 * the checking host itself, and a sweep of its own ephemeral ports (Linux 32768-60999) can connect
 * a socket to itself. `check` never reports such a self-connection as open, but the inventory
 * most likely means the CIDR without this host. Warning code `address-in-cidr`; `lang` `ja` gives
 * the message in Japanese (messages-ja.ts). With `focus`, only the pairs that host is part of.
 */
export function hostsInsideCidrs(hosts: readonly Host[], lang: 'en' | 'ja' = 'en', focus?: Host): Warning[] {
  // Address ranges sorted by start, so each CIDR finds what lies inside it by binary search:
  // linear-logarithmic in hosts, where comparing every pair is quadratic on an estate.
  const ranges = hosts
    .map((h, index) => {
      if (h.address.kind === 'dns') return undefined;
      const r = parseCidr(h.address.text);
      return { h, index, version: h.address.version, start: r.start, end: r.end };
    })
    .filter((r) => r !== undefined)
    .sort((a, b) => a.version - b.version || (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const found: { net: number; index: number; w: Warning }[] = [];
  for (const [n, net] of hosts.entries()) {
    if (net.address.kind !== 'cidr') continue;
    const { start, end } = parseCidr(net.address.text);
    const version = net.address.version;
    let lo = 0;
    let hi = ranges.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const m = ranges[mid] as (typeof ranges)[number];
      if (m.version < version || (m.version === version && m.start < start)) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < ranges.length; i++) {
      const r = ranges[i] as (typeof ranges)[number];
      if (r.version !== version || r.start > end) break;
      const h = r.h;
      if (h === net || r.end > end) continue;
      if (focus && h !== focus && net !== focus) continue;
      if (h.address.kind === 'cidr' && h.address.text === net.address.text) continue;
      found.push({
        net: n,
        index: r.index,
        w: {
          code: 'address-in-cidr',
          host: h.name,
          message:
            lang === 'ja'
              ? WARNINGS_JA['address-in-cidr'](h.name, h.address.text, net.name, net.address.text)
              : `host ${h.name} (${h.address.text}) lies inside the CIDR of host ${net.name}, ${net.address.text}: probes of ${net.name} from ${h.name} reach ${h.name} itself; narrow the CIDR or accept that ${h.address.text} is probed as ${net.name}`,
        },
      });
    }
  }
  return found.sort((a, b) => a.net - b.net || a.index - b.index).map((f) => f.w);
}
