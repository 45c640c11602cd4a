import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Event } from 'js-yaml';
import type { Alias, CST, Document, ErrorCode, Node, Pair, YAMLMap } from 'yaml';
import { CONTROL_CHARS, controlName, InputError, InputErrors, type Location, shown } from '../errors.js';
import { readBounded } from './read.js';

type YamlLib = typeof import('yaml');
let yamlLib: YamlLib | undefined;
type JsYamlLib = typeof import('js-yaml');
let jsYamlLib: JsYamlLib | undefined;

/**
 * The `yaml` package, loaded at its first use: a file either fast reader takes never needs it, and
 * a command that reads only such files does not pay for its loading. In the bundled CLI `require`
 * is the bundle's own and gives the bundled copy; the library, an ES module, has none and loads
 * it from node_modules.
 */
function yaml(): YamlLib {
  yamlLib ??= (
    typeof require === 'function' ? require('yaml') : createRequire(import.meta.url)('yaml')
  ) as YamlLib;
  return yamlLib;
}

/**
 * The `js-yaml` package, loaded at its first use as yaml() is: composeFast needs it only for a file
 * the line reader (composeLines) declines, so a command that reads an inventory the line reader
 * takes never compiles or runs it.
 */
function jsYaml(): JsYamlLib {
  jsYamlLib ??= (
    typeof require === 'function' ? require('js-yaml') : createRequire(import.meta.url)('js-yaml')
  ) as JsYamlLib;
  return jsYamlLib;
}

/** Catalogs and mapping files are small; anything larger is a mistake or an attack. */
export const MAX_YAML_BYTES = 4 * 1024 * 1024;
/** yaml's guard against alias bombs ("billion laughs"): more alias expansions than this is refused. */
export const MAX_ALIAS_COUNT = 200;
/**
 * Lists and mappings nested deeper than this are refused (inventories need about five levels,
 * catalogs about ten) before yaml's recursive composer can run out of stack.
 */
export const MAX_DEPTH = 64;

/**
 * Text aliases may add by expansion, whatever the file's own limit: a YAML file of any size holds
 * its text written out, and aliases that repeat more than this are an alias bomb, not an inventory.
 */
export const MAX_EXPANDED_BYTES = 4 * MAX_YAML_BYTES;

export interface YamlLimits {
  /** Largest file read, in bytes (default MAX_YAML_BYTES). */
  maxBytes?: number;
  /** Appended to the "over the limit" error: how to raise the limit (e.g. the option that sets it). */
  limitHint?: string;
  /** 'refuse': no key or value may hold a control or format character (parseYamlText). */
  controls?: 'refuse';
}

export type PathPart = string | number;

export interface LoadedYaml {
  file: string;
  data: unknown;
  /** SHA-256 of the file's bytes. */
  sha256: string;
  /** Where a key path is in the file; the nearest existing ancestor when the path itself is absent. */
  locate(path: readonly PathPart[], at?: 'key' | 'value'): Location;
  /**
   * The source text of the plain scalar at `path` as written (`0x50`, `11.10`, `1e400`), where its
   * value as YAML reads it (80, 11.1, Infinity) would lose what the author meant; undefined when
   * the path cannot be located to a line and column.
   */
  written?(path: readonly PathPart[]): string | undefined;
}

/** The plain scalar starting at 1-based `line` and `column` of `text`, up to a flow indicator or comment. */
function plainAt(text: string, line: number, column: number): string | undefined {
  let at = 0;
  for (let n = 1; n < line && at >= 0; n++) at = text.indexOf('\n', at) + (at >= 0 ? 1 : 0);
  if (at < 0) return undefined;
  const end = text.indexOf('\n', at);
  const m = /^[^\s,[\]{}#][^,[\]{}\n]*?(?=\s+#|\s*[,\]}]|\s*$)/.exec(
    text.slice(at + column - 1, end < 0 ? text.length : end),
  );
  return m?.[0].trimEnd();
}

/**
 * Reads a YAML file into plain data, turning every way it can be bad into one located InputError.
 * At most `limits.maxBytes` (default MAX_YAML_BYTES) + 1 bytes are read, whatever the file type
 * (readBounded): /dev/zero or an endless pipe is refused, never read to exhaustion.
 */
export function loadYamlFile(file: string, what = 'file', limits: YamlLimits = {}): LoadedYaml {
  const maxBytes = limits.maxBytes ?? MAX_YAML_BYTES;
  const bytes = readBounded(file, maxBytes, what, limits.limitHint, { expected: 'YAML text' });
  return parseYamlText(bytes, file, what, {
    ...(limits.controls ? { controls: limits.controls } : {}),
  });
}

/**
 * parseYamlText's reading of `bytes` (UTF-8 YAML) as `file`: the data, where any key path is, and
 * the SHA-256 of the bytes. Throws InputError, located, for anything that is not one valid YAML
 * document within the limits (MAX_DEPTH, MAX_ALIAS_COUNT, MAX_EXPANDED_BYTES). `opts.fast: false`
 * reads with yaml's composer only (the reference the fast path is tested against). `opts.controls:
 * 'refuse'` refuses every key or value that holds a control or format character (refuseControls).
 */
export function parseYamlText(
  bytes: Uint8Array,
  file: string,
  what = 'file',
  opts: { fast?: boolean; controls?: 'refuse' } = {},
): LoadedYaml {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    // The lenient decoder marks the first bad sequence with U+FFFD; count lines up to it.
    const lenient = new TextDecoder('utf-8').decode(bytes);
    const before = lenient.slice(0, Math.max(0, lenient.indexOf('\uFFFD')));
    const line = before.split('\n').length;
    const column = before.length - before.lastIndexOf('\n');
    throw new InputError(`the ${what} is not valid UTF-8 text (re-save it as UTF-8)`, { file, line, column });
  }
  const nul = text.indexOf('\u0000');
  if (nul >= 0) {
    const before = text.slice(0, nul);
    const where = { line: before.split('\n').length, column: nul - before.lastIndexOf('\n') };
    throw new InputError(`the ${what} contains a NUL byte (expected YAML text)`, { file, ...where });
  }
  // A carriage return alone is a line break to YAML 1.2, js-yaml and every editor, but text to
  // yaml: `# note<CR>hosts: ...` shows two lines and would be read as one comment.
  const cr = /\r(?!\n)/.exec(text);
  if (cr) {
    const before = text.slice(0, cr.index);
    const where = { line: before.split('\n').length, column: cr.index - before.lastIndexOf('\n') };
    throw new InputError(
      `the ${what} has a carriage return without a line feed after it (expected lines that end in LF or CRLF: convert the file's line endings, e.g. with mac2unix)`,
      { file, ...where },
    );
  }
  if (onlyComments(text))
    throw new InputError(`the ${what} is empty (expected a YAML mapping)`, { file, line: 1, column: 1 });
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const lines = opts.fast === false ? undefined : composeLines(text);
  const fast = lines ?? (opts.fast === false ? undefined : composeFast(text));
  if (fast) {
    // Located only when asked (an error or a warning names a place): the line reader's positions
    // when it read the text, else yaml's composer; either once.
    let slow: Composed['locate'] | undefined | null;
    const locate = (path: readonly PathPart[], which: 'key' | 'value' = 'value'): Location => {
      if (slow === undefined) {
        try {
          slow = (lines && locateLines(text, file)) || composeSlow(text, file).locate;
        } catch {
          slow = null;
        }
      }
      return slow ? slow(path, which) : { file, path: formatPath(path) };
    };
    const written = (path: readonly PathPart[]) => {
      const at = locate(path, 'value');
      return at.line !== undefined && at.column !== undefined ? plainAt(text, at.line, at.column) : undefined;
    };
    if (opts.controls === 'refuse') refuseControls(text, fast.data, locate);
    return { file, data: fast.data, locate, sha256, written };
  }
  const slow = composeSlow(text, file);
  const written = (path: readonly PathPart[]) => {
    const at = slow.locate(path, 'value');
    return at.line !== undefined && at.column !== undefined ? plainAt(text, at.line, at.column) : undefined;
  };
  if (opts.controls === 'refuse') refuseControls(text, slow.data, slow.locate);
  return { file, data: slow.data, locate: slow.locate, sha256, written };
}

