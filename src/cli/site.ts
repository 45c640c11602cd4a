import { loadSite, type Site } from '../inventory/load.js';

/** Loads the inventory named on the command line with the `--catalog` paths. */
export function siteFrom(file: string, values: { catalog?: string[] | undefined }): Site {
  return loadSite(file, values.catalog ?? []);
}
