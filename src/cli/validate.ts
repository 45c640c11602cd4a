import { safeLine } from '../util/terminal.js';
import { exactlyOne, parse } from './args.js';
import { siteFrom } from './site.js';

const USAGE = 'Usage: portolan validate SITE.yaml [--catalog DIR]';

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
    `${safeLine(file)}: ok (site ${safeLine(inventory.site)}: ${inventory.hosts.length} hosts, products ${products.join(', ') || 'none'}; ${catalogs.size} catalogs loaded)\n`,
  );
  return 0;
}
