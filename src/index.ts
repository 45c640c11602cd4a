/** The library surface: what other programs may import from `portolan`. Pinned by test/api.test.ts. */
export { loadCatalogs } from './catalog/load.js';
export type { Catalog, CatalogEntry } from './catalog/types.js';
export { InputError, PortolanError, UsageError } from './errors.js';
export type { ExportModel, ExportRule } from './export/model.js';
export { buildExportModel } from './export/model.js';
export { loadSite } from './inventory/load.js';
export type { Host, Inventory } from './inventory/types.js';
export type { Flow, Plan } from './model/flow.js';
export { mergePortRanges } from './model/ports.js';
export { buildPlan } from './plan/plan.js';