/** A character of CONTROL_CHARS that a value may hold, as in multi-line text: tab and line breaks. */
const LINE_TEXT = new Set(['\t', '\n', '\r']);
/** What may let a CONTROL_CHARS character into a value: the character itself, or a `\` escape. */
const MAY_HOLD_CONTROLS =
  /[\\\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/;

/**
 * Refuses every value of `data` that holds a control or format character (CONTROL_CHARS: C0, DEL,
 * C1, U+2028/U+2029, the bidirectional controls, U+FEFF; tab and line breaks are allowed). Keys are
 * left to the checks that follow: each is a name the schema or a catalog restricts (host names,
 * products, facts), and errors quote them escaped (errors.ts quote). An inventory's text (site, descriptions, names) reaches terminals, error messages and
 * generated configs' comments: it is refused where it is written rather than escaped in each.
 * (A catalog's text, quoted from vendor documents, is escaped where it is output instead.)
 * Only walked when `text` holds such a character or a `\` (the one way an escape can write one).
 * InputError located at the key or value.
 */
function refuseControls(
  text: string,
  data: unknown,
  locate: (path: readonly PathPart[], at?: 'key' | 'value') => Location,
): void {
  if (!MAY_HOLD_CONTROLS.test(text)) return;
  const path: PathPart[] = [];
  const bad = (s: string): string | undefined => {
    const m = CONTROL_CHARS.exec(s);
    if (!m) return undefined;
    if (!LINE_TEXT.has(m[0])) return m[0];
    for (const ch of s) if (CONTROL_CHARS.test(ch) && !LINE_TEXT.has(ch)) return ch;
    return undefined;
  };
  const errors: InputError[] = [];
  const fail = (s: string, ch: string): void => {
    errors.push(
      new InputError(
        `${shown(s)} holds ${controlName(ch)} at character ${[...s].indexOf(ch) + 1} (expected printable text: control and format characters would reach terminals and generated configs)`,
        locate(path),
      ),
    );
  };
  const walk = (v: unknown): void => {
    if (typeof v === 'string') {
      const ch = bad(v);
      if (ch !== undefined) fail(v, ch);
    } else if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        path.push(i);
        walk(v[i]);
        path.pop();
      }
    } else if (v !== null && typeof v === 'object') {
      for (const k of Object.keys(v)) {
        path.push(k);
        walk((v as Record<string, unknown>)[k]);
        path.pop();
      }
    }
  };
  walk(data);
  if (errors.length) throw errors.length === 1 ? errors[0] : new InputErrors(errors);
}

interface Composed {
  data: unknown;
  locate(path: readonly PathPart[], at?: 'key' | 'value'): Location;
}

/**
 * yaml's lexer, parser and composer over `text`, with every check of parseYamlText: the located
 * errors, the depth and alias-expansion limits, and a locate() that finds any key path.
 * Throws InputError.
 */
