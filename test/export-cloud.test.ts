import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { containsCidr } from 'cidr-tools';
import { InputError } from '../src/errors.js';
import { hostList } from '../src/export/_cloud.js';
import { checkSupported, type Generator } from '../src/export/generator.js';
import { loadGenerator } from '../src/export/index.js';
import { buildExportModel, type ExportModel, type ExportRule } from '../src/export/model.js';
import { loadSite } from '../src/inventory/load.js';
import type { Endpoint, Flow } from '../src/model/flow.js';
import { mergePortRanges } from '../src/model/ports.js';
import { buildPlan } from '../src/plan/plan.js';
import { ROOT, runCli } from './helpers.js';

/**
 * The cloud and router exports (aws, azure, gcp, cisco), checked from the outside:
 * - every planned flow (taken from the plan, not from the generators) is allowed by some rendered
 *   rule, in both directions where the platform needs both, and every rendered rule serves some
 *   planned flow (nothing wider, no shared group that opens a port a host does not need);
 * - Terraform arguments are evaluated by the real `terraform` (the Azure and GCP resource bodies,
 *   with the variables the user fills set to test values, and set to empty lists to prove nothing
 *   renders with an empty address list); aws.tf.json is validated against the real AWS provider and
 *   aws.cfn.json by cfn-lint, where those tools are installed;
 * - IOS output has no line that is not one of the statement shapes the generator may write;
 * - hostile inventories (quotes, newlines, braces, `${...}` and `%{...}` template syntax) cannot
 *   break out of a string, and sanitized fields stay within each platform's character set.
 */

