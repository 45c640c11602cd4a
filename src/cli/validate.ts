import type { Catalogs } from '../catalog/load.js';
import { fileShown, formatLocated, InputError, InputErrors, type Location, UsageError } from '../errors.js';
import { inventoryLimit, STDIN } from '../inventory/load.js';
import type { Inventory } from '../inventory/types.js';
import type { Warning } from '../model/flow.js';
import { buildPlan, hostsInsideCidrs } from '../plan/plan.js';
import { counted } from '../util/plural.js';
import { writeLines } from '../util/stream.js';
import { safeLine, sanitize } from '../util/terminal.js';
import { writeHelp } from '../util/wrap.js';
import { COMMON_HELP, forUsage, oneOf, parse } from './args.js';
import { INVENTORY_HELP, INVENTORY_OPTIONS, siteFrom } from './site.js';

/**
 * Plan warnings validate repeats: those the inventory can clear by changing itself. A host gets
 * fewer flows (or none) because a fact is left out, or a product's role has no host, so its
 * catalog entries yield no flows. Advisories, and catalog warnings that hold whenever a role is
 * present (names a firewall must allow), are about the firewall, not the inventory: plan's.
 */
const FACT_WARNINGS = new Set(['fact-missing', 'condition-unknown', 'fact-default', 'host-without-flows']);
const INVENTORY_WARNINGS = new Set([...FACT_WARNINGS, 'role-without-hosts']);

/** A warning of a product's catalog (its `warnings:` list) that reads the inventory's choices. */
function aboutInventory(w: Warning, catalogs: Catalogs): boolean {
  if (INVENTORY_WARNINGS.has(w.code)) return true;
  if (w.product === undefined) return false;
  const c = catalogs.get(w.product)?.warnings?.find((x) => x.id === w.code);
  return c !== undefined && !c.when.every((cond) => 'role-present' in cond);
}

export const USAGE = `Usage: portolan validate SITE.yaml... [--format text|json]

Checks site inventories (and the catalogs each names or --catalog adds) against the schema and the
catalogs. For each file, prints "ok", or every error as FILE:LINE:COL; exits 0 when every file is
good and 2 when any is not. Warns on stderr where the plan will be thinner than the inventory
suggests: a host gets fewer flows, or none, because a fact or setting it needs is left out, or a
product's role has no host.

  --format FORMAT    text (default) or json: one JSON document on stdout listing each file's
                     errors and warnings with file, line, column, path and message
${INVENTORY_HELP}

${COMMON_HELP}`;

/** Where a problem is and what it is: one error or warning of `portolan validate --format json`. */
export interface Problem {
  file: string;
  /** 1-based; absent when the problem is about the file as a whole (unreadable, too large). */
  line?: number;
  column?: number;
  /** The key path in the inventory (`hosts.esx-a.roles[0]`), where there is one. */
  path?: string;
  /** What is wrong and what was expected, without the location. */
  message: string;
}

/** One file's result: `ok` with its summary, or its errors; warnings either way. */
export interface FileResult {
  file: string;
  ok: boolean;
  errors: Problem[];
  warnings: Problem[];
  /** The error as thrown, when not `ok` (not part of the JSON report). */
  error?: InputError;
  /** The site's name, host count, products and catalogs loaded, when `ok`. */
  site?: string;
  hosts?: number;
  products?: string[];
  catalogs?: number;
}

function problem(message: string, at: Location | undefined, file: string): Problem {
  return {
    file: at?.file ?? file,
    ...(at?.line !== undefined ? { line: at.line } : {}),
    ...(at?.column !== undefined ? { column: at.column } : {}),
    ...(at?.path !== undefined ? { path: at.path } : {}),
    message,
  };
}

/**
 * One warning per host whose flows depend on facts the inventory leaves out: which facts, the
 * values the catalog takes for them, the entries skipped, and whether the host is left with no
 * flows at all. Returns the lines and the plan warnings they stand for.
 */