function composeSlow(text: string, file: string): Composed {
  const { Composer, LineCounter, Parser, YAMLParseError, visit } = yaml();
  const maxExpanded = MAX_EXPANDED_BYTES;
  const lineCounter = new LineCounter();
  const at = (offset: number): { line: number; column: number } => {
    const p = lineCounter.linePos(offset);
    return { line: p.line, column: p.col };
  };
  // One lexer pass feeds the parser and counts flow depth as it goes: flow collections
  // ([[[...]]]) too deep are refused before the parser builds them (it takes minutes over a few
  // megabytes of brackets). The parser also fills lineCounter.
  const tokens: CST.Token[] = [];
  lineCounter.addNewLine(0); // what Parser.parse does first
  let flowDeep = parseCounted(text, new Parser(lineCounter.addNewLine), tokens);
  if (flowDeep !== undefined) {
    // The text up to that bracket is short of the deep part: its CST gives the exact first level
    // too deep, block levels counted as everywhere else.
    flowDeep = tooDeep(new Parser().parse(text.slice(0, flowDeep + 1))) ?? flowDeep;
    throw new InputError(
      `YAML: nested more than ${MAX_DEPTH} levels deep (expected at most ${MAX_DEPTH} levels of lists and mappings)`,
      {
        file,
        line: text.slice(0, flowDeep).split('\n').length,
        column: flowDeep - text.lastIndexOf('\n', flowDeep - 1),
      },
    );
  }
  // The CST pass is iterative, so it measures nesting safely.
  const deep = tooDeep(tokens);
  if (deep !== undefined)
    throw new InputError(
      `YAML: nested more than ${MAX_DEPTH} levels deep (expected at most ${MAX_DEPTH} levels of lists and mappings)`,
      {
        file,
        ...at(deep),
      },
    );
  // Composed from the same tokens (what parseDocument does, without parsing the text again);
  // compose() always yields a document, an empty one at the least. Duplicate keys are found by
  // checkKeys below, in one pass: yaml's own check compares each key with every earlier one.
  const docs = new Composer({ uniqueKeys: false, strict: true, version: '1.2' }).compose(
    tokens,
    true,
    text.length,
  );
  const doc = docs.next().value as Document.Parsed;
  const second = docs.next();
  if (!second.done)
    doc.errors.push(
      new YAMLParseError(
        second.value.range.slice(0, 2) as [number, number],
        'MULTIPLE_DOCS',
        'more than one document',
      ),
    );
  const err = doc.errors[0];
  if (err) throw new InputError(`YAML: ${yamlMessage(err.code, err.message)}`, { file, ...at(err.pos[0]) });
  const checked = checkKeys(
    doc,
    (detail, offset, path) => {
      throw new InputError(detail, { file, ...at(offset), ...(path ? { path: formatPath(path) } : {}) });
    },
    (offset) => at(offset).line,
    maxExpanded,
  );
  // Without aliases the walk above built the plain data already; with them, yaml expands them.
  let data: unknown = checked.data;
  if (!checked.plain) {
    // Remember the alias that could not be expanded, so the error can point at it.
    let failed: Alias | undefined;
    visit(doc, {
      Alias: (_key, node) => {
        const toJSON = node.toJSON.bind(node);
        node.toJSON = (arg, ctx) => {
          try {
            return toJSON(arg, ctx);
          } catch (e) {
            failed ??= node;
            throw e;
          }
        };
      },
    });
    try {
      data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (e) {
      const where = failed?.range ? { file, ...at(failed.range[0]) } : { file };
      const alias = `*${failed?.source ?? ''}`;
      if (e instanceof ReferenceError && /^Unresolved alias/.test(e.message))
        throw new InputError(
          `YAML: alias ${alias} has no anchor &${failed?.source ?? ''} before it (expected an anchor defined earlier in the file)`,
          where,
        );
      if (e instanceof ReferenceError && /alias/i.test(e.message))
        throw new InputError(
          `YAML: alias ${alias} expands too much (more than ${MAX_ALIAS_COUNT} alias expansions); refused as a possible alias bomb`,
          where,
        );
      if (e instanceof RangeError)
        throw new InputError(
          `YAML: alias ${alias} expands to more text than can be held (expected at most ${maxExpanded} bytes after alias expansion)`,
          where,
          { cause: e },
        );
      throw new InputError(`YAML: ${(e as Error).message}`, where, { cause: e });
    }
  }
  const index = new WeakMap<YAMLMap, Map<string, Pair>>();
  const locate = (path: readonly PathPart[], which: 'key' | 'value' = 'value'): Location => {
    const node = nearestNode(doc, path, which, index);
    const loc: Location = { file, path: formatPath(path) };
    if (node?.range) Object.assign(loc, at(node.range[0]));
    return loc;
  };
  return { data, locate };
}

/** What to do about the yaml errors whose own words do not say it. */
const YAML_HINTS: Partial<Record<ErrorCode, string>> = {
  BLOCK_AS_IMPLICIT_KEY:
    'check the indentation here and on the next line: the keys of one mapping must line up',
  MULTILINE_IMPLICIT_KEY:
    'check the indentation here and on the next line: the keys of one mapping must line up',
  TAB_AS_INDENT: 'expected spaces',
  BLOCK_IN_FLOW:
    'expected a comma between the entries of a {...} or [...] collection; a list or mapping written line by line cannot go inside one',
  BAD_INDENT: 'check the indentation here and on the line above: the keys of one mapping must line up',
};

function yamlMessage(code: ErrorCode, message: string): string {
  if (code === 'MULTIPLE_DOCS')
    return 'the file holds more than one YAML document (expected one; remove the "---" line)';
  // yaml appends " at line L, column C:" and a code frame; the location is printed by us.
  const text = message.replace(/ at line \d+, column \d+:?[\s\S]*$/, '').trim();
  const hint = /^Missing closing/.test(text)
    ? 'it was opened above this point and never closed'
    : /^Flow (map|sequence) in block collection/.test(text)
      ? `expected a ${text.includes('map') ? '} to close the {' : '] to close the ['} opened before this point, on its line or on later lines indented deeper than its key`
      : YAML_HINTS[code];
  return hint ? `${text} (${hint})` : text;
}

/**
 * True when every line (split at line feeds) is blank or a comment once trimmed: no line starts,
 * after white space, with anything but `#`. Stops at the first line with content; no backtracking
 * (the white space and the first character are disjoint classes).
 */
export function onlyComments(text: string): boolean {
  return !/(?:^|\n)[^\S\n]*[^\s#]/.test(text);
}

/**
 * Parses `text` into `tokens` (what Parser.parse does) from one pass of yaml's lexer, and returns
 * the offset of the first flow collection (`[` or `{`) opened deeper than MAX_DEPTH flow levels,
 * stopping there before the parser sees it; undefined when there is none. Quoted and plain scalars
 * are single tokens, so brackets inside text are not counted. The lexer's own control tokens
 * (document, flow-error and scalar marks) are not source text and take no offset.
 */
function parseCounted(
  text: string,
  parser: InstanceType<YamlLib['Parser']>,
  tokens: CST.Token[],
): number | undefined {
  const { Lexer } = yaml();
  let depth = 0;
  let offset = 0;
  for (const token of new Lexer().lex(text)) {
    if (token === '[' || token === '{') {
      if (++depth > MAX_DEPTH) return offset;
    } else if (token === ']' || token === '}') depth = Math.max(0, depth - 1);
    for (const t of parser.next(token)) tokens.push(t);
    if (token.length === 1 && '\x02\x18\x1f'.includes(token)) continue;
    offset += token.length;
  }
  for (const t of parser.end()) tokens.push(t);
  return undefined;
}

/** The offset of the first list or mapping nested deeper than MAX_DEPTH, walking the CST without recursion. */
function tooDeep(tokens: Iterable<CST.Token>): number | undefined {
  const todo: { token: CST.Token; depth: number }[] = [];
  for (const token of tokens)
    if (token.type === 'document' && token.value) todo.push({ token: token.value, depth: 1 });
  let found: number | undefined;
  for (let next = todo.pop(); next; next = todo.pop()) {
    const { token, depth } = next;
    if (token.type !== 'block-map' && token.type !== 'block-seq' && token.type !== 'flow-collection')
      continue;
    if (depth > MAX_DEPTH) {
      found = Math.min(found ?? token.offset, token.offset);
      continue;
    }
    for (const item of token.items as { key?: CST.Token | null; value?: CST.Token }[])
      for (const child of [item.key, item.value]) if (child) todo.push({ token: child, depth: depth + 1 });
  }
  return found;
}

type Fail = (detail: string, offset: number, path?: PathPart[]) => never;

/**
 * The tags of YAML 1.2's core schema (YAML 1.2.2 section 10.3, tag:yaml.org,2002:), with what each
 * makes of a scalar: a file may write them (`!!str 007`); any other tag is refused by checkKeys.
 */
const CORE_TAGS = new Map<string, string>(
  (
    [
      ['str', 'string'],
      ['int', 'number'],
      ['float', 'number'],
      ['bool', 'boolean'],
      ['null', 'null'],
      ['map', 'collection'],
      ['seq', 'collection'],
    ] as const
  ).map(([name, type]) => [`tag:yaml.org,2002:${name}`, type]),
);

/** What a core tag's scalar must be, in words. */
const TAG_EXPECTS: Record<string, string> = {
  number: 'a number',
  boolean: 'true or false',
  null: 'null, ~ or nothing',
};

/** A tag as a file would write it: `!!binary` for tag:yaml.org,2002:binary, a local tag as it is. */
function tagText(tag: string): string {
  return tag.startsWith('tag:yaml.org,2002:') ? `!!${tag.slice('tag:yaml.org,2002:'.length)}` : tag;
}

/**
 * One pass over the composed document, before it becomes plain data:
 * - every mapping key is text exactly as written: a plain `007`, `1e3` or `true` is the string
 *   "007", "1e3" or "true" (YAML 1.2 would read a number or a boolean, and plain data would then
 *   rename it or merge it with a quoted "1");
 * - a key written twice (after that) is refused where it repeats, naming the first;
 * - a key that is a list, a mapping or an alias is refused (plain data can only stringify it);
 * - the text aliases expand to is counted, and more than MAX_EXPANDED_BYTES is refused at the
 *   alias that crosses it (`maxExpanded`; a few hundred aliases of one large anchored string stay under
 *   MAX_ALIAS_COUNT yet expand to gigabytes).
 * It also builds the plain data (what doc.toJS gives) when the document has no aliases, no
 * collection tags and no single-pair mappings in lists (`[a: 1]`): `plain` is false otherwise,
 * and the caller has yaml expand the document instead.
 * Linear in the size of the document; recursion is bounded by MAX_DEPTH, checked before.
 */
function checkKeys(
  doc: Document,
  fail: Fail,
  lineOf: (offset: number) => number,
  maxExpanded: number,
): { plain: boolean; data: unknown } {
  const { isAlias, isMap, isNode, isPair, isScalar, isSeq, YAMLMap, YAMLSeq } = yaml();
  const sizes = new Map<unknown, number>();
  let expanded = 0;
  let plain = true;
  const sizeOf = (node: unknown, seen: Set<unknown>): number => {
    if (isAlias(node)) {
      const target = node.resolve(doc);
      return target && !seen.has(target) ? sizeOf(target, new Set(seen).add(target)) : 0;
    }
    const known = sizes.get(node);
    if (known !== undefined) return known;
    let size = 0;
    if (isScalar(node)) size = node.range ? node.range[1] - node.range[0] : String(node.value).length;
    else if (isMap(node)) for (const p of node.items) size += sizeOf(p.key, seen) + sizeOf(p.value, seen) + 2;
    else if (isSeq(node)) for (const item of node.items) size += sizeOf(item, seen) + 2;
    sizes.set(node, size);
    return size;
  };
  // The key path of the node being walked, copied only when an error names it.
  const path: PathPart[] = [];
  // A tag other than the core schema's changes what the value is (a Buffer, a Date, a set that
  // reads as an empty mapping) or is dropped with only a warning (`!custom`, `!!python/object`):
  // either way the data would not be what the file says. A core tag must fit its value.
  const checkTag = (node: unknown, at: PathPart[]): void => {
    if (!isNode(node) || node.tag === undefined || node.tag === '!') return;
    const offset = node.range?.[0] ?? 0;
    const tag = tagText(node.tag);
    if (!CORE_TAGS.has(node.tag))
      fail(
        `YAML: the tag ${tag} is not supported (expected values without tags: text, numbers, true/false, null, lists and mappings)`,
        offset,
        at,
      );
    if (!isScalar(node)) return;
    const want = CORE_TAGS.get(node.tag);
    const v = typeof node.value === 'bigint' ? Number(node.value) : node.value;
    const got = v === null ? 'null' : typeof v;
    if (want !== 'string' && want !== 'collection' && got !== want)
      fail(
        `YAML: ${shown(String(node.source ?? v))} cannot be read as ${tag} (expected ${TAG_EXPECTS[want as string] ?? 'a value of that type'}, or the value without the tag)`,
        offset,
        at,
      );
  };
  const walk = (node: unknown): unknown => {
    checkTag(node, path);
    if (isAlias(node)) {
      plain = false;
      expanded += sizeOf(node, new Set());
      if (expanded > maxExpanded)
        fail(
          `YAML: alias *${node.source} makes the document expand to more than ${maxExpanded} bytes (expected at most ${maxExpanded / 1024 / 1024} MiB after alias expansion); refused as a possible alias bomb`,
          node.range?.[0] ?? 0,
        );
      return undefined;
    }
    if (isMap(node)) {
      if (Object.getPrototypeOf(node) !== YAMLMap.prototype) plain = false;
      const first = new Map<string, number>();
      const out: Record<string, unknown> = {};
      for (const pair of node.items) {
        const k = pair.key;
        const offset = isNode(k) && k.range ? k.range[0] : (node.range?.[0] ?? 0);
        if (!isScalar(k) || isAlias(k)) {
          const kind = isMap(k) ? 'a mapping' : isSeq(k) ? 'a list' : isAlias(k) ? 'an alias' : 'nothing';
          fail(`YAML: a key is ${kind} (expected a key written as text)`, offset, [...path]);
        }
        checkTag(k, [...path]);
        if (typeof k.value !== 'string') k.value = k.source ?? String(k.value);
        const key = k.value as string;
        const seen = first.get(key);
        if (seen !== undefined)
          fail(
            `YAML: duplicate key ${shown(key)} (first at line ${lineOf(seen)}; expected each key once in a mapping)`,
            offset,
            [...path, key],
          );
        first.set(key, offset);
        path.push(key);
        const value = walk(pair.value);
        path.pop();
        // As yaml's addPairToJSMap: a key an object already has (`__proto__`) is defined, not assigned.
        if (key in out)
          Object.defineProperty(out, key, { value, writable: true, enumerable: true, configurable: true });
        else out[key] = value;
      }
      return out;
    }
    if (isSeq(node)) {
      if (Object.getPrototypeOf(node) !== YAMLSeq.prototype) plain = false;
      const out: unknown[] = new Array(node.items.length);
      for (let i = 0; i < node.items.length; i++) {
        const item = node.items[i];
        if (isPair(item)) plain = false;
        path.push(i);
        out[i] = walk(item);
        path.pop();
      }
      return out;
    }
    if (isScalar(node)) {
      const v = node.value;
      if (typeof v === 'bigint') return Number(v);
      if (v !== null && (typeof v === 'object' || typeof v === 'function')) plain = false;
      return v;
    }
    if (node !== null && node !== undefined) plain = false;
    return null;
  };
  const data = walk(doc.contents);
  return { plain, data };
}

function nearestNode(
  doc: Document,
  path: readonly PathPart[],
  which: 'key' | 'value',
  index: WeakMap<YAMLMap, Map<string, Pair>>,
): Node | undefined {
  const { isMap, isScalar, isSeq } = yaml();
  let node: unknown = doc.contents;
  let keyNode: unknown;
  for (const part of path) {
    if (isMap(node)) {
      // Each mapping is indexed by key once, so locating every host of a large site stays linear.
      let byKey = index.get(node);
      if (!byKey) {
        byKey = new Map();
        for (const p of node.items) {
          const k = String(isScalar(p.key) ? p.key.value : p.key);
          if (!byKey.has(k)) byKey.set(k, p);
        }
        index.set(node, byKey);
      }
      const pair = byKey.get(String(part));
      if (!pair) return node as Node;
      keyNode = pair.key;
      node = pair.value ?? pair.key;
    } else if (isSeq(node) && typeof part === 'number') {
      const item = node.items[part];
      if (!item) return node as Node;
      keyNode = undefined;
      node = item;
    } else return node as Node;
  }
  return (which === 'key' && keyNode ? keyNode : node) as Node;
}

/**
 * The plain data of `text` from js-yaml's event parser, when the document is one that yaml's
 * composer (composeSlow) would read to exactly the same data without a word to say: one document,
 * no directives, anchors, aliases or tags, no duplicate keys, no key that is a list or a mapping,
 * nested at most MAX_DEPTH levels. Anything else, and any error, gives undefined, and the caller
 * composes the text with yaml instead, which refuses it or reads it with the located errors. Keys
 * are text as written (as checkKeys makes them); plain values resolve by YAML 1.2's core schema
 * exactly as yaml's (resolvePlain). The event parser keeps no nodes: reading a 10,000-host
 * inventory this way takes a tenth of yaml's composer's time.
 */
export function composeFast(text: string): { data: unknown } | undefined {
  // Where js-yaml reads differently from yaml: a tab in a line's indentation (or after a block
  // indicator), a byte order mark past the start (TextDecoder drops the first), and a carriage
  // return without a line feed (a line break to js-yaml, text to yaml).
  if (text.includes('\ufeff') || /(?:^|[\n\r])[ \t?:-]*\t|\r(?!\n)/.test(text)) return undefined;
  if ((text.includes('---') || text.includes('...')) && documentMarks(text)) return undefined;
  const { CHOMPING_MODE, EVENT_ID, getScalarValue, parseEvents, SCALAR_STYLE } = jsYaml();
  let events: Event[];
  try {
    events = parseEvents(text, { maxDepth: MAX_DEPTH });
  } catch {
    return undefined;
  }
  // An open collection: a list, or a mapping with the key whose value comes next.
  interface Open {
    seq: unknown[] | undefined;
    map: Record<string, unknown> | undefined;
    key: string | undefined;
  }
  const stack: Open[] = [];
  let documents = 0;
  let root: unknown = null;
  // Puts a finished value where it belongs; false when it is a key that cannot be one.
  const place = (value: unknown, scalarKey: string | undefined): boolean => {
    const top = stack[stack.length - 1];
    if (!top) {
      root = value;
      return true;
    }
    if (top.seq) {
      top.seq.push(value);
      return true;
    }
    const map = top.map as Record<string, unknown>;
    if (top.key === undefined) {
      if (scalarKey === undefined || Object.hasOwn(map, scalarKey)) return false;
      top.key = scalarKey;
      return true;
    }
    // As yaml's addPairToJSMap: a key an object already has (`__proto__`) is defined, not assigned.
    if (top.key in map)
      Object.defineProperty(map, top.key, { value, writable: true, enumerable: true, configurable: true });
    else map[top.key] = value;
    top.key = undefined;
    return true;
  };
  const inKeyPlace = (): boolean => {
    const top = stack[stack.length - 1];
    return top?.map !== undefined && top.key === undefined;
  };
  // Collections being built, parallel to `stack`, with the document as a marker.
  const values: unknown[] = [];
  // Whatever js-yaml throws while a scalar is decoded (a RangeError included) is yaml's to report.
  try {
    for (const ev of events) {
      switch (ev.type) {
        case EVENT_ID.DOCUMENT:
          if (++documents > 1 || ev.directives.length) return undefined;
          values.push(undefined);
          stack.push({ seq: [], map: undefined, key: undefined });
          break;
        case EVENT_ID.SEQUENCE:
        case EVENT_ID.MAPPING: {
          if (ev.anchorStart !== -1 || ev.tagStart !== -1 || inKeyPlace() || glued(text, ev.start))
            return undefined;
          const seq = ev.type === EVENT_ID.SEQUENCE ? [] : undefined;
          const map = seq ? undefined : ({} as Record<string, unknown>);
          values.push(seq ?? map);
          stack.push({ seq, map, key: undefined });
          break;
        }
        case EVENT_ID.SCALAR: {
          if (ev.anchorStart !== -1 || ev.tagStart !== -1) return undefined;
          if (
            (ev.style === SCALAR_STYLE.PLAIN && glued(text, ev.valueStart)) ||
            ((ev.style === SCALAR_STYLE.SINGLE_QUOTED || ev.style === SCALAR_STYLE.DOUBLE_QUOTED) &&
              glued(text, ev.valueStart - 1))
          )
            return undefined;
          // A block scalar's explicit indentation indicator (`|2`) is measured from different
          // places by the two readers at the top level, and the two keep different trailing
          // lines (`|+`) when the last is only spaces at the end of the text: yaml decides.
          if (ev.style === SCALAR_STYLE.LITERAL_BLOCK || ev.style === SCALAR_STYLE.FOLDED_BLOCK) {
            if (ev.chomping === CHOMPING_MODE.KEEP) return undefined;
            const header = text.slice(text.lastIndexOf('\n', ev.valueStart - 2) + 1, ev.valueStart);
            if (/[|>][+-]?[1-9]/.test(header)) return undefined;
          }
          // An escaped line break (`\` at a line's end) before blank lines, and a `\U` escape past
          // U+10FFFF, are read differently by the two: yaml decides any escaped break or `\U`.
          if (
            ev.style === SCALAR_STYLE.DOUBLE_QUOTED &&
            !ev.fast &&
            /\\(?:[\r\n]|U)/.test(text.slice(ev.valueStart, ev.valueEnd))
          )
            return undefined;
          const raw = ev.fast ? text.slice(ev.valueStart, ev.valueEnd) : getScalarValue(text, ev);
          if (inKeyPlace()) {
            // A block scalar as a key (`? |`) starts on the line after its header, out of reach
            // of the checks above: yaml decides.
            if (
              ev.style === SCALAR_STYLE.LITERAL_BLOCK ||
              ev.style === SCALAR_STYLE.FOLDED_BLOCK ||
              longKey(text, ev.valueStart, ev.valueEnd)
            )
              return undefined;
            // A missing key (`: v`) is where the two readers' leniency differs: yaml decides.
            if ((raw === '' && ev.style === SCALAR_STYLE.PLAIN) || !place(raw, raw)) return undefined;
          } else if (!place(ev.style === SCALAR_STYLE.PLAIN ? resolvePlain(raw) : raw, undefined))
            return undefined;
          break;
        }
        case EVENT_ID.POP: {
          const open = stack.pop();
          const value = values.pop();
          if (!open) return undefined;
          if (open.map && open.key !== undefined) return undefined;
          if (value === undefined) {
            // The document: its one node is the data.
            root = open.seq?.[0] ?? null;
            continue;
          }
          if (!place(value, undefined)) return undefined;
          break;
        }
        default:
          // Aliases.
          return undefined;
      }
    }
  } catch {
    return undefined;
  }
  if (stack.length || documents !== 1) return undefined;
  return { data: root };
}

/**
 * Characters the line reader leaves to the others: anything but a line feed, printable ASCII and
 * printable non-ASCII outside the byte order mark, the no-break space, YAML 1.1's line breaks
 * (U+0085, U+2028, U+2029), surrogates and non-characters. A tab or a carriage return is here too.
 */
const LINES_DECLINE = /[^\n\x20-\x7e\u00a1-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd]/;

/** The flow and block nesting past which the line reader leaves a document to the others. */
const LINES_MAX_DEPTH = MAX_DEPTH - 4;

/** Thrown inside composeLines when the text leaves its subset; caught at its top. */
const DECLINE = Symbol('decline');

/**
 * The plain data of `text` when it is written in the narrow subset most inventories are (one
 * mapping per line: `  vm-1: { address: 10.0.0.1, roles: [p:r], facts: { os: windows } }`), read
 * in one pass over the characters with no events and no nodes; undefined for anything else, and
 * the caller reads it with composeFast, then yaml. The subset, where composeFast and yaml read the
 * same data (test/yaml-fast.test.ts holds all three to that):
 * - a block mapping at the root, with block mappings and lists of single-line values nested by
 *   spaces (`key:` on its own line opens one, or is null when nothing deeper follows); a line
 *   deeper than the one before that is not such an opening (a plain scalar's next line) declines;
 * - keys plain or quoted on one line, at most 1000 characters, each once per mapping, and not one
 *   that an empty object has already (`__proto__`, `toString`);
 * - values that are plain scalars (resolvePlain), quoted scalars without a backslash, and flow
 *   lists and mappings closed on the same line, with no empty entries, no trailing comma, no
 *   `key: value` pair inside a list and no comment inside;
 * - whole-line comments, and a comment after ` #` at the end of a block line; an optional `---`
 *   alone on a line before any content; nothing else that starts with `---` or `...`;
 * - no tabs, carriage returns, anchors, aliases, tags, directives, block scalars, explicit keys,
 *   or characters LINES_DECLINE names.
 * Linear in the length of the text; recursion is bounded by LINES_MAX_DEPTH.
 */
export function composeLines(text: string): { data: unknown } | undefined {
  if (LINES_DECLINE.test(text)) return undefined;
  try {
    return { data: readLines(text) };
  } catch (e) {
    if (e === DECLINE) return undefined;
    throw e;
  }
}

/**
 * composeSlow's locate() for a text composeLines reads, from the line reader's own positions (one
 * more pass over the text, no yaml): the same node for every key path (the nearest existing
 * ancestor for an absent one) and the same line and column (yaml's LineCounter: 1-based, the
 * column in UTF-16 units). Undefined when composeLines declines the text.
 */
export function locateLines(text: string, file: string): Composed['locate'] | undefined {
  let root: LineNode;
  try {
    root = readLines(text, true) as LineNode;
  } catch (e) {
    if (e === DECLINE) return undefined;
    throw e;
  }
  // The offsets lines start at, as yaml's LineCounter has them.
  let starts: number[] | undefined;
  const at = (offset: number): { line: number; column: number } => {
    if (!starts) {
      starts = [0];
      for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
    }
    let low = 0;
    let high = starts.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if ((starts[mid] as number) < offset) low = mid + 1;
      else high = mid;
    }
    if (starts[low] === offset) return { line: low + 1, column: 1 };
    if (low === 0) return { line: 0, column: offset };
    return { line: low, column: offset - (starts[low - 1] as number) + 1 };
  };
  return (path, which = 'value') => {
    // As nearestNode: a path stops at the first part its node does not have.
    let node = root;
    let keyAt: number | undefined;
    let found = true;
    for (const part of path) {
      if (node.keys) {
        const entry = node.keys.get(String(part));
        if (!entry) {
          found = false;
          break;
        }
        keyAt = entry.key;
        node = entry;
      } else if (node.items && typeof part === 'number') {
        const item = node.items[part];
        if (!item) {
          found = false;
          break;
        }
        keyAt = undefined;
        node = item;
      } else {
        found = false;
        break;
      }
    }
    const offset = found && which === 'key' && keyAt !== undefined ? keyAt : node.at;
    return { file, path: formatPath(path), ...at(offset) };
  };
}

function decline(): never {
  throw DECLINE;
}

/** An open block collection: its indentation and the object or list the lines at it fill. */
interface LineFrame {
  indent: number;
  map: Record<string, unknown> | undefined;
  seq: unknown[] | undefined;
  /** Where its nodes are, when readLines records them. */
  node: LineNode | undefined;
}

/**
 * Where a node read by readLines starts (a UTF-16 offset into the text, what yaml's node range
 * starts at), where the key that names it starts (-1 for an item of a list and the root), and its
 * nodes: `keys` for a mapping, by key; `items` for a list.
 */
interface LineNode {
  at: number;
  key: number;
  keys: Map<string, LineNode> | undefined;
  items: LineNode[] | undefined;
}

function lineNode(at: number, keys?: Map<string, LineNode>, items?: LineNode[]): LineNode {
  return { at, key: -1, keys, items };
}

/**
 * The plain data of `text` in composeLines' subset (DECLINE otherwise); with `record`, for a text
 * it has read, the root's LineNode instead (no data, no checks of keys), the nodes placed where
 * yaml's composer places them: a scalar at its first character (a quoted one at its quote), a flow
 * collection at its bracket, a block collection at its first key or `-`, and a block mapping's
 * empty value after its `:` and the spaces after it.
 */
function readLines(text: string, record = false): unknown {
  const n = text.length;
  const frames: LineFrame[] = [];
  // A `key:` with nothing after it: its value is the collection the next deeper line opens, or null.
  let pendingMap: Record<string, unknown> | undefined;
  let pendingKey = '';
  let pendingIndent = -1;
  let root: Record<string, unknown> | undefined;
  let started = false;
  // When recording: the node value() or collection() read last, the root's node, and where the
  // pending key and its empty value would be.
  let last: LineNode = lineNode(0);
  let rootNode: LineNode | undefined;
  let pendingKeyAt = 0;
  let pendingNullAt = 0;
  let pendingNode: LineNode | undefined;
  // The reader's position in `text`, shared by the scanners below.
  let pos = 0;
  // The plain scalars already read, by their first and last characters and length: the keys and
  // values every host repeats (`address`, `roles`, a role, `windows`) are then one string each,
  // not one per host to allocate and to look up again as a property name.
  const seen: string[] = new Array(1024);
  const sliced = (start: number, end: number): string => {
    const slot = (text.charCodeAt(start) * 961 + text.charCodeAt(end - 1) * 31 + end - start) & 1023;
    const known = seen[slot];
    if (known !== undefined && known.length === end - start && text.startsWith(known, start)) return known;
    const s = text.slice(start, end);
    seen[slot] = s;
    return s;
  };

  const setKey = (map: Record<string, unknown>, key: string, value: unknown): void => {
    if (record) return;
    if (key in map) decline();
    map[key] = value;
  };

  /** A quoted scalar at pos (its opening quote); pos ends past the closing one. */
  const quoted = (): string => {
    const q = text.charCodeAt(pos);
    const start = pos + 1;
    if (q === 34) {
      // '"': no escapes, no line break.
      for (let i = start; i < n; i++) {
        const c = text.charCodeAt(i);
        if (c === 34) {
          pos = i + 1;
          return text.slice(start, i);
        }
        if (c === 92 || c === 10) break;
      }
      return decline();
    }
    // "'": '' is one quote.
    let out = '';
    let from = start;
    for (let i = start; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c === 10) break;
      if (c === 39) {
        if (text.charCodeAt(i + 1) === 39) {
          out += text.slice(from, i + 1);
          from = i + 2;
          i++;
          continue;
        }
        pos = i + 1;
        return out + text.slice(from, i);
      }
    }
    return decline();
  };

  /**
   * A plain scalar's text at pos, trimmed; pos ends at what stopped it. `flow`: inside `[]`/`{}`,
   * where `,[]{}` end it too. A `:` ends it when a space, the line's end or (in flow) a flow
   * indicator follows. A `#` ends it after a space and declines otherwise.
   */
  const plain = (flow: boolean): string => {
    const start = pos;
    const c0 = text.charCodeAt(pos);
    // Indicators that cannot start a plain scalar here, or start one the two readers part on.
    // '-' alone may, when a letter, a digit, '.' or '_' follows (-1, -.inf, -a).
    if (c0 === 45) {
      const c1 = text.charCodeAt(pos + 1);
      if (
        !(
          (c1 >= 48 && c1 <= 57) ||
          (c1 >= 65 && c1 <= 90) ||
          (c1 >= 97 && c1 <= 122) ||
          c1 === 46 ||
          c1 === 95
        )
      )
        decline();
    } else if (
      c0 === 32 ||
      c0 === 10 ||
      c0 === 63 || // ?
      c0 === 58 || // :
      c0 === 44 || // ,
      c0 === 91 || // [
      c0 === 93 || // ]
      c0 === 123 || // {
      c0 === 125 || // }
      c0 === 35 || // #
      c0 === 38 || // &
      c0 === 42 || // *
      c0 === 33 || // !
      c0 === 124 || // |
      c0 === 62 || // >
      c0 === 39 || // '
      c0 === 34 || // "
      c0 === 37 || // %
      c0 === 64 || // @
      c0 === 96 || // `
      Number.isNaN(c0)
    )
      decline();
    let end = pos;
    let i = pos;
    for (; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c === 10) break;
      if (c === 58) {
        const d = text.charCodeAt(i + 1);
        if (d === 32 || d === 10 || Number.isNaN(d)) break;
        if (flow && (d === 44 || d === 91 || d === 93 || d === 123 || d === 125)) break;
      } else if (c === 35) {
        if (text.charCodeAt(i - 1) === 32 && !flow) break;
        decline();
      } else if (c === 91 || c === 93 || c === 123 || c === 125) {
        if (flow) break;
        decline();
      } else if (c === 44) {
        if (flow) break;
      }
      if (c !== 32) end = i + 1;
    }
    pos = i;
    return sliced(start, end);
  };

  const skipSpaces = (): void => {
    while (text.charCodeAt(pos) === 32) pos++;
  };

  /** A key at pos and its `:`; pos ends past the `:`, which a space or the line's end follows. */
  const key = (flow: boolean): string => {
    const start = pos;
    const c = text.charCodeAt(pos);
    const k = c === 34 || c === 39 ? quoted() : plain(flow);
    // yaml's 1024-character limit on implicit keys (YAML 1.2.2 §7.4.2), with room.
    if (pos - start > 1000 || (k === '' && c !== 34 && c !== 39)) decline();
    // `key : v` is left to the others too.
    const d = text.charCodeAt(pos + 1);
    if (
      text.charCodeAt(pos) !== 58 ||
      text.charCodeAt(pos - 1) === 32 ||
      !(d === 32 || d === 10 || Number.isNaN(d))
    )
      decline();
    pos++;
    return k;
  };

  /** A value on one line at pos: a flow collection, a quoted or a plain scalar. */
  const value = (flow: boolean, depth: number): unknown => {
    const c = text.charCodeAt(pos);
    if (c === 91 || c === 123) return collection(depth + 1);
    if (record) {
      last = lineNode(pos);
      if (c === 34 || c === 39) quoted();
      else plain(flow);
      return null;
    }
    if (c === 34 || c === 39) return quoted();
    return resolvePlain(plain(flow));
  };

  /** A flow list or mapping at pos, closed on the same line; pos ends past its close. */
  const collection = (depth: number): unknown => {
    if (depth > LINES_MAX_DEPTH) decline();
    const isMap = text.charCodeAt(pos) === 123;
    const close = isMap ? 125 : 93;
    const node: LineNode | undefined = record
      ? isMap
        ? lineNode(pos, new Map())
        : lineNode(pos, undefined, [])
      : undefined;
    pos++;
    skipSpaces();
    const map: Record<string, unknown> | undefined = isMap && !record ? {} : undefined;
    // A list's items, made with its first: a list of one is then one element long, not the room
    // for sixteen that a push to an empty list makes.
    const list = !isMap && !record;
    let seq: unknown[] | undefined;
    if (text.charCodeAt(pos) === close) {
      pos++;
      if (node) last = node;
      return map ?? (list ? [] : undefined);
    }
    for (;;) {
      if (isMap) {
        const keyAt = pos;
        const k = key(true);
        skipSpaces();
        const c = text.charCodeAt(pos);
        if (c === 44 || c === close) decline();
        const v = value(true, depth);
        if (map) setKey(map, k, v);
        else if (node) {
          last.key = keyAt;
          node.keys?.set(k, last);
        }
      } else {
        const v = value(true, depth);
        if (seq) seq.push(v);
        else if (list) seq = [v];
        else node?.items?.push(last);
      }
      skipSpaces();
      const c = text.charCodeAt(pos);
      pos++;
      if (c === close) {
        if (node) last = node;
        return map ?? seq;
      }
      if (c !== 44) decline();
      skipSpaces();
      const d = text.charCodeAt(pos);
      if (d === 44 || d === close) decline();
    }
  };

  /** Records the pending key's empty value (null) where yaml places it. */
  const pendingNull = (): void => {
    const node = lineNode(pendingNullAt);
    node.key = pendingKeyAt;
    pendingNode?.keys?.set(pendingKey, node);
  };

  /** The end of a block line at pos: spaces, then a comment after a space, or nothing. */
  const lineEnd = (): void => {
    skipSpaces();
    const c = text.charCodeAt(pos);
    if (c === 35 && text.charCodeAt(pos - 1) === 32) {
      const nl = text.indexOf('\n', pos);
      pos = nl < 0 ? n : nl;
      return;
    }
    if (c !== 10 && !Number.isNaN(c)) decline();
  };

  while (pos < n) {
    const lineStart = pos;
    skipSpaces();
    const indent = pos - lineStart;
    const c = text.charCodeAt(pos);
    if (c === 10) {
      pos++;
      continue;
    }
    if (Number.isNaN(c)) break;
    if (c === 35) {
      // A comment line.
      const nl = text.indexOf('\n', pos);
      pos = nl < 0 ? n : nl + 1;
      continue;
    }
    if ((c === 45 || c === 46) && text.charCodeAt(pos + 1) === c && text.charCodeAt(pos + 2) === c) {
      // One `---` alone before any content starts the document; any other `---` or `...` declines.
      const d = text.charCodeAt(pos + 3);
      if (c === 45 && indent === 0 && !started && (d === 10 || Number.isNaN(d))) {
        started = true;
        pos += 4;
        continue;
      }
      decline();
    }
    started = true;
    let frame = frames[frames.length - 1];
    if (!frame) {
      if (indent !== 0) decline();
      root = {};
      if (record) rootNode = lineNode(pos, new Map());
      frame = { indent: 0, map: root, seq: undefined, node: rootNode };
      frames.push(frame);
    } else if (pendingMap !== undefined && indent > pendingIndent) {
      if (frames.length > LINES_MAX_DEPTH) decline();
      const isSeq = c === 45 && text.charCodeAt(pos + 1) === 32;
      const node: LineNode | undefined = record
        ? isSeq
          ? lineNode(pos, undefined, [])
          : lineNode(pos, new Map())
        : undefined;
      frame = isSeq ? { indent, map: undefined, seq: [], node } : { indent, map: {}, seq: undefined, node };
      setKey(pendingMap, pendingKey, frame.map ?? frame.seq);
      if (node) {
        node.key = pendingKeyAt;
        pendingNode?.keys?.set(pendingKey, node);
      }
      frames.push(frame);
      pendingMap = undefined;
    } else {
      if (pendingMap !== undefined) {
        setKey(pendingMap, pendingKey, null);
        if (record) pendingNull();
        pendingMap = undefined;
      }
      while (frame.indent > indent) {
        frames.pop();
        frame = frames[frames.length - 1] as LineFrame;
        if (!frame) decline();
      }
      if (frame.indent !== indent) decline();
    }
    if (frame.seq) {
      // `- value`: one value on the line, never a mapping, a nested list or nothing.
      if (c !== 45 || text.charCodeAt(pos + 1) !== 32) decline();
      pos += 2;
      skipSpaces();
      const d = text.charCodeAt(pos);
      if (d === 10 || d === 35 || Number.isNaN(d)) decline();
      frame.seq.push(value(false, frames.length));
      frame.node?.items?.push(last);
      lineEnd();
      continue;
    }
    const map = frame.map as Record<string, unknown>;
    const keyAt = pos;
    const k = key(false);
    skipSpaces();
    const d = text.charCodeAt(pos);
    if (d === 10 || d === 35 || Number.isNaN(d)) {
      if (record) {
        pendingKeyAt = keyAt;
        pendingNullAt = pos;
        pendingNode = frame.node;
      }
      if (d === 35) {
        const nl = text.indexOf('\n', pos);
        pos = nl < 0 ? n : nl;
      }
      if (k in map) decline();
      pendingMap = map;
      pendingKey = k;
      pendingIndent = indent;
      continue;
    }
    setKey(map, k, value(false, frames.length));
    if (record) {
      last.key = keyAt;
      frame.node?.keys?.set(k, last);
    }
    lineEnd();
  }
  if (pendingMap !== undefined) {
    setKey(pendingMap, pendingKey, null);
    if (record) pendingNull();
  }
  if (!root) decline();
  return record ? rootNode : root;
}

