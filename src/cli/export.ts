import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { InputError, PortolanError, UsageError } from '../errors.js';
import { checkSupported } from '../export/generator.js';
import { FORMAT_NAMES, loadGenerator } from '../export/index.js';
import { buildExportModel } from '../export/model.js';
import { rpcCaveats } from '../plan/caveats.js';
import { buildPlan } from '../plan/plan.js';
import { version } from '../util/version.js';
import { COMMON_HELP, didYouMean, exactlyOne, oneOf, parse } from './args.js';
import { siteFrom } from './site.js';

export const USAGE = `Usage: portolan export SITE.yaml --to FORMAT [--host NAME | --network] [--advisories] [-o FILE|DIR]

Firewall configs, change-request tables and diagrams from the plan of a site.

  -t, --to FORMAT    one of: ${FORMAT_NAMES.join(', ')}
  --host NAME        only the rules of this host (host firewalls: the host's own ruleset)
  --network          the network firewall's view: every flow that crosses it (the default)
  --advisories       also plan the cited advisories beyond the documents
  -o, --output PATH  write FILE, or DIR/ for formats that write several files (default: stdout)

The plan's warnings are printed on stderr.

${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      to: { type: 'string', short: 't' },
      host: { type: 'string' },
      network: { type: 'boolean' },
      advisories: { type: 'boolean' },
      output: { type: 'string', short: 'o' },
    },
    USAGE,
  );
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const file = exactlyOne(positionals, 'inventory file', USAGE);
  if (values.to === undefined) throw new UsageError(`--to FORMAT is required\n${USAGE}`);
  const format = oneOf(values.to, FORMAT_NAMES, '--to') as (typeof FORMAT_NAMES)[number];
  if (values.host !== undefined && values.network)
    throw new UsageError('give either --host NAME or --network, not both');
  const { inventory, catalogs } = siteFrom(file, values);
  if (values.host !== undefined && !inventory.hosts.some((h) => h.name === values.host))
    throw new InputError(
      `unknown host ${JSON.stringify(values.host)} for --host${didYouMean(
        values.host,
        inventory.hosts.map((h) => h.name),
      )} (expected one of: ${inventory.hosts.map((h) => h.name).join(', ')})`,
      { file },
    );
  const plan = buildPlan(inventory, catalogs, values.advisories ? { advisories: true } : {});
  const generator = await loadGenerator(format);
  const model = buildExportModel(plan, inventory, {
    ...(values.host !== undefined ? { host: values.host } : {}),
    generatorVersion: version(),
  });
  checkSupported(generator, model);
  const result = generator.render(model);
  const out = values.output;
  if (out === undefined) {
    if (result.files.length !== 1)
      throw new UsageError(
        `--to ${format} writes ${result.files.length} files (${result.files.map((f) => f.path).join(', ')}); give -o DIR`,
      );
    process.stdout.write(result.files[0]?.content ?? '');
  } else if (result.files.length === 1 && !out.endsWith('/')) {
    write(out, result.files[0]?.content ?? '');
  } else {
    for (const f of result.files) write(join(out, f.path), f.content);
    process.stderr.write(`wrote ${result.files.length} files to ${out}\n`);
  }
  // The plan's warnings (unspecified peers, facts left out, deferred ports), then the format's own.
  const said = new Set(plan.warnings.map((w) => w.message));
  for (const w of said) process.stderr.write(`warning: ${w}\n`);
  for (const w of result.warnings) if (!said.has(w)) process.stderr.write(`warning: ${w}\n`);
  for (const w of rpcCaveats(plan, catalogs, values.host)) process.stderr.write(`warning: ${w}\n`);
  return 0;
}

function write(path: string, content: string): void {
  try {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content);
  } catch (err) {
    throw new PortolanError(
      `cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      'EIO',
      { cause: err },
    );
  }
}
