import { statSync } from 'node:fs';
import { loadCatalogs } from '../catalog/load.js';
import type { Catalog, PeerSpec } from '../catalog/types.js';
import { quote, UsageError } from '../errors.js';
import { unknownName } from '../util/suggest.js';
import { writeHelp } from '../util/wrap.js';
import { COMMON_HELP, forUsage, parse } from './args.js';
import { fileOrStdout, writeOutputFile } from './output.js';

export const USAGE = `Usage: portolan init PRODUCT... [--site NAME] [-o FILE] [--force]

Writes a commented skeleton inventory for the products: every feature and setting of each product
(commented out, with the values and defaults the catalog gives), one host per role, and every fact
each role takes. Every feature is listed as in use and a setting with no default takes the catalog's
first example, so that every placeholder host is part of the plan; a role that only advisory entries
reach is written commented out. Addresses are placeholders from 192.0.2.0/24 (TEST-NET-1, RFC 5737):
replace them. The skeleton validates as it is, with no warnings; "portolan validate" says so.

  --site NAME        the site name (default: my-site)
  -o, --output FILE  write the file (atomically) instead of printing it (-o - prints it); an
                     existing file is an inventory someone may have edited, so it is kept unless
                     --force is given
  --force            overwrite an existing -o FILE

${COMMON_HELP}`;

/** A YAML plain scalar, or a double-quoted one when plain would be read as something else. */
function scalar(text: string): string {
  return /^[A-Za-z0-9][A-Za-z0-9._/-]*$/.test(text) &&
    !/^(true|false|yes|no|on|off|null|~|\d[\d.]*)$/i.test(text)
    ? text
    : JSON.stringify(text);
}

/** The role a catalog entry's peer names, if any. */
function peerRole(p: PeerSpec): string | undefined {
  return typeof p === 'string' ? p : 'role' in p ? p.role : undefined;
}

/** True when every entry of the catalog that names the role, at either end, is an advisory one. */
function advisoryOnly(c: Catalog, role: string): boolean {
  const touching = c.entries.filter((e) => peerRole(e.from) === role || peerRole(e.to) === role);
  return touching.length > 0 && touching.every((e) => e.basis === 'advisory');
}

