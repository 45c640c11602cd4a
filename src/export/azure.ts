/**
 * Azure network security group rules as Terraform JSON (`azurerm_network_security_rule`), built as an
 * object and written by JSON.stringify, for an existing NSG named by variables.
 *
 * Host mode: the host's inbound and outbound rules (for the NSG on its NIC). Network mode: every rule
 * twice, Inbound (where it arrives) and Outbound (where it leaves), with explicit source and
 * destination prefixes, so the same rules work on the NSG of either subnet.
 *
 * Azure refuses IPv4 and IPv6 prefixes in one rule, so each rule renders once per address family
 * whose prefixes exist on both sides. Priorities count from 100 in steps of 10 per direction and must
 * stay within Azure's 100-4096. NSGs cannot match DNS names: each name becomes a list variable the
 * user fills, as do peers the documents leave unspecified; a rule that depends on a variable is
 * created only when its prefix lists are non-empty (`count`), never with an empty list.
 */
import { InputError } from '../errors.js';
import {
  FAMILIES,
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

/** Azure NSG rule priorities: 100 (first) to 4096 (last); portolan uses steps of 10 per direction. */
export const PRIORITY_FIRST = 100;
export const PRIORITY_STEP = 10;
export const PRIORITY_MAX = 4096;
/** Azure limits: rule description 140 characters, rule name 80. */
export const DESCRIPTION_MAX = 140;
export const NAME_MAX = 80;

/** The one sanitizer for Azure text fields: one line of printable ASCII, at most `max` characters. */
export function azureText(text: string, max = DESCRIPTION_MAX): string {
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

const PROTOCOL = { tcp: 'Tcp', udp: 'Udp', icmp: 'Icmp' } as const;

export const generator: Generator = {
  name: 'azure',
  family: 'cloud',
  summary: 'Azure NSG rules: Terraform JSON azurerm_network_security_rule with priorities (azure.tf.json)',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: false },
  render(model: ExportModel): ExportResult {
    const fills = new FillNames((f) => tfIdent(f.kind === 'dns' ? `dns_${f.key}` : `peers_${f.key}`));
    const rules: Record<string, unknown> = {};
    const next = { Inbound: PRIORITY_FIRST, Outbound: PRIORITY_FIRST };
    const warnings: string[] = [];
    for (const rule of model.rules) {
      const directions =
        rule.direction === 'forward'
          ? (['Inbound', 'Outbound'] as const)
          : ([rule.direction === 'in' ? 'Inbound' : 'Outbound'] as const);
      for (const family of FAMILIES) {
        if (!sideHas(rule.src, family) || !sideHas(rule.dst, family)) continue;
        const src = tfFamilyList(rule, 'src', family, fills);
        const dst = tfFamilyList(rule, 'dst', family, fills);
        const guards = [src.guard, dst.guard].filter((g): g is string => g !== undefined);
        for (const direction of directions) {
          const priority = next[direction];
          if (priority > PRIORITY_MAX)
            throw new InputError(
              `--to azure: rule ${rule.id} would need ${direction} priority ${priority}, past Azure's maximum of ${PRIORITY_MAX} (${(PRIORITY_MAX - PRIORITY_FIRST) / PRIORITY_STEP + 1} rules per direction at steps of ${PRIORITY_STEP}); export fewer hosts per NSG`,
            );
          next[direction] += PRIORITY_STEP;
          const suffix = `${direction === 'Inbound' ? 'in' : 'out'}-${family}`;
          rules[tfIdent(`${rule.id}_${suffix}`)] = tfArgs({
            ...(guards.length ? { count: tfExpr(`${guards.join(' && ')} ? 1 : 0`) } : {}),
            name: `portolan-${rule.id}-${suffix}`.slice(0, NAME_MAX),
            description: describe(rule),
            resource_group_name: tfExpr('var.resource_group_name'),
            network_security_group_name: tfExpr('var.network_security_group_name'),
            priority,
            direction,
            access: 'Allow',
            protocol: PROTOCOL[rule.protocol],
            source_port_range: '*',
            ...(rule.protocol === 'icmp'
              ? { destination_port_range: '*' }
              : { destination_port_ranges: portStrings(rule.ports) }),
            source_address_prefixes: src.value,
            destination_address_prefixes: dst.value,
          });
        }
      }
      const orphan = familyOrphans(rule);
      if (orphan) warnings.push(`${orphan} (Azure NSG rules cannot mix IPv4 and IPv6)`);
      if (rule.protocol === 'icmp' && rule.icmpType === 'echo-request')
        warnings.push(
          `rule ${rule.id}: Azure NSG rules cannot match ICMP types, so it allows all ICMP (not only echo-request) between its hosts`,
        );
    }
    const variable: Record<string, object> = {
      resource_group_name: {
        type: 'string',
        description: 'The resource group of the network security group.',
      },
      network_security_group_name: {
        type: 'string',
        description: 'The network security group the rules go into.',
      },
    };
    for (const { fill, name } of fills.all)
      variable[name] = tfFillVariable(name, fill, 'Azure NSG rules cannot match DNS names or unnamed peers.');
    const local = model.localFlows.length
      ? [`${model.localFlows.length} flow(s) stay on host ${model.host?.name}: not rules`]
      : [];
    const doc = {
      '//': [
        ...headerLines(model, 'azure').map(oneLine),
        `Priorities: from ${PRIORITY_FIRST} in steps of ${PRIORITY_STEP} per direction, up to ${Math.max(next.Inbound, next.Outbound) - PRIORITY_STEP}; keep your own rules outside that range.`,
        ...local,
      ],
      terraform: { required_providers: { azurerm: { source: 'hashicorp/azurerm', version: '>= 3.0' } } },
      variable,
      ...(Object.keys(rules).length ? { resource: { azurerm_network_security_rule: rules } } : {}),
    };
    if (model.localFlows.length)
      warnings.push(
        `${model.localFlows.length} flow(s) stay on host ${model.host?.name} and need no NSG rule`,
      );
    return {
      files: [{ path: 'azure.tf.json', content: `${JSON.stringify(doc, null, 2)}\n` }],
      warnings: [...fillWarnings(fills, 'Azure NSG rules', 'variable'), ...warnings],
    };
  },
};

function describe(rule: ExportRule): string {
  return azureText(`${rule.id} ${rule.services.join(',')}: ${hostList(rule.src)} -> ${hostList(rule.dst)}`);
}
