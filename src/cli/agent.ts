import { homedir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent } from '../agent/agent.js';
import { PortolanError, quote, UsageError } from '../errors.js';
import { DEFAULTS } from '../probe/engine.js';
import { parseDuration } from '../server/duration.js';
import { counted } from '../util/plural.js';
import { MAX_PEM_BYTES, MAX_TOKEN_BYTES, readBounded } from '../util/read.js';
import { writeHelp } from '../util/wrap.js';
import { COMMON_HELP, forUsage, parse, positiveInt } from './args.js';

/** `agent --once` exit code: the server was never reached, so nothing was reported (results are spooled). */
export const EXIT_UNREPORTED = 3;

const USAGE = `Usage: portolan agent --server URL --token T [--ca FILE] [--interval 5m] [--once] [--spool DIR]
                      [--token-file F] [--secret S] [--timeout MS]

Checks the flows that start at this agent's host (the host it was enrolled for) every interval,
with the same probes as "portolan check", and posts the results to "portolan serve". Results are
spooled to disk first and sent with an idempotency key: none is lost or counted twice when the
server is away.

  --server URL      the serve URL, e.g. http://10.0.0.5:7300 or https://console.example:7300
  --ca FILE         PEM certificate(s) the https server's certificate must chain to (a private CA
                    or the server's own self-signed certificate), instead of the system's CAs
  --token T         the agent token from enrolment (or env PORTOLAN_AGENT_TOKEN, or --token-file F)
  --token-file F    read the token from file F (kept out of the process list and shell history)
  --interval DUR    time between checks (default 5m)
  --once            check once, send, and exit: 0 when every run was sent, 1 when the server
                    answered but results stay spooled or no plan came (refused), 2 when it refused
                    the token or --server is not portolan serve's API, 3 when the server could not
                    be reached at all (results spooled, sent by the next run)
  --spool DIR       where unsent results wait (default ~/.local/state/portolan/agent)
  --secret S        the secret of portolan listen on the targets (or env PORTOLAN_SECRET)
  --timeout MS      per-attempt probe timeout, as check's (default ${DEFAULTS.timeoutMs})

${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    {
      server: { type: 'string' },
      ca: { type: 'string' },
      token: { type: 'string' },
      'token-file': { type: 'string' },
      interval: { type: 'string' },
      once: { type: 'boolean' },
      spool: { type: 'string' },
      secret: { type: 'string' },
      timeout: { type: 'string' },
    },
    USAGE,
  );
  if (values.help) {
    writeHelp(USAGE);
    return 0;
  }
  if (values.server === undefined) throw new UsageError(`--server URL is required\n${forUsage(USAGE)}`);
  let server: URL;
  try {
    server = new URL(values.server);
    if (server.protocol !== 'http:' && server.protocol !== 'https:') throw new Error('scheme');
  } catch {
    throw new UsageError(`--server ${quote(values.server)}: expected an http:// or https:// URL`);
  }
  // Files are read bounded: /dev/zero or an endless pipe named here would be read forever.
  const readOption = (flag: string, file: string, limit: number) => {
    try {
      return readBounded(file, limit, `${flag} file`);
    } catch (err) {
      if (err instanceof PortolanError) throw new UsageError(`${flag} ${err.message}`);
      throw err;
    }
  };
  const token =
    values.token ??
    (values['token-file'] !== undefined
      ? readOption('--token-file', values['token-file'], MAX_TOKEN_BYTES).toString('utf8').trim()
      : undefined) ??
    process.env.PORTOLAN_AGENT_TOKEN;
  if (!token)
    throw new UsageError(
      `--token T is required (or --token-file F, or env PORTOLAN_AGENT_TOKEN)\n${forUsage(USAGE)}`,
    );
  // It goes into an Authorization header: a control character or a space there failed every request
  // as "server unreachable", spooling runs forever.
  if (!/^[\x21-\x7e]+$/.test(token))
    throw new UsageError(
      `the agent token (--token, --token-file or PORTOLAN_AGENT_TOKEN) holds ${/[\s]/.test(token) ? 'white space' : 'a character that is not printable ASCII'} (expected the token POST /api/agents returned, such as pta_...)`,
    );
  let ca: Buffer | undefined;
  if (values.ca !== undefined) {
    if (server.protocol !== 'https:')
      throw new UsageError(`--ca ${values.ca}: the server URL ${server.href} is not https://`);
    ca = readOption('--ca', values.ca, MAX_PEM_BYTES);
    if (!ca.toString('latin1').includes('-----BEGIN CERTIFICATE-----'))
      throw new UsageError(`--ca ${values.ca}: expected PEM certificates (-----BEGIN CERTIFICATE-----)`);
  }
  const intervalMs = parseDuration(values.interval ?? '5m', '--interval');
  // Plain decimal digits only (positiveInt): Number() took 0x10, 1e3 and " 500".
  const timeoutMs = positiveInt(values.timeout, '--timeout', 600_000);
  const secret = values.secret ?? process.env.PORTOLAN_SECRET;
  const spool =
    values.spool ??
    join(process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'portolan', 'agent');
  let agent: Agent;
  try {
    agent = new Agent({
      server: server.href,
      token,
      spool,
      ...(ca ? { ca } : {}),
      catalogs: values.catalog ?? [],
      check: { ...(secret ? { secret } : {}), ...(timeoutMs !== undefined ? { timeoutMs } : {}) },
      log: (line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`),
    });
  } catch (err) {
    // The spool's directories are made at start: a path that cannot hold them is bad input, not a crash.
    const e = err as NodeJS.ErrnoException;
    if (typeof e?.code !== 'string' || e.syscall !== 'mkdir') throw err;
    throw new UsageError(
      `--spool ${quote(spool)}: cannot make ${e.path ?? 'its directories'} (${e.code}; expected a directory this user can write, or a new name for one)`,
    );
  }
  if (values.once) {
    const r = await agent.cycle();
    if (!r.reached) {
      process.stderr.write(
        `${new Date().toISOString()} server unreachable: ${counted(r.results, 'result')} spooled in ${r.spool}, will resend\n`,
      );
      return EXIT_UNREPORTED;
    }
    // Answered, yet nothing checked (no plan) or not everything sent: the server refused something.
    return r.pending || r.key === null ? 1 : 0;
  }
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  process.once('SIGTERM', () => stop.abort());
  // Between checks: a heartbeat and a resend of spooled runs at least every 30 s.
  const step = Math.min(intervalMs, 30_000);
  while (!stop.signal.aborted) {
    const started = Date.now();
    await agent.cycle();
    while (!stop.signal.aborted && Date.now() - started < intervalMs) {
      try {
        await sleep(Math.min(step, intervalMs - (Date.now() - started)), undefined, { signal: stop.signal });
      } catch {
        break;
      }
      if (Date.now() - started >= intervalMs) break;
      if (await agent.heartbeat()) await agent.flush();
    }
  }
  return 0;
}
