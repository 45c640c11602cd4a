import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, collect, ROOT } from './helpers.js';

/**
 * A two-namespace lab for `check` tests: a client namespace (where portolan runs) and a server
 * namespace (where the real peers and the nftables rules live), joined by one veth pair. Names
 * carry the test process id so parallel runs never collide; addresses are 10.213.<n>.0/24 and
 * fd00:213::/64 inside the namespaces only, so no probe can leave them. destroy() ends the
 * processes this lab started (by pid, then whatever is left in its namespaces) and deletes the
 * namespaces by name.
 */

export const IS_ROOT = process.getuid?.() === 0;

export function onPath(cmd: string): boolean {
  if (cmd.startsWith('/')) return existsSync(cmd);
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Why a lab test cannot run here, or undefined when it can. */
export function labUnavailable(cmds: readonly string[] = []): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (!IS_ROOT) return 'needs root for network namespaces and nftables (run npm test as root)';
  const gone = ['ip', 'nft', ...cmds].filter((c) => !onPath(c));
  return gone.length ? `missing ${gone.join(', ')} (scripts/test.sh installs them as root)` : undefined;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A fake peer for the services Debian has no server for; each line says which. */
export const FAKES = `
import net from 'node:net';
import dgram from 'node:dgram';
const [kind, host, port] = process.argv.slice(2);
const quiet = (s) => s.on('error', () => {});
if (kind === 'authd') // VMware authd greeting, as ESXi sends it on 902
  net.createServer((s) => { quiet(s); s.end('220 VMware Authentication Daemon Version 1.10: SSL Required, ServerDaemonProtocol:SOAP, MKSDisplayProtocol:VNC , VMXARGS supported, NFCSSL supported/t\\r\\n'); }).listen(+port, host);
if (kind === 'rdp') // X.224 Connection Confirm with RDP_NEG_RSP (TLS), as Windows answers on 3389
  net.createServer((s) => { quiet(s); s.once('data', (d) => d[0] === 3 && d[5] === 0xe0 ? s.end(Buffer.from([3,0,0,19, 14,0xd0,0,0,0x12,0x34,0, 2,0,8,0, 1,0,0,0])) : s.destroy()); }).listen(+port, host);
if (kind === 'tcp-silent') net.createServer(quiet).listen(+port, host);
if (kind === 'udp-silent') dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4').bind(+port, host);
`;

/** Labs of this process, removed on exit even when a signal ends the test run early. */
const live = new Set<Lab>();
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const lab of live) lab.destroySync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
    process.once(sig, () => {
      for (const lab of live) lab.destroySync();
      process.kill(process.pid, sig);
    });
}

/** Namespaces left by a lab whose test process died without its after() (killed by a timeout). */
function removeStale(): void {
  hookExit();
  const names = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  for (const line of names.split('\n')) {
    const m = /^pt(\d+)[a-z][cs]\b/.exec(line);
    if (!m) continue;
    let alive = true;
    try {
      process.kill(Number(m[1]), 0);
    } catch {
      alive = false;
    }
    if (!alive) spawnSync('ip', ['netns', 'del', line.split(/\s/)[0] as string], { stdio: 'ignore' });
  }
}

export class Lab {
  readonly client: string;
  readonly server: string;
  readonly dir: string;
  readonly clientIp: string;
  readonly serverIp: string;
  readonly client6 = 'fd00:213::1';
  readonly server6 = 'fd00:213::2';
  private readonly procs: { name: string; child: ChildProcess; log: string[] }[] = [];
  private readonly netnsDirs: string[] = [];

  private constructor(
    tag: string,
    readonly net: number,
  ) {
    const prefix = `pt${process.pid}${tag}`;
    this.client = `${prefix}c`;
    this.server = `${prefix}s`;
    this.clientIp = `10.213.${net}.1`;
    this.serverIp = `10.213.${net}.2`;
    this.dir = mkdtempSync(join(tmpdir(), `portolan-${prefix}-`));
  }

