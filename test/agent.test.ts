import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, detailOf, isolatedRun, MAX_REPLY_BYTES } from '../src/agent/agent.js';
import type { FlowResult } from '../src/probe/verdict.js';
import { MAX_DETAIL_BYTES } from '../src/server/app.js';
import { openDb } from '../src/server/db.js';
import { Store } from '../src/server/store.js';
import { BIN, freePort, OWN_LOOPBACK, ROOT, startServe } from './helpers.js';

const LOOPBACK = readFileSync(`${ROOT}examples/lab/loopback.yaml`, 'utf8');
// Quick probes: every target is on loopback, where a closed port answers at once.
/** Where the servers of this file listen: ports found free here stay free (helpers.ts OWN_LOOPBACK). */
const HOST = OWN_LOOPBACK;

const CHECK = { timeoutMs: 500, attempts: 1, spacingMs: 10, retryBudgetMs: 100 };
/** The failing verdicts in which the target itself never answered (verdict.ts unanswered). */
const NO_ANSWER = ['dns-failed', 'no-host', 'no-route', 'blocked', 'filtered'];

const dirs: string[] = [];
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'ptagent-'));
  dirs.push(d);
  return d;
}

/**
 * `portolan serve` on a SQLite file in DIR, on this process's own loopback address at PORT (a
 * server restarted on the same port must find it free: on 127.0.0.1 another test file could take
 * it while the server is down). Resolves once it listens.
 */
async function serve(dir: string, port: number, extra: string[] = []): Promise<ChildProcess> {
  const { child } = await startServe(`${HOST}:${port}`, [
    '--db',
    join(dir, 'store.db'),
    '--token-file',
    join(dir, 'admin'),
    ...extra,
  ]);
  children.push(child);
  return child;
}

