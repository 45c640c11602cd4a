import { COMMON_HELP, exactlyOne, parse } from './args.js';
import { siteFrom } from './site.js';

export const USAGE = `Usage: portolan validate SITE.yaml

Checks a site inventory (and the catalogs it names or --catalog adds) against the schema and the
catalogs, without planning. Prints "ok" and exits 0, or prints each error as FILE:LINE:COL and
exits 2.

${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {}, USAGE);
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const file = exactlyOne(positionals, 'inventory file', USAGE);
  const { inventory, catalogs } = siteFrom(file, values);
  const products = [...inventory.products.keys()];
  process.stdout.write(
    `${file}: ok (site ${inventory.site}: ${inventory.hosts.length} hosts, products ${products.join(', ') || 'none'}; ${catalogs.size} catalogs loaded)\n`,
  );
  return 0;
}
