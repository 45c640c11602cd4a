import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { InputError, PortolanError, UsageError } from '../errors.js';
import { checkSupported } from '../export/generator.js';
import { FORMAT_NAMES, loadGenerator } from '../export/index.js';
import { checkLineLimits } from '../export/limits.js';
import { buildExportModel } from '../export/model.js';
import { buildPlan } from '../plan/plan.js';
import { safeLine } from '../util/terminal.js';
import { exactlyOne, oneOf, parse } from './args.js';
import { version } from './main.js';
import { siteFrom } from './site.js';

const USAGE = `Usage: portolan export SITE.yaml --to FORMAT [--host NAME | --network] [-o FILE|DIR]
Formats: ${FORMAT_NAMES.join(', ')}`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      to: { type: 'string', short: 't' },
      host: { type: 'string' },
      network: { type: 'boolean' },
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
      `unknown host ${JSON.stringify(values.host)} for --host (expected one of: ${inventory.hosts.map((h) => h.name).join(', ')})`,
      { file },
    );
  const plan = buildPlan(inventory, catalogs);
  const generator = await loadGenerator(format);
  const model = buildExportModel(plan, inventory, {
    ...(values.host !== undefined ? { host: values.host } : {}),
    generatorVersion: version(),
  });
  checkSupported(generator, model);
  const result = generator.render(model);
  checkLineLimits(format, result.files);
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
  for (const w of result.warnings) process.stderr.write(`warning: ${safeLine(w)}\n`);
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
