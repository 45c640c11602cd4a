import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import type { Flow } from '../src/model/flow.js';
import { expandCidr } from '../src/probe/dns.js';
import type { CheckReport } from '../src/probe/engine.js';
import { verdictForErrno } from '../src/probe/errno.js';
import { identify } from '../src/probe/identify.js';
import { epmBind, parseBindReply } from '../src/probe/msrpc.js';
import { ntpRequest, parseNtpReply } from '../src/probe/ntp.js';
import { parseX224, x224ConnectionRequest } from '../src/probe/rdp.js';
import { checkJson, checkJunit, checkTable, runs, summarize, xml } from '../src/probe/report.js';
import { networkRows, RttEstimator, RttTable } from '../src/probe/rtt.js';
import { type ReachItem, reach } from '../src/probe/scheduler.js';
import { tcpKind } from '../src/probe/services.js';
import { parseSmbReply, smb2Negotiate } from '../src/probe/smb.js';
import type { SweepPool } from '../src/probe/sweep.js';
import type { SweepJob } from '../src/probe/tcp.js';
import { type FlowResult, isFailure, type PortResult, worst } from '../src/probe/verdict.js';

const flow = (over: Partial<Flow> = {}): Flow => ({
  id: 'lab a/client b/server tcp x',
  product: 'lab',
  from: { host: 'a', role: 'client', address: '10.0.0.1' },
  to: { host: 'b', role: 'server', address: '10.0.0.2' },
  protocol: 'tcp',
  ports: [[2500, 2509]],
  service: 'veeam-transport',
  tls: false,
  purpose: 'p',
  sources: [{ doc: '004.txt', ref: 'ports table, row 3' }],
  notes: [],
  entries: ['e'],
  local: false,
  ...over,
});

const port = (p: number, verdict: PortResult['verdict'], address = '10.0.0.2'): PortResult => ({
  address,
  port: p,
  protocol: 'tcp',
  verdict,
  detail: `${verdict} detail`,
  evidence: {},
});

