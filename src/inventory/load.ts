import { readFileSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { type Catalogs, loadCatalogs } from '../catalog/load.js';
import type { Catalog, FactSpec } from '../catalog/types.js';
import { parseVersion, versionRangesText, versionWithin } from '../catalog/version.js';
import { InputError, InputErrors, quote, shown, UsageError } from '../errors.js';
import { addressIdentity, parseAddress } from '../model/address.js';
import { parseSize, readBounded, readBoundedStdin, sizeText, statProblem } from '../util/read.js';
import { SCHEMAS, type SchemaFinding, schemaFindings } from '../util/schema.js';
import { unknownName } from '../util/suggest.js';
import { type LoadedYaml, loadYamlFile, type PathPart, parseYamlText } from '../util/yaml.js';
import type { Host, Inventory, ProductUse, RoleRef } from './types.js';

interface RawInventory {
  site: string;
  description?: string;
  catalogs?: string[];
  advisories?: 'include' | 'exclude';
  products?: Record<string, null | ({ features?: string[] } & Record<string, unknown>)>;
  hosts: Record<
    string,
    {
      address: string;
      roles: string[];
      facts?: Record<string, string | number | boolean | (string | number)[]>;
      description?: string;
    }
  >;
}

export interface Site {
  inventory: Inventory;
  catalogs: Catalogs;
  /** Where a key path of the inventory is written (file:line:column), from the one read of it. */
  locate: LoadedYaml['locate'];
}

/** The largest inventory file read by default: about 700,000 hosts of one line each. */
export const DEFAULT_MAX_INVENTORY_BYTES = 64 * 1024 * 1024;
/** The most --max-inventory-size may allow: the text must fit one JavaScript string (512 MiB) with room. */
export const MAX_INVENTORY_BYTES_CEILING = 256 * 1024 * 1024;
/** The environment variable that sets the inventory limit when --max-inventory-size is not given. */
export const INVENTORY_LIMIT_ENV = 'PORTOLAN_MAX_INVENTORY_SIZE';
const LIMIT_HINT = `raise it with --max-inventory-size SIZE or ${INVENTORY_LIMIT_ENV}=SIZE (e.g. 128MiB)`;

/**
 * The inventory size limit in bytes: `option` (the text of --max-inventory-size) when given, else
 * the environment variable PORTOLAN_MAX_INVENTORY_SIZE, else DEFAULT_MAX_INVENTORY_BYTES (64 MiB).
 * Sizes are `65536`, `64MiB`, `64M`, `1GiB` (parseSize). A size that is not one, is 0, or is over
 * MAX_INVENTORY_BYTES_CEILING is a UsageError naming where it came from.
 */
export function inventoryLimit(option?: string, env: NodeJS.ProcessEnv = process.env): number {
  const from = option !== undefined ? '--max-inventory-size' : INVENTORY_LIMIT_ENV;
  const text = option ?? env[INVENTORY_LIMIT_ENV];
  if (text === undefined || (option === undefined && text === '')) return DEFAULT_MAX_INVENTORY_BYTES;
  const bytes = parseSize(text);
  if (bytes === undefined || bytes < 1 || bytes > MAX_INVENTORY_BYTES_CEILING)
    throw new UsageError(
      `${from} ${quote(text)} is not a size from 1 byte to ${sizeText(MAX_INVENTORY_BYTES_CEILING)} (expected bytes or a number with a unit, e.g. 128MiB, 200MB, 1048576)`,
    );
  return bytes;
}

export interface LoadOptions {
  /** Largest inventory file read, in bytes; default inventoryLimit() (the environment, else 64 MiB). */
  maxBytes?: number;
  /** The inventory's bytes, already read with readInventory: `file` is then not read again. */
  bytes?: Buffer;
}

/**
 * The bytes of the inventory `file`, read once up to `maxBytes` (inventoryLimit()): for a command
 * that needs the text as well as the site (a pipe cannot be read twice). InputError as loadSite.
 */
export function readInventory(file: string, maxBytes = inventoryLimit()): Buffer {
  return file === STDIN
    ? readBoundedStdin(file, maxBytes, 'inventory', LIMIT_HINT, { expected: 'YAML text' })
    : readBounded(file, maxBytes, 'inventory', LIMIT_HINT, { expected: 'YAML text' });
}

/**
 * The inventory argument that means stdin, as `-` does to most command-line tools. Messages
 * locate its errors at `-`; a `catalogs:` path in it is relative to the working directory.
 */
export const STDIN = '-';

/**
 * Loads a site inventory and the catalogs it needs (built-in, `--catalog` paths, and the inventory's
 * own `catalogs:` list), then checks every product, role, feature, setting, fact and address against
 * them. Everything past this point works on trusted types. The file is read up to `opts.maxBytes`
 * (inventoryLimit); a longer one, /dev/zero or an endless pipe is an InputError naming the option.
 * `file` `-` (STDIN) is read from stdin.
 */
export function loadSite(file: string, extraCatalogs: readonly string[] = [], opts: LoadOptions = {}): Site {
  const bytes =
    opts.bytes ?? (file === STDIN ? readInventory(file, opts.maxBytes ?? inventoryLimit()) : undefined);
  const y = bytes
    ? parseYamlText(bytes, file, 'inventory', { controls: 'refuse' })
    : loadYamlFile(file, 'inventory', {
        maxBytes: opts.maxBytes ?? inventoryLimit(),
        limitHint: LIMIT_HINT,
        controls: 'refuse',
      });
  return siteOf(y, file, extraCatalogs);
}

/**
 * Checks inventory text that is not on disk yet (an import's output before it is written) exactly as
 * loadSite checks a file; errors are located as if the text were `file` (catalogs: resolve beside it).
 */
export function loadSiteText(text: string, file: string, extraCatalogs: readonly string[] = []): Site {
  return siteOf(
    parseYamlText(Buffer.from(text, 'utf8'), file, 'inventory', { controls: 'refuse' }),
    file,
    extraCatalogs,
  );
}

function siteOf(y: LoadedYaml, file: string, extraCatalogs: readonly string[]): Site {
  const { raw, schemaErrors } = schemaChecked(y);
  const named = new Set(extraCatalogs.map((p) => realOrResolved(p)));
  const home = realOrResolved(dirname(file));
  const own = (raw.catalogs ?? []).map((p, i) => {
    const path = resolve(dirname(file), p);
    const problem = statProblem(path);
    if (problem)
      throw new InputError(
        `${shown(p)} ${problem} (looked for ${isAbsolute(p) ? p : join(dirname(file), p)}; expected a directory of catalog YAML files or one such file, relative to the inventory)`,
        y.locate(['catalogs', i]),
      );
    // An inventory may only name catalogs beside it: otherwise any file the user can read (a key,
    // /etc/shadow) could be named here and quoted back in the parse error.
    const real = realOrResolved(path);
    if (!named.has(real) && !isInside(real, home))
      throw new InputError(
        `${shown(p)} is outside the inventory's directory (expected a catalog directory or file inside ${dirname(file)}; name catalogs elsewhere with --catalog PATH)`,
        y.locate(['catalogs', i]),
      );
    return path;
  });
  const catalogs = loadCatalogs([...extraCatalogs, ...own.filter((p) => !named.has(realOrResolved(p)))]);
  return { inventory: checkInventory(raw, y, catalogs, own, schemaErrors), catalogs, locate: y.locate };
}

/**
 * The inventory as far as the schema allows it. When every schema error lies inside some hosts,
 * those hosts are set aside and the rest goes on to the catalog checks, so that `validate` lists
 * the catalog errors of the other hosts in the same run; the schema errors are returned to be
 * reported with them. Any other schema error (a product's settings, a top-level key) is thrown
 * with all the schema errors (InputErrors), before the catalogs are read.
 */
function schemaChecked(y: LoadedYaml): { raw: RawInventory; schemaErrors: InputError[] } {
  const found = inventorySchemaFindings(y);
  if (!found.length) return { raw: y.data as RawInventory, schemaErrors: [] };
  const errors = found.map((f) => f.error);
  const all = () => (errors.length === 1 ? (errors[0] as InputError) : new InputErrors(errors));
  const bad = new Set<string>();
  for (const f of found) {
    if (f.path[0] !== 'hosts' || typeof f.path[1] !== 'string') throw all();
    bad.add(f.path[1]);
  }
  const data = y.data as Record<string, unknown> & { hosts: Record<string, unknown> };
  const pruned = {
    ...data,
    hosts: Object.fromEntries(Object.entries(data.hosts).filter(([name]) => !bad.has(name))),
  };
  // Without those hosts the rest must be valid as it stands (a site left with no hosts is not).
  if (schemaFindings({ ...y, data: pruned }, 'inventory').length) throw all();
  return { raw: pruned as RawInventory, schemaErrors: errors };
}

/**
 * The host shape of schema/inventory.json that hostsValid checks: when the schema's `hosts` is no
 * longer this, or its top level gains a keyword that could reach into hosts, hostsValid is not
 * used and ajv checks every host.
 */
const HOSTS_SCHEMA = {
  type: 'object',
  minProperties: 1,
  propertyNames: {
    pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$',
    patternText:
      "a host name of letters, digits, '.', '_' and '-', starting with a letter or digit, at most 63 characters",
  },
  additionalProperties: {
    type: 'object',
    additionalProperties: false,
    required: ['address', 'roles'],
    properties: {
      address: { type: 'string', minLength: 1 },
      roles: { type: 'array', minItems: 1, items: { type: 'string' } },
      facts: {
        type: 'object',
        additionalProperties: {
          oneOf: [
            { type: ['string', 'number', 'boolean'] },
            { type: 'array', items: { type: ['string', 'number'] } },
          ],
        },
      },
      description: { type: 'string' },
    },
  },
};
const TOP_KEYWORDS = new Set([
  '$schema',
  '$id',
  'title',
  'description',
  'type',
  'additionalProperties',
  'required',
  'properties',
]);
let hostShapeKnown: boolean | undefined;

/** Whether schema/inventory.json gives hosts exactly HOSTS_SCHEMA, and nothing else reaches them. */
export function inventoryHostShapeKnown(): boolean {
  if (hostShapeKnown === undefined) {
    const schema = JSON.parse(readFileSync(SCHEMAS.inventory, 'utf8')) as {
      properties?: { hosts?: unknown };
    };
    hostShapeKnown =
      Object.keys(schema).every((k) => TOP_KEYWORDS.has(k)) &&
      JSON.stringify(schema.properties?.hosts) === JSON.stringify(HOSTS_SCHEMA);
  }
  return hostShapeKnown;
}

const HOST_NAME = new RegExp(HOSTS_SCHEMA.propertyNames.pattern, 'u');

/** A string, a boolean, or a finite number (what every ajv setting takes for "number"). */
function isFactScalar(v: unknown, booleans: boolean): boolean {
  return (
    typeof v === 'string' ||
    (typeof v === 'number' && Number.isFinite(v)) ||
    (booleans && typeof v === 'boolean')
  );
}

/**
 * True when every host has a valid name and the shape HOSTS_SCHEMA gives hosts; false when any
 * might not (ajv then says which, and how). Never true where ajv would find an error. `names`:
 * Object.keys(hosts), once for the site (for-in over a large mapping looks each name up again).
 */
function hostsValid(hosts: Record<string, unknown>, names: readonly string[]): boolean {
  for (let n = 0; n < names.length; n++) {
    const name = names[n] as string;
    if (!HOST_NAME.test(name)) return false;
    const h = hosts[name];
    if (h === null || typeof h !== 'object' || Array.isArray(h)) return false;
    let address = false;
    let roles = false;
    for (const key in h) {
      const v = (h as Record<string, unknown>)[key];
      if (key === 'address') {
        if (typeof v !== 'string' || v.length === 0) return false;
        address = true;
      } else if (key === 'roles') {
        if (!Array.isArray(v) || v.length === 0) return false;
        for (let i = 0; i < v.length; i++) if (typeof v[i] !== 'string') return false;
        roles = true;
      } else if (key === 'facts') {
        if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
        for (const fact in v) {
          const value = (v as Record<string, unknown>)[fact];
          if (Array.isArray(value)) {
            for (let i = 0; i < value.length; i++) if (!isFactScalar(value[i], false)) return false;
          } else if (!isFactScalar(value, true)) return false;
        }
      } else if (key === 'description') {
        if (typeof v !== 'string') return false;
      } else return false;
    }
    if (!address || !roles) return false;
  }
  return true;
}

/**
 * schemaFindings(y, 'inventory'), the same findings in less time on a large valid site: when every
 * host passes hostsValid, ajv checks the document with its first host only, and the whole document
 * only when that finds anything.
 */
export function inventorySchemaFindings(y: LoadedYaml): SchemaFinding[] {
  const data = y.data;
  if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
    const hosts = (data as { hosts?: unknown }).hosts;
    if (hosts !== null && typeof hosts === 'object' && !Array.isArray(hosts) && inventoryHostShapeKnown()) {
      const names = Object.keys(hosts);
      const first = names[0];
      if (first !== undefined && names.length > 1 && hostsValid(hosts as Record<string, unknown>, names)) {
        const one: Record<string, unknown> = {};
        Object.defineProperty(one, first, {
          value: (hosts as Record<string, unknown>)[first],
          writable: true,
          enumerable: true,
          configurable: true,
        });
        if (!schemaFindings({ ...y, data: { ...data, hosts: one } }, 'inventory').length) return [];
      }
    }
  }
  return schemaFindings(y, 'inventory');
}

