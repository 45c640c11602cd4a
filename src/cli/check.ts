import { join } from 'node:path';
import { quote, UsageError } from '../errors.js';
import type { PortRange } from '../model/ports.js';
import { buildPlan } from '../plan/plan.js';
import { type CheckOptions, type CheckReport, DEFAULTS, runCheck } from '../probe/engine.js';
import { MAX_NAME_ADDRESSES, MAX_PROBES, plannedText } from '../probe/limits.js';
import { ProgressBar } from '../probe/progress.js';
import { DEFAULT_MAX_RATE } from '../probe/rate.js';
import { CHECK_FORMATS, type CheckFormat, checkJson, checkJunit, checkTable } from '../probe/report.js';
import { type Scope, type Selection, scopeFor, select } from '../probe/scope.js';
import { SweepPool } from '../probe/sweep.js';
import { colorEnabled } from '../util/color.js';
import { writeLines } from '../util/stream.js';
import { sanitizeDeep } from '../util/terminal.js';
import { writeHelp } from '../util/wrap.js';
import { COMMON_HELP, exactlyOne, oneOf, parse, parsePorts, positiveInt } from './args.js';
import { checkOutputDir, checkOutputFile, makeOutputDir, writeOutputFile } from './output.js';
import { INVENTORY_HELP, INVENTORY_OPTIONS, siteFrom } from './site.js';

/** The options check and probe share: output, timing and load. */
export const outputOptions = {
  format: { type: 'string', short: 'f' },
  output: { type: 'string', short: 'o' },
  'output-dir': { type: 'string' },
  secret: { type: 'string' },
  timeout: { type: 'string' },
  concurrency: { type: 'string' },
  'retry-budget': { type: 'string' },
  workers: { type: 'string' },
  'max-probes': { type: 'string' },
  'max-addresses': { type: 'string' },
  'max-rate': { type: 'string' },
} as const;

export const OUTPUT_HELP = `  -f, --format F     what stdout shows: table (default on a terminal), json or junit
  -o, --output FILE  also write the results to FILE: junit with --format junit, else JSON (the
                     screen can show the table while the file gets JSON)
  --output-dir DIR   also write DIR/check.json, DIR/check.xml (JUnit) and DIR/check.txt
  --timeout MS       per-attempt timeout until a target answers (default ${DEFAULTS.timeoutMs}); after
                     that the timeout follows the measured round trip (at least ${DEFAULTS.minTimeoutMs} ms)
  --concurrency N    connects in flight at once (default ${DEFAULTS.concurrency})
  --max-rate N       connects started per second, over all targets (default ${DEFAULT_MAX_RATE},
                     or env PORTOLAN_MAX_RATE), so a firewall or IDS does not take the check for
                     a SYN flood: a FortiGate's DoS policy reports a port scan from 1000 SYNs a
                     second from one source by default; 0 for no cap
  --retry-budget MS  how long to keep retrying silent ports while a target rate-limits its ICMP
                     errors (default ${DEFAULTS.retryBudgetMs})
  --workers N        sweep threads for large port ranges (default: up to 2)
  --max-probes N     probe up to N (address, port) pairs; a larger check is refused before the
                     first probe (default ${MAX_PROBES})
  --max-addresses N  probe every address of a DNS name that resolves to up to N of them; a name
                     with more is refused (default ${MAX_NAME_ADDRESSES})`;

/** What check and probe do on Ctrl-C, said after their options. */
export const INTERRUPT_HELP = `On Ctrl-C the flows decided so far are printed and written, marked INTERRUPTED, and the exit
status is 130.`;

