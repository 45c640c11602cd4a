import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/server/app.js';
import { type Db, openDb } from '../src/server/db.js';
import { Store } from '../src/server/store.js';
import { ROOT } from './helpers.js';
import { type PgCluster, pgUnavailable, startPg } from './pg-cluster.js';

const LOOPBACK = readFileSync(`${ROOT}examples/lab/loopback.yaml`, 'utf8');
const LOOPBACK_V2 = `${LOOPBACK.trimEnd()}\n  wrk: { address: 127.0.0.4, roles: [veeam-proxmox:worker] }\n`;

interface Ctx {
  app: FastifyInstance;
  db: Db;
  store: Store;
  admin: string;
  viewer: string;
}

type Inject = Awaited<ReturnType<FastifyInstance['inject']>>;

function call(ctx: Ctx, method: string, url: string, token: string | null, body?: unknown): Promise<Inject> {
  return ctx.app.inject({
    method: method as 'GET',
    url,
    headers: token ? { authorization: `Bearer ${token}` } : {},
    ...(body !== undefined ? { payload: body as object } : {}),
  });
}

function suite(name: string, open: () => Promise<{ db: Db; close: () => Promise<void> }>, skip?: string) {
  describe(`serve refusals on ${name}`, { skip: skip ?? false, timeout: 300_000 }, () => {
    const ctx = {} as Ctx;
    let close: () => Promise<void> = async () => {};
    before(async () => {
      const o = await open();
      close = o.close;
      ctx.db = o.db;
      ctx.store = new Store(o.db);
      ctx.admin = await ctx.store.createToken('admin');
      ctx.viewer = await ctx.store.createToken('viewer');
      ctx.app = await buildApp({ store: ctx.store, generatorVersion: '0.0.0-test' });
      assert.equal((await call(ctx, 'POST', '/api/sites', ctx.admin, { yaml: LOOPBACK })).statusCode, 201);
      assert.equal((await call(ctx, 'POST', '/api/sites', ctx.admin, { yaml: LOOPBACK_V2 })).statusCode, 201);
    });
    after(async () => {
      await ctx.app?.close();
      await close();
    });

    test('numbers in paths and query strings are plain decimal integers in range; others are a 400 naming the parameter', async () => {
      const flow = encodeURIComponent('veeam-proxmox vbr/backup-server pve/proxmox-server tcp ssh');
      const routes: [string, string, string][] = [
        ['/api/sites/lab-loopback/diff?from=1&to=', '2', 'querystring/to'],
        ['/api/sites/lab-loopback/diff?to=2&from=', '1', 'querystring/from'],
        ['/api/sites/lab-loopback/delta/csv?from=1&to=', '2', 'querystring/to'],
        [`/api/sites/lab-loopback/flows/${flow}/history?limit=`, '5', 'querystring/limit'],
        ['/api/events?limit=', '5', 'querystring/limit'],
        ['/api/sites/lab-loopback/versions/', '1', 'params/version'],
        ['/api/sites/lab-loopback/versions/', '1', 'params/version'],
      ];
      for (const [prefix, good, where] of routes) {
        const ok = await call(ctx, 'GET', `${prefix}${good}`, ctx.viewer);
        assert.equal(ok.statusCode, 200, `${prefix}${good}: ${ok.body}`);
        for (const bad of [
          '0x1',
          '1e0',
          '%201',
          '1%20',
          '+1',
          '01',
          '1.0',
          '0',
          '-1',
          '',
          '99999999999',
          'abc',
        ]) {
          const r = await call(ctx, 'GET', `${prefix}${bad}`, ctx.viewer);
          assert.equal(r.statusCode, 400, `${prefix}${bad} was ${r.statusCode}: ${r.body}`);
          assert.equal(r.json().error.code, 'EVALIDATION', r.body);
          assert.match(
            r.json().error.message,
            new RegExp(
              `^${where}: expected .*(a whole number|version number) from 1 to \\d+ in plain decimal digits, got `,
            ),
            `${prefix}${bad}`,
          );
        }
      }
      // Past the range the pattern allows.
      for (const [url, where] of <[string, string][]>[
        [`/api/sites/lab-loopback/flows/${flow}/history?limit=1001`, 'querystring/limit'],
        ['/api/events?limit=5001', 'querystring/limit'],
      ])
        assert.match(
          (await call(ctx, 'GET', url, ctx.viewer)).json().error.message,
          new RegExp(
            `^${where}: expected a whole number from 1 to \\d+ in plain decimal digits, got "\\d+"$`,
          ),
        );
      const last = await call(ctx, 'GET', '/api/events?limit=5000', ctx.viewer);
      assert.equal(last.statusCode, 200);
      // Twice the same parameter is not a number either.
      const twice = await call(ctx, 'GET', '/api/events?limit=1&limit=2', ctx.viewer);
      assert.equal(twice.statusCode, 400, twice.body);
      assert.match(twice.json().error.message, /^querystring\/limit: expected a whole number/);
    });

    test('no refusal of an upload names a directory of the server: the whole bad-inventory corpus through the API', async () => {
      const dir = `${ROOT}tests/fixtures/bad/`;
      const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
      assert.ok(files.length > 60, `${files.length} fixtures`);
      const tmp = tmpdir();
      let refused = 0;
      for (const f of files) {
        const yaml = readFileSync(join(dir, f), 'utf8');
        if (!yaml.length) continue;
        const r = await call(ctx, 'POST', '/api/sites', ctx.admin, { yaml });
        if (r.statusCode === 201 || r.statusCode === 200) continue;
        refused++;
        const message = r.json().error.message as string;
        assert.ok(!message.includes(tmp), `${f}: ${message}`);
        assert.ok(!message.includes(ROOT), `${f}: ${message}`);
        assert.doesNotMatch(message, /portolan-site-|\n\s+at /, f);
      }
      assert.ok(refused > 60, `${refused} refused`);
    });

    test('an upload naming catalog files is refused at its catalogs: key, whatever the path', async () => {
      for (const list of ['[mine.yaml]', '[/etc/passwd]', '[.]', '[../../etc]', 'x']) {
        const yaml = LOOPBACK.replace(/^site: .*$/m, (m) => `${m}\ncatalogs: ${list}`);
        const r = await call(ctx, 'POST', '/api/sites', ctx.admin, { yaml });
        assert.equal(r.statusCode, 400, `${list}: ${r.body}`);
        assert.equal(r.json().error.code, 'EINPUT');
        assert.equal(
          r.json().error.message,
          'inventory.yaml:4:1 catalogs: an uploaded inventory cannot name catalog files: the server reads no files beside an upload (expected no catalogs: key; give catalogs of your own to the server with serve --catalog PATH)',
          list,
        );
      }
      const empty = LOOPBACK.replace(/^site: .*$/m, (m) => `${m}\ncatalogs: []`).replace(
        'lab-loopback',
        'lab-empty-cat',
      );
      assert.equal((await call(ctx, 'POST', '/api/sites', ctx.admin, { yaml: empty })).statusCode, 201);
    });

    test('an internal error is a 500 without its message or stack; stderr gets one line, the stack only with --debug', async () => {
      const lines: string[] = [];
      const write = process.stderr.write.bind(process.stderr);
      const boom = () => {
        throw new Error(`store failed at ${join(tmpdir(), 'secret-dir', 'x.db')}`);
      };
      const original = ctx.store.listAgents.bind(ctx.store);
      ctx.store.listAgents = boom;
      process.stderr.write = ((chunk: string) => {
        lines.push(String(chunk));
        return true;
      }) as typeof process.stderr.write;
      let debugApp: FastifyInstance | undefined;
      try {
        const r = await call(ctx, 'GET', '/api/agents', ctx.viewer);
        assert.equal(r.statusCode, 500);
        assert.deepEqual(r.json(), {
          error: { code: 'EINTERNAL', message: 'internal error; see the server log' },
        });
        assert.equal(lines.length, 1, lines.join(''));
        assert.match(
          lines[0] ?? '',
          /^portolan serve: internal error on GET \/api\/agents: Error: store failed at .*\n$/,
        );
        assert.doesNotMatch(lines[0] ?? '', /\n\s+at /);
        debugApp = await buildApp({ store: ctx.store, generatorVersion: '0.0.0-test', debug: true });
        const d = await debugApp.inject({
          url: '/api/agents',
          headers: { authorization: `Bearer ${ctx.viewer}` },
        });
        assert.equal(d.statusCode, 500);
        assert.match(d.json().error.message, /^internal error: Error: store failed at /);
        assert.match(lines[1] ?? '', /\n\s+at /, 'the stack with --debug');
      } finally {
        process.stderr.write = write;
        ctx.store.listAgents = original;
        await debugApp?.close();
      }
    });

    test('numbers in JSON bodies are JSON numbers: a string is not taken for one', async () => {
      for (const from of ['1', '0x1', '1e0', ' 1']) {
        const r = await call(ctx, 'POST', '/api/sites/lab-loopback/change-requests', ctx.admin, {
          from,
          to: 2,
        });
        assert.equal(r.statusCode, 400, `from ${JSON.stringify(from)}: ${r.body}`);
        assert.equal(r.json().error.code, 'EVALIDATION');
        assert.match(r.json().error.message, /^body\/from: must be integer/);
      }
    });
  });
}

suite('SQLite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ptrefuse-'));
  const db = await openDb({ kind: 'sqlite', file: join(dir, 'store.db') });
  return {
    db,
    close: async () => {
      await db.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

let pg: PgCluster | undefined;
suite(
  'PostgreSQL',
  async () => {
    pg = await startPg();
    const db = await openDb({ kind: 'postgres', url: pg.url });
    return {
      db,
      close: async () => {
        await db.destroy();
        pg?.stop();
      },
    };
  },
  pgUnavailable(),
);
