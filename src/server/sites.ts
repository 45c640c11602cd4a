import { createHash } from 'node:crypto';
import { InputError } from '../errors.js';
import { buildExportModel, type ExportModel, type RemovalRule } from '../export/model.js';
import { loadSiteText, type Site } from '../inventory/load.js';
import type { Flow, Plan } from '../model/flow.js';
import { buildPlan } from '../plan/plan.js';
import { parseYamlText } from '../util/yaml.js';

/** The name uploaded inventories carry in error messages (`inventory.yaml:3:5 hosts.x: ...`). */
export const UPLOAD_NAME = 'inventory.yaml';

export interface ParsedSite extends Site {
  plan: Plan;
}

const cache = new Map<string, ParsedSite>();

/**
 * Parses an uploaded inventory with the same loader and planner as the CLI. Errors name
 * `inventory.yaml:line:col` and the key, as `portolan validate` would. The text is never written to
 * disk, so no message can name a directory of the server. An upload may not name catalog files
 * (`catalogs:`): the server has no directory of the user's, and a path there would read the
 * server's own files; catalogs of one's own are given to `serve --catalog`. Results are cached by
 * text (derived data only: every process derives the same plan from the same stored YAML).
 * Throws InputError.
 */
export function parseSite(yaml: string, catalogs: readonly string[] = []): ParsedSite {
  const hit = cache.get(yaml);
  if (hit) return hit;
  if (yaml.includes('catalogs')) refuseOwnCatalogs(yaml);
  const site = loadSiteText(yaml, UPLOAD_NAME, catalogs);
  const parsed = { ...site, plan: buildPlan(site.inventory, site.catalogs) };
  if (cache.size > 200) cache.clear();
  cache.set(yaml, parsed);
  return parsed;
}

/** Throws a located InputError when an uploaded inventory has a `catalogs:` list that is not empty. */
function refuseOwnCatalogs(yaml: string): void {
  const y = parseYamlText(Buffer.from(yaml, 'utf8'), UPLOAD_NAME, 'inventory');
  const data = y.data;
  if (data === null || typeof data !== 'object' || Array.isArray(data) || !('catalogs' in data)) return;
  const list = (data as { catalogs: unknown }).catalogs;
  if (Array.isArray(list) && list.length === 0) return;
  throw new InputError(
    'an uploaded inventory cannot name catalog files: the server reads no files beside an upload (expected no catalogs: key; give catalogs of your own to the server with serve --catalog PATH)',
    y.locate(['catalogs'], 'key'),
  );
}

/** What makes two versions of one flow (same id) differ on the wire. */
function wireShape(f: Pick<Flow, 'from' | 'to' | 'protocol' | 'ports' | 'icmpType' | 'service'>): string {
  return JSON.stringify([f.from.address, f.to.address, f.protocol, f.ports, f.icmpType ?? null, f.service]);
}

/**
 * A flow's form: what a check of it measures (addresses, protocol, ports, ICMP type, service; the
 * fields diffPlans compares), as 22 base64url characters of its SHA-256. Two versions' flows of one
 * id with the same form are the same flow on the wire, so a verdict measured on one holds for the
 * other; a different form (pve moved to another address) needs a check of its own. Purpose, notes
 * and sources are not part of it: editing them keeps the flow's verdicts.
 */
export function flowForm(
  f: Pick<Flow, 'from' | 'to' | 'protocol' | 'ports' | 'icmpType' | 'service'>,
): string {
  return createHash('sha256').update(wireShape(f)).digest('base64url').slice(0, 22);
}

export interface PlanDiff {
  added: Flow[];
  removed: Flow[];
  /** Same flow id, different addresses, protocol, ports or service: `from` and `to` versions. */
  changed: { from: Flow; to: Flow }[];
  unchanged: number;
}

/** Flows added, removed and changed between two plans of one site, keyed by flow id. */
export function diffPlans(a: Plan, b: Plan): PlanDiff {
  const before = new Map(a.flows.map((f) => [f.id, f]));
  const after = new Map(b.flows.map((f) => [f.id, f]));
  const diff: PlanDiff = { added: [], removed: [], changed: [], unchanged: 0 };
  for (const f of b.flows) {
    const old = before.get(f.id);
    if (!old) diff.added.push(f);
    else if (wireShape(old) !== wireShape(f)) diff.changed.push({ from: old, to: f });
    else diff.unchanged++;
  }
  for (const f of a.flows) if (!after.has(f.id)) diff.removed.push(f);
  return diff;
}

/**
 * The delta change request: the export model of only the flows a new version adds or changes, so
 * the change board approves what is new, in any export format, plus `removals`: the rules of the
 * previous version's export (same scope: network, or `host`) that lose flows, because the flow is
 * gone or its old address, protocol or ports are. Each removal names the old rule id, the leaving
 * flows, and whether the whole rule goes or it stays for other flows; the change-request formats
 * list them as rows to remove, the rulesets as a comment to act on by hand.
 */
export function deltaModel(
  diff: PlanDiff,
  from: ParsedSite,
  to: ParsedSite,
  generatorVersion: string,
  host?: string,
): ExportModel {
  const flows = [...diff.added, ...diff.changed.map((c) => c.to)];
  const plan: Plan = { site: to.plan.site, flows, warnings: [] };
  const model = buildExportModel(plan, to.inventory, {
    generatorVersion,
    ...(host !== undefined ? { host } : {}),
  });
  return { ...model, removals: removals(diff, from, generatorVersion, host) };
}

/** The previous version's rules that lose flows, in that export's order (see deltaModel). */
function removals(diff: PlanDiff, from: ParsedSite, generatorVersion: string, host?: string): RemovalRule[] {
  const leaving = new Set([...diff.removed.map((f) => f.id), ...diff.changed.map((c) => c.from.id)]);
  if (!leaving.size) return [];
  // A host the previous version did not have had no rules to remove.
  if (host !== undefined && !from.inventory.hosts.some((h) => h.name === host)) return [];
  const old = buildExportModel(from.plan, from.inventory, {
    generatorVersion,
    ...(host !== undefined ? { host } : {}),
  });
  const out: RemovalRule[] = [];
  for (const rule of old.rules) {
    const gone = rule.flows.filter((f) => leaving.has(f.id));
    if (gone.length) out.push({ rule, leaving: gone, whole: gone.length === rule.flows.length });
  }
  return out;
}
