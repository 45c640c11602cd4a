import {
  PLAN_FORMATS,
  planCsvChunks,
  planJsonChunks,
  planMarkdown,
  planTable,
  summary,
} from '../plan/format.js';
import { buildPlan } from '../plan/plan.js';
import { warningLines } from '../plan/warning-lines.js';
import { colorEnabled } from '../util/color.js';
import { writeChunks, writeLines } from '../util/stream.js';
import { safeLine } from '../util/terminal.js';
import { writeHelp } from '../util/wrap.js';
import { COMMON_HELP, exactlyOne, oneOf, parse } from './args.js';
import { checkOutputFile, fileOrStdout, writeOutputFile } from './output.js';
import { INVENTORY_HELP, INVENTORY_OPTIONS, siteFrom } from './site.js';

export const USAGE = `Usage: portolan plan SITE.yaml [--format table|json|csv|markdown] [--lang en|ja] [--advisories]
                     [-o FILE]

Every flow the site needs: from host to host, protocol, ports, service, why, and the vendor
document row it comes from. An export aggregates flows into rules: flows with the same protocol and
ports share a rule when they go to one destination (their sources listed together) or come from the
same sources, and rules between the same sources and destinations merge their ports and services.

  -f, --format F     table (default on a terminal), json (default in a pipe), csv or markdown
  --lang L           en (default) or ja: purposes and notes in Japanese where the catalog has them
  --advisories       also plan the cited advisories beyond the documents (see catalog PRODUCT)
  -o, --output FILE  write the plan to FILE (whole or not at all) instead of stdout; the format
                     is json unless --format says otherwise; -o - is stdout
${INVENTORY_HELP}

The summary (hosts, flows, rules, warnings) and the warnings go to stderr with json, csv, markdown
and -o.
json and csv are written flow by flow as they are made, so a plan of any size that fits in memory
is written; one that does not is refused with how many flows it reached (exit 2).

${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      format: { type: 'string', short: 'f' },
      lang: { type: 'string' },
      advisories: { type: 'boolean' },
      output: { type: 'string', short: 'o' },
      ...INVENTORY_OPTIONS,
    },
    USAGE,
  );
  if (values.help) {
    writeHelp(USAGE);
    return 0;
  }
  const file = exactlyOne(positionals, 'inventory file', USAGE);
  // `-o -` is stdout, as if -o were not given.
  const out = fileOrStdout(values.output);
  const format =
    oneOf(values.format, PLAN_FORMATS, '--format') ??
    (out === undefined && process.stdout.isTTY ? 'table' : 'json');
  const lang = oneOf(values.lang, ['en', 'ja'] as const, '--lang') ?? 'en';
  // A bad -o is refused before the inventory is read and planned.
  if (out !== undefined) checkOutputFile(out);
  const { inventory, catalogs } = siteFrom(file, values);
  const plan = buildPlan(inventory, catalogs, { lang, ...(values.advisories ? { advisories: true } : {}) });
  const hosts = inventory.hosts.length;
  // The plan's text in the chosen format: pieces for json and csv (written as they are made), one
  // string for markdown and the table (coloured and fitted only on the terminal).
  const toFile = out !== undefined;
  const text: string | Iterable<string> =
    format === 'json'
      ? planJsonChunks(plan)
      : format === 'csv'
        ? planCsvChunks(plan)
        : format === 'markdown'
          ? planMarkdown(plan, hosts)
          : planTable(plan, hosts, {
              color: !toFile && !values['no-color'] && colorEnabled(),
              // The terminal's width; a terminal that reports 0 columns (no size set) has none.
              columns:
                (toFile ? undefined : process.stdout.columns || undefined) ??
                (Number(process.env.COLUMNS) || 160),
            });
  if (toFile) writeOutputFile(out, text);
  else if (typeof text === 'string') process.stdout.write(text);
  else await writeChunks(process.stdout, text);
  if (format !== 'table' || toFile) {
    writeLines(process.stderr, [
      ...warningLines(plan.warnings).map((w) => safeLine(`warning: ${w}`)),
      safeLine(summary(plan, hosts)),
    ]);
  }
  if (toFile) process.stderr.write(`wrote ${safeLine(out)}\n`);
  return 0;
}
