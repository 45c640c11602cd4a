import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import { loadCatalogs } from '../catalog/load.js';
import { PortolanError, quote, UsageError } from '../errors.js';
import { buildApp, WEB_DIR } from '../server/app.js';
import { openDb, parseDbTarget } from '../server/db.js';
import { parseDuration } from '../server/duration.js';
import { Store } from '../server/store.js';
import { deliver, WebhookPolicy } from '../server/webhooks.js';
import { writeFileAtomic } from '../util/atomic.js';
import { packagePath } from '../util/paths.js';
import { MAX_PEM_BYTES, readBounded } from '../util/read.js';
import { version } from '../util/version.js';
import { writeHelp } from '../util/wrap.js';
import { COMMON_HELP, parse } from './args.js';
import { checkOutputFile } from './output.js';

const USAGE = `Usage: portolan serve [--db FILE | --db postgres://...] [--listen HOST:PORT] [--tls-cert F --tls-key F]
                      [--token-file F] [--new-admin-token] [--no-examples] [--stale-after DUR] [--retention DUR]
                      [--body-limit BYTES] [--webhook-allow CIDR]...

The console and API. With no options: a SQLite store under ~/.local/share/portolan, the example
sites loaded on first start, listening on 127.0.0.1:7300.

  --db FILE|URL        SQLite file (WAL) or a postgres:// URL shared by several serve processes
  --listen HOST:PORT   where to listen (default 127.0.0.1:7300; anything else is your choice)
  --tls-cert F --tls-key F  serve HTTPS with this PEM certificate and key
  --token-file F       where a new admin token is written (default: beside the SQLite file, or
                       ~/.local/share/portolan/admin-token)
  --new-admin-token    replace the admin token (the old one stops working)
  --no-examples        do not load examples/*.yaml into an empty store
  --stale-after DUR    mark an agent stale after this long without a heartbeat (default 15m)
  --retention DUR      delete results and events older than this (default: keep everything)
  --body-limit BYTES   largest request body (default 4194304)
  --webhook-allow CIDR
                       let webhooks reach these addresses (repeatable): by default a webhook may
                       not reach loopback, unspecified, link-local (169.254.0.0/16, fe80::/10,
                       where cloud metadata answers), metadata, multicast or reserved addresses

${COMMON_HELP}`;

function dataDir(): string {
  return join(process.env.XDG_DATA_HOME || join(homedir(), '.local', 'share'), 'portolan');
}

function listenOf(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+(?:%[\w.-]+)?)\]|([\w.-]+)):(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (!m || port > 65535) {
    const v6 = /^([0-9A-Fa-f]*:[0-9A-Fa-f:.]*):(\d{1,5})$/.exec(text);
    const hint = v6 ? `; an IPv6 address goes in brackets: [${v6[1]}]:${v6[2]}` : '';
    throw new UsageError(
      `--listen ${quote(text)}: expected HOST:PORT with a port from 0 to 65535, e.g. 127.0.0.1:7300${hint}`,
    );
  }
  return { host: (m[1] ?? m[2]) as string, port };
}

/**
 * Binds HOST:PORT for a moment and lets go, so that a port in use or an address not on this machine
 * is said before the store is opened, a token written or the examples loaded. Throws a UsageError
 * (exit 2) naming --listen, what failed (the errno of bind(2)/getaddrinfo(3)) and what to do.
 */
async function assertCanListen(text: string, host: string, port: number): Promise<void> {
  const why: Record<string, string> = {
    EADDRINUSE: 'the port is in use by another process (stop it, or pick another port)',
    EADDRNOTAVAIL: 'the address is not on this machine (expected one of its addresses, 0.0.0.0 or ::)',
    EACCES: 'ports below 1024 need root or CAP_NET_BIND_SERVICE (pick a port from 1024)',
    ENOTFOUND: 'the host name does not resolve (expected an address of this machine or a name for one)',
    EAI_AGAIN: 'the host name could not be resolved now (expected an address of this machine)',
  };
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, exclusive: true }, () => resolve());
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    throw new UsageError(`--listen ${quote(text)}: cannot listen there: ${why[code] ?? code}`);
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/**
 * Writes the admin token to `file` with mode 0600 from the file's creation (writeFileAtomic), replacing
 * only a token file an earlier serve wrote (one line `ptadm_...`): --token-file naming the store, a TLS
 * key or any other file, a symbolic link or a FIFO is refused, never replaced or written through.
 * Errors: that refusal, or the system's (ENOSPC, EACCES).
 */
