import { loadCatalogs } from '../catalog/load.js';
import type { Catalog } from '../catalog/types.js';
import { UsageError } from '../errors.js';
import { COMMON_HELP, didYouMean, parse } from './args.js';
import { writeAtomic } from './check.js';

export const USAGE = `Usage: portolan init PRODUCT... [--site NAME] [-o FILE]

Writes a commented skeleton inventory for the products: every feature and setting of each product
(commented out, with the values and defaults the catalog gives), one host per role, and every fact
each role takes. Addresses are placeholders from 192.0.2.0/24 (TEST-NET-1, RFC 5737): replace them.
The skeleton validates as it is; "portolan validate" says so.

  --site NAME        the site name (default: my-site)
  -o, --output FILE  write the file (atomically) instead of printing it

${COMMON_HELP}`;

/** A YAML plain scalar, or a double-quoted one when plain would be read as something else. */
function scalar(text: string): string {
  return /^[A-Za-z0-9][A-Za-z0-9._/-]*$/.test(text) &&
    !/^(true|false|yes|no|on|off|null|~|\d[\d.]*)$/i.test(text)
    ? text
    : JSON.stringify(text);
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
      out.push('    # features: the optional parts in use; list the ones this site has:');
      for (const [id, f] of features) out.push(`    #   ${id}: ${f.title}`);
      out.push('    features: []');
    }
    for (const [id, s] of settings) {
      const values = s.values
        ? ` (one of: ${s.values.join(', ')})`
        : s.type === 'version'
          ? ' (a version)'
          : '';
      out.push(`    # ${id}: ${s.description ?? s.type}${values}`);
      const example = s.default ?? s.values?.[0];
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
      if (n > 254) throw new UsageError('too many roles for one skeleton: name fewer products');
    }
  }
  return `${out.join('\n')}\n`;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { site: { type: 'string' }, output: { type: 'string', short: 'o' } },
    USAGE,
  );
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const catalogs = loadCatalogs(values.catalog ?? []);
  if (!positionals.length)
    throw new UsageError(`name at least one product (one of: ${[...catalogs.keys()].join(', ')})\n${USAGE}`);
  const chosen: Catalog[] = [];
  for (const p of positionals) {
    const c = catalogs.get(p);
    if (!c)
      throw new UsageError(
        `unknown product ${JSON.stringify(p)}${didYouMean(p, catalogs.keys())} (expected one of: ${[...catalogs.keys()].join(', ')})`,
      );
    if (!chosen.includes(c)) chosen.push(c);
  }
  const site = values.site ?? 'my-site';
  if (!/^[a-z0-9][a-z0-9-]*$/i.test(site))
    throw new UsageError(`--site ${JSON.stringify(site)} is not a name of letters, digits and dashes`);
  const text = skeleton(site, chosen);
  if (values.output !== undefined) {
    writeAtomic(values.output, text);
    process.stderr.write(`wrote ${values.output}: run "portolan validate ${values.output}"\n`);
  } else process.stdout.write(text);
  return 0;
}
