import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { type AddressInfo, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

/** The repository root (tests run from dist/test/). */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = `${ROOT}bin/portolan.js`;

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The environment a CLI run gets: this process's, with no colour, no connect-rate cap (tests probe
 * only loopback and their own namespaces; --max-rate overrides) and no COLUMNS inherited from the
 * shell that started the suite (output widths are the test's to choose), then `extra`.
 */
export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const { COLUMNS: _columns, ...env } = process.env;
  return { ...env, NO_COLOR: '1', PORTOLAN_MAX_RATE: '0', ...extra };
}

/** Runs the real CLI in a child process, from the repository root, with colour off. */
export function runCli(
  args: readonly string[],
  opts: { env?: Record<string, string>; input?: string } = {},
): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: cliEnv(opts.env),
    input: opts.input ?? '',
    maxBuffer: 64 * 1024 * 1024,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * COMMAND ARGS as a child process, its output collected; resolves when it has exited and its output
 * is read, never rejects. stdin: ignored (EOF) unless 'pipe' (left open). timeoutMs: a hang guard,
 * the child is killed (SIGKILL, code null) after that long. onSpawn gets its pid.
 */
export function collect(
  command: string,
  args: readonly string[],
  opts: {
    cwd?: string;
    env?: NodeJS.ProcessEnv;
    stdin?: 'pipe' | 'ignore';
    timeoutMs?: number;
    onSpawn?: (pid: number) => void;
  } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
      ...(opts.env ? { env: opts.env } : {}),
      stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'],
    });
    if (child.pid) opts.onSpawn?.(child.pid);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer =
      opts.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * runCli without blocking the test's own event loop: for a CLI run that talks to a server or
 * responder the test itself serves in this process.
 */
export function runCliAsync(
  args: readonly string[],
  opts: { env?: Record<string, string> } = {},
): Promise<CliResult> {
  return collect(process.execPath, [BIN, ...args], { cwd: ROOT, env: cliEnv(opts.env), stdin: 'pipe' });
}

/**
 * A loopback address of this test process alone: 127.(100 + pid / 2^16).(pid / 2^8 mod 256).(pid
 * mod 256). Linux routes all of 127.0.0.0/8 to lo with no setup, and pids are unique among running
 * processes (pid_max is at most 2^22), so test files running side by side never share it. A port
 * found free on it stays free until this process binds it: other test files bind 127.0.0.1, other
 * 127.0.0.x or their own address, and a port taken there does not take it here (only a wildcard
 * bind could, and no test binds the wildcard address in the root namespace).
 */
export const OWN_LOOPBACK = `127.${100 + (process.pid >> 16)}.${(process.pid >> 8) & 255}.${process.pid & 255}`;

/**
 * A TCP port nothing listens on at HOST (default OWN_LOOPBACK), for a server the test starts
 * later on that port, or for a port the test needs closed. On 127.0.0.1, which every test file
 * binds, such a port can be taken between this check and its use; on OWN_LOOPBACK it cannot.
 * Where the port need not be known before the server starts, bind port 0 instead.
 */
export function freePort(host = OWN_LOOPBACK): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen({ port: 0, host, exclusive: true }, () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** A `portolan serve` the test started (startServe). */
export interface Served {
  child: ChildProcess;
  /** `http://HOST:PORT` or `https://…` as serve printed it, without the trailing slash. */
  base: string;
  port: number;
  /** Everything serve printed so far (stdout, and stderr unless inherited). */
  log(): string;
}

/**
 * `portolan serve --listen LISTEN --no-examples ARGS` as its own process, from the repository root.
 * Resolves once serve says where it listens (its first line; with LISTEN `HOST:0` the kernel picks
 * the port as serve binds it, so no other process can take it first); rejects with what serve
 * printed if it exits before. The caller stops the child.
 */
export function startServe(
  listen: string,
  args: readonly string[],
  opts: { stderr?: 'pipe' | 'inherit' } = {},
): Promise<Served> {
  const child = spawn(process.execPath, [BIN, 'serve', '--listen', listen, '--no-examples', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', opts.stderr ?? 'pipe'],
  });
  let out = '';
  child.stderr?.on('data', (b) => {
    out += String(b);
  });
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', (b) => {
      out += String(b);
      const m = /^portolan serve: (https?:\/\/(?:\[[^\]]+\]|[^:/]+):(\d+))\//m.exec(out);
      if (m?.[1]) resolve({ child, base: m[1], port: Number(m[2]), log: () => out });
    });
    child.once('exit', (code, signal) =>
      reject(new Error(`serve exited (${code ?? signal}) before it listened: ${out}`)),
    );
  });
}
