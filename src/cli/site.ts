import { inventoryLimit, loadSite, type Site } from '../inventory/load.js';
import type { Options } from './args.js';

/** The options of every command that reads an inventory (spread into its parse() options). */
export const INVENTORY_OPTIONS = {
  'max-inventory-size': { type: 'string' },
} as const satisfies Options;

/** The help lines for INVENTORY_OPTIONS. */
export const INVENTORY_HELP = `  SITE.yaml          the inventory file; - reads it from stdin
  --max-inventory-size SIZE
                     the largest inventory file read (default 64MiB; also the
                     environment variable PORTOLAN_MAX_INVENTORY_SIZE);
                     /dev/zero or an endless pipe stops there`;

/** Loads the inventory named on the command line with the `--catalog` paths and its size limit. */
export function siteFrom(
  file: string,
  values: { catalog?: string[] | undefined; 'max-inventory-size'?: string | undefined },
): Site {
  return loadSite(file, values.catalog ?? [], { maxBytes: inventoryLimit(values['max-inventory-size']) });
}
