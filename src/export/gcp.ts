/**
 * Google Cloud VPC firewall rules as Terraform JSON (`google_compute_firewall`), built as an object
 * and written by JSON.stringify, for the network named by a variable.
 *
 * Host mode: the host's inbound rules (INGRESS, destination = the host) and outbound rules (EGRESS,
 * source = the host). Network mode: every rule as INGRESS and as EGRESS with explicit source and
 * destination ranges, so it holds whether or not egress is locked down.
 *
 * GCP forbids mixing IPv4 and IPv6 ranges in one rule, so each rule renders once per family whose
 * ranges exist on both sides. An empty source or destination range list widens a GCP rule to every
 * address, so a rule that depends on a variable the user fills (DNS names, unspecified peers) is
 * created only when both lists are non-empty (`count`). Names follow GCP's
 * `[a-z]([-a-z0-9]{0,61}[a-z0-9])?` and carry the site, since firewall names are project-wide.
 */
import {
  FAMILIES,
  type Family,
  FillNames,
  familyOrphans,
  fillWarnings,
  hostList,
  portStrings,
  sideHas,
  tfArgs,
  tfExpr,
  tfFamilyList,
  tfFillVariable,
  tfIdent,
} from './_cloud.js';
import type { ExportResult, Generator } from './generator.js';
import { headerLines, oneLine } from './header.js';
import type { ExportModel, ExportRule } from './model.js';

/** GCP resource names: `[a-z]([-a-z0-9]{0,61}[a-z0-9])?`, so at most 63 characters. */
export const NAME_MAX = 63;
export const NAME_PATTERN = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** portolan's rules all allow, so their order is irrelevant: GCP's default priority. */
export const PRIORITY = 1000;
const DESCRIPTION_MAX = 255;

/** The one sanitizer for GCP description text: one line of printable ASCII. */
export function gcpText(text: string, max = DESCRIPTION_MAX): string {
  const folded = oneLine(text)
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '');
  return folded
    .replace(/[^\x20-\x7e]/g, '_')
    .replace(/ {2,}/g, ' ')
    .trim()
    .slice(0, max)
    .trim();
}

/** A GCP name from parts: lowercase letters, digits and hyphens; the site part shortened to fit. */
export function gcpName(site: string, rest: string): string {
  const slug = (s: string) =>
    s
      .toLowerCase()
      .normalize('NFKD')
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '');
  const tail = slug(rest);
  const room = NAME_MAX - 'portolan-'.length - tail.length - 1;
  const sitePart = slug(site).slice(0, Math.max(0, room)).replace(/-+$/, '');
  return `portolan-${sitePart ? `${sitePart}-` : ''}${tail}`.slice(0, NAME_MAX).replace(/-+$/, '');
}

/** GCP protocol names; ICMPv6 is protocol 58. */
function protocol(rule: ExportRule, family: Family): string {
  if (rule.protocol !== 'icmp') return rule.protocol;
  return family === 'v4' ? 'icmp' : '58';
}

export const generator: Generator = {
  name: 'gcp',
  family: 'cloud',
  summary: 'GCP VPC firewall rules: Terraform JSON google_compute_firewall (gcp.tf.json)',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: false },
  render(model: ExportModel): ExportResult {
    const fills = new FillNames((f) => tfIdent(f.kind === 'dns' ? `dns_${f.key}` : `peers_${f.key}`));
    const firewalls: Record<string, unknown> = {};
    const warnings: string[] = [];
    for (const rule of model.rules) {
      const directions =
        rule.direction === 'forward'
          ? (['INGRESS', 'EGRESS'] as const)
          : ([rule.direction === 'in' ? 'INGRESS' : 'EGRESS'] as const);
      for (const family of FAMILIES) {
        if (!sideHas(rule.src, family) || !sideHas(rule.dst, family)) continue;
        const src = tfFamilyList(rule, 'src', family, fills);
        const dst = tfFamilyList(rule, 'dst', family, fills);
        const guards = [src.guard, dst.guard].filter((g): g is string => g !== undefined);
        for (const direction of directions) {
          const suffix = `${direction === 'INGRESS' ? 'in' : 'eg'}${family === 'v4' ? 4 : 6}`;
          firewalls[tfIdent(`${rule.id}_${suffix}`)] = tfArgs({
            ...(guards.length ? { count: tfExpr(`${guards.join(' && ')} ? 1 : 0`) } : {}),
            name: gcpName(model.site, `${rule.id}-${suffix}`),
            description: gcpText(
              `${rule.id} ${rule.services.join(',')}: ${hostList(rule.src)} -> ${hostList(rule.dst)} (site ${model.site})`,
            ),
            network: tfExpr('var.network'),
            direction,
            priority: PRIORITY,
            allow: [
              {
                protocol: protocol(rule, family),
                ...(rule.protocol === 'icmp' ? {} : { ports: portStrings(rule.ports) }),
              },
            ],
            source_ranges: src.value,
            destination_ranges: dst.value,
          });
        }
      }
      const orphan = familyOrphans(rule);
      if (orphan) warnings.push(`${orphan} (GCP firewall rules cannot mix IPv4 and IPv6)`);
      if (rule.protocol === 'icmp' && rule.icmpType === 'echo-request')
        warnings.push(
          `rule ${rule.id}: GCP firewall rules cannot match ICMP types, so it allows all ICMP (not only echo-request) between its hosts`,
        );
    }
    const variable: Record<string, object> = {
      network: {
        type: 'string',
        description: 'The VPC network the firewall rules apply to (name or self link).',
      },
    };
    for (const { fill, name } of fills.all)
      variable[name] = tfFillVariable(
        name,
        fill,
        'GCP firewall rules cannot match DNS names or unnamed peers.',
      );
    const doc = {
      '//': [
        ...headerLines(model, 'gcp').map(oneLine),
        ...(model.localFlows.length
          ? [`${model.localFlows.length} flow(s) stay on host ${model.host?.name}: not rules`]
          : []),
      ],
      terraform: { required_providers: { google: { source: 'hashicorp/google', version: '>= 5.0' } } },
      variable,
      ...(Object.keys(firewalls).length ? { resource: { google_compute_firewall: firewalls } } : {}),
    };
    if (model.localFlows.length)
      warnings.push(
        `${model.localFlows.length} flow(s) stay on host ${model.host?.name} and need no firewall rule`,
      );
    return {
      files: [{ path: 'gcp.tf.json', content: `${JSON.stringify(doc, null, 2)}\n` }],
      warnings: [...fillWarnings(fills, 'GCP firewall rules', 'variable'), ...warnings],
    };
  },
};
