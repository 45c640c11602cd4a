import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { containsCidr, mergeCidr, normalizeCidr } from 'cidr-tools';
import { asciiText, limitName, plainAddress, shq } from '../src/export/_hostfw.js';
import {
  SCRIPT_FILE as FIREWALLD_SCRIPT,
  generator as firewalld,
  OUT_POLICY,
  SERVICES_DIR,
  xmlText,
} from '../src/export/firewalld.js';
import { checkSupported, type ExportResult, type Generator } from '../src/export/generator.js';
import { oneLine } from '../src/export/header.js';
import { checkLineLimits } from '../src/export/limits.js';
import { buildExportModel, type ExportModel } from '../src/export/model.js';
import {
  FIELD_MAX,
  MULTIPORT_MAX,
  PROFILE_FILE,
  PROFILE_NAME_MAX,
  profilePorts,
  SCRIPT_FILE as UFW_SCRIPT,
  generator as ufw,
} from '../src/export/ufw.js';
import {
  psq,
  SCRIPT_FILE as WINDOWS_SCRIPT,
  generator as windows,
  windowsGroup,
} from '../src/export/windows.js';
import { loadSite } from '../src/inventory/load.js';
import type { Inventory } from '../src/inventory/types.js';
import type { Flow } from '../src/model/flow.js';
import { mergePortRanges, type PortRange } from '../src/model/ports.js';
import { buildPlan } from '../src/plan/plan.js';
import { ROOT, runCli } from './helpers.js';

/**
 * The host-firewall exports (firewalld, ufw, windows), read back by the tools that consume them:
 * firewalld's own service reader and rich-rule parser, firewall-offline-cmd running the generated
 * script against a throwaway --system-config, ufw's own profile reader and command parser, and ufw
 * itself against a throwaway --datadir. PowerShell (pwsh) is not installed on this machine, so the
 * Windows script is read by a strict tokenizer here (and by PowerShell's own parser where pwsh exists).
 *
 * Every host of every example, the hostile inventory and an ICMP-with-DNS-names site are rendered,
 * and each output is checked against the plan: every planned flow is allowed, and every address and
 * port an output allows belongs to a planned flow (nothing widened, nothing dropped).
 */

