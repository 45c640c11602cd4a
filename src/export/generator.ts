import { InputError } from '../errors.js';
import type { ExportModel, ExportRule } from './model.js';

/** One output file of an export. A single-file export goes to stdout when no -o is given. */
export interface ExportFile {
  /** Relative path inside the output directory (or the file name for -o FILE). */
  path: string;
  content: string;
}

export interface ExportResult {
  files: ExportFile[];
  /** Things the user must do or know (a DNS name left as a set to fill, a flow not rendered). */
  warnings: string[];
}

/** What a platform can express; anything else is an error that says so (never a silent omission). */
export interface Capabilities {
  modes: readonly ('host' | 'network')[];
  icmp: boolean;
  ipv6: boolean;
  /** The platform matches DNS names itself (else names become a set/variable the user fills). */
  dnsNames: boolean;
}

export interface Generator {
  name: string;
  /** firewall | cloud | table | diagram */
  family: 'firewall' | 'cloud' | 'table' | 'diagram';
  summary: string;
  capabilities: Capabilities;
  render(model: ExportModel): ExportResult;
}

/** Refuses what a generator cannot express, naming the rule and the reason. */
export function checkSupported(gen: Generator, model: ExportModel): void {
  const caps = gen.capabilities;
  if (!caps.modes.includes(model.mode))
    throw new InputError(
      `--to ${gen.name} does not support ${model.mode} mode (expected ${caps.modes.map((m) => (m === 'host' ? '--host NAME' : '--network')).join(' or ')})`,
    );
  for (const r of model.rules) {
    if (r.protocol === 'icmp' && !caps.icmp)
      throw new InputError(`--to ${gen.name} cannot express ICMP, which rule ${r.id} (${describe(r)}) needs`);
    if (!caps.ipv6 && (r.src.v6.length || r.dst.v6.length))
      throw new InputError(
        `--to ${gen.name} is IPv4-only, but rule ${r.id} (${describe(r)}) has IPv6 addresses`,
      );
  }
}

function describe(r: ExportRule): string {
  return `${r.services.join(',')} ${r.src.hosts.map((h) => h ?? 'unspecified').join(',')} -> ${r.dst.hosts.map((h) => h ?? 'unspecified').join(',')}`;
}
