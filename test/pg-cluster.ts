import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, OWN_LOOPBACK } from './helpers.js';

/**
 * A throwaway PostgreSQL cluster (Debian's server) in a temp directory, listening on this test
 * process's own loopback address (OWN_LOOPBACK), where no other test file can take its port.
 */
export interface PgCluster {
  url: string;
  stop(): void;
}

function pgBin(): string | undefined {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const v = readdirSync(base)
    .filter((d) => existsSync(join(base, d, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a))[0];
  return v ? join(base, v, 'bin') : undefined;
}

/** Why no cluster can be started here, or undefined when one can. */
export function pgUnavailable(): string | undefined {
  if (!pgBin()) return 'PostgreSQL server binaries not installed (Debian package postgresql)';
  if (process.getuid?.() !== 0) return 'needs root to run the server as the postgres user';
  if (spawnSync('id', ['postgres']).status !== 0) return 'no postgres user';
  return undefined;
}

/** initdb + pg_ctl start as the postgres user; trust auth, on loopback only. Call stop() after. */
export async function startPg(): Promise<PgCluster> {
  const bin = pgBin() as string;
  const dir = mkdtempSync(join(tmpdir(), 'ptpg-'));
  chmodSync(dir, 0o777);
  const data = join(dir, 'data');
  const port = await freePort();
  const as = (cmd: string, args: string[]) =>
    execFileSync('runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args], { stdio: 'pipe', cwd: dir });
  as('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  as('pg_ctl', [
    '-D',
    data,
    '-l',
    join(dir, 'log'),
    '-w',
    '-t',
    '120',
    '-o',
    `-p ${port} -k ${dir} -c listen_addresses=${OWN_LOOPBACK} -c fsync=off -c max_connections=200`,
    'start',
  ]);
  return {
    url: `postgres://postgres@${OWN_LOOPBACK}:${port}/postgres`,
    stop() {
      try {
        as('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
