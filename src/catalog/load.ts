import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { InputError, shown } from '../errors.js';
import { MAX_PORT } from '../model/ports.js';
import { packagePath } from '../util/paths.js';
import { fsProblem } from '../util/read.js';
import { validateWithSchema } from '../util/schema.js';
import { unknownName } from '../util/suggest.js';
import { type LoadedYaml, loadYamlFile, type PathPart } from '../util/yaml.js';
import { type Catalog, type Condition, isPageRef, type PeerSpec } from './types.js';
import { parseVersion } from './version.js';

export const BUILTIN_CATALOG_DIR = packagePath('catalog');

/** The catalogs by product id: the built-in ones, then each extra directory or file in order. */
export type Catalogs = ReadonlyMap<string, Catalog>;

export function loadCatalogs(extra: readonly string[] = []): Catalogs {
  const out = new Map<string, Catalog>();
  for (const file of [...catalogFiles(BUILTIN_CATALOG_DIR), ...extra.flatMap((p) => catalogFiles(p))]) {
    const catalog = loadCatalogFile(file);
    const previous = out.get(catalog.product);
    if (previous)
      throw new InputError(
        `product ${shown(catalog.product)} is already defined by ${displayPath(previous.file)} (expected a product id of its own)`,
        {
          file: displayPath(file),
          path: 'product',
        },
      );
    out.set(catalog.product, catalog);
  }
  return out;
}

function catalogFiles(path: string): string[] {
  // Only --catalog '' gets here empty (the inventory's catalogs: items are non-empty): say so, not ": ...".
  if (path === '')
    throw new InputError(
      '--catalog needs a path (expected a directory of catalog YAML files or one such file)',
    );
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch (err) {
    throw new InputError(
      `the catalog path ${fsProblem(err)} (expected a directory of catalog YAML files or one such file)`,
      { file: path },
      { cause: err },
    );
  }
  if (!st.isDirectory()) return [path];
  let names: string[];
  try {
    names = readdirSync(path);
  } catch (err) {
    throw new InputError(
      `the catalog directory ${fsProblem(err)} (expected a directory of catalog YAML files this user can list)`,
      { file: path },
      { cause: err },
    );
  }
  return names
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()
    .map((f) => join(path, f));
}

function displayPath(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel.startsWith('..') ? file : rel;
}

/**
 * Built-in catalogs validated at build time (scripts/cache-catalogs.mjs), keyed by the SHA-256 of
 * the YAML they came from: parsing and validating them is most of a command's start-up. A catalog
 * whose file no longer matches its cache entry is loaded from the YAML as usual.
 */
export const CATALOG_CACHE = packagePath('dist', 'catalog-cache.json');
type CatalogCache = Record<string, { sha256: string; catalog: Omit<Catalog, 'file'> }>;
let cacheMemo: CatalogCache | undefined;

function cached(file: string): Omit<Catalog, 'file'> | undefined {
  if (dirname(file) !== BUILTIN_CATALOG_DIR.replace(/\/$/, '')) return undefined;
  try {
    cacheMemo ??= JSON.parse(readFileSync(CATALOG_CACHE, 'utf8')) as CatalogCache;
    const entry = cacheMemo[basename(file)];
    if (!entry) return undefined;
    const sha256 = createHash('sha256').update(readFileSync(file)).digest('hex');
    return entry.sha256 === sha256 ? entry.catalog : undefined;
  } catch {
    return undefined; // no cache (a fresh checkout before the build): load the YAML
  }
}

export function loadCatalogFile(file: string): Catalog {
  const hit = cached(file);
  if (hit) return { ...hit, file };
  const loaded = loadYamlFile(file, 'catalog');
  const shownFile = displayPath(file);
  const located: LoadedYaml = {
    ...loaded,
    file: shownFile,
    locate: (p, w) => ({ ...loaded.locate(p, w), file: shownFile }),
  };
  const catalog = validateWithSchema<Omit<Catalog, 'file'>>(located, 'catalog');
  checkCatalog(catalog, located);
  return { ...catalog, file };
}

