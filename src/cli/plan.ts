import { PLAN_FORMATS, planCsv, planJson, planMarkdown, planTable, summary } from '../plan/format.js';
import { buildPlan } from '../plan/plan.js';
import { colorEnabled } from '../util/color.js';
import { safeLine } from '../util/terminal.js';
import { exactlyOne, oneOf, parse } from './args.js';
import { siteFrom } from './site.js';

const USAGE =
  'Usage: portolan plan SITE.yaml [--format table|json|csv|markdown] [--lang en|ja] [--catalog DIR]';

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { format: { type: 'string', short: 'f' }, lang: { type: 'string' } },
    USAGE,
  );
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const file = exactlyOne(positionals, 'inventory file', USAGE);
  const format = oneOf(values.format, PLAN_FORMATS, '--format') ?? (process.stdout.isTTY ? 'table' : 'json');
  const lang = oneOf(values.lang, ['en', 'ja'] as const, '--lang') ?? 'en';
  const { inventory, catalogs } = siteFrom(file, values);
  const plan = buildPlan(inventory, catalogs, { lang });
  const hosts = inventory.hosts.length;
  switch (format) {
    case 'json':
      process.stdout.write(planJson(plan));
      break;
    case 'csv':
      process.stdout.write(planCsv(plan));
      break;
    case 'markdown':
      process.stdout.write(planMarkdown(plan, hosts));
      break;
    default: {
      const color = !values['no-color'] && colorEnabled();
      process.stdout.write(planTable(plan, hosts, { color, columns: process.stdout.columns ?? 160 }));
    }
  }
  if (format !== 'table') process.stderr.write(`${safeLine(summary(plan, hosts))}\n`);
  return 0;
}
