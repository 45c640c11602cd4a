import type { Catalogs } from '../catalog/load.js';
import { formatLocated, InputErrors } from '../errors.js';
import type { Inventory } from '../inventory/types.js';
import type { Warning } from '../model/flow.js';
import { buildPlan, hostsInsideCidrs } from '../plan/plan.js';
import { counted } from '../util/plural.js';
import { writeLines } from '../util/stream.js';
import { safeLine, sanitize } from '../util/terminal.js';
import { writeHelp } from '../util/wrap.js';
import { COMMON_HELP, exactlyOne, parse } from './args.js';
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

export const USAGE = `Usage: portolan validate SITE.yaml

Checks a site inventory (and the catalogs it names or --catalog adds) against the schema and the
catalogs. Prints "ok" and exits 0, or prints every error as FILE:LINE:COL and exits 2. Warns on
stderr where the plan will be thinner than the inventory suggests: a host gets fewer flows, or
none, because a fact or setting it needs is left out, or a product's role has no host.

${INVENTORY_HELP}

${COMMON_HELP}`;

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
  const { values, positionals } = parse(argv, INVENTORY_OPTIONS, USAGE);
  if (values.help) {
    writeHelp(USAGE);
    return 0;
  }
  const file = exactlyOne(positionals, 'inventory file', USAGE);
  let site: ReturnType<typeof siteFrom>;
  try {
    site = siteFrom(file, values);
  } catch (err) {
    if (!(err instanceof InputErrors)) throw err;
    // Every error, as main's one-line report shows the first: through the terminal sanitiser, since a
    // value JSON-quoted in a message still carries C1 controls and bidirectional overrides raw.
    writeLines(process.stderr, [
      ...err.errors.map((e) => `portolan: ${sanitize(e.message)}`),
      `${safeLine(file)}: ${counted(err.errors.length, 'error')}`,
    ]);
    return 2;
  }
  const { inventory, catalogs, locate } = site;
  // Where the plan will be thinner than the inventory suggests: facts left out.
  const plan = buildPlan(inventory, catalogs);
  const summed = factSummaries(inventory, catalogs, plan.warnings);
  writeLines(process.stderr, [
    // Located through the one read of the file: a pipe cannot be read twice, nor a file past the
    // default limit that --max-inventory-size let in.
    ...summed.lines.map(({ host, text }) =>
      sanitize(formatLocated(`warning: ${text}`, locate(['hosts', host], 'key'))),
    ),
    // One form for every warning: located at the host it is about (FILE:LINE:COL hosts.NAME:), else
    // at the file (FILE:), then "warning:"; through the terminal sanitiser, as the errors are.
    // A product's warning (a role without hosts, a setting) at the product (products.NAME:).
    ...plan.warnings
      .filter((w) => aboutInventory(w, catalogs) && !summed.covered.has(w))
      .map((w) => {
        const at =
          w.host !== undefined
            ? locate(['hosts', w.host], 'key')
            : w.product !== undefined
              ? locate(['products', w.product], 'key')
              : undefined;
        return at
          ? sanitize(formatLocated(`warning: ${w.message}`, at))
          : `${safeLine(file)}: warning: ${sanitize(w.message)}`;
      }),
    ...hostsInsideCidrs(inventory.hosts).map((w) => `${safeLine(file)}: warning: ${sanitize(w.message)}`),
  ]);
  const products = [...inventory.products.keys()];
  process.stdout.write(
    `${safeLine(file)}: ok (site ${safeLine(inventory.site)}: ${counted(inventory.hosts.length, 'host')}, products ${products.join(', ') || 'none'}; ${counted(catalogs.size, 'catalog')} loaded)\n`,
  );
  return 0;
}
