import { InputError } from '../errors.js';
import type { PortRange } from '../model/ports.js';
import { portServiceText } from '../plan/rules.js';
import {
  appPorts,
  asciiText,
  cut,
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
import type { ExportResult, Generator } from './generator.js';
import { headerLines, oneLine } from './header.js';
import { type ExportModel, setIsEmpty } from './model.js';

/**
 * ufw, host mode: application profiles in the /etc/ufw/applications.d format (one INI section per
 * application: a product role's port set) and a script of `ufw allow` commands naming them, one per
 * planned peer. ufw commands cannot match ICMP, so ICMP is declared unsupported; forwarding
 * (`ufw route`) between hosts is not offered.
 */

export const PROFILE_FILE = 'applications.d/portolan';
export const SCRIPT_FILE = 'ufw-commands.sh';
/** ufw skips a profile whose name is longer (ufw/applications.py get_profiles). */
export const PROFILE_NAME_MAX = 64;
/** ufw skips a profile with a longer field value (ufw/applications.py get_profiles). */
export const FIELD_MAX = 1024;
/** iptables multiport takes 15 ports, a range counting 2 (ufw/common.py: at most 14 `,` and `:`). */
export const MULTIPORT_MAX = 15;
const PLATFORM = 'ufw';

/**
 * The one escaping function for profile fields: ufw reads the file with Python's configparser in
 * the system locale, and a value ends at the line break, so a value is one line of plain ASCII
 * (asciiText), at most FIELD_MAX characters.
 */
export function iniValue(text: string): string {
  return cut(asciiText(text).trim(), FIELD_MAX);
}

/** Port lists for one protocol, split so no list exceeds the multiport limit. */
function portLists(ranges: readonly PortRange[]): string[] {
  const lists: string[][] = [];
  let current: string[] = [];
  let weight = 0;
  for (const [lo, hi] of ranges) {
    const w = lo === hi ? 1 : 2;
    if (weight + w > MULTIPORT_MAX) {
      lists.push(current);
      current = [];
      weight = 0;
    }
    current.push(lo === hi ? `${lo}` : `${lo}:${hi}`);
    weight += w;
  }
  if (current.length) lists.push(current);
  return lists.map((l) => l.join(','));
}

/** The `ports=` value: `80,443/tcp|137,138/udp`. */
export function profilePorts(app: Pick<HostApp, 'tcp' | 'udp'>): string {
  return (['tcp', 'udp'] as const).flatMap((p) => portLists(app[p]).map((l) => `${l}/${p}`)).join('|');
}

function profiles(model: ExportModel, apps: HostApp[]): string {
  const comment = (text: string) => `# ${iniValue(text)}`;
  const lines = [
    ...headerLines(model, PLATFORM).map(comment),
    '#',
    comment('Copy to /etc/ufw/applications.d/portolan (ufw-commands.sh does).'),
  ];
  for (const app of apps) {
    const ports = profilePorts(app);
    if (ports.length > FIELD_MAX)
      throw new InputError(
        `--to ufw: application ${app.name} needs ${ports.length} characters of ports, more than ufw reads in one field (${FIELD_MAX})`,
      );
    lines.push(
      '',
      `[${app.name}]`,
      `title=${iniValue(`portolan ${app.product} ${app.role}: ${app.services.join(', ')}`)}`,
      `description=${iniValue(`${appPorts(app)}. ${app.purposes.join(' ')}`)}`,
      `ports=${ports}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

function command(g: Grant, address: string): string {
  const app = `app ${shq(g.app.name)} comment ${shq(`portolan ${g.id}`)}`;
  return g.direction === 'in'
    ? `ufw allow from ${address} to any ${app}`
    : `ufw allow out to ${address} ${app}`;
}

function renderGrant(g: Grant, fills: Fill[], warnings: string[]): string[] {
  const peers = g.direction === 'in' ? 'from' : 'to';
  const what = `${portServiceText(g.flows)} ${peers} ${g.peers.hosts.map((h) => h ?? 'unspecified peer').join(', ')}`;
  const lines = [
    shComment(`${g.id}: app ${g.app.name}, ${portServiceText(g.flows)} ${peers} ${peerNames(g.peers.hosts)}`),
    ...flowProvenance(g.flows, g.peers, peers).map(shComment),
  ];
  if (setIsEmpty(g.peers)) {
    const why = 'it has no peer addresses (an empty match would mean any)';
    warnings.push(`rule ${g.id} (${oneLine(what)}) is not rendered: ${why}`);
    return [...lines, shComment(`not rendered: ${why}`), ''];
  }
  for (const a of [...g.peers.v4, ...g.peers.v6]) lines.push(command(g, shq(plainAddress(a))));
  if (g.peers.names.length || g.peers.unspecified.length) {
    const fill: Fill = {
      id: g.id,
      variable: shellPlaceholder(g.id),
      what,
      names: g.peers.names,
      unspecified: g.peers.unspecified,
    };
    fills.push(fill);
    warnings.push(fillWarning(fill, 'a ufw rule', SCRIPT_FILE));
    lines.push(
      `for address in $${fill.variable}; do check_address "$address"; ${command(g, '"$address"')}; done`,
    );
  }
  return [...lines, ''];
}

function script(model: ExportModel, grants: Grant[], warnings: string[]): string {
  const fills: Fill[] = [];
  const body = grants.flatMap((g) => renderGrant(g, fills, warnings));
  return [
    '#!/bin/sh',
    ...headerLines(model, PLATFORM).map(shComment),
    '#',
    `# Copies the application profiles (${PROFILE_FILE} next to this script) into $PORTOLAN_UFW_APPS_DIR`,
    '# (default /etc/ufw/applications.d), then allows each planned peer the application it uses. Run as',
    '# root. Outbound rules matter only with a default outgoing policy of deny (ufw default deny outgoing).',
    ...PROVENANCE_NOTE,
    ...localFlowLines(model).map(shComment),
    'set -eu',
    'set -f',
    'here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)',
    `cp "$here/${PROFILE_FILE}" "\${PORTOLAN_UFW_APPS_DIR:-/etc/ufw/applications.d}/portolan"`,
    '',
    ...shellPlaceholderBlock(fills, 'ufw'),
    ...body,
  ].join('\n');
}

export const generator: Generator = {
  name: 'ufw',
  family: 'firewall',
  summary: 'ufw application profiles per product role and the ufw allow commands that use them',
  capabilities: { modes: ['host'], icmp: false, ipv6: true, dnsNames: false },
  render(model: ExportModel): ExportResult {
    if (model.mode !== 'host') throw new InputError('--to ufw supports host mode only (--host NAME)');
    const warnings: string[] = [];
    const { apps, grants } = hostApplications(model, PROFILE_NAME_MAX);
    const portless = new Set(apps.filter((a) => !a.tcp.length && !a.udp.length).map((a) => a.name));
    for (const g of grants)
      if (portless.has(g.app.name))
        warnings.push(
          `rule ${g.id} (${g.app.services.join(', ')}) is not rendered: it has no ports (ufw needs ports in a profile)`,
        );
    const usable = grants.filter((g) => !portless.has(g.app.name));
    return {
      files: [
        {
          path: PROFILE_FILE,
          content: profiles(
            model,
            apps.filter((a) => !portless.has(a.name)),
          ),
        },
        { path: SCRIPT_FILE, content: script(model, usable, warnings) },
      ],
      warnings,
    };
  },
};
