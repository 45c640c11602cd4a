// bench/RESULTS.md holds one section per benchmark, each between `<!-- bench:ID -->` and
// `<!-- /bench:ID -->`: a benchmark rewrites its own section and leaves the others as they are.
import { spawn } from 'node:child_process';
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