async function api(port: number, token: string, method: string, path: string, body?: unknown) {
  const r = await fetch(`http://${HOST}:${port}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const json = (await r.json()) as Record<string, unknown>;
  assert.ok(r.status < 300, `${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

async function until(what: string, cond: () => boolean | Promise<boolean>, limitMs = 120_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await sleep(100);
  }
}

async function killed(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  const gone = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await gone;
}

async function storedRuns(dir: string) {
  const db = await openDb({ kind: 'sqlite', file: join(dir, 'store.db') });
  try {
    const runs = await db.selectFrom('runs').selectAll().execute();
    const results = await db.selectFrom('results').select(['run_key', 'flow_id']).execute();
    return { runs, results };
  } finally {
    await db.destroy();
  }
}

test('SIGKILL of the server while 20 agents post: after a restart every run is stored exactly once', {
  timeout: 600_000,
}, async () => {
  const dir = tempDir();
  const port = await freePort();
  let server = await serve(dir, port);
  const admin = readFileSync(join(dir, 'admin'), 'utf8').trim();
  await api(port, admin, 'POST', '/api/sites', { yaml: LOOPBACK });
  const spooled = new Set<string>();
  let sent = 0;
  let unreachable = 0;
  const agents: Agent[] = [];
  for (let i = 0; i < 20; i++) {
    const enrol = await api(port, admin, 'POST', '/api/agents', {
      site: 'lab-loopback',
      host: 'vbr',
      name: `a${i}`,
    });
    agents.push(
      new Agent({
        server: `http://${HOST}:${port}`,
        token: enrol.token as string,
        spool: join(dir, `spool-${i}`),
        check: CHECK,
        requestTimeoutMs: 10_000,
        log: (line) => {
          const m = /^spooled (\S+)/.exec(line);
          if (m?.[1]) spooled.add(m[1]);
          if (line.startsWith('sent ')) sent++;
          if (line.startsWith('server unreachable')) unreachable++;
        },
      }),
    );
  }
  let phase: 'up' | 'down' | 'back' | 'stop' = 'up';
  const cyclesAfterRestart = new Array<number>(agents.length).fill(0);
  const loops = agents.map(async (a, i) => {
    while (phase !== 'stop') {
      await a.cycle();
      if (phase === 'back') cyclesAfterRestart[i] = (cyclesAfterRestart[i] ?? 0) + 1;
    }
  });
  await until('runs sent before the kill', () => sent >= 20);
  await killed(server, 'SIGKILL');
  phase = 'down';
  await until('runs spooled while the server is down', () => unreachable >= 20);
  server = await serve(dir, port);
  phase = 'back';
  await until('every agent to run twice after the restart', () => cyclesAfterRestart.every((n) => n >= 2));
  phase = 'stop';
  await Promise.all(loops);
  for (const a of agents) assert.equal(await a.flush(), 0, 'every spooled run was acknowledged');
  for (let i = 0; i < agents.length; i++)
    assert.deepEqual(readdirSync(join(dir, `spool-${i}`, 'pending')), [], `agent ${i} spool is empty`);
  await killed(server, 'SIGTERM');

  const { runs, results } = await storedRuns(dir);
  const keys = runs.map((r) => r.key);
  assert.equal(new Set(keys).size, keys.length, 'no run stored twice');
  assert.deepEqual(new Set(keys), spooled, 'every spooled run stored');
  assert.equal(results.length, runs.length * 4, 'four flow results per run, each once');
});

test('the server is stopped a while: the agent spools, and the runs arrive once it is back', {
  timeout: 300_000,
}, async () => {
  const dir = tempDir();
  const port = await freePort();
  let server = await serve(dir, port, ['--stale-after', '2s']);
  const admin = readFileSync(join(dir, 'admin'), 'utf8').trim();
  await api(port, admin, 'POST', '/api/sites', { yaml: LOOPBACK });
  const enrol = await api(port, admin, 'POST', '/api/agents', { site: 'lab-loopback', host: 'vbr' });
  const spool = join(dir, 'spool');
  const agent = (...extra: string[]) =>
    spawnSync(
      process.execPath,
      [
        BIN,
        'agent',
        '--server',
        `http://${HOST}:${port}`,
        '--token',
        enrol.token as string,
        '--spool',
        spool,
        '--once',
        '--timeout',
        '500',
        ...extra,
      ],
      {
        encoding: 'utf8',
      },
    );
  const first = agent();
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stderr, /sent /);
  // Stale once the heartbeats stop.
  await until('the agent marked stale', async () => {
    const list = (await api(port, admin, 'GET', '/api/agents')).agents as { stale: boolean }[];
    return list[0]?.stale === true;
  });
  const events = (await api(port, admin, 'GET', '/api/events')).events as { kind: string }[];
  assert.ok(events.some((e) => e.kind === 'agent-stale'));
  await killed(server, 'SIGTERM');

  const down1 = agent();
  const down2 = agent();
  // Never reached the server: exit 3 (nothing reported), and stderr says how much waits where.
  for (const r of [down1, down2]) assert.equal(r.status, 3, r.stderr);
  assert.equal(readdirSync(join(spool, 'pending')).length, 2);
  const pending = readdirSync(join(spool, 'pending')).map((f) =>
    JSON.parse(readFileSync(join(spool, 'pending', f), 'utf8')),
  );
  const flowsPerRun = (pending[0] as { results: unknown[] }).results.length;
  assert.ok(flowsPerRun > 0);
  const spoolMessage = (n: number) =>
    new RegExp(
      `server unreachable: ${n} results? spooled in ${join(spool, 'pending').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}, will resend$`,
      'm',
    );
  assert.match(down1.stderr, spoolMessage(flowsPerRun));
  assert.match(down2.stderr, spoolMessage(2 * flowsPerRun));
  // The server away: a run is isolated only when no target answered either; a reset (closed) is
  // the target's answer, which proves this host's network reached it.
  for (const r of pending as { isolated: boolean; results: { verdict: string }[] }[]) {
    const verdicts = r.results.map((x) => x.verdict);
    assert.equal(
      r.isolated,
      verdicts.every((v) => NO_ANSWER.includes(v)),
      verdicts.join(', '),
    );
  }
  if (pending.some((r: { results: { verdict: string }[] }) => r.results.some((x) => x.verdict === 'closed')))
    assert.doesNotMatch(down1.stderr, /isolated/);

  server = await serve(dir, port);
  const back = agent();
  assert.equal(back.status, 0, back.stderr);
  assert.equal((back.stderr.match(/^\S+ sent /gm) ?? []).length, 3, back.stderr);
  assert.deepEqual(readdirSync(join(spool, 'pending')), []);
  const again = agent();
  assert.equal(again.status, 0);
  await killed(server, 'SIGTERM');
  const { runs } = await storedRuns(dir);
  const keys = [...pending.map((r: { key: string }) => r.key)];
  for (const k of keys) assert.equal(runs.filter((r) => r.key === k).length, 1, `run ${k} stored once`);
  assert.equal(runs.length, 5);
});

test('agent --once that never reaches the server exits 3 and says what it spooled, also before its first plan', {
  timeout: 120_000,
}, async () => {
  const dir = tempDir();
  const port = await freePort(); // nothing listens there
  const spool = join(dir, 'spool');
  const r = spawnSync(
    process.execPath,
    [BIN, 'agent', '--server', `http://${HOST}:${port}`, '--token', 'pta_x', '--spool', spool, '--once'],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 3, r.stderr);
  assert.match(
    r.stderr,
    new RegExp(
      `server unreachable: POST http://${HOST.replaceAll('.', '\\.')}:\\d+/api/agent/heartbeat: ECONNREFUSED`,
    ),
  );
  assert.ok(
    r.stderr
      .trimEnd()
      .endsWith(`server unreachable: 0 results spooled in ${join(spool, 'pending')}, will resend`),
    r.stderr,
  );
  assert.deepEqual(readdirSync(join(spool, 'pending')), []);
  const help = spawnSync(process.execPath, [BIN, 'agent', '--help'], { encoding: 'utf8' });
  assert.match(help.stdout, /3 when the\s+server\s+could\s+not\s+be\s+reached\s+at\s+all/);
});

/** A private CA and a server certificate for HOST signed by it, made with openssl. */
function certificates(dir: string) {
  const ssl = (...args: string[]) => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    assert.equal(r.status, 0, `openssl ${args.join(' ')}: ${r.stderr}`);
  };
  ssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=portolan test CA',
  );
  ssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'server.key',
    '-out',
    'server.csr',
    '-subj',
    `/CN=${HOST}`,
  );
  writeFileSync(join(dir, 'san.ext'), `subjectAltName = IP:${HOST}\nextendedKeyUsage = serverAuth\n`);
  ssl(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    'san.ext',
    '-out',
    'server.pem',
  );
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key') };
}

