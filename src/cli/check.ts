import { UsageError } from '../errors.js';
import { mergePortRanges, type PortRange } from '../model/ports.js';
import { buildPlan } from '../plan/plan.js';
import { type CheckOptions, DEFAULTS, runCheck } from '../probe/engine.js';
import { ProgressBar } from '../probe/progress.js';
import { CHECK_FORMATS, type CheckFormat, checkJson, checkJunit, checkTable } from '../probe/report.js';
import { scopeFor, select } from '../probe/scope.js';
import { SweepPool } from '../probe/sweep.js';
import { colorEnabled } from '../util/color.js';
import { sanitizeDeep } from '../util/terminal.js';
import { exactlyOne, oneOf, parse } from './args.js';
import { siteFrom } from './site.js';

const USAGE = `Usage: portolan check SITE.yaml [--from HOST | --as PRODUCT:ROLE] [--to HOST] [--port PORTS]
                      [--format table|json|junit] [--secret S] [--timeout MS] [--concurrency N]

Probes every flow of the plan that starts at this host, and only those: the plan is the scope.
This host is found from its interface addresses, or named with --from or --as.

  --from HOST        the inventory host this machine is
  --as PRODUCT:ROLE  probe the flows of every host with this role, from here
  --to HOST          only the flows to this host (name or address); refused if the plan has none
  --port PORTS       only these ports, e.g. 443,2500-2510; refused if no selected flow names them
  --format F         table (default on a terminal), json or junit
  --secret S         the secret of portolan listen on the targets (or env PORTOLAN_SECRET):
                     responders that answer it are reported "ok (responder)"
  --timeout MS       per-attempt timeout until a target answers (default ${DEFAULTS.timeoutMs}); after
                     that the timeout follows the measured round trip (at least ${DEFAULTS.minTimeoutMs} ms)
  --concurrency N    connects in flight at once (default ${DEFAULTS.concurrency})
  --retry-budget MS  how long to keep retrying silent ports while a target rate-limits its ICMP
                     errors (default ${DEFAULTS.retryBudgetMs})
  --workers N        sweep threads for large port ranges (default: up to 2)

Exit status: 0 when no flow failed, 1 when some flow failed, 2 on bad input.`;

function positiveInt(value: string | undefined, flag: string, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > max)
    throw new UsageError(`${flag} ${JSON.stringify(value)} is not a whole number from 1 to ${max}`);
  return Number(value);
}

function parsePorts(text: string): PortRange[] {
  const out: PortRange[] = [];
  for (const part of text.split(',')) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(part.trim());
    const lo = Number(m?.[1]);
    const hi = Number(m?.[2] ?? m?.[1]);
    if (!m || lo < 1 || hi > 65535 || lo > hi)
      throw new UsageError(
        `--port ${JSON.stringify(text)}: ${JSON.stringify(part)} is not a port or low-high range within 1-65535`,
      );
    out.push([lo, hi]);
  }
  return mergePortRanges(out);
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      from: { type: 'string' },
      as: { type: 'string' },
      to: { type: 'string' },
      port: { type: 'string' },
      format: { type: 'string', short: 'f' },
      secret: { type: 'string' },
      timeout: { type: 'string' },
      concurrency: { type: 'string' },
      'retry-budget': { type: 'string' },
      workers: { type: 'string' },
    },
    USAGE,
  );
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const file = exactlyOne(positionals, 'inventory file', USAGE);
  const format = oneOf(values.format, CHECK_FORMATS, '--format') ?? (process.stdout.isTTY ? 'table' : 'json');
  const timeoutMs = positiveInt(values.timeout, '--timeout', 600_000);
  const concurrency = positiveInt(values.concurrency, '--concurrency', 60_000);
  const retryBudgetMs = positiveInt(values['retry-budget'], '--retry-budget', 3_600_000);
  const workers = positiveInt(values.workers, '--workers', 64);
  const ports = values.port === undefined ? undefined : parsePorts(values.port);
  const secret = values.secret ?? process.env.PORTOLAN_SECRET;
  if (secret === '') throw new UsageError('the secret is empty (--secret or PORTOLAN_SECRET)');

  // Sweep threads start while the catalogs load.
  const pool = SweepPool.auto(workers).warm();
  try {
    return await check(
      file,
      values,
      format,
      {
        ...(secret !== undefined ? { secret } : {}),
        ...(timeoutMs !== undefined ? { timeoutMs } : {}),
        ...(concurrency !== undefined ? { concurrency } : {}),
        ...(retryBudgetMs !== undefined ? { retryBudgetMs } : {}),
        pool,
      },
      ports,
    );
  } finally {
    await pool.close();
  }
}

async function check(
  file: string,
  values: {
    from?: string | undefined;
    as?: string | undefined;
    to?: string | undefined;
    catalog?: string[] | undefined;
    'no-color'?: boolean | undefined;
  },
  format: CheckFormat,
  options: CheckOptions,
  ports: PortRange[] | undefined,
): Promise<number> {
  const { inventory, catalogs } = siteFrom(file, values);
  const plan = buildPlan(inventory, catalogs);
  const scope = await scopeFor(inventory, plan, {
    ...(values.from !== undefined ? { from: values.from } : {}),
    ...(values.as !== undefined ? { as: values.as } : {}),
  });
  const selection = select(scope, {
    ...(values.to !== undefined ? { to: values.to } : {}),
    ...(ports ? { ports } : {}),
  });
  if (!selection.flows.length) {
    process.stderr.write(
      `portolan check: no flow of ${plan.site} starts at ${scope.from.join(', ')} (${scope.how}): nothing to check\n`,
    );
    return 0;
  }
  const bar = new ProgressBar(process.stderr);
  const report = await runCheck(scope, { ...options, onProgress: (p) => bar.update(p) }, selection);
  bar.clear();
  switch (format) {
    case 'json':
      process.stdout.write(checkJson(report));
      break;
    case 'junit':
      process.stdout.write(checkJunit(report));
      break;
    default:
      // Certificate subjects, banners and catalog text reach the terminal: sanitised first.
      process.stdout.write(
        checkTable(sanitizeDeep(report), { color: !values['no-color'] && colorEnabled() }),
      );
  }
  return report.failed ? 1 : 0;
}