describe('probe wire formats', () => {
  it('NTP: a mode 3 v4 request; a mode 4 reply echoing our timestamp gives stratum and offset', () => {
    const req = ntpRequest(1_700_000_000_000);
    assert.equal(req.packet.length, 48);
    assert.equal(req.packet[0], 0x23);
    // A server 250 ms ahead that answers instantly: T2 = T3 = T1 + 250 ms, received at T1.
    const reply = Buffer.alloc(48);
    reply[0] = 0x24; // LI 0, VN 4, mode 4
    reply[1] = 3;
    reply.set([10, 0, 0, 9], 12);
    req.packet.copy(reply, 24, 40, 48); // origin = our transmit
    const ahead = ntpRequest(1_700_000_000_250).packet.subarray(40, 48);
    ahead.copy(reply, 32);
    ahead.copy(reply, 40);
    const r = parseNtpReply(reply, req, 1_700_000_000_000);
    assert.ok(r.ok);
    assert.equal(r.stratum, 3);
    assert.equal(r.refId, '10.0.0.9');
    assert.ok(Math.abs(r.offsetMs - 250) < 1, String(r.offsetMs));
    const other = Buffer.from(reply);
    other[31] = (other[31] as number) ^ 0xff;
    assert.deepEqual(parseNtpReply(other, req, 0), {
      ok: false,
      reason: 'origin timestamp does not echo our request',
    });
    const kod = Buffer.from(reply);
    kod[1] = 0;
    kod.write('RATE', 12, 'latin1');
    const k = parseNtpReply(kod, req, 1_700_000_000_000);
    assert.ok(k.ok && k.kiss === 'RATE');
  });

  it('SMB2 NEGOTIATE request, and the dialect in a response', () => {
    const req = smb2Negotiate();
    assert.equal(req.readUInt32BE(0), req.length - 4);
    assert.equal(req.subarray(4, 8).toString('latin1'), '\xfeSMB');
    const res = Buffer.alloc(4 + 64 + 65);
    res.writeUInt32BE(64 + 65, 0);
    res.write('\xfeSMB', 4, 'latin1');
    res.writeUInt16LE(65, 4 + 64);
    res.writeUInt16LE(0x0302, 4 + 64 + 4);
    assert.deepEqual(parseSmbReply(res), { kind: 'smb2', status: 0, dialect: '3.0.2' });
    assert.deepEqual(parseSmbReply(Buffer.from('\0\0\0\x20\xffSMBr', 'latin1')), { kind: 'smb1' });
    assert.deepEqual(parseSmbReply(Buffer.from('SSH-2.0-x\r\n')), { kind: 'other' });
    // A NetBIOS negative session response (RFC 1002 4.3.4), as Samba sends to a host it denies.
    assert.deepEqual(parseSmbReply(Buffer.from([0x83, 0, 0, 1, 0x81])), { kind: 'refused', code: 0x81 });
    assert.deepEqual(parseSmbReply(Buffer.from([0x83, 0, 0])), { kind: 'incomplete' });
  });

  it('RDP X.224 Connection Request, and a Connection Confirm', () => {
    const cr = x224ConnectionRequest();
    assert.equal(cr.length, cr.readUInt16BE(2));
    assert.equal(cr[5], 0xe0);
    const cc = Buffer.from([3, 0, 0, 19, 14, 0xd0, 0, 0, 0x12, 0x34, 0, 2, 0, 8, 0, 2, 0, 0, 0]);
    assert.deepEqual(parseX224(cc), { kind: 'confirm', selected: 'CredSSP' });
    assert.deepEqual(parseX224(cc.subarray(0, 3)), { kind: 'incomplete' });
    assert.deepEqual(parseX224(Buffer.from('HTTP/1.1 400')), { kind: 'other' });
  });

  it('DCE/RPC bind to the endpoint mapper, and a bind_ack', () => {
    const bind = epmBind();
    assert.equal(bind.length, 72);
    assert.equal(bind.readUInt16LE(8), 72);
    // e1af8308-5d1f-11c9-91a4-08002b14a0fa in NDR byte order
    assert.equal(bind.subarray(32, 48).toString('hex'), '0883afe11f5dc91191a408002b14a0fa');
    const ack = Buffer.alloc(60);
    ack.set([5, 0, 12, 3, 0x10, 0, 0, 0]);
    ack.writeUInt16LE(60, 8);
    ack.writeUInt16LE(4, 24);
    ack.write('135\0', 26, 'latin1');
    ack[32] = 1; // one result
    ack.writeUInt16LE(0, 36); // acceptance
    assert.deepEqual(parseBindReply(ack), { kind: 'bind_ack', accepted: true, secondaryAddress: '135' });
    const nak = Buffer.from(ack);
    nak[2] = 13;
    assert.deepEqual(parseBindReply(nak), { kind: 'bind_nak' });
  });

  it('identifies banners for wrong-service details', () => {
    assert.match(identify(Buffer.from('SSH-2.0-OpenSSH_9.2\r\n')) ?? '', /^an SSH server/);
    assert.match(identify(Buffer.from('HTTP/1.1 200 OK\r\n')) ?? '', /^a plain HTTP server/);
    assert.equal(identify(Buffer.from([0x15, 0x03, 0x01, 0, 2, 2, 40])), 'a TLS server');
    assert.equal(
      identify(Buffer.from('220 VMware Authentication Daemon')),
      'the VMware authentication daemon',
    );
    assert.equal(identify(Buffer.alloc(0)), undefined);
  });
});