export function factSummaries(
  inventory: Inventory,
  catalogs: Catalogs,
  warnings: readonly Warning[],
): { lines: { host: string; text: string }[]; covered: Set<Warning> } {
  const byHost = new Map<string, { facts: Set<string>; entries: Set<string>; warnings: Warning[] }>();
  for (const w of warnings) {
    if (w.code !== 'condition-unknown' || !w.facts) continue;
    for (const { host, fact } of w.facts) {
      const e = byHost.get(host) ?? { facts: new Set(), entries: new Set(), warnings: [] };
      e.facts.add(fact);
      const entry = /entry (\S+)/.exec(w.message)?.[1];
      if (entry) e.entries.add(`${w.product ?? ''} ${entry}`.trim());
      e.warnings.push(w);
      byHost.set(host, e);
    }
  }
  const empty = new Map(
    warnings.filter((w) => w.code === 'host-without-flows' && w.host).map((w) => [w.host as string, w]),
  );
  const lines: { host: string; text: string }[] = [];
  const covered = new Set<Warning>();
  for (const [name, e] of byHost) {
    const host = inventory.hosts.find((h) => h.name === name);
    if (!host) continue;
    const facts = [...e.facts].map((fact) => {
      const values = new Set<string>();
      for (const r of host.roles)
        for (const v of catalogs.get(r.product)?.facts?.[r.role]?.[fact]?.values ?? []) values.add(String(v));
      return values.size ? `${fact} (one of: ${[...values].join(', ')})` : fact;
    });
    const none = empty.get(name);
    const entries = [...e.entries];
    const shownEntries =
      entries.slice(0, 4).join(', ') + (entries.length > 4 ? ` and ${entries.length - 4} more` : '');
    lines.push({
      host: name,
      text: `host ${name} ${none ? 'gets no flows' : 'gets fewer flows'}: its facts do not give ${facts.join(', ')}${entries.length ? `; ${entries.length === 1 ? 'entry' : 'entries'} ${shownEntries} need${entries.length === 1 ? 's' : ''} ${e.facts.size === 1 ? 'it' : 'them'}` : ''} (add ${e.facts.size === 1 ? 'it' : 'them'} under hosts.${name}.facts)`,
    });
    for (const w of e.warnings) covered.add(w);
    if (none) covered.add(none);
  }
  return { lines, covered };
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { ...INVENTORY_OPTIONS, format: { type: 'string', short: 'f' } },
    USAGE,
  );
  if (values.help) {
    writeHelp(USAGE);
    return 0;
  }
  const format = oneOf(values.format, ['text', 'json'] as const, '--format') ?? 'text';
  if (positionals.length === 0)
    throw new UsageError(`expected one or more inventory files, got none\n${forUsage(USAGE)}`);
  if (positionals.includes(''))
    throw new UsageError(
      `the inventory file is named by an empty argument (expected a path)\n${forUsage(USAGE)}`,
    );
  if (positionals.filter((f) => f === STDIN).length > 1)
    throw new UsageError(
      `stdin (-) is named more than once (expected it once: it can be read once)\n${forUsage(USAGE)}`,
    );
  // The size limit is checked once, before any file is read: a bad one is a usage error.
  inventoryLimit(values['max-inventory-size']);
  const results: FileResult[] = [];
  for (const file of positionals) {
    const result = validateOne(file, values);
    // One file's one error is main's to report, as any command's: its stack follows with --debug.
    if (format === 'text' && positionals.length === 1 && result.error && result.errors.length === 1)
      throw result.error;
    results.push(result);
    if (format === 'text') writeText(result);
  }
  if (format === 'json')
    process.stdout.write(
      `${asciiSafeJson({ ok: results.every((r) => r.ok), files: results.map(({ error: _, ...r }) => r) })}\n`,
    );
  return results.every((r) => r.ok) ? 0 : 2;
}

/**
 * JSON text (indented by 2) whose strings carry no C1 control, DEL, U+2028/U+2029, bidirectional
 * control or U+FEFF as such: each is written as its \uXXXX escape (RFC 8259 section 7), so the
 * document parses to the same data and a terminal it is printed on sees none of them. JSON.stringify
 * escapes C0 controls only; a file's name or a quoted alias may hold U+009B, a one-character CSI.
 */
function asciiSafeJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(
    /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** One file as text: its errors (each as main reports one) or its "ok" line, and its warnings. */
function writeText(r: FileResult): void {
  if (!r.ok) {
    // Through the terminal sanitiser, as main's one-line report: a message may quote the file's name.
    const lines = r.errors.map((e) => `portolan: ${sanitize(formatLocated(e.message, e))}`);
    if (r.errors.length > 1) lines.push(`${fileShown(r.file)}: ${counted(r.errors.length, 'error')}`);
    writeLines(process.stderr, lines);
    return;
  }
  writeLines(
    process.stderr,
    r.warnings.map((w) =>
      w.line === undefined && w.path === undefined
        ? `${fileShown(w.file)}: warning: ${sanitize(w.message)}`
        : sanitize(formatLocated(`warning: ${w.message}`, w)),
    ),
  );
  process.stdout.write(
    `${fileShown(r.file)}: ok (site ${safeLine(r.site ?? '')}: ${counted(r.hosts ?? 0, 'host')}, products ${r.products?.join(', ') || 'none'}; ${counted(r.catalogs ?? 0, 'catalog')} loaded)\n`,
  );
}

/** Validates one inventory file: its errors (InputError, every one of InputErrors), else its warnings. */
export function validateOne(
  file: string,
  values: { catalog?: string[] | undefined; 'max-inventory-size'?: string | undefined },
): FileResult {
  let site: ReturnType<typeof siteFrom>;
  try {
    site = siteFrom(file, values);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    const errors = err instanceof InputErrors ? err.errors : [err];
    return {
      file,
      ok: false,
      error: err,
      errors: errors.map((e) => problem(e.detail, e.location, file)),
      warnings: [],
    };
  }
  const { inventory, catalogs, locate } = site;
  // Where the plan will be thinner than the inventory suggests: facts left out.
  const plan = buildPlan(inventory, catalogs);
  const summed = factSummaries(inventory, catalogs, plan.warnings);
  const warnings: Problem[] = [
    // Located through the one read of the file: a pipe cannot be read twice, nor a file past the
    // default limit that --max-inventory-size let in.
    ...summed.lines.map(({ host, text }) => problem(text, locate(['hosts', host], 'key'), file)),
    // Located at the host it is about, else at the product (a role without hosts, a setting),
    // else at the file.
    ...plan.warnings
      .filter((w) => aboutInventory(w, catalogs) && !summed.covered.has(w))
      .map((w) => {
        const at =
          w.host !== undefined
            ? locate(['hosts', w.host], 'key')
            : w.product !== undefined
              ? locate(['products', w.product], 'key')
              : undefined;
        return problem(w.message, at, file);
      }),
    ...hostsInsideCidrs(inventory.hosts).map((w) => problem(w.message, undefined, file)),
  ];
  return {
    file,
    ok: true,
    errors: [],
    warnings,
    site: inventory.site,
    hosts: inventory.hosts.length,
    products: [...inventory.products.keys()],
    catalogs: catalogs.size,
  };
}
