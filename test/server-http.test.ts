import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp, WEB_DIR } from '../src/server/app.js';
import { type Db, openDb } from '../src/server/db.js';
import { Store } from '../src/server/store.js';

// HTTP refusals as clients expect them (RFC 9110, RFC 6750): a method the path does not take is a
// 405 with Allow, a body that is not JSON a 415, a missing or unknown token a 401 with
// WWW-Authenticate, a token of the wrong role a 403, a body over the limit a 413 before it is read.

describe('HTTP refusals (SQLite)', { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'pthttp-'));
  let app: FastifyInstance;
  let db: Db;
  let admin: string;
  let viewer: string;
  before(async () => {
    db = await openDb({ kind: 'sqlite', file: join(dir, 'store.db') });
    const store = new Store(db);
    admin = await store.createToken('admin');
    viewer = await store.createToken('viewer');
    app = await buildApp({ store, generatorVersion: '0.0.0-test', webDir: WEB_DIR, bodyLimit: 64 * 1024 });
    await app.listen({ port: 0, host: '127.0.0.1' });
  });
  after(async () => {
    await app?.close();
    await db?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('every API path answers a method it does not take with 405 and the methods it takes in Allow', async () => {
    const spec = (await app.inject({ url: '/api/openapi.json' })).json() as {
      paths: Record<string, Record<string, unknown>>;
    };
    let checked = 0;
    for (const [path, ops] of Object.entries(spec.paths)) {
      const url = path.replace(/\{[A-Za-z]+\}/g, 'x1');
      const takes = Object.keys(ops).map((m) => m.toUpperCase());
      for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].filter((m) => !takes.includes(m))) {
        const r = await app.inject({
          method: method as 'GET',
          url,
          headers: { authorization: `Bearer ${admin}` },
        });
        assert.equal(r.statusCode, 405, `${method} ${url}: ${r.body}`);
        const allow = String(r.headers.allow).split(', ');
        assert.deepEqual(
          allow.filter((m) => m !== 'HEAD'),
          [...takes].sort(),
          `${method} ${url}`,
        );
        assert.equal(allow.includes('HEAD'), takes.includes('GET'), `${method} ${url}: HEAD with GET`);
        assert.equal(r.json().error.code, 'EMETHOD');
        checked++;
      }
    }
    assert.ok(checked > 40, `${checked} method refusals checked`);
    // The console's files too; a path no route has stays a 404.
    const post = await app.inject({ method: 'POST', url: '/' });
    assert.equal(post.statusCode, 405);
    assert.equal(post.headers.allow, 'GET, HEAD');
    assert.equal((await app.inject({ method: 'PUT', url: '/api/nothing-here' })).statusCode, 404);
  });

  test('a body that is not JSON is a 415 naming its type; a missing one a 400 saying so', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml']) {
      const r = await app.inject({
        method: 'POST',
        url: '/api/sites',
        headers: { authorization: `Bearer ${admin}`, 'content-type': type },
        payload: 'yaml=site',
      });
      assert.equal(r.statusCode, 415, `${type}: ${r.body}`);
      assert.deepEqual(r.json().error, {
        code: 'EMEDIATYPE',
        message: `body: content-type "${type}" is not accepted (expected application/json)`,
      });
    }
    const none = await app.inject({
      method: 'POST',
      url: '/api/sites',
      headers: { authorization: `Bearer ${admin}` },
    });
    assert.equal(none.statusCode, 400);
    assert.equal(
      none.json().error.message,
      'body: missing (expected a JSON object, sent with content-type: application/json)',
    );
    const bad = await app.inject({
      method: 'POST',
      url: '/api/sites',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      payload: '{\n  "yaml": "x",\n}',
    });
    assert.equal(bad.statusCode, 400);
    assert.match(bad.json().error.message, /^body: not JSON at line 3, column 1: /);
  });

  test('401 says the scheme in WWW-Authenticate (invalid_token for a token not known); 403 is the wrong role', async () => {
    const missing = await app.inject({ url: '/api/sites' });
    assert.equal(missing.statusCode, 401);
    assert.equal(missing.headers['www-authenticate'], 'Bearer realm="portolan"');
    const unknown = await app.inject({ url: '/api/sites', headers: { authorization: 'Bearer ptv_nothing' } });
    assert.equal(unknown.statusCode, 401);
    assert.equal(unknown.headers['www-authenticate'], 'Bearer realm="portolan", error="invalid_token"');
    const role = await app.inject({
      method: 'POST',
      url: '/api/tokens',
      headers: { authorization: `Bearer ${viewer}` },
      payload: { kind: 'viewer' },
    });
    assert.equal(role.statusCode, 403);
    assert.equal(role.headers['www-authenticate'], undefined);
    assert.equal(role.json().error.code, 'EFORBIDDEN');
  });

  test('a body declared larger than the limit is a 413 at once, before any of it is sent', async () => {
    const port = (app.server.address() as AddressInfo).port;
    const s = connect(port, '127.0.0.1');
    const answer = await new Promise<string>((resolve, reject) => {
      let got = '';
      s.on('data', (d) => {
        got += String(d);
        if (got.includes('}}')) resolve(got);
      });
      s.on('error', reject);
      s.on('close', () => resolve(got));
      s.write(
        `POST /api/sites HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${admin}\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n`,
      );
    });
    s.destroy();
    assert.match(answer, /^HTTP\/1\.1 413 /);
    assert.match(answer, /"code":"ETOOLARGE","message":"request body is larger than 65536 bytes/);
  });

  test('the console is served with a content security policy that forbids inline scripts and framing', async () => {
    const r = await app.inject({ url: '/' });
    assert.equal(r.statusCode, 200);
    const csp = String(r.headers['content-security-policy']);
    assert.match(csp, /default-src 'self'/);
    assert.doesNotMatch(csp, /script-src[^;]*unsafe-inline/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
  });
});
