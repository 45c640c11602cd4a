import { spawnSync } from 'node:child_process';
import { basename, join } from 'node:path';
import { InputError } from '../errors.js';
import type { ExportModel } from '../export/model.js';
import { writeFileAtomic } from '../util/atomic.js';
import { readBounded } from '../util/read.js';
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

/** The largest user ruleset `lab up --ruleset` reads: far above any hand-kept firewall, and /dev/zero stops here. */
export const MAX_RULESET_BYTES = 64 * 1024 * 1024;

/**
 * The user's ruleset FILE for HOST, read once and bounded (readBounded: a FIFO, /dev/zero or a file
 * over MAX_RULESET_BYTES is a located InputError, exit 2), with its format (rulesetFormat).
 */
function userRuleset(
  host: string,
  file: string,
): { bytes: Buffer; format: ReturnType<typeof rulesetFormat> } {
  const bytes = readBounded(file, MAX_RULESET_BYTES, `--ruleset ${host} file`);
  return { bytes, format: rulesetFormat(bytes.toString('utf8')) };
}

/**
 * Checks the user's ruleset for HOST before anything is built: the file is loaded by the tool that
 * will load it in the lab (`nft -c -f` for nftables, `iptables-nft-restore` for an iptables-save
 * dump), inside a throwaway network namespace (`unshare -n`), so it is checked against an empty
 * ruleset and this machine's own firewall is never read or changed. Needs root (as lab does).
 * Throws an InputError (exit 2) with FILE:LINE[:COLUMN] as the tool reports it and its message;
 * a LabError when the file cannot be read or the checker cannot run.
 */
export function checkUserRuleset(host: string, file: string): void {
  const { bytes, format } = userRuleset(host, file);
  // The bytes read are what the tool checks (on its standard input), so a file read once is the
  // file checked, and the copy adoptUserRuleset writes is the file loaded.
  const args = format === 'nftables' ? ['-n', 'nft', '-c', '-f', '-'] : ['-n', 'iptables-nft-restore'];
  const r = spawnSync('unshare', args, { input: bytes, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  if (r.error || (r.status !== 0 && /unshare: /.test(r.stderr ?? '')))
    throw new LabError(
      `--ruleset ${host}=${file}: cannot check it in a scratch namespace (unshare ${args.join(' ')}: ${r.error?.message ?? r.stderr.trim()})`,
      'EIO',
    );
  if (r.status === 0) return;
  const problem = rulesetProblem(format, `${r.stderr ?? ''}\n${r.stdout ?? ''}`);
  const tool = format === 'nftables' ? 'nft' : 'iptables-nft-restore';
  throw new InputError(`${problem.detail} (--ruleset ${host}: ${tool} refuses this ${format} file)`, {
    file,
    ...(problem.line !== undefined ? { line: problem.line } : {}),
    ...(problem.column !== undefined ? { column: problem.column } : {}),
  });
}

/**
 * The first error in the output of `nft -c -f FILE` (`FILE:LINE:COL-COL: Error: WHAT`) or of
 * `iptables-nft-restore FILE` (`iptables-nft-restore vX (nf_tables): WHAT` then `Error occurred
 * at line: N`, or `... WHAT at line N`), as a line, column and message.
 */
export function rulesetProblem(
  format: 'nftables' | 'iptables-save',
  output: string,
): { line?: number; column?: number; detail: string } {
  const lines = output
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  if (format === 'nftables') {
    for (const l of lines) {
      const m = /^(.*):(\d+):(\d+)(?:-\d+)?: Error: (.*)$/.exec(l);
      if (m && m[1] !== 'internal')
        return { line: Number(m[2]), column: Number(m[3]), detail: m[4] as string };
      const e = /^(?:.*: )?Error: (.*)$/.exec(l);
      if (e) return { detail: e[1] as string };
    }
    return { detail: lines[0] ?? 'nft refused it' };
  }
  const at = /Error occurred at line: (\d+)/.exec(output);
  const first =
    lines.find((l) => !/^Error occurred at line|^Try `/.test(l)) ?? 'iptables-nft-restore refused it';
  let detail = first.replace(/^[\w.-]*iptables[\w-]*(?: v[\d.]+)?(?: \([^)]*\))?: /, '');
  let line = at ? Number(at[1]) : undefined;
  const inline = / at line:? (\d+)$/.exec(detail);
  if (inline) {
    line ??= Number(inline[1]);
    detail = detail.slice(0, inline.index);
  }
  return { ...(line !== undefined ? { line } : {}), detail };
}

/** Copies the user's ruleset for HOST into the lab directory (read bounded); returns its source record. */
export function adoptUserRuleset(dir: string, host: string, file: string): RulesetSource {
  const { bytes, format } = userRuleset(host, file);
  const copy = join(dir, `user-${host}-${basename(file)}`);
  writeFileAtomic(copy, bytes, { follow: false });
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
    writeFileAtomic(file, files[0]?.content ?? '', { follow: false });
    inNs(host.ns, 'nft', ['-f', file]);
    return;
  }
  for (const f of files) {
    const v6 = f.path.startsWith('ip6');
    const file = join(state.dir, `${host.name}.${v6 ? 'ip6tables' : 'iptables'}.rules`);
    writeFileAtomic(file, f.content, { follow: false });
    inNs(host.ns, v6 ? 'ip6tables-nft-restore' : 'iptables-nft-restore', [file]);
  }
}

/** nft's view of the whole ruleset in a namespace (for tests and `lab list --debug`). */
export function nftRuleset(ns: string): string {
  return run('ip', ['netns', 'exec', ns, 'nft', 'list', 'ruleset']);
}
