import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { ErrorObject, Options, ValidateFunction } from 'ajv';
import { InputError, InputErrors, quote, shown } from '../errors.js';
import { maxOf } from './arrays.js';
import { packagePath } from './paths.js';
import { unknownName } from './suggest.js';
import { formatPath, type LoadedYaml, type PathPart } from './yaml.js';

/** The schemas input is checked against: the inventory contract, the catalog format, the import map. */
export const SCHEMAS = {
  inventory: packagePath('schema', 'inventory.json'),
  catalog: packagePath('catalog', 'schema.json'),
  'import-map': packagePath('schema', 'import-map.json'),
} as const;
export type SchemaName = keyof typeof SCHEMAS;

// verbose: errors carry their parentSchema, which names the keys that are allowed.
export const AJV_OPTIONS: Options = { allErrors: true, strict: false, verbose: true };

/** Where the build writes the standalone validator of a schema (scripts/compile-schemas.mjs). */
export function validatorPath(name: SchemaName): string {
  return packagePath('dist', 'validators', `${name}.cjs`);
}

const require = createRequire(import.meta.url);
const validators = new Map<SchemaName, ValidateFunction>();

/**
 * The validator of a schema: the one compiled at build time while it matches the schema file,
 * otherwise (an edited schema, or no build yet) compiled here with ajv.
 */
function validatorFor(name: SchemaName): ValidateFunction {
  const known = validators.get(name);
  if (known) return known;
  const text = readFileSync(SCHEMAS[name]);
  let validate: ValidateFunction | undefined;
  try {
    const built = require(validatorPath(name)) as ValidateFunction & { sha256?: string };
    if (built.sha256 === createHash('sha256').update(text).digest('hex')) validate = built;
  } catch {
    // not built: compile below
  }
  if (!validate) {
    const { Ajv } = require('ajv') as typeof import('ajv');
    validate = new Ajv(AJV_OPTIONS).compile(JSON.parse(text.toString('utf8')) as object);
  }
  validators.set(name, validate);
  return validate;
}

/** Most schema errors reported for one file: past these, the rest are more of the same. */
export const MAX_SCHEMA_ERRORS = 50;

/** One schema error and the path of the value it is about. */
export interface SchemaFinding {
  error: InputError;
  /** Where in the document: the mapping or value the error is about. */
  path: PathPart[];
}

/** Keywords that only say "some alternative failed": their own errors sit deeper. */
const COMBINATORS = new Set(['oneOf', 'anyOf', 'allOf', 'if', 'not', 'then', 'else', 'type']);

/**
 * Every schema error of loaded YAML, one per place (none when it is valid), in document order,
 * each a located InputError (`file:line:col key.path: what was wrong (expected ...)`). The errors
 * ajv gives for one place (a typo'd key also leaves a required key missing, and every oneOf branch
 * complains) become the one most specific error there; errors at other places are kept.
 */
export function schemaFindings(loaded: LoadedYaml, name: SchemaName): SchemaFinding[] {
  const validate = validatorFor(name);
  if (validate(loaded.data)) return [];
  let rest = [...(validate.errors ?? [])];
  const out: SchemaFinding[] = [];
  while (rest.length && out.length < MAX_SCHEMA_ERRORS) {
    const error = pickError(rest);
    const { located, whole } = locatedError(loaded, name, error, rest);
    out.push({ error: located, path: pointerToPath(error.instancePath) });
    // The file is not this kind of document at all: nothing else about it is worth saying.
    if (whole) break;
    const at = error.instancePath;
    rest = rest.filter((e) => {
      const p = e.instancePath;
      // Two unknown keys in one mapping are two mistakes.
      if (p === at && e.keyword === 'additionalProperties' && error.keyword === 'additionalProperties')
        return e.params.additionalProperty !== error.params.additionalProperty;
      if (p === at || p.startsWith(`${at}/`)) return false;
      // An alternative failing above this place failed because of it.
      const above = at.startsWith(`${p}/`) || (p === '' && at !== '');
      return !(above && COMBINATORS.has(e.keyword));
    });
  }
  const line = (f: SchemaFinding) => f.error.location?.line ?? 0;
  const column = (f: SchemaFinding) => f.error.location?.column ?? 0;
  return out.sort((a, b) => line(a) - line(b) || column(a) - column(b));
}

