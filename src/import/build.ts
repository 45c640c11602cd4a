import { RE2JS } from 're2js';
import { stringify as yamlStringify } from 'yaml';
import type { Catalogs } from '../catalog/load.js';
import { CONTROL_CHARS, InputError, quote } from '../errors.js';
import { parseAddress } from '../model/address.js';
import { counted } from '../util/plural.js';
import { validateWithSchema } from '../util/schema.js';
import { unknownName } from '../util/suggest.js';
import { type LoadedYaml, loadYamlFile } from '../util/yaml.js';
import { RVTOOLS_COLUMNS, type RvtoolsColumns, type SourceRow } from './sources.js';

type FactValue = string | string[];

/**
 * A map pattern, compiled for RE2 (the re2js port): matching takes time linear in the text, so a
 * pattern such as `^(a+)+$` cannot hang an import on a crafted VM name from someone else's export, as
 * JavaScript's backtracking RegExp does. RE2 syntax is JavaScript's without lookaround and
 * backreferences (https://github.com/google/re2/wiki/Syntax). `test` is true when the pattern matches
 * anywhere in the text, case-insensitively.
 */
export interface MapPattern {
  test(text: string): boolean;
}

/** The import map (schema/import-map.json) after validation, with its patterns compiled. */
export interface ImportMap {
  file: string;
  /** Where a key path of the map file is (file:line:column), as LoadedYaml.locate. */
  locate: LoadedYaml['locate'];
  site: string;
  description?: string;
  products: Record<string, unknown>;
  hosts: Record<string, unknown>;
  roles: string[];
  columns: RvtoolsColumns;
  os: { value: string; pattern: MapPattern }[];
  skipTemplates: boolean;
  skipPoweredOff: boolean;
  domain?: string;
  rules: {
    /** Its index in the map's import.rules. */
    index: number;
    name?: MapPattern;
    os?: MapPattern;
    tags?: MapPattern;
    roles: string[];
    facts: Record<string, FactValue>;
  }[];
  nodeRoles?: string[];
}

interface RawMap {
  site: string;
  description?: string;
  products?: Record<string, unknown>;
  hosts?: Record<string, unknown>;
  import: {
    roles: string[];
    columns?: Partial<Omit<RvtoolsColumns, 'os'>> & { os?: string | string[] };
    os?: Record<string, string>;
    skip?: ('templates' | 'powered-off')[];
    domain?: string;
    rules?: {
      name?: string;
      os?: string;
      tags?: string;
      roles?: string[];
      facts?: Record<string, unknown>;
    }[];
    nodes?: { roles: string[] };
  };
}

/** OS text to the `os` fact when the map gives no `import.os` (VMware guest OS names, Proxmox ostype). */
export const DEFAULT_OS_PATTERNS: Record<string, string> = {
  windows: 'windows|^win\\d',
  linux:
    'linux|ubuntu|centos|red ?hat|rhel|debian|suse|sles|rocky|alma|fedora|photon|oracle ?linux|^l\\d+$|^l26$',
};

/**
 * Loads and checks an import map; every error is located in the map file. With `catalogs`, every
 * role the map names (import.roles, import.rules[].roles, import.nodes.roles, hosts.*.roles) must be
 * a `product:role` the catalogs define, so a typo is reported at the map's line and column rather
 * than in the generated inventory.
 */
export function loadImportMap(file: string, catalogs?: Catalogs): ImportMap {
  const y = loadYamlFile(file, 'import map', { controls: 'refuse' });
  const raw = validateWithSchema<RawMap>(y, 'import-map');
  if (catalogs) checkRoles(raw, y, catalogs);
  const regex = (source: string, path: (string | number)[]): MapPattern => {
    try {
      return RE2JS.compile(source, RE2JS.CASE_INSENSITIVE);
    } catch (err) {
      throw new InputError(
        `not a regular expression: ${(err as Error).message} (expected a regular expression in RE2 syntax: JavaScript's without lookaround or backreferences)`,
        y.locate(path),
      );
    }
  };
  const cols = raw.import.columns ?? {};
  const os = Object.entries(raw.import.os ?? DEFAULT_OS_PATTERNS).map(([value, source]) => ({
    value,
    pattern: regex(source, ['import', 'os', value]),
  }));
  return {
    file,
    locate: y.locate,
    site: raw.site,
    ...(raw.description !== undefined ? { description: raw.description } : {}),
    products: asWritten(raw.products ?? {}, y),
    hosts: raw.hosts ?? {},
    roles: raw.import.roles,
    columns: {
      ...RVTOOLS_COLUMNS,
      ...(cols as Partial<RvtoolsColumns>),
      os: cols.os === undefined ? RVTOOLS_COLUMNS.os : typeof cols.os === 'string' ? [cols.os] : cols.os,
    },
    os,
    skipTemplates: raw.import.skip?.includes('templates') ?? false,
    skipPoweredOff: raw.import.skip?.includes('powered-off') ?? false,
    ...(raw.import.domain !== undefined ? { domain: raw.import.domain.toLowerCase() } : {}),
    rules: (raw.import.rules ?? []).map((r, i) => ({
      index: i,
      ...(r.name ? { name: regex(r.name, ['import', 'rules', i, 'name']) } : {}),
      ...(r.os ? { os: regex(r.os, ['import', 'rules', i, 'os']) } : {}),
      ...(r.tags ? { tags: regex(r.tags, ['import', 'rules', i, 'tags']) } : {}),
      roles: r.roles ?? [],
      facts: factsOf(r.facts ?? {}, y, ['import', 'rules', i, 'facts']),
    })),
    ...(raw.import.nodes ? { nodeRoles: raw.import.nodes.roles } : {}),
  };
}

