import { getHeapStatistics } from 'node:v8';
import { parseCidr } from 'cidr-tools';
import { type ConditionContext, evaluate, type Truth } from '../catalog/conditions.js';
import type { Catalogs } from '../catalog/load.js';
import {
  type Catalog,
  type CatalogEntry,
  type Condition,
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

/** How many host pairs an advisory left out of a plan names; the rest are counted ("and N more"). */
const ADVISORY_PAIRS_SHOWN = 4;

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

/**
 * One side of a candidate pair: an inventory host in one of its roles, or a peer the documents leave
 * unspecified (`host` null). Built once per product and role, so the flows of a host share one
 * endpoint object and one key.
 */
interface Candidate {
  host: Host | null;
  role: string | null;
  /** The flow endpoint of this side, shared by every flow from or to it. */
  endpoint: Endpoint;
  /** The endpoint's part of a flow id (endKey). */
  key: string;
  /**
   * Condition signatures by fact-name list (see Signatures), filled as entries ask; -1 where not
   * worked out yet (a list without holes, one kind of array for every candidate).
   */
  sigs: number[];
  /** Set to a plan's mark once the plan has a flow from or to this side (UNMARKED before). */
  mark: object;
}

/** The mark of a candidate no plan has a flow from or to yet: a plan's mark is another `{}`. */
const UNMARKED = {};

/** A catalog default a condition took for a host that does not give the fact (a fact-default warning). */
interface DefaultTaken {
  side: 'from' | 'to';
  role: string;
  name: string;
  value: string;
}

/** What a condition list gave for one pair of fact signatures, with the defaults it took on the way. */
interface Outcome {
  truth: Truth;
  taken: readonly DefaultTaken[];
}

const NO_DEFAULTS: readonly DefaultTaken[] = [];

/**
 * catalog x inventory -> flows. Every applicable entry, for every pair of hosts in its roles.
 * Linear in hosts and flows: hosts are indexed by role once per product, and an entry's conditions
 * are evaluated once per distinct pair of the facts they read (the rest of a pair's outcome is the
 * same, defaults and all). Throws PlanTooLargeError when the flows fill PLAN_HEAP_SHARE of the heap.
 * The flows of one plan share their endpoint objects (per host and role) and, until a merge
 * replaces them, their port, source, note and entry lists: copy one before changing it.
 */
export function buildPlan(inv: Inventory, catalogs: Catalogs, opts: PlanOptions = {}): Plan {
  const warnings: Warning[] = [];
  const warned = new Set<string>();
  const focus = opts.host;
  const warn = (w: Warning) => {
    const key = `${w.code}|${w.message}`;
    if (!warned.has(key)) {
      warnings.push(w);
      warned.add(key);
    }
  };
  // Flows are merged as they are planned (mergeFlows): the first flow of each id is kept and the
  // later ones folded into it, so a duplicate is never held, nor made.
  const flows: Flow[] = [];
  // The first flow of each id among those another entry can plan again (see mergeKey).
  const byId = new Map<string, Flow>();
  const merges = new Merges();
  let planned = 0;
  const focusHost = focus === undefined ? undefined : inv.hosts.find((h) => h.name === focus);
  const heapLimit = getHeapStatistics().heap_size_limit;
  /** Counts a planned flow (kept or merged), looking at the heap every HEAP_CHECK_EVERY. */
  const count = () => {
    if (++planned % HEAP_CHECK_EVERY === 0) {
      const used = getHeapStatistics().used_heap_size;
      if (used > heapLimit * PLAN_HEAP_SHARE) throw new PlanTooLargeError(inv.file, planned, used, heapLimit);
    }
  };
  // The hosts some flow is from or to, added as their candidates' first flows are kept (a
  // candidate holds `mark` once its host is in).
  const inFlows = new Set<string | null>();
  const mark = {};
  /** Keeps a flow new to the plan, from candidate `from` to `to`. */
  const keep = (f: Flow, from: Candidate, to: Candidate) => {
    flows.push(f);
    if (from.mark !== mark) {
      from.mark = mark;
      inFlows.add(from.endpoint.host);
    }
    if (to.mark !== mark) {
      to.mark = mark;
      inFlows.add(to.endpoint.host);
    }
    count();
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
  const isPlanned = (e: CatalogEntry) => withAdvisories || e.basis !== 'advisory';
  // Hosts by product and role, indexed once: a plan of 100,000 hosts asks for them per entry and
  // per pair.
  const byProduct = new Map<string, Map<string, Host[]>>();
  for (const h of inv.hosts)
    for (const r of h.roles) {
      let byRole = byProduct.get(r.product);
      if (!byRole) {
        byRole = new Map();
        byProduct.set(r.product, byRole);
      }
      const list = byRole.get(r.role);
      if (list) list.push(h);
      else byRole.set(r.role, [h]);
    }
  for (const [productId, use] of inv.products) {
    const cat = catalogs.get(productId) as Catalog;
    const byRole = byProduct.get(productId) ?? new Map<string, Host[]>();
    const hasRole = (h: Host, role: string) =>
      h.roles.some((r) => r.product === productId && r.role === role);
    const hostsIn = (role: string): Host[] => byRole.get(role) ?? [];
    const rolePresent = (r: string) => hostsIn(r).length > 0;
    const setting = (name: string) => use.settings[name] ?? cat.settings?.[name]?.default;
    // The candidates of each role (and of one host in a role), built once for the whole product;
    // one host's alone where a one-host plan needs no other host of the role.
    const sides = new Map<string, Map<Host, Candidate>>();
    const singles = new Map<string, Map<Host, Candidate>>();
    // The candidates of each role in host order, beside `sides`.
    const inOrder = new Map<string, Candidate[]>();
    const sideOf = (role: string): Map<Host, Candidate> => {
      let side = sides.get(role);
      if (!side) {
        const one = singles.get(role);
        const hosts = hostsIn(role);
        const list: Candidate[] = [];
        side = new Map();
        for (const host of hosts) {
          // A host that gives a role twice has one candidate in it.
          if (side.has(host)) continue;
          const c = one?.get(host) ?? hostCandidate(host, role);
          side.set(host, c);
          list.push(c);
        }
        sides.set(role, side);
        inOrder.set(role, list);
      }
      return side;
    };
    const candidatesOf = (role: string): Candidate[] => {
      sideOf(role);
      return inOrder.get(role) as Candidate[];
    };
    const listed = new Map<string, Candidate[]>();
    const candidates = (p: PeerSpec): Candidate[] => {
      const key = typeof p === 'object' && 'any' in p ? `any\u0000${p.any}` : (peerRole(p) as string);
      let list = listed.get(key);
      if (!list) {
        list = typeof p === 'object' && 'any' in p ? [anyCandidate(p.any)] : candidatesOf(key);
        listed.set(key, list);
      }
      return list;
    };
    const candidate = (host: Host, role: string): Candidate | undefined => {
      const side = sides.get(role);
      if (side) return side.get(host);
      if (!hasRole(host, role)) return undefined;
      let one = singles.get(role);
      if (!one) {
        one = new Map();
        singles.set(role, one);
      }
      let c = one.get(host);
      if (!c) {
        c = hostCandidate(host, role);
        one.set(host, c);
      }
      return c;
    };
    const signatures = new Signatures();
    // Per merge group (mergeKey) of entries, by source and destination: the flow a pair went into.
    const groups = new Map<string, Map<Candidate, Map<Candidate, Flow>>>();
    const mergeGroup = (key: string): Map<Candidate, Map<Candidate, Flow>> => {
      let group = groups.get(key);
      if (!group) {
        group = new Map();
        groups.set(key, group);
      }
      return group;
    };
    const siblings = new Map<string, number>();
    for (const e of cat.entries) siblings.set(mergeKey(e), (siblings.get(mergeKey(e)) ?? 0) + 1);
    const ctx = new PairContext(cat, use.features, setting, rolePresent);
    const sayDefault = (t: DefaultTaken, host: Host) =>
      warn({
        code: 'fact-default',
        host: host.name,
        product: productId,
        message: say(
          'fact-default',
          productId,
          `host ${host.name} (${productId}:${t.role}) does not give fact ${t.name}; taking the default ${t.value}`,
          () => WARNINGS_JA['fact-default'](host.name, productId, t.role, t.name, t.value),
        ),
      });
    /**
     * The outcome of conditions `when` for the pair `from` -> `to`, looked up in `table` (by the
     * signatures of the facts `reads` names on each side) or evaluated and put there.
     */
    const outcomeOf = (
      when: readonly Condition[],
      reads: { from: string[]; to: string[] },
      names: { from: number; to: number },
      table: (Outcome | undefined)[][],
      from: Candidate,
      to: Candidate,
    ): Outcome => {
      const fromSig = signatures.of(from, names.from, reads.from);
      let row = table[fromSig];
      if (!row) {
        row = [];
        table[fromSig] = row;
      }
      const toSig = signatures.of(to, names.to, reads.to);
      let o = row[toSig];
      if (!o) {
        ctx.from = from;
        ctx.to = to;
        ctx.taken = [];
        const truth = evaluate(when, ctx);
        o = { truth, taken: ctx.taken.length ? ctx.taken : NO_DEFAULTS };
        row[toSig] = o;
      }
      return o;
    };
    /** Says the fact-default warnings of outcome `o` for the pair `from` -> `to`. */
    const sayDefaults = (o: Outcome, from: Candidate, to: Candidate) => {
      for (const t of o.taken) sayDefault(t, (t.side === 'from' ? from : to).host as Host);
    };
    for (const role of Object.keys(cat.roles)) {
      const used = cat.entries.filter(
        (e) => isPlanned(e) && [e.from, e.to].some((p) => peerRole(p) === role),
      ).length;
      // With one host in focus, a missing role matters only when an entry pairs it with a role of
      // that host: the other pairs' gaps are not in that host's rules.
      const concernsFocus =
        !focusHost ||
        cat.entries.some((e) => {
          if (!isPlanned(e)) return false;
          const [a, b] = [peerRole(e.from), peerRole(e.to)];
          const other = a === role ? b : b === role ? a : undefined;
          return other !== undefined && hasRole(focusHost, other);
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
      // Judged once per kind of host (the values of the facts the conditions read).
      const reads = factsRead(w.when);
      const names = { from: signatures.names(reads.from), to: signatures.names(reads.to) };
      const table: (Outcome | undefined)[][] = [];
      const side = w.role === undefined || focusHost ? undefined : sideOf(w.role);
      for (const host of hosts) {
        const c =
          host && w.role !== undefined
            ? ((side ? side.get(host) : candidate(host, w.role)) as Candidate)
            : ANY;
        const o = outcomeOf(w.when, reads, names, table, c, c);
        if (o.taken.length) sayDefaults(o, c, c);
        if (o.truth !== true) continue;
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
      // The pairs of an advisory left out: the first ADVISORY_PAIRS_SHOWN named, all counted.
      const leftOut: string[] = [];
      let leftCount = 0;
      const local = isLocal(entry.to);
      const toRole = peerRole(entry.to);
      const fromRole = peerRole(entry.from);
      // A one-host plan: the pairs from the host, and from anyone else to the host only.
      const focusTo = focusHost && !local && toRole !== undefined ? candidate(focusHost, toRole) : undefined;
      const focusFrom = focusHost && fromRole !== undefined ? candidate(focusHost, fromRole) : undefined;
      // Pairs only from the host, when it is not a destination of the entry (none at all when it is
      // on neither side): the other sources are not walked.
      const froms = !focusHost || focusTo ? candidates(entry.from) : focusFrom ? [focusFrom] : [];
      if (froms.length === 0) continue;
      const tosAll = local ? [] : candidates(entry.to);
      const focusTos = focusTo ? [focusTo] : [];
      const when = entry.when?.length ? entry.when : undefined;
      // The facts the conditions read on each side: a pair's outcome is that of any other pair
      // whose hosts give the same values for them.
      const reads = when ? factsRead(when) : undefined;
      const fromNames = reads ? signatures.names(reads.from) : -1;
      const toNames = reads ? signatures.names(reads.to) : -1;
      const outcomes: (Outcome | undefined)[][] = [];
      const fixedPorts = entry.protocol === 'icmp' || !hasPerDrive(entry);
      const entryPorts = fixedPorts ? resolvePorts(entry, ANY, ANY, () => {}, productId) : undefined;
      const shape = flowShapes(productId, entry, lang === 'ja');
      const group = (siblings.get(mergeKey(entry)) ?? 0) > 1 ? mergeGroup(mergeKey(entry)) : undefined;
      walkEntry(
        {
          entry,
          productId,
          tosOf: local
            ? (from) => {
                const to =
                  from.host && (!focusHost || from.host === focusHost)
                    ? candidate(from.host, (entry.to as { role: string }).role)
                    : undefined;
                return to ? [to] : [];
              }
            : focusHost
              ? (from) => (from.host !== focusHost ? focusTos : tosAll)
              : undefined,
          tosAll,
          when,
          reads,
          fromNames,
          toNames,
          signatures,
          ctx,
          outcomes,
          leavingOut: advisory && !withAdvisories,
          fixedPorts,
          entryPorts,
          shape,
          group,
          byId,
          merges,
          sayDefaults,
          leaveOut: (from, to, truth) => {
            // Only the first pairs are named (the rest are counted): their text is built alone.
            if (leftCount++ >= ADVISORY_PAIRS_SHOWN) return;
            const ports = fixedPorts ? entryPorts : resolvePorts(entry, from, to, () => {}, productId);
            const what = entry.protocol === 'icmp' ? (entry['icmp-type'] ?? 'any') : formatPorts(ports ?? []);
            const pair = `${from.host?.name ?? 'any'} -> ${to.host?.name ?? 'any'} ${entry.protocol} ${what}`;
            const unknown = truth === true ? '' : [...new Set(truth.unknown)].join(', ');
            leftOut.push(
              truth === true
                ? pair
                : jaProducts.has(productId)
                  ? WARNINGS_JA.depends(pair, unknown)
                  : `${pair} (depends on ${unknown}, not given)`,
            );
          },
          skipped: (from, to, truth) => {
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
          },
          portsOf: (from, to) => resolvePorts(entry, from, to, warn, productId, say),
          keep,
          count,
        },
        froms,
      );
      if (leftCount) {
        const page = entry.sources.find(isPageRef);
        const shown = leftOut.join('; ');
        const extra = leftCount - ADVISORY_PAIRS_SHOWN;
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
  byId.clear();
  for (const w of hostsInsideCidrs(inv.hosts, siteJa ? 'ja' : 'en', focusHost))
    warn({ ...w, message: say(w.code, undefined, w.message, () => w.message) });
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

/**
 * One catalog entry of a product being planned, for walkEntry: its candidates, conditions and
 * flow shapes, the plan's tables, and what to do with each outcome.
 */
interface EntryWalk {
  entry: CatalogEntry;
  productId: string;
  /** The destinations of a source, when not `tosAll` (a local entry, a one-host plan). */
  tosOf: ((from: Candidate) => Candidate[]) | undefined;
  tosAll: Candidate[];
  when: readonly Condition[] | undefined;
  reads: { from: string[]; to: string[] } | undefined;
  fromNames: number;
  toNames: number;
  signatures: Signatures;
  ctx: PairContext;
  /** The entry's outcomes by source and destination signature. */
  outcomes: (Outcome | undefined)[][];
  /** An advisory not planned: its pairs go to leaveOut. */
  leavingOut: boolean;
  fixedPorts: boolean;
  entryPorts: PortRange[] | undefined;
  shape: [Flow, Flow];
  /** The entry's merge group (undefined when no other entry can plan the same ids). */
  group: Map<Candidate, Map<Candidate, Flow>> | undefined;
  byId: Map<string, Flow>;
  /** The plan's merges of lists and purposes (one list shared by the flows that merge alike). */
  merges: Merges;
  sayDefaults: (o: Outcome, from: Candidate, to: Candidate) => void;
  leaveOut: (from: Candidate, to: Candidate, truth: true | { unknown: string[] }) => void;
  skipped: (from: Candidate, to: Candidate, truth: { unknown: string[] }) => void;
  portsOf: (from: Candidate, to: Candidate) => PortRange[] | undefined;
  keep: (f: Flow, from: Candidate, to: Candidate) => void;
  count: () => void;
}

/**
 * The pairs of one entry, from each of `froms` to its destinations, in order: conditions looked up
 * per pair of signatures, flows kept or merged into the flow of their id. Apart from buildPlan so
 * that this loop, where a large plan spends its time, is small enough to be optimized early.
 */
function walkEntry(w: EntryWalk, froms: readonly Candidate[]): void {
  const { when, reads, signatures, group, tosOf, tosAll } = w;
  for (const from of froms) {
    const tos = tosOf ? tosOf(from) : tosAll;
    if (tos.length === 0) continue;
    // This source's outcomes by the destination's signature, and the destinations' signatures.
    let seenFrom: (Outcome | undefined)[] | undefined;
    let toSigs: Int32Array | undefined;
    if (reads) {
      const fromSig = signatures.of(from, w.fromNames, reads.from);
      seenFrom = w.outcomes[fromSig];
      if (!seenFrom) {
        seenFrom = [];
        w.outcomes[fromSig] = seenFrom;
      }
      // The whole role's signatures once per entry (a one-host or local list: per pair below).
      if (tos === tosAll) toSigs = signatures.ofAll(tos, w.toNames, reads.to);
    }
    // The flows this source's pairs of the entry's merge group went into, by destination (made
    // with the first of them).
    let into = group?.get(from);
    const n = tos.length;
    for (let i = 0; i < n; i++) {
      const to = tos[i] as Candidate;
      let truth: Truth = true;
      if (when && reads && seenFrom) {
        const toSig = toSigs ? (toSigs[i] as number) : signatures.of(to, w.toNames, reads.to);
        let o = seenFrom[toSig];
        if (!o) {
          const ctx = w.ctx;
          ctx.from = from;
          ctx.to = to;
          ctx.taken = [];
          const t = evaluate(when, ctx);
          o = { truth: t, taken: ctx.taken.length ? ctx.taken : NO_DEFAULTS };
          seenFrom[toSig] = o;
        }
        truth = o.truth;
        if (o.taken.length) w.sayDefaults(o, from, to);
        else if (truth === false) continue;
      }
      if (w.leavingOut) {
        if (truth !== false) w.leaveOut(from, to, truth);
        continue;
      }
      if (truth !== true) {
        if (truth !== false) w.skipped(from, to, truth);
        continue;
      }
      const ports = w.fixedPorts ? w.entryPorts : w.portsOf(from, to);
      if (ports === undefined) continue;
      if (!group) {
        w.keep(toFlow(w.shape, w.productId, w.entry, from, to, ports), from, to);
        continue;
      }
      // A pair of the merge group planned before: the same id, merged without making the flow.
      const seen = into?.get(to);
      if (seen) {
        mergeShape(seen, w.shape, w.entry, ports, w.merges);
        w.count();
        continue;
      }
      const f = toFlow(w.shape, w.productId, w.entry, from, to, ports);
      if (!into) {
        into = new Map();
        group.set(from, into);
      }
      const first = w.byId.get(f.id);
      if (first) {
        into.set(to, first);
        mergeInto(first, f, true, w.merges);
        w.count();
      } else {
        into.set(to, f);
        w.byId.set(f.id, f);
        w.keep(f, from, to);
      }
    }
  }
}

/** A warning's text in the plan's language (see PlanOptions.lang). */
type Say = (code: string, product: string | undefined, en: string, ja?: () => string) => string;

function peerRole(p: PeerSpec): string | undefined {
  return typeof p === 'string' ? p : 'role' in p ? p.role : undefined;
}

function isLocal(p: PeerSpec): p is { role: string; local: true } {
  return typeof p === 'object' && 'local' in p;
}

// Candidates and endpoints are object literals of one shape each (an unspecified peer's endpoint
// has its description besides), so that the pair loop sees one kind of each.
function hostCandidate(host: Host, role: string): Candidate {
  const endpoint: Endpoint = { host: host.name, role, address: host.address.text };
  return { host, role, endpoint, key: endKey(endpoint), sigs: [], mark: UNMARKED };
}

function anyCandidate(description?: string): Candidate {
  const endpoint: Endpoint = description
    ? { host: null, role: null, address: null, description }
    : { host: null, role: null, address: null };
  return { host: null, role: null, endpoint, key: endKey(endpoint), sigs: [], mark: UNMARKED };
}

/** No host: the side of a port list that does not depend on the pair. */
const ANY: Candidate = anyCandidate();

function hasPerDrive(e: CatalogEntry): boolean {
  return (e.ports ?? []).some((p) => typeof p === 'object');
}

/** The host facts a condition list reads, per side, each name once in the order first read. */
function factsRead(conds: readonly Condition[]): { from: string[]; to: string[] } {
  const known = factReads.get(conds);
  if (known) return known;
  const out = { from: [] as string[], to: [] as string[] };
  const walk = (c: Condition): void => {
    if ('all' in c) c.all.forEach(walk);
    else if ('any' in c) c.any.forEach(walk);
    else if ('not' in c) walk(c.not);
    else if ('fact' in c) {
      const list = out[c.fact.of];
      if (!list.includes(c.fact.name)) list.push(c.fact.name);
    }
  };
  conds.forEach(walk);
  factReads.set(conds, out);
  return out;
}
const factReads = new WeakMap<readonly Condition[], { from: string[]; to: string[] }>();

/**
 * Small numbers for what a side of a pair gives a condition: 0 when the conditions read no fact of
 * that side, 1 for an unspecified peer (no host, no facts), else one number per distinct list of
 * values of the facts read. Numbered per list of fact names, remembered on each candidate.
 */
/** One level of Signatures' tree: the next level or the signature, by a fact's value. */
interface SigNode {
  values: Map<string | undefined, SigNode | number>;
  lists: Map<string, SigNode | number>;
}

class Signatures {
  private readonly lists = new Map<string, number>();
  /** Per list of names: the signatures by the values of the names in turn. */
  private readonly trees: SigNode[] = [];
  /** Per list of names: the next signature to give. */
  private readonly next: number[] = [];
  private readonly byList = new WeakMap<readonly Candidate[], Int32Array[]>();

  /** The number of a list of fact names (-1: none). */
  names(names: readonly string[]): number {
    if (names.length === 0) return -1;
    const key = names.join('\u0000');
    let id = this.lists.get(key);
    if (id === undefined) {
      id = this.trees.length;
      this.lists.set(key, id);
      this.trees.push({ values: new Map(), lists: new Map() });
      this.next.push(2);
    }
    return id;
  }

  /**
   * The signatures of the candidates of `list` for the fact names numbered `id`, by position;
   * remembered per list (a role's candidates are one list for the whole product).
   */
  ofAll(list: readonly Candidate[], id: number, names: readonly string[]): Int32Array {
    let byNames = this.byList.get(list);
    if (!byNames) {
      byNames = [];
      this.byList.set(list, byNames);
    }
    let sigs = byNames[id + 1];
    if (!sigs) {
      sigs = new Int32Array(list.length);
      for (let i = 0; i < list.length; i++) sigs[i] = this.of(list[i] as Candidate, id, names);
      byNames[id + 1] = sigs;
    }
    return sigs;
  }

  /** The signature of candidate `c` for the fact names numbered `id`. */
  of(c: Candidate, id: number, names: readonly string[]): number {
    if (id < 0) return 0;
    if (!c.host) return 1;
    const sigs = c.sigs;
    if (id < sigs.length) {
      const known = sigs[id] as number;
      if (known >= 0) return known;
    }
    const facts = c.host.facts;
    // A tree of the values read, one level per name: a string value is its own key (no text is
    // built for it), a list is its JSON, kept apart from the strings.
    let node = this.trees[id] as SigNode;
    let sig = 0;
    for (let i = 0; i < names.length; i++) {
      const v = facts[names[i] as string];
      const list = typeof v === 'object';
      const table = list ? node.lists : node.values;
      const key = list ? JSON.stringify(v) : v;
      const last = i === names.length - 1;
      let next = table.get(key);
      if (next === undefined) {
        if (last) {
          next = this.next[id] as number;
          this.next[id] = next + 1;
        } else next = { values: new Map(), lists: new Map() };
        table.set(key, next);
      }
      if (last) sig = next as number;
      else node = next as SigNode;
    }
    while (sigs.length < id) sigs.push(-1);
    sigs[id] = sig;
    return sig;
  }
}

/** What a condition can ask about the pair being planned; `from` and `to` are set per pair. */
class PairContext implements ConditionContext {
  from: Candidate = ANY;
  to: Candidate = ANY;
  /** The catalog defaults taken since the last reset, in order. */
  taken: DefaultTaken[] = [];

  constructor(
    private readonly cat: Catalog,
    readonly features: ReadonlySet<string>,
    readonly setting: (n: string) => string | undefined,
    readonly rolePresent: (r: string) => boolean,
  ) {}

  given(side: 'from' | 'to', name: string): boolean {
    const c = side === 'from' ? this.from : this.to;
    return c.host?.facts[name] !== undefined;
  }

  fact(side: 'from' | 'to', name: string): string | readonly string[] | undefined {
    const c = side === 'from' ? this.from : this.to;
    if (!c.host || !c.role) return undefined;
    const given = c.host.facts[name];
    if (given !== undefined) return given;
    const spec = this.cat.facts?.[c.role]?.[name];
    // A per-host override of a product setting (PlateSpin replication-direction): the setting decides.
    if (spec?.setting !== undefined) return this.setting(spec.setting);
    if (spec?.default !== undefined) {
      this.taken.push({ side, role: c.role, name, value: spec.default });
      return spec.list ? [spec.default] : spec.default;
    }
    // A list fact left out is an empty list: a guest that names no databases has none.
    return spec?.list ? [] : undefined;
  }
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

function sourceRef(s: SourceRef): FlowSource {
  if (isPageRef(s)) return { doc: s.url, ref: `${s.title} (read ${s.read})${s.ref ? `: ${s.ref}` : ''}` };
  return { doc: s.doc, ref: `${s.table} table, row ${s.row}${s.ref ? `: ${s.ref}` : ''}` };
}

/** An entry's sources as a flow cites them, built once per entry (a large plan has a flow per pair). */
const entrySources = new WeakMap<CatalogEntry, FlowSource[]>();
function sourceRefs(e: CatalogEntry): FlowSource[] {
  const known = entrySources.get(e);
  if (known) return known;
  const refs = e.sources.map(sourceRef);
  entrySources.set(e, refs);
  return refs;
}

/**
 * The flows of one entry as objects to copy, in the plan contract's key order: without and with
 * `dynamicPorts` (an entry whose ports the product assigns at run time has it when it has ports).
 * Their lists (sources, notes, entries) are shared by the entry's flows until a merge changes one.
 */
function flowShapes(product: string, e: CatalogEntry, ja: boolean): [Flow, Flow] {
  const notes = ja && e['notes-ja']?.length ? e['notes-ja'] : (e.notes ?? []);
  const shape = (dynamic: boolean): Flow => {
    // Through JSON.parse, whose objects hold all their fields in themselves: an object literal
    // with spreads keeps some in a second block, and every copy of it would too.
    const made = JSON.parse(
      JSON.stringify({
        id: '',
        product,
        from: null,
        to: null,
        protocol: e.protocol,
        ports: [],
        ...(e['icmp-type'] ? { icmpType: e['icmp-type'] } : {}),
        service: e.service,
        tls: e.tls ?? false,
        ...(dynamic ? { dynamicPorts: [] } : {}),
        purpose: (ja ? e['purpose-ja'] : undefined) ?? e.purpose,
        sources: [],
        notes: [],
        entries: [],
        local: false,
        ...(e.basis === 'advisory' ? { basis: 'advisory' as const } : {}),
      }),
    ) as Flow;
    made.from = ANY.endpoint;
    made.to = ANY.endpoint;
    made.sources = sourceRefs(e);
    made.notes = [...notes];
    made.entries = [e.id];
    return made;
  };
  return [shape(false), shape(true)];
}

function toFlow(
  shapes: [Flow, Flow],
  product: string,
  e: CatalogEntry,
  from: Candidate,
  to: Candidate,
  ports: PortRange[],
): Flow {
  const dynamic = e['dynamic-ports'] === true && ports.length > 0;
  const s = shapes[dynamic ? 1 : 0];
  const id = flowId(product, from.key, to.key, e.protocol, e.service, s.basis);
  const local = from.host !== null && from.host === to.host;
  // The common shapes as object literals, which V8 learns to allocate where long-lived objects
  // go: a large plan's flows are then not copied by the garbage collector on their way there.
  if (s.icmpType === undefined && s.basis === undefined) {
    if (!dynamic)
      return {
        id,
        product,
        from: from.endpoint,
        to: to.endpoint,
        protocol: s.protocol,
        ports,
        service: s.service,
        tls: s.tls,
        purpose: s.purpose,
        sources: s.sources,
        notes: s.notes,
        entries: s.entries,
        local,
      };
    return {
      id,
      product,
      from: from.endpoint,
      to: to.endpoint,
      protocol: s.protocol,
      ports,
      service: s.service,
      tls: s.tls,
      dynamicPorts: ports,
      purpose: s.purpose,
      sources: s.sources,
      notes: s.notes,
      entries: s.entries,
      local,
    };
  }
  const f: Flow = { ...s };
  f.id = id;
  f.from = from.endpoint;
  f.to = to.endpoint;
  f.ports = ports;
  if (dynamic) f.dynamicPorts = ports;
  f.local = local;
  return f;
}

/**
 * Flows that differ only in the catalog row (or in their ports) become one flow: ports merged,
 * sources, purposes and notes kept. The key is product, both ends, protocol and service.
 * `own`: the flows are the caller's to change (freshly planned), so the first of each key is kept
 * and merged into rather than copied, which halves the memory a large plan needs. Flows of one
 * plan may share their endpoints and lists: a merge replaces a list it adds to, never changes it.
 */
export function mergeFlows(raw: readonly Flow[], own = false): Flow[] {
  const byKey = new Map<string, Flow>();
  const merges = new Merges();
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
    mergeInto(seen, f, own, merges);
  }
  return [...byKey.values()];
}

/**
 * Folds flow `f` into `seen`, a flow with the same key: ports merged, sources, notes and entries
 * added, purposes joined, TLS if either. `fresh`: both were just planned, so their port ranges are
 * merged already. Lists are replaced, not changed, when something is added (they may be shared).
 */
function mergeInto(seen: Flow, f: Flow, fresh: boolean, merges: Merges): void {
  mergeParts(seen, f.ports, f.dynamicPorts, f.sources, f.notes, f.entries, f.purpose, f.tls, fresh, merges);
}

/**
 * mergeInto of the flow toFlow would make from `shapes` with `ports`, without making it: the
 * flow of a pair whose id the plan has already.
 */
function mergeShape(
  seen: Flow,
  shapes: [Flow, Flow],
  e: CatalogEntry,
  ports: PortRange[],
  merges: Merges,
): void {
  const dynamic = e['dynamic-ports'] === true && ports.length > 0;
  const s = shapes[dynamic ? 1 : 0];
  mergeParts(
    seen,
    ports,
    dynamic ? ports : undefined,
    s.sources,
    s.notes,
    s.entries,
    s.purpose,
    s.tls,
    true,
    merges,
  );
}

/** mergeInto of a flow given by its parts. */
function mergeParts(
  seen: Flow,
  ports: readonly PortRange[],
  dynamicPorts: readonly PortRange[] | undefined,
  sources: readonly FlowSource[],
  notes: readonly string[],
  entries: readonly string[],
  purpose: string,
  tls: boolean,
  fresh: boolean,
  merges: Merges,
): void {
  // Freshly planned ranges are merged already: the same ranges again (the common case) leave
  // them as they are, rather than sorting a copy per duplicate.
  if (dynamicPorts && !(fresh && samePorts(seen.dynamicPorts, dynamicPorts)))
    seen.dynamicPorts = mergePortRanges([...(seen.dynamicPorts ?? []), ...dynamicPorts]);
  if (!(fresh && samePorts(seen.ports, ports))) seen.ports = mergePortRanges([...seen.ports, ...ports]);
  seen.sources = merges.list(seen.sources, sources, sameSource);
  seen.notes = merges.list(seen.notes, notes, sameText);
  seen.entries = merges.list(seen.entries, entries, sameText);
  seen.purpose = merges.text(seen.purpose, purpose);
  seen.tls ||= tls;
}

function sameSource(a: FlowSource, b: FlowSource): boolean {
  return a.doc === b.doc && a.ref === b.ref;
}

function sameText(a: string, b: string): boolean {
  return a === b;
}

/**
 * The lists and purposes merges make, remembered by what was merged (the identity of both lists,
 * the two texts) for one plan: the flows of a large plan merge the same entries' lists again and
 * again, and each merge is made once and its list shared, rather than made and held per flow.
 */
class Merges {
  private readonly lists = new WeakMap<readonly unknown[], Map<readonly unknown[], unknown[]>>();
  private readonly texts = new Map<string, Map<string, string>>();

  /**
   * `into` with the items of `add` it lacks (by `same`) after its own, in order: `into` itself when
   * it lacks none, else a new list, the one made for the same two lists before.
   */
  list<T>(into: T[], add: readonly T[], same: (a: T, b: T) => boolean): T[] {
    if (add.length === 0 || add === into) return into;
    let byAdd = this.lists.get(into);
    if (!byAdd) {
      byAdd = new Map();
      this.lists.set(into, byAdd);
    }
    let out = byAdd.get(add) as T[] | undefined;
    if (!out) {
      out = into;
      for (const x of add) if (!out.some((y) => same(y, x))) out = [...out, x];
      byAdd.set(add, out);
    }
    return out;
  }

  /** `purpose` joined to `into` after a space, unless `into` holds it already. */
  text(into: string, purpose: string): string {
    let byAdd = this.texts.get(into);
    if (!byAdd) {
      byAdd = new Map();
      this.texts.set(into, byAdd);
    }
    let out = byAdd.get(purpose);
    if (out === undefined) {
      out = into.includes(purpose) ? into : [into, purpose].join(' ');
      byAdd.set(purpose, out);
    }
    return out;
  }
}

/** Whether two lists of port ranges are the same ranges in the same order. */
function samePorts(a: readonly PortRange[] | undefined, b: readonly PortRange[]): boolean {
  if (a === b) return true;
  if (!a || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as PortRange;
    const y = b[i] as PortRange;
    if (x[0] !== y[0] || x[1] !== y[1]) return false;
  }
  return true;
}

function flowKey(f: Flow): string {
  return flowId(f.product, endKey(f.from), endKey(f.to), f.protocol, f.service, f.basis);
}

/** A flow's id: `product from-key to-key protocol service`, then ` advisory` for an advisory's flow. */
function flowId(
  product: string,
  from: string,
  to: string,
  protocol: string,
  service: string,
  basis: string | undefined,
): string {
  // Joined, not concatenated: one flat string, where a template keeps its pieces as a chain of
  // eight more objects for as long as the flow lives.
  return (
    basis ? [product, from, to, protocol, service, basis] : [product, from, to, protocol, service]
  ).join(' ');
}

/**
 * What the ids of an entry's flows have in common with those of another entry of its product, and
 * nothing more: two entries whose flows can share an id (and so merge) have the same key. One
 * entry never plans two flows of one id (each pair of its candidates once).
 */
function mergeKey(e: CatalogEntry): string {
  const side = (p: PeerSpec) =>
    typeof p === 'object' && 'any' in p ? `any(${p.any})` : (peerRole(p) as string);
  return [side(e.from), side(e.to), e.protocol, e.service, e.basis === 'advisory' ? 'advisory' : ''].join(
    '\u0000',
  );
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
  if (focus) return cidrsAround(hosts, lang, focus);
  // Address ranges sorted by start, so each CIDR finds what lies inside it by binary search:
  // linear-logarithmic in hosts, where comparing every pair is quadratic on an estate.
  const ranges = hosts
    .map((h, index) => {
      if (h.address.kind === 'dns') return undefined;
      const r = rangeOf(h.address.text, h.address.version);
      return { h, index, version: h.address.version, start: r.start, end: r.end };
    })
    .filter((r) => r !== undefined)
    .sort((a, b) => a.version - b.version || (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const found: { net: number; index: number; w: Warning }[] = [];
  for (const [n, net] of hosts.entries()) {
    if (net.address.kind !== 'cidr') continue;
    const { start, end } = rangeOf(net.address.text, net.address.version);
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
      if (h.address.kind === 'cidr' && h.address.text === net.address.text) continue;
      found.push({ net: n, index: r.index, w: insideWarning(h, net, lang) });
    }
  }
  return found.sort((a, b) => a.net - b.net || a.index - b.index).map((f) => f.w);
}

/**
 * hostsInsideCidrs for the pairs one host is part of, in one pass over the hosts without sorting
 * them: the CIDRs it lies in, and when it is a CIDR, the hosts inside it. Only CIDR hosts are
 * parsed unless the host is a CIDR itself.
 */
function cidrsAround(hosts: readonly Host[], lang: 'en' | 'ja', focus: Host): Warning[] {
  const fa = focus.address;
  if (fa.kind === 'dns') return [];
  const f = rangeOf(fa.text, fa.version);
  const at = hosts.indexOf(focus);
  const found: { net: number; index: number; w: Warning }[] = [];
  for (const [i, h] of hosts.entries()) {
    const a = h.address;
    if (h === focus || a.kind === 'dns' || a.version !== fa.version) continue;
    if (fa.kind !== 'cidr' && a.kind !== 'cidr') continue;
    if (a.kind === 'cidr' && fa.kind === 'cidr' && a.text === fa.text) continue;
    const r = rangeOf(a.text, a.version);
    if (fa.kind === 'cidr' && r.start >= f.start && r.end <= f.end)
      found.push({ net: at, index: i, w: insideWarning(h, focus, lang) });
    if (a.kind === 'cidr' && f.start >= r.start && f.end <= r.end)
      found.push({ net: i, index: at, w: insideWarning(focus, h, lang) });
  }
  return found.sort((a, b) => a.net - b.net || a.index - b.index).map((x) => x.w);
}

/**
 * The first and last address of an IP address or CIDR: numbers for IPv4 in dotted decimal with an
 * optional /prefix of 0-32, read here; bigints for IPv6 and any other text, from cidr-tools'
 * parseCidr (the two compare as numbers).
 */
function rangeOf(text: string, version: 4 | 6): { start: number | bigint; end: number | bigint } {
  if (version === 4) {
    let ip = 0;
    let part = -1;
    let dots = 0;
    let i = 0;
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c >= 48 && c <= 57) {
        if (part === 0) break; // a leading zero: not dotted decimal
        part = part < 0 ? c - 48 : part * 10 + c - 48;
        if (part > 255) break;
      } else if (c === 46 && part >= 0 && dots < 3) {
        ip = ip * 256 + part;
        part = -1;
        dots++;
      } else break;
    }
    let prefix = 32;
    if (i < text.length && text.charCodeAt(i) === 47 && /^\/(?:3[0-2]|[12]?\d)$/.test(text.slice(i))) {
      prefix = Number(text.slice(i + 1));
      i = text.length;
    }
    if (i === text.length && dots === 3 && part >= 0) {
      ip = ip * 256 + part;
      const size = 2 ** (32 - prefix);
      const start = ip - (ip % size);
      return { start, end: start + size - 1 };
    }
  }
  return parseCidr(text);
}

/** The address-in-cidr warning of host `h` inside the CIDR of host `net`. */
function insideWarning(h: Host, net: Host, lang: 'en' | 'ja'): Warning {
  return {
    code: 'address-in-cidr',
    host: h.name,
    message:
      lang === 'ja'
        ? WARNINGS_JA['address-in-cidr'](h.name, h.address.text, net.name, net.address.text)
        : `host ${h.name} (${h.address.text}) lies inside the CIDR of host ${net.name}, ${net.address.text}: probes of ${net.name} from ${h.name} reach ${h.name} itself; narrow the CIDR or accept that ${h.address.text} is probed as ${net.name}`,
  };
}