/** The skeleton inventory text for some catalogs (see USAGE). */
export function skeleton(site: string, catalogs: readonly Catalog[]): string {
  const out: string[] = [
    `# Site inventory skeleton written by portolan init for: ${catalogs.map((c) => c.product).join(', ')}.`,
    '# Replace the placeholder addresses (192.0.2.0/24 is reserved for documentation) with your hosts,',
    '# a CIDR for a group of hosts, or a DNS name; delete the hosts a site does not have; then run',
    '#   portolan validate FILE && portolan plan FILE',
    `site: ${scalar(site)}`,
    'products:',
  ];
  for (const c of catalogs) {
    out.push(`  # ${c.title}`);
    out.push(`  ${c.product}:`);
    const features = Object.entries(c.features ?? {});
    const settings = Object.entries(c.settings ?? {});
    if (!features.length && !settings.length) {
      out[out.length - 1] = `  ${c.product}: {}`;
      continue;
    }
    if (features.length) {
      out.push(
        '    # features: the optional parts in use; all are listed, delete the ones this site does not use',
      );
      out.push('    # (the hosts of a role that only a deleted feature needs then get no flows):');
      for (const [id, f] of features) out.push(`    #   ${id}: ${f.title}`);
      out.push(`    features: [${features.map(([id]) => scalar(id)).join(', ')}]`);
    }
    for (const [id, s] of settings) {
      const values = s.values
        ? ` (one of: ${s.values.join(', ')})`
        : s.type === 'version'
          ? ' (a version)'
          : '';
      out.push(`    # ${id}: ${s.description ?? s.type}${values}`);
      const example = s.default ?? s.values?.[0];
      // A setting with no default that some entry needs (the version) is given the first example,
      // so that those entries are planned rather than skipped with a warning.
      const needed = s.default === undefined ? s.examples?.[0]?.split(' ')[0] : undefined;
      if (needed !== undefined) {
        out.push(`    # replace with this site's ${id}; examples: ${s.examples?.join(', ')}`);
        out.push(`    ${id}: ${JSON.stringify(needed)}`);
      } else
        out.push(
          `    # ${id}: ${example === undefined ? (s.type === 'version' ? 'VERSION' : 'VALUE') : scalar(example)}`,
        );
    }
  }
  out.push('hosts:');
  let n = 10;
  const taken = new Set<string>();
  for (const c of catalogs) {
    out.push(`  # ${c.title}: one host per role`);
    for (const [role, r] of Object.entries(c.roles)) {
      let name = `${role}-01`;
      if (taken.has(name)) name = `${c.product}-${role}-01`;
      taken.add(name);
      out.push(`  # ${r.title}${r.description ? `: ${r.description}` : ''}`);
      // A role only advisory entries reach would have no flows (and a warning) unless the site plans
      // advisories: write it commented out, saying how to take it in.
      const lead = advisoryOnly(c, role) ? '# ' : '';
      if (lead)
        out.push(
          '  # Only advisory entries (vendor pages beyond the documents) reach this role: to plan them, uncomment',
          '  # the host and add the top-level key "advisories: include" (or plan with --advisories).',
        );
      const start = out.length;
      out.push(`  ${name}:`);
      out.push(`    address: 192.0.2.${n++}`);
      out.push(`    roles: [${c.product}:${role}]`);
      const facts = Object.entries(c.facts?.[role] ?? {});
      if (facts.length) {
        out.push('    facts:');
        for (const [fact, f] of facts) {
          const what = f.description ? `${f.description.replace(/\.$/, '')}; ` : '';
          out.push(`      # ${what}${f.list ? 'a list of' : 'one of'}: ${f.values.join(', ')}`);
          const value = f.default ?? f.values[0] ?? '';
          out.push(`      ${fact}: ${f.list ? `[${scalar(value)}]` : scalar(value)}`);
        }
      }
      if (lead) for (let i = start; i < out.length; i++) out[i] = `  ${lead}${(out[i] ?? '').slice(2)}`;
      if (n > 254) throw new UsageError('too many roles for one skeleton: name fewer products');
    }
  }
  return `${out.join('\n')}\n`;
}

/** True when `path` names an existing regular file (a link is followed); devices and FIFOs are not. */
function isRegularFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { site: { type: 'string' }, output: { type: 'string', short: 'o' }, force: { type: 'boolean' } },
    USAGE,
  );
  if (values.help) {
    writeHelp(USAGE);
    return 0;
  }
  const catalogs = loadCatalogs(values.catalog ?? []);
  if (!positionals.length)
    throw new UsageError(
      `name at least one product (one of: ${[...catalogs.keys()].join(', ')})\n${forUsage(USAGE)}`,
    );
  const chosen: Catalog[] = [];
  for (const p of positionals) {
    const c = catalogs.get(p);
    if (!c) throw new UsageError(unknownName('product', p, catalogs.keys()));
    if (!chosen.includes(c)) chosen.push(c);
  }
  const site = values.site ?? 'my-site';
  if (!/^[a-z0-9][a-z0-9-]*$/i.test(site))
    throw new UsageError(`--site ${quote(site)} is not a name of letters, digits and dashes`);
  const text = skeleton(site, chosen);
  // `-o -` is stdout, as if -o were not given.
  const out = fileOrStdout(values.output);
  if (out !== undefined) {
    // The skeleton is the start of a hand-edited file: never replace one silently.
    if (!values.force && isRegularFile(out))
      throw new UsageError(
        `-o ${quote(out)}: the file exists (an inventory that may hold edits); give --force to overwrite it, or another -o FILE`,
      );
    writeOutputFile(out, text);
    process.stderr.write(`wrote ${out}: run "portolan validate ${out}"\n`);
  } else process.stdout.write(text);
  return 0;
}