/**
 * The map's products with every setting YAML read as a number replaced by its text as written: the
 * inventory is written from these values, and 5.10 written back as a number would be 5.1.
 */
function asWritten(products: Record<string, unknown>, y: LoadedYaml): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [id, use] of Object.entries(products)) {
    if (use === null || typeof use !== 'object' || Array.isArray(use)) {
      out[id] = use;
      continue;
    }
    out[id] = Object.fromEntries(
      Object.entries(use).map(([k, v]) => [
        k,
        typeof v === 'number' ? (y.written?.(['products', id, k]) ?? v) : v,
      ]),
    );
  }
  return out;
}

function checkRoles(raw: RawMap, y: LoadedYaml, catalogs: Catalogs): void {
  const known: string[] = [];
  for (const [product, cat] of catalogs)
    for (const role of Object.keys(cat.roles)) known.push(`${product}:${role}`);
  const check = (roles: readonly unknown[] | undefined, path: (string | number)[]) =>
    (roles ?? []).forEach((role, i) => {
      if (typeof role !== 'string' || known.includes(role)) return;
      throw new InputError(
        unknownName('role', role, known, {
          expected: 'expected product:role from the catalog, see portolan catalog',
        }),
        y.locate([...path, i]),
      );
    });
  check(raw.import.roles, ['import', 'roles']);
  for (const [i, r] of (raw.import.rules ?? []).entries()) check(r.roles, ['import', 'rules', i, 'roles']);
  check(raw.import.nodes?.roles, ['import', 'nodes', 'roles']);
  for (const [k, h] of Object.entries(raw.hosts ?? {})) {
    const roles = (h as { roles?: unknown })?.roles;
    if (Array.isArray(roles)) check(roles, ['hosts', k, 'roles']);
  }
}

function factsOf(raw: Record<string, unknown>, y: LoadedYaml, path: (string | number)[]) {
  const out: Record<string, FactValue> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v === 'string' || typeof v === 'number') out[k] = String(v);
    else if (Array.isArray(v) && v.every((x) => typeof x === 'string' || typeof x === 'number'))
      out[k] = v.map(String);
    else throw new InputError('expected a fact value: a word or a list of words', y.locate([...path, k]));
  }
  return out;
}

export interface ImportResult {
  /** The inventory, as YAML text. */
  text: string;
  /** One line each, `vInfo.csv:14: VM "web 01": ...`. */
  warnings: string[];
  /**
   * Rows the map leaves out on purpose (templates, powered-off VMs, cluster nodes without
   * import.nodes.roles), one each in row order: `line` is `vInfo.csv:13: VM "tpl" left out: a template
   * (map skip: templates)`, `reason` the same for every row left out for the same cause. Rows left
   * out because they cannot be hosts are warnings instead. Both count in `skipped`.
   */
  leftOut: { line: string; reason: string }[];
  read: number;
  imported: number;
  skipped: number;
  /** The source row each imported host comes from (`vInfo.csv:12`), by host key. */
  rowOf: Map<string, string>;
  /** Per imported host key, the index in import.rules of the rule that gave each fact. */
  factFrom: Map<string, Map<string, number>>;
}

/** A host key (schema/inventory.json: `^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`) from a VM name. */
export function hostKey(name: string): string {
  return name
    .normalize('NFKD')
    .replace(/\p{M}+/gu, '')
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, 63)
    .replace(/[-.]+$/, '');
}

/** Addresses an import never uses for a host: they name no reachable peer (RFC 3927, RFC 4291 2.5). */
function unusable(text: string): string | undefined {
  if (/^169\.254\./.test(text) || /^fe[89ab][0-9a-f]:/i.test(text)) return 'link-local';
  if (/^127\./.test(text) || text === '::1') return 'loopback';
  if (text === '0.0.0.0' || text === '::') return 'unspecified';
  return undefined;
}

