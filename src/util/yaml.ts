import { createHash } from 'node:crypto';
import { CHOMPING_MODE, EVENT_ID, type Event, getScalarValue, parseEvents, SCALAR_STYLE } from 'js-yaml';
import {
  type Alias,
  Composer,
  type CST,
  type Document,
  type ErrorCode,
  isAlias,
  isMap,
  isNode,
  isPair,
  isScalar,
  isSeq,
  Lexer,
  LineCounter,
  type Node,
  type Pair,
  Parser,
  visit,
  YAMLMap,
  YAMLParseError,
  YAMLSeq,
} from 'yaml';
import { InputError, type Location, shown } from '../errors.js';
import { readBounded } from './read.js';

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
}

export type PathPart = string | number;

export interface LoadedYaml {
  file: string;
  data: unknown;
  /** SHA-256 of the file's bytes. */
  sha256: string;
  /** Where a key path is in the file; the nearest existing ancestor when the path itself is absent. */
  locate(path: readonly PathPart[], at?: 'key' | 'value'): Location;
}

/**
 * Reads a YAML file into plain data, turning every way it can be bad into one located InputError.
 * At most `limits.maxBytes` (default MAX_YAML_BYTES) + 1 bytes are read, whatever the file type
 * (readBounded): /dev/zero or an endless pipe is refused, never read to exhaustion.
 */
export function loadYamlFile(file: string, what = 'file', limits: YamlLimits = {}): LoadedYaml {
  const maxBytes = limits.maxBytes ?? MAX_YAML_BYTES;
  return parseYamlText(readBounded(file, maxBytes, what, limits.limitHint), file, what);
}

/**
 * parseYamlText's reading of `bytes` (UTF-8 YAML) as `file`: the data, where any key path is, and
 * the SHA-256 of the bytes. Throws InputError, located, for anything that is not one valid YAML
 * document within the limits (MAX_DEPTH, MAX_ALIAS_COUNT, MAX_EXPANDED_BYTES). `opts.fast: false`
 * reads with yaml's composer only (the reference the fast path is tested against).
 */
export function parseYamlText(
  bytes: Uint8Array,
  file: string,
  what = 'file',
  opts: { fast?: boolean } = {},
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
  if (onlyComments(text))
    throw new InputError(`the ${what} is empty (expected a YAML mapping)`, { file, line: 1, column: 1 });
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const fast = opts.fast === false ? undefined : composeFast(text);
  if (fast) {
    // Located only when asked (an error or a warning names a place): yaml's composer, once.
    let slow: Composed | undefined | null;
    const locate = (path: readonly PathPart[], which: 'key' | 'value' = 'value'): Location => {
      if (slow === undefined) {
        try {
          slow = composeSlow(text, file);
        } catch {
          slow = null;
        }
      }
      return slow ? slow.locate(path, which) : { file, path: formatPath(path) };
    };
    return { file, data: fast.data, locate, sha256 };
  }
  const slow = composeSlow(text, file);
  return { file, data: slow.data, locate: slow.locate, sha256 };
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
};

function yamlMessage(code: ErrorCode, message: string): string {
  if (code === 'MULTIPLE_DOCS')
    return 'the file holds more than one YAML document (expected one; remove the "---" line)';
  // yaml appends " at line L, column C:" and a code frame; the location is printed by us.
  const text = message.replace(/ at line \d+, column \d+:?[\s\S]*$/, '').trim();
  const hint = /^Missing closing/.test(text)
    ? 'it was opened above this point and never closed'
    : YAML_HINTS[code];
  return hint ? `${text} (${hint})` : text;
}

/** True when every line is blank or a comment: one pass, no backtracking. */
export function onlyComments(text: string): boolean {
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t !== '' && !t.startsWith('#')) return false;
  }
  return true;
}

/**
 * Parses `text` into `tokens` (what Parser.parse does) from one pass of yaml's lexer, and returns
 * the offset of the first flow collection (`[` or `{`) opened deeper than MAX_DEPTH flow levels,
 * stopping there before the parser sees it; undefined when there is none. Quoted and plain scalars
 * are single tokens, so brackets inside text are not counted. The lexer's own control tokens
 * (document, flow-error and scalar marks) are not source text and take no offset.
 */
function parseCounted(text: string, parser: Parser, tokens: CST.Token[]): number | undefined {
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
  const walk = (node: unknown): unknown => {
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