describe('probe decisions', () => {
  it('maps socket errors to verdicts as measured on Linux', () => {
    assert.equal(verdictForErrno('ECONNREFUSED'), 'closed');
    assert.equal(verdictForErrno('EHOSTUNREACH'), 'blocked');
    assert.equal(verdictForErrno('ENETUNREACH'), 'blocked');
    assert.equal(verdictForErrno('EACCES'), 'blocked');
    assert.equal(verdictForErrno('EMFILE'), undefined);
  });

  it('a flow takes its worst verdict; only the failing ones fail', () => {
    assert.equal(worst(['ok', 'open|filtered', 'filtered', 'closed']), 'filtered');
    assert.equal(worst(['ok', 'ok (responder)']), 'ok (responder)');
    assert.equal(worst([]), undefined);
    for (const v of ['ok', 'ok (responder)', 'open-unverified', 'open|filtered', 'skipped'] as const)
      assert.equal(isFailure(v), false);
    for (const v of [
      'wrong-service',
      'tls-weak',
      'tls-failed',
      'closed',
      'blocked',
      'filtered',
      'dns-failed',
    ] as const)
      assert.equal(isFailure(v), true);
  });

  it('chooses the application probe from the catalog service and TLS flag', () => {
    assert.equal(tcpKind(flow({ service: 'https' }), 443), 'https');
    assert.equal(tcpKind(flow({ service: 'veeam-transport', tls: true }), 6162), 'tls');
    assert.equal(tcpKind(flow({ service: 'vmware-nfc' }), 902), 'vmware-authd');
    assert.equal(tcpKind(flow({ service: 'smb' }), 139), 'plain');
    assert.equal(tcpKind(flow({ service: 'msrpc-dynamic' }), 49152), 'plain');
  });

  it('learns the timeout from answers, within the floor and the user timeout', () => {
    const e = new RttEstimator();
    assert.equal(e.timeout(100, 1000), 1000);
    for (let i = 0; i < 20; i++) e.add(0.2);
    assert.equal(e.timeout(100, 1000), 100);
    for (let i = 0; i < 20; i++) e.add(2000);
    assert.equal(e.timeout(100, 1000), 1000);
  });

  it('a sample one sweep thread adds sets the timeout every thread reads', async () => {
    // The table as a sweep pool shares it: a worker thread sees target 0 answer in 0.2 ms.
    const table = RttTable.create(2, true);
    assert.equal(table.timeout(0, 100, 1000), 1000);
    const rtt = new URL('../src/probe/rtt.js', import.meta.url).href;
    const worker = new Worker(
      `import { workerData, parentPort } from 'node:worker_threads';
       const { RttTable } = await import(${JSON.stringify(rtt)});
       const t = new RttTable(workerData);
       for (let i = 0; i < 20; i++) t.add(0, 0.2);
       parentPort.postMessage('done');`,
      { eval: true, workerData: table.memory, type: 'module' } as ConstructorParameters<typeof Worker>[1],
    );
    try {
      await new Promise((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
    } finally {
      await worker.terminate();
    }
    // This thread never saw an answer, and uses the learned timeout all the same.
    assert.equal(table.state(0).samples, 20);
    assert.equal(table.timeout(0, 100, 1000), 100);
    assert.equal(table.timeout(1, 100, 1000), 1000);
  });

  it("a target that has not answered takes its network's estimate only when asked to", () => {
    const targets = [
      { address: '10.1.2.3', family: 4 as const },
      { address: '10.1.2.200', family: 4 as const },
      { address: '10.1.3.1', family: 4 as const },
      { address: '2001:db8::1', family: 6 as const },
      { address: '2001:db8:0:0::ff', family: 6 as const },
      { address: '2001:db8:0:1::1', family: 6 as const },
    ];
    const { rowOf, rows } = networkRows(targets);
    // Rows after the six targets: 10.1.2/24, 10.1.3/24, 2001:db8::/64, 2001:db8:0:1::/64.
    assert.deepEqual([...rowOf], [6, 6, 7, 8, 8, 9]);
    assert.equal(rows, 10);
    const table = RttTable.create(rows, false);
    for (let i = 0; i < 20; i++) {
      table.add(0, 0.5);
      table.add(rowOf[0] as number, 0.5);
    }
    // 10.1.2.200 has no answer of its own: its network's estimate when asked, the user's timeout when not.
    assert.equal(table.timeout(1, 100, 1000, rowOf[1]), 100);
    assert.equal(table.timeout(1, 100, 1000), 1000);
    assert.equal(table.state(1).samples, 0);
    // Another network learns nothing from it.
    assert.equal(table.timeout(2, 100, 1000, rowOf[2]), 1000);
    // Its own answers win over the network's once it has some.
    for (let i = 0; i < 20; i++) table.add(1, 600);
    const own = table.timeout(1, 100, 1000, rowOf[1]);
    assert.ok(own >= 600 && own < 1000, `${own}`);
  });

  it("only a first round may wait a network's estimate; a port silent there is asked again without it", async () => {
    // A pool that records each round's job: the first round hears nothing, the next ones a reset.
    const seeded: boolean[] = [];
    const pool = {
      run: async (job: SweepJob) => {
        seeded.push(job.seedFromNetwork === true);
        const first = seeded.length === 1;
        return {
          status: new Int32Array(job.port.length).fill(first ? 0 : -111),
          rttMs: new Float32Array(job.port.length).fill(first ? Number.NaN : 0.3),
          rtt: job.targets.map(() => ({ srtt: Number.NaN, rttvar: 0, samples: 0 })),
        };
      },
    } as unknown as SweepPool;
    const items: ReachItem[] = ['10.1.2.3', '10.1.2.4'].map((address) => ({
      address,
      family: 4,
      protocol: 'tcp',
      port: 443,
      attempts: 0,
    }));
    await reach(items, {
      concurrency: 16,
      timeoutMs: 1000,
      minTimeoutMs: 100,
      attempts: 3,
      spacingMs: 0,
      retryBudgetMs: 0,
      pool,
    });
    assert.deepEqual(seeded, [true, false]);
    assert.deepEqual(
      items.map((i) => i.outcome?.kind === 'error' && i.outcome.errno),
      ['ECONNREFUSED', 'ECONNREFUSED'],
    );
  });

  it('expands small CIDRs host by host and refuses large ones', () => {
    assert.deepEqual(expandCidr('10.0.0.0/30'), ['10.0.0.1', '10.0.0.2']);
    assert.deepEqual(expandCidr('10.0.0.4/31'), ['10.0.0.4', '10.0.0.5']);
    assert.equal(expandCidr('10.0.0.0/24')?.length, 254);
    assert.equal(expandCidr('10.0.0.0/23'), undefined);
    assert.deepEqual(expandCidr('fd00::/127'), ['fd00:0:0:0:0:0:0:0', 'fd00:0:0:0:0:0:0:1']);
  });
});

describe('check reports', () => {
  const results = [
    ...Array.from({ length: 10 }, (_, i) => port(2500 + i, i === 4 ? 'ok (responder)' : 'filtered')),
  ];
  const fr: FlowResult = {
    flow: flow(),
    verdict: 'filtered',
    failed: true,
    addresses: ['10.0.0.2'],
    results,
    hint: 'allow it (needed by lab: 004.txt ports table, row 3)',
  };
  const report: CheckReport = {
    site: 'east <dc> & "west"',
    from: ['a'],
    how: '--from a',
    startedAt: '2026-01-01T00:00:00.000Z',
    durationMs: 1234,
    results: [
      fr,
      {
        flow: flow({
          id: 'x',
          to: { host: null, role: null, address: null, description: 'any <peer>\u0007' },
          ports: [[443, 443]],
        }),
        verdict: 'skipped',
        failed: false,
        addresses: [],
        results: [],
        reason: 'unspecified <peer>',
        hint: 'nothing',
      },
    ],
    failed: true,
    counts: { filtered: 9, 'ok (responder)': 1, skipped: 1 },
  };

  it('collapses consecutive ports with one verdict into runs, covering every port', () => {
    const r = runs(results);
    assert.deepEqual(
      r.map((x) => [x.ports, x.verdict]),
      [
        [[2500, 2503], 'filtered'],
        [[2504, 2504], 'ok (responder)'],
        [[2505, 2509], 'filtered'],
      ],
    );
  });

  it('summarizes a range: counts, the majority verdict, the exceptions', () => {
    const [s] = summarize(fr);
    assert.deepEqual(s?.counts, { filtered: 9, 'ok (responder)': 1 });
    assert.equal(s?.verdict, 'filtered');
    assert.deepEqual(
      s?.exceptions.map((e) => e.port),
      [2504],
    );
    assert.match(
      checkTable(report, { color: false }),
      /10\.0\.0\.2 2500-2509: 9 filtered, 1 ok \(responder\) \(2504 ok \(responder\)\)/,
    );
  });

  it('escapes JUnit XML and drops characters XML cannot carry', () => {
    assert.equal(xml('a<b>&"c\'\u0007d'), 'a&lt;b&gt;&amp;&quot;c&apos;d');
    const out = checkJunit(report);
    assert.match(
      out,
      /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<testsuites name="portolan check" tests="2" failures="1" errors="0" skipped="1"/,
    );
    assert.match(out, /<testsuite name="east &lt;dc&gt; &amp; &quot;west&quot; from a"/);
    assert.match(out, /<skipped message="unspecified &lt;peer&gt;"\/>/);
    assert.doesNotMatch(out, /\u0007/);
    // Every < starts a tag: nothing unescaped leaked into text or attributes.
    for (const m of out.matchAll(/<([^>]*)>/g)) assert.match(m[1] as string, /^(\?xml|\/?[a-z-]+)( |\/|$)/);
  });

  it('JSON carries the plan fields, the verdict and runs that cover every probed port', () => {
    const doc = JSON.parse(checkJson(report)) as {
      failed: boolean;
      flows: { verdict: string; sources: unknown[]; results: { ports: [number, number] }[] }[];
    };
    assert.equal(doc.failed, true);
    const first = doc.flows[0];
    assert.equal(first?.verdict, 'filtered');
    assert.deepEqual(first?.sources, [{ doc: '004.txt', ref: 'ports table, row 3' }]);
    const covered = (first?.results ?? []).reduce((n, r) => n + r.ports[1] - r.ports[0] + 1, 0);
    assert.equal(covered, 10);
  });
});
