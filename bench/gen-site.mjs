#!/usr/bin/env node
// Writes a generated site inventory of about N hosts across the three products, for the scale
// benchmark and tests: fixed infrastructure per product, ESXi hosts as addresses and /28s, guests
// with os and databases facts, PlateSpin sources with drives. Usage: gen-site.mjs N > site.yaml
// (or import { generateSite } and call it). Deterministic: the same N gives the same file.

/** The inventory text for about `n` hosts (at least the fixed infrastructure). */
export function generateSite(n) {
  const lines = [
    `site: scale-${n}`,
    'products:',
    '  druva-vmware: { features: [app-aware-sql, dr-restore] }',
    '  platespin: { version: "2019.5" }',
    '  veeam-proxmox: { features: [app-aware, log-shipping] }',
    'hosts:',
    '  druva-cloud: { address: phoenix.druva.com, roles: [druva-vmware:druva-cloud] }',
    '  vc-01: { address: 10.0.0.10, roles: [druva-vmware:vcenter] }',
    '  ntp-01: { address: 10.0.0.123, roles: [druva-vmware:ntp-server] }',
    '  ps-01: { address: 10.0.0.20, roles: [platespin:platespin-server] }',
    '  vbr-01: { address: 10.0.0.30, roles: [veeam-proxmox:backup-server, veeam-proxmox:guest-interaction-proxy] }',
    '  lss-01: { address: 10.0.0.31, roles: [veeam-proxmox:log-shipping-server] }',
  ];
  const per = (share, min = 1) => Math.max(min, Math.round(n * share));
  const ip = (i) => `10.${16 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
  let next = 256; // host addresses, one each, from 10.16.1.0 on
  const add = (name, roles, facts) =>
    lines.push(
      `  ${name}: { address: ${ip(next++)}, roles: [${roles.join(', ')}]${facts ? `, facts: ${facts}` : ''} }`,
    );
  // Infrastructure does not grow with the estate: every proxy may back up every guest, so each
  // one adds a flow per guest.
  for (let i = 0; i < 2; i++) add(`proxy-${i}`, ['druva-vmware:backup-proxy']);
  for (let i = 0; i < 2; i++) add(`worker-${i}`, ['veeam-proxmox:worker']);
  for (let i = 0; i < 2; i++) add(`repo-${i}`, ['veeam-proxmox:repository']);
  for (let i = 0; i < 4; i++) add(`pve-${i}`, ['veeam-proxmox:proxmox-server']);
  for (let i = 0; i < 2; i++) add(`landing-${i}`, ['platespin:target']);
  // ESXi: half single addresses, half /28 blocks (from 172.16.0.0 on, 16 addresses each).
  const esx = per(0.02);
  for (let i = 0; i < esx; i++) {
    if (i % 2 === 0)
      add(`esx-${i}`, ['druva-vmware:esxi'], `{ registration: ${i % 4 === 0 ? 'vcenter' : 'standalone'} }`);
    else {
      const b = i * 16;
      lines.push(
        `  esx-${i}: { address: 172.${16 + (b >> 16)}.${(b >> 8) & 255}.${b & 255}/28, roles: [druva-vmware:esxi] , facts: { registration: vcenter } }`,
      );
    }
  }
  const rest = Math.max(0, n - (next - 256) - esx - 6);
  for (let i = 0; i < rest; i++) {
    const k = i % 10;
    if (k < 6) {
      const os = k % 2 === 0 ? 'windows' : 'linux';
      add(`vm-${i}`, ['druva-vmware:guest'], `{ os: ${os} }`);
    } else if (k < 9) {
      const os = k === 6 ? 'windows' : 'linux';
      add(`pxg-${i}`, ['veeam-proxmox:guest'], `{ os: ${os}${k === 6 ? ', databases: [mssql]' : ''} }`);
    } else
      add(
        `src-${i}`,
        ['platespin:source'],
        i % 20 === 9 ? '{ os: windows, drives: [C, D] }' : '{ os: linux }',
      );
  }
  return `${lines.join('\n')}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const n = Number(process.argv[2] ?? 1000);
  if (!Number.isInteger(n) || n < 1) {
    console.error('usage: gen-site.mjs N (a whole number of hosts)');
    process.exit(2);
  }
  process.stdout.write(generateSite(n));
}
