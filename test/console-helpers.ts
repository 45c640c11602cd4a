import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, type BrowserContextOptions, chromium, type Page } from 'playwright-core';
import { startServe } from './helpers.js';

/**
 * The web console as the console tests drive it: `portolan serve` as its own process on a fresh
 * SQLite store, and Debian's Chromium, headless, through playwright-core.
 */

export const CHROMIUM = '/usr/bin/chromium';

/**
 * How long one wait for the page may take (a render, a row appearing). A hang guard, not a measure:
 * Chromium and serve beside a loaded suite on two cores can take many times their idle 100 ms, and
 * the test's own timeout still bounds the whole run.
 */
export const ACTION_TIMEOUT_MS = 120_000;

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
  /**
   * A page in a new browser context (OPTIONS as Browser.newContext), whose waits give up after
   * ACTION_TIMEOUT_MS rather than Playwright's 30 s.
   */
  newPage(options?: BrowserContextOptions): Promise<Page>;
  /** A JSON API call with a bearer token (the admin's unless given); the parsed body, any status. */
  api(method: string, path: string, body?: unknown, token?: string): Promise<Record<string, unknown>>;
  /** Pastes the admin token into the console on PAGE and waits for the sites page. */
  signIn(page: Page): Promise<void>;
  /** Closes the browser, stops the server (waiting for it to exit) and removes `dir`. */
  close(): Promise<void>;
}

/**
 * Starts serve on 127.0.0.1, port 0 (startServe: the port is the one serve bound, never one found
 * free earlier, which another test file could take meanwhile), and Chromium. Rejects, with what
 * serve printed, if serve exits before it listens. PREFIX names the temporary directory; ARGS are
 * more serve flags (e.g. `--stale-after 3s`).
 */
export async function startConsole(prefix: string, args: readonly string[] = []): Promise<ConsoleRun> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const tokenFile = join(dir, 'admin');
  const served = startServe(
    '127.0.0.1:0',
    ['--db', join(dir, 'store.db'), '--token-file', tokenFile, ...args],
    {
      stderr: 'inherit',
    },
  );
  let server: ChildProcess | undefined;
  let browser: Browser | undefined;
  const close = async () => {
    await browser?.close();
    if (server && server.exitCode === null && server.signalCode === null) {
      const gone = new Promise((r) => server?.once('exit', r));
      server.kill('SIGTERM');
      await gone;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const { child, base } = await served;
    server = child;
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
      async newPage(options) {
        const context = await (browser as Browser).newContext(options);
        context.setDefaultTimeout(ACTION_TIMEOUT_MS);
        return context.newPage();
      },
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