/**
 * Validates loaded YAML against one of the SCHEMAS. Throws the one located InputError, or an
 * InputErrors holding every error (see schemaFindings) when there are several.
 */
export function validateWithSchema<T>(loaded: LoadedYaml, name: SchemaName): T {
  const found = schemaFindings(loaded, name);
  if (!found.length) return loaded.data as T;
  if (found.length === 1) throw (found[0] as SchemaFinding).error;
  throw new InputErrors(found.map((f) => f.error));
}

/** The located error for one ajv error; `whole` when it says the file is not this kind of document. */
function locatedError(
  loaded: LoadedYaml,
  name: SchemaName,
  error: ErrorObject,
  errors: ErrorObject[],
): { located: InputError; whole?: true } {
  const path = pointerToPath(error.instancePath);
  if (error.propertyName !== undefined) {
    // propertyNames: the key itself is bad; point at it and show it, not the whole mapping.
    const [detail] = describe(error, error.propertyName);
    return {
      located: new InputError(`key ${detail}`, {
        ...loaded.locate([...path, error.propertyName], 'key'),
        path: formatPath(path),
      }),
    };
  }
  const value = valueAt(loaded.data, path);
  if (path.length === 0) {
    // The file may not be this kind of document at all (a key, /etc/shadow): its text is not quoted
    // back, except a top-level key that reads as a word (a typo such as "entrys").
    const key = error.keyword === 'additionalProperties' ? String(error.params.additionalProperty) : '';
    const got = Array.isArray(value) ? 'a list' : typeof value === 'string' ? 'text' : undefined;
    if (got || (error.keyword === 'additionalProperties' && !/^[a-z][a-z0-9-]{0,30}$/.test(key)))
      return {
        located: new InputError(
          `not ${name === 'catalog' ? 'a catalog' : 'an inventory'}: expected a mapping with the keys ${topKeys(name)}, got ${got ?? 'a mapping with other keys'} (its content is not shown)`,
          { file: loaded.file, line: 1, column: 1 },
        ),
        whole: true,
      };
  }
  const [detail, at] = describe(withSiblingTypes(error, errors), value);
  if (error.keyword === 'not' && Array.isArray((error.schema as { required?: unknown })?.required)) {
    // "then": { "description": why, "not": { "required": [key] } }: the key must not be given here.
    const key = String((error.schema as { required: unknown[] }).required[0]);
    const why = (error.parentSchema as { description?: string })?.description;
    return {
      located: new InputError(
        `key ${shown(key)} is not allowed here${why ? `: ${why}` : ''}`,
        loaded.locate([...path, key], 'key'),
      ),
    };
  }
  if (error.keyword === 'additionalProperties') {
    const key = String(error.params.additionalProperty);
    return { located: new InputError(detail, loaded.locate([...path, key], 'key')) };
  }
  return { located: new InputError(detail, loaded.locate(path, at)) };
}

/** The required top-level keys of a schema, for the "not this kind of file" error. */
function topKeys(name: SchemaName): string {
  const schema = JSON.parse(readFileSync(SCHEMAS[name], 'utf8')) as { required?: string[] };
  return (schema.required ?? []).join(', ');
}

const PREFERENCE = [
  'additionalProperties',
  'enum',
  'const',
  'minLength',
  'maxLength',
  'pattern',
  'required',
  'minimum',
  'maximum',
  'type',
];

