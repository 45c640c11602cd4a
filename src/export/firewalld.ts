import { InputError } from '../errors.js';
import { portServiceText } from '../plan/rules.js';
import { pushAll } from '../util/arrays.js';
import {
  appPorts,
  type Fill,
  fillWarning,
  flowProvenance,
  type Grant,
  type HostApp,
  hostApplications,
  localFlowLines,
  PROVENANCE_NOTE,
  peerNames,
  plainAddress,
  shComment,
  shellPlaceholder,
  shellPlaceholderBlock,
  shq,
} from './_hostfw.js';
import type { ExportFile, ExportResult, Generator } from './generator.js';
import { headerLines, oneLine } from './header.js';
import { type AddressSet, type ExportModel, type ExportRule, ruleSummary, setIsEmpty } from './model.js';

/**
 * firewalld, host mode: one service XML file per application (a product role's port set) and a
 * script that installs them and adds rich rules allowing exactly the planned peers. Inbound rules go
 * into a zone; outbound ones into the policy `portolan-out` (HOST -> ANY). Network mode is not
 * offered: forwarding between hosts would need policies between zones this tool cannot know.
 */

export const SCRIPT_FILE = 'portolan-zone.sh';
export const SERVICES_DIR = 'services';
/**
 * firewalld allows letters, digits, `_` and `-` in a service name (core/io/service.py) and sets no
 * length; the name is also the file name `<name>.xml`, and file names stop at 255 bytes.
 */
export const SERVICE_NAME_MAX = 255 - '.xml'.length;
/** firewalld limits a policy name to 17 characters (functions.max_policy_name_len). */
export const OUT_POLICY = 'portolan-out';
const PLATFORM = 'firewalld';

const XML_ENTITIES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
};

