import { InputErrors } from '../errors.js';
import { buildPlan, hostsInsideCidrs } from '../plan/plan.js';
import { safeLine } from '../util/terminal.js';
import { COMMON_HELP, exactlyOne, parse } from './args.js';
import { INVENTORY_HELP, INVENTORY_OPTIONS, siteFrom } from './site.js';

/** Plan warnings that mean a host gets fewer flows (or none) because the inventory leaves a fact out. */
const FACT_WARNINGS = new Set(['fact-missing', 'condition-unknown', 'fact-default', 'host-without-flows']);

export const USAGE = `Usage: portolan validate SITE.yaml

Checks a site inventory (and the catalogs it names or --catalog adds) against the schema and the
catalogs. Prints "ok" and exits 0, or prints every error as FILE:LINE:COL and exits 2. Warns on
stderr where a host gets fewer flows, or none, because a fact it needs is left out.

${INVENTORY_HELP}

${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, INVENTORY_OPTIONS, USAGE);
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const file = exactlyOne(positionals, 'inventory file', USAGE);
  let site: ReturnType<typeof siteFrom>;
  try {
    site = siteFrom(file, values);
  } catch (err) {
    if (!(err instanceof InputErrors)) throw err;
    for (const e of err.errors) process.stderr.write(`portolan: ${e.message}\n`);
    process.stderr.write(`${file}: ${err.errors.length} errors\n`);
    return 2;
  }
  const { inventory, catalogs } = site;
  // Where the plan will be thinner than the inventory suggests: facts left out.
  const plan = buildPlan(inventory, catalogs);
  for (const w of plan.warnings)
    if (FACT_WARNINGS.has(w.code)) process.stderr.write(`warning: ${file}: ${w.message}\n`);
  const products = [...inventory.products.keys()];
  for (const w of hostsInsideCidrs(inventory.hosts)) process.stderr.write(`${file}: warning: ${w.message}\n`);
  process.stdout.write(
    `${safeLine(file)}: ok (site ${safeLine(inventory.site)}: ${inventory.hosts.length} hosts, products ${products.join(', ') || 'none'}; ${catalogs.size} catalogs loaded)\n`,
  );
  return 0;
}
