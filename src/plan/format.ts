import type { Flow, Plan } from '../model/flow.js';
import { formatPorts } from '../model/ports.js';
import { maxOf, pushAll } from '../util/arrays.js';
import { palette, width } from '../util/color.js';
import { sanitize } from '../util/terminal.js';
import { longestPart, longestUnit, wrap } from '../util/wrap.js';
import { forwardRuleCount } from './rules.js';
import { warningLines } from './warning-lines.js';

export { wrap };

export type PlanFormat = 'table' | 'json' | 'csv' | 'markdown';
export const PLAN_FORMATS: readonly PlanFormat[] = ['table', 'json', 'csv', 'markdown'];

/** Port pairs on one line each: [443, 443] reads better than four lines. */
function pairsOnOneLine(text: string): string {
  return text.replace(/\[\s+(\d+),\s+(\d+)\s+\]/g, '[$1, $2]');
}

const DIGITS = /^\d+$/;

/** Indentation by depth: two spaces a level. */
const PADS: string[] = [''];
function padOf(depth: number): string {
  for (let d = PADS.length; d <= depth; d++) PADS.push(`${PADS[d - 1]}  `);
  return PADS[depth] as string;
}

/** Object keys as JSON string literals, for the few key names plans use. */
const KEY_TEXT = new Map<string, string>();
function keyText(key: string): string {
  let text = KEY_TEXT.get(key);
  if (text === undefined) {
    text = stringText(key);
    if (KEY_TEXT.size < 256) KEY_TEXT.set(key, text);
  }
  return text;
}

/** What pretty() remembers for one plan: texts of objects by depth, texts of strings. */
interface Memo {
  seen: WeakMap<object, string>[];
  texts: Map<string, string>;
}

/** The most string values of a plan whose JSON text is remembered. */
const ITEM_TEXTS = 65536;

/** stringText of `value`, remembered in `texts` (up to ITEM_TEXTS of them). */
function textOf(value: string, texts: Map<string, string>): string {
  let text = texts.get(value);
  if (text === undefined) {
    text = stringText(value);
    if (texts.size < ITEM_TEXTS) texts.set(value, text);
  }
  return text;
}

function stringText(value: string): string {
  const text = JSON.stringify(value);
  return text.includes('[') ? pairsOnOneLine(text) : text;
}

/**
 * `value` as JSON.stringify(value, null, 2) prints it at indentation `depth` (two spaces a level),
 * with pairsOnOneLine applied. Written out here rather than by rewriting the whole text with
 * regular expressions, which made the plan's JSON its slowest part: an array of two whole numbers
 * is `[a, b]`, and a string literal gets the same rewrite the text would have given it (a match
 * can lie inside a string literal, never across one). Objects printed before at the same depth
 * (the endpoints, ports and sources that flows share) are printed once: `memo.seen` remembers them,
 * per depth, for one plan, and `memo.texts` the strings (notes and purposes recur in lists that
 * merges made apart); `remember` false prints `value` itself without remembering it.
 */
