import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { type AppOptions, buildApp } from '../src/server/app.js';
import { type Db, openDb } from '../src/server/db.js';
import { Store } from '../src/server/store.js';
import { pgUnavailable, startPg } from './pg-cluster.js';

/**
 * The serve API in process (Fastify's inject, no socket) on each store backend: SQLite in a temp
 * directory, and PostgreSQL in a throwaway cluster (skipped where none can start).
 */

export type Inject = Awaited<ReturnType<FastifyInstance['inject']>>;

/** One API call: METHOD URL with a bearer TOKEN (none: no Authorization header) and a JSON BODY. */
export function call(
  ctx: { app: FastifyInstance },
  method: string,
  url: string,
  token: string | null,
  body?: unknown,
): Promise<Inject> {
  return ctx.app.inject({
    method: method as 'GET',
    url,
    headers: token ? { authorization: `Bearer ${token}` } : {},
    ...(body !== undefined ? { payload: body as object } : {}),
  });
}

/** A fresh, migrated store; close() releases it and removes what it made. */
export interface OpenedStore {
  db: Db;
  close: () => Promise<void>;
}

/** A store in a new SQLite file, in a temp directory named PREFIX… that close() removes. */
export async function sqliteStore(prefix: string): Promise<OpenedStore> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const db = await openDb({ kind: 'sqlite', file: join(dir, 'store.db') });
  return {
    db,
    close: async () => {
      await db.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A store in a PostgreSQL cluster of its own (startPg), stopped and removed by close(). */
export async function pgStore(): Promise<OpenedStore> {
  const pg = await startPg();
  const db = await openDb({ kind: 'postgres', url: pg.url });
  return {
    db,
    close: async () => {
      await db.destroy();
      pg.stop();
    },
  };
}

/** What the tests of one backend read, once its before() has run. */
export interface ApiCtx {
  app: FastifyInstance;
  db: Db;
  store: Store;
  admin: string;
  viewer: string;
}

/**
 * `describe(TITLE on SQLite)` and `describe(TITLE on PostgreSQL)` (timeout 5 min each), each on a
 * fresh store with an admin and a viewer token, the app built with APP options, and SITES (inventory
 * YAML texts) uploaded in order, each asserted created (201). TESTS declares the tests; the ctx it
 * gets is filled in before they run. PREFIX names the SQLite temp directory.
 */
export function apiSuites(
  title: string,
  opts: { prefix: string; app?: Omit<AppOptions, 'store' | 'generatorVersion'>; sites?: readonly string[] },
  tests: (ctx: ApiCtx) => void,
): void {
  const backends: [string, () => Promise<OpenedStore>, string | undefined][] = [
    ['SQLite', () => sqliteStore(opts.prefix), undefined],
    ['PostgreSQL', pgStore, pgUnavailable()],
  ];
  for (const [name, open, skip] of backends)
    describe(`${title} on ${name}`, { skip: skip ?? false, timeout: 300_000 }, () => {
      const ctx = {} as ApiCtx;
      let close: () => Promise<void> = async () => {};
      before(async () => {
        const o = await open();
        close = o.close;
        ctx.db = o.db;
        ctx.store = new Store(o.db);
        ctx.admin = await ctx.store.createToken('admin');
        ctx.viewer = await ctx.store.createToken('viewer');
        ctx.app = await buildApp({ store: ctx.store, generatorVersion: '0.0.0-test', ...opts.app });
        for (const yaml of opts.sites ?? [])
          assert.equal((await call(ctx, 'POST', '/api/sites', ctx.admin, { yaml })).statusCode, 201);
      });
      after(async () => {
        await ctx.app?.close();
        await close();
      });
      tests(ctx);
    });
}