/** Characters XML 1.0 allows (besides ASCII): a lone surrogate or U+FFFE/U+FFFF would not parse. */
function xmlChar(cp: number): boolean {
  return (cp >= 0x20 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
}

/**
 * The one escaping function for XML text and attribute values: one line (oneLine), the five markup
 * characters as entities, and everything outside ASCII as a character reference, so the file is
 * plain ASCII and firewalld reads back exactly the original text (less its line breaks).
 */
export function xmlText(text: string): string {
  return oneLine(text)
    .trim()
    .replace(/[&<>"']/g, (c) => XML_ENTITIES[c] ?? '')
    .replace(/[^\x20-\x7e]/gu, (c) => {
      const cp = c.codePointAt(0) ?? 0x3f;
      return xmlChar(cp) ? `&#x${cp.toString(16).toUpperCase()};` : '?';
    });
}

/** An XML comment: the text escaped as above, and no `--` (which would end or break the comment). */
function xmlComment(text: string): string {
  return `<!-- ${xmlText(text).replace(/-(?=-)/g, '- ')} -->`;
}

function serviceXml(model: ExportModel, app: HostApp): string {
  const description = `${app.product} ${app.role}: ${app.services.join(', ')} (${appPorts(app)}). ${app.purposes.join(' ')}`;
  const ports = (['tcp', 'udp'] as const).flatMap((proto) =>
    app[proto].map(
      ([lo, hi]) => `  <port protocol="${proto}" port="${xmlText(lo === hi ? `${lo}` : `${lo}-${hi}`)}"/>`,
    ),
  );
  return [
    ...headerLines(model, PLATFORM).map(xmlComment),
    '<service>',
    `  <short>${xmlText(`portolan ${app.product} ${app.role} (${appPorts(app)})`)}</short>`,
    `  <description>${xmlText(description)}</description>`,
    ...ports,
    '</service>',
    '',
  ].join('\n');
}

/** The part of a rich rule that names the traffic, per address family. */
interface Element {
  v4: string;
  v6: string;
}

function serviceElement(app: HostApp): Element {
  const e = `service name="${app.name}"`;
  return { v4: e, v6: e };
}

function icmpElement(r: ExportRule): Element {
  if (r.icmpType === 'echo-request')
    return { v4: 'icmp-type name="echo-request"', v6: 'icmp-type name="echo-request"' };
  return { v4: 'protocol value="icmp"', v6: 'protocol value="ipv6-icmp"' };
}

/** A rule to render: an application's grant, or an ICMP rule straight from the model. */
interface Item {
  id: string;
  direction: 'in' | 'out';
  peers: AddressSet;
  element: Element;
  what: string;
  comment: string[];
}

function addCommand(
  direction: 'in' | 'out',
  family: 'ipv4' | 'ipv6',
  address: string,
  element: string,
): string {
  const side = direction === 'in' ? 'source' : 'destination';
  const rule = `rule family="${family}" ${side} address="${address}" ${element} accept`;
  const target = direction === 'in' ? '--zone="$zone"' : `--policy=${shq(OUT_POLICY)}`;
  return `firewall-cmd --permanent ${target} --add-rich-rule=${shq(rule)}`;
}

function renderItem(item: Item, fills: Fill[], warnings: string[]): string[] {
  const lines = item.comment.map(shComment);
  if (setIsEmpty(item.peers)) {
    const why = 'it has no peer addresses (an empty match would mean any)';
    warnings.push(`rule ${item.id} (${oneLine(item.what)}) is not rendered: ${why}`);
    return [...lines, shComment(`not rendered: ${why}`), ''];
  }
  for (const a of item.peers.v4)
    lines.push(addCommand(item.direction, 'ipv4', plainAddress(a), item.element.v4));
  for (const a of item.peers.v6)
    lines.push(addCommand(item.direction, 'ipv6', plainAddress(a), item.element.v6));
  if (item.peers.names.length || item.peers.unspecified.length) {
    const fill: Fill = {
      id: item.id,
      variable: shellPlaceholder(item.id),
      what: item.what,
      names: item.peers.names,
      unspecified: item.peers.unspecified,
    };
    fills.push(fill);
    warnings.push(fillWarning(fill, 'a firewalld rich rule', SCRIPT_FILE));
    lines.push(
      `for address in $${fill.variable}; do rich ${item.direction} "$address" ${shq(item.element.v4)} ${shq(item.element.v6)}; done`,
    );
  }
  return [...lines, ''];
}

function grantItem(g: Grant): Item {
  const peers = g.direction === 'in' ? 'from' : 'to';
  const what = `${portServiceText(g.flows)} ${peers} ${g.peers.hosts.map((h) => h ?? 'unspecified peer').join(', ')}`;
  return {
    id: g.id,
    direction: g.direction,
    peers: g.peers,
    element: serviceElement(g.app),
    what,
    comment: [
      `${g.id}: service ${g.app.name}, ${portServiceText(g.flows)} ${peers} ${peerNames(g.peers.hosts)}`,
      ...flowProvenance(g.flows, g.peers, peers),
    ],
  };
}

function icmpItem(r: ExportRule): Item {
  const direction = r.direction === 'out' ? 'out' : 'in';
  const what = `icmp ${r.icmpType ?? 'any'}: ${ruleSummary(r)}`;
  return {
    id: r.id,
    direction,
    peers: direction === 'in' ? r.src : r.dst,
    element: icmpElement(r),
    what,
    comment: [
      `${r.id}: ${what}`,
      ...flowProvenance(r.flows, direction === 'in' ? r.src : r.dst, direction === 'in' ? 'from' : 'to'),
    ],
  };
}

function script(model: ExportModel, apps: HostApp[], items: Item[], warnings: string[]): string {
  const fills: Fill[] = [];
  const body = items.flatMap((item) => renderItem(item, fills, warnings));
  const outbound = items.some((i) => i.direction === 'out');
  const lines = [
    '#!/bin/sh',
    ...headerLines(model, PLATFORM).map(shComment),
    '#',
    `# Installs the firewalld services in ${SERVICES_DIR}/ next to this script and adds rich rules that allow`,
    '# exactly the planned peers. Inbound: the zone $PORTOLAN_ZONE (default: the default zone).',
    `# Outbound: the policy ${OUT_POLICY} (HOST to ANY). Its target stays CONTINUE, so its rules change`,
    '# nothing until you set it to REJECT or DROP (firewall-cmd --permanent --policy=portolan-out',
    '# --set-target=REJECT) to allow only the planned outbound flows. Run as root, then apply with',
    '# firewall-cmd --reload. firewalld 0.9 or later (policies).',
    ...PROVENANCE_NOTE,
    ...localFlowLines(model).map(shComment),
    'set -eu',
    'set -f',
    'here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a template
    'zone=${PORTOLAN_ZONE:-$(firewall-cmd --get-default-zone)}',
    '',
  ];
  if (apps.length)
    lines.push(
      '# install_service NAME: (re)installs services/NAME.xml as a permanent firewalld service.',
      'install_service() {',
      '  if firewall-cmd --permanent --info-service="$1" >/dev/null 2>&1; then',
      '    firewall-cmd --permanent --delete-service="$1"',
      '  fi',
      `  firewall-cmd --permanent --new-service-from-file="$here/${SERVICES_DIR}/$1.xml" --name="$1"`,
      '}',
      ...apps.map((a) => `install_service ${shq(a.name)}`),
      '',
    );
  if (outbound)
    lines.push(
      `if ! firewall-cmd --permanent --info-policy=${shq(OUT_POLICY)} >/dev/null 2>&1; then`,
      `  firewall-cmd --permanent --new-policy=${shq(OUT_POLICY)}`,
      `  firewall-cmd --permanent --policy=${shq(OUT_POLICY)} --add-ingress-zone=HOST`,
      `  firewall-cmd --permanent --policy=${shq(OUT_POLICY)} --add-egress-zone=ANY`,
      'fi',
      '',
    );
  pushAll(lines, shellPlaceholderBlock(fills, 'a firewalld rich rule'));
  if (fills.length)
    lines.push(
      '# rich in|out ADDRESS ELEMENT-IPV4 ELEMENT-IPV6: the rich rule for one address you filled in.',
      'rich() {',
      '  check_address "$2"',
      '  case $2 in',
      '    *:*) family=ipv6 element=$4 ;;',
      '    *) family=ipv4 element=$3 ;;',
      '  esac',
      '  if [ "$1" = in ]; then',
      '    firewall-cmd --permanent --zone="$zone" --add-rich-rule="rule family=\\"$family\\" source address=\\"$2\\" $element accept"',
      '  else',
      `    firewall-cmd --permanent --policy=${shq(OUT_POLICY)} --add-rich-rule="rule family=\\"$family\\" destination address=\\"$2\\" $element accept"`,
      '  fi',
      '}',
      '',
    );
  pushAll(lines, [
    ...body,
    'echo "portolan: firewalld permanent configuration updated; apply it with: firewall-cmd --reload"',
    '',
  ]);
  return lines.join('\n');
}

export const generator: Generator = {
  name: 'firewalld',
  family: 'firewall',
  summary: 'firewalld service XML files per product role and a rich-rule script (zone in, policy out)',
  capabilities: { modes: ['host'], icmp: true, ipv6: true, dnsNames: false },
  render(model: ExportModel): ExportResult {
    if (model.mode !== 'host') throw new InputError('--to firewalld supports host mode only (--host NAME)');
    const warnings: string[] = [];
    const { apps, grants } = hostApplications(model, SERVICE_NAME_MAX);
    const portless = new Set(apps.filter((a) => !a.tcp.length && !a.udp.length).map((a) => a.name));
    const usable = apps.filter((a) => !portless.has(a.name));
    const items: Item[] = [];
    for (const g of grants) {
      if (portless.has(g.app.name)) {
        warnings.push(
          `rule ${g.id} (${g.app.services.join(', ')}) is not rendered: it has no ports (a service without ports allows nothing)`,
        );
        continue;
      }
      items.push(grantItem(g));
    }
    for (const r of model.rules) if (r.protocol === 'icmp') items.push(icmpItem(r));
    items.sort((a, b) => (a.direction === b.direction ? 0 : a.direction === 'in' ? -1 : 1));
    const files: ExportFile[] = [
      { path: SCRIPT_FILE, content: script(model, usable, items, warnings) },
      ...usable.map((a) => ({ path: `${SERVICES_DIR}/${a.name}.xml`, content: serviceXml(model, a) })),
    ];
    return { files, warnings };
  },
};