/**
 * True when the node at `start` follows the end of a quoted scalar or a flow collection on the
 * same line, with nothing but spaces, tabs or a `?` between (`- "q"d: 1`, `- [] d:`, `- 'q' ? k`):
 * js-yaml may end the list there and read the rest as a key of the mapping around it, where yaml
 * refuses the line. Looks back over the node's own leading spaces only.
 */
function glued(text: string, start: number): boolean {
  let i = start - 1;
  let c = text.charCodeAt(i);
  // ' ' '\t' '?'
  while (c === 32 || c === 9 || c === 63) c = text.charCodeAt(--i);
  // ']' '}' '"' "'"
  return c === 93 || c === 125 || c === 34 || c === 39;
}

/**
 * True when `text` has a line that starts (after spaces) with `---` or `...` other than one `---`
 * at column 0 before any content: a document end marker, a second document, or an indented `---`
 * (text to yaml, a marker to js-yaml) are where the two readers part. Linear, and only run when the
 * text holds `---` or `...` at all.
 */
function documentMarks(text: string): boolean {
  const marks = /^ *(?:---|\.\.\.)/gm;
  for (let m = marks.exec(text); m; m = marks.exec(text)) {
    if (m[0] !== '---') return true;
    // Only comments and blank lines before it: the one document's start marker.
    const before = text.slice(0, m.index);
    if (!onlyComments(before)) return true;
  }
  return false;
}