function writeSecret(file: string, text: string): void {
  const problem = notATokenFile(file);
  if (problem) throw new Error(problem);
  writeFileAtomic(file, `${text}\n`, { mode: 0o600, follow: false });
}

/**
 * Why the admin token may not be written to `file`, or undefined when it may: it is one of `others`
 * (the store, the TLS files: `[flag, path]`), or something other than a token file an earlier serve
 * wrote (a symbolic link, a FIFO, a file holding anything else). Asked before the store is opened,
 * so a refused name leaves no admin token behind that nobody holds, and again when writing.
 */
function notATokenFile(
  file: string,
  others: readonly (readonly [string, string | undefined])[] = [],
): string | undefined {
  const named = others.find(([, path]) => path !== undefined && resolve(path) === resolve(file));
  if (named) return `it is the ${named[0]} file (expected another name for the admin token)`;
  let st: ReturnType<typeof lstatSync> | undefined;
  try {
    st = lstatSync(file);
  } catch {
    return undefined;
  }
  if (st.isFile() && st.size <= 1024 && /^ptadm_\S+\n?$/.test(readFileSync(file, 'latin1'))) return undefined;
  return `it is not a token file (${st.isSymbolicLink() ? 'a symbolic link' : st.isFile() ? 'it holds something else' : 'not a regular file'}); expected a new name, or the file an earlier serve wrote the token to`;
}

