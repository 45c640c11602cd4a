import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { packagePath } from '../util/paths.js';
import { LabError } from './state.js';

/** Thin wrappers over iproute2 and the firewall tools, each failure naming the command and its error. */

/** CAP_NET_ADMIN is bit 12 of the capability sets (linux/capability.h). */
const CAP_NET_ADMIN = 12n;

/** Refuses, with one line, to go on without root or CAP_NET_ADMIN (and CAP_SYS_ADMIN for `ip netns`). */
export function requireNetAdmin(): void {
  if (process.platform !== 'linux') throw new LabError('portolan lab needs Linux (network namespaces)');
  let eff = 0n;
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    eff = BigInt(`0x${m?.[1] ?? '0'}`);
  } catch {
    eff = 0n;
  }
  if (process.getuid?.() !== 0 && !((eff >> CAP_NET_ADMIN) & 1n))
    throw new LabError(
      'portolan lab needs root or CAP_NET_ADMIN to make network namespaces, veths and firewall rules: run it with sudo',
    );
  const missing = ['ip', 'nft'].filter((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status !== 0);
  if (missing.length)
    throw new LabError(
      `portolan lab needs ${missing.join(' and ')} (Debian: apt-get install iproute2 nftables)`,
    );
}

/** Runs a command; throws a LabError with its stderr when it fails. */
export function run(cmd: string, args: readonly string[], input?: string): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input, maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw new LabError(`${cmd} ${args.join(' ')}: ${r.error.message}`, 'EIO', { cause: r.error });
  if (r.status !== 0)
    throw new LabError(
      `${cmd} ${args.join(' ')} failed (exit ${r.status}): ${(r.stderr || r.stdout).trim().split('\n').slice(0, 5).join(' / ')}`,
      'EIO',
    );
  return r.stdout;
}

/** Runs a command and ignores its failure (removal of something that may already be gone). */
export function tryRun(cmd: string, args: readonly string[]): boolean {
  return spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
}

export function ip(...args: string[]): string {
  return run('ip', args);
}

/** Runs a command inside a namespace. */
export function inNs(ns: string, cmd: string, args: readonly string[], input?: string): string {
  return run('ip', ['netns', 'exec', ns, cmd, ...args], input);
}

export function netnsList(): string[] {
  const out = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  return out
    .split('\n')
    .map((l) => l.split(/\s/)[0] ?? '')
    .filter(Boolean);
}

export function netnsPids(ns: string): number[] {
  const out = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout ?? '';
  return out
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 1);
}

/** The CLI entry, run by node inside namespaces. */
export const CLI = packagePath('bin', 'portolan.js');

export interface Output {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `portolan ARGS` inside a namespace and collects its output. */
export function cliInNs(
  ns: string,
  args: readonly string[],
  opts: { input?: string; env?: Record<string, string> } = {},
): Promise<Output> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, CLI, ...args], {
      env: { ...process.env, NO_COLOR: '1', ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin?.end(opts.input ?? '');
  });
}
