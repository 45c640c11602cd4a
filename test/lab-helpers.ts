import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labKey, NAME_PREFIX } from '../src/lab/names.js';
import { labUnavailable } from './check-lab.js';
import { BIN, type CliResult, collect, ROOT } from './helpers.js';

/**
 * Helpers for `portolan lab` tests. Each test file gets its own state directory
 * (PORTOLAN_LAB_DIR): lab namespace names hash that directory with the lab name, so files running
 * in parallel, and other runs on the machine, never share a namespace, and `down --all` in one file
 * only sees that file's labs.
 */

export const skipLab = labUnavailable(['iptables-nft-restore', 'ss']);

export interface LabDir {
  root: string;
  env: Record<string, string>;
  /** A lab name unique to this process. */
  name(tag: string): string;
  cleanup(): void;
}

export function labDir(): LabDir {
  const root = mkdtempSync(join(tmpdir(), 'portolan-lab-'));
  return {
    root,
    env: { PORTOLAN_LAB_DIR: root },
    name: (tag) => `t${process.pid}-${tag}`,
    cleanup() {
      // Anything a failed test left: down --all removes exactly what the state files list.
      if (existsSync(root))
        spawnSync(process.execPath, [BIN, 'lab', 'down', '--all'], {
          env: { ...process.env, PORTOLAN_LAB_DIR: root },
        });
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** Runs the CLI (asynchronously, so a test can kill it), with a generous timeout. */
export function lab(
  args: readonly string[],
  env: Record<string, string>,
  opts: { timeoutMs?: number; onSpawn?: (pid: number) => void } = {},
): Promise<CliResult> {
  return collect(process.execPath, [BIN, 'lab', ...args], {
    cwd: ROOT,
    env: { ...process.env, NO_COLOR: '1', ...env },
    timeoutMs: opts.timeoutMs ?? 900_000,
    ...(opts.onSpawn ? { onSpawn: opts.onSpawn } : {}),
  });
}

export interface LabStateFile {
  name: string;
  hub: string;
  dir: string;
  secret: string;
  hosts: {
    name: string;
    ns: string;
    addresses: string[];
    inventoryAddress: string;
    responder?: { pid?: number };
  }[];
  objects: { netns: string[]; links: string[]; etcDirs: string[]; pids: number[] };
}

export function readLabState(root: string, name: string): LabStateFile {
  return JSON.parse(readFileSync(join(root, `${name}.json`), 'utf8')) as LabStateFile;
}

/** What a lab must leave as it found it: the root namespace's links and nftables ruleset. */
export interface Snapshot {
  links: string;
  nft: string;
}

export function snapshot(): Snapshot {
  const links = (spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout ?? '')
    .split('\n')
    .map((l) => l.split(':')[1]?.trim() ?? '')
    .filter(Boolean)
    .sort()
    .join('\n');
  const nft = spawnSync('nft', ['list', 'ruleset'], { encoding: 'utf8' }).stdout ?? '';
  return { links, nft };
}

/**
 * The network namespaces on this machine; given a lab (its state directory and name), only those
 * that lab's names can take (`pl` + its key), so labs of test files running alongside are not counted.
 */
export function namespaces(lab?: { root: string; name: string }): Set<string> {
  const out = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  const prefix = lab ? `${NAME_PREFIX}${labKey(lab.root, lab.name)}` : '';
  return new Set(
    out
      .split('\n')
      .map((l) => l.split(/\s/)[0] ?? '')
      .filter((n) => n !== '' && n.startsWith(prefix)),
  );
}

/** Running: a zombie (killed, not yet reaped by its parent) counts as gone. */
export function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) [ZX]/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Lab verify --format json, as the tests read it. */
export interface VerifyJson {
  failed: boolean;
  flows: {
    id: string;
    from: string;
    to: string;
    protocol: string;
    ports: [number, number][];
    verdict: string;
    failed: boolean;
    local: boolean;
    expectedFailure?: string;
    results: { address: string; ports: [number, number]; verdict: string }[];
  }[];
  unplanned: { from: string; to: string; protocol: string; port: number; result: string; detail: string }[];
  notProbed: { id: string }[];
  errors: string[];
}