function pretty(value: unknown, depth: number, memo: Memo, remember = true): string {
  switch (typeof value) {
    case 'string':
      return textOf(value, memo.texts);
    case 'number':
      // JSON's text of a number is its String() text, `null` where JSON has no number (NaN, ±Infinity).
      return Number.isFinite(value) ? String(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object':
      break;
    default:
      return JSON.stringify(value) ?? 'null';
  }
  if (value === null) return 'null';
  // Looked up first: what is remembered is neither a port pair nor an object with toJSON, and most
  // objects a plan prints were printed before, so those are never asked for their toJSON.
  let known: WeakMap<object, string> | undefined;
  if (remember) {
    known = memo.seen[depth];
    if (!known) {
      known = new WeakMap();
      memo.seen[depth] = known;
    }
    const done = known.get(value);
    if (done !== undefined) return done;
  }
  // A port pair, printed as it is rather than remembered: merges and per-drive ports make new ones.
  if (Array.isArray(value) && value.length === 2) {
    const [a, b] = value as unknown[];
    if (typeof a === 'number' && typeof b === 'number') {
      const x = pretty(a, depth + 1, memo);
      const y = pretty(b, depth + 1, memo);
      if (DIGITS.test(x) && DIGITS.test(y)) return `[${x}, ${y}]`;
    }
  }
  const pad = padOf(depth);
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function')
    return pairsOnOneLine(JSON.stringify(value, null, 2).replace(/\n/g, `\n${pad}`));
  const inner = padOf(depth + 1);
  let out: string;
  if (Array.isArray(value)) {
    if (value.length === 0) out = '[]';
    else {
      // Each element by index (a hole is `null`, as JSON.stringify prints it), into a list of texts.
      const n = value.length;
      const items: string[] = [];
      for (let i = 0; i < n; i++) items.push(pretty(value[i], depth + 1, memo));
      out =
        n === 2 && DIGITS.test(items[0] as string) && DIGITS.test(items[1] as string)
          ? `[${items[0]}, ${items[1]}]`
          : `[\n${inner}${items.join(`,\n${inner}`)}\n${pad}]`;
    }
  } else {
    // Pieces joined once: one flat string, where `+=` leaves a chain to copy out later.
    const parts: string[] = ['{'];
    for (const key of Object.keys(value)) {
      const v = (value as Record<string, unknown>)[key];
      if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
      parts.push(parts.length > 1 ? ',\n' : '\n', inner, keyText(key), ': ', pretty(v, depth + 1, memo));
    }
    parts.push('\n', pad, '}');
    out = parts.length > 4 ? parts.join('') : '{}';
  }
  known?.set(value, out);
  return out;
}

/**
 * The plan contract (docs/contracts.md), plus stable extensions (id, tls, local, entries, icmpType),
 * as pieces of text in order: the opening, then one piece per flow and per warning, then the close.
 * Their concatenation is exactly planJson(plan); no piece holds more than one flow, so a plan whose
 * JSON is larger than a JavaScript string can hold (512 MiB) is still written, piece by piece.
 * Each flow is `JSON.stringify(flow, null, 2)` indented by four, with port pairs on one line.
 */
export function* planJsonChunks(plan: Plan): Generator<string> {
  const memo: Memo = { seen: [], texts: new Map() };
  yield `{\n  "site": ${JSON.stringify(plan.site)},\n`;
  // The flows and the warnings in loops of their own, each asking its own items whether they are
  // printed field by field (itemText): one kind of object each, where one loop would see both.
  const flows: readonly object[] = plan.flows;
  let n = flows.length;
  if (n === 0) yield '  "flows": [],\n';
  else {
    yield '  "flows": [\n';
    for (let i = 0; i < n; i++) {
      const f = flows[i] as object;
      const end = i === n - 1 ? '\n' : ',\n';
      yield 'id' in f && typeof (f as { toJSON?: unknown }).toJSON !== 'function'
        ? itemText(f, end, memo)
        : `    ${pretty(f, 2, memo, false)}${end}`;
    }
    yield '  ],\n';
  }
  const warnings: readonly object[] = plan.warnings;
  n = warnings.length;
  if (n === 0) yield '  "warnings": []\n';
  else {
    yield '  "warnings": [\n';
    for (let i = 0; i < n; i++) {
      const w = warnings[i] as object;
      const end = i === n - 1 ? '\n' : ',\n';
      yield 'id' in w && typeof (w as { toJSON?: unknown }).toJSON !== 'function'
        ? itemText(w, end, memo)
        : `    ${pretty(w, 2, memo, false)}${end}`;
    }
    yield '  ]\n';
  }
  yield '}\n';
}

/**
 * One flow (an item with an id and no toJSON) at depth 2, as pretty() prints it. The strings of
 * its own fields (product, service, purpose: the same in many flows) are printed once per plan,
 * remembered in `texts`; its id is its own and printed each time. The flow's text is concatenated,
 * not joined: its pieces (most of them texts printed before) are copied once, into the batch written.
 */
function itemText(item: object, end: string, memo: Memo): string {
  let out = '    {';
  let first = true;
  for (const key of Object.keys(item)) {
    const v = (item as Record<string, unknown>)[key];
    let text: string | undefined;
    if (typeof v === 'string') {
      text = key === 'id' ? stringText(v) : textOf(v, memo.texts);
    } else if (typeof v === 'boolean') text = v ? 'true' : 'false';
    else if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
    else text = pretty(v, 3, memo);
    out += (first ? fieldStart : fieldNext)(key) + text;
    first = false;
  }
  return first ? `    {}${end}` : `${out}\n    }${end}`;
}

/** The text before the first field of an item at depth 2: its line break, indentation and key. */
const FIRST_FIELD = new Map<string, string>();
function fieldStart(key: string): string {
  let text = FIRST_FIELD.get(key);
  if (text === undefined) {
    text = `\n      ${keyText(key)}: `;
    if (FIRST_FIELD.size < 256) FIRST_FIELD.set(key, text);
  }
  return text;
}

/** The text before a later field of an item at depth 2: the comma, then as fieldStart. */
const NEXT_FIELD = new Map<string, string>();
function fieldNext(key: string): string {
  let text = NEXT_FIELD.get(key);
  if (text === undefined) {
    text = `,\n      ${keyText(key)}: `;
    if (NEXT_FIELD.size < 256) NEXT_FIELD.set(key, text);
  }
  return text;
}

/** The whole plan JSON as one string (planJsonChunks joined); for plans that fit in memory. */
export function planJson(plan: Plan): string {
  return [...planJsonChunks(plan)].join('');
}

export function summary(plan: Plan, hostCount: number): string {
  const rules = forwardRuleCount(plan.flows);
  const local = plan.flows.filter((f) => f.local).length;
  return `${plan.site}: ${hostCount} host${hostCount === 1 ? '' : 's'}, ${plan.flows.length} flow${plan.flows.length === 1 ? '' : 's'} (${local} local), ${rules} rule${rules === 1 ? '' : 's'}, ${plan.warnings.length} warning${plan.warnings.length === 1 ? '' : 's'}`;
}

export function endpointText(e: Flow['from']): string {
  if (!e.host) return `any (${e.description ?? 'unspecified'})`;
  return `${e.host} (${e.role})`;
}

export function portsText(f: Flow): string {
  if (f.protocol === 'icmp') return f.icmpType ?? 'any';
  return formatPorts(f.ports);
}

export function sourcesText(f: Flow): string {
  return f.sources.map((s) => `${s.doc} ${s.ref}`).join('; ');
}

const HEADER = [
  'product',
  'from',
  'from_address',
  'to',
  'to_address',
  'protocol',
  'ports',
  'service',
  'purpose',
  'sources',
  'notes',
];

function row(f: Flow): string[] {
  return [
    f.product,
    endpointText(f.from),
    f.from.address ?? 'any',
    endpointText(f.to),
    f.to.address ?? 'any',
    f.protocol,
    portsText(f),
    f.service,
    f.purpose,
    sourcesText(f),
    f.notes.join(' | '),
  ];
}

/** What a spreadsheet reads as the start of a formula (OWASP CSV injection), after leading blanks. */
const FORMULA_START = /^[\s]*[=+\-@\uff1d\uff0b\uff0d\uff20]|^[\t\r\n]/;

/**
 * The one CSV escaping function (RFC 4180): a field that holds a quote, a line break or either
 * separator spreadsheets use (`,`, and `;` where the locale's decimal mark is a comma) is quoted and
 * its quotes doubled. A reader splitting on the other separator ignores those quotes and starts a
 * cell after every separator, so a formula character after a `,` or `;` gets a `'` before it too,
 * as does one at the start of the field (OWASP CSV injection); so does one after a tab (text pasted
 * into a spreadsheet splits on tabs) or a line break (a reader taking one record per line).
 */
export function csvField(v: string): string {
  // A reader that splits on the other separator starts a cell after every `,` or `;`, quotes or not.
  const text = sanitize(v).replace(/([,;\t\r\n])(?=[^\S\r\n]*[=+\-@\uff1d\uff0b\uff0d\uff20])/g, "$1'");
  const safe = FORMULA_START.test(text) ? `'${text}` : text;
  return /[",;\r\n]/.test(safe) || safe !== v ? `"${safe.replace(/"/g, '""')}"` : safe;
}

/** The plan as CSV (RFC 4180, CRLF line ends): the header line, then one line per flow, in order. */
export function* planCsvChunks(plan: Plan): Generator<string> {
  yield `${HEADER.map(csvField).join(',')}\r\n`;
  for (const f of plan.flows) yield `${row(f).map(csvField).join(',')}\r\n`;
}

/** The whole plan CSV as one string (planCsvChunks joined); for plans that fit in memory. */
export function planCsv(plan: Plan): string {
  return [...planCsvChunks(plan)].join('');
}

/**
 * Markdown table cell: backslash, pipe and the inline syntax that makes links, emphasis or code
 * (`[ ] * _ ` ~`) are backslash-escaped, HTML-significant characters become entities, and every
 * line break (CRLF, LF or a lone CR) becomes <br>, so user text stays one literal cell.
 */
export function mdCell(v: string): string {
  return (
    sanitize(v)
      .replace(/[\\|[\]*_`~]/g, (c) => `\\${c}`)
      // A block marker at the start of a line (heading, list, setext underline) stays text.
      .replace(/^([#+=-])(?=\s|$)/, '\\$1')
      .replace(/^(\d+)([.)])(?=\s|$)/, '$1\\$2')
      .replace(/[<>&]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;' })[c] as string)
      .replace(/\r\n|\r|\n/g, '<br>')
  );
}

export function planMarkdown(plan: Plan, hostCount: number): string {
  const cols = ['#', 'from', 'to', 'protocol', 'ports', 'service', 'purpose', 'source'];
  const lines = [
    `# ${mdCell(plan.site)}: network flows`,
    '',
    mdCell(summary(plan, hostCount)),
    '',
    `| ${cols.join(' | ')} |`,
    `|${cols.map(() => '---').join('|')}|`,
    ...plan.flows.map(
      (f, i) =>
        `| ${[String(i + 1), `${endpointText(f.from)} ${f.from.address ?? ''}`.trim(), `${endpointText(f.to)} ${f.to.address ?? ''}`.trim(), f.protocol, portsText(f), f.service, f.purpose, sourcesText(f)].map(mdCell).join(' | ')} |`,
    ),
  ];
  if (plan.warnings.length)
    pushAll(lines, ['', '## Warnings', '', ...plan.warnings.map((w) => `- ${mdCell(w.message)}`)]);
  return `${lines.join('\n')}\n`;
}

/**
 * One step of narrowing a table: column `column` down to `to` columns, or to its widest
 * unbreakable unit ('units': a word with its punctuation, a whole name, a port list entry), or to
 * its widest hyphen part ('parts': "druva-" of "druva-cloud", "49152-" of "49152-65535"), and
 * never below `atLeast`.
 */
export interface Narrowing {
  column: number;
  to: number | 'units' | 'parts';
  atLeast?: number;
}

/**
 * The plan table's narrowing order. First without breaking anything but spaces: the purpose to
 * 24, the ports to their widest entry, the purpose to 16 (never below its widest word), the host
 * names and the service to their widest name. Then breaking only after hyphens: the port ranges,
 * the purpose's words (not below 16), the host names. Then the purpose to 16 whatever its words
 * (a word wider than that is cut), and last the service breaks after a hyphen. Only a terminal too
 * narrow for all that cuts names.
 */
const PLAN_NARROWING: Narrowing[] = [
  { column: 5, to: 'units', atLeast: 24 },
  { column: 3, to: 'units' },
  { column: 5, to: 'units', atLeast: 16 },
  { column: 1, to: 'units' },
  { column: 0, to: 'units' },
  { column: 4, to: 'units' },
  { column: 3, to: 'parts' },
  { column: 5, to: 'parts', atLeast: 16 },
  { column: 1, to: 'parts' },
  { column: 0, to: 'parts' },
  { column: 5, to: 16 },
  { column: 4, to: 'parts' },
  { column: 5, to: 10 },
  { column: 3, to: 6 },
  { column: 4, to: 10 },
  { column: 1, to: 10 },
  { column: 0, to: 10 },
];

/**
 * Column widths (display columns) for a table of `rows` under `head`, two spaces between columns,
 * fitted to `total` columns where it can be: each column starts as wide as its widest cell, then
 * the `steps` narrow one column at a time, each only as far as needed, never below its floor or
 * its header's width, and never wider than the earlier steps left it. Widths that `wrap` fills
 * without cutting a word for the 'units' and 'parts' floors. The result can exceed `total` when
 * even the last floor does not fit.
 */
export function fitColumns(head: string[], rows: string[][], total: number, steps: Narrowing[]): number[] {
  const widths = head.map((h, i) => Math.max(width(h), maxOf(rows.map((r) => width(sanitize(r[i] ?? ''))))));
  const sum = () => widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1);
  for (const { column, to, atLeast = 0 } of steps) {
    const over = sum() - total;
    if (over <= 0) break;
    const now = widths[column] ?? 0;
    const measure = to === 'units' ? longestUnit : to === 'parts' ? longestPart : undefined;
    const floor = measure ? maxOf(rows.map((r) => measure(sanitize(r[column] ?? '')))) : (to as number);
    widths[column] = Math.min(now, Math.max(floor, atLeast, width(head[column] ?? ''), now - over));
  }
  return widths;
}

/**
 * A terminal table, fitted to `columns` (default 160): the purpose wraps on word boundaries under
 * its own column rather than past the terminal's edge, and gives up room so that host names,
 * services and port list entries are never cut while it has room to give (PLAN_NARROWING).
 */
export function planTable(plan: Plan, hostCount: number, opts: { color: boolean; columns?: number }): string {
  const p = palette(opts.color);
  const head = ['FROM', 'TO', 'PROTO', 'PORTS', 'SERVICE', 'PURPOSE'];
  const rows = plan.flows.map((f) => [
    f.from.host ? `${f.from.host}` : 'any',
    f.local ? `${f.to.host} (local)` : `${f.to.host ?? 'any'}`,
    f.protocol,
    portsText(f),
    f.service,
    f.purpose,
  ]);
  const widths = fitColumns(head, rows, Math.max(40, opts.columns ?? 160), PLAN_NARROWING);
  const total = Math.max(40, opts.columns ?? 160);
  const line = (cells: string[]) => {
    const wrapped = cells.map((c, i) => wrap(sanitize(c), widths[i] ?? 0));
    const height = Math.max(...wrapped.map((w) => w.length));
    const lines: string[] = [];
    for (let k = 0; k < height; k++)
      lines.push(
        wrapped
          .map((w, i) => {
            const t = w[k] ?? '';
            return t + ' '.repeat(Math.max(0, (widths[i] ?? 0) - width(t)));
          })
          .join('  ')
          .trimEnd(),
      );
    return lines.join('\n');
  };
  const out = [p.bold(line(head)), ...rows.map(line)];
  for (const w of warningLines(plan.warnings))
    out.push(...wrap(`warning: ${sanitize(w)}`, total).map((l) => p.yellow(l)));
  out.push(p.dim(sanitize(summary(plan, hostCount))));
  return `${out.join('\n')}\n`;
}
