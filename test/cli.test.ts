import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BIN, collect, ROOT, runCli } from './helpers.js';

/** Runs the CLI without blocking the event loop (the peers below live in this process). */
function cli(args: readonly string[], env: Record<string, string> = {}) {
  return collect(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, NO_COLOR: '1', PORTOLAN_MAX_RATE: '0', ...env },
  });
}

const SERVER = '127.0.0.3';

describe("portolan probe: HOST PORTS with check's verdicts, scope exactly the command line", () => {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-cli-'));
  let ssh: net.Server;
  let sshPort = 0;
  let closedPort = 0;
  let silent: dgram.Socket;
  before(async () => {
    ssh = net.createServer((s) => {
      s.on('error', () => {});
      s.write('SSH-2.0-FakeSSH_1.0\r\n');
    });
    await new Promise<void>((r) => ssh.listen(0, SERVER, () => r()));
    sshPort = (ssh.address() as net.AddressInfo).port;
    const tmp = net.createServer();
    await new Promise<void>((r) => tmp.listen(0, SERVER, () => r()));
    closedPort = (tmp.address() as net.AddressInfo).port;
    await new Promise((r) => tmp.close(r));
    silent = dgram.createSocket('udp4');
    await new Promise<void>((r) => silent.bind(0, SERVER, () => r()));
  });
  after(() => {
    ssh.close();
    silent.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('an SSH service is ok with its banner as evidence; exit 0', async () => {
    const r = await cli(['probe', SERVER, String(sshPort), '--service', 'ssh', '--format', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.flows.length, 1);
    assert.equal(doc.flows[0].verdict, 'ok');
    assert.equal(doc.flows[0].results[0].evidence.banner, 'SSH-2.0-FakeSSH_1.0');
  });

  it('only the named ports are probed; a closed one fails with exit 1 and a hint', async () => {
    const r = await cli(['probe', SERVER, `${closedPort},${sshPort}`, '--format', 'json']);
    assert.equal(r.code, 1, r.stderr);
    const doc = JSON.parse(r.stdout);
    const probed = doc.flows[0].results
      .map((x: { ports: number[] }) => x.ports[0])
      .sort((a: number, b: number) => a - b);
    assert.deepEqual(
      probed,
      [closedPort, sshPort].sort((a, b) => a - b),
    );
    assert.equal(doc.flows[0].verdict, 'closed');
    assert.match(doc.flows[0].hint, /nothing listens on tcp\/\d+ on 127\.0\.0\.3/);
    // Both counts, named: per port and per flow.
    assert.deepEqual(doc.portCounts, { closed: 1, 'open-unverified': 1 });
    assert.deepEqual(doc.flowCounts, { closed: 1 });
  });

  it('speaks as probe: no --from warning about "this machine", the planned line named probe', async () => {
    const r = await cli(['probe', SERVER, String(sshPort), '--service', 'ssh', '--format', 'json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr.trim(), 'portolan probe: 1 flow, 1 address, 1 probe planned (limit 262144)');
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.how, 'the command line');
    assert.equal(doc.warnings, undefined);
  });

  it('/udp: a silent socket is open|filtered, not a failure', async () => {
    const port = silent.address().port;
    const r = await cli(['probe', SERVER, `${port}/udp`, '--format', 'json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).flows[0].verdict, 'open|filtered');
  });

  it('the table on stdout while -o writes JSON and --output-dir writes json, junit and text', async () => {
    const file = join(dir, 'out.json');
    const outDir = join(dir, 'all');
    const r = await cli([
      'probe',
      SERVER,
      String(closedPort),
      '--format',
      'table',
      '-o',
      file,
      '--output-dir',
      outDir,
    ]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /^portolan probe 127\.0\.0\.3/);
    assert.equal(JSON.parse(readFileSync(file, 'utf8')).flows[0].verdict, 'closed');
    assert.equal(JSON.parse(readFileSync(join(outDir, 'check.json'), 'utf8')).flows[0].verdict, 'closed');
    assert.match(readFileSync(join(outDir, 'check.xml'), 'utf8'), /<failure type="closed"/);
    assert.match(readFileSync(join(outDir, 'check.txt'), 'utf8'), /1 flow: 1 closed; 1 failed/);
  });

  it('bad HOST, PORTS or --service: one line, exit 2', () => {
    for (const args of [
      ['probe', '10.0.0.1:22', '22'],
      ['probe', '127.0.0.1', '0'],
      ['probe', '127.0.0.1', '22', '--service', 'shh'],
      ['probe', '127.0.0.1'],
    ]) {
      const r = runCli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^portolan: /);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    }
    assert.match(runCli(['probe', '127.0.0.1', '22', '--service', 'shh']).stderr, /did you mean "ssh"/);
  });

  it('a CIDR of more than 256 addresses is refused before anything is planned or probed: exit 2, one line', () => {
    // 127.0.0.0/16 is loopback and 192.0.2.0/23 is TEST-NET-1: nothing could leave even if the check failed.
    for (const [cidr, size, most] of [
      ['127.0.0.0/16', 65536, '/24'],
      ['192.0.2.0/23', 512, '/24'],
      ['::/64', 18446744073709551616n, '/120'],
    ] as const) {
      const r = runCli(['probe', cidr, '22', '--format', 'json']);
      assert.equal(r.code, 2, `${cidr}: ${r.stderr}`);
      assert.equal(r.stdout, '');
      assert.equal(
        r.stderr,
        `portolan: probe: HOST "${cidr}" has ${size} addresses; probe takes at most 256 (a ${most} or smaller): give a smaller range or list the hosts in an inventory and use check\n`,
      );
      assert.doesNotMatch(r.stderr, /planned/);
    }
  });

  it('a missing argument is counted in the singular: "got 1 argument"', () => {
    const r = runCli(['probe', '127.0.0.1']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^portolan: expected HOST and PORTS, got 1 argument\n/);
  });

  it('a port range whose low port is above its high port says so, for probe PORTS and check --port', () => {
    const said = `the range's low port is above its high port (expected low-high, e.g. 20-80)`;
    const probe = runCli(['probe', '127.0.0.1', '80-20']);
    assert.equal(probe.code, 2);
    assert.equal(probe.stderr.split('\n')[0], `portolan: PORTS "80-20": ${said}`);
    const list = runCli(['probe', '127.0.0.1', '22,80-20']);
    assert.equal(list.code, 2);
    assert.equal(list.stderr.split('\n')[0], `portolan: PORTS "22,80-20": "80-20": ${said}`);
    const check = runCli(['check', 'examples/mixed-site.yaml', '--port', '80-20']);
    assert.equal(check.code, 2);
    assert.equal(check.stderr.split('\n')[0], `portolan: --port "80-20": ${said}`);
  });
});

describe('portolan probe: each port of a list or range gets its own well-known service', () => {
  // An address of this run's own in 127/8, so a parallel test's listener on 22 or 443 is not met.
  const HOST = `127.${20 + (process.pid % 200)}.${(process.pid >> 8) % 250}.22`;
  const servers: net.Server[] = [];
  before(async () => {
    for (const port of [22, 443]) {
      const http = net.createServer((s) => {
        s.on('error', () => {});
        s.once('data', () => s.end('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n'));
      });
      await new Promise<void>((r) => http.listen(port, HOST, () => r()));
      servers.push(http);
    }
  });
  after(() => {
    for (const s of servers) s.close();
  });

  for (const ports of ['22', '22,23', '20-23', '22,443']) {
    it(`probe HOST ${ports}: the HTTP server on tcp/22 is wrong-service (expected SSH); exit 1`, async () => {
      const r = await cli(['probe', HOST, ports, '--format', 'json']);
      assert.equal(r.code, 1, r.stderr);
      const doc = JSON.parse(r.stdout);
      const ssh = doc.flows.find((f: { service: string }) => f.service === 'ssh');
      assert.ok(ssh, `no ssh flow in ${doc.flows.map((f: { id: string }) => f.id)}`);
      assert.deepEqual(ssh.ports, [[22, 22]]);
      assert.equal(ssh.verdict, 'wrong-service');
      for (const f of doc.flows) if (f !== ssh) assert.notDeepEqual(f.ports, [[22, 22]]);
    });
  }

  it('probe HOST 22,443: tcp/443 expects https; 20-23 keeps 20-21 and 23 in one plain flow', async () => {
    const both = JSON.parse((await cli(['probe', HOST, '22,443', '--format', 'json'])).stdout);
    assert.deepEqual(
      both.flows.map((f: { service: string; ports: number[][] }) => [f.service, f.ports]),
      [
        ['ssh', [[22, 22]]],
        ['https', [[443, 443]]],
      ],
    );
    const range = JSON.parse((await cli(['probe', HOST, '20-23', '--format', 'json'])).stdout);
    assert.deepEqual(
      range.flows.map((f: { service: string; ports: number[][] }) => [f.service, f.ports]),
      [
        [
          'plain',
          [
            [20, 21],
            [23, 23],
          ],
        ],
        ['ssh', [[22, 22]]],
      ],
    );
  });

  it('--service names one service for every port: one flow', async () => {
    const r = await cli(['probe', HOST, '22,443', '--service', 'http', '--format', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.flows.length, 1);
    assert.equal(doc.flows[0].service, 'http');
    assert.equal(doc.flows[0].verdict, 'ok');
  });
});

describe('hints', () => {
  it('name the whole range, the catalog purpose, and the first citation with a count of the rest', async () => {
    const { hintFor } = await import('../src/probe/verdict.js');
    const flow = {
      id: 'f',
      product: 'veeam-proxmox',
      from: { host: 'w', role: 'worker', address: '10.0.0.1' },
      to: { host: 'pve', role: 'proxmox-server', address: '10.0.0.2' },
      protocol: 'tcp' as const,
      ports: [[2500, 3300]] as [number, number][],
      service: 'https',
      tls: true,
      purpose: 'The worker talks to the REST API service on the Proxmox VE server.',
      sources: [
        { doc: 'a.txt', ref: 'table 1 row 2' },
        { doc: 'b.txt', ref: 'table 3 row 4' },
        { doc: 'c.txt', ref: 'table 5 row 6' },
      ],
      notes: [],
      entries: [],
      local: false,
    };
    const example = {
      address: '10.0.0.2',
      port: 2500,
      protocol: 'tcp' as const,
      verdict: 'closed' as const,
      detail: '',
      evidence: {},
    };
    const hint = hintFor(flow, 'closed', example, [[2500, 3300]]);
    assert.match(hint, /tcp\/2500-3300 on 10\.0\.0\.2/);
    assert.match(hint, /REST API service on the Proxmox VE server/);
    assert.match(hint, /a\.txt table 1 row 2 \(\+2 more, see --format json\)/);
    assert.doesNotMatch(hint, /b\.txt/);
    // A reset once the signed probe was sent is also what a responder with another secret does.
    const signed = {
      ...example,
      verdict: 'reset-after-connect' as const,
      detail: 'connected, then reset (ECONNRESET) once the 98-byte signed probe was sent, with no reply',
    };
    const reset = hintFor(flow, 'reset-after-connect', signed, [[2500, 2500]]);
    assert.match(reset, /IPS or application-aware firewall between w and pve/);
    assert.match(reset, /a portolan responder also closes a probe signed with another secret this way/);
    assert.doesNotMatch(
      hintFor(flow, 'reset-after-connect', { ...signed, detail: 'reset after the TLS ClientHello' }),
      /another secret/,
    );
    // A responder that answered nothing may only have been busy the whole time: the hint says so
    // rather than only "not running".
    const silent = hintFor(
      flow,
      'open-unverified',
      {
        ...example,
        verdict: 'open-unverified' as const,
        detail: 'TCP connect; no portolan responder answered',
      },
      [[2500, 2500]],
      true,
    );
    assert.match(silent, /portolan listen is not answering on tcp\/2500 on 10\.0\.0\.2/);
    assert.match(silent, /busy for the whole check/);
    // A signed check refused: listen not running leads, unless it answered other ports there.
    const refused = { ...example, port: 22, verdict: 'closed' as const };
    assert.match(
      hintFor(flow, 'closed', refused, [[22, 22]], true),
      /not even the portolan responder: portolan listen is not running on pve \(no port of 10\.0\.0\.2 answered a signed probe\), or it did not bind this port/,
    );
    assert.match(
      hintFor(flow, 'closed', refused, [[22, 22]], true, true),
      /not even the portolan responder: portolan listen on pve answered other ports of 10\.0\.0\.2 but did not bind this one \(its "not bound on" lines say why/,
    );
  });
});

describe('portolan --help', () => {
  it('names --version, which prints the package version', () => {
    const help = runCli(['--help']);
    assert.match(help.stdout, /"portolan --version" prints the version/);
    const v = runCli(['--version']);
    assert.equal(v.code, 0);
    assert.equal(v.stdout.trim(), JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
  });
});

describe('probe hints', () => {
  it('speak of probe, the command the user ran, never of check', async () => {
    const { hintFor, SIGNED_CLOSED, SILENT_SERVICE, VERDICT_ORDER } = await import('../src/probe/verdict.js');
    const flow = {
      id: 'probe 10.0.0.2 tcp https',
      product: 'probe',
      from: { host: 'this machine', role: 'prober', address: '' },
      to: { host: '10.0.0.2', role: 'target', address: '10.0.0.2' },
      protocol: 'tcp' as const,
      ports: [[443, 443]] as [number, number][],
      service: 'https',
      tls: true,
      purpose: 'named on the command line',
      sources: [{ doc: 'the command line', ref: 'portolan probe 10.0.0.2 443' }],
      notes: [],
      entries: [],
      local: false,
    };
    const details = [
      '',
      `${SIGNED_CLOSED}; then connected, then reset`,
      `${SILENT_SERVICE}SSH identification line came back`,
      'connected, then reset (ECONNRESET) once the 98-byte signed probe was sent, with no reply',
    ];
    for (const verdict of VERDICT_ORDER)
      for (const detail of details)
        for (const signed of [false, true]) {
          const hint = hintFor(
            flow,
            verdict,
            { address: '10.0.0.2', port: 443, protocol: 'tcp', verdict, detail, evidence: {} },
            [[443, 443]],
            signed,
          );
          assert.doesNotMatch(
            hint,
            /\bcheck --secret|give check|this check|whole check|check again/,
            `${verdict}: ${hint}`,
          );
        }
    const mismatch = hintFor(
      flow,
      'open-unverified',
      {
        address: '10.0.0.2',
        port: 443,
        protocol: 'tcp',
        verdict: 'open-unverified',
        detail: SIGNED_CLOSED,
        evidence: {},
      },
      [[443, 443]],
      true,
    );
    assert.match(mismatch, /give probe the secret that listen on 10\.0\.0\.2 printed/);
  });
});

describe('help and "did you mean"', () => {
  /** Every option each command takes: its --help must list all of them. */
  const OPTIONS: Record<string, string[]> = {
    plan: ['--format', '--lang'],
    catalog: ['--format', '--lang'],
    validate: [],
    export: ['--to', '--host', '--network', '--output'],
    check: [
      '--from',
      '--as',
      '--to',
      '--port',
      '--format',
      '--output',
      '--output-dir',
      '--secret',
      '--timeout',
      '--concurrency',
      '--retry-budget',
      '--workers',
    ],
    probe: [
      '--service',
      '--secret',
      '--name',
      '--format',
      '--output',
      '--output-dir',
      '--timeout',
      '--concurrency',
      '--retry-budget',
      '--workers',
    ],
    init: ['--site', '--output'],
  };
  for (const [cmd, options] of Object.entries(OPTIONS))
    it(`${cmd} --help lists every option, and "portolan help ${cmd}" prints the same`, () => {
      const r = runCli([cmd, '--help']);
      assert.equal(r.code, 0);
      for (const o of [...options, '--catalog', '--no-color', '--debug', '--help'])
        assert.ok(r.stdout.includes(o), `${cmd} --help does not mention ${o}`);
      assert.ok(r.stdout.split('\n').length > 5, `${cmd} --help is only a usage line`);
      assert.equal(runCli(['help', cmd]).stdout, r.stdout);
    });

  it("check's synopsis names --to --port --timeout --concurrency", () => {
    const synopsis = runCli(['check', '--help']).stdout.split('\n\n')[0] as string;
    for (const o of ['--to', '--port', '--timeout', '--concurrency', '--output-dir'])
      assert.ok(synopsis.includes(o), o);
  });

  it('suggests the flag, host, format and command meant', () => {
    const cases: [string[], RegExp][] = [
      [
        ['plan', 'examples/mixed-site.yaml', '--fromat', 'json'],
        /unknown option --fromat \(did you mean --format\?\)/,
      ],
      [['check', 'examples/mixed-site.yaml', '--from', 'prox-01'], /did you mean "proxy-01"\?/],
      [['export', 'examples/mixed-site.yaml', '--to', 'nft'], /did you mean "nftables"\?/],
      [['export', 'examples/mixed-site.yaml', '--to', 'csv', '--host', 'sql01'], /did you mean "sql-01"\?/],
      [['plan', 'examples/mixed-site.yaml', '--format', 'jsn'], /did you mean "json"\?/],
      [['chek'], /unknown command "chek" \(did you mean "check"\?\)/],
      [['catalog', 'veeam-proxmx'], /did you mean "veeam-proxmox"\?/],
    ];
    for (const [args, re] of cases) {
      const r = runCli(args);
      assert.equal(r.code, 2, args.join(' '));
      assert.match(r.stderr, re);
    }
  });
});

describe('portolan init', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-init-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a commented skeleton with every role, fact, feature and setting, and it validates', () => {
    const products = JSON.parse(runCli(['catalog', '--format', 'json']).stdout) as {
      product: string;
      roles: Record<string, unknown>;
      features?: Record<string, unknown>;
      settings?: Record<string, unknown>;
      facts?: Record<string, Record<string, unknown>>;
    }[];
    const file = join(dir, 'site.yaml');
    const r = runCli(['init', ...products.map((p) => p.product), '--site', 'lab-1', '-o', file]);
    assert.equal(r.code, 0, r.stderr);
    const text = readFileSync(file, 'utf8');
    for (const p of products) {
      for (const role of Object.keys(p.roles)) assert.ok(text.includes(`${p.product}:${role}]`), role);
      for (const f of Object.keys(p.features ?? {})) assert.match(text, new RegExp(`#\\s+${f}: `), f);
      for (const s of Object.keys(p.settings ?? {})) assert.match(text, new RegExp(`# ${s}: `), s);
      for (const facts of Object.values(p.facts ?? {}))
        for (const f of Object.keys(facts)) assert.match(text, new RegExp(`^\\s+${f}: `, 'm'), f);
    }
    const v = runCli(['validate', file]);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /ok \(site lab-1/);
    assert.equal(v.stderr, '');
    const plan = runCli(['plan', file, '--format', 'json']);
    assert.equal(plan.code, 0, plan.stderr);
    assert.ok(JSON.parse(plan.stdout).flows.length > 0);
  });

  it('a one-product skeleton validates with no warning: every placeholder host is part of the plan', () => {
    const products = JSON.parse(runCli(['catalog', '--format', 'json']).stdout) as { product: string }[];
    assert.ok(products.length >= 3);
    for (const { product } of products) {
      const file = join(dir, `${product}.yaml`);
      assert.equal(runCli(['init', product, '-o', file]).code, 0, product);
      const v = runCli(['validate', file]);
      assert.equal(v.code, 0, v.stderr);
      assert.equal(v.stderr, '', `${product}: ${v.stderr}`);
    }
  });

  it('-o keeps an existing file unless --force: an edited inventory is never replaced silently', () => {
    const file = join(dir, 'edited.yaml');
    writeFileSync(file, 'site: edited-by-hand\n');
    const r = runCli(['init', 'veeam-proxmox', '-o', file]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^portolan: -o ".*edited\.yaml": the file exists .*give --force to overwrite it/);
    assert.equal(readFileSync(file, 'utf8'), 'site: edited-by-hand\n');
    const forced = runCli(['init', 'veeam-proxmox', '-o', file, '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(
      readFileSync(file, 'utf8'),
      /^# Site inventory skeleton written by portolan init for: veeam-proxmox\./,
    );
  });

  it('an unknown product is refused with a suggestion', () => {
    const r = runCli(['init', 'platespn']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /did you mean "platespin"\?/);
  });
});

describe('validate', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-validate-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('reports every error in the file, each with file:line:col, and exits 2', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      [
        'site: bad',
        'products:',
        '  platespin: { version: "2019.5", colour: red }',
        '  nope: {}',
        'hosts:',
        '  a: { address: 10.0.0.300, roles: [platespin:platespin-server] }',
        '  b: { address: 10.0.0.2, roles: [platespin:sorce] }',
        '  c: { address: 10.0.0.3, roles: [platespin:source], facts: { os: beos } }',
        '',
      ].join('\n'),
    );
    const r = runCli(['validate', file]);
    assert.equal(r.code, 2);
    for (const where of [':3:35 ', ':4:3 ', ':6:17 ', ':7:35 ', ':8:67 '])
      assert.ok(r.stderr.includes(`${file}${where}`), `no error at ${where}:\n${r.stderr}`);
    assert.match(r.stderr, /5 errors/);
    // Other commands print one line: the first error and the count.
    const plan = runCli(['plan', file]);
    assert.equal(plan.code, 2);
    assert.equal(plan.stderr.trim().split('\n').length, 1);
    assert.match(plan.stderr, /and 4 more errors: portolan validate lists them all/);
  });

  it('warns where a host gets no flows because a fact is missing', () => {
    const file = join(dir, 'warn.yaml');
    writeFileSync(
      file,
      'site: w\nproducts:\n  platespin: { version: "2019.5" }\nhosts:\n  a: { address: 10.0.0.1, roles: [platespin:platespin-server] }\n  c: { address: 10.0.0.3, roles: [platespin:source] }\n',
    );
    const r = runCli(['validate', file]);
    assert.equal(r.code, 0, r.stderr);
    // One located line per host: the fact, its values, the entries it holds back.
    assert.match(
      r.stderr,
      /^.*warn\.yaml:6:3 hosts\.c: warning: host c gets fewer flows: its facts do not give os \(one of: windows, linux, [^)]*\); entries platespin server-to-source-ssh-discovery, .* need it \(add it under hosts\.c\.facts\)$/m,
    );
    assert.ok(!/skipped: the inventory does not give to\.facts\.os/.test(r.stderr), r.stderr);
    // A host left with no flows at all says so.
    const none = join(dir, 'none.yaml');
    writeFileSync(
      none,
      'site: n\nproducts:\n  druva-vmware: { features: [dr-restore] }\nhosts:\n  p: { address: 10.0.0.1, roles: [druva-vmware:backup-proxy] }\n  g: { address: 10.0.0.2, roles: [druva-vmware:guest] }\n',
    );
    const n = runCli(['validate', none]);
    assert.equal(n.code, 0, n.stderr);
    assert.match(
      n.stderr,
      /none\.yaml:6:3 hosts\.g: warning: host g gets no flows: its facts do not give os \(one of: windows, linux\)/,
    );
    assert.ok(!/host g has no flows in this plan/.test(n.stderr), n.stderr);
  });

  it('says every warning in one form: located at the host it is about, "warning:" after the place', () => {
    const file = join(dir, 'lone.yaml');
    writeFileSync(
      file,
      'site: lone\nproducts:\n  platespin: { version: "2.5", edition: forge }\nhosts:\n  ps: { address: 10.0.0.1, roles: [platespin:platespin-server] }\n',
    );
    const r = runCli(['validate', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^\S*lone\.yaml:5:3 hosts\.ps: warning: host ps has no flows in this plan$/m);
    for (const line of r.stderr.trim().split('\n'))
      assert.match(line, /^\S+(:\d+:\d+ \S+)?: warning: /, line);
  });

  it('warns about what plan warns about in the inventory: roles without hosts, settings and facts the catalog warns of', () => {
    // The README's inventory snippet: three products, four hosts, many roles with no host.
    const file = join(dir, 'roles.yaml');
    writeFileSync(
      file,
      [
        'site: east-dc',
        'products:',
        '  druva-vmware:  { features: [app-aware-sql, dr-restore] }',
        '  veeam-proxmox: { features: [log-shipping] }',
        'hosts:',
        '  proxy-01: { address: 10.10.0.21, roles: [druva-vmware:backup-proxy] }',
        '  sql-01:   { address: 10.20.0.5, roles: [druva-vmware:guest, veeam-proxmox:guest], facts: { os: windows } }',
        '',
      ].join('\n'),
    );
    const r = runCli(['validate', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /: ok \(site east-dc/);
    const lines = r.stderr.trim().split('\n');
    assert.ok(
      lines.includes(
        `${file}:3:3 products.druva-vmware: warning: no host has role druva-vmware:cloudcache; its 2 catalog entries yield no flows`,
      ),
      r.stderr,
    );
    assert.ok(
      lines.includes(
        `${file}:4:3 products.veeam-proxmox: warning: no host has role veeam-proxmox:backup-server; its 22 catalog entries yield no flows`,
      ),
      r.stderr,
    );
    // The catalogs' own warnings about the inventory's choices: a setting, a fact left out.
    assert.ok(
      lines.some((l) =>
        l.startsWith(
          `${file}:4:3 products.veeam-proxmox: warning: veeam-proxmox: log-shipping is on but app-aware is off`,
        ),
      ),
      r.stderr,
    );
    assert.ok(
      lines.some((l) =>
        l.startsWith(
          `${file}:7:3 hosts.sql-01: warning: druva-vmware: guest sql-01 runs Windows but does not give its databases`,
        ),
      ),
      r.stderr,
    );
    // Every inventory warning plan gives, validate gives; advisories and names to allow are plan's.
    const plan = runCli(['plan', file, '--format', 'json']);
    const warned = (JSON.parse(plan.stdout) as { warnings: { code: string; message: string }[] }).warnings;
    for (const w of warned)
      assert.equal(
        r.stderr.includes(w.message),
        w.code !== 'advisory' && !w.code.endsWith('-names'),
        `${w.code}: ${w.message}`,
      );
    for (const line of lines) assert.match(line, /^\S+(:\d+:\d+ \S+)?: warning: /, line);
  });

  it('reports every schema error too (not only the first), with the catalog errors, in file order', () => {
    const file = join(dir, 'schema.yaml');
    writeFileSync(
      file,
      [
        'site: s',
        'colour: blue',
        'products:',
        '  druva-vmware: { features: [app-aware-sqll] }',
        'hosts:',
        '  p: { address: 10.0.0.1, roles: druva-vmware:backup-proxy }',
        '  w: { adress: 10.0.0.8, roles: [druva-vmware:guest], colour: red }',
        '  e: { address: 10.0.0.5, roles: [druva-vmware:esxy] }',
        '  s: { address: 10.0.0.6, roles: [] }',
        '',
      ].join('\n'),
    );
    // A top-level schema error stops before the catalogs: every schema error, nothing else.
    const r = runCli(['validate', file]);
    assert.equal(r.code, 2);
    const lines = r.stderr.trim().split('\n');
    assert.deepEqual(
      lines
        .slice(0, -1)
        .map((l) => /^portolan: .*schema\.yaml:(\d+:\d+) (\S+): /.exec(l)?.slice(1, 3).join(' ')),
      ['2:1 colour', '6:34 hosts.p.roles', '7:8 hosts.w.adress', '7:55 hosts.w.colour', '9:34 hosts.s.roles'],
      r.stderr,
    );
    assert.match(lines.at(-1) ?? '', /schema\.yaml: 5 errors$/);
    // Without the top-level key, the hosts' schema errors and the catalog errors come together.
    writeFileSync(file, readFileSync(file, 'utf8').replace('colour: blue\n', ''));
    const both = runCli(['validate', file]);
    assert.equal(both.code, 2);
    const got = both.stderr.trim().split('\n');
    assert.deepEqual(
      got
        .slice(0, -1)
        .map((l) => /^portolan: .*schema\.yaml:(\d+:\d+) (\S+): /.exec(l)?.slice(1, 3).join(' ')),
      [
        '3:30 products.druva-vmware.features[0]',
        '5:34 hosts.p.roles',
        '6:8 hosts.w.adress',
        '6:55 hosts.w.colour',
        '7:35 hosts.e.roles[0]',
        '8:34 hosts.s.roles',
      ],
      both.stderr,
    );
    assert.ok(
      got.every((l) => !/^\s+at /.test(l)),
      'no stack trace',
    );
  });
});

describe('plan -o FILE', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-plan-o-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes what stdout would get (json by default, or --format), with the summary and "wrote" on stderr', () => {
    const out = join(dir, 'plan.json');
    const r = runCli(['plan', 'examples/mixed-site.yaml', '-o', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^east-dc: 15 hosts, 46 flows .*\nwrote .*plan\.json\n$/m);
    const piped = runCli(['plan', 'examples/mixed-site.yaml', '--format', 'json']);
    assert.equal(readFileSync(out, 'utf8'), piped.stdout);
    const csv = join(dir, 'plan.csv');
    assert.equal(runCli(['plan', 'examples/mixed-site.yaml', '--format', 'csv', '--output', csv]).code, 0);
    assert.equal(
      readFileSync(csv, 'utf8'),
      runCli(['plan', 'examples/mixed-site.yaml', '--format', 'csv']).stdout,
    );
  });

  it('a bad -o is refused before the inventory is read; a failed plan leaves the file as it was', () => {
    const missing = runCli(['plan', 'no-such-site.yaml', '-o', join(dir, 'nope', 'plan.json')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^portolan: -o ".*nope\/plan\.json": the directory .*nope does not exist/);
    const kept = join(dir, 'kept.json');
    writeFileSync(kept, 'earlier plan\n');
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'site: x\nhosts: [\n');
    const r = runCli(['plan', bad, '-o', kept]);
    assert.equal(r.code, 2);
    assert.equal(readFileSync(kept, 'utf8'), 'earlier plan\n');
  });
});

describe('plan --lang ja: English warnings are marked with their code once', () => {
  it('"[advisory] platespin ...", not "[advisory] advisory platespin ..."', () => {
    const r = runCli(['plan', 'examples/mixed-site.yaml', '--lang', 'ja', '--format', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('warning: [advisory]'));
    assert.ok(lines.length > 0, r.stderr);
    assert.ok(
      lines.some((l) => l.startsWith('warning: [advisory] platespin server-to-source-ping not planned')),
      r.stderr,
    );
    for (const line of lines) assert.doesNotMatch(line, /^warning: \[advisory\] advisory /);
    for (const w of JSON.parse(r.stdout).warnings as { code: string; message: string }[])
      assert.doesNotMatch(w.message, /^\[([\w-]+)\] \1 /, w.message);
  });
});

describe('warnings reach every output', () => {
  // The mixed example with one fact taken away, so that a host-level warning exists beside the site-level one.
  let site = '';
  before(() => {
    const dir = mkdtempSync(join(tmpdir(), 'portolan-warn-'));
    site = join(dir, 'site.yaml');
    const text = readFileSync(join(ROOT, 'examples/mixed-site.yaml'), 'utf8');
    const stripped = text.replace(
      'roles: [druva-vmware:esxi], facts: { registration: vcenter } }',
      'roles: [druva-vmware:esxi] }',
    );
    assert.notEqual(stripped, text, 'the example still declares esx-b with its registration fact');
    writeFileSync(site, stripped);
  });
  after(() => rmSync(join(site, '..'), { recursive: true, force: true }));

  it('plan --format json and csv print each warning line on stderr', () => {
    for (const format of ['json', 'csv']) {
      const r = runCli(['plan', site, '--format', format]);
      assert.equal(r.code, 0);
      assert.match(r.stderr, /^warning: no host has role druva-vmware:cloudcache/m);
      assert.match(r.stderr, /^warning: host esx-b \(druva-vmware:esxi\) does not give fact registration/m);
    }
  });

  it('export prints them on stderr and the change requests carry them', () => {
    const csv = runCli(['export', site, '--to', 'csv']);
    assert.match(csv.stderr, /^warning: no host has role druva-vmware:cloudcache/m);
    assert.match(csv.stdout, /^rule,change,direction,/);
    assert.match(csv.stdout, /^"?# warning: no host has role druva-vmware:cloudcache/m);
    assert.match(
      csv.stdout,
      /^"# warning: rule forward-tcp-443-1: the destination is given by DNS name \(phoenix\.druva\.com/m,
    );
    for (const to of ['markdown', 'html']) {
      const r = runCli(['export', site, '--to', to]);
      assert.match(r.stdout, /Warnings and what is not covered/);
      assert.match(r.stdout, /does not give fact registration/);
    }
    const nft = runCli(['export', site, '--to', 'nftables']);
    assert.match(nft.stderr, /^warning: no host has role druva-vmware:cloudcache/m);
  });
});

describe('export --to flat-csv', () => {
  it('one row per source, destination, protocol and port range, header in row 1, no empty address', () => {
    const r = runCli(['export', 'examples/mixed-site.yaml', '--to', 'flat-csv']);
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout
      .trimEnd()
      .split('\r\n')
      .map((l) => l.split(','));
    assert.deepEqual(rows[0], [
      'rule',
      'action',
      'source',
      'destination',
      'protocol',
      'port_low',
      'port_high',
      'icmp_type',
      'services',
      'products',
    ]);
    for (const row of rows.slice(1)) {
      assert.equal(row.length, 10, row.join(','));
      assert.ok(row[2] && row[3], `an empty address reads as any: ${row.join(',')}`);
      if (row[4] !== 'icmp')
        assert.ok(Number(row[5]) >= 1 && Number(row[5]) <= Number(row[6]), row.join(','));
    }
    // 2500-3300 stays one row per address pair, not 801.
    assert.ok(rows.some((row) => row[5] === '2500' && row[6] === '3300'));
    // The peers the documents leave open get no row, and a warning.
    assert.match(r.stderr, /peers the documents leave unspecified get no row/);
  });
});

describe('module layering', () => {
  it('the plan imports nothing from export; no command imports main (no import cycle)', async () => {
    const { readdirSync } = await import('node:fs');
    const src = join(ROOT, 'src');
    for (const f of readdirSync(join(src, 'plan')))
      assert.doesNotMatch(
        readFileSync(join(src, 'plan', f), 'utf8'),
        /from '\.\.\/export\//,
        `src/plan/${f}`,
      );
    for (const f of readdirSync(join(src, 'cli')).filter((x) => x !== 'main.ts'))
      assert.doesNotMatch(readFileSync(join(src, 'cli', f), 'utf8'), /from '\.\/main\.js'/, `src/cli/${f}`);
  });
});

describe('colour', () => {
  it('FORCE_COLOR=0 turns colour off, FORCE_COLOR=1 on', () => {
    const env = { NO_COLOR: '' };
    const off = runCli(['catalog'], { env: { ...env, FORCE_COLOR: '0' } });
    assert.doesNotMatch(off.stdout, /\u001b\[/);
    const on = runCli(['catalog'], { env: { ...env, FORCE_COLOR: '1' } });
    assert.match(on.stdout, /\u001b\[1m/);
  });
});

describe('check: options are checked before the inventory and this machine', () => {
  for (const [option, value, expected] of [
    ['--timeout', 'abc', 'portolan: --timeout "abc" is not a whole number from 1 to 600000\n'],
    ['--workers', '0', 'portolan: --workers "0" is not a whole number from 1 to 64\n'],
  ] as const)
    it(`${option} ${value} without --from is the error shown, exit 2`, () => {
      // Without --from, check would otherwise first find this machine is no host of the site.
      const r = runCli(['check', `${ROOT}examples/platespin.yaml`, option, value]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, expected);
    });
});