/** Reads the PEM certificate and key and checks they make a TLS context (the key matches the certificate). */
function tlsFiles(certFile: string, keyFile: string): { cert: Buffer; key: Buffer } {
  // Bounded: /dev/zero or an endless pipe named here once kept the server from starting, reading forever.
  const read = (flag: string, file: string) => {
    try {
      return readBounded(file, MAX_PEM_BYTES, `${flag} file`);
    } catch (err) {
      if (err instanceof PortolanError) throw new UsageError(`${flag} ${err.message}`);
      throw err;
    }
  };
  const cert = read('--tls-cert', certFile);
  const key = read('--tls-key', keyFile);
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new UsageError(
      `--tls-cert ${certFile} --tls-key ${keyFile}: not a PEM certificate and its private key (${(err as Error).message})`,
    );
  }
  return { cert, key };
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    {
      db: { type: 'string' },
      listen: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'token-file': { type: 'string' },
      'new-admin-token': { type: 'boolean' },
      'no-examples': { type: 'boolean' },
      'stale-after': { type: 'string' },
      retention: { type: 'string' },
      'body-limit': { type: 'string' },
      'webhook-allow': { type: 'string', multiple: true },
    },
    USAGE,
  );
  if (values.help) {
    writeHelp(USAGE);
    return 0;
  }
  const target = parseDbTarget(values.db ?? join(dataDir(), 'portolan.db'));
  // A store the user names is a file in a directory that exists, as for every -o FILE; only the
  // default location's directory is created.
  if (values.db !== undefined && target.kind === 'sqlite' && target.file !== ':memory:')
    checkOutputFile(target.file, '--db');
  const { host, port } = listenOf(values.listen ?? '127.0.0.1:7300');
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined))
    throw new UsageError('give both --tls-cert and --tls-key, or neither');
  const staleMs = parseDuration(values['stale-after'] ?? '15m', '--stale-after');
  const retentionMs =
    values.retention === undefined ? undefined : parseDuration(values.retention, '--retention');
  // Plain decimal digits only: Number() would take 0x400, 1e4 and " 2048".
  const bodyText = values['body-limit'];
  const bodyLimit =
    bodyText === undefined ? undefined : /^[0-9]{1,10}$/.test(bodyText) ? Number(bodyText) : Number.NaN;
  if (bodyLimit !== undefined && !(bodyLimit >= 1024 && bodyLimit <= 2 ** 31 - 1))
    throw new UsageError(
      `--body-limit ${quote(bodyText)}: expected a whole number of bytes in decimal digits, from 1024 to 2147483647`,
    );
  let webhooks: WebhookPolicy;
  try {
    webhooks = new WebhookPolicy(values['webhook-allow'] ?? []);
  } catch (err) {
    throw new UsageError(`--webhook-allow ${(err as Error).message}`);
  }
  const tokenFile =
    values['token-file'] ??
    (target.kind === 'sqlite' ? join(dirname(target.file), 'admin-token') : join(dataDir(), 'admin-token'));

  const tls =
    values['tls-cert'] !== undefined && values['tls-key'] !== undefined
      ? tlsFiles(values['tls-cert'], values['tls-key'])
      : undefined;

  const tokenProblem = notATokenFile(tokenFile, [
    ['--db', target.kind === 'sqlite' ? target.file : undefined],
    ['--tls-cert', values['tls-cert']],
    ['--tls-key', values['tls-key']],
  ]);
  if (tokenProblem)
    throw new UsageError(
      `${values['token-file'] === undefined ? 'the admin token file' : '--token-file'} ${tokenFile}: ${tokenProblem}`,
    );

  // Extra catalogs are read now: a broken one is said at start, not in every upload's error.
  loadCatalogs(values.catalog ?? []);
  await assertCanListen(values.listen ?? '127.0.0.1:7300', host, port);
  const db = await openDb(target);
  const store = new Store(db, values.catalog ?? []);
  let tokenNote: string;
  if (values['new-admin-token'] || !(await store.hasAdmin())) {
    const token = values['new-admin-token'] ? await store.rotateAdmin() : await store.createToken('admin');
    try {
      writeSecret(tokenFile, token);
    } catch (err) {
      throw new PortolanError(
        `cannot write the admin token to ${tokenFile}: ${(err as Error).message}`,
        'EIO',
        { cause: err },
      );
    }
    tokenNote = `admin token: written to ${tokenFile}`;
  } else {
    tokenNote = existsSync(tokenFile)
      ? `admin token: in ${tokenFile}`
      : `admin token: made earlier (not in ${tokenFile}); run with --new-admin-token for a new one`;
  }

  if (!values['no-examples'] && !(await store.listSites()).length) {
    const dir = packagePath('examples');
    const loaded: string[] = [];
    for (const f of readdirSync(dir)
      .filter((n) => n.endsWith('.yaml'))
      .sort()) {
      const r = await store.putSite(readFileSync(join(dir, f), 'utf8'));
      loaded.push(`${r.site} (${r.flows} flows)`);
    }
    process.stdout.write(`loaded ${loaded.length} example sites: ${loaded.join(', ')}\n`);
  }

  const app = await buildApp({
    store,
    generatorVersion: version(),
    webDir: WEB_DIR,
    ...(bodyLimit !== undefined ? { bodyLimit } : {}),
    ...(tls ? { https: tls } : {}),
    debug: values.debug === true,
    webhooks,
  });
  try {
    // A fleet's agents may connect all at once: a deeper accept queue than the default 511.
    await app.listen({ host, port, backlog: 4096 });
  } catch (err) {
    await db.destroy();
    const code = (err as NodeJS.ErrnoException).code;
    // The address in use is the usual case (a second serve, another service on 7300): say the way out.
    const hint =
      code === 'EADDRINUSE'
        ? ` (another process listens there; give another with --listen HOST:PORT, e.g. --listen ${host}:${port + 1})`
        : '';
    throw new PortolanError(
      `cannot listen on ${host}:${port}: ${code ?? (err as Error).message}${hint}`,
      'EIO',
      {
        cause: err,
      },
    );
  }
  const shown = host.includes(':') ? `[${host}]` : host;
  // The port bound, which --listen HOST:0 leaves to the system.
  const bound = (app.server.address() as { port?: number } | null)?.port ?? port;
  const where = target.kind === 'sqlite' ? `SQLite ${target.file}` : 'PostgreSQL';
  process.stdout.write(
    `portolan serve: ${tls ? 'https' : 'http'}://${shown}:${bound}/ (store: ${where})\n${tokenNote}\n`,
  );

  // Housekeeping: stale agents, retention. Safe from several processes at once (store.markStale).
  const tick = async () => {
    try {
      const events = await store.markStale(staleMs);
      if (events.length) await deliver(store, events, webhooks);
      if (retentionMs !== undefined) await store.prune(retentionMs);
    } catch (err) {
      process.stderr.write(`portolan serve: housekeeping failed: ${(err as Error).message}\n`);
    }
  };
  // Once at start (a store that was off for a while is pruned at once), then a few times per period.
  await tick();
  const period = Math.min(staleMs, retentionMs ?? Number.POSITIVE_INFINITY);
  const timer = setInterval(tick, Math.min(30_000, Math.max(1000, period / 4)));
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  clearInterval(timer);
  await app.close();
  await db.destroy();
  return 0;
}