/** What the schema cannot say: references between parts of the catalog. */
function checkCatalog(cat: Omit<Catalog, 'file'>, y: LoadedYaml): void {
  const fail: (detail: string, path: PathPart[]) => never = (detail, path) => {
    throw new InputError(detail, y.locate(path));
  };
  const roles = Object.keys(cat.roles);
  const docs = new Set(cat.documents.map((d) => d.file));
  for (const [role, facts] of Object.entries(cat.facts ?? {})) {
    if (!cat.roles[role]) fail(`facts for ${unknownName('role', role, roles)}`, ['facts', role]);
    for (const [name, spec] of Object.entries(facts))
      if (spec.default !== undefined && !spec.values.includes(spec.default))
        fail(`default ${shown(spec.default)} is not one of its values (${spec.values.join(', ')})`, [
          'facts',
          role,
          name,
          'default',
        ]);
  }
  for (const [role, facts] of Object.entries(cat.facts ?? {}))
    for (const [name, spec] of Object.entries(facts))
      if (
        spec.setting !== undefined &&
        !cat.settings?.[spec.setting]?.values?.every((v) => spec.values.includes(v))
      )
        fail(`setting ${shown(spec.setting)} is not a setting whose values this fact takes`, [
          'facts',
          role,
          name,
          'setting',
        ]);
  for (const [name, spec] of Object.entries(cat.settings ?? {})) {
    (spec.sources ?? []).forEach((s, j) => {
      if (!isPageRef(s) && !docs.has(s.doc))
        fail(`source document ${shown(s.doc)} is not listed under documents`, [
          'settings',
          name,
          'sources',
          j,
        ]);
    });
    for (const [value, ranges] of Object.entries(spec.versions ?? {})) {
      if (!spec.values?.includes(value))
        fail(`${shown(value)} is not a value of setting ${name}`, ['settings', name, 'versions', value]);
      for (const r of ranges)
        for (const bound of [r.min, r.max])
          if (bound !== undefined && !parseVersion(bound))
            fail(`${shown(bound)} is not a dotted version`, ['settings', name, 'versions', value]);
    }
    if (spec.type === 'version' && spec.default !== undefined && !parseVersion(spec.default))
      fail(`default ${shown(spec.default)} is not a dotted version such as 11.0`, [
        'settings',
        name,
        'default',
      ]);
  }
  const ids = new Set<string>();
  cat.entries.forEach((e, i) => {
    const at = (...p: PathPart[]) => ['entries', i, ...p];
    if (ids.has(e.id)) fail(`duplicate entry id ${shown(e.id)} (expected each id once)`, at('id'));
    ids.add(e.id);
    const roleOf = (peer: PeerSpec, side: 'from' | 'to'): string | undefined => {
      const role = typeof peer === 'string' ? peer : 'role' in peer ? peer.role : undefined;
      if (role !== undefined && !cat.roles[role]) fail(unknownName('role', role, roles), at(side));
      return role;
    };
    const sides = { from: roleOf(e.from, 'from'), to: roleOf(e.to, 'to') };
    if (typeof e.from === 'object' && 'local' in e.from)
      fail('only "to" may be local (the same host as "from")', at('from'));
    if (typeof e.from === 'object' && 'any' in e.from && typeof e.to === 'object' && 'any' in e.to)
      fail('both ends are unspecified (expected at least one role)', at('to'));
    (e.ports ?? []).forEach((p, j) => {
      if (typeof p === 'string') {
        const [lo, hi] = p.split('-').map(Number) as [number, number];
        if (lo < 1 || hi > MAX_PORT || lo > hi)
          fail(`port range ${shown(p)} is not low-high within 1-65535`, at('ports', j));
      } else if (typeof p === 'object') {
        const d = p['per-drive'];
        const role = sides[d.of];
        const spec = role ? cat.facts?.[role]?.[d.fact] : undefined;
        if (!spec?.list)
          fail(
            `per-drive needs a list fact ${shown(d.fact)} on the ${d.of} role`,
            at('ports', j, 'per-drive', 'fact'),
          );
        const count = d.last.charCodeAt(0) - d.first.charCodeAt(0);
        if (count < 0 || d.base + count > MAX_PORT)
          fail('per-drive letters or base give ports outside 1-65535', at('ports', j, 'per-drive'));
      }
    });
    e.sources.forEach((s, j) => {
      if (!isPageRef(s) && !docs.has(s.doc))
        fail(`source document ${shown(s.doc)} is not listed under documents`, at('sources', j, 'doc'));
    });
    // An advisory rests on a vendor page; a document entry on document rows only.
    const pages = e.sources.filter(isPageRef).length;
    if (e.basis === 'advisory' && pages === 0)
      fail('an advisory entry needs a source page (url, title, read)', at('sources'));
    if (e.basis !== 'advisory' && pages > 0)
      fail('a source page (url) makes this entry an advisory (expected basis: advisory)', at('basis'));
    checkConditions(cat, sides, e.when ?? [], at('when'), fail);
  });
  (cat.warnings ?? []).forEach((w, i) => {
    if (w.role !== undefined && !cat.roles[w.role])
      fail(unknownName('role', w.role, roles), ['warnings', i, 'role']);
    w.sources.forEach((s, j) => {
      if (!isPageRef(s) && !docs.has(s.doc))
        fail(`source document ${shown(s.doc)} is not listed under documents`, ['warnings', i, 'sources', j]);
    });
    checkConditions(cat, { from: w.role, to: w.role }, w.when, ['warnings', i, 'when'], fail);
  });
}

