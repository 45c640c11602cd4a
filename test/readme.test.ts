import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { isFailure, VERDICT_ORDER } from '../src/probe/verdict.js';
import { BIN, ROOT } from './helpers.js';

/**
 * The README's own commands, run as a new user would run them from a clone: every `$ portolan ...`
 * (or `$ npx portolan ...`) line in a code block whose command needs no network, root or other
 * host (plan, catalog, validate, init, import, export, help) and whose files are in the
 * repository or written by an earlier `$ cat FILE` block. Each must exit as the README implies
 * (0, or 2 where the shown output is a `portolan:` error) and print the first line the README shows.
 */

interface Shown {
  line: number;
  command: string;
  output: string[];
}

const OFFLINE = new Set(['plan', 'catalog', 'validate', 'init', 'import', 'export', 'help']);

/** Every `$ ` command line of the README's fenced blocks, with the lines shown after it. */
export function readmeCommands(text: string): { commands: Shown[]; files: Map<string, string> } {
  const lines = text.split('\n');
  const commands: Shown[] = [];
  const files = new Map<string, string>();
  let inBlock = false;
  let current: Shown | null = null;
  let indent = '';
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] ?? '';
    if (/^\s*```/.test(raw)) {
      inBlock = !inBlock;
      current = null;
      continue;
    }
    if (!inBlock) continue;
    const m = /^(\s*)\$ (.*)$/.exec(raw);
    if (m) {
      indent = m[1] ?? '';
      current = { line: i + 1, command: (m[2] ?? '').trim(), output: [] };
      commands.push(current);
      continue;
    }
    if (current) current.output.push(raw.startsWith(indent) ? raw.slice(indent.length) : raw);
  }
  for (const c of commands) {
    const cat = /^cat (\S+\.yaml)$/.exec(c.command);
    if (cat?.[1]) files.set(cat[1], `${c.output.join('\n')}\n`);
  }
  return { commands, files };
}

/** Splits a shell command line into words: single and double quotes, a trailing `# comment`. */
function words(command: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quote: string | null = null;
  let has = false;
  for (let i = 0; i < command.length; i++) {
    const ch = command[i] as string;
    if (quote) {
      if (ch === quote) quote = null;
      else cur += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      has = true;
    } else if (ch === '#' && !has && cur === '') {
      break;
    } else if (/\s/.test(ch)) {
      if (has || cur) out.push(cur);
      cur = '';
      has = false;
    } else {
      cur += ch;
      has = true;
    }
  }
  if (has || cur) out.push(cur);
  return out;
}

/** The portolan arguments of a README command, or null when it is not one this test runs. */
function runnable(command: string): { args: string[]; stdoutToFile: boolean; stderrHidden: boolean } | null {
  if (/[|;`]|\$\(|&&|sudo|NODE_OPTIONS/.test(command)) return null;
  const w = words(command);
  if (w[0] === 'npx') w.shift();
  if (w[0] !== 'portolan') return null;
  let args = w.slice(1);
  if (!OFFLINE.has(args[0] ?? '')) return null;
  const stderrHidden = args.includes('2>/dev/null');
  args = args.filter((a) => a !== '2>/dev/null');
  let stdoutToFile = false;
  const redirect = args.indexOf('>');
  if (redirect >= 0) {
    args = args.slice(0, redirect);
    stdoutToFile = true;
  }
  // The README shows what a terminal gets: plan's table (JSON is for pipes).
  if (args[0] === 'plan' && !args.includes('--format') && !stdoutToFile) args.push('--format', 'table');
  return { args, stdoutToFile, stderrHidden };
}

describe('README: every offline command it shows runs and prints what it shows', () => {
  const text = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const { commands, files } = readmeCommands(text);
  const dir = mkdtempSync(join(tmpdir(), 'portolan-readme-'));
  for (const sub of ['examples', 'tests', 'catalog']) symlinkSync(join(ROOT, sub), join(dir, sub));
  for (const [name, body] of files) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), body);
  }
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('finds the commands (the parser reads the README)', () => {
    assert.ok(commands.filter((c) => c.command.split(' && ').every((p) => runnable(p))).length >= 20);
  });

  for (const c of commands) {
    // `a && b`: each part a command this test runs, in turn, as the shell would.
    const parts = c.command.split(' && ').map(runnable);
    if (parts.length === 0 || parts.some((p) => p === null)) continue;
    const runs = parts as NonNullable<ReturnType<typeof runnable>>[];
    const missing = (runs[0]?.args ?? []).filter(
      (a) => /\.(ya?ml|csv|json)$/.test(a) && !a.startsWith('-') && !existsSync(join(dir, a)),
    );
    // A file the README names but does not show (the reader's own bad.yaml) cannot be run here.
    if (missing.length > 0 && runs[0]?.args[0] !== 'init' && !runs[0]?.args.includes('-o')) continue;
    it(`README.md:${c.line}: ${c.command}`, () => {
      const r = { status: 0 as number | null, stdout: '', stderr: '' };
      for (const part of runs) {
        const one = spawnSync(process.execPath, [BIN, ...part.args], {
          cwd: dir,
          encoding: 'utf8',
          // The width the README names (`# in an 80-column terminal`), else 80.
          env: {
            ...process.env,
            NO_COLOR: '1',
            COLUMNS: /(\d+)-column terminal/.exec(c.command)?.[1] ?? '80',
          },
          maxBuffer: 64 * 1024 * 1024,
        });
        r.status = one.status;
        r.stdout += part.stdoutToFile ? '' : one.stdout;
        r.stderr += part.stderrHidden ? '' : one.stderr;
        if (one.status !== 0) break;
      }
      const shown = c.output.map((l) => l.trimEnd()).filter((l) => l !== '' && l !== '...');
      const first = shown[0];
      const expectCode = first?.startsWith('portolan:') ? 2 : 0;
      assert.equal(r.status, expectCode, `exit ${r.status}\n${r.stderr}`);
      if (first === undefined) return;
      // Compared with runs of white space as one space: a terminal of another width wraps the
      // same words at other places.
      const flat = (t: string) => t.replace(/\s+/g, ' ').trim();
      const printed = flat(`${r.stdout}\n${r.stderr}`);
      // Every line shown, not only the first: a `...` inside a line stands for text left out.
      for (const line of shown) {
        for (const piece of line
          .split('...')
          .map(flat)
          .filter((p) => p.length > 0)) {
          assert.ok(
            printed.includes(piece),
            `the README shows\n  ${line}\nbut the command printed\n${(r.stdout + r.stderr).split('\n').slice(0, 12).join('\n')}`,
          );
        }
      }
    });
  }
});

