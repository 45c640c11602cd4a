// Validates the built-in catalogs once, at build time, and stores them keyed by the SHA-256 of
// their YAML (see CATALOG_CACHE in src/catalog/load.ts). Run after tsc: `npm run build`.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUILTIN_CATALOG_DIR, CATALOG_CACHE, loadCatalogFile } from '../dist/src/catalog/load.js';

const cache = {};
for (const name of readdirSync(BUILTIN_CATALOG_DIR)
  .filter((f) => /\.ya?ml$/.test(f))
  .sort()) {
  const file = join(BUILTIN_CATALOG_DIR, name);
  const sha256 = createHash('sha256').update(readFileSync(file)).digest('hex');
  const { file: _file, ...catalog } = loadCatalogFile(file);
  cache[name] = { sha256, catalog };
}
writeFileSync(CATALOG_CACHE, JSON.stringify(cache));