/**
 * True when a key that starts at `start` (and whose text ends at `end`) might have its `:` more
 * than 1024 characters from its start: yaml refuses such an implicit key (YAML 1.2.2 §7.4.2, the
 * 1024-character limit), js-yaml reads it. Looks at no more than 1000 characters past `start`: the
 * scan stops at the `:`, the end of the line, or the end of a flow entry, and gives true if it gets
 * that far without one.
 */
function longKey(text: string, start: number, end: number): boolean {
  const limit = start + 1000;
  if (end > limit) return true;
  for (let i = end; i < limit; i++) {
    const c = text.charCodeAt(i);
    // ':' '\n' '\r' ',' ']' '}', or the end of the text.
    if (c === 58 || c === 10 || c === 13 || c === 44 || c === 93 || c === 125 || Number.isNaN(c))
      return false;
  }
  return true;
}

/**
 * A plain scalar's value by the YAML 1.2 core schema (YAML 1.2.2 §10.3.2), as yaml 2 resolves it
 * (its core tags, tried in its order: null, bool, octal, decimal and hexadecimal int, .inf/.nan,
 * exponent and decimal float), so that both readers give the same data.
 */
export function resolvePlain(s: string): unknown {
  if (s === '' || s === '~' || s === 'null' || s === 'Null' || s === 'NULL') return null;
  const c = s.charCodeAt(0);
  // Everything below starts with a digit, a sign, a dot or t/T/f/F: other text is a string at once.
  if (
    !(
      (c >= 48 && c <= 57) ||
      c === 43 ||
      c === 45 ||
      c === 46 ||
      c === 116 ||
      c === 84 ||
      c === 102 ||
      c === 70
    )
  )
    return s;
  // No form below has a second '.' or any ':': an IPv4 or IPv6 address, a dotted version or a
  // product:role is text without trying each.
  const dot = s.indexOf('.');
  if ((dot >= 0 && s.indexOf('.', dot + 1) >= 0) || s.includes(':')) return s;
  if (/^(?:[Tt]rue|TRUE)$/.test(s)) return true;
  if (/^(?:[Ff]alse|FALSE)$/.test(s)) return false;
  if (/^0o[0-7]+$/.test(s)) return Number.parseInt(s.substring(2), 8);
  if (/^[-+]?[0-9]+$/.test(s)) return Number.parseInt(s, 10);
  if (/^0x[0-9a-fA-F]+$/.test(s)) return Number.parseInt(s.substring(2), 16);
  if (/^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$/.test(s))
    return s.slice(-3).toLowerCase() === 'nan'
      ? Number.NaN
      : s[0] === '-'
        ? Number.NEGATIVE_INFINITY
        : Number.POSITIVE_INFINITY;
  if (/^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$/.test(s)) return Number.parseFloat(s);
  if (/^[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)$/.test(s)) return Number.parseFloat(s);
  return s;
}

/** `hosts.esx-a.roles[0]`; keys that are not plain words are quoted. */
export function formatPath(path: readonly PathPart[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else if (/^[A-Za-z0-9_][A-Za-z0-9_.:-]*$/.test(part) && !part.includes('.'))
      out += out ? `.${part}` : part;
    else out += `[${shown(part)}]`;
  }
  return out;
}
