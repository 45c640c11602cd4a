import type { Generator } from './generator.js';

/** Every export format, lazily loaded: one file per platform, all rendering the same ExportModel. */
export const FORMATS = {
  nftables: () => import('./nftables.js'),
  iptables: () => import('./iptables.js'),
  firewalld: () => import('./firewalld.js'),
  ufw: () => import('./ufw.js'),
  windows: () => import('./windows.js'),
  aws: () => import('./aws.js'),
  azure: () => import('./azure.js'),
  gcp: () => import('./gcp.js'),
  cisco: () => import('./cisco.js'),
  csv: () => import('./csv.js'),
  'flat-csv': () => import('./flat-csv.js'),
  markdown: () => import('./markdown.js'),
  html: () => import('./html.js'),
  mermaid: () => import('./mermaid.js'),
  dot: () => import('./dot.js'),
  svg: () => import('./svg.js'),
} satisfies Record<string, () => Promise<{ generator: Generator }>>;

export type FormatName = keyof typeof FORMATS;
export const FORMAT_NAMES = Object.keys(FORMATS) as FormatName[];

export async function loadGenerator(name: FormatName): Promise<Generator> {
  return (await FORMATS[name]()).generator;
}