export const USAGE = `Usage: portolan check SITE.yaml [--from HOST | --as PRODUCT:ROLE] [--to HOST] [--port PORTS]
                      [--format table|json|junit] [-o FILE] [--output-dir DIR] [--secret S]
                      [--timeout MS] [--concurrency N] [--retry-budget MS] [--workers N]
                      [--max-probes N] [--max-addresses N] [--max-rate N]

Probes every flow of the plan that starts at this host, and only those: the plan is the scope.
This host is found from its interface addresses, or named with --from or --as.

  --from HOST        the inventory host this machine is
  --as PRODUCT:ROLE  probe the flows of every host with this role, from here
  --to HOST          only the flows to this host (name or address); refused if the plan has none
  --port PORTS       only these ports, e.g. 443,2500-2510; refused if no selected flow names them
  --secret S         the secret of portolan listen on the targets (or env PORTOLAN_SECRET):
                     responders that answer it are reported "ok (responder)"
${OUTPUT_HELP}
${INVENTORY_HELP}

${INTERRUPT_HELP}

Exit status: 0 when no flow failed, 1 when some flow failed, 2 on bad input, 130 on Ctrl-C.

${COMMON_HELP}`;

type Values = {
  format?: string | undefined;
  output?: string | undefined;
  'output-dir'?: string | undefined;
  secret?: string | undefined;
  timeout?: string | undefined;
  concurrency?: string | undefined;
  'retry-budget'?: string | undefined;
  workers?: string | undefined;
  'max-probes'?: string | undefined;
  'max-addresses'?: string | undefined;
  'max-rate'?: string | undefined;
  'no-color'?: boolean | undefined;
};

function render(
  report: CheckReport,
  format: CheckFormat,
  color: boolean,
  title?: string,
  columns?: number,
): string {
  switch (format) {
    case 'json':
      return checkJson(report);
    case 'junit':
      return checkJunit(report);
    default:
      return checkTable(sanitizeDeep(report), {
        color,
        ...(title ? { title } : {}),
        ...(columns ? { columns } : {}),
      });
  }
}

/**
 * The connect rate cap from --max-rate, else env PORTOLAN_MAX_RATE, else DEFAULT_MAX_RATE:
 * connects per second, 0 for none. A value that is not a whole number from 0 to 1000000 is a
 * UsageError naming where it came from.
 */
export function maxRateFrom(flag: string | undefined, env: string | undefined): number {
  const [text, where] =
    flag !== undefined
      ? [flag, '--max-rate']
      : env !== undefined && env !== ''
        ? [env, 'PORTOLAN_MAX_RATE']
        : [];
  if (text === undefined) return DEFAULT_MAX_RATE;
  if (!/^\d+$/.test(text.trim()) || Number(text) > 1_000_000)
    throw new UsageError(
      `${where} ${quote(text)} is not a rate (expected connects per second, a whole number from 0 to 1000000; 0 for no cap)`,
    );
  return Number(text);
}

/**
 * The numeric options of check and probe, parsed and range-checked (a UsageError, exit 2, names the
 * option): called before the inventory is read or this machine's host is looked up, so a bad value
 * is the error the user sees, not a later one it would hide.
 */
export function numericOptions(values: Values) {
  return {
    timeoutMs: positiveInt(values.timeout, '--timeout', 600_000),
    concurrency: positiveInt(values.concurrency, '--concurrency', 60_000),
    retryBudgetMs: positiveInt(values['retry-budget'], '--retry-budget', 3_600_000),
    workers: positiveInt(values.workers, '--workers', 64),
    maxProbes: positiveInt(values['max-probes'], '--max-probes', 1_000_000_000),
    maxAddresses: positiveInt(values['max-addresses'], '--max-addresses', 1_000_000),
    maxRate: maxRateFrom(values['max-rate'], process.env.PORTOLAN_MAX_RATE),
  };
}

/**
 * Runs the check of a selection, shows it on stdout in --format, writes -o / --output-dir, and
 * on SIGINT prints and writes what was decided, marked interrupted, and exits 130.
 */