const tmp = mkdtempSync(join(tmpdir(), 'portolan-cloud-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

// A dual-stack site: IPv6 pairs (incl. ICMPv6 ping from PlateSpin legacy), DNS names, and pairs
// whose families do not meet (IPv6 server to IPv4 host), which must be reported, not rendered.
const V6_LAB = `site: v6-lab
products:
  platespin: { version: "8.1.3" }
  veeam-proxmox: { features: [app-aware] }
hosts:
  ps-server: { address: "2001:db8:50::10", roles: [platespin:platespin-server] }
  src-01: { address: "2001:db8:60::21", roles: [platespin:source], facts: { os: windows, drives: [C] } }
  tgt-01: { address: "2001:db8:70::/120", roles: [platespin:target] }
  esx-01: { address: 192.168.70.2, roles: [platespin:vmware-host] }
  vbr-01: { address: "2001:db8:30::10", roles: [veeam-proxmox:backup-server] }
  worker-01: { address: "2001:db8:30::50", roles: [veeam-proxmox:worker] }
  pve-01: { address: pve-01.lab.example, roles: [veeam-proxmox:proxmox-server] }
  updates: { address: repository.veeam.com, roles: [veeam-proxmox:update-repository] }
  guest-01: { address: 10.40.0.5, roles: [veeam-proxmox:guest], facts: { os: linux } }
`;
// Terraform's own template syntax in the site name (which reaches names and descriptions).
const TF_PAYLOAD = `\${file(\\"/etc/passwd\\")} %{ for x in [1] }x%{ endfor } $\${y} \${var.vpc_id}`;
const TF_HOSTILE = `site: "tf ${TF_PAYLOAD} '; DROP? end"
catalogs: [hostile-catalog]
products:
  evil-product: {}
hosts:
  web-client: { address: 192.0.2.10, roles: [evil-product:client] }
  web-server: { address: "2001:db8::10", roles: [evil-product:server] }
  api-server: { address: api.example.com, roles: [evil-product:server] }
  v6-client: { address: "2001:db8::20", roles: [evil-product:client] }
`;
writeFileSync(join(tmp, 'v6-lab.yaml'), V6_LAB);
// A catalog named by the inventory must sit beside it (or be named with --catalog).
cpSync(`${ROOT}tests/fixtures/hostile/catalog`, join(tmp, 'hostile-catalog'), { recursive: true });
writeFileSync(join(tmp, 'tf-hostile.yaml'), TF_HOSTILE);

const HOSTILE = new Set(['hostile', 'tf-hostile']);
const SITES: { label: string; path: string }[] = [
  ...readdirSync(`${ROOT}examples`)
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => ({ label: f.replace(/\.yaml$/, ''), path: `${ROOT}examples/${f}` })),
  { label: 'hostile', path: `${ROOT}tests/fixtures/hostile/site.yaml` },
  { label: 'v6-lab', path: join(tmp, 'v6-lab.yaml') },
  { label: 'tf-hostile', path: join(tmp, 'tf-hostile.yaml') },
];

interface Case {
  label: string;
  site: string;
  host?: string;
  model: ExportModel;
  /** The planned flows this export must carry: all network flows, or those of the host. */
  flows: Flow[];
  /** 0 for network mode, then 1.. for the site's hosts in inventory order. */
  scope: number;
}

/** Every site in network mode and in host mode for each of its hosts. */
function buildCases(): Case[] {
  const out: Case[] = [];
  for (const s of SITES) {
    const { inventory, catalogs } = loadSite(s.path);
    const plan = buildPlan(inventory, catalogs);
    const network = plan.flows.filter((f) => !f.local);
    const scopes: (string | undefined)[] = [undefined, ...inventory.hosts.map((h) => h.name)];
    for (const [scope, host] of scopes.entries()) {
      const model = buildExportModel(plan, inventory, {
        ...(host ? { host } : {}),
        generatorVersion: 'test',
      });
      out.push({
        label: `${s.label} ${host ? `--host ${host}` : '--network'}`,
        site: s.label,
        ...(host ? { host } : {}),
        model,
        flows: host ? network.filter((f) => f.from.host === host || f.to.host === host) : network,
        scope,
      });
    }
  }
  return out;
}

const CASES = buildCases();

interface Rendered {
  c: Case;
  files: Record<string, string>;
  warnings: string[];
  dir: string;
}

const gens: Record<string, Generator> = {};
const rendered: Record<string, Rendered[]> = {};
let caseNo = 0;
before(async () => {
  for (const name of ['aws', 'azure', 'gcp', 'cisco']) {
    const gen = await loadGenerator(name as 'aws');
    gens[name] = gen;
    rendered[name] = CASES.map((c) => {
      checkSupported(gen, c.model);
      const r = gen.render(c.model);
      const dir = join(tmp, 'out', `${caseNo++}`);
      mkdirSync(dir, { recursive: true });
      const files: Record<string, string> = {};
      for (const f of r.files) {
        writeFileSync(join(dir, f.path), f.content);
        files[f.path] = f.content;
      }
      return { c, files, warnings: r.warnings, dir };
    });
  }
});

// --- addresses and endpoints ----------------------------------------------------------------------

const isDns = (a: string) => !/^[\d.]+(\/\d+)?$/.test(a) && !a.includes(':');
const fam = (cidr: string) => (cidr.includes(':') ? 6 : 4);
const within = (outer: string, inner: string) => fam(outer) === fam(inner) && containsCidr(outer, inner);
const wordIn = (text: string, word: string) =>
  new RegExp(`(^|[^\\w.-])${word.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}($|[^\\w.-])`).test(text);

/** The export rule a flow landed in (from the model), for unspecified peers, whose sets are per rule. */
function ruleOf(c: Case, f: Flow): ExportRule {
  const r = c.model.rules.find((x) => x.flows.some((g) => g.id === f.id));
  assert.ok(r, `flow ${f.id} is in no rule of the model`);
  return r;
}

/** Does a fill set (described by `text`) stand for this endpoint? */
function fillFor(text: string, e: Endpoint, rule: ExportRule): boolean {
  if (e.address === null) return /unspecified/.test(text) && wordIn(text, rule.id);
  return e.address !== null && isDns(e.address) && wordIn(text, e.address) && !/unspecified/.test(text);
}

type Peer = { cidr: string } | { fill: string };

function peerCovers(p: Peer, e: Endpoint, rule: ExportRule): boolean {
  if ('fill' in p) return fillFor(p.fill, e, rule);
  return e.address !== null && !isDns(e.address) && within(p.cidr, e.address);
}

/** A flow's port ranges, or one null for ICMP. */
const rangesOf = (f: Flow): ([number, number] | null)[] =>
  f.protocol === 'icmp' ? [null] : f.ports.map(([lo, hi]) => [lo, hi] as [number, number]);

// --- Terraform ------------------------------------------------------------------------------------

type Json = Record<string, unknown>;
const TF_OK = spawnSync('terraform', ['version'], { encoding: 'utf8' }).status === 0;
const TF_MIRROR = process.env.PORTOLAN_TF_PLUGIN_MIRROR ?? '/opt/tf-plugins';
const AWS_PROVIDER = existsSync(join(TF_MIRROR, 'registry.terraform.io/hashicorp/aws'));
const CFN_LINT = spawnSync('cfn-lint', ['--version'], { encoding: 'utf8' }).status === 0;

function terraform(dir: string, args: string[]): { code: number | null; stdout: string; stderr: string } {
  const config = join(tmp, 'terraform.rc');
  writeFileSync(
    config,
    `provider_installation {\n  filesystem_mirror {\n    path = ${JSON.stringify(TF_MIRROR)}\n  }\n}\n`,
  );
  const r = spawnSync('terraform', args, {
    cwd: dir,
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    env: { ...process.env, TF_CLI_CONFIG_FILE: config, CHECKPOINT_DISABLE: '1', TF_IN_AUTOMATION: '1' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Test values for the variables the user fills: one IPv4 and one IPv6 documentation address each. */
function fillValues(doc: Json, empty: boolean): Record<string, unknown> {
  const vars = (doc.variable ?? {}) as Record<string, { type: string }>;
  let n = 0;
  return Object.fromEntries(
    Object.entries(vars).map(([name, v]) => {
      if (v.type !== 'list(string)') return [name, `test-${name}`];
      n++;
      return [name, empty ? [] : [`203.0.113.${n}/32`, `2001:db8:ffff::${n}/128`]];
    }),
  );
}

interface TfDoc {
  key: string;
  doc: Json;
}

/**
 * Evaluates every resource body of the given Terraform JSON documents with the real terraform: each
 * document becomes a provider-free module whose outputs are its resource bodies (minus for_each
 * bodies, whose each.value only exists per instance), instantiated twice: with the fill variables
 * set to test addresses, and set to empty lists. One `terraform plan` for all of them.
 */
function evaluate(docs: TfDoc[]): Map<string, { full: Record<string, Json>; empty: Record<string, Json> }> {
  const root = join(tmp, 'tf-eval');
  rmSync(root, { recursive: true, force: true });
  const modules: Json = {};
  const outputs: Json = {};
  docs.forEach(({ doc }, i) => {
    mkdirSync(join(root, `m${i}`), { recursive: true });
    const out: Json = {};
    for (const [type, byName] of Object.entries((doc.resource ?? {}) as Record<string, Record<string, Json>>))
      for (const [name, body] of Object.entries(byName)) {
        if ('for_each' in body) continue;
        // References to other resources exist only with a provider; the rest evaluates without one.
        const own = Object.fromEntries(
          Object.entries(body).filter(([, v]) => !/aws_security_group\./.test(JSON.stringify(v))),
        );
        out[`${type}__${name}`.replace(/[^A-Za-z0-9_-]/g, '_')] = { value: own };
      }
    writeFileSync(
      join(root, `m${i}`, 'main.tf.json'),
      JSON.stringify({ variable: doc.variable ?? {}, ...(Object.keys(out).length ? { output: out } : {}) }),
    );
    for (const which of ['full', 'empty'] as const) {
      modules[`m${i}_${which}`] = { source: `./m${i}`, ...fillValues(doc, which === 'empty') };
      outputs[`m${i}_${which}`] = { value: `\${module.m${i}_${which}}` };
    }
  });
  writeFileSync(join(root, 'main.tf.json'), JSON.stringify({ module: modules, output: outputs }));
  const init = terraform(root, ['init', '-backend=false', '-input=false', '-no-color']);
  assert.equal(init.code, 0, init.stderr);
  const plan = terraform(root, ['plan', '-input=false', '-lock=false', '-no-color', '-out=plan.bin']);
  assert.equal(plan.code, 0, plan.stderr);
  const show = terraform(root, ['show', '-json', 'plan.bin']);
  assert.equal(show.code, 0, show.stderr);
  const values = (JSON.parse(show.stdout) as { planned_values: { outputs: Record<string, { value: Json }> } })
    .planned_values.outputs;
  const result = new Map<string, { full: Record<string, Json>; empty: Record<string, Json> }>();
  docs.forEach(({ key }, i) => {
    result.set(key, {
      full: (values[`m${i}_full`]?.value ?? {}) as Record<string, Json>,
      empty: (values[`m${i}_empty`]?.value ?? {}) as Record<string, Json>,
    });
  });
  return result;
}

/** Every string in a Terraform argument is either one expression or literal text with every template sigil escaped. */
function assertTemplateSafe(where: string, value: unknown): void {
  if (typeof value === 'string') {
    if (/^\$\{[^{}]*\}$/.test(value)) return;
    const unescaped = value.replace(/\$\$\{|%%\{/g, '');
    assert.ok(
      !/\$\{|%\{/.test(unescaped),
      `${where}: unescaped template sequence in ${JSON.stringify(value)}`,
    );
  } else if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) assertTemplateSafe(`${where}[${i}]`, v);
  } else if (value && typeof value === 'object')
    for (const [k, v] of Object.entries(value)) assertTemplateSafe(`${where}.${k}`, v);
}

function assertHeader(doc: Json, c: Case): void {
  const header = doc['//'] as string[];
  assert.equal(Object.keys(doc)[0], '//', 'the header comes first');
  assert.match(header[0] ?? '', /^Generated by portolan /);
  assert.ok(header.includes(`inventory sha256: ${c.model.inventorySha256}`));
  assert.ok(header.some((l) => l.startsWith('site: ')));
}

const AWS_CHARSET = /^[a-zA-Z0-9. _\-:/()#,@[\]+=&;{}!$*]{1,255}$/;
const PRINTABLE = (max: number) => new RegExp(`^[\\x20-\\x7e]{0,${max}}$`);

// --- AWS ------------------------------------------------------------------------------------------

interface SgPerm {
  where: string;
  hosts: string[];
  dir: 'ingress' | 'egress';
  protocol: string;
  from: number;
  to: number;
  peer: Peer;
}

function checkPorts(where: string, p: SgPerm, family: 4 | 6 | undefined): void {
  if (p.protocol === 'tcp' || p.protocol === 'udp')
    assert.ok(p.from >= 0 && p.from <= p.to && p.to <= 65535, `${where}: ports ${p.from}-${p.to}`);
  else if (p.protocol === 'icmp' || p.protocol === 'icmpv6') {
    assert.ok([-1, p.protocol === 'icmp' ? 8 : 128].includes(p.from), `${where}: ICMP type ${p.from}`);
    assert.ok([-1, 0].includes(p.to), `${where}: ICMP code ${p.to}`);
    if (family)
      assert.equal(
        p.protocol === 'icmp' ? 4 : 6,
        family,
        `${where}: ${p.protocol} with an IPv${family} CIDR`,
      );
  } else assert.fail(`${where}: protocol ${p.protocol}`);
}

/** Terraform: security groups, their hosts (output), and the ingress/egress rule resources. */
function awsTfPerms(doc: Json): SgPerm[] {
  const resource = doc.resource as Record<string, Record<string, Json>>;
  const variables = doc.variable as Record<string, { type: string; description: string }>;
  assert.equal(variables.vpc_id?.type, 'string');
  const groups = resource.aws_security_group ?? {};
  const attach = (
    doc.output as Record<string, { value: Record<string, { id: string; attach_to: string[] }> }>
  ).security_groups?.value;
  assert.ok(attach, 'output security_groups');
  for (const [key, sg] of Object.entries(groups)) {
    for (const field of ['name', 'description'])
      assert.match(String(sg[field]), AWS_CHARSET, `${key}.${field}`);
    assert.equal(sg.vpc_id, `\${var.vpc_id}`);
    assert.deepEqual(attach[key]?.id, `\${aws_security_group.${key}.id}`);
    assert.ok(attach[key]?.attach_to.length, `${key} lists hosts`);
  }
  const perms: SgPerm[] = [];
  for (const dir of ['ingress', 'egress'] as const)
    for (const [name, r] of Object.entries(resource[`aws_vpc_security_group_${dir}_rule`] ?? {})) {
      const where = `${dir} ${name}`;
      const m = /^\$\{aws_security_group\.([A-Za-z0-9_-]+)\.id\}$/.exec(String(r.security_group_id));
      assert.ok(m?.[1] && groups[m[1]], `${where}: security_group_id ${String(r.security_group_id)}`);
      const hosts = attach[m[1]]?.attach_to ?? [];
      assert.match(String(r.description), AWS_CHARSET, `${where}: description`);
      if ('for_each' in r) {
        const v = /^\$\{toset\(var\.([A-Za-z0-9_-]+)\)\}$/.exec(String(r.for_each));
        assert.ok(
          v?.[1] && variables[v[1]]?.type === 'list(string)',
          `${where}: for_each over a list variable`,
        );
        assert.equal(r.cidr_ipv4, `\${can(cidrnetmask(each.value)) ? each.value : null}`);
        assert.equal(r.cidr_ipv6, `\${can(cidrnetmask(each.value)) ? null : each.value}`);
        // Arguments that differ by family are `can(cidrnetmask(each.value)) ? <v4> : <v6>`.
        const pick = (x: unknown, f: 4 | 6) => {
          const e = /^\$\{can\(cidrnetmask\(each\.value\)\) \? ("?[\w-]+"?) : ("?[\w-]+"?)\}$/.exec(
            String(x),
          );
          return e ? (JSON.parse((f === 4 ? e[1] : e[2]) as string) as unknown) : x;
        };
        for (const f of [4, 6] as const) {
          const p: SgPerm = {
            where,
            hosts,
            dir,
            protocol: String(pick(r.ip_protocol, f)),
            from: Number(pick(r.from_port, f)),
            to: Number(pick(r.to_port, f)),
            peer: { fill: (variables[v[1]] as { description: string }).description },
          };
          checkPorts(where, p, f);
          perms.push(p);
        }
        continue;
      }
      const cidrs = [r.cidr_ipv4, r.cidr_ipv6].filter((x) => x !== undefined) as string[];
      assert.equal(cidrs.length, 1, `${where}: exactly one of cidr_ipv4 / cidr_ipv6`);
      const cidr = cidrs[0] as string;
      assert.equal(fam(cidr), r.cidr_ipv4 !== undefined ? 4 : 6, `${where}: ${cidr} in the right attribute`);
      const p: SgPerm = {
        where,
        hosts,
        dir,
        protocol: String(r.ip_protocol),
        from: Number(r.from_port),
        to: Number(r.to_port),
        peer: { cidr },
      };
      checkPorts(where, p, fam(cidr));
      perms.push(p);
    }
  return perms;
}

/** CloudFormation: the same model from AWS::EC2::SecurityGroup{,Ingress,Egress} and Fn::ForEach loops. */
function awsCfnPerms(doc: Json): SgPerm[] {
  const resources = doc.Resources as Record<string, unknown>;
  const params = doc.Parameters as Record<string, { Type: string; Description: string }>;
  const conditions = (doc.Conditions ?? {}) as Record<string, unknown>;
  assert.equal(params.VpcId?.Type, 'AWS::EC2::VPC::Id');
  const groups = new Map<string, string[]>();
  for (const [id, r] of Object.entries(resources)) {
    const res = r as { Type?: string; Metadata?: { portolan: { attachTo: string[] } }; Properties?: Json };
    if (res.Type !== 'AWS::EC2::SecurityGroup') continue;
    const props = res.Properties as Json;
    for (const f of ['GroupName', 'GroupDescription'])
      assert.match(String(props[f]), AWS_CHARSET, `${id}.${f}`);
    assert.deepEqual(props.VpcId, { Ref: 'VpcId' });
    // The only inline egress rule replaces AWS's default allow-all one and reaches nothing off-host.
    assert.deepEqual(
      (props.SecurityGroupEgress as Json[]).map((e) => [e.IpProtocol, e.CidrIp]),
      [['-1', '127.0.0.1/32']],
    );
    groups.set(id, res.Metadata?.portolan.attachTo ?? []);
  }
  const perms: SgPerm[] = [];
  const add = (
    where: string,
    body: { Type: string; Properties: Json },
    peerOf: (f: 4 | 6) => Peer | undefined,
  ) => {
    const dir = body.Type === 'AWS::EC2::SecurityGroupIngress' ? 'ingress' : 'egress';
    assert.ok(['AWS::EC2::SecurityGroupIngress', 'AWS::EC2::SecurityGroupEgress'].includes(body.Type), where);
    const props = body.Properties;
    const sg = (props.GroupId as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'];
    assert.ok(groups.has(sg[0]) && sg[1] === 'GroupId', `${where}: GroupId`);
    assert.match(String(props.Description), AWS_CHARSET, `${where}: Description`);
    const family = 'CidrIp' in props ? 4 : 6;
    assert.ok('CidrIp' in props !== 'CidrIpv6' in props, `${where}: exactly one of CidrIp / CidrIpv6`);
    const peer = peerOf(family);
    assert.ok(peer, `${where}: peer`);
    const p: SgPerm = {
      where,
      hosts: groups.get(sg[0]) ?? [],
      dir,
      protocol: String(props.IpProtocol),
      from: Number(props.FromPort),
      to: Number(props.ToPort),
      peer,
    };
    checkPorts(where, p, family);
    perms.push(p);
  };
  for (const [id, r] of Object.entries(resources)) {
    if (id.startsWith('Fn::ForEach::')) {
      const [ident, coll, frag] = r as [
        string,
        { Ref: string },
        Record<string, { Type: string; Condition: string; Properties: Json }>,
      ];
      assert.equal(ident, 'Cidr');
      const param = params[coll.Ref];
      assert.equal(param?.Type, 'CommaDelimitedList', `${id}: loops over a CommaDelimitedList parameter`);
      const [[key, body]] = Object.entries(frag) as [
        [string, { Type: string; Condition: string; Properties: Json }],
      ];
      assert.ok(/^[A-Za-z0-9]+&\{Cidr\}$/.test(key), `${id}: output key ${key}`);
      assert.ok(conditions[body.Condition], `${id}: condition ${body.Condition} is defined`);
      const cidrRef = body.Properties.CidrIp ?? body.Properties.CidrIpv6;
      assert.deepEqual(cidrRef, { Ref: 'Cidr' });
      add(id, body, () => ({ fill: param.Description }));
      continue;
    }
    const res = r as { Type: string; Properties: Json };
    if (res.Type === 'AWS::EC2::SecurityGroup') continue;
    add(id, res, (f) => ({ cidr: String(res.Properties[f === 4 ? 'CidrIp' : 'CidrIpv6']) }));
  }
  return perms;
}

function protoMatches(p: SgPerm, f: Flow, range: [number, number] | null): boolean {
  if (range === null) {
    if (p.protocol !== 'icmp' && p.protocol !== 'icmpv6') return false;
    return f.icmpType === 'echo-request' ? p.from === (p.protocol === 'icmp' ? 8 : 128) : p.from === -1;
  }
  return p.protocol === f.protocol && p.from <= range[0] && range[1] <= p.to;
}

/**
 * A permitted port range is needed when the planned flows between the same two ends, together,
 * cover it: rules merge the ports of flows between the same hosts (137 and 138 are two flows).
 */
function withinUnion(range: readonly [number, number], flows: readonly Flow[]): boolean {
  return mergePortRanges(flows.flatMap((f) => f.ports)).some(([lo, hi]) => lo <= range[0] && range[1] <= hi);
}

/**
 * Every planned flow is an ingress rule on its destination's group and an egress rule on its
 * source's group; every rule serves, for every host its group is attached to, a planned flow.
 */
function assertSgCoverage(c: Case, perms: SgPerm[], what: string): void {
  for (const f of c.flows) {
    const rule = ruleOf(c, f);
    const needs: ['ingress' | 'egress', string, Endpoint][] = [];
    if (f.to.host && (!c.host || f.to.host === c.host)) needs.push(['ingress', f.to.host, f.from]);
    if (f.from.host && (!c.host || f.from.host === c.host)) needs.push(['egress', f.from.host, f.to]);
    for (const [dir, host, peer] of needs)
      for (const range of rangesOf(f))
        assert.ok(
          perms.some(
            (p) =>
              p.dir === dir &&
              p.hosts.includes(host) &&
              protoMatches(p, f, range) &&
              peerCovers(p.peer, peer, rule),
          ),
          `${what} ${c.label}: no ${dir} rule on the group of ${host} for ${f.id} ${range?.join('-') ?? f.icmpType}`,
        );
  }
  for (const p of perms)
    for (const host of p.hosts)
      assert.ok(
        ((matching) =>
          matching.some((f) => rangesOf(f).some((r) => r === null && protoMatches(p, f, null))) ||
          withinUnion(
            [p.from, p.to],
            matching.filter((f) => f.protocol === p.protocol),
          ))(
          c.flows.filter((f) =>
            p.dir === 'ingress'
              ? f.to.host === host && peerCovers(p.peer, f.from, ruleOf(c, f))
              : f.from.host === host && peerCovers(p.peer, f.to, ruleOf(c, f)),
          ),
        ),
        `${what} ${c.label}: ${p.where} opens ${p.protocol} ${p.from}-${p.to} on ${host}, which no planned flow needs`,
      );
}

describe('aws export', () => {
  it('Terraform: the resource shapes, names within AWS limits, and every planned flow both ways, exactly', () => {
    for (const r of rendered.aws ?? []) {
      const doc = JSON.parse(r.files['aws.tf.json'] as string) as Json;
      assertHeader(doc, r.c);
      assertTemplateSafe(`${r.c.label} aws.tf.json`, doc.resource);
      assert.ok(!/"(0\.0\.0\.0|::)\/0"/.test(r.files['aws.tf.json'] as string), 'no any-address rule');
      assertSgCoverage(r.c, awsTfPerms(doc), 'aws.tf.json');
    }
  });

  it('CloudFormation: the resource shapes, loops over parameters, and every planned flow both ways, exactly', () => {
    for (const r of rendered.aws ?? []) {
      const doc = JSON.parse(r.files['aws.cfn.json'] as string) as Json;
      assert.equal(doc.AWSTemplateFormatVersion, '2010-09-09');
      const header = (doc.Metadata as { portolan: { header: string[] } }).portolan.header;
      assert.ok(header.includes(`inventory sha256: ${r.c.model.inventorySha256}`));
      assert.ok(Buffer.byteLength(String(doc.Description)) <= 1024);
      const loops = Object.keys(doc.Resources as Json).some((k) => k.startsWith('Fn::ForEach::'));
      assert.equal(
        doc.Transform === 'AWS::LanguageExtensions',
        loops,
        'the transform exactly when loops are used',
      );
      assert.ok(!/"(0\.0\.0\.0|::)\/0"/.test(r.files['aws.cfn.json'] as string), 'no any-address rule');
      assertSgCoverage(r.c, awsCfnPerms(doc), 'aws.cfn.json');
    }
  });

  it('network mode: a group per role, split only where hosts of the role need different rules', () => {
    const r = (rendered.aws ?? []).find((x) => x.c.label === 'druva-vmware --network');
    assert.ok(r);
    const doc = JSON.parse(r.files['aws.tf.json'] as string) as Json;
    const groups = (doc.output as { security_groups: { value: Record<string, { attach_to: string[] }> } })
      .security_groups.value;
    // esx-edge is registered standalone (443 from the proxy); the cluster hosts are not (902 only).
    assert.deepEqual(groups['druva-vmware-esxi-1']?.attach_to, ['esx-cluster-a', 'esx-cluster-b']);
    assert.deepEqual(groups['druva-vmware-esxi-2']?.attach_to, ['esx-edge']);
    assert.deepEqual(groups['druva-vmware-backup-proxy']?.attach_to, ['proxy-01']);
  });

  it('DNS names and unspecified peers become variables / parameters, with a warning each', () => {
    const r = (rendered.aws ?? []).find((x) => x.c.label === 'druva-vmware --network');
    assert.ok(r);
    const tf = JSON.parse(r.files['aws.tf.json'] as string) as { variable: Record<string, { type: string }> };
    assert.equal(tf.variable.dns_phoenix_druva_com?.type, 'list(string)');
    const cfn = JSON.parse(r.files['aws.cfn.json'] as string) as {
      Parameters: Record<string, { Type: string }>;
    };
    assert.equal(cfn.Parameters.DnsPhoenixDruvaComIpv4?.Type, 'CommaDelimitedList');
    assert.equal(cfn.Parameters.DnsPhoenixDruvaComIpv6?.Type, 'CommaDelimitedList');
    assert.ok(r.warnings.some((w) => /dns_phoenix_druva_com/.test(w) && /phoenix\.druva\.com/.test(w)));
    assert.ok(r.warnings.some((w) => /forward-tcp-22-7/.test(w) && /unspecified/.test(w)));
  });

  it('aws.tf.json passes terraform validate with the real AWS provider', {
    skip: !(TF_OK && AWS_PROVIDER) && `needs terraform and the AWS provider in ${TF_MIRROR}`,
  }, () => {
    // One root module instantiating every export as a module: one provider load for all of them.
    const root = join(tmp, 'tf-aws');
    const modules: Json = {};
    (rendered.aws ?? []).forEach((r, i) => {
      const doc = JSON.parse(r.files['aws.tf.json'] as string) as Json;
      mkdirSync(join(root, `m${i}`), { recursive: true });
      writeFileSync(join(root, `m${i}`, 'main.tf.json'), r.files['aws.tf.json'] as string);
      modules[`m${i}`] = { source: `./m${i}`, ...fillValues(doc, false) };
    });
    writeFileSync(join(root, 'main.tf.json'), JSON.stringify({ module: modules }));
    const init = terraform(root, ['init', '-backend=false', '-input=false', '-no-color']);
    assert.equal(init.code, 0, init.stderr);
    const v = terraform(root, ['validate', '-json', '-no-color']);
    const result = JSON.parse(v.stdout) as { valid: boolean; diagnostics: unknown[] };
    assert.deepEqual(result.diagnostics, []);
    assert.equal(result.valid, true);
  });

  it('aws.cfn.json passes cfn-lint', { skip: !CFN_LINT && 'needs cfn-lint' }, () => {
    // cfn-lint takes about a second a template: network mode and the first host of every site, and
    // every host of the sites built to break things.
    const files = (rendered.aws ?? [])
      .filter((r) => r.c.scope <= 1 || HOSTILE.has(r.c.site) || r.c.site === 'v6-lab')
      .map((r) => join(r.dir, 'aws.cfn.json'));
    // W3687 says FromPort/ToPort are ignored for icmpv6; the EC2 API reads them as the ICMPv6 type
    // and code ("If the protocol is ICMP or ICMPv6, this is the ICMP type"), so the rule is kept.
    const r = spawnSync('cfn-lint', ['--format', 'json', '--ignore-checks', 'W3687', '--', ...files], {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    assert.deepEqual(JSON.parse(r.stdout || '[]'), [], r.stderr);
  });
});

// --- Azure and GCP ----------------------------------------------------------------------------------

interface NetRule {
  where: string;
  dir: 'in' | 'out';
  protocol: string;
  ranges: [number, number][] | null;
  src: string[];
  dst: string[];
  count: number;
}

function parseRanges(list: unknown): [number, number][] {
  return (list as string[]).map((s) => {
    assert.match(s, /^\d{1,5}(-\d{1,5})?$/);
    const [lo, hi] = s.split('-').map(Number) as [number, number?];
    return [lo, hi ?? lo];
  });
}

function azureRules(evaluated: Record<string, Json>): NetRule[] {
  return Object.entries(evaluated).map(([where, r]) => ({
    where,
    dir: r.direction === 'Inbound' ? 'in' : 'out',
    protocol: String(r.protocol).toLowerCase(),
    ranges: r.protocol === 'Icmp' ? null : parseRanges(r.destination_port_ranges),
    src: r.source_address_prefixes as string[],
    dst: r.destination_address_prefixes as string[],
    count: r.count === undefined ? 1 : Number(r.count),
  }));
}

function gcpRules(evaluated: Record<string, Json>): NetRule[] {
  return Object.entries(evaluated).map(([where, r]) => {
    const [allow] = r.allow as { protocol: string; ports?: string[] }[];
    assert.ok(allow);
    return {
      where,
      dir: r.direction === 'INGRESS' ? 'in' : 'out',
      protocol: allow.protocol === '58' ? 'icmp' : allow.protocol,
      ranges: allow.ports ? parseRanges(allow.ports) : null,
      src: r.source_ranges as string[],
      dst: r.destination_ranges as string[],
      count: r.count === undefined ? 1 : Number(r.count),
    };
  });
}

/** The concrete addresses an endpoint stands for: its own, or the test values of its fill variable. */
function candidates(e: Endpoint, rule: ExportRule, doc: Json, values: Record<string, unknown>): string[] {
  if (e.address !== null && !isDns(e.address)) return [e.address];
  const vars = doc.variable as Record<string, { type: string; description: string }>;
  const names = Object.entries(vars).filter(
    ([, v]) => v.type === 'list(string)' && fillFor(v.description, e, rule),
  );
  assert.ok(names.length > 0, `a variable to fill for ${e.address ?? e.description}`);
  return names.flatMap(([n]) => values[n] as string[]);
}

/**
 * Every planned flow is allowed in each direction the mode needs, for every pair of its addresses of
 * one family (families that never meet must be reported); every pair a rule allows is a planned flow.
 */
function assertNetCoverage(r: Rendered, doc: Json, rules: NetRule[], what: string): void {
  const c = r.c;
  const values = fillValues(doc, false);
  const live = rules.filter((x) => x.count === 1);
  for (const f of c.flows) {
    const rule = ruleOf(c, f);
    const from = candidates(f.from, rule, doc, values);
    const to = candidates(f.to, rule, doc, values);
    const pairs = from.flatMap((a) => to.filter((b) => fam(a) === fam(b)).map((b) => [a, b] as const));
    if (!pairs.length) {
      assert.ok(
        r.warnings.some((w) => w.includes(rule.id) && /same address family/.test(w)),
        `${what} ${c.label}: ${f.id} has no same-family pair and no warning says so`,
      );
      continue;
    }
    const dirs: ('in' | 'out')[] = c.host
      ? [
          ...(f.to.host === c.host ? ['in' as const] : []),
          ...(f.from.host === c.host ? ['out' as const] : []),
        ]
      : ['in', 'out'];
    for (const dir of dirs)
      for (const range of rangesOf(f))
        for (const [a, b] of pairs)
          assert.ok(
            live.some(
              (x) =>
                x.dir === dir &&
                x.protocol === f.protocol &&
                (range === null
                  ? x.ranges === null
                  : x.ranges?.some(([lo, hi]) => lo <= range[0] && range[1] <= hi)) &&
                x.src.some((s) => within(s, a)) &&
                x.dst.some((d) => within(d, b)),
            ),
            `${what} ${c.label}: no ${dir} rule for ${f.id} ${a} -> ${b} ${range?.join('-') ?? 'icmp'}`,
          );
  }
  for (const x of live)
    for (const s of x.src)
      for (const d of x.dst) {
        if (fam(s) !== fam(d)) assert.fail(`${what} ${c.label}: ${x.where} mixes ${s} and ${d}`);
        const matching = c.flows.filter(
          (f) =>
            f.protocol === x.protocol &&
            candidates(f.from, ruleOf(c, f), doc, values).some((a) => within(s, a)) &&
            candidates(f.to, ruleOf(c, f), doc, values).some((b) => within(d, b)),
        );
        assert.ok(
          matching.length > 0 && (x.ranges === null || x.ranges.every((r) => withinUnion(r, matching))),
          `${what} ${c.label}: ${x.where} allows ${s} -> ${d}, which no planned flow needs`,
        );
      }
}

/** With every fill variable empty, no rule exists with an empty address list (an empty list means any). */
function assertNoEmptyLists(r: Rendered, rules: NetRule[], what: string): void {
  for (const x of rules)
    assert.ok(
      x.count === 0 || (x.src.length > 0 && x.dst.length > 0),
      `${what} ${r.c.label}: ${x.where} with an empty list`,
    );
}

let evaluated: Map<string, { full: Record<string, Json>; empty: Record<string, Json> }> | undefined;
function evaluatedOnce(): Map<string, { full: Record<string, Json>; empty: Record<string, Json> }> {
  evaluated ??= evaluate(
    ['aws', 'azure', 'gcp'].flatMap((fmt) =>
      (rendered[fmt] ?? []).map((r, i) => ({
        key: `${fmt}:${i}`,
        doc: JSON.parse(r.files[`${fmt}.tf.json`] as string) as Json,
      })),
    ),
  );
  return evaluated;
}

const strip = (prefix: string, values: Record<string, Json>) =>
  Object.fromEntries(
    Object.entries(values)
      .filter(([k]) => k.startsWith(prefix))
      .map(([k, v]) => [k.slice(prefix.length), v]),
  );

const AZURE_NAME = /^[a-zA-Z0-9]([a-zA-Z0-9._-]{0,78}[a-zA-Z0-9_])?$/;
const GCP_NAME = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;

describe('azure export', () => {
  it('the resource shapes: names, unique priorities within 100-4096, protocols, ports, descriptions', () => {
    for (const r of rendered.azure ?? []) {
      const doc = JSON.parse(r.files['azure.tf.json'] as string) as Json;
      assertHeader(doc, r.c);
      assertTemplateSafe(`${r.c.label} azure.tf.json`, doc.resource);
      const rules =
        ((doc.resource ?? {}) as Record<string, Record<string, Json>>).azurerm_network_security_rule ?? {};
      const seen = new Set<string>();
      for (const [k, x] of Object.entries(rules)) {
        assert.match(String(x.name), AZURE_NAME, k);
        assert.match(String(x.description), PRINTABLE(140), k);
        assert.ok(['Inbound', 'Outbound'].includes(String(x.direction)), k);
        assert.equal(x.access, 'Allow');
        assert.ok(['Tcp', 'Udp', 'Icmp'].includes(String(x.protocol)), k);
        assert.equal(x.source_port_range, '*');
        assert.equal(x.resource_group_name, `\${var.resource_group_name}`);
        assert.equal(x.network_security_group_name, `\${var.network_security_group_name}`);
        const p = Number(x.priority);
        assert.ok(Number.isInteger(p) && p >= 100 && p <= 4096, `${k}: priority ${p}`);
        const key = `${x.direction}:${p}`;
        assert.ok(!seen.has(key), `${k}: priority ${p} used twice for ${String(x.direction)}`);
        seen.add(key);
        if (x.protocol === 'Icmp') assert.equal(x.destination_port_range, '*');
        else parseRanges(x.destination_port_ranges);
      }
    }
  });

  it('terraform evaluates the rules to every planned flow, both directions, exactly, never an empty list', {
    skip: !TF_OK && 'needs terraform',
  }, () => {
    const ev = evaluatedOnce();
    (rendered.azure ?? []).forEach((r, i) => {
      const doc = JSON.parse(r.files['azure.tf.json'] as string) as Json;
      const values = ev.get(`azure:${i}`);
      assert.ok(values);
      assertNetCoverage(r, doc, azureRules(strip('azurerm_network_security_rule__', values.full)), 'azure');
      assertNoEmptyLists(r, azureRules(strip('azurerm_network_security_rule__', values.empty)), 'azure');
    });
  });

  it('refuses to go past priority 4096, naming the rule', async () => {
    const gen = await loadGenerator('azure');
    const model = (n: number): ExportModel => ({
      site: 's',
      mode: 'network',
      inventorySha256: 'x',
      generatorVersion: 't',
      localFlows: [],
      rules: Array.from({ length: n }, (_, i) => ({
        id: `forward-tcp-${i + 1}-${i + 1}`,
        direction: 'forward',
        protocol: 'tcp',
        ports: [[i + 1, i + 1]],
        src: { v4: ['10.0.0.1/32'], v6: [], names: [], unspecified: [], hosts: ['a'] },
        dst: { v4: ['10.0.0.2/32'], v6: [], names: [], unspecified: [], hosts: ['b'] },
        services: ['s'],
        flows: [],
      })),
    });
    // 100, 110, ..., 4090: 400 rules per direction fit; the 401st would need 4100.
    const ok = JSON.parse(gen.render(model(400)).files[0]?.content ?? '') as Json;
    const priorities = Object.values(
      (ok.resource as Record<string, Record<string, { priority: number }>>).azurerm_network_security_rule ??
        {},
    ).map((x) => x.priority);
    assert.equal(Math.max(...priorities), 4090);
    assert.throws(
      () => gen.render(model(401)),
      (e: unknown) =>
        e instanceof InputError && /forward-tcp-401-401/.test(e.message) && /4096/.test(e.message),
    );
  });
});

describe('gcp export', () => {
  it('the resource shapes: names match GCP pattern and are unique, one family per rule, protocols, ports', () => {
    for (const r of rendered.gcp ?? []) {
      const doc = JSON.parse(r.files['gcp.tf.json'] as string) as Json;
      assertHeader(doc, r.c);
      assertTemplateSafe(`${r.c.label} gcp.tf.json`, doc.resource);
      const fws =
        ((doc.resource ?? {}) as Record<string, Record<string, Json>>).google_compute_firewall ?? {};
      const names = new Set<string>();
      for (const [k, x] of Object.entries(fws)) {
        assert.match(String(x.name), GCP_NAME, k);
        assert.ok(!names.has(String(x.name)), `${k}: name used twice`);
        names.add(String(x.name));
        assert.match(String(x.description), PRINTABLE(255), k);
        assert.equal(x.network, `\${var.network}`);
        assert.ok(['INGRESS', 'EGRESS'].includes(String(x.direction)), k);
        const [allow, ...more] = x.allow as { protocol: string; ports?: string[] }[];
        assert.ok(allow && more.length === 0, k);
        assert.ok(['tcp', 'udp', 'icmp', '58'].includes(allow.protocol), k);
        if (allow.protocol === 'icmp' || allow.protocol === '58') assert.equal(allow.ports, undefined, k);
        else parseRanges(allow.ports);
        // Literal lists hold one family, matching the ICMP protocol number.
        const lists = [x.source_ranges, x.destination_ranges].filter(Array.isArray) as string[][];
        const families = new Set(lists.flat().map(fam));
        assert.ok(families.size <= 1, `${k} mixes IPv4 and IPv6`);
        if (allow.protocol === '58') assert.ok(!families.has(4), k);
        if (allow.protocol === 'icmp') assert.ok(!families.has(6), k);
      }
    }
  });

  it('terraform evaluates the rules to every planned flow, both directions, exactly, never an empty list', {
    skip: !TF_OK && 'needs terraform',
  }, () => {
    const ev = evaluatedOnce();
    (rendered.gcp ?? []).forEach((r, i) => {
      const doc = JSON.parse(r.files['gcp.tf.json'] as string) as Json;
      const values = ev.get(`gcp:${i}`);
      assert.ok(values);
      const full = gcpRules(strip('google_compute_firewall__', values.full));
      for (const x of full.filter((y) => y.count === 1))
        assert.ok(
          new Set([...x.src, ...x.dst].map(fam)).size === 1,
          `${x.where} mixes families after evaluation`,
        );
      assertNetCoverage(r, doc, full, 'gcp');
      assertNoEmptyLists(r, gcpRules(strip('google_compute_firewall__', values.empty)), 'gcp');
    });
  });

  it('keeps names within 63 characters for a long site name', async () => {
    const gen = await loadGenerator('gcp');
    const r = (rendered.gcp ?? []).find((x) => x.c.label === 'mixed-site --network');
    assert.ok(r);
    const out = gen.render({
      ...r.c.model,
      site: `${'very-long-site-name-'.repeat(10)}Ünïcode ${'x'.repeat(40)}`,
    });
    const fws = (
      JSON.parse(out.files[0]?.content ?? '') as {
        resource: { google_compute_firewall: Record<string, { name: string }> };
      }
    ).resource.google_compute_firewall;
    const names = Object.values(fws).map((x) => x.name);
    for (const n of names) assert.match(n, GCP_NAME);
    assert.equal(new Set(names).size, names.length);
  });
});

// --- Cisco IOS ------------------------------------------------------------------------------------

const NAME = '([A-Z][A-Z0-9_-]{0,63})';
const IP4 = '(\\d{1,3}(?:\\.\\d{1,3}){3})';
const IP6 = '([0-9a-f:]+:[0-9a-f:]*)';
const PORTS = '(eq \\d{1,5}|range \\d{1,5} \\d{1,5})';

interface Og {
  type: 'network' | 'v6-network' | 'service' | 'v6-service';
  description?: string;
  cidrs: string[];
  nested: string[];
  services: string[];
}

interface Ace {
  family: 4 | 6;
  protocol: string;
  ranges: [number, number][] | null;
  icmpType?: 'echo-request' | 'any';
  src: string;
  dst: string;
}

function ports(clause: string): [number, number] {
  const [kw, a, b] = clause.split(' ');
  return kw === 'eq' ? [Number(a), Number(a)] : [Number(a), Number(b)];
}

function netmaskLength(mask: string): number {
  const bits = mask
    .split('.')
    .map((o) => Number(o).toString(2).padStart(8, '0'))
    .join('');
  assert.match(bits, /^1*0*$/, `a contiguous netmask: ${mask}`);
  return bits.indexOf('0') === -1 ? 32 : bits.indexOf('0');
}

/**
 * A strict reader for the IOS statements the generator may write: every line must be one of them,
 * in its section, referring only to object-groups declared before (of the right family).
 */
function parseIos(text: string): { groups: Map<string, Og>; aces: Ace[]; acls: string[] } {
  const groups = new Map<string, Og>();
  const aces: Ace[] = [];
  const acls: string[] = [];
  let og: Og | undefined;
  let acl: 4 | 6 | undefined;
  for (const line of text.replace(/\n$/, '').split('\n')) {
    let m: string[] = [];
    const is = (re: string) => {
      m = [...(new RegExp(`^${re}$`).exec(line) ?? [])].map((x) => x ?? '');
      return m.length > 0;
    };
    const use = (name: string | undefined, type: Og['type']) =>
      assert.equal(
        groups.get(name ?? '')?.type,
        type,
        `undeclared or wrong-family object-group ${name}: ${line}`,
      );
    const netType = acl === 6 ? 'v6-network' : 'network';
    // Comments too: IOS takes a `?` as a help request even there when the file is pasted.
    if (is('!( [\\x20-\\x3e\\x40-\\x7e]*)?')) {
      og = undefined;
      acl = undefined;
    } else if (is(`object-group (network|v6-network|service|v6-service) ${NAME}`)) {
      assert.ok(!groups.has(m[2] as string), `object-group ${m[2]} declared twice`);
      og = { type: m[1] as Og['type'], cidrs: [], nested: [], services: [] };
      groups.set(m[2] as string, og);
      acl = undefined;
    } else if (is(`(ip access-list extended|ipv6 access-list) ${NAME}`)) {
      acl = m[1] === 'ipv6 access-list' ? 6 : 4;
      og = undefined;
      acls.push(m[2] as string);
    } else if (og && og.description === undefined && is(' description ([\\x20-\\x7e]{1,200})')) {
      assert.ok(!m[1]?.includes('?'), line);
      og.description = m[1] as string;
    } else if (og?.type === 'network' && is(` host ${IP4}`)) og.cidrs.push(`${m[1]}/32`);
    else if (og?.type === 'network' && is(` ${IP4} ${IP4}`))
      og.cidrs.push(`${m[1]}/${netmaskLength(m[2] as string)}`);
    else if (og?.type === 'v6-network' && is(` host ${IP6}`)) og.cidrs.push(`${m[1]}/128`);
    else if (og?.type === 'v6-network' && is(` ${IP6}/(\\d{1,3})`)) og.cidrs.push(`${m[1]}/${m[2]}`);
    else if ((og?.type === 'network' || og?.type === 'v6-network') && is(` group-object ${NAME}`)) {
      use(m[1], og.type);
      og.nested.push(m[1] as string);
    } else if ((og?.type === 'service' || og?.type === 'v6-service') && is(` (tcp|udp) ${PORTS}`))
      og.services.push(line.trim());
    else if (og?.type === 'v6-service' && is(' icmp( echo-request)?')) og.services.push(line.trim());
    else if (acl && is(' remark ([\\x20-\\x7e]{1,100})')) assert.ok(!m[1]?.includes('?'), line);
    else if (acl === 4 && is(` permit (tcp|udp) object-group ${NAME} object-group ${NAME} ${PORTS}`)) {
      use(m[2], 'network');
      use(m[3], 'network');
      aces.push({
        family: 4,
        protocol: m[1] as string,
        ranges: [ports(m[4] as string)],
        src: m[2] as string,
        dst: m[3] as string,
      });
    } else if (acl === 4 && is(` permit icmp object-group ${NAME} object-group ${NAME}( echo)?`)) {
      use(m[1], 'network');
      use(m[2], 'network');
      const icmpType = m[3] ? 'echo-request' : 'any';
      aces.push({
        family: 4,
        protocol: 'icmp',
        ranges: null,
        icmpType,
        src: m[1] as string,
        dst: m[2] as string,
      });
    } else if (acl && is(` permit object-group ${NAME} object-group ${NAME} object-group ${NAME}`)) {
      const [svc, src, dst] = [m[1], m[2], m[3]] as [string, string, string];
      use(svc, acl === 4 ? 'service' : 'v6-service');
      use(src, netType);
      use(dst, netType);
      const entries = groups.get(svc)?.services ?? [];
      const protocols = new Set(entries.map((e) => e.split(' ')[0]));
      assert.equal(protocols.size, 1, `one protocol per service group: ${line}`);
      const protocol = [...protocols][0] as string;
      if (protocol === 'icmp') {
        const icmpType = entries[0] === 'icmp echo-request' ? 'echo-request' : 'any';
        aces.push({ family: acl, protocol, ranges: null, icmpType, src, dst });
      } else {
        const ranges = entries.map((e) => ports(e.split(' ').slice(1).join(' ')));
        aces.push({ family: acl, protocol, ranges, src, dst });
      }
    } else assert.fail(`not a known IOS statement: ${JSON.stringify(line)}`);
  }
  return { groups, aces, acls };
}

/** An object-group's addresses and the fill-in placeholders it nests, resolved. */
function resolveOg(groups: Map<string, Og>, name: string): { cidrs: string[]; fills: string[] } {
  const g = groups.get(name) as Og;
  const nested = g.nested.map((n) => resolveOg(groups, n));
  const placeholder = !g.cidrs.length && !g.nested.length;
  if (placeholder)
    assert.match(g.description ?? '', /^FILL IN: /, `empty object-group ${name} is a placeholder`);
  return {
    cidrs: [...g.cidrs, ...nested.flatMap((n) => n.cidrs)],
    fills: [...(placeholder ? [g.description as string] : []), ...nested.flatMap((n) => n.fills)],
  };
}

function ogCovers(
  og: { cidrs: string[]; fills: string[] },
  e: Endpoint,
  rule: ExportRule,
  family: 4 | 6,
): boolean {
  if (e.address !== null && !isDns(e.address)) return og.cidrs.some((c) => within(c, e.address as string));
  return og.fills.some((t) => fillFor(t, e, rule) && t.includes(`IPv${family}`));
}

describe('cisco export', () => {
  it('every line is a known IOS statement; names declared before use; remarks and descriptions within limits', () => {
    for (const r of rendered.cisco ?? []) {
      const text = r.files['cisco-ios.cfg'] as string;
      assert.match(text, /^! Generated by portolan /);
      assert.ok(text.includes(`! inventory sha256: ${r.c.model.inventorySha256}`));
      const { groups, acls } = parseIos(text);
      assert.ok(acls.every((a) => a.startsWith('PORTOLAN-')));
      for (const [name, g] of groups)
        if ((g.type === 'network' || g.type === 'v6-network') && !g.cidrs.length && !g.nested.length)
          assert.ok(
            r.warnings.some((w) => w.includes(`object-group ${name} `)),
            `${r.c.label}: no warning names placeholder ${name}`,
          );
      assert.ok(
        !/\bany\b/.test(
          text
            .split('\n')
            .filter((l) => l.startsWith(' permit'))
            .join('\n'),
        ),
        'no "any" in a permit',
      );
    }
  });

  it('every planned flow has a permit in its family ACL, and every permit pair is a planned flow', () => {
    for (const r of rendered.cisco ?? []) {
      const c = r.c;
      const { groups, aces } = parseIos(r.files['cisco-ios.cfg'] as string);
      const resolved = aces.map((a) => ({ ...a, s: resolveOg(groups, a.src), d: resolveOg(groups, a.dst) }));
      for (const f of c.flows) {
        const rule = ruleOf(c, f);
        const families = ([4, 6] as const).filter((family) =>
          [f.from, f.to].every((e) => e.address === null || isDns(e.address) || fam(e.address) === family),
        );
        if (!families.length) {
          assert.ok(
            r.warnings.some((w) => w.includes(rule.id) && /same address family/.test(w)),
            `${c.label}: ${f.id} unreported`,
          );
          continue;
        }
        for (const family of families)
          for (const range of rangesOf(f))
            assert.ok(
              resolved.some(
                (a) =>
                  a.family === family &&
                  a.protocol === f.protocol &&
                  (range === null
                    ? a.icmpType === (f.icmpType ?? 'any')
                    : a.ranges?.some(([lo, hi]) => lo <= range[0] && range[1] <= hi)) &&
                  ogCovers(a.s, f.from, rule, family) &&
                  ogCovers(a.d, f.to, rule, family),
              ),
              `${c.label}: no IPv${family} permit for ${f.id} ${range?.join('-') ?? 'icmp'}`,
            );
      }
      for (const a of resolved)
        for (const s of [...a.s.cidrs, ...a.s.fills])
          for (const d of [...a.d.cidrs, ...a.d.fills])
            assert.ok(
              ((matching) =>
                matching.length > 0 &&
                (a.ranges === null || a.ranges.every((r) => withinUnion(r, matching))))(
                c.flows.filter((f) => {
                  const rule = ruleOf(c, f);
                  const ok = (x: string, e: Endpoint) =>
                    x.includes('/') && !x.startsWith('FILL IN')
                      ? e.address !== null && !isDns(e.address) && within(x, e.address)
                      : fillFor(x, e, rule);
                  return f.protocol === a.protocol && ok(s, f.from) && ok(d, f.to);
                }),
              ),
              `${c.label}: a permit allows ${s} -> ${d} ${a.protocol}, which no planned flow needs`,
            );
    }
  });

  it('declares IPv6 supported and renders the IPv6 example as an ipv6 access-list', () => {
    const r = (rendered.cisco ?? []).find((x) => x.c.label === 'v6-lab --network');
    assert.ok(r);
    assert.match(r.files['cisco-ios.cfg'] as string, /^ipv6 access-list PORTOLAN-V6-LAB-V6$/m);
    assert.match(
      r.files['cisco-ios.cfg'] as string,
      /^object-group v6-service PORTOLAN-ICMP-ECHO-V6\n icmp echo-request$/m,
    );
  });
});

// --- every format ----------------------------------------------------------------------------------

describe('hostile inventories in the cloud and IOS exports', () => {
  const hostile = () =>
    Object.entries(rendered).flatMap(([fmt, rs]) =>
      rs.filter((r) => HOSTILE.has(r.c.site)).map((r) => [fmt, r] as const),
    );

  it('render, and every sanitized field keeps to its platform character set', () => {
    assert.ok(hostile().length > 0);
    for (const [fmt, r] of hostile()) {
      for (const [path, content] of Object.entries(r.files)) {
        if (path.endsWith('.json')) JSON.parse(content);
        else parseIos(content);
        assert.ok(!content.includes('\r'), `${fmt} ${r.c.label}: a carriage return in ${path}`);
      }
    }
  });

  it('terraform reads template syntax in user text as literal text', {
    skip: !TF_OK && 'needs terraform',
  }, () => {
    const ev = evaluatedOnce();
    let checked = 0;
    for (const fmt of ['aws', 'gcp']) {
      (rendered[fmt] ?? []).forEach((r, i) => {
        if (r.c.site !== 'tf-hostile') return;
        const values = ev.get(`${fmt}:${i}`)?.full ?? {};
        const texts = Object.values(values).flatMap((b) =>
          fmt === 'aws' ? [b.name, b.description].filter((x) => x !== undefined) : [b.description],
        ) as string[];
        assert.ok(texts.length > 0);
        for (const t of texts) {
          if (fmt === 'aws') assert.match(t, AWS_CHARSET);
          else assert.match(t, PRINTABLE(255));
        }
        const siteTexts = texts.filter((t) => t.includes('tf '));
        assert.ok(siteTexts.length > 0, `${fmt} ${r.c.label}: the site name reaches a name or description`);
        for (const t of siteTexts) {
          // Still the literal characters: not replaced by a file's content or the variable's value.
          assert.ok(t.includes(fmt === 'aws' ? `\${file(_/etc/passwd_)}` : `\${file("/etc/passwd")}`), t);
          assert.ok(t.includes(`\${var.vpc_id}`) && !t.includes('test-vpc_id'), t);
          assert.ok(t.includes(`$\${y}`), t);
          checked++;
        }
      });
    }
    assert.ok(checked > 0);
  });

  it('the hostile unspecified-peer description stays inside its variable description and IOS description', () => {
    const r = (rendered.cisco ?? []).find((x) => x.c.label === 'hostile --network');
    assert.ok(r);
    const { groups } = parseIos(r.files['cisco-ios.cfg'] as string);
    assert.ok(
      [...groups.values()].some((g) => g.description?.includes('anyone"; ip saddr 0.0.0.0/0 accept; # }')),
    );
    const aws = (rendered.aws ?? []).find((x) => x.c.label === 'hostile --network');
    const doc = JSON.parse(aws?.files['aws.tf.json'] as string) as {
      variable: Record<string, { description: string }>;
    };
    const d = Object.values(doc.variable).find((v) => v.description.includes('anyone'));
    assert.ok(d && !/[\n\r]/.test(d.description));
  });
});

describe('cloud exports through the CLI', () => {
  it('aws writes two files and needs -o DIR', () => {
    const r = runCli(['export', 'examples/veeam-proxmox.yaml', '--to', 'aws', '--network']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /aws\.tf\.json, aws\.cfn\.json.*-o DIR/);
    const out = join(tmp, 'cli-aws');
    const ok = runCli(['export', 'examples/veeam-proxmox.yaml', '--to', 'aws', '--network', '-o', `${out}/`]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(readdirSync(out).sort(), ['.portolan-aws.files', 'aws.cfn.json', 'aws.tf.json']);
    assert.match(ok.stderr, /warning: .*dns_repository_veeam_com.*repository\.veeam\.com/);
  });

  it('cisco, azure and gcp print one file to stdout, with warnings on stderr', () => {
    const cisco = runCli(['export', 'examples/veeam-proxmox.yaml', '--to', 'cisco', '--network']);
    assert.equal(cisco.code, 0, cisco.stderr);
    assert.match(cisco.stdout, /^ip access-list extended PORTOLAN-PVE-PROD$/m);
    assert.match(cisco.stderr, /warning: .*PORTOLAN-DNS-REPOSITORY-VEEAM-COM/);
    // app-01 is IPv6 and talks only to IPv4 hosts: reported, not silently dropped.
    assert.match(cisco.stderr, /warning: rule .*2001:db8:40::10\) .*same address family/);
    for (const fmt of ['azure', 'gcp']) {
      const r = runCli(['export', 'examples/platespin-legacy.yaml', '--to', fmt, '--host', 'fileserver-new']);
      assert.equal(r.code, 0, r.stderr);
      JSON.parse(r.stdout);
      // ICMP types cannot be matched on these platforms: said, not hidden.
      assert.match(r.stderr, /cannot match ICMP types/);
    }
  });

  it('declares both modes, ICMP and IPv6, and no native DNS-name matching', () => {
    for (const name of ['aws', 'azure', 'gcp', 'cisco']) {
      const caps = gens[name]?.capabilities;
      assert.deepEqual(caps, { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: false }, name);
    }
  });
});

describe('cisco remarks', () => {
  it('a long remark goes on at most three remark lines of 100 characters, each broken between words', () => {
    const esx = Array.from(
      { length: 24 },
      (_, i) => `  esxi-host-number-${i}: { address: 10.1.0.${i + 1}, roles: [druva-vmware:esxi] }`,
    );
    const dir = mkdtempSync(join(tmpdir(), 'portolan-remark-'));
    const file = join(dir, 'site.yaml');
    writeFileSync(
      file,
      `site: remarks\nproducts:\n  druva-vmware: {}\nhosts:\n  proxy-01: { address: 10.0.0.1, roles: [druva-vmware:backup-proxy] }\n${esx.join('\n')}\n`,
    );
    try {
      const { inventory, catalogs } = loadSite(file);
      const model = buildExportModel(buildPlan(inventory, catalogs), inventory, { generatorVersion: 'test' });
      const text = (gens.cisco as Generator).render(model).files[0]?.content ?? '';
      const lines = text.split('\n');
      const full = model.rules.map(
        (r) => `${r.id} ${r.services.join(',')}: ${hostList(r.src)} -> ${hostList(r.dst)}`,
      );
      let long = 0;
      for (let i = 0; i < lines.length; i++) {
        if (!lines[i]?.startsWith(' remark ')) continue;
        const group: string[] = [];
        while (lines[i]?.startsWith(' remark ')) group.push((lines[i++] as string).slice(' remark '.length));
        assert.ok(group.length <= 3, `${group.length} remark lines`);
        for (const g of group) assert.ok(g.length <= 100, g);
        const said = group.join(' ');
        const cut = said.endsWith('...');
        const head = cut ? said.slice(0, -3) : said;
        const whole = full.find((f) => (cut ? f.startsWith(head) : f === head));
        assert.ok(whole, `remark ${JSON.stringify(said)} is not a rule's text`);
        if (cut) {
          long++;
          // The cut falls between words: what follows in the full text is a separator.
          assert.match(whole.slice(head.length), /^[ ,]/, said);
        }
        // Every continuation line starts a word of its own.
        let at = 0;
        for (const g of group.slice(0, -1)) {
          at += g.length;
          assert.match(whole.slice(at, at + 1), /^[ ,]?$/, `${g} | ${whole.slice(at, at + 10)}`);
          at += 1;
        }
      }
      assert.ok(long > 0, 'the 24-host rule needs a cut remark');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