  /** Creates both namespaces and the veth pair between them. `net` picks 10.213.<net>.0/24. */
  static create(tag: string, net: number): Lab {
    removeStale();
    const lab = new Lab(tag, net);
    live.add(lab);
    const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
    try {
      ip('netns', 'add', lab.client);
      ip('netns', 'add', lab.server);
      ip('link', 'add', 'c0', 'netns', lab.client, 'type', 'veth', 'peer', 'name', 's0', 'netns', lab.server);
      ip('-n', lab.client, 'addr', 'add', `${lab.clientIp}/24`, 'dev', 'c0');
      ip('-n', lab.server, 'addr', 'add', `${lab.serverIp}/24`, 'dev', 's0');
      ip('-n', lab.client, 'addr', 'add', `${lab.client6}/64`, 'dev', 'c0', 'nodad');
      ip('-n', lab.server, 'addr', 'add', `${lab.server6}/64`, 'dev', 's0', 'nodad');
      for (const [ns, dev] of [
        [lab.client, 'c0'],
        [lab.server, 's0'],
      ] as const) {
        ip('-n', ns, 'link', 'set', 'lo', 'up');
        ip('-n', ns, 'link', 'set', dev, 'up');
      }
    } catch (err) {
      lab.destroySync();
      throw err;
    }
    writeFileSync(join(lab.dir, 'fakes.mjs'), FAKES);
    return lab;
  }

  /** Another address on the server side, e.g. 10.213.<n>.4 for a second host. */
  addServerAddress(address: string): void {
    const prefix = address.includes(':') ? 64 : 24;
    execFileSync('ip', [
      '-n',
      this.server,
      'addr',
      'add',
      `${address}/${prefix}`,
      'dev',
      's0',
      ...(prefix === 64 ? ['nodad'] : []),
    ]);
  }

  /**
   * Sets sysctls inside the server namespace (or the client's; network sysctls are per namespace),
   * via /proc/sys.
   */
  sysctl(values: Record<string, string>, where: 'server' | 'client' = 'server'): void {
    const ns = where === 'server' ? this.server : this.client;
    for (const [k, v] of Object.entries(values)) {
      const path = `/proc/sys/${k.replace(/\./g, '/')}`;
      execFileSync('ip', ['netns', 'exec', ns, 'sh', '-c', 'echo "$1" > "$2"', 'sh', v, path], {
        stdio: 'pipe',
      });
    }
  }

  /** Applies an nftables ruleset inside the server namespace. */
  nft(ruleset: string): void {
    const file = join(this.dir, 'rules.nft');
    writeFileSync(file, ruleset);
    execFileSync('ip', ['netns', 'exec', this.server, 'nft', '-f', file], { stdio: 'pipe' });
  }