function realOrResolved(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

/** Whether `path` is `dir` or below it (both real paths). */
function isInside(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

function checkInventory(
  raw: RawInventory,
  y: LoadedYaml,
  catalogs: Catalogs,
  ownCatalogs: string[],
  schemaErrors: readonly InputError[] = [],
): Inventory {
  // Every error is collected: a failed check skips only what depends on it (one product, role,
  // fact or address), so validate can list them all in one run.
  const errors: InputError[] = [...schemaErrors];
  const SKIP = Symbol('skip');
  const fail: (detail: string, path: PathPart[], at?: 'key' | 'value') => never = (
    detail,
    path,
    at = 'value',
  ) => {
    errors.push(new InputError(detail, y.locate(path, at)));
    throw SKIP;
  };
  const attempt = (check: () => void): void => {
    try {
      check();
    } catch (e) {
      if (e !== SKIP) throw e;
    }
  };
  const productIds = [...catalogs.keys()];
  const products = new Map<string, ProductUse>();
  for (const [id, use] of Object.entries(raw.products ?? {}))
    attempt(() => {
      const cat = catalogs.get(id);
      if (!cat) fail(unknownName('product', id, productIds), ['products', id], 'key');
      const features = new Set<string>();
      (use?.features ?? []).forEach(
        (f, i) =>
          void attempt(() => {
            const known = Object.keys(cat.features ?? {});
            if (!known.includes(f))
              fail(unknownName('feature', f, known, { context: ` for product ${id}` }), [
                'products',
                id,
                'features',
                i,
              ]);
            features.add(f);
          }),
      );
      const settings: Record<string, string> = {};
      const before = errors.length;
      for (const [key, value] of Object.entries(use ?? {}))
        attempt(() => {
          if (key === 'features') return;
          const spec = cat.settings?.[key];
          if (!spec)
            fail(
              unknownName('setting', key, ['features', ...Object.keys(cat.settings ?? {})], {
                context: ` for product ${id}`,
              }),
              ['products', id, key],
              'key',
            );
          // A version YAML read as a number is taken as written: 11.10 is not 11.1, 0x50 not 80.
          const text =
            typeof value === 'number' && spec.type === 'version'
              ? (y.written?.(['products', id, key]) ?? String(value))
              : String(value);
          if (spec.type === 'version' && !parseVersion(text))
            fail(
              `${shown(typeof value === 'number' ? text : value)} is not a version (expected dotted numbers such as "2019.5" or "8.1.3")`,
              ['products', id, key],
            );
          if (spec.values && !spec.values.includes(text))
            fail(`${shown(value)} is not allowed for ${key} (expected one of: ${spec.values.join(', ')})`, [
              'products',
              id,
              key,
            ]);
          settings[key] = text;
        });
      // A version is judged against the settings only once they are all known good.
      if (errors.length === before)
        try {
          checkSettingVersions(id, cat, settings, y);
        } catch (e) {
          if (!(e instanceof InputError)) throw e;
          errors.push(e);
        }
      products.set(id, { features, settings });
    });

  // What depends only on a role's text, or on a host's roles, is worked out once for the site.
  const roleRefs = new Map<string, RoleRef>();
  const attemptRole = (text: string, path: PathPart[]): RoleRef | undefined => {
    let ref: RoleRef | undefined;
    attempt(() => {
      const m = /^([a-z0-9-]+):([a-z0-9-]+)$/.exec(text);
      if (!m)
        fail(`${shown(text)} is not a role (expected product:role, e.g. druva-vmware:backup-proxy)`, path);
      const [, product = '', role = ''] = m;
      const cat = catalogs.get(product);
      if (!cat) fail(unknownName('product', product, productIds), path);
      if (!cat.roles[role])
        fail(unknownName('role', role, Object.keys(cat.roles), { context: ` for product ${product}` }), path);
      if (!products.has(product))
        fail(`product ${product} is not listed under products (add "${product}: {}" there to plan it)`, path);
      ref = { product, role };
    });
    return ref;
  };
  const factsByRoles = new Map<RoleRef | string, Map<string, { list: boolean; values: Set<string> }>>();
  /** Per fact the roles take: whether it is a list, and the values every one of the roles allows. */
  const allowedFacts = (roles: readonly RoleRef[]) => {
    const key =
      roles.length === 1 ? (roles[0] as RoleRef) : roles.map((r) => `${r.product}:${r.role}`).join(' ');
    let known = factsByRoles.get(key);
    if (!known) {
      known = new Map();
      for (const r of roles)
        for (const [fact, spec] of Object.entries(catalogs.get(r.product)?.facts?.[r.role] ?? {})) {
          const seen = known.get(fact);
          if (!seen) known.set(fact, { list: spec.list === true, values: new Set(spec.values) });
          else {
            seen.list ||= spec.list === true;
            for (const v of seen.values) if (!spec.values.includes(v)) seen.values.delete(v);
          }
        }
      factsByRoles.set(key, known);
    }
    return known;
  };
  const hosts: Host[] = [];
  const seenAddresses = new Map<string, string>();
  // The per-host checks run for every host of a large site: no closures or arrays per host on
  // the way through, and a path is built only when an error names it. No closure in the loop
  // below names its variables either: one that did would have each host's variables allocated on
  // the heap, whether it ran or not; the checks that report go through these instead.
  const hostPath = (name: string, ...p: PathPart[]): PathPart[] => ['hosts', name, ...p];
  const roleTwice = (name: string, text: string, i: number): void =>
    attempt(() =>
      fail(
        `role ${shown(text)} is listed twice (expected each role once per host)`,
        hostPath(name, 'roles', i),
      ),
    );
  const checkedFact = (
    name: string,
    h: RawInventory['hosts'][string],
    roles: readonly RoleRef[],
    facts: Record<string, string | string[]>,
    fact: string,
    value: string | number | boolean | (string | number)[],
  ): void =>
    attempt(() => {
      const specs = roles.flatMap((r) => {
        const spec = catalogs.get(r.product)?.facts?.[r.role]?.[fact];
        return spec ? [{ spec, r }] : [];
      });
      if (specs.length === 0) {
        const known = [
          ...new Set(roles.flatMap((r) => Object.keys(catalogs.get(r.product)?.facts?.[r.role] ?? {}))),
        ];
        const expected = known.length
          ? `expected one of: ${known.join(', ')}`
          : `expected none: ${h.roles.join(', ')} take${h.roles.length === 1 ? 's' : ''} no facts`;
        fail(
          unknownName('fact', fact, known, { context: " for this host's roles", expected }),
          hostPath(name, 'facts', fact),
          'key',
        );
      }
      facts[fact] = checkFact(value, specs, hostPath(name, 'facts', fact), fail);
    });
  const hostsRaw = raw.hosts;
  for (const name of Object.keys(hostsRaw)) {
    const h = hostsRaw[name] as RawInventory['hosts'][string];
    const address = parseAddress(h.address);
    try {
      if ('error' in address) fail(address.error, hostPath(name, 'address'));
      // A zone (fe80::1%eth0) names an interface of one machine; rules on the firewall and on every
      // other host match addresses, and no export format could carry it (RFC 4007 section 6).
      const zone = h.address.indexOf('%');
      if (zone >= 0)
        fail(
          `${shown(h.address)} carries a zone index (${h.address.slice(zone)}): a zone names an interface of one machine, and the firewalls portolan exports for match addresses, not another machine's interface, so no export could carry it (expected the host's global or unique-local address, as "ip -6 addr show scope global" lists it)`,
          hostPath(name, 'address'),
        );
      // 10.10.0.21, 10.10.0.21/32 and ::ffff:10.10.0.21 are one address.
      const identity = addressIdentity(address);
      const other = seenAddresses.get(identity);
      if (other !== undefined)
        fail(
          `address ${address.text} is already host ${shown(other)}'s${identity === address.text ? '' : ` (the same address as ${identity})`} (expected one host per address; give the host several roles instead)`,
          hostPath(name, 'address'),
        );
      seenAddresses.set(identity, name);
    } catch (e) {
      if (e !== SKIP) throw e;
    }
    // Made with its first role: a list of one (most hosts) is then one element long, not the
    // room for sixteen that a push to an empty list makes.
    let found: RoleRef[] | undefined;
    for (let i = 0; i < h.roles.length; i++) {
      const text = h.roles[i] as string;
      // A role text names the same product and role on every host: checked once (attemptRole).
      let ref = roleRefs.get(text);
      if (ref === undefined) {
        ref = attemptRole(text, hostPath(name, 'roles', i));
        if (ref) roleRefs.set(text, ref);
      }
      if (!ref) continue;
      if (found?.includes(ref)) {
        roleTwice(name, text, i);
        continue;
      }
      if (found) found.push(ref);
      else found = [ref];
    }
    const roles = found ?? [];
    const facts: Record<string, string | string[]> = {};
    const given = h.facts;
    if (given) {
      // The same roles take the same facts: the values each fact of them allows are found once per
      // set of roles (allowedFacts), and a value they all allow is taken without the checks below.
      const allowed = roles.length === h.roles.length ? allowedFacts(roles) : undefined;
      for (const fact of Object.keys(given)) {
        const value = given[fact] as string | number | boolean | (string | number)[];
        const quick = allowed?.get(fact);
        if (quick && !Array.isArray(value)) {
          const v = String(value);
          if (!quick.list && quick.values.has(v)) {
            facts[fact] = v;
            continue;
          }
        } else if (quick?.list && Array.isArray(value)) {
          const list = value.map(String);
          let allowedOnce = true;
          for (let i = 0; i < list.length && allowedOnce; i++) {
            const v = list[i] as string;
            allowedOnce = quick.values.has(v) && list.indexOf(v) === i;
          }
          if (allowedOnce) {
            facts[fact] = list;
            continue;
          }
        }
        checkedFact(name, h, roles, facts, fact, value);
      }
    }
    if ('error' in address) continue;
    const host: Host = { name, address, roles, facts };
    if (h.description !== undefined) host.description = h.description;
    hosts.push(host);
  }
  if (errors.length) {
    // In the order they are in the file.
    const at = (e: InputError) => [e.location?.line ?? 0, e.location?.column ?? 0] as const;
    errors.sort((a, b) => at(a)[0] - at(b)[0] || at(a)[1] - at(b)[1]);
    throw errors.length === 1 ? errors[0] : new InputErrors(errors);
  }
  return {
    file: y.file,
    site: raw.site,
    products,
    hosts,
    catalogs: ownCatalogs,
    ...(raw.advisories !== undefined ? { advisories: raw.advisories === 'include' } : {}),
    sha256: y.sha256,
  };
}

/**
 * A settings value may be one its product never had with that version (PlateSpin `edition: forge`
 * with `version: "8.1.3"`, a Portability Suite number): the catalog lists each value's version
 * ranges, and a version outside them is refused rather than planned as some other release.
 */
function checkSettingVersions(
  product: string,
  cat: Catalog,
  settings: Record<string, string>,
  y: LoadedYaml,
): void {
  const version = settings.version ?? cat.settings?.version?.default;
  const v = version === undefined ? undefined : parseVersion(version);
  if (!v) return;
  for (const [name, spec] of Object.entries(cat.settings ?? {})) {
    const value = settings[name] ?? spec.default;
    const ranges = value === undefined ? undefined : spec.versions?.[value];
    if (!ranges) continue;
    const ok = ranges.some((r) =>
      versionWithin(v, r.min ? parseVersion(r.min) : undefined, r.max ? parseVersion(r.max) : undefined),
    );
    if (ok) continue;
    const text = versionRangesText(ranges);
    const path: PathPart[] = ['products', product, settings.version !== undefined ? 'version' : name];
    throw new InputError(
      `${product} ${name} ${shown(value)} never had version ${shown(version)} (expected a ${value} version: ${text}${settings[name] === undefined ? `; ${name} defaults to ${value}, give ${name} if this is another one` : ''})`,
      y.locate(path),
    );
  }
}

function checkFact(
  value: string | number | boolean | (string | number)[],
  specs: { spec: FactSpec; r: RoleRef }[],
  path: PathPart[],
  fail: (d: string, p: PathPart[]) => never,
): string | string[] {
  const list = specs.some((s) => s.spec.list);
  const allowed = specs[0]?.spec.values ?? [];
  // A fact shared by several roles must suit each: name the role whose list refused the value.
  const check = (v: string, p: PathPart[]) => {
    const refusing = specs.find((s) => !s.spec.values.includes(v));
    if (refusing)
      fail(
        `${shown(v)} is not allowed for ${refusing.r.product}:${refusing.r.role} (expected one of: ${refusing.spec.values.join(', ')})`,
        p,
      );
    return v;
  };
  if (Array.isArray(value)) {
    if (!list) fail(`expected one value (one of: ${allowed.join(', ')}), got a list`, path);
    const out = value.map((v, i) => check(String(v), [...path, i]));
    const dup = out.findIndex((v, i) => out.indexOf(v) !== i);
    if (dup >= 0) fail(`${shown(out[dup])} is listed twice (expected each value once)`, [...path, dup]);
    return out;
  }
  if (list) fail(`expected a list (e.g. [${allowed.slice(0, 2).join(', ')}]), got ${shown(value)}`, path);
  return check(String(value), path);
}