function checkConditions(
  cat: Omit<Catalog, 'file'>,
  sides: { from: string | undefined; to: string | undefined },
  conds: readonly Condition[],
  path: PathPart[],
  fail: (detail: string, path: PathPart[]) => never,
): void {
  conds.forEach((c, i) => {
    const at = [...path, i];
    if ('feature' in c && !cat.features?.[c.feature])
      fail(unknownName('feature', c.feature, Object.keys(cat.features ?? {})), [...at, 'feature']);
    if ('fact' in c) {
      const role = sides[c.fact.of];
      const spec = role ? cat.facts?.[role]?.[c.fact.name] : undefined;
      if (!spec)
        fail(
          `fact ${shown(c.fact.name)} is not declared for the ${c.fact.of} role ${shown(role ?? 'unspecified')}`,
          [...at, 'fact', 'name'],
        );
      const values = [c.fact.is ?? [], c.fact.has ?? []].flat();
      for (const v of values)
        if (!spec.values.includes(v))
          fail(
            `${shown(v)} is not a value of fact ${c.fact.name} (expected one of: ${spec.values.join(', ')})`,
            [...at, 'fact'],
          );
    }
    if ('setting' in c && !cat.settings?.[c.setting.name])
      fail(unknownName('setting', c.setting.name, Object.keys(cat.settings ?? {})), [
        ...at,
        'setting',
        'name',
      ]);
    if ('setting' in c)
      for (const bound of [c.setting.min, c.setting.max])
        if (bound !== undefined && !parseVersion(bound))
          fail(`${shown(bound)} is not a dotted version`, [...at, 'setting']);
    for (const r of ['role-present', 'role-absent'] as const)
      if (r in c && !cat.roles[(c as Record<string, string>)[r] ?? ''])
        fail(
          unknownName('role', (c as Record<string, string>)[r] ?? '', Object.keys(cat.roles), {
            context: ` in ${r}`,
          }),
          [...at, r],
        );
    if ('all' in c) checkConditions(cat, sides, c.all, [...at, 'all'], fail);
    if ('any' in c) checkConditions(cat, sides, c.any, [...at, 'any'], fail);
    if ('not' in c) checkConditions(cat, sides, [c.not], [...at, 'not'], fail);
  });
}