function pickError(errors: ErrorObject[]): ErrorObject {
  const useful = errors.filter((e) => !['oneOf', 'anyOf', 'if', 'not'].includes(e.keyword));
  const pool = useful.length ? useful : errors;
  const depth = (e: ErrorObject) => (e.instancePath.match(/\//g) ?? []).length;
  const max = maxOf(pool.map(depth));
  const deepest = pool.filter((e) => depth(e) === max);
  const rank = (e: ErrorObject) => {
    const i = PREFERENCE.indexOf(e.keyword);
    return i < 0 ? PREFERENCE.length : i;
  };
  deepest.sort((a, b) => rank(a) - rank(b));
  return deepest[0] ?? (errors[0] as ErrorObject);
}

/** A type error with the types every alternative (oneOf branch) at the same place would accept. */
function withSiblingTypes(error: ErrorObject, errors: ErrorObject[]): ErrorObject {
  if (error.keyword !== 'type') return error;
  const types = errors
    .filter((e) => e.keyword === 'type' && e.instancePath === error.instancePath)
    .flatMap((e) => String(e.params.type).split(','));
  // "a mapping or nothing" reads better than "nothing or a mapping".
  const sorted = [...new Set(types)].sort((a, b) => Number(a === 'null') - Number(b === 'null'));
  return { ...error, params: { type: sorted.join(',') } };
}

function describe(e: ErrorObject, value: unknown): [string, 'key' | 'value'] {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties': {
      const allowed = Object.keys((e.parentSchema as { properties?: object })?.properties ?? {});
      const key = String(p.additionalProperty);
      // YAML 1.1 merge keys (`<<: *base`) are not part of YAML 1.2, which portolan reads.
      if (key === '<<')
        return [
          'YAML merge keys ("<<: *anchor") are not supported (expected the keys written out in this mapping; a plain alias "*anchor" as a whole value works)',
          'key',
        ];
      return [
        allowed.length ? unknownName('key', key, allowed) : `unknown key ${shown(p.additionalProperty)}`,
        'key',
      ];
    }
    case 'required':
      return [`missing key ${shown(p.missingProperty)}`, 'value'];
    case 'type':
      return [`expected ${article(String(p.type))}, got ${shown(value)}`, 'value'];
    case 'enum':
      return [
        `${shown(value)} is not allowed (expected one of: ${(p.allowedValues as unknown[]).join(', ')})`,
        'value',
      ];
    case 'const':
      return [`${shown(value)} is not allowed (expected ${quote(p.allowedValue)})`, 'value'];
    case 'pattern':
      return [`${shown(value)} is not valid (expected ${patternText(e)})`, 'value'];
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return [`${shown(value)} is out of range (expected a number ${p.comparison} ${p.limit})`, 'value'];
    case 'minItems':
      return [
        `the list is too short (expected at least ${p.limit} item${p.limit === 1 ? '' : 's'})`,
        'value',
      ];
    case 'minLength':
      return [
        `${shown(value)} is too short (expected at least ${p.limit} character${p.limit === 1 ? '' : 's'})`,
        'value',
      ];
    case 'maxLength':
      return [`${shown(value)} is too long (expected at most ${p.limit} characters)`, 'value'];
    case 'minProperties':
      return [`the mapping has too few keys (expected at least ${p.limit})`, 'value'];
    case 'maxProperties':
      return [`the mapping has too many keys (expected at most ${p.limit})`, 'value'];
    default:
      return [`${shown(value)} ${e.message ?? 'is not valid'}`, 'value'];
  }
}

/**
 * What a schema's `pattern` allows, in words: the `patternText` the schema gives beside it (every
 * pattern in SCHEMAS has one; test/schema-words.test.ts holds them to it), else the bare pattern.
 */
export function patternText(e: Pick<ErrorObject, 'params' | 'parentSchema'>): string {
  const words = (e.parentSchema as { patternText?: unknown } | undefined)?.patternText;
  return typeof words === 'string' && words ? words : `to match ${String(e.params.pattern)}`;
}

function article(type: string): string {
  const names: Record<string, string> = {
    string: 'a string',
    object: 'a mapping',
    array: 'a list',
    integer: 'a whole number',
    number: 'a number',
    boolean: 'true or false',
    null: 'nothing',
  };
  const all = type.split(',').map((t) => names[t] ?? t);
  return all.length > 2 ? `${all.slice(0, -1).join(', ')}, or ${all.at(-1)}` : all.join(' or ');
}

function pointerToPath(pointer: string): PathPart[] {
  if (!pointer) return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function valueAt(data: unknown, path: PathPart[]): unknown {
  let v: unknown = data;
  for (const part of path)
    v = v && typeof v === 'object' ? (v as Record<string | number, unknown>)[part] : undefined;
  return v;
}