export async function runAndReport(
  scope: Scope,
  selection: Selection,
  values: Values,
  opts: { title?: string; command?: 'check' | 'probe' } = {},
): Promise<number> {
  const format = oneOf(values.format, CHECK_FORMATS, '--format') ?? (process.stdout.isTTY ? 'table' : 'json');
  const { timeoutMs, concurrency, retryBudgetMs, workers, maxProbes, maxAddresses, maxRate } =
    numericOptions(values);
  const secret = values.secret ?? process.env.PORTOLAN_SECRET;
  if (secret === '') throw new UsageError('the secret is empty (--secret or PORTOLAN_SECRET)');
  const fileFormat: CheckFormat = format === 'junit' ? 'junit' : 'json';
  const color = !values['no-color'] && colorEnabled();
  // Output paths are checked before the first probe, not after a long check.
  if (values.output !== undefined) checkOutputFile(values.output);
  const dir = values['output-dir'];
  if (dir !== undefined) checkOutputDir(dir, '--output-dir');
  const emit = (report: CheckReport) => {
    if (values.output !== undefined) writeOutputFile(values.output, render(report, fileFormat, false));
    if (dir !== undefined) {
      makeOutputDir(dir);
      writeOutputFile(join(dir, 'check.json'), checkJson(report), '--output-dir');
      writeOutputFile(join(dir, 'check.xml'), checkJunit(report), '--output-dir');
      writeOutputFile(join(dir, 'check.txt'), render(report, 'table', false, opts.title), '--output-dir');
    }
    return render(
      report,
      format,
      color,
      opts.title,
      process.stdout.isTTY ? process.stdout.columns : undefined,
    );
  };

  const options: CheckOptions = {
    ...(secret !== undefined ? { secret } : {}),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    ...(concurrency !== undefined ? { concurrency } : {}),
    ...(retryBudgetMs !== undefined ? { retryBudgetMs } : {}),
    ...(maxProbes !== undefined ? { maxProbes } : {}),
    ...(maxAddresses !== undefined ? { maxAddresses } : {}),
    ...(maxRate ? { maxRate } : {}),
  };
  const bar = new ProgressBar(process.stderr, { attempts: DEFAULTS.attempts });
  let take: (() => CheckReport) | undefined;
  const onSigint = () => {
    bar.clear();
    if (!take) process.exit(130);
    const text = emit(take());
    process.stdout.write(text, () => process.exit(130));
  };
  process.once('SIGINT', onSigint);
  // runCheck starts its threads once it knows the check needs them.
  const pool = SweepPool.auto(workers);
  try {
    const report = await runCheck(
      scope,
      {
        ...options,
        pool,
        onPlanned: (p) => {
          // Said on a line of its own, above the progress bar.
          bar.clear();
          process.stderr.write(`portolan ${opts.command ?? 'check'}: ${plannedText(p, options.maxProbes)}\n`);
        },
        onProgress: (p) => bar.update(p),
        onSnapshot: (t) => {
          take = t;
        },
      },
      selection,
    );
    bar.clear();
    process.stdout.write(emit(report));
    return report.failed ? 1 : 0;
  } finally {
    process.removeListener('SIGINT', onSigint);
    bar.clear();
    await pool.close();
  }
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      from: { type: 'string' },
      as: { type: 'string' },
      to: { type: 'string' },
      port: { type: 'string' },
      ...outputOptions,
      ...INVENTORY_OPTIONS,
    },
    USAGE,
  );
  if (values.help) {
    writeHelp(USAGE);
    return 0;
  }
  const file = exactlyOne(positionals, 'inventory file', USAGE);
  oneOf(values.format, CHECK_FORMATS, '--format');
  numericOptions(values);
  const ports: PortRange[] | undefined =
    values.port === undefined ? undefined : parsePorts(values.port, '--port');
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
  writeLines(
    process.stderr,
    scope.warnings.map((w) => `portolan check: warning: ${w}`),
  );
  return runAndReport(scope, selection, values);
}
