import { loadCatalogs } from '../catalog/load.js';
import {
  type Catalog,
  type CatalogEntry,
  isPageRef,
  type PeerSpec,
  type PortSpec,
  type SourceRef,
} from '../catalog/types.js';
import { versionRangesText } from '../catalog/version.js';
import { UsageError } from '../errors.js';
import { colorEnabled, palette } from '../util/color.js';
import { unknownName } from '../util/suggest.js';
import { sanitizeDeep } from '../util/terminal.js';
import { terminalColumns, wrapLines, writeHelp } from '../util/wrap.js';
import { COMMON_HELP, forUsage, oneOf, parse } from './args.js';

export const USAGE = `Usage: portolan catalog [PRODUCT] [--format text|json] [--lang en|ja]

Without PRODUCT: every product with its roles and features. With PRODUCT: its documents (with
what is known of them), roles, features, settings, facts and every cited entry (ports, service,
purpose, document and row).

  -f, --format F     text (default) or json
  --lang L           en (default) or ja

${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { format: { type: 'string', short: 'f' }, lang: { type: 'string' } },
    USAGE,
  );
  if (values.help) {
    writeHelp(USAGE);
    return 0;
  }
  const format = oneOf(values.format, ['text', 'json'] as const, '--format') ?? 'text';
  const lang = oneOf(values.lang, ['en', 'ja'] as const, '--lang') ?? 'en';
  const catalogs = loadCatalogs(values.catalog ?? []);
  if (positionals.length > 1) throw new UsageError(`expected at most one product\n${forUsage(USAGE)}`);
  const wanted = positionals[0];
  if (wanted !== undefined && !catalogs.has(wanted))
    throw new UsageError(unknownName('product', wanted, catalogs.keys()));
  const selected = [...catalogs.values()].filter((c) => wanted === undefined || c.product === wanted);
  if (format === 'json') {
    const out = wanted === undefined ? selected.map(publicCatalog) : publicCatalog(selected[0] as Catalog);
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return 0;
  }
  const p = palette(!values['no-color'] && colorEnabled());
  const ja = lang === 'ja';
  // Piped into grep or a file, an entry stays on its lines (a source row is not split in two);
  // on a terminal, or with COLUMNS, it is wrapped to fit.
  const columns = terminalColumns(process.stdout, Number.POSITIVE_INFINITY);
  const dimmed = (line: string) => wrapLines(line, columns, { hang: 2 }).split('\n').map(p.dim);
  if (wanted === undefined) {
    const list: string[] = [];
    for (const c of selected.map((x) => sanitizeDeep(x, true))) {
      list.push(`${p.bold(c.product)}  ${(ja && c['title-ja']) || c.title}`);
      list.push(`  roles: ${Object.keys(c.roles).join(', ')}`);
      const features = Object.keys(c.features ?? {});
      if (features.length) list.push(`  features: ${features.join(', ')}`);
      // Document entries and advisories apart: an advisory rests on a vendor page, not on these files.
      const advisories = c.entries.filter((e) => e.basis === 'advisory').length;
      list.push(
        `  entries: ${c.entries.length - advisories} from ${c.documents.map((d) => d.file).join(', ')}${advisories ? `; advisories: ${advisories} from vendor pages` : ''}`,
      );
    }
    process.stdout.write(`${wrapLines(list.join('\n'), columns, { hang: 2 })}\n`);
    return 0;
  }
  // Each text is one line of the listing: a line break in a catalog's text must not start a line at column 0.
  const c = sanitizeDeep(selected[0] as Catalog, true);
  const lines = [`${p.bold(c.product)}  ${(ja && c['title-ja']) || c.title}`, '', p.bold('Documents')];
  // The files the entries cite, with what is known of them (lost text, defects, how rows are read).
  for (const d of c.documents) {
    lines.push(`  ${d.file}  ${d.title}${d.language ? ` (${d.language})` : ''}`);
    for (const n of d.notes ?? []) lines.push(...dimmed(`    note: ${n}`));
  }
  lines.push('', p.bold('Roles'));
  for (const [id, r] of Object.entries(c.roles))
    lines.push(`  ${id.padEnd(26)} ${(ja && r['title-ja']) || r.title}`);
  if (Object.keys(c.features ?? {}).length) lines.push('', p.bold('Features'));
  for (const [id, f] of Object.entries(c.features ?? {}))
    lines.push(`  ${id.padEnd(26)} ${(ja && f['title-ja']) || f.title}`);
  if (Object.keys(c.settings ?? {}).length) lines.push('', p.bold('Settings'));
  for (const [id, s] of Object.entries(c.settings ?? {})) {
    lines.push(
      `  ${id.padEnd(26)} ${s.type}${s.values ? ` (${s.values.join('|')})` : ''}${s.default ? `, default ${s.default}` : ''}`,
    );
    if (s.description) lines.push(`    ${s.description}`);
    if (s.examples?.length) lines.push(`    examples: ${s.examples.join(', ')}`);
    for (const [value, ranges] of Object.entries(s.versions ?? {}))
      lines.push(`    ${value} versions: ${versionRangesText(ranges)}`);
    if (s.sources?.length) lines.push(`    source: ${s.sources.map(sourceText).join('; ')}`);
    for (const n of s.notes ?? []) lines.push(...dimmed(`    note: ${n}`));
  }
  const facts = Object.entries(c.facts ?? {}).flatMap(([role, fs]) =>
    Object.entries(fs).map(([n, f]) => ({ role, n, f })),
  );
  if (facts.length) lines.push('', p.bold('Host facts'));
  const factPad = Math.max(26, ...facts.map(({ role, n }) => role.length + n.length + 2));
  for (const { role, n, f } of facts)
    lines.push(
      `  ${`${role}.${n}`.padEnd(factPad)} ${f.list ? 'list of ' : ''}${f.values.join('|')}${f.default ? `, default ${f.default}` : ''}${f.setting ? `, default the setting ${f.setting}` : ''}`,
    );
  const advisories = c.entries.filter((e) => e.basis === 'advisory');
  lines.push('', p.bold('Entries'));
  for (const e of c.entries.filter((x) => x.basis !== 'advisory')) entryLines(e);
  if (advisories.length)
    lines.push(
      '',
      p.bold('Advisories'),
      '  Beyond the documents, from the vendor pages cited; planned only with --advisories or',
      '  the inventory key "advisories: include", otherwise shown as warnings.',
    );
  for (const e of advisories) entryLines(e);
  if (c.warnings?.length) lines.push('', p.bold('Warnings'));
  for (const w of c.warnings ?? []) {
    lines.push(
      `  ${p.cyan(w.id)}${w.role ? ` (each ${w.role})` : ''}: ${(ja && w['message-ja']) || w.message}`,
    );
    lines.push(`    when: ${JSON.stringify(w.when)}`);
    lines.push(`    source: ${w.sources.map(sourceText).join('; ')}`);
  }
  process.stdout.write(`${wrapLines(lines.join('\n'), columns, { hang: 2 })}\n`);
  return 0;

  function entryLines(e: CatalogEntry): void {
    lines.push(
      `  ${p.cyan(e.id)}: ${peerText(e.from)} -> ${peerText(e.to)} ${e.protocol} ${portsText(e)} (${e.service})`,
    );
    lines.push(`    ${(ja && e['purpose-ja']) || e.purpose}`);
    if (e.when?.length) lines.push(`    when: ${JSON.stringify(e.when)}`);
    lines.push(`    source: ${e.sources.map(sourceText).join('; ')}`);
    for (const n of (ja && e['notes-ja']) || e.notes || []) lines.push(...dimmed(`    note: ${n}`));
  }
}

/**
 * One citation: a document's table and row with what the row says there (`ref`: the bullet or note
 * of the row, or the From/To an empty cell continues), or an advisory's vendor page.
 */
function sourceText(s: SourceRef): string {
  return isPageRef(s)
    ? `${s.title} <${s.url}> (read ${s.read})`
    : `${s.doc} ${s.table} row ${s.row}${s.ref ? ` (${s.ref})` : ''}`;
}

function publicCatalog(c: Catalog) {
  const { file: _file, ...rest } = c;
  return rest;
}

function peerText(p: PeerSpec): string {
  if (typeof p === 'string') return p;
  return 'any' in p ? `any (${p.any})` : `${p.role} (same host)`;
}

function portText(p: PortSpec): string {
  if (typeof p !== 'object') return String(p);
  const d = p['per-drive'];
  return `${d.base}+drive(${d.first}..${d.last})`;
}

function portsText(e: CatalogEntry): string {
  return e.protocol === 'icmp' ? (e['icmp-type'] ?? 'any') : (e.ports ?? []).map(portText).join(',');
}
