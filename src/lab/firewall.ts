import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { ExportModel } from '../export/model.js';
import { version } from '../util/version.js';
import { hostModel, type LoadedLab, renderRuleset } from './site.js';
import { LabError, type LabHost, type LabState, type RulesetSource } from './state.js';
import { inNs, run } from './sys.js';

/**
 * Loading a host's ruleset into its namespace. Generated rulesets are re-rendered from the lab's
 * rules copy each time (so `break` and `ablate` change the model, never edit text); the user's own
 * file is copied into the lab directory at `up` and loaded as it is.
 */

/** nftables text or an iptables-save dump, by its content. */
export function rulesetFormat(text: string): 'nftables' | 'iptables-save' {
  return /^\*(filter|nat|mangle|raw|security)\s*$/m.test(text) && /^COMMIT\s*$/m.test(text)
    ? 'iptables-save'
    : 'nftables';
}

/** Copies the user's ruleset for HOST into the lab directory; returns its source record. */
export function adoptUserRuleset(dir: string, host: string, file: string): RulesetSource {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new LabError(`--ruleset ${host}=${file}: cannot read it (${(err as NodeJS.ErrnoException).code})`);
  }
  const format = rulesetFormat(text);
  const copy = join(dir, `user-${host}-${basename(file)}`);
  copyFileSync(file, copy);
  return { kind: 'user', format, file: copy };
}

/** Renders (generated) and loads a host's ruleset in its namespace; `model` overrides the host's own. */
export async function loadRuleset(
  state: LabState,
  host: LabHost,
  rules: LoadedLab,
  model?: ExportModel,
): Promise<void> {
  const r = host.ruleset;
  if (r.kind === 'user') {
    if (r.format === 'nftables') inNs(host.ns, 'nft', ['-f', r.file]);
    else inNs(host.ns, 'iptables-nft-restore', [r.file]);
    return;
  }
  const files = await renderRuleset(model ?? hostModel(rules, host, version()), r.firewall);
  if (r.firewall === 'nftables') {
    const file = join(state.dir, `${host.name}.nft`);
    writeFileSync(file, files[0]?.content ?? '');
    inNs(host.ns, 'nft', ['-f', file]);
    return;
  }
  for (const f of files) {
    const v6 = f.path.startsWith('ip6');
    const file = join(state.dir, `${host.name}.${v6 ? 'ip6tables' : 'iptables'}.rules`);
    writeFileSync(file, f.content);
    inNs(host.ns, v6 ? 'ip6tables-nft-restore' : 'iptables-nft-restore', [file]);
  }
}

/** nft's view of the whole ruleset in a namespace (for tests and `lab list --debug`). */
export function nftRuleset(ns: string): string {
  return run('ip', ['netns', 'exec', ns, 'nft', 'list', 'ruleset']);
}
