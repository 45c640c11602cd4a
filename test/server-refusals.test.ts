import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/server/app.js';
import type { EventRow } from '../src/server/store.js';
import { deliver, WebhookPolicy } from '../src/server/webhooks.js';
import { BIN, ROOT } from './helpers.js';
import { apiSuites, call } from './server-helpers.js';

const LOOPBACK = readFileSync(`${ROOT}examples/lab/loopback.yaml`, 'utf8');
const LOOPBACK_V2 = `${LOOPBACK.trimEnd()}\n  wrk: { address: 127.0.0.4, roles: [veeam-proxmox:worker] }\n`;

apiSuites('serve refusals', { prefix: 'ptrefuse-', sites: [LOOPBACK, LOOPBACK_V2] }, (ctx) => {
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
        new RegExp(`^${where}: expected a whole number from 1 to \\d+ in plain decimal digits, got "\\d+"$`),
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

  test('a webhook to loopback, link-local, metadata, unspecified or multicast is refused when added, however written', async () => {
    const refused: [string, string][] = [
      ['http://169.254.169.254/latest/meta-data/', 'link-local'],
      ['http://2852039166/', 'link-local'],
      ['http://[::ffff:169.254.169.254]/', 'link-local'],
      ['http://[fe80::1%25eth0]/', ''],
      ['http://[fe80::1]/', 'link-local'],
      ['http://127.0.0.1:9/', 'loopback'],
      ['http://0x7f.1/', 'loopback'],
      ['http://[::1]:9/', 'loopback'],
      ['https://localhost/', 'loopback'],
      ['http://0.0.0.0/', 'unspecified'],
      ['http://[::]/', 'unspecified'],
      ['http://[fd00:ec2::254]/', 'a cloud metadata service'],
      ['http://100.100.100.200/', 'a cloud metadata service'],
      ['http://224.0.0.1/', 'multicast'],
      ['http://255.255.255.255/', 'reserved or broadcast'],
    ];
    for (const [url, why] of refused) {
      const r = await call(ctx, 'POST', '/api/webhooks', ctx.admin, { url });
      assert.equal(r.statusCode, 400, `${url}: ${r.body}`);
      assert.match(r.json().error.code, /^(EWEBHOOK|EVALIDATION)$/, url);
      assert.match(r.json().error.message, /^body\/url: /, url);
      if (why) {
        assert.ok(r.json().error.message.includes(` ${why}`), `${url}: ${r.json().error.message}`);
        assert.match(r.json().error.message, /serve --webhook-allow \S+\/(32|128) permits this one\)$/, url);
      }
    }
    assert.deepEqual((await call(ctx, 'GET', '/api/webhooks', ctx.admin)).json(), { webhooks: [] });
    // A private address is a usual receiver (a chat server inside the network): allowed. Removed
    // at once: nothing is sent to it (adding a webhook makes no event).
    const ok = await call(ctx, 'POST', '/api/webhooks', ctx.admin, { url: 'http://192.0.2.10/hook' });
    assert.equal(ok.statusCode, 201, ok.body);
    assert.equal((await call(ctx, 'DELETE', `/api/webhooks/${ok.json().id}`, ctx.admin)).statusCode, 204);
  });

  test('the address is checked when sent: a name rebound to loopback, an address stored earlier and a redirect reach nothing', async () => {
    const got: string[] = [];
    const hook = createServer((req, res) => {
      got.push(req.url ?? '');
      req.resume();
      if (req.url === '/redirect') res.writeHead(302, { location: `http://127.0.0.1:${port}/followed` });
      res.end();
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const port = (hook.address() as AddressInfo).port;
    let answer = '192.0.2.10';
    const lookup = ((_host: string, opts: { all?: boolean }, cb: (...a: unknown[]) => void) =>
      opts.all ? cb(null, [{ address: answer, family: 4 }]) : cb(null, answer, 4)) as never;
    const lines: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    const event: EventRow = {
      id: 'e1',
      at: new Date().toISOString(),
      site: null,
      kind: 'test',
      subject: 's',
      message: 'm',
      data: {},
    };
    const app = await buildApp({
      store: ctx.store,
      generatorVersion: '0.0.0-test',
      webhooks: new WebhookPolicy([], lookup),
    });
    try {
      // Resolves to a documentation address when added: allowed.
      const made = await app.inject({
        method: 'POST',
        url: '/api/webhooks',
        headers: { authorization: `Bearer ${ctx.admin}` },
        payload: { url: `http://hooks.example.test:${port}/rebound` },
      });
      assert.equal(made.statusCode, 201, made.body);
      // A row stored before addresses were checked (an older version's store).
      await ctx.db
        .insertInto('webhooks')
        .values({
          id: 'old-loopback',
          url: `http://127.0.0.1:${port}/stored`,
          created_at: '2026-01-01T00:00:00.000Z',
        })
        .execute();
      answer = '127.0.0.1';
      process.stderr.write = ((chunk: string) => {
        lines.push(String(chunk));
        return true;
      }) as typeof process.stderr.write;
      await deliver(ctx.store, [event], new WebhookPolicy([], lookup));
      process.stderr.write = write;
      assert.deepEqual(got, [], 'nothing reached the loopback receiver');
      const text = lines.join('');
      assert.match(
        text,
        new RegExp(
          `webhook ${made.json().id} not sent event test: hooks\\.example\\.test resolves to 127\\.0\\.0\\.1, loopback\n`,
        ),
      );
      assert.match(text, /webhook old-loopback not sent event test: 127\.0\.0\.1 is loopback\n/);
      // Allowed by serve --webhook-allow, the same name reaches the receiver: the lookup is the one used to connect.
      await deliver(ctx.store, [event], new WebhookPolicy(['127.0.0.1/32'], lookup));
      assert.deepEqual(got.sort(), ['/rebound', '/stored']);
      // A redirect is not followed, even to an allowed address.
      await ctx.db.deleteFrom('webhooks').execute();
      await ctx.db
        .insertInto('webhooks')
        .values({
          id: 'redirecting',
          url: `http://127.0.0.1:${port}/redirect`,
          created_at: '2026-01-01T00:00:00.000Z',
        })
        .execute();
      lines.length = 0;
      process.stderr.write = ((chunk: string) => {
        lines.push(String(chunk));
        return true;
      }) as typeof process.stderr.write;
      await deliver(ctx.store, [event], new WebhookPolicy(['127.0.0.0/8'], lookup));
      process.stderr.write = write;
      assert.deepEqual(got.sort(), ['/rebound', '/redirect', '/stored']);
      assert.match(
        lines.join(''),
        /webhook redirecting answered event test with HTTP 302 \(redirects are not followed\)/,
      );
    } finally {
      process.stderr.write = write;
      await ctx.db.deleteFrom('webhooks').execute();
      await app.close();
      hook.close();
    }
  });

  test('serve --webhook-allow takes addresses and CIDRs only', () => {
    assert.throws(() => new WebhookPolicy(['10.0.0.0/33']), /"10\.0\.0\.0\/33" is not an address or CIDR/);
    assert.throws(() => new WebhookPolicy(['localhost']), /is not an address or CIDR/);
    const p = new WebhookPolicy(['169.254.169.254', 'fe80::/64']);
    assert.equal(p.refused('169.254.169.254'), null);
    assert.equal(p.refused('169.254.169.253'), 'link-local (cloud metadata services answer there)');
    assert.equal(p.refused('fe80::1'), null);
    assert.equal(p.refused('10.1.2.3'), null);
  });

  test("a thing not found says what there is; a stored version that no longer loads is a 409, not the caller's 400", async () => {
    const cases: [string, string, number, string][] = [
      [
        'GET',
        '/api/sites/lab-loopback/versions/7',
        404,
        'no version 7 of site "lab-loopback" (expected 1 to 2 or latest)',
      ],
      [
        'GET',
        '/api/sites/nowhere/versions/1',
        404,
        'no site "nowhere" (expected one uploaded first: POST /api/sites, or the console\'s upload box)',
      ],
      [
        'GET',
        '/api/sites/lab-loopback/diff?from=1&to=9',
        404,
        'no version 9 of site "lab-loopback" (expected 1 to 2 or latest)',
      ],
      [
        'GET',
        '/api/sites/lab-loopback/change-requests/abc',
        404,
        'no change request "abc" for site lab-loopback (expected an id that GET /api/sites/lab-loopback/change-requests lists)',
      ],
      ['DELETE', '/api/webhooks/abc', 404, 'no webhook "abc" (expected an id that GET /api/webhooks lists)'],
      [
        'GET',
        '/api/nope',
        404,
        'no route GET /api/nope (expected a path and method that GET /api/openapi.json lists)',
      ],
    ];
    for (const [method, url, status, message] of cases) {
      const r = await call(ctx, method, url, ctx.admin);
      assert.equal(r.statusCode, status, `${url}: ${r.body}`);
      assert.equal(r.json().error.message, message);
    }
    // Version 1 of a site as an older server stored it, with a role today's catalogs do not have.
    const yaml = LOOPBACK.replace('lab-loopback', 'lab-stored').replace('flr-appliance]', 'flr-gone]');
    await ctx.db
      .insertInto('site_versions')
      .values({
        site: 'lab-stored',
        version: 1,
        yaml,
        plan: '{}',
        flows: 4,
        created_at: new Date().toISOString(),
      })
      .execute();
    for (const url of [
      '/api/sites/lab-stored/versions/1',
      '/api/sites/lab-stored/versions/latest/export/csv',
      '/api/sites/lab-stored/status',
    ]) {
      const r = await call(ctx, 'GET', url, ctx.viewer);
      assert.equal(r.statusCode, 409, `${url}: ${r.body}`);
      assert.equal(r.json().error.code, 'ESTORED');
      assert.match(
        r.json().error.message,
        /^version 1 of site "lab-stored" no longer loads with this server's catalogs: inventory\.yaml:9:\d+ hosts\.flr\.roles\[0\]: .* \(expected the catalogs it was stored with: serve --catalog PATH; or upload a version that loads\)$/,
      );
    }
  });

  test('a viewer token can be listed and revoked, an agent removed: their tokens stop working at once', async () => {
    const made = await call(ctx, 'POST', '/api/tokens', ctx.admin, { kind: 'viewer' });
    assert.equal(made.statusCode, 201, made.body);
    const { id, token } = made.json() as { id: string; token: string };
    assert.equal((await call(ctx, 'GET', '/api/sites', token)).statusCode, 200);
    const listed = (await call(ctx, 'GET', '/api/tokens', ctx.admin)).json().tokens as Record<
      string,
      unknown
    >[];
    const mine = listed.find((t) => t.id === id);
    assert.deepEqual(Object.keys(mine ?? {}).sort(), ['agent', 'createdAt', 'id', 'kind']);
    assert.ok(!JSON.stringify(listed).includes(token), 'no token text is listed');
    assert.equal((await call(ctx, 'GET', '/api/tokens', token)).statusCode, 403, 'a viewer lists no tokens');
    assert.equal((await call(ctx, 'DELETE', `/api/tokens/${id}`, token)).statusCode, 403);
    assert.equal((await call(ctx, 'DELETE', `/api/tokens/${id}`, ctx.admin)).statusCode, 204);
    assert.equal((await call(ctx, 'GET', '/api/sites', token)).statusCode, 401);
    const gone = await call(ctx, 'DELETE', `/api/tokens/${id}`, ctx.admin);
    assert.equal(gone.statusCode, 404);
    assert.equal(gone.json().error.message, `no token "${id}" (expected an id that GET /api/tokens lists)`);
    const adminId = listed.find((t) => t.kind === 'admin')?.id as string;
    const refused = await call(ctx, 'DELETE', `/api/tokens/${adminId}`, ctx.admin);
    assert.equal(refused.statusCode, 400);
    assert.match(refused.json().error.message, /serve --new-admin-token/);
    // An agent: removed, its token is refused; its results stay.
    const enrol = (
      await call(ctx, 'POST', '/api/agents', ctx.admin, { site: 'lab-loopback', host: 'vbr', name: 'gone' })
    ).json();
    assert.equal((await call(ctx, 'POST', '/api/agent/heartbeat', enrol.token, {})).statusCode, 200);
    assert.equal((await call(ctx, 'DELETE', `/api/agents/${enrol.id}`, ctx.viewer)).statusCode, 403);
    assert.equal((await call(ctx, 'DELETE', `/api/agents/${enrol.id}`, ctx.admin)).statusCode, 204);
    assert.equal((await call(ctx, 'POST', '/api/agent/heartbeat', enrol.token, {})).statusCode, 401);
    const agents = (await call(ctx, 'GET', '/api/agents', ctx.viewer)).json().agents as { id: string }[];
    assert.ok(!agents.some((a) => a.id === enrol.id));
    const ev = (await call(ctx, 'GET', '/api/events?limit=1', ctx.viewer)).json().events[0];
    assert.equal(ev.kind, 'agent-removed');
    assert.equal((await call(ctx, 'DELETE', `/api/agents/${enrol.id}`, ctx.admin)).statusCode, 404);
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

test('serve and agent flags take plain decimal numbers in range, and say so', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ptflags-'));
  try {
    const serve = ['serve', '--db', join(dir, 'x.db'), '--listen', '127.0.0.1:0', '--no-examples'];
    const agent = ['agent', '--server', 'http://127.0.0.1:1', '--token', 'pta_x', '--once', '--spool', dir];
    const cases: [string[], RegExp][] = [
      [
        [...serve, '--body-limit', '0x800'],
        /^portolan: --body-limit "0x800": expected a whole number of bytes in decimal digits, from 1024 to 2147483647\n/,
      ],
      [[...serve, '--body-limit', '1e4'], /^portolan: --body-limit "1e4": expected/],
      [[...serve, '--body-limit', ' 2048'], /^portolan: --body-limit " 2048": expected/],
      [[...serve, '--body-limit', '99999999999'], /^portolan: --body-limit "99999999999": expected/],
      [
        [...serve, '--retention', '999999999d'],
        /^portolan: --retention "999999999d" is not a duration \(.*from 1ms to 36500d\)\n/,
      ],
      [[...serve, '--stale-after', ' 5m'], /^portolan: --stale-after " 5m" is not a duration/],
      [
        [...agent, '--timeout', '0x10'],
        /^portolan: --timeout "0x10" is not a whole number from 1 to 600000\n/,
      ],
      [[...agent, '--timeout', '1e3'], /^portolan: --timeout "1e3" is not a whole number from 1 to 600000\n/],
    ];
    for (const [args, expected] of cases) {
      const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, expected, args.join(' '));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
