import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { BIN } from './helpers.js';

/**
 * The web console as the console tests drive it: `portolan serve` as its own process on a fresh
 * SQLite store, and Debian's Chromium, headless, through playwright-core.
 */

export const CHROMIUM = '/usr/bin/chromium';

/** Why the console tests cannot run here, or false. */
export const skipConsole: string | false = existsSync(CHROMIUM) ? false : 'Debian chromium not installed';

export interface ConsoleRun {
  /** The server's base URL, `http://127.0.0.1:PORT` (no trailing slash). */
  base: string;
  /** The temporary directory holding the store and the admin token file; removed by close(). */
  dir: string;
  /** The admin token serve wrote to its --token-file. */
  admin: string;
  browser: Browser;
  /** A JSON API call with a bearer token (the admin's unless given); the parsed body, any status. */
  api(method: string, path: string, body?: unknown, token?: string): Promise<Record<string, unknown>>;
  /** Pastes the admin token into the console on PAGE and waits for the sites page. */
  signIn(page: Page): Promise<void>;
  /** Closes the browser, stops the server (waiting for it to exit) and removes `dir`. */
  close(): Promise<void>;
}

/**
 * Starts serve (`--listen 127.0.0.1:0`: the kernel picks the port as it binds, so no other test
 * can take it first; the port is read from serve's first line) and Chromium. Rejects, with what
 * serve printed, if serve exits before it listens. PREFIX names the temporary directory.
 */
export async function startConsole(prefix: string): Promise<ConsoleRun> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const tokenFile = join(dir, 'admin');
  const server = spawn(
    process.execPath,
    [
      BIN,
      'serve',
      '--db',
      join(dir, 'store.db'),
      '--listen',
      '127.0.0.1:0',
      '--no-examples',
      '--token-file',
      tokenFile,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let browser: Browser | undefined;
  const close = async () => {
    await browser?.close();
    if (server.exitCode === null && server.signalCode === null) {
      const gone = new Promise((r) => server.once('exit', r));
      server.kill('SIGTERM');
      await gone;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const base = await new Promise<string>((resolve, reject) => {
      let out = '';
      server.stdout?.on('data', (b) => {
        out += String(b);
        const m = /^portolan serve: (http:\/\/127\.0\.0\.1:\d+)\//m.exec(out);
        if (m?.[1]) resolve(m[1]);
      });
      server.once('exit', (code, signal) =>
        reject(new Error(`serve exited (${code ?? signal}) before it listened: ${out}`)),
      );
    });
    const admin = readFileSync(tokenFile, 'utf8').trim();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
    return {
      base,
      dir,
      admin,
      browser,
      async api(method, path, body, token = admin) {
        const r = await fetch(`${base}${path}`, {
          method,
          headers: {
            authorization: `Bearer ${token}`,
            ...(body ? { 'content-type': 'application/json' } : {}),
          },
          ...(body ? { body: JSON.stringify(body) } : {}),
        });
        return (await r.json()) as Record<string, unknown>;
      },
      async signIn(page) {
        await page.getByLabel('API token').fill(admin);
        await page.getByRole('button', { name: 'Use token' }).click();
        await page.getByRole('heading', { name: 'Sites' }).waitFor();
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
