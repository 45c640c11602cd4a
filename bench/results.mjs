// bench/RESULTS.md holds one section per benchmark, each between `<!-- bench:ID -->` and
// `<!-- /bench:ID -->`: a benchmark rewrites its own section and leaves the others as they are.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const RESULTS = join(dirname(fileURLToPath(import.meta.url)), 'RESULTS.md');
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Runs `cmd args` from the repository root with NO_COLOR set (plus `env`) and resolves, never
 * rejects, with its exit code, stdout, stderr and wall time in seconds.
 */
export function timed(cmd, args, env = {}) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, NO_COLOR: '1', ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.on('close', (code) => resolve({ code, out, err, seconds: (performance.now() - t0) / 1000 }));
  });
}

/** Replaces (or appends) section `id` of RESULTS.md with `text`; the file is written atomically. */
export function writeSection(id, text, file = RESULTS) {
  let old = '';
  try {
    old = readFileSync(file, 'utf8');
  } catch {
    old = '';
  }
  const open = `<!-- bench:${id} -->`;
  const close = `<!-- /bench:${id} -->`;
  const block = `${open}\n${text.trimEnd()}\n${close}`;
  const a = old.indexOf(open);
  const b = old.indexOf(close);
  const next =
    a >= 0 && b > a
      ? `${old.slice(0, a)}${block}${old.slice(b + close.length)}`
      : `${old.trimEnd()}${old.trim() ? '\n\n' : ''}${block}\n`;
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, next);
  renameSync(tmp, file);
}

/** Runs a command to completion; its stdout, or an Error with its stderr when it exits non-zero. */
export function sh(cmd, args, input) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** Whether `cmd` is on PATH. */
export function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Kills every process left in the named network namespaces and deletes them. */
export function removeNamespaces(names) {
  for (const ns of names) {
    const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout ?? '';
    for (const p of pids.split(/\s+/).filter(Boolean))
      try {
        process.kill(Number(p), 'SIGKILL');
      } catch {}
    spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  }
}

/**
 * The target namespace's nftables ruleset for a regime: `reset` (none: closed ports answer RST) or
 * `drop` (an input policy of drop letting only the `open` TCP ports in).
 */
export function regimeRules(regime, open) {
  if (regime === 'reset') return 'flush ruleset\n';
  return `flush ruleset
table inet bench {
  chain input {
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    iifname "lo" accept
    tcp dport { ${open.join(', ')} } accept
  }
}
`;
}

/** "N verdict" per verdict of a Map's values, most frequent first: "159800 closed, 400 open". */
export function counts(m) {
  const c = {};
  for (const v of m.values()) c[v] = (c[v] ?? 0) + 1;
  return Object.entries(c)
    .sort((x, y) => y[1] - x[1])
    .map(([k, n]) => `${n} ${k}`)
    .join(', ');
}

/** The median of a list of numbers. */
export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