  /**
   * /etc/hosts and resolv.conf as seen inside the client namespace (ip netns exec bind-mounts
   * /etc/netns/<ns>/*). The resolver points at the namespace's own loopback, where nothing
   * listens, so a name missing from hosts fails at once and no DNS query leaves the lab.
   */
  hosts(lines: readonly string[]): void {
    const d = `/etc/netns/${this.client}`;
    mkdirSync(d, { recursive: true });
    this.netnsDirs.push(d);
    writeFileSync(join(d, 'hosts'), `127.0.0.1 localhost\n${lines.join('\n')}\n`);
    writeFileSync(join(d, 'resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
  }

  /** Starts a peer in a namespace and waits until it listens on every address:port given. */
  async start(
    name: string,
    where: 'server' | 'client',
    cmd: readonly string[],
    listens: readonly { proto: 'tcp' | 'udp'; address: string; port: number }[],
  ): Promise<void> {
    const ns = where === 'server' ? this.server : this.client;
    // Its own process group: smbd and samba-dcerpcd signal their whole group when they stop, and
    // that must not be the test runner's.
    const child = spawn('ip', ['netns', 'exec', ns, ...cmd], {
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: this.dir,
      detached: true,
    });
    const log: string[] = [];
    child.stdout?.on('data', (d: Buffer) => log.push(d.toString()));
    child.stderr?.on('data', (d: Buffer) => log.push(d.toString()));
    this.procs.push({ name, child, log });
    // A hang guard only: the loop returns as soon as the peer listens. samba, postgres or sshd
    // starting beside a loaded CI run can take far longer than on an idle machine.
    const deadline = Date.now() + 120_000;
    for (;;) {
      const missing = listens.filter((l) => !this.listening(ns, l.proto, l.address, l.port));
      if (!missing.length) return;
      if (child.exitCode !== null || Date.now() > deadline)
        throw new Error(
          `${name} did not start listening on ${missing.map((m) => `${m.proto}/${m.address}:${m.port}`).join(', ')}: ${child.exitCode !== null ? `exited ${child.exitCode}` : 'timed out'}\n${log.join('').slice(-2000)}`,
        );
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * nginx in the server namespace (`nginx -p DIR/nginx`, one worker, no access log), its http
   * block holding SERVERS (`server { ... }` blocks, as nginx.conf has them); resolves once it
   * listens on every address:port of LISTENS.
   */
  startNginx(
    servers: string,
    listens: readonly { proto: 'tcp'; address: string; port: number }[],
  ): Promise<void> {
    const d = this.dir;
    mkdirSync(join(d, 'nginx'), { recursive: true });
    writeFileSync(
      join(d, 'nginx', 'nginx.conf'),
      `worker_processes 1; pid ${d}/nginx/nginx.pid; error_log ${d}/nginx/error.log; daemon off;
events { worker_connections 64; }
http { access_log off; client_body_temp_path ${d}/nginx/b; proxy_temp_path ${d}/nginx/p;
  fastcgi_temp_path ${d}/nginx/f; uwsgi_temp_path ${d}/nginx/u; scgi_temp_path ${d}/nginx/s;
${servers} }
`,
    );
    return this.start(
      'nginx',
      'server',
      ['nginx', '-p', join(d, 'nginx'), '-c', join(d, 'nginx', 'nginx.conf')],
      listens,
    );
  }

  /**
   * chronyd in the server namespace, an NTP server (stratum 8, its local clock) on ADDRESS port
   * 123 for the clients ALLOW names (`all`, or an address: chrony.conf's allow). -x: it never
   * touches the clock, which the namespaces share with the host.
   */
  startChronyd(address: string, allow: string): Promise<void> {
    const d = this.dir;
    writeFileSync(
      join(d, 'chrony.conf'),
      `local stratum 8\nallow ${allow}\nport 123\nbindaddress ${address}\ncmdport 0\nbindcmdaddress /\npidfile ${d}/chronyd.pid\ndriftfile ${d}/chrony.drift\n`,
    );
    return this.start(
      'chronyd',
      'server',
      ['chronyd', '-d', '-x', '-u', 'root', '-f', join(d, 'chrony.conf')],
      [{ proto: 'udp', address, port: 123 }],
    );
  }

  private listening(ns: string, proto: 'tcp' | 'udp', address: string, port: number): boolean {
    const out = spawnSync('ip', ['netns', 'exec', ns, 'ss', '-Hn', proto === 'tcp' ? '-lt' : '-lu'], {
      encoding: 'utf8',
    }).stdout;
    const want = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
    const wild = [`*:${port}`, `0.0.0.0:${port}`, `[::]:${port}`];
    return out.split('\n').some((line) => {
      const local = line.trim().split(/\s+/)[3] ?? '';
      return local === want || wild.includes(local) || local.startsWith(`${want}%`);
    });
  }

  /** Runs the real CLI inside the client namespace. */
  cli(
    args: readonly string[],
    opts: { env?: Record<string, string>; timeoutMs?: number } = {},
  ): Promise<CliResult> {
    return collect('ip', ['netns', 'exec', this.client, process.execPath, BIN, ...args], {
      cwd: ROOT,
      // No connect-rate cap (PORTOLAN_MAX_RATE=0) in the lab's own namespaces: nothing there to alarm,
      // and large ranges stay quick. The rate tests give --max-rate themselves.
      env: { ...process.env, NO_COLOR: '1', PORTOLAN_MAX_RATE: '0', ...opts.env },
      timeoutMs: opts.timeoutMs ?? 180000,
    });
  }

  /** Ends what this lab started and removes its namespaces. Safe to call twice. */
  async destroy(): Promise<void> {
    for (const p of this.procs) if (p.child.exitCode === null && p.child.pid) p.child.kill('SIGTERM');
    const deadline = Date.now() + 3000;
    while (
      this.procs.some((p) => p.child.exitCode === null && p.child.signalCode === null) &&
      Date.now() < deadline
    )
      await new Promise((r) => setTimeout(r, 50));
    this.destroySync();
  }

  destroySync(): void {
    live.delete(this);
    for (const p of this.procs)
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    for (const ns of [this.client, this.server]) {
      // Children of the peers (smbd's and samba-dcerpcd's helpers) live on in the namespace.
      const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout ?? '';
      for (const pid of pids.split(/\s+/).filter(Boolean))
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // already gone
        }
      spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    }
    for (const d of this.netnsDirs) rmSync(d, { recursive: true, force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The peer logs, for a failing assertion's message. */
  logs(): string {
    return this.procs.map((p) => `--- ${p.name}\n${p.log.join('').slice(-1500)}`).join('\n');
  }
}

/** One port's result from `check --format json`, expanded from the runs. */
export interface PortVerdict {
  verdict: string;
  detail: string;
  evidence: Record<string, unknown>;
  flow: string;
}

interface JsonRun {
  address: string;
  ports: [number, number];
  verdict: string;
  detail: string;
  evidence: Record<string, unknown>;
}

interface JsonFlow {
  id: string;
  protocol: string;
  verdict: string;
  reason?: string;
  hint: string;
  to: { host: string | null };
  results: JsonRun[];
}

export interface CheckJson {
  site: string;
  from: string[];
  how: string;
  failed: boolean;
  flows: JsonFlow[];
}

/**
 * The report of a `check --format json` run; a run that printed none fails with its exit code
 * (`code` from spawn, `status` from spawnSync), its output (the first 2000 characters) and stderr.
 */
/**
 * Writes FILE, an smb.conf for a samba peer (smbd, samba-dcerpcd) bound to ADDRESS alone, with its
 * state directories under STATE (made here), no NetBIOS and no printers. share: smbd's port 445 and
 * a [share] (STATE/share). extra: more [global] lines.
 */
export function writeSmbConf(
  file: string,
  state: string,
  address: string,
  opts: { share?: boolean; extra?: string } = {},
): void {
  const subs = ['private', 'lock', 'state', 'cache', 'pid', 'ncalrpc', ...(opts.share ? ['share'] : [])];
  for (const sub of subs) mkdirSync(join(state, sub), { recursive: true });
  const lines = [
    '[global]',
    '  workgroup = LAB',
    '  server role = standalone server',
    `  private dir = ${state}/private`,
    `  lock directory = ${state}/lock`,
    `  state directory = ${state}/state`,
    `  cache directory = ${state}/cache`,
    `  pid directory = ${state}/pid`,
    `  ncalrpc dir = ${state}/ncalrpc`,
    `  log file = ${state}/log.%m`,
    `  interfaces = ${address}`,
    '  bind interfaces only = yes',
    ...(opts.share ? ['  smb ports = 445'] : []),
    '  disable netbios = yes',
    '  rpc start on demand helpers = no',
    '  load printers = no',
    '  printcap name = /dev/null',
    ...(opts.extra !== undefined ? [`  ${opts.extra}`] : []),
    ...(opts.share ? ['[share]', `  path = ${state}/share`] : []),
  ];
  writeFileSync(file, `${lines.join('\n')}\n`);
}

export function checkJson(r: {
  code?: number | null;
  status?: number | null;
  stdout: string;
  stderr: string;
}): CheckJson {
  try {
    return JSON.parse(r.stdout) as CheckJson;
  } catch {
    throw new Error(
      `check printed no JSON (exit ${r.code ?? r.status}):\n${r.stdout.slice(0, 2000)}\n${r.stderr}`,
    );
  }
}

/**
 * A self-signed certificate and its RSA 2048 key, made by `openssl req`, valid for 30 days, for a
 * TLS peer: written to DIR/key.pem and DIR/cert.pem, whose paths it returns.
 */
export function selfSignedCert(dir: string, subject: string): { key: string; cert: string } {
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '30',
      '-subj',
      subject,
    ],
    { stdio: 'ignore' },
  );
  return { key, cert };
}

/** address|proto|port -> verdict, over every flow of a check report. */
export function portVerdicts(doc: CheckJson): Map<string, PortVerdict> {
  const out = new Map<string, PortVerdict>();
  for (const f of doc.flows)
    for (const r of f.results)
      for (let p = r.ports[0]; p <= r.ports[1]; p++)
        out.set(`${r.address}|${f.protocol}|${p}`, {
          verdict: r.verdict,
          detail: r.detail,
          evidence: r.evidence,
          flow: f.id,
        });
  return out;
}

/** A minimal catalog entry line for a lab catalog. */
export function entry(
  id: string,
  to: string,
  protocol: 'tcp' | 'udp' | 'icmp',
  ports: (number | string)[],
  service: string,
  extra = '',
): string {
  const p =
    protocol === 'icmp'
      ? 'icmp-type: echo-request'
      : `ports: [${ports.map((x) => (typeof x === 'string' ? `"${x}"` : x)).join(', ')}]`;
  return `  - { id: ${id}, from: client, to: ${to}, protocol: ${protocol}, ${p}, service: ${service}, purpose: "lab ${id}", sources: [{ doc: lab.txt, table: lab, row: 1, ref: "${id}" }]${extra ? `, ${extra}` : ''} }`;
}

export function catalog(roles: readonly string[], entries: readonly string[]): string {
  return [
    'product: lab',
    'title: portolan check lab',
    'documents:',
    '  - { file: lab.txt, title: The lab ports }',
    'roles:',
    ...roles.map((r) => `  ${r}: { title: ${r} }`),
    'entries:',
    ...entries,
    '',
  ].join('\n');
}