test('TLS: serve --tls-cert/--tls-key with an openssl certificate; the agent posts over https with --ca, and refuses the server without it', {
  timeout: 300_000,
}, async () => {
  const dir = tempDir();
  const pki = certificates(dir);
  const port = await freePort();
  const server = await serve(dir, port, ['--tls-cert', pki.cert, '--tls-key', pki.key]);
  const base = `https://${HOST}:${port}`;
  const admin = readFileSync(join(dir, 'admin'), 'utf8').trim();
  const ca = readFileSync(pki.ca);
  // The API answers over TLS only, with the certificate openssl made.
  const site = await httpsJson(base, admin, ca, 'POST', '/api/sites', { yaml: LOOPBACK });
  assert.equal(site.status, 201, JSON.stringify(site.json));
  const enrol = await httpsJson(base, admin, ca, 'POST', '/api/agents', {
    site: 'lab-loopback',
    host: 'vbr',
  });
  const plain = await fetch(`http://${HOST}:${port}/api/sites`).then(
    () => 'answered',
    (err) => (err as { cause?: { code?: string } }).cause?.code ?? 'failed',
  );
  assert.notEqual(plain, 'answered', 'plain HTTP is not served beside HTTPS');
  const agent = (...extra: string[]) =>
    spawnSync(
      process.execPath,
      [
        BIN,
        'agent',
        '--server',
        base,
        '--token',
        enrol.json.token as string,
        '--spool',
        join(dir, 'spool'),
        '--once',
        '--timeout',
        '500',
        ...extra,
      ],
      { encoding: 'utf8' },
    );
  const first = agent('--ca', pki.ca);
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stderr, / sent /);
  // Without the CA the certificate is not trusted: nothing is sent, the run stays spooled.
  const untrusted = agent();
  assert.equal(untrusted.status, 3, untrusted.stderr);
  assert.match(untrusted.stderr, /server unreachable.*(UNABLE_TO_VERIFY|SELF_SIGNED|CERT)/);
  assert.equal(readdirSync(join(dir, 'spool', 'pending')).length, 1);
  // With --ca again: the spooled run and the new one arrive, once each.
  const trusted = agent('--ca', pki.ca);
  assert.equal(trusted.status, 0, trusted.stderr);
  assert.equal((trusted.stderr.match(/ sent /g) ?? []).length, 2, trusted.stderr);
  assert.deepEqual(readdirSync(join(dir, 'spool', 'pending')), []);
  const runs = await httpsJson(base, admin, ca, 'GET', '/api/sites/lab-loopback/status');
  const checked = (runs.json.flows as { verdict: string | null }[]).filter((f) => f.verdict !== null);
  assert.equal(checked.length, 4, JSON.stringify(runs.json));
  await killed(server, 'SIGTERM');
  // --ca on a plain URL, and a key that does not match the certificate: one-line usage errors.
  const wrongScheme = spawnSync(
    process.execPath,
    [BIN, 'agent', '--server', 'http://127.0.0.1:1', '--token', 'x', '--ca', pki.ca, '--once'],
    { encoding: 'utf8' },
  );
  assert.equal(wrongScheme.status, 2);
  assert.match(
    wrongScheme.stderr,
    /--ca .*ca\.pem: the server URL http:\/\/127\.0\.0\.1:1\/ is not https:\/\//,
  );
  const mismatch = spawnSync(
    process.execPath,
    [
      BIN,
      'serve',
      '--db',
      join(dir, 'x.db'),
      '--listen',
      '127.0.0.1:0',
      '--tls-cert',
      pki.cert,
      '--tls-key',
      join(dir, 'ca.key'),
    ],
    { encoding: 'utf8' },
  );
  assert.equal(mismatch.status, 2, mismatch.stderr);
  assert.equal(mismatch.stderr.trim().split('\n').length, 1, mismatch.stderr);
  assert.match(
    mismatch.stderr,
    /--tls-cert .*server\.pem --tls-key .*ca\.key: not a PEM certificate and its private key/,
  );
});