describe('README: the verdict table', () => {
  it('names every verdict check can give, and lists exactly the failing ones as failing', () => {
    const text = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const rows = new Set(
      [...text.matchAll(/^\| `([^`]+)`(?: \/ `([^`]+)`)? \|/gm)].flatMap((m) =>
        [m[1], m[2]].filter((v): v is string => v !== undefined).map((v) => v.replace('\\|', '|')),
      ),
    );
    for (const v of VERDICT_ORDER)
      if (v !== 'skipped') assert.ok(rows.has(v), `README's verdict table has no row for ${v}`);
    const listed = /^Failing verdicts \(exit 1\): ([^.]+)\./m.exec(text);
    assert.ok(listed, 'README has no "Failing verdicts (exit 1):" sentence');
    const failing = [...(listed[1] as string).matchAll(/`([^`]+)`/g)].map((m) => m[1]);
    assert.deepEqual(
      failing,
      VERDICT_ORDER.filter((v) => isFailure(v)),
      'README lists the failing verdicts in the order of VERDICT_ORDER',
    );
  });
});

describe('README: each command heading names only options its help names', () => {
  it("every --option of a `### portolan COMMAND ...` heading is in that command's Usage lines", () => {
    const text = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const headings = [...text.matchAll(/^### `portolan (\w+) ([^`]*)`/gm)];
    assert.ok(headings.length >= 10, 'the parser finds the command headings');
    for (const [, command, rest] of headings) {
      const help = spawnSync(process.execPath, [BIN, 'help', command as string], {
        encoding: 'utf8',
        env: { ...process.env, COLUMNS: '1000' },
      }).stdout;
      // The Usage lines: from "Usage:" to the first empty line.
      const usage = help.slice(0, help.indexOf('\n\n'));
      for (const option of (rest as string).match(/--[a-z][a-z-]*/g) ?? [])
        assert.ok(
          usage.includes(option),
          `README's heading for ${command} names ${option}; its help's Usage does not:\n${usage}`,
        );
    }
  });
});

/**
 * Whether `real` has what `shown` shows: every key of a shown object with a matching value, the
 * shown elements of an array at the same places (an element "..." stands for the rest), and any
 * value where the README writes "...".
 */
function shows(shown: unknown, real: unknown, path = '$'): string | undefined {
  if (shown === '...') return undefined;
  if (Array.isArray(shown)) {
    if (!Array.isArray(real)) return `${path} is not a list`;
    for (const [i, s] of shown.entries()) {
      if (s === '...') return undefined;
      const bad = shows(s, real[i], `${path}[${i}]`);
      if (bad) return bad;
    }
    return shown.length === real.length
      ? undefined
      : `${path} has ${real.length} elements, not ${shown.length}`;
  }
  if (shown !== null && typeof shown === 'object') {
    if (real === null || typeof real !== 'object') return `${path} is not an object`;
    for (const [k, v] of Object.entries(shown)) {
      if (!(k in real)) return `${path}.${k} is missing`;
      const bad = shows(v, (real as Record<string, unknown>)[k], `${path}.${k}`);
      if (bad) return bad;
    }
    return undefined;
  }
  return JSON.stringify(shown) === JSON.stringify(real)
    ? undefined
    : `${path} is ${JSON.stringify(real)}, not ${JSON.stringify(shown)}`;
}

describe('README: the plan JSON it shows', () => {
  it('is what plan --format json prints for the example site it names', () => {
    const text = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const block = /^```json\n([\s\S]*?)^```/m.exec(text)?.[1];
    assert.ok(block, 'README has a ```json block');
    const shown = JSON.parse(block) as { site: string };
    const examples = join(ROOT, 'examples');
    const file = readdirSync(examples)
      .filter((f) => f.endsWith('.yaml'))
      .find((f) => new RegExp(`^site: ${shown.site}$`, 'm').test(readFileSync(join(examples, f), 'utf8')));
    assert.ok(file, `no example site is named ${shown.site}`);
    const r = spawnSync(process.execPath, [BIN, 'plan', join(examples, file), '--format', 'json'], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    const bad = shows(shown, JSON.parse(r.stdout));
    assert.equal(bad, undefined, `README's plan JSON for ${file}: ${bad}`);
  });
});