/**
 * Turns source rows into a site inventory: the map's products and fixed hosts, then one host per
 * row that has a usable address (its IP, else its DNS name, else NAME.DOMAIN). Rows that cannot be
 * hosts, or are only partly usable, become warnings naming their row; nothing is dropped silently.
 * Each imported host's description names its source row.
 */
export function buildInventory(
  rows: readonly SourceRow[],
  map: ImportMap,
  catalogs: Catalogs,
  source: { header: string; hasAddresses: boolean },
): ImportResult {
  const warnings: string[] = [];
  const leftOut: { line: string; reason: string }[] = [];
  const hosts: string[] = [];
  const keys = new Set(Object.keys(map.hosts));
  const addresses = new Map<string, string>();
  for (const [k, h] of Object.entries(map.hosts)) {
    const a = (h as { address?: unknown })?.address;
    if (typeof a === 'string') {
      const p = parseAddress(a);
      if (!('error' in p)) addresses.set(p.text, k);
    }
  }
  const takesFact = (roles: readonly string[], fact: string, value: string) =>
    roles.some((r) => {
      const [product = '', role = ''] = r.split(':');
      return catalogs.get(product)?.facts?.[role]?.[fact]?.values.includes(value) ?? false;
    });
  let imported = 0;
  let skipped = 0;
  const rowOf = new Map<string, string>();
  const factFrom = new Map<string, Map<string, number>>();
  for (const row of rows) {
    // Which rule (its index in import.rules) gave each fact: the last that matched.
    const factRules = new Map<string, number>();
    const label = `${row.at}: ${row.kind === 'node' ? 'node' : 'VM'} ${quoted(row.name)}`;
    for (const note of row.notes ?? []) warnings.push(`${label}: ${note}`);
    const skip = (why: string, warn = true) => {
      skipped++;
      if (warn) warnings.push(`${label}: ${why}; left out`);
      else leftOut.push({ line: `${label} left out: ${why}`, reason: why });
    };
    if (row.kind === 'node' && !map.nodeRoles) {
      skip('a cluster node (the map has no import.nodes.roles)', false);
      continue;
    }
    if (row.template && map.skipTemplates) {
      skip('a template (map skip: templates)', false);
      continue;
    }
    if (map.skipPoweredOff && /^(poweredoff|stopped)$/i.test(row.power)) {
      skip('powered off (map skip: powered-off)', false);
      continue;
    }
    if (row.name === '') {
      skip('no name');
      continue;
    }
    // Roles and facts: the map's, then every rule that matches.
    const roles = [...(row.kind === 'node' ? (map.nodeRoles ?? []) : map.roles)];
    const facts: Record<string, FactValue> = {};
    const os = map.os.find((o) => o.pattern.test(row.os))?.value;
    if (row.os !== '' && os === undefined)
      warnings.push(`${label}: OS ${quote(row.os)} matches no pattern under import.os; no os fact`);
    for (const rule of map.rules) {
      if (rule.name && !rule.name.test(row.name)) continue;
      if (rule.os && !rule.os.test(row.os)) continue;
      if (rule.tags && !rule.tags.test(row.tags)) continue;
      for (const r of rule.roles) if (!roles.includes(r)) roles.push(r);
      Object.assign(facts, rule.facts);
      for (const f of Object.keys(rule.facts)) factRules.set(f, rule.index);
    }
    if (os !== undefined && facts.os === undefined) {
      if (takesFact(roles, 'os', os)) facts.os = os;
      else if (roles.some((r) => takesFact([r], 'os', 'windows') || takesFact([r], 'os', 'linux')))
        warnings.push(`${label}: os ${os} is not one these roles take; no os fact`);
    }
    // The key, exactly as the VM is named where possible.
    let key = hostKey(row.name);
    if (key === '') key = `vm-${row.at.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '')}`.slice(0, 63);
    if (key !== row.name)
      warnings.push(
        `${label}: the name is not a host key (letters, digits, . _ - only, at most 63); host ${quote(key)}`,
      );
    if (keys.has(key)) {
      let n = 2;
      while (keys.has(`${key.slice(0, 60)}-${n}`)) n++;
      const renamed = `${key.slice(0, 60)}-${n}`;
      warnings.push(`${label}: host ${quote(key)} exists already; host ${quote(renamed)}`);
      key = renamed;
    }
    // The address: one usable IP (IPv4 first), else a DNS name.
    const found = row.address.split(/[\s,;]+/).filter((t) => t !== '');
    const usable: { text: string; version: 4 | 6 }[] = [];
    for (const t of found) {
      const p = parseAddress(t.replace(/%.*$/, ''));
      if ('error' in p || p.kind !== 'ip') {
        warnings.push(`${label}: ${quote(t)} is not an IP address; ignored`);
        continue;
      }
      const why = unusable(p.text);
      if (why) warnings.push(`${label}: ${p.text} is ${why}; ignored`);
      else usable.push({ text: p.text, version: p.version });
    }
    const chosen = usable.find((a) => a.version === 4) ?? usable[0];
    let address: string | undefined = chosen?.text;
    if (chosen && usable.length > 1)
      warnings.push(
        `${label}: several addresses (${usable.map((a) => a.text).join(', ')}); took ${chosen.text} (list the others as hosts of their own where flows use them)`,
      );
    if (chosen?.version === 6)
      warnings.push(`${label}: IPv6 address only (${chosen.text}); firewalls must carry IPv6 for this host`);
    if (!address) {
      const dns = parseAddress(row.dns);
      let how = 'its DNS name';
      if (row.dns !== '' && !('error' in dns) && dns.kind === 'dns') address = dns.text;
      else if (map.domain) {
        const name = parseAddress(`${key.toLowerCase().replace(/[._]+/g, '-')}.${map.domain}`);
        if (!('error' in name) && name.kind === 'dns') address = name.text;
        how = 'NAME.DOMAIN from import.domain';
      }
      if (!address) {
        skip(
          `no usable IP address${found.length ? ` (${found.join(' ')})` : ''} and no DNS name (give import.domain to use NAME.DOMAIN)`,
        );
        continue;
      }
      if (source.hasAddresses) warnings.push(`${label}: no IP address; using ${how}, ${address}`);
    }
    const owner = addresses.get(address);
    if (owner !== undefined) {
      skip(`address ${address} is already host ${quote(owner)}'s (one host per address)`);
      continue;
    }
    addresses.set(address, key);
    keys.add(key);
    const host: Record<string, unknown> = { address, roles };
    if (Object.keys(facts).length > 0) host.facts = facts;
    // The row's place names the source file, whose name may hold any character: escaped.
    const at = CONTROL_CHARS.test(row.at) ? quote(row.at) : row.at;
    host.description = `imported from ${at}${key !== row.name ? ` (${row.kind === 'node' ? 'node' : 'VM'} ${quoted(row.name)})` : ''}`;
    hosts.push(`  ${yamlKey(key)}: ${flow(host)}`);
    rowOf.set(key, row.at);
    if (factRules.size) factFrom.set(key, factRules);
    imported++;
  }
  const head = [
    ...source.header.split('\n').map((l) => `# ${l}`),
    `# ${counted(rows.length, 'row')} read, ${imported} imported, ${skipped} left out, ${counted(warnings.length, 'warning')}.`,
    yamlStringify(
      {
        site: map.site,
        ...(map.description !== undefined ? { description: map.description } : {}),
        products: map.products,
      },
      { lineWidth: 0 },
    ).trimEnd(),
    'hosts:',
    ...Object.entries(map.hosts).map(([k, h]) => `  ${yamlKey(k)}: ${flow(h)}`),
  ];
  return {
    text: `${[...head, ...hosts].join('\n')}\n`,
    warnings,
    leftOut,
    read: rows.length,
    imported,
    skipped,
    rowOf,
    factFrom,
  };
}

/**
 * A name for a terminal line, and a string in the generated YAML: JSON-quoted, with every control
 * and format character escaped (errors.ts quote): YAML reads `\u202e` back as the same character,
 * while the file itself never shows one to an editor or a terminal.
 */
function quoted(text: string): string {
  return quote(text);
}

/** A mapping key as YAML reads it back as the same string: plain where that is unambiguous, else quoted. */
function yamlKey(key: string): string {
  return /^[A-Za-z][A-Za-z0-9._-]*$/.test(key) && !/^(true|false|null|yes|no|on|off|y|n)$/i.test(key)
    ? key
    : quoted(key);
}

/**
 * One line of YAML flow style; strings are JSON-quoted (a subset of YAML's double-quoted style),
 * with C1 controls and bidirectional overrides escaped as well (`quoted`): YAML reads `\u202e` back
 * as the same character, while the file itself never shows one to an editor or a terminal.
 */
function flow(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(flow).join(', ')}]`;
  if (value !== null && typeof value === 'object')
    return `{ ${Object.entries(value)
      .map(([k, v]) => `${yamlKey(k)}: ${flow(v)}`)
      .join(', ')} }`;
  return typeof value === 'string' ? quoted(value) : (JSON.stringify(value) ?? 'null');
}