function httpsJson(base: string, token: string, ca: Buffer, method: string, path: string, body?: unknown) {
  return new Promise<{ status: number; json: Record<string, unknown> }>((resolve, reject) => {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const req = httpsRequest(
      new URL(path, base),
      {
        method,
        ca,
        headers: {
          authorization: `Bearer ${token}`,
          ...(text !== undefined ? { 'content-type': 'application/json' } : {}),
        },
      },
      (res) => {
        let data = '';
        res.on('data', (c) => {
          data += String(c);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(data) }));
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

/**
 * A fake serve on loopback: each agent path answers with the status and error body given, or 200
 * with what a real server sends.
 */
/** A status for PATH, or a status with the body and content type another web server would send. */
type FakeAnswer = number | { status: number; body: string; type: string };

async function fakeServe(answers: Record<string, FakeAnswer>) {
  const { createServer: httpServer } = await import('node:http');
  const plan = { agent: 'a1', site: 'lab-loopback', host: 'vbr', version: 1, yaml: LOOPBACK, flowIds: [] };
  const server = httpServer((req, res) => {
    let body = '';
    req.on('data', (d) => {
      body += d;
    });
    req.on('end', () => {
      const path = req.url ?? '';
      const answer = answers[path] ?? 200;
      if (typeof answer !== 'number') {
        res.setHeader('content-type', answer.type);
        res.statusCode = answer.status;
        return res.end(answer.body);
      }
      const status = answer;
      res.setHeader('content-type', 'application/json');
      res.statusCode = status;
      if (status !== 200)
        return res.end(JSON.stringify({ error: { code: 'EAUTH', message: `answer ${status}` } }));
      if (path === '/api/agent/plan') return res.end(JSON.stringify(plan));
      if (path === '/api/agent/results') return res.end(JSON.stringify({ key: JSON.parse(body).key }));
      return res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}

function agentOnce(url: string, spool: string, token = 'pta_wrong') {
  return new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(
      process.execPath,
      [BIN, 'agent', '--server', url, '--token', token, '--spool', spool, '--once'],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr?.on('data', (d) => {
      stderr += d;
    });
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

test('a wrong agent token is a user error on every agent request: one line naming the server and what to do, exit 2', {
  timeout: 180_000,
}, async () => {
  const dir = tempDir();
  // The real server with a token it never issued.
  const port = await freePort();
  await serve(dir, port);
  const real = await agentOnce(`http://${HOST}:${port}`, join(dir, 'spool-real'));
  assert.equal(real.code, 2, real.stderr);
  assert.equal(
    real.stderr,
    `portolan: server http://${HOST}:${port} refused the agent token (POST /api/agent/heartbeat: HTTP 401 unknown token): the token is mistyped or was revoked; enrol this host again (POST /api/agents) and give the new token with --token\n`,
  );
  // Each request the agent makes, refused in turn by a fake server.
  for (const [path, status, said] of [
    [
      '/api/agent/heartbeat',
      401,
      /refused the agent token \(POST \/api\/agent\/heartbeat: HTTP 401 answer 401\)/,
    ],
    [
      '/api/agent/heartbeat',
      403,
      /refused the token for POST \/api\/agent\/heartbeat .*not an admin or viewer token/,
    ],
    [
      '/api/agent/heartbeat',
      404,
      /has no POST \/api\/agent\/heartbeat .*is --server the URL of portolan serve\?/,
    ],
    ['/api/agent/plan', 401, /refused the agent token \(GET \/api\/agent\/plan: HTTP 401 answer 401\)/],
    ['/api/agent/plan', 403, /refused the token for GET \/api\/agent\/plan/],
    [
      '/api/agent/results',
      401,
      /refused the agent token \(POST \/api\/agent\/results: HTTP 401 answer 401\)/,
    ],
    ['/api/agent/results', 403, /refused the token for POST \/api\/agent\/results/],
  ] as const) {
    const fake = await fakeServe({ [path]: status });
    try {
      const spool = join(dir, `spool-${status}-${path.split('/').pop()}`);
      const r = await agentOnce(fake.url, spool);
      assert.equal(r.code, 2, `${path} ${status}: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /internal error|please report/, `${path} ${status}`);
      const last = r.stderr.trimEnd().split('\n').pop() as string;
      assert.match(last, new RegExp(`^portolan: server ${fake.url} `), `${path} ${status}: ${r.stderr}`);
      assert.match(last, said, `${path} ${status}`);
      // A refused result post keeps the run for the next agent run with a good token.
      if (path === '/api/agent/results') assert.equal(readdirSync(join(spool, 'pending')).length, 1);
    } finally {
      fake.server.close();
    }
  }
  // A 4xx a later request may not meet (rate limit) is logged, never an internal error: exit 1, spooled.
  const busy = await fakeServe({ '/api/agent/results': 429 });
  try {
    const r = await agentOnce(busy.url, join(dir, 'spool-429'));
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /server refused \S+: HTTP 429 answer 429; kept in the spool/);
  } finally {
    busy.server.close();
  }
  const slow = await fakeServe({ '/api/agent/heartbeat': 429, '/api/agent/plan': 429 });
  try {
    const r = await agentOnce(slow.url, join(dir, 'spool-429b'));
    assert.doesNotMatch(r.stderr, /internal error|please report/);
    assert.match(r.stderr, /server refused the heartbeat: HTTP 429 answer 429/);
    assert.match(r.stderr, /server refused the plan: HTTP 429 answer 429/);
    assert.equal(r.code, 1, r.stderr);
  } finally {
    slow.server.close();
  }
});

test('a posted detail stays under the server limit however many addresses and ranges a flow has', () => {
  const addresses = Array.from({ length: 1000 }, (_, i) => `10.1.${i >> 8}.${i & 255}`);
  const fr = {
    flow: { id: 'f', ports: [[2500, 2501]] },
    verdict: 'closed',
    failed: true,
    addresses,
    results: addresses.flatMap((address) =>
      [2500, 2501].map((port) => ({
        address,
        port,
        protocol: 'tcp',
        verdict: 'closed',
        detail:
          'connection refused (ECONNREFUSED): nothing listens, or a firewall answers for it with a reset',
        evidence: { errno: 'ECONNREFUSED' },
      })),
    ),
    hint: 'nothing listens',
  } as unknown as FlowResult;
  const detail = detailOf(fr);
  assert.ok(
    Buffer.byteLength(JSON.stringify(detail)) <= MAX_DETAIL_BYTES,
    `${Buffer.byteLength(JSON.stringify(detail))} bytes`,
  );
  assert.equal((detail.ranges as unknown[]).length, 256);
  assert.equal(detail.rangesOmitted, 744);
  assert.equal((detail.ports as unknown[]).length, 64);
});

test('a run is isolated when neither the server nor any target answered; a reset from a target is an answer', () => {
  const run = (...verdicts: string[]) =>
    verdicts.map((verdict) => ({ verdict, failed: verdict !== 'ok' })) as Pick<
      FlowResult,
      'failed' | 'verdict'
    >[];
  assert.equal(isolatedRun(false, run('filtered', 'no-route', 'dns-failed', 'no-host', 'blocked')), true);
  // The server answered: never isolated.
  assert.equal(isolatedRun(true, run('filtered', 'no-route')), false);
  // A target answered, with a reset or a failed handshake: this host's network works.
  assert.equal(isolatedRun(false, run('filtered', 'closed')), false);
  assert.equal(isolatedRun(false, run('closed', 'closed')), false);
  assert.equal(isolatedRun(false, run('filtered', 'tls-failed')), false);
  assert.equal(isolatedRun(false, run('filtered', 'ok')), false);
  assert.equal(isolatedRun(false, []), false);
});

test('a plan of another shape, from the server or the spool, is logged and set aside, never an internal error', {
  timeout: 120_000,
}, async () => {
  // The agent used any JSON as its plan: {"version":1} crashed the check (exit 70), from a server
  // that answered so or from the spool's plan.json.
  const { createServer: createHttpServer } = await import('node:http');
  const server = createHttpServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(req.url === '/api/agent/plan' ? '{"version": 1, "flowIds": 5}' : '{"ok": true}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as { port: number }).port;
  const spool = join(tempDir(), 'spool');
  const agent = (url: string) =>
    new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [
        BIN,
        'agent',
        '--server',
        url,
        '--token',
        'pta_x',
        '--spool',
        spool,
        '--once',
      ]);
      children.push(child);
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => {
        stderr += d;
      });
      child.on('close', (code) => resolve({ code, stderr }));
    });
  try {
    const served = await agent(`http://127.0.0.1:${port}`);
    assert.notEqual(served.code, 70, served.stderr);
    assert.doesNotMatch(served.stderr, /internal error/);
    assert.match(
      served.stderr,
      /server sent a plan that is not one \("agent" is not a string\); using the last plan fetched/,
    );
  } finally {
    server.close();
  }
  writeFileSync(join(spool, 'plan.json'), '{"version": 1}');
  const cached = await agent(`http://${HOST}:${await freePort()}`);
  assert.equal(cached.code, 3, cached.stderr);
  assert.match(
    cached.stderr,
    /the last plan fetched \(.*plan\.json\) is not one \("agent" is not a string\); ignored/,
  );
  assert.match(cached.stderr, /no plan yet \(none fetched from the server\): nothing to check/);
});

test('a token that cannot be one says which shape a real agent token has (pta_..., not agent_...)', async () => {
  const r = spawnSync(
    process.execPath,
    [BIN, 'agent', '--server', 'http://127.0.0.1:1', '--token', 'pta_x y', '--once'],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /\(expected the token POST \/api\/agents returned, such as pta_\.\.\.\)\n$/);
  // The prefix the server really gives agent tokens.
  const db = await openDb({ kind: 'sqlite', file: ':memory:' });
  try {
    assert.match(await new Store(db).createToken('agent'), /^pta_[A-Za-z0-9_-]{43}$/);
  } finally {
    await db.destroy();
  }
});

/** The error page python3 -m http.server sends for a method it does not know. */
const HTML_501 = `<!DOCTYPE HTML>
<html lang="en">
    <head>
        <meta charset="utf-8">
        <title>Error response</title>
    </head>
    <body>
        <h1>Error response</h1>
        <p>Error code: 501</p>
        <p>Message: Unsupported method ('POST').</p>
        <p>Error code explanation: 501 - Server does not support this operation.</p>
    </body>
</html>
`;

test('a server that answers is never called unreachable: 501 is not serve (exit 2, a short excerpt), 5xx is its failure and the host is reached', {
  timeout: 120_000,
}, async () => {
  const dir = tempDir();
  const web = await fakeServe({ '/api/agent/heartbeat': { status: 501, body: HTML_501, type: 'text/html' } });
  try {
    const r = await agentOnce(web.url, join(dir, 'spool-501'));
    assert.equal(r.code, 2, r.stderr);
    assert.doesNotMatch(r.stderr, /unreachable/);
    assert.equal(
      r.stderr,
      `portolan: server ${web.url} has no POST /api/agent/heartbeat (HTTP 501 "Error response Error response Error code: 501 Message: Unsupported method ('POST'). Error code explanation: 501 - Server..."): is --server the URL of portolan serve?\n`,
    );
  } finally {
    web.server.close();
  }
  // A portolan serve behind a proxy whose backend is down: 502 with a page, the ESC of a hostile
  // or broken server's text replaced.
  const down = await fakeServe({
    '/api/agent/heartbeat': { status: 502, body: '<h1>502 Bad Gateway</h1>\u001b[31m', type: 'text/html' },
    '/api/agent/plan': {
      status: 503,
      body: JSON.stringify({ error: { code: 'EDOWN', message: 'restarting\u001b]0;owned\u0007' } }),
      type: 'application/json',
    },
  });
  try {
    const r = await agentOnce(down.url, join(dir, 'spool-502'));
    assert.doesNotMatch(r.stderr, /unreachable|\u001b|\u0007/, r.stderr);
    assert.match(
      r.stderr,
      /server failed: POST \/api\/agent\/heartbeat: the server answered HTTP 502 "502 Bad Gateway \\u001b\[31m"; tried again on the next run/,
    );
    assert.match(
      r.stderr,
      /server failed: GET \/api\/agent\/plan: the server answered HTTP 503 restarting\?\]0;owned\?; tried again/,
    );
    // Answered, though nothing could be checked: 1, not 3 (never reached).
    assert.equal(r.code, 1, r.stderr);
    // The path to the server works: the heartbeat says reached, so no run of this host is isolated.
    const agent = new Agent({
      server: down.url,
      token: 'pta_x',
      spool: join(dir, 'spool-502b'),
      log: () => {},
    });
    assert.equal(await agent.heartbeat(), true);
  } finally {
    down.server.close();
  }
  const gone = new Agent({
    server: `http://${HOST}:1`,
    token: 'pta_x',
    spool: join(dir, 'spool-gone'),
    log: () => {},
  });
  assert.equal(await gone.heartbeat(), false);
});

test('a reply larger than MAX_REPLY_BYTES is not read to its end: the request fails as a 5xx does', async () => {
  // The agent kept every byte of a reply until its end or the request timeout: a server streaming
  // an endless body (1 GiB in 3 s on loopback) took the agent's memory with it.
  const chunk = Buffer.alloc(1024 * 1024, 0x61);
  let sent = 0;
  const big = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    const pump = () => {
      while (sent < MAX_REPLY_BYTES + 16 * chunk.length) {
        sent += chunk.length;
        if (!res.write(chunk)) return;
      }
      res.end();
    };
    res.on('drain', pump);
    pump();
  });
  await new Promise<void>((resolve) => big.listen(0, HOST, resolve));
  const lines: string[] = [];
  try {
    const agent = new Agent({
      server: `http://${HOST}:${(big.address() as { port: number }).port}`,
      token: 'pta_x',
      spool: join(tempDir(), 'spool'),
      requestTimeoutMs: 60_000,
      log: (line) => lines.push(line),
    });
    // Answered: the server is reached, so the heartbeat says so, and the failure is logged.
    assert.equal(await agent.heartbeat(), true);
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(
      lines[0] as string,
      /^server failed: POST \/api\/agent\/heartbeat: the server answered HTTP 200 with more than 64 MiB; tried again on the next run$/,
    );
    assert.ok(sent < MAX_REPLY_BYTES + 16 * chunk.length, 'the reply was read to its end');
  } finally {
    big.closeAllConnections();
    big.close();
  }
});