const tmp = mkdtempSync(join(tmpdir(), 'portolan-hostfw-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const HOSTILE = `${ROOT}tests/fixtures/hostile/site.yaml`;
// PlateSpin 8.1.3 pings between source and target; a target with a DNS name and one with IPv6 make
// ICMP rules whose peers must be filled in, per address family.
const ICMP_SITE = join(tmp, 'icmp-names.yaml');
writeFileSync(
  ICMP_SITE,
  `site: icmp-names
products:
  platespin: { version: "8.1.3" }
hosts:
  src-01: { address: 10.60.0.21, roles: [platespin:source], facts: { os: windows, drives: [C] } }
  tgt-01: { address: target.corp.example, roles: [platespin:target] }
  tgt-02: { address: "2001:db8:70::21", roles: [platespin:target] }
  ps-01: { address: 10.50.0.10, roles: [platespin:platespin-server] }
`,
);
const SITES = [
  ...readdirSync(`${ROOT}examples`)
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => `${ROOT}examples/${f}`),
  HOSTILE,
  ICMP_SITE,
];
/** Markers from the hostile inventory that must never reach code (only comments and string data). */
const HOSTILE_MARKERS = [
  'reboot',
  'rm -rf',
  'Remove-Item',
  'DROP TABLE',
  'table inet',
  '<script>',
  '`id`',
  'pwn',
  'saddr',
];

// ---------------------------------------------------------------------------------------------
// Rendering

interface Rendered {
  site: string;
  host: string;
  model: ExportModel;
  result: ExportResult;
}

const siteCache = new Map<string, { models: Map<string, ExportModel>; hosts: string[] }>();

function modelsOf(site: string): { models: Map<string, ExportModel>; hosts: string[] } {
  const cached = siteCache.get(site);
  if (cached) return cached;
  const s = loadSite(site);
  const plan = buildPlan(s.inventory, s.catalogs);
  const hosts = s.inventory.hosts.map((h) => h.name);
  const models = new Map(
    hosts.map((h) => [h, buildExportModel(plan, s.inventory, { host: h, generatorVersion: 'test' })]),
  );
  const out = { models, hosts };
  siteCache.set(site, out);
  return out;
}

/** Every host of every site through a generator; hosts it declares unsupported are listed apart. */
function renderAll(gen: Generator): {
  rendered: Rendered[];
  refused: { site: string; host: string; message: string }[];
} {
  const rendered: Rendered[] = [];
  const refused: { site: string; host: string; message: string }[] = [];
  for (const site of SITES) {
    const { models, hosts } = modelsOf(site);
    for (const host of hosts) {
      const model = models.get(host) as ExportModel;
      try {
        checkSupported(gen, model);
      } catch (err) {
        refused.push({ site, host, message: (err as Error).message });
        continue;
      }
      rendered.push({ site, host, model, result: gen.render(model) });
    }
  }
  return { rendered, refused };
}

function file(r: Rendered, path: string): string {
  const f = r.result.files.find((x) => x.path === path);
  assert.ok(f, `${label(r)}: no file ${path}`);
  return f.content;
}

function label(r: { site: string; host: string }): string {
  return `${r.site.replace(ROOT, '').replace(tmp, '<tmp>')} --host ${r.host}`;
}

/** Each read-back writes into a directory of its own. */
let reads = 0;

function writeFiles(dir: string, r: Rendered): void {
  for (const f of r.result.files) {
    mkdirSync(dirname(join(dir, f.path)), { recursive: true });
    writeFileSync(join(dir, f.path), f.content);
  }
}

// ---------------------------------------------------------------------------------------------
// What an output allows, and the check against the plan

/** One thing an output allows: a protocol and ports to or from a CIDR, or to or from peers the user fills in. */
interface Allowance {
  where: string;
  direction: 'in' | 'out';
  protocol: 'tcp' | 'udp' | 'icmp';
  ports: PortRange[];
  icmpType?: 'echo-request' | 'any';
  /** ICMP only: the address family the rule is for. */
  family?: 4 | 6;
  cidr?: string;
  fill?: { names: string[]; unspecified: string[] };
}

function coversPorts(have: readonly PortRange[], need: readonly PortRange[]): boolean {
  const merged = mergePortRanges(have);
  return need.every(([lo, hi]) => merged.some(([a, b]) => a <= lo && hi <= b));
}

function isLiteral(address: string): boolean {
  return /^[\d.]+(\/\d+)?$/.test(address) || address.includes(':');
}

const famOf = (cidr: string): 4 | 6 => (cidr.includes(':') ? 6 : 4);
/** Descriptions and names as the outputs' comments show them. */
const shown = (text: string): string => asciiText(oneLine(text)).trim();

/** The flows through this host that an output must allow (local flows never become rules). */
function hostFlows(model: ExportModel): { direction: 'in' | 'out'; flow: Flow; peer: Flow['from'] }[] {
  const host = model.host?.name;
  return model.rules.flatMap((r) =>
    r.flows.map((flow) => {
      const direction = flow.to.host === host ? ('in' as const) : ('out' as const);
      return { direction, flow, peer: direction === 'in' ? flow.from : flow.to };
    }),
  );
}

function icmpMatches(allowed: Allowance['icmpType'], planned: Flow['icmpType']): boolean {
  return allowed === 'any' ? planned === 'any' || planned === undefined : true;
}

/**
 * Exactness against the plan. Coverage: every planned flow's peer and ports are allowed. No extra:
 * every CIDR an allowance names is covered by planned peers that need all of its ports, and every
 * peer an allowance leaves to the user needs all of its ports.
 */
function checkExact(model: ExportModel, allowances: Allowance[], what: string): void {
  const flows = hostFlows(model);
  // Indexes so a host with thousands of peers is checked in linear time: allowances by direction
  // and protocol, and those naming one address by that address. An allowance naming a wider CIDR is
  // still found by the scan; the indexes only decide the common case sooner.
  const canonical = new Map<string, string>();
  /** An address, or a CIDR of one address, as one text (`2001:db8:0::1/128` as `2001:db8::1`). */
  const single = (cidr: string): string => {
    let c = canonical.get(cidr);
    if (c === undefined) {
      c = normalizeCidr(cidr).replace(/\/(32|128)$/, '');
      canonical.set(cidr, c);
    }
    return c;
  };
  const sameOf = new Map<string, Allowance[]>();
  const exactOf = new Map<string, Allowance[]>();
  for (const a of allowances) {
    const k = `${a.direction} ${a.protocol}`;
    sameOf.set(k, [...(sameOf.get(k) ?? []), a]);
    if (a.cidr) {
      const e = `${k} ${single(a.cidr)}`;
      exactOf.set(e, [...(exactOf.get(e) ?? []), a]);
    }
  }
  for (const { direction, flow, peer } of flows) {
    const fits = (a: Allowance) => flow.protocol !== 'icmp' || a.icmpType === (flow.icmpType ?? 'any');
    const id = `${what}: ${direction} ${flow.protocol} ${JSON.stringify(flow.ports)} ${peer.host ?? shown(peer.description ?? '')}`;
    if (peer.address !== null && isLiteral(peer.address)) {
      const address = peer.address;
      const allows = (a: Allowance) =>
        a.cidr !== undefined &&
        famOf(a.cidr) === famOf(address) &&
        (a.family === undefined || a.family === famOf(address)) &&
        containsCidr(a.cidr, address);
      const covered = (matching: Allowance[]) =>
        matching.length > 0 &&
        (flow.protocol === 'icmp' ||
          coversPorts(
            matching.flatMap((a) => a.ports),
            flow.ports,
          ));
      // The allowances naming this very address first; when they fall short, every allowance.
      const exact = (exactOf.get(`${direction} ${flow.protocol} ${single(address)}`) ?? []).filter(
        (a) => fits(a) && allows(a),
      );
      if (covered(exact)) continue;
      const matching = (sameOf.get(`${direction} ${flow.protocol}`) ?? []).filter(
        (a) => fits(a) && allows(a),
      );
      assert.ok(matching.length, `${id}: no rule allows ${address}`);
      assert.ok(covered(matching), `${id}: ports not all allowed`);
    } else {
      const matching = (sameOf.get(`${direction} ${flow.protocol}`) ?? []).filter(
        (a) =>
          fits(a) &&
          (peer.address !== null
            ? a.fill?.names.includes(peer.address)
            : a.fill?.unspecified.includes(shown(peer.description ?? ''))),
      );
      assert.ok(matching.length, `${id}: no address variable for this peer`);
      if (flow.protocol !== 'icmp')
        assert.ok(
          coversPorts(
            matching.flatMap((a) => a.ports),
            flow.ports,
          ),
          `${id}: ports not all allowed`,
        );
    }
  }
  // Each allowance's candidates: the planned flows of its direction and protocol, with each peer's
  // ports gathered once (by literal address, DNS name or unspecified description).
  const peerPorts = new Map<string, Map<string, PortRange[]>>();
  const portsFor = (a: Allowance): Map<string, PortRange[]> => {
    const k = `${a.direction} ${a.protocol} ${a.icmpType ?? ''}`;
    let m = peerPorts.get(k);
    if (m) return m;
    m = new Map();
    for (const { direction, flow, peer } of flows) {
      if (direction !== a.direction || flow.protocol !== a.protocol) continue;
      if (a.protocol === 'icmp' && !icmpMatches(a.icmpType, flow.icmpType)) continue;
      const key = peer.address !== null ? `a ${peer.address}` : `u ${shown(peer.description ?? '')}`;
      m.set(key, [...(m.get(key) ?? []), ...(flow.protocol === 'icmp' ? [[0, 0] as PortRange] : flow.ports)]);
    }
    peerPorts.set(k, m);
    return m;
  };
  for (const a of allowances) {
    const byPeer = portsFor(a);
    /** Whether a peer's planned ports in this direction and protocol need all of the allowance's. */
    const needs = (key: string) => {
      const ports = byPeer.get(key) ?? [];
      return a.protocol === 'icmp' ? ports.length > 0 : coversPorts(ports, a.ports);
    };
    if (a.cidr) {
      const cidr = a.cidr;
      // Peers outside the CIDR cannot cover any of it: only those inside are merged.
      const one = !single(cidr).includes('/');
      const inside = (x: string) => (one ? single(x) === single(cidr) : containsCidr(cidr, x));
      const peers = [...byPeer.keys()]
        .filter((k) => k.startsWith('a '))
        .map((k) => k.slice(2))
        .filter((x) => isLiteral(x) && famOf(x) === famOf(cidr) && inside(x) && needs(`a ${x}`));
      assert.ok(
        peers.length && containsCidr(mergeCidr(peers), cidr),
        `${what}: ${a.where} allows ${cidr} more than the plan gives it`,
      );
    } else {
      assert.ok(
        a.fill && a.fill.names.length + a.fill.unspecified.length > 0,
        `${what}: ${a.where} has nothing to fill`,
      );
      for (const n of a.fill.names)
        assert.ok(needs(`a ${n}`), `${what}: ${a.where} allows DNS name ${n} more than the plan gives it`);
      for (const u of a.fill.unspecified)
        assert.ok(needs(`u ${u}`), `${what}: ${a.where} allows the peer "${u}" more than the plan gives it`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Tools on this machine

function run(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {},
) {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    ...(opts.env ? { env: opts.env } : {}),
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.input !== undefined ? { input: opts.input } : {}),
  });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? String(r.error ?? '') };
}

// The distribution's Python, where the firewalld and ufw modules live (not a pyenv shim).
const PYTHON = '/usr/bin/python3';
const pythonHas = (module: string) =>
  existsSync(PYTHON) && run(PYTHON, ['-c', `import ${module}`]).code === 0;
const isRoot = process.getuid?.() === 0;
const which = (c: string) => run('sh', ['-c', `command -v ${c}`]).stdout.trim();
const hasCommand = (c: string) => which(c) !== '';
const UNSHARE = which('unshare');

const firewalldPythonSkip = pythonHas('firewall.core.rich')
  ? false
  : `${PYTHON} cannot import firewalld's Python modules`;
const ufwPythonSkip = pythonHas('ufw.applications') ? false : `${PYTHON} cannot import ufw's Python modules`;
const offlineSkip = !hasCommand('firewall-offline-cmd')
  ? 'firewall-offline-cmd is not installed'
  : !isRoot
    ? 'firewall-offline-cmd needs root (it refuses to run otherwise, even with --system-config)'
    : false;
const ufwSkip = !existsSync('/usr/sbin/ufw')
  ? 'ufw is not installed'
  : !isRoot
    ? 'needs root: ufw refuses to run otherwise, and the test runs it in a throwaway network namespace (unshare -n)'
    : !hasCommand('unshare')
      ? 'unshare is not installed'
      : false;

/** Runs Python code reading JSON on stdin and printing JSON. */
function python<T>(code: string, input: unknown): T {
  const r = run(PYTHON, ['-c', code], { input: JSON.stringify(input) });
  assert.equal(r.code, 0, `python failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** A directory for PATH that holds only the given tools (links) and shims: nothing else can run. */
function toolDir(name: string, links: string[], shims: Record<string, string>): string {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  for (const l of links) symlinkSync(which(l), join(dir, l));
  for (const [n, text] of Object.entries(shims)) writeFileSync(join(dir, n), text, { mode: 0o755 });
  return dir;
}

// ---------------------------------------------------------------------------------------------
// Shell scripts (firewalld and ufw): strict line shapes and the placeholder blocks

interface ShellFill {
  variable: string;
  names: string[];
  unspecified: string[];
}

/**
 * Splits a generated shell script into comments and code, checking every code line against the
 * shapes the generator may write (`shapes`); returns the code lines and the fill variables with what
 * their comments say goes in them.
 */
function shellLines(
  text: string,
  shapes: RegExp[],
  what: string,
): { code: string[]; fills: Map<string, ShellFill> } {
  const lines = text.split('\n');
  assert.equal(lines[0], '#!/bin/sh', `${what}: shebang`);
  assert.equal(lines.at(-1), '', `${what}: ends with a newline`);
  const code: string[] = [];
  const fills = new Map<string, ShellFill>();
  let pending: ShellFill = { variable: '', names: [], unspecified: [] };
  for (const line of lines.slice(1)) {
    assert.match(line, /^[\x20-\x7e]*$/, `${what}: not one line of printable ASCII: ${JSON.stringify(line)}`);
    if (line.startsWith('#') || line === '') {
      const name = /^# {3}DNS name: (.*)$/.exec(line);
      const peer = /^# {3}peer the documents leave open: (.*)$/.exec(line);
      if (name?.[1] !== undefined) pending.names.push(name[1]);
      else if (peer?.[1] !== undefined) pending.unspecified.push(peer[1]);
      else if (!line.startsWith('#  ')) pending = { variable: '', names: [], unspecified: [] };
      continue;
    }
    assert.ok(
      shapes.some((s) => s.test(line)),
      `${what}: a line outside the known shapes: ${line}`,
    );
    for (const m of HOSTILE_MARKERS) assert.ok(!line.includes(m), `${what}: hostile text in code: ${line}`);
    const decl = /^(PORTOLAN_ADDR_\w+)=\$\{\1:-\}$/.exec(line);
    if (decl?.[1]) fills.set(decl[1], { ...pending, variable: decl[1] });
    code.push(line);
  }
  return { code, fills };
}

const COMMON_SHAPES = [
  /^set -eu$/,
  /^set -f$/,
  /^here=\$\(CDPATH= cd -- "\$\(dirname -- "\$0"\)" && pwd\)$/,
  /^(PORTOLAN_ADDR_\w+)=\$\{\1:-\}$/,
  /^\[ -n "\$(PORTOLAN_ADDR_\w+)" \] \|\| echo 'portolan: \1 is empty: rule [\w-]+ adds nothing' >&2$/,
  /^check_address\(\) \{$/,
  /^ {2}case \$1 in$/,
  /^ {4}'' \| \*\[!0-9A-Fa-f:\.\/\]\*\) echo "portolan: '\$1' is not an IP address or CIDR" >&2; exit 1 ;;$/,
  /^ {2}esac$/,
  /^\}$/,
];

// ---------------------------------------------------------------------------------------------
// firewalld

const FIREWALLD_SHAPES = [
  ...COMMON_SHAPES,
  /^zone=\$\{PORTOLAN_ZONE:-\$\(firewall-cmd --get-default-zone\)\}$/,
  /^install_service\(\) \{$/,
  /^ {2}if firewall-cmd --permanent --info-service="\$1" >\/dev\/null 2>&1; then$/,
  /^ {4}firewall-cmd --permanent --delete-service="\$1"$/,
  /^ {2}fi$/,
  /^ {2}firewall-cmd --permanent --new-service-from-file="\$here\/services\/\$1\.xml" --name="\$1"$/,
  /^install_service [a-z0-9-]+$/,
  /^if ! firewall-cmd --permanent --info-policy=portolan-out >\/dev\/null 2>&1; then$/,
  /^ {2}firewall-cmd --permanent --new-policy=portolan-out$/,
  /^ {2}firewall-cmd --permanent --policy=portolan-out --add-(ingress-zone=HOST|egress-zone=ANY)$/,
  /^fi$/,
  /^rich\(\) \{$/,
  /^ {2}check_address "\$2"$/,
  /^ {2}case \$2 in$/,
  /^ {4}\*:\*\) family=ipv6 element=\$4 ;;$/,
  /^ {4}\*\) family=ipv4 element=\$3 ;;$/,
  /^ {2}if \[ "\$1" = in \]; then$/,
  /^ {4}firewall-cmd --permanent --zone="\$zone" --add-rich-rule="rule family=\\"\$family\\" source address=\\"\$2\\" \$element accept"$/,
  /^ {2}else$/,
  /^ {4}firewall-cmd --permanent --policy=portolan-out --add-rich-rule="rule family=\\"\$family\\" destination address=\\"\$2\\" \$element accept"$/,
  /^firewall-cmd --permanent (--zone="\$zone"|--policy=portolan-out) --add-rich-rule='[^']*'$/,
  /^for address in \$PORTOLAN_ADDR_\w+; do rich (in|out) "\$address" '[^']*' '[^']*'; done$/,
  /^echo "portolan: firewalld permanent configuration updated; apply it with: firewall-cmd --reload"$/,
];

interface RichParsed {
  family: string;
  source: string | null;
  destination: string | null;
  element: string;
  name: string;
  action?: string;
  text: string;
  error?: string;
}
interface ServiceParsed {
  short: string;
  description: string;
  ports: [string, string][];
  error?: string;
}

// firewalld's own readers: core/io/service.py service_reader (what firewalld loads services with) and
// core/rich.py Rich_Rule (what firewall-cmd parses --add-rich-rule with).
const FIREWALLD_PY = `
import json, os, sys
from firewall.core.io.service import service_reader
from firewall.core.rich import Rich_Rule, Rich_Service, Rich_IcmpType, Rich_Protocol
req = json.load(sys.stdin)
out = []
for item in req:
    services = {}
    for f in sorted(os.listdir(item['dir'])):
        try:
            s = service_reader(f, item['dir'])
            services[s.name] = {'short': s.short, 'description': s.description, 'ports': s.ports}
        except Exception as e:
            services[f] = {'short': '', 'description': '', 'ports': [], 'error': str(e)}
    rules = []
    for text in item['rules']:
        try:
            r = Rich_Rule(rule_str=text)
            r.check()
            e = r.element
            kind = {Rich_Service: 'service', Rich_IcmpType: 'icmp-type', Rich_Protocol: 'protocol'}.get(type(e), type(e).__name__)
            rules.append({'family': r.family, 'source': r.source.addr if r.source else None,
                          'destination': r.destination.addr if r.destination else None,
                          'element': kind, 'name': getattr(e, 'name', None) or getattr(e, 'value', None),
                          'action': type(r.action).__name__, 'text': str(r)})
        except Exception as e:
            rules.append({'family': '', 'source': None, 'destination': None, 'element': '', 'name': '', 'text': text, 'error': str(e)})
    out.append({'services': services, 'rules': rules})
print(json.dumps(out))
`;

/** A firewalld export read back: rich rules and loops from the script, services by firewalld's reader. */
interface FirewalldRead {
  r: Rendered;
  services: Map<string, ServiceParsed>;
  literal: { direction: 'in' | 'out'; rule: RichParsed }[];
  loops: { direction: 'in' | 'out'; variable: string; v4: RichParsed; v6: RichParsed }[];
  fills: Map<string, ShellFill>;
  installs: string[];
}

const SAMPLE = { 4: '192.0.2.99', 6: '2001:db8::99' } as const;

function readFirewalld(all: Rendered[]): FirewalldRead[] {
  const items = all.map((r) => {
    const dir = join(tmp, 'firewalld-read', String(reads++));
    writeFiles(dir, r);
    const { code, fills } = shellLines(file(r, FIREWALLD_SCRIPT), FIREWALLD_SHAPES, label(r));
    const literal: { direction: 'in' | 'out'; text: string }[] = [];
    const loops: { direction: 'in' | 'out'; variable: string; e4: string; e6: string }[] = [];
    const installs: string[] = [];
    for (const line of code) {
      const lit =
        /^firewall-cmd --permanent (--zone="\$zone"|--policy=portolan-out) --add-rich-rule='([^']*)'$/.exec(
          line,
        );
      if (lit?.[2]) literal.push({ direction: lit[1] === '--zone="$zone"' ? 'in' : 'out', text: lit[2] });
      const loop =
        /^for address in \$(PORTOLAN_ADDR_\w+); do rich (in|out) "\$address" '([^']*)' '([^']*)'; done$/.exec(
          line,
        );
      if (loop?.[1] && loop[3] && loop[4])
        loops.push({
          direction: loop[2] === 'in' ? 'in' : 'out',
          variable: loop[1],
          e4: loop[3],
          e6: loop[4],
        });
      const inst = /^install_service ([a-z0-9-]+)$/.exec(line);
      if (inst?.[1]) installs.push(inst[1]);
    }
    // Each loop's elements become full rules for a sample address, so firewalld parses them too.
    const side = (d: 'in' | 'out') => (d === 'in' ? 'source' : 'destination');
    const loopRules = loops.flatMap((l) => [
      `rule family="ipv4" ${side(l.direction)} address="${SAMPLE[4]}" ${l.e4} accept`,
      `rule family="ipv6" ${side(l.direction)} address="${SAMPLE[6]}" ${l.e6} accept`,
    ]);
    return {
      r,
      dir: join(dir, SERVICES_DIR),
      literal,
      loops,
      installs,
      fills,
      rules: [...literal.map((l) => l.text), ...loopRules],
    };
  });
  const parsed = python<{ services: Record<string, ServiceParsed>; rules: RichParsed[] }[]>(
    FIREWALLD_PY,
    items.map((i) => ({ dir: i.dir, rules: i.rules })),
  );
  return items.map((item, i) => {
    const p = parsed[i] as { services: Record<string, ServiceParsed>; rules: RichParsed[] };
    const rules = [...p.rules];
    const literal = item.literal.map((l) => ({ direction: l.direction, rule: rules.shift() as RichParsed }));
    const loops = item.loops.map((l) => ({
      direction: l.direction,
      variable: l.variable,
      v4: rules.shift() as RichParsed,
      v6: rules.shift() as RichParsed,
    }));
    return {
      r: item.r,
      services: new Map(Object.entries(p.services)),
      literal,
      loops,
      fills: item.fills,
      installs: item.installs,
    };
  });
}

function servicePortsOf(s: ServiceParsed): { tcp: PortRange[]; udp: PortRange[] } {
  const out = { tcp: [] as PortRange[], udp: [] as PortRange[] };
  for (const [port, proto] of s.ports) {
    const [lo, hi] = port.split('-').map(Number) as [number, number?];
    assert.ok(proto === 'tcp' || proto === 'udp', `service protocol ${proto}`);
    out[proto].push([lo, hi ?? lo]);
  }
  return out;
}

function firewalldAllowances(f: FirewalldRead): Allowance[] {
  const out: Allowance[] = [];
  const add = (
    where: string,
    direction: 'in' | 'out',
    rule: RichParsed,
    target: { cidr?: string; fill?: ShellFill },
  ) => {
    if (rule.element === 'service') {
      const s = f.services.get(rule.name);
      assert.ok(
        s,
        `${label(f.r)}: ${where} names service ${rule.name}, which is not among the generated services`,
      );
      const ports = servicePortsOf(s);
      for (const protocol of ['tcp', 'udp'] as const)
        if (ports[protocol].length)
          out.push({ where, direction, protocol, ports: ports[protocol], ...target });
    } else {
      const icmpType = rule.element === 'icmp-type' && rule.name === 'echo-request' ? 'echo-request' : 'any';
      if (rule.element === 'protocol')
        assert.equal(
          rule.name,
          rule.family === 'ipv6' ? 'ipv6-icmp' : 'icmp',
          `${where}: ICMP protocol for ${rule.family}`,
        );
      out.push({
        where,
        direction,
        protocol: 'icmp',
        ports: [],
        icmpType,
        family: rule.family === 'ipv6' ? 6 : 4,
        ...target,
      });
    }
  };
  for (const { direction, rule } of f.literal) {
    const address = direction === 'in' ? rule.source : rule.destination;
    assert.ok(address, `${label(f.r)}: ${rule.text} has no ${direction === 'in' ? 'source' : 'destination'}`);
    assert.equal(rule.family, famOf(address) === 6 ? 'ipv6' : 'ipv4', `${rule.text}: family`);
    add(rule.text, direction, rule, { cidr: address });
  }
  for (const l of f.loops) {
    const fill = f.fills.get(l.variable);
    assert.ok(fill, `${label(f.r)}: loop over ${l.variable}, which is not declared`);
    add(`loop over ${l.variable} (IPv4)`, l.direction, l.v4, { fill });
    if (l.v6.element !== 'service') add(`loop over ${l.variable} (IPv6)`, l.direction, l.v6, { fill });
  }
  return out;
}

describe('host firewalls: an IPv6 /32 is a network', () => {
  it("only the family's whole-address prefix is dropped", () => {
    assert.equal(plainAddress('10.0.0.1/32'), '10.0.0.1');
    assert.equal(plainAddress('10.0.0.0/24'), '10.0.0.0/24');
    assert.equal(plainAddress('2001:db8::1/128'), '2001:db8::1');
    assert.equal(plainAddress('2001:db8::/32'), '2001:db8::/32');
    assert.equal(plainAddress('2001:db8::/128'), '2001:db8::');
  });

  it('ufw, firewalld and windows keep 2001:db7::/32 as the source network, never the one address', () => {
    const dir = mkdtempSync(join(tmpdir(), 'portolan-v6net-'));
    try {
      const site = join(dir, 'site.yaml');
      writeFileSync(
        site,
        `site: v6net
products:
  druva-vmware: {}
hosts:
  proxy-01: { address: "2001:db7::/32", roles: [druva-vmware:backup-proxy] }
  vc-01: { address: "2001:db9::20", roles: [druva-vmware:vcenter] }
`,
      );
      for (const to of ['ufw', 'firewalld', 'windows']) {
        const out = join(dir, to);
        const r = runCli(['export', site, '--to', to, '--host', 'vc-01', '-o', `${out}/`]);
        assert.equal(r.code, 0, r.stderr);
        const text = readdirSync(out, { recursive: true, encoding: 'utf8' })
          .map((f) => join(out, f))
          .filter((f) => statSync(f).isFile())
          .map((f) => readFileSync(f, 'utf8'))
          .join('\n');
        assert.match(text, /2001:db7::\/32/, to);
        assert.doesNotMatch(text, /2001:db7::(?!\/32)/, `${to} wrote the network as one address`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('firewalld export', () => {
  const { rendered, refused } = renderAll(firewalld);

  it('declares host mode only, and the CLI refuses --network with exit 2', () => {
    assert.deepEqual(firewalld.capabilities.modes, ['host']);
    assert.deepEqual(refused, []);
    const r = runCli([
      'export',
      'examples/druva-vmware.yaml',
      '--to',
      'firewalld',
      '--network',
      '-o',
      `${tmp}/fw-net/`,
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /does not support network mode/);
  });

  it('xmlText escapes markup, keeps one line, and writes non-ASCII as character references', () => {
    assert.equal(xmlText(`a<b>&"c'\nd 日\u{1F600}`), 'a&lt;b&gt;&amp;&quot;c&apos; d &#x65E5;&#x1F600;');
    assert.equal(xmlText('lone \uD800 surrogate'), 'lone ? surrogate');
  });

  it("services of every host parse with firewalld's reader, carry exactly the application ports, and round-trip the text", {
    skip: firewalldPythonSkip,
  }, () => {
    let services = 0;
    for (const f of readFirewalld(rendered)) {
      const names = f.r.result.files
        .filter((x) => x.path.startsWith(`${SERVICES_DIR}/`))
        .map((x) => x.path.slice(SERVICES_DIR.length + 1, -4));
      assert.deepEqual([...f.services.keys()].sort(), [...names].sort(), label(f.r));
      assert.deepEqual(
        [...f.installs].sort(),
        [...names].sort(),
        `${label(f.r)}: the script installs every service file`,
      );
      for (const [name, s] of f.services) {
        services++;
        assert.equal(s.error, undefined, `${label(f.r)} ${name}: ${s.error}`);
        assert.match(name, /^[A-Za-z0-9_-]+$/, 'firewalld service name characters');
        assert.ok(s.ports.length > 0, `${name} has ports`);
        assert.match(s.short, /^portolan [a-z0-9-]+ [a-z0-9-]+ \((tcp [\d,-]+)?( ?udp [\d,-]+)?\)$/);
      }
    }
    assert.ok(services > 20, `services checked: ${services}`);
  });

  it("rich rules of every host parse with firewalld's parser and allow exactly the planned flows", {
    skip: firewalldPythonSkip,
  }, () => {
    let rules = 0;
    for (const f of readFirewalld(rendered)) {
      for (const { rule } of [...f.literal, ...f.loops.flatMap((l) => [{ rule: l.v4 }, { rule: l.v6 }])]) {
        rules++;
        assert.equal(rule.error, undefined, `${label(f.r)}: ${rule.text}: ${rule.error}`);
        assert.equal(rule.action, 'Rich_Accept');
      }
      for (const { rule } of f.literal)
        assert.ok(
          f.r.result.files.some((x) => x.content.includes(rule.text)),
          'canonical text as written',
        );
      checkExact(f.r.model, firewalldAllowances(f), label(f.r));
    }
    assert.ok(rules > 50, `rules checked: ${rules}`);
  });

  it('the exactness check fails on a widened rule (negative control)', { skip: firewalldPythonSkip }, () => {
    const f = readFirewalld(
      rendered.filter((r) => r.site.endsWith('mixed-site.yaml') && r.host === 'proxy-01'),
    )[0] as FirewalldRead;
    const ok = firewalldAllowances(f);
    checkExact(f.r.model, ok, 'control');
    const widened = ok.map((a, i) => (i === ok.findIndex((x) => x.cidr) ? { ...a, cidr: '10.0.0.0/8' } : a));
    assert.throws(() => checkExact(f.r.model, widened, 'widened'), /more than the plan gives it/);
    const dropped = ok.filter((a) => !a.fill);
    assert.throws(() => checkExact(f.r.model, dropped, 'dropped'), /no address variable/);
  });

  it('hostile inventory: free text stays in comments and XML text, and firewalld reads it back intact', {
    skip: firewalldPythonSkip,
  }, () => {
    const hostile = rendered.filter((r) => r.site === HOSTILE);
    assert.equal(hostile.length, 4);
    for (const f of readFirewalld(hostile)) {
      for (const x of f.r.result.files.filter((y) => y.path.endsWith('.xml'))) {
        assert.match(x.content, /^[\x20-\x7e\n]*$/, 'plain ASCII');
        // Only comments, the service element and its known children.
        for (const line of x.content.trimEnd().split('\n'))
          assert.match(
            line,
            /^(<!-- (?:(?!--).)* -->|<\/?service>| {2}<(short|description)>[^<]*<\/\2>| {2}<port protocol="(tcp|udp)" port="\d+(-\d+)?"\/>)$/,
            line,
          );
      }
      for (const s of f.services.values()) {
        assert.equal(s.error, undefined);
        if (!s.description.includes('evil-web')) continue;
        // The reader decodes what xmlText encoded: quotes, markup and non-ASCII come back as written.
        for (const piece of [`Quote " single ' backtick`, '$(reboot)', '<b>html</b> & amp', '日本語 ✓'])
          assert.ok(s.description.includes(piece), `description keeps ${piece}: ${s.description}`);
        assert.ok(!/[\n\r\u0001]/.test(s.description), 'no line breaks or control characters');
      }
    }
  });

  describe('the script, run through firewall-offline-cmd against a throwaway --system-config', {
    skip: offlineSkip,
  }, () => {
    // firewall-offline-cmd takes the same options as firewall-cmd --permanent, without --permanent.
    const shim = `#!/bin/bash
args=()
for a in "$@"; do [[ $a == --permanent ]] || args+=("$a"); done
exec /usr/bin/firewall-offline-cmd --system-config "$FW_CFG" "\${args[@]}"
`;
    const bin = offlineSkip ? '' : toolDir('firewalld-bin', ['dirname'], { 'firewall-cmd': shim });
    let n = 0;

    function offline(cfg: string, args: string[]): string {
      const r = run('firewall-offline-cmd', ['--system-config', cfg, ...args]);
      assert.equal(r.code, 0, `firewall-offline-cmd ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    }

    /** Runs the generated script (PATH holds only the shim and dirname) and returns what it set up. */
    function apply(r: Rendered, env: Record<string, string>, cfg?: string) {
      const out = join(tmp, `fw-run-${n}`);
      const config = cfg ?? join(tmp, `fw-cfg-${n}`);
      n++;
      writeFiles(out, r);
      if (!cfg) {
        mkdirSync(config, { recursive: true });
        if (existsSync('/etc/firewalld/firewalld.conf'))
          writeFileSync(join(config, 'firewalld.conf'), readFileSync('/etc/firewalld/firewalld.conf'));
      }
      const res = run('/bin/sh', [join(out, FIREWALLD_SCRIPT)], {
        env: { PATH: bin, FW_CFG: config, ...env },
        cwd: tmp,
      });
      assert.equal(res.code, 0, `${label(r)}: script failed: ${res.stderr}`);
      const check = run('firewall-offline-cmd', ['--system-config', config, '--check-config']);
      assert.equal(check.code, 0, `${label(r)}: --check-config: ${check.stdout}${check.stderr}`);
      // The default zone of firewalld's stock configuration, unless the run names one.
      const zone = env.PORTOLAN_ZONE ?? 'public';
      const zoneRules = offline(config, [`--zone=${zone}`, '--list-rich-rules'])
        .split('\n')
        .filter(Boolean);
      const policyRules = existsSync(join(config, 'policies', `${OUT_POLICY}.xml`))
        ? offline(config, [`--info-policy=${OUT_POLICY}`])
            .split('\n')
            .filter((l) => l.startsWith('\trule '))
            .map((l) => l.trim())
        : [];
      return { res, config, script: join(out, FIREWALLD_SCRIPT), zoneRules, policyRules };
    }

    function expected(f: FirewalldRead, env: Record<string, string>) {
      const zone = f.literal.filter((l) => l.direction === 'in').map((l) => l.rule.text);
      const policy = f.literal.filter((l) => l.direction === 'out').map((l) => l.rule.text);
      for (const l of f.loops)
        for (const address of (env[l.variable] ?? '').split(/\s+/).filter(Boolean)) {
          const v6 = address.includes(':');
          const rule = (v6 ? l.v6 : l.v4).text.replace(v6 ? SAMPLE[6] : SAMPLE[4], address);
          (l.direction === 'in' ? zone : policy).push(rule);
        }
      return { zone: zone.sort(), policy: policy.sort() };
    }

    const pick = (site: string, host: string) => {
      const r = rendered.find((x) => x.site.endsWith(site) && x.host === host);
      assert.ok(r, `${site} ${host}`);
      return r;
    };

    it('mixed-site proxy-01 with its addresses filled in: every service saved with its ports, exactly the rich rules', () => {
      const r = pick('mixed-site.yaml', 'proxy-01');
      const [f] = readFirewalld([r]) as [FirewalldRead];
      assert.equal(f.fills.size, 3, 'one unspecified peer and two DNS names to fill');
      const env: Record<string, string> = { PORTOLAN_ZONE: 'internal' };
      for (const v of f.fills.keys()) env[v] = '192.0.2.7 2001:db8::7';
      const got = apply(r, env);
      const want = expected(f, env);
      assert.deepEqual([...got.zoneRules].sort(), want.zone);
      assert.deepEqual([...got.policyRules].sort(), want.policy);
      // What firewalld saved in its configuration, read back with its own reader.
      const saved = python<{ services: Record<string, ServiceParsed> }[]>(FIREWALLD_PY, [
        { dir: join(got.config, 'services'), rules: [] },
      ]);
      const services = Object.entries(saved[0]?.services ?? {}).filter(([name]) => !name.endsWith('.old'));
      assert.deepEqual(services.map(([name]) => name).sort(), [...f.services.keys()].sort());
      for (const [name, s] of services) assert.deepEqual(s.ports, f.services.get(name)?.ports, name);
    });

    it('ICMP to peers with DNS names: the filled addresses get the rule of their own family', () => {
      const r = pick('icmp-names.yaml', 'src-01');
      const [f] = readFirewalld([r]) as [FirewalldRead];
      const env: Record<string, string> = {};
      for (const v of f.fills.keys()) env[v] = '198.51.100.4 2001:db8:71::4';
      const got = apply(r, env);
      const want = expected(f, env);
      assert.deepEqual([...got.zoneRules].sort(), want.zone);
      assert.deepEqual([...got.policyRules].sort(), want.policy);
      assert.ok(
        got.zoneRules.includes(
          'rule family="ipv4" source address="198.51.100.4" icmp-type name="echo-request" accept',
        ),
      );
    });

    it("hostile inventory: every host's script runs and adds exactly its rules (none of the text runs)", () => {
      for (const r of rendered.filter((x) => x.site === HOSTILE)) {
        const [f] = readFirewalld([r]) as [FirewalldRead];
        const env: Record<string, string> = {};
        for (const v of f.fills.keys()) env[v] = '203.0.113.9';
        const got = apply(r, env);
        const want = expected(f, env);
        assert.deepEqual([...got.zoneRules].sort(), want.zone, label(r));
        assert.deepEqual([...got.policyRules].sort(), want.policy, label(r));
      }
    });

    it('empty address variables add no rule (never "any") and say so; a rerun fills them in; "any" is refused', () => {
      const r = pick('site.yaml', 'web-server');
      const [f] = readFirewalld([r]) as [FirewalldRead];
      const variable = [...f.fills.keys()][0] as string;
      const first = apply(r, {});
      assert.deepEqual([...first.zoneRules].sort(), expected(f, {}).zone);
      assert.equal(first.zoneRules.length, 1, 'only the literal peer');
      assert.match(first.res.stderr, new RegExp(`${variable} is empty`));
      // Again on the same configuration: services are replaced, the rule already there stays once.
      const env = { [variable]: '203.0.113.9 2001:db8::9' };
      const second = apply(r, env, first.config);
      assert.deepEqual([...second.zoneRules].sort(), expected(f, env).zone);
      assert.equal(second.zoneRules.length, 3);
      const bad = run('/bin/sh', [second.script], {
        env: { PATH: bin, FW_CFG: second.config, [variable]: 'any' },
      });
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /'any' is not an IP address or CIDR/);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// ufw

const UFW_SHAPES = [
  ...COMMON_SHAPES,
  /^cp "\$here\/applications\.d\/portolan" "\$\{PORTOLAN_UFW_APPS_DIR:-\/etc\/ufw\/applications\.d\}\/portolan"$/,
  /^ufw allow from [0-9A-Fa-f:./]+ to any app [a-z0-9-]+ comment 'portolan [a-z0-9-]+'$/,
  /^ufw allow out to [0-9A-Fa-f:./]+ app [a-z0-9-]+ comment 'portolan [a-z0-9-]+'$/,
  /^for address in \$PORTOLAN_ADDR_\w+; do check_address "\$address"; ufw allow (from "\$address" to any|out to "\$address") app [a-z0-9-]+ comment 'portolan [a-z0-9-]+'; done$/,
];

// ufw's own readers: applications.get_profiles (what `ufw app` reads applications.d with) and
// frontend.parse_command (what the ufw command line goes through).
const UFW_PY = `
import contextlib, gettext, io, json, shlex, sys
gettext.install('ufw')
import ufw.applications, ufw.frontend, ufw.util
req = json.load(sys.stdin)
out = []
for item in req:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        profiles = ufw.applications.get_profiles(item['dir'])
    rules = []
    for line in item['commands']:
        try:
            pr = ufw.frontend.parse_command(shlex.split(line))
            r = pr.data['rule']
            rules.append({'action': pr.action, 'direction': r.direction, 'src': r.src, 'dst': r.dst, 'app': r.dapp,
                          'sapp': r.sapp, 'comment': ufw.util.hex_decode(r.comment), 'line': line})
        except BaseException as e:
            rules.append({'line': line, 'error': repr(e)})
    out.append({'profiles': profiles, 'warnings': err.getvalue(), 'rules': rules})
print(json.dumps(out))
`;

interface UfwRule {
  action: string;
  direction: string;
  src: string;
  dst: string;
  app: string;
  sapp: string;
  comment: string;
  line: string;
  error?: string;
}
interface UfwRead {
  r: Rendered;
  profiles: Record<string, { title: string; description: string; ports: string }>;
  warnings: string;
  literal: UfwRule[];
  loops: { variable: string; rule: UfwRule }[];
  fills: Map<string, ShellFill>;
}

function readUfw(all: Rendered[]): UfwRead[] {
  const items = all.map((r) => {
    const dir = join(tmp, 'ufw-read', String(reads++));
    writeFiles(dir, r);
    const { code, fills } = shellLines(file(r, UFW_SCRIPT), UFW_SHAPES, label(r));
    const literal = code.filter((l) => l.startsWith('ufw '));
    const loops = code.flatMap((l) => {
      const m = /^for address in \$(PORTOLAN_ADDR_\w+); do check_address "\$address"; (ufw .*); done$/.exec(
        l,
      );
      return m?.[1] && m[2] ? [{ variable: m[1], command: m[2].replace('"$address"', SAMPLE[4]) }] : [];
    });
    return { r, dir: join(dir, dirname(PROFILE_FILE)), literal, loops, fills };
  });
  const parsed = python<{ profiles: UfwRead['profiles']; warnings: string; rules: UfwRule[] }[]>(
    UFW_PY,
    items.map((i) => ({ dir: i.dir, commands: [...i.literal, ...i.loops.map((l) => l.command)] })),
  );
  return items.map((item, i) => {
    const p = parsed[i] as { profiles: UfwRead['profiles']; warnings: string; rules: UfwRule[] };
    const rules = [...p.rules];
    const literal = item.literal.map(() => rules.shift() as UfwRule);
    const loops = item.loops.map((l) => ({ variable: l.variable, rule: rules.shift() as UfwRule }));
    return { r: item.r, profiles: p.profiles, warnings: p.warnings, literal, loops, fills: item.fills };
  });
}

/** `8443,9000:9010/tcp|5353/udp` as ranges per protocol, checking ufw's multiport limit on the way. */
function profileRanges(ports: string): { tcp: PortRange[]; udp: PortRange[] } {
  const out = { tcp: [] as PortRange[], udp: [] as PortRange[] };
  for (const part of ports.split('|')) {
    const m = /^([\d,:]+)\/(tcp|udp)$/.exec(part);
    assert.ok(m?.[1] && m[2], `profile ports ${part}`);
    const list = m[1].split(',');
    const weight = list.reduce((w, p) => w + (p.includes(':') ? 2 : 1), 0);
    assert.ok(weight <= MULTIPORT_MAX, `${part}: more than ${MULTIPORT_MAX} multiport slots`);
    for (const p of list) {
      const [lo, hi] = p.split(':').map(Number) as [number, number?];
      out[m[2] as 'tcp' | 'udp'].push([lo, hi ?? lo]);
    }
  }
  return out;
}

function ufwAllowances(u: UfwRead): Allowance[] {
  const out: Allowance[] = [];
  const add = (rule: UfwRule, target: { cidr?: string; fill?: ShellFill }) => {
    assert.equal(rule.error, undefined, `${label(u.r)}: ufw cannot parse ${rule.line}: ${rule.error}`);
    assert.equal(rule.action, 'allow');
    assert.equal(rule.sapp, '', 'no source application');
    const profile = u.profiles[rule.app];
    assert.ok(profile, `${label(u.r)}: ${rule.line} names ${rule.app}, which ufw did not load`);
    assert.match(rule.comment, /^portolan [a-z0-9-]+$/);
    const direction = rule.direction === 'in' ? 'in' : 'out';
    const any = (a: string) => a === '0.0.0.0/0' || a === '::/0';
    assert.ok(any(direction === 'in' ? rule.dst : rule.src), `${rule.line}: this host's side is any`);
    const ranges = profileRanges(profile.ports);
    for (const protocol of ['tcp', 'udp'] as const)
      if (ranges[protocol].length)
        out.push({ where: rule.line, direction, protocol, ports: ranges[protocol], ...target });
  };
  for (const rule of u.literal) add(rule, { cidr: rule.direction === 'in' ? rule.src : rule.dst });
  for (const l of u.loops) {
    const fill = u.fills.get(l.variable);
    assert.ok(fill, `${label(u.r)}: loop over ${l.variable}, which is not declared`);
    add(l.rule, { fill });
  }
  return out;
}

describe('ufw export', () => {
  const { rendered, refused } = renderAll(ufw);

  it('declares host mode, TCP/UDP only: hosts with ICMP rules are refused with exit 2, the rest render', () => {
    assert.deepEqual(ufw.capabilities.modes, ['host']);
    assert.equal(ufw.capabilities.icmp, false);
    for (const x of refused) assert.match(x.message, /cannot express ICMP/, label(x));
    const withIcmp = SITES.flatMap((site) => {
      const { models, hosts } = modelsOf(site);
      return hosts
        .filter((h) => models.get(h)?.rules.some((r) => r.protocol === 'icmp'))
        .map((host) => ({ site, host }));
    });
    assert.deepEqual(refused.map((x) => label(x)).sort(), withIcmp.map(label).sort());
    assert.ok(refused.length >= 2, 'the legacy PlateSpin hosts ping each other');
    const r = runCli([
      'export',
      'examples/platespin-legacy.yaml',
      '--to',
      'ufw',
      '--host',
      'fileserver-old',
      '-o',
      `${tmp}/ufw-icmp/`,
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--to ufw cannot express ICMP, which rule in-icmp-echo-request-\d+ \(ping/);
    const n = runCli([
      'export',
      'examples/druva-vmware.yaml',
      '--to',
      'ufw',
      '--network',
      '-o',
      `${tmp}/ufw-net/`,
    ]);
    assert.equal(n.code, 2, n.stderr);
  });

  it('splits port lists at the multiport limit, a range counting 2', () => {
    const ports = Array.from({ length: 14 }, (_, i) => [1000 + i * 10, 1000 + i * 10] as PortRange);
    assert.equal(
      profilePorts({ tcp: [...ports, [5000, 5010]], udp: [] }),
      `${ports.map(([p]) => p).join(',')}/tcp|5000:5010/tcp`,
    );
    assert.equal(
      profilePorts({ tcp: ports.slice(0, 13), udp: [[53, 53]] }),
      `${ports
        .slice(0, 13)
        .map(([p]) => p)
        .join(',')}/tcp|53/udp`,
    );
  });

  it("profiles of every host load with ufw's reader (nothing skipped) and every command parses and allows exactly the plan", {
    skip: ufwPythonSkip,
  }, () => {
    let commands = 0;
    for (const u of readUfw(rendered)) {
      assert.equal(u.warnings, '', `${label(u.r)}: ufw warned: ${u.warnings}`);
      const sections = [...file(u.r, PROFILE_FILE).matchAll(/^\[([^\]]+)\]$/gm)].map((m) => m[1]);
      assert.deepEqual(
        Object.keys(u.profiles).sort(),
        [...sections].sort(),
        `${label(u.r)}: every section loaded`,
      );
      for (const [name, p] of Object.entries(u.profiles)) {
        assert.ok(name.length <= PROFILE_NAME_MAX, name);
        for (const v of [p.title, p.description, p.ports])
          assert.ok(v.length > 0 && v.length <= FIELD_MAX, `${name}: field length`);
      }
      commands += u.literal.length + u.loops.length;
      checkExact(u.r.model, ufwAllowances(u), label(u.r));
    }
    assert.ok(commands > 40, `commands checked: ${commands}`);
  });

  it('hostile inventory: free text stays in comments and profile text, as plain ASCII', {
    skip: ufwPythonSkip,
  }, () => {
    const hostile = rendered.filter((r) => r.site === HOSTILE);
    assert.equal(hostile.length, 4);
    for (const u of readUfw(hostile)) {
      const profile = file(u.r, PROFILE_FILE);
      assert.match(profile, /^[\x20-\x7e\n]*$/, 'plain ASCII (ufw reads it in the system locale)');
      for (const line of profile.trimEnd().split('\n'))
        assert.match(
          line,
          /^(#.*|\[portolan-[a-z0-9-]+\]|title=.+|description=.+|ports=[\d,:|/a-z]+|)$/,
          line,
        );
      const evil = Object.values(u.profiles).find((p) => p.description.includes('Quote'));
      if (evil) {
        for (const piece of [`Quote " single ' backtick`, '$(reboot)', '\\u65E5\\u672C\\u8A9E'])
          assert.ok(evil.description.includes(piece), `description keeps ${piece}`);
      }
    }
    assert.ok(
      readUfw(hostile).some((u) => Object.values(u.profiles).some((p) => p.description.includes('Quote'))),
      'the hostile purpose was read back',
    );
  });

  describe('the script, run with ufw against a throwaway --datadir in a throwaway network namespace', {
    skip: ufwSkip,
  }, () => {
    const shim = '#!/bin/sh\nexec /usr/sbin/ufw --datadir="$UFW_DATA" "$@"\n';
    const bin = ufwSkip ? '' : toolDir('ufw-bin', ['dirname', 'cp'], { ufw: shim });
    let n = 0;

    /** A ufw data directory: defaults, ufw.conf with ENABLED=no (rules go to files, not the kernel). */
    function dataDir(): string {
      const d = join(tmp, `ufw-data-${n++}`);
      for (const sub of ['etc/default', 'etc/ufw/applications.d', 'lib/ufw'])
        mkdirSync(join(d, sub), { recursive: true });
      writeFileSync(join(d, 'etc/default/ufw'), readFileSync('/etc/default/ufw'));
      writeFileSync(join(d, 'etc/ufw/ufw.conf'), 'ENABLED=no\nLOGLEVEL=low\n');
      for (const f of [
        'user.rules',
        'user6.rules',
        'before.rules',
        'before6.rules',
        'after.rules',
        'after6.rules',
      ])
        writeFileSync(join(d, 'etc/ufw', f), readFileSync(`/usr/share/ufw/iptables/${f}`));
      return d;
    }

    function apply(r: Rendered, env: Record<string, string>) {
      const out = join(tmp, `ufw-run-${n}`);
      writeFiles(out, r);
      const data = dataDir();
      const res = run(UNSHARE, ['-n', '/bin/sh', join(out, UFW_SCRIPT)], {
        env: {
          PATH: bin,
          UFW_DATA: data,
          PORTOLAN_UFW_APPS_DIR: join(data, 'etc/ufw/applications.d'),
          ...env,
        },
        cwd: tmp,
      });
      assert.equal(res.code, 0, `${label(r)}: script failed: ${res.stderr}`);
      const shown = run(UNSHARE, ['-n', '/usr/sbin/ufw', `--datadir=${data}`, 'show', 'added']);
      assert.equal(shown.code, 0, shown.stderr);
      const added = shown.stdout.split('\n').filter((l) => l.startsWith('ufw '));
      const info = (name: string) =>
        run(UNSHARE, ['-n', '/usr/sbin/ufw', `--datadir=${data}`, 'app', 'info', name]);
      return { res, added, info, script: join(out, UFW_SCRIPT) };
    }

    const expected = (u: UfwRead, env: Record<string, string>) => [
      ...u.literal.map((x) => x.line),
      ...u.loops.flatMap((l) =>
        (env[l.variable] ?? '')
          .split(/\s+/)
          .filter(Boolean)
          .map((a) => l.rule.line.replace(SAMPLE[4], a)),
      ),
    ];

    it("mixed-site proxy-01 and veeam-proxmox gip-01: ufw adds exactly the script's rules and shows every profile", () => {
      for (const [site, host] of [
        ['mixed-site.yaml', 'proxy-01'],
        ['veeam-proxmox.yaml', 'gip-01'],
      ] as const) {
        const r = rendered.find((x) => x.site.endsWith(site) && x.host === host) as Rendered;
        const [u] = readUfw([r]) as [UfwRead];
        const env: Record<string, string> = {};
        for (const v of u.fills.keys()) env[v] = '192.0.2.7 2001:db8::7';
        const got = apply(r, env);
        // ufw lists v4 rules before v6 ones.
        assert.deepEqual([...got.added].sort(), expected(u, env).sort(), label(r));
        for (const [name, p] of Object.entries(u.profiles)) {
          const info = got.info(name);
          assert.equal(info.code, 0, info.stderr);
          for (const part of p.ports.split('|'))
            assert.match(info.stdout, new RegExp(`^\\s+${part.replace(/[|/]/g, '\\$&')}$`, 'm'));
        }
        for (const v of u.fills.keys()) assert.ok(!got.res.stderr.includes(`${v} is empty`));
      }
    });

    it('empty address variables add no rule, and a word such as any is refused', () => {
      const r = rendered.find((x) => x.site.endsWith('mixed-site.yaml') && x.host === 'proxy-01') as Rendered;
      const [u] = readUfw([r]) as [UfwRead];
      const got = apply(r, {});
      assert.deepEqual([...got.added].sort(), expected(u, {}).sort());
      assert.ok(
        !got.added.some((l) => /^ufw allow (from any|out to any) /.test(l)),
        'no rule from or to any peer',
      );
      for (const v of u.fills.keys()) assert.match(got.res.stderr, new RegExp(`${v} is empty`));
      const data = dataDir();
      const bad = run(UNSHARE, ['-n', '/bin/sh', got.script], {
        env: {
          PATH: bin,
          UFW_DATA: data,
          PORTOLAN_UFW_APPS_DIR: join(data, 'etc/ufw/applications.d'),
          [[...u.fills.keys()][0] as string]: 'any',
        },
      });
      assert.equal(bad.code, 1, bad.stderr);
      assert.match(bad.stderr, /'any' is not an IP address or CIDR/);
    });

    it("hostile inventory: every host's script runs and ufw holds exactly its rules", () => {
      for (const r of rendered.filter((x) => x.site === HOSTILE)) {
        const [u] = readUfw([r]) as [UfwRead];
        const env: Record<string, string> = {};
        for (const v of u.fills.keys()) env[v] = '203.0.113.9';
        const got = apply(r, env);
        assert.deepEqual([...got.added].sort(), expected(u, env).sort(), label(r));
      }
    });
  });
});

// ---------------------------------------------------------------------------------------------
// windows

type Token =
  | { kind: 'string'; text: string; value: string }
  | { kind: 'var' | 'word' | 'param' | 'num' | 'punct' | 'prop'; text: string };

/**
 * PowerShell tokens of the kinds the generator writes, and nothing else: single-quoted strings
 * (`''` inside stands for `'`), variables, parameters, bare words, numbers, `.Count` and a few
 * punctuation marks. A double quote, `$(`, a backtick, `;` or a `#` inside a line is an error.
 */
function tokenize(line: string): Token[] {
  const tokens: Token[] = [];
  const re =
    /\s+|(?<string>'(?:[^'\u2018-\u201b]|'')*')|(?<var>\$[A-Za-z_][A-Za-z0-9_]*)|(?<param>-[A-Za-z][A-Za-z0-9]*)|(?<word>[A-Za-z][A-Za-z0-9-]*)|(?<num>\d+)|(?<prop>\.[A-Za-z]+)|(?<punct>@\(|\+=|[(){},+=|])/y;
  let at = 0;
  while (at < line.length) {
    re.lastIndex = at;
    const m = re.exec(line);
    assert.ok(m && m[0].length > 0, `unexpected character ${JSON.stringify(line[at])} at ${at} in: ${line}`);
    const g = m.groups ?? {};
    if (g.string !== undefined)
      tokens.push({ kind: 'string', text: g.string, value: g.string.slice(1, -1).replace(/''/g, "'") });
    else
      for (const kind of ['var', 'param', 'word', 'num', 'prop', 'punct'] as const)
        if (g[kind] !== undefined) tokens.push({ kind, text: g[kind] });
    at = re.lastIndex;
  }
  return tokens;
}

/** The line with every string literal as S: what the statement shapes are matched against. */
const shape = (tokens: Token[]) => tokens.map((t) => (t.kind === 'string' ? 'S' : t.text)).join(' ');

const V = '\\$PortolanAddr_\\w+';
const LIST = 'S( , S)*';
const NEW_RULE = `New-NetFirewallRule -Name S -DisplayName S -Description S -Group S -Direction (Inbound|Outbound) -Action Allow -Protocol (TCP|UDP|ICMPv4|ICMPv6)( -IcmpType \\d+)?( -(Local|Remote)Port ${LIST}| -LocalPort RPC)? -RemoteAddress (${LIST}|${V}|\\( @\\( ${LIST} \\) \\+ ${V} \\))`;
const WINDOWS_SHAPES = [
  /^\$ErrorActionPreference = S$/,
  new RegExp(`^${V} = @\\( \\)$`),
  /^\$portolanMissing = @\( \)$/,
  new RegExp(
    `^if \\( @\\( ${V} \\) \\.Count( \\+ @\\( ${V} \\) \\.Count)* -eq 0 \\) \\{ \\$portolanMissing \\+= S \\}$`,
  ),
  /^if \( \$portolanMissing \.Count -gt 0 \) \{ throw \( S \+ \( \$portolanMissing -join S \) \) \}$/,
  /^Get-NetFirewallRule -Group S -ErrorAction SilentlyContinue \| Remove-NetFirewallRule$/,
  new RegExp(`^${NEW_RULE}$`),
  new RegExp(`^if \\( @\\( ${V} \\) \\.Count -gt 0 \\) \\{ ${NEW_RULE} \\}$`),
];

interface WinRule {
  params: Map<string, Token[]>;
  guard?: string;
}

/** Reads a generated script strictly: every line is a comment or one of the shapes above. */
function readWindows(text: string, what: string) {
  const rules: WinRule[] = [];
  const declared: string[] = [];
  const checked: string[][] = [];
  const strings: string[] = [];
  for (const line of text.split('\n')) {
    assert.match(line, /^[\x20-\x7e]*$/, `${what}: not one line of printable ASCII: ${JSON.stringify(line)}`);
    if (line === '' || line.startsWith('#')) continue;
    const tokens = tokenize(line);
    const s = shape(tokens);
    assert.ok(
      WINDOWS_SHAPES.some((re) => re.test(s)),
      `${what}: a line outside the known statement shapes: ${line}`,
    );
    // Whatever is not a string literal is code: no hostile text may be there.
    const code = tokens
      .filter((t) => t.kind !== 'string')
      .map((t) => t.text)
      .join(' ');
    for (const m of HOSTILE_MARKERS)
      assert.ok(!code.includes(m), `${what}: hostile text outside a literal: ${line}`);
    for (const t of tokens) if (t.kind === 'string') strings.push(t.value);
    const decl = new RegExp(`^(${V}) = @\\( \\)$`).exec(s);
    if (decl?.[1]) declared.push(decl[1]);
    if (s.startsWith('if ( @(') && s.includes('-eq 0'))
      checked.push(
        tokens.filter((t) => t.kind === 'var' && t.text.startsWith('$PortolanAddr_')).map((t) => t.text),
      );
    const start = tokens.findIndex((t) => t.text === 'New-NetFirewallRule');
    if (start >= 0) {
      const params = new Map<string, Token[]>();
      let current = '';
      for (const t of tokens.slice(start + 1)) {
        if (t.kind === 'param') {
          assert.ok(!params.has(t.text), `${what}: ${t.text} twice`);
          current = t.text;
          params.set(current, []);
        } else if (!(t.text === '}' && current === '-RemoteAddress' && start > 0))
          params.get(current)?.push(t);
      }
      const guard = start > 0 ? tokens.find((t) => t.kind === 'var')?.text : undefined;
      rules.push({ params, ...(guard ? { guard } : {}) });
    }
  }
  return { rules, declared, checked, strings };
}

const strs = (ts: Token[] | undefined) => (ts ?? []).flatMap((t) => (t.kind === 'string' ? [t.value] : []));

function windowsAllowances(
  script: ReturnType<typeof readWindows>,
  comments: string,
  what: string,
  group: string,
): Allowance[] {
  // What each variable is for: the comment lines above its declaration.
  const fills = new Map<string, ShellFill>();
  let pending: ShellFill = { variable: '', names: [], unspecified: [] };
  for (const line of comments.split('\n')) {
    const name = /^# {3}DNS name: (.*)$/.exec(line);
    const peer = /^# {3}peer the documents leave open: (.*)$/.exec(line);
    const decl = /^\$(PortolanAddr_\w+) = @\(\)$/.exec(line);
    if (name?.[1] !== undefined) pending.names.push(name[1]);
    else if (peer?.[1] !== undefined) pending.unspecified.push(peer[1]);
    else if (decl?.[1]) fills.set(`$${decl[1]}`, { ...pending, variable: decl[1] });
    else if (!line.startsWith('#  ')) pending = { variable: '', names: [], unspecified: [] };
  }
  const out: Allowance[] = [];
  for (const rule of script.rules) {
    const p = (k: string) => rule.params.get(k);
    const direction = p('-Direction')?.[0]?.text === 'Inbound' ? 'in' : 'out';
    const protocolText = p('-Protocol')?.[0]?.text ?? '';
    const protocol = protocolText === 'TCP' ? 'tcp' : protocolText === 'UDP' ? 'udp' : 'icmp';
    assert.equal(strs(p('-Group'))[0], group, `${what}: the site's group`);
    assert.ok(strs(p('-Name'))[0]?.startsWith(`${group}-`), `${what}: the rule's name starts with its group`);
    assert.equal(p('-Action')?.[0]?.text, 'Allow');
    // `-LocalPort RPC`: Windows' dynamic RPC range, 49152-65535 by default (what the plan names).
    const ports: PortRange[] =
      direction === 'in' && p('-LocalPort')?.[0]?.text === 'RPC'
        ? [[49152, 65535]]
        : strs(p(direction === 'in' ? '-LocalPort' : '-RemotePort')).map((x) => {
            const [lo, hi] = x.split('-').map(Number) as [number, number?];
            return [lo, hi ?? lo];
          });
    assert.equal(
      p(direction === 'in' ? '-RemotePort' : '-LocalPort'),
      undefined,
      `${what}: port on the wrong side`,
    );
    if (protocol !== 'icmp') assert.ok(ports.length, `${what}: a TCP/UDP rule without ports`);
    const family = protocolText === 'ICMPv6' ? 6 : protocolText === 'ICMPv4' ? 4 : undefined;
    const icmp =
      protocol === 'icmp'
        ? {
            icmpType: p('-IcmpType') ? ('echo-request' as const) : ('any' as const),
            ...(family ? { family } : {}),
          }
        : {};
    if (p('-IcmpType'))
      assert.equal(p('-IcmpType')?.[0]?.text, family === 6 ? '128' : '8', `${what}: echo request type`);
    const remote = p('-RemoteAddress') ?? [];
    const where = strs(p('-Name'))[0] ?? '?';
    const literals = strs(remote);
    const variables = remote.filter((t) => t.kind === 'var').map((t) => t.text);
    assert.ok(literals.length + variables.length > 0, `${what}: ${where} without -RemoteAddress`);
    // A rule made only from a variable must be guarded or checked: either way it never runs empty.
    if (!literals.length && rule.guard) assert.equal(rule.guard, variables[0]);
    for (const cidr of literals) {
      if (family) assert.equal(famOf(cidr), family, `${what}: ${where}: ${cidr} in an ICMPv${family} rule`);
      out.push({ where, direction, protocol, ports, ...icmp, cidr });
    }
    for (const v of variables) {
      assert.ok(script.declared.includes(v), `${what}: ${v} used but not declared`);
      assert.ok(
        script.checked.some((c) => c.includes(v)),
        `${what}: ${v} is not checked for being empty`,
      );
      const fill = fills.get(v);
      assert.ok(fill, `${what}: no comment says what goes in ${v}`);
      out.push({ where, direction, protocol, ports, ...icmp, fill });
    }
  }
  return out;
}

describe('windows export', () => {
  const { rendered, refused } = renderAll(windows);
  const scripts = rendered.map((r) => ({ r, text: file(r, WINDOWS_SCRIPT), what: label(r) }));

  it('declares host mode only (a host firewall), and writes one file that goes to stdout', () => {
    assert.deepEqual(windows.capabilities.modes, ['host']);
    assert.deepEqual(refused, []);
    const r = runCli(['export', 'examples/druva-vmware.yaml', '--to', 'windows', '--host', 'proxy-01']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^# Generated by portolan /);
    assert.match(r.stderr, /fill \$PortolanAddr_in_tcp_22_1 in portolan-firewall\.ps1/);
    assert.equal(runCli(['export', 'examples/druva-vmware.yaml', '--to', 'windows', '--network']).code, 2);
  });

  it('psq doubles quotes and leaves plain ASCII: the typographic quotes PowerShell also ends strings at cannot appear', () => {
    assert.equal(psq("it's"), "'it''s'");
    assert.equal(psq('a\u2019b\u2018c\u201ad\u201be'), "'a\\u2019b\\u2018c\\u201Ad\\u201Be'");
    assert.equal(psq('x\r\ny$(z)`"'), "'x y$(z)`\"'");
    for (const t of tokenize(psq("'; Remove-Item C:\\ -Recurse; '")))
      assert.equal(t.kind, 'string', 'the whole text is one literal');
  });

  it('the tokenizer and shapes reject what the generator must never write (negative control)', () => {
    for (const bad of [
      'New-NetFirewallRule -Name \'a\' -DisplayName "b"',
      "New-NetFirewallRule -Name 'a'; Remove-Item x",
      "$x = 'unbalanced",
      "$x = 'a' # trailing comment",
      "$x = 'it\u2019s'",
      'Invoke-Expression $(whoami)',
    ])
      assert.throws(
        () => readWindows(bad, 'control'),
        /unexpected character|outside the known statement shapes|printable ASCII/,
        bad,
      );
  });

  it('every host: every line is a comment or a known statement, every literal is well formed', () => {
    let rules = 0;
    for (const { text, what } of scripts) {
      const read = readWindows(text, what);
      const names = read.rules.map((r) => strs(r.params.get('-Name'))[0]);
      assert.equal(new Set(names).size, names.length, `${what}: -Name unique`);
      assert.deepEqual(
        [...new Set(read.declared)].sort(),
        [...new Set(read.checked.flat())].sort(),
        `${what}: every variable checked`,
      );
      // Re-quoting each literal's value gives back the literal: quoting is consistent.
      for (const line of text.split('\n').filter((l) => l && !l.startsWith('#')))
        for (const t of tokenize(line))
          if (t.kind === 'string') assert.equal(`'${t.value.replace(/'/g, "''")}'`, t.text);
      rules += read.rules.length;
    }
    assert.ok(rules > 100, `rules checked: ${rules}`);
  });

  it('every host: the rules allow exactly the planned flows', () => {
    for (const { r, text, what } of scripts)
      checkExact(
        r.model,
        windowsAllowances(readWindows(text, what), text, what, windowsGroup(r.model.site)),
        what,
      );
  });

  it('ICMP with DNS-name peers: one rule per family, the family without addresses only when filled in', () => {
    const s = scripts.find((x) => x.r.site === ICMP_SITE && x.r.host === 'src-01');
    assert.ok(s);
    const read = readWindows(s.text, s.what);
    const icmpIn = read.rules.filter((r) =>
      strs(r.params.get('-Name'))[0]?.startsWith(`${windowsGroup(s.r.model.site)}-in-icmp-`),
    );
    assert.deepEqual(
      // The rule number depends on the rules before it; the shape of the guard does not.
      icmpIn.map((r) => [r.params.get('-Protocol')?.[0]?.text, r.guard?.replace(/_\d+_/, '_N_') ?? null]),
      [
        ['ICMPv4', '$PortolanAddr_in_icmp_echo_request_N_IPv4'],
        ['ICMPv6', null],
      ],
    );
    assert.ok(
      read.checked.some((c) => c.length === 2),
      'either family may be filled in, but not neither',
    );
  });

  it('hostile inventory: hostile text only inside single-quoted literals or comments, and intact as data', () => {
    const hostile = scripts.filter((x) => x.r.site === HOSTILE);
    assert.equal(hostile.length, 4);
    let seen = 0;
    for (const { text, what } of hostile) {
      const read = readWindows(text, what);
      for (const v of read.strings)
        if (v.includes('Quote')) {
          seen++;
          for (const piece of [
            `Quote " single ' backtick \` dollar $(reboot) semicolon ;`,
            '\\u65E5\\u672C\\u8A9E',
            '<b>html</b> & amp',
          ])
            assert.ok(v.includes(piece), `literal keeps ${piece}: ${v}`);
        }
    }
    assert.ok(seen >= 2, 'the hostile purpose reached a -Description on both ends');
  });

  it('a peer list longer than a script line is split over rules <name>, <name>-part2, ... that together allow exactly the plan', () => {
    // 3000 clients at odd addresses (no two merge into a CIDR) and one DNS-name peer, all to one
    // service on the host: one -RemoteAddress list of about 50 KB, over the 4096-byte line limit.
    const end = (host: string, address: string, role: string) => ({ host, role, address });
    const clients = Array.from({ length: 3000 }, (_, i) =>
      end(`c${i}`, `10.${10 + (i >> 7)}.${(i >> 1) & 63}.${((i & 1) << 7) | 1}`, 'client'),
    );
    clients.push(end('named', 'db.example.com', 'client'));
    const flows: Flow[] = clients.map((from, i) => ({
      id: `f${i}`,
      product: 'p',
      from,
      to: end('srv', '192.0.2.2', 'server'),
      protocol: 'tcp',
      ports: [[443, 443]],
      service: 'https',
      tls: true,
      purpose: 'many clients',
      sources: [{ doc: 'doc', ref: 'ref' }],
      notes: [],
      entries: ['e'],
      local: false,
    }));
    const inventory = {
      sha256: '0'.repeat(64),
      hosts: [
        ...clients.map((c) => ({ name: c.host, address: { text: c.address } })),
        { name: 'srv', address: { text: '192.0.2.2' } },
      ],
    } as unknown as Inventory;
    const model = buildExportModel({ site: 'wide', flows, warnings: [] }, inventory, {
      generatorVersion: 'test',
      host: 'srv',
    });
    const result = windows.render(model);
    checkLineLimits('windows', result.files);
    const text = result.files.find((f) => f.path === WINDOWS_SCRIPT)?.content ?? '';
    const read = readWindows(text, 'wide');
    const names = read.rules.map((r) => strs(r.params.get('-Name'))[0]);
    const base = `${windowsGroup('wide')}-in-tcp-443-1`;
    assert.ok(read.rules.length > 10, `split into ${read.rules.length} rules`);
    assert.deepEqual(names, [base, ...names.slice(1).map((_, i) => `${base}-part${i + 2}`)]);
    // The variable the user fills for the DNS name goes with the first part only.
    const withVariable = read.rules.filter((r) =>
      r.params.get('-RemoteAddress')?.some((t) => t.kind === 'var'),
    );
    assert.deepEqual(
      withVariable.map((r) => strs(r.params.get('-Name'))[0]),
      [base],
    );
    checkExact(model, windowsAllowances(read, text, 'wide', windowsGroup('wide')), 'wide');
    const literals = read.rules.flatMap((r) => strs(r.params.get('-RemoteAddress')));
    assert.equal(literals.length, 3000, 'every client address once');
    assert.equal(new Set(literals).size, 3000);
  });

  it("PowerShell's own parser accepts every script", {
    skip: hasCommand('pwsh')
      ? false
      : 'pwsh (PowerShell) is not installed on this machine; the tokenizer tests above stand in for it',
  }, () => {
    for (const { r, text, what } of scripts) {
      const path = join(tmp, `ps-${r.host}.ps1`);
      writeFileSync(path, text);
      const res = run('pwsh', [
        '-NoProfile',
        '-NonInteractive',
        '-Command',
        `$e = $null; [void][System.Management.Automation.Language.Parser]::ParseFile(${psq(path)}, [ref]$null, [ref]$e); if ($e.Count) { $e | ForEach-Object { $_.Message }; exit 1 }`,
      ]);
      assert.equal(res.code, 0, `${what}: ${res.stdout}${res.stderr}`);
    }
  });
});

describe('all three formats', () => {
  it('local flows are called out in a comment, never made a rule', () => {
    let hosts = 0;
    for (const gen of [firewalld, ufw, windows])
      for (const r of renderAll(gen).rendered) {
        if (!r.model.localFlows.length) continue;
        hosts++;
        const text = r.result.files.map((f) => f.content).join('\n');
        assert.match(
          text,
          /^# Local flows \(they stay on this host, so no rule is needed or rendered\):$/m,
          label(r),
        );
        for (const f of r.model.localFlows)
          assert.match(
            text,
            new RegExp(`^# {3}${f.product} ${f.service} ${f.protocol}\\b`, 'm'),
            `${label(r)}: ${f.service}`,
          );
      }
    assert.ok(hosts >= 3, 'some hosts have local flows');
  });

  it('names over a platform limit keep their start and end in a hash, so they stay unique', () => {
    const long = `portolan-${'p'.repeat(63)}-${'r'.repeat(63)}`;
    const a = limitName(`${long}-1`, PROFILE_NAME_MAX);
    const b = limitName(`${long}-2`, PROFILE_NAME_MAX);
    assert.ok(a.length <= PROFILE_NAME_MAX && b.length <= PROFILE_NAME_MAX);
    assert.notEqual(a, b);
    assert.match(a, /^portolan-p+-[0-9a-f]{8}$/);
    assert.equal(limitName('portolan-x-y', PROFILE_NAME_MAX), 'portolan-x-y');
  });
});

// shq is the shell scripts' one quoting function: a word with anything unsafe becomes one literal.
describe('shell quoting', () => {
  it('shq leaves safe words and single-quotes the rest', () => {
    assert.equal(shq('portolan-x'), 'portolan-x');
    assert.equal(shq(''), "''");
    assert.equal(shq(`a'b $(c) \`d\``), `'a'\\''b $(c) \`d\`'`);
    const r = run('/bin/sh', ['-c', `printf '%s' ${shq(`it's $(echo no) "x"\n;`)}`]);
    assert.equal(r.stdout, `it's $(echo no) "x"\n;`);
  });
});

// ---------------------------------------------------------------------------------------------
// Rule comments (firewalld and ufw scripts): per rule, not per flow

describe('firewalld and ufw rule comments follow rules, not flows', () => {
  for (const [name, gen, script] of [
    ['firewalld', firewalld, FIREWALLD_SCRIPT],
    ['ufw', ufw, UFW_SCRIPT],
  ] as const) {
    it(`${name}: each rule says its flow and host counts and catalog rows; no flow's purpose is in a comment`, () => {
      const { rendered } = renderAll(gen);
      assert.ok(rendered.length > 0);
      let counted = 0;
      for (const r of rendered) {
        const text = file(r, script);
        const lines = text.split('\n');
        // The flows that stay on the host are listed by purpose on purpose (no rule is rendered).
        const local = new Set(r.model.localFlows.map((f) => oneLine(f.purpose)));
        const comments = lines.filter((l) => l.startsWith('#'));
        for (const f of r.model.rules.flatMap((x) => x.flows)) {
          const purpose = asciiText(f.purpose);
          if (purpose.length < 20 || local.has(oneLine(f.purpose))) continue;
          for (const c of comments)
            assert.ok(!c.includes(purpose), `${label(r)}: a flow's purpose in a comment: ${c}`);
        }
        lines.forEach((line, i) => {
          if (!/^# (in|out)-[\w-]+: (service|app) portolan-/.test(line)) return;
          const count = /^# {3}(\d+) flows? (from|to) (\d+) hosts?$/.exec(lines[i + 1] ?? '');
          assert.ok(count, `${label(r)}: the line after ${line} gives the counts: ${lines[i + 1]}`);
          assert.ok(Number(count[1]) >= 1 && Number(count[3]) >= 1, `${label(r)}: ${lines[i + 1]}`);
          assert.match(lines[i + 2] ?? '', /^# {3}[\w-]+ catalog rows? [\w-]+(, [\w-]+)* \[.+\]$/, label(r));
          counted++;
        });
      }
      assert.ok(counted > 0, 'some rule comments were checked');
    });
  }
});
