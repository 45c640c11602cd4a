import { type ParseArgsConfig, parseArgs } from 'node:util';
import { quote, UsageError } from '../errors.js';
import { mergePortRanges, type PortRange } from '../model/ports.js';
import { closest, didYouMean } from '../util/suggest.js';

export { closest, didYouMean };

export type Options = NonNullable<ParseArgsConfig['options']>;

/** Options every command takes. */
export const COMMON = {
  debug: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  catalog: { type: 'string', multiple: true },
  'no-color': { type: 'boolean' },
} as const satisfies Options;

/** The lines every command's --help ends with: the options of COMMON. */
export const COMMON_HELP = `Options for every command:
  --catalog DIR      an extra catalog directory or file (repeatable)
  --no-color         no ANSI colour (also NO_COLOR=1 or FORCE_COLOR=0)
  --debug            print the stack trace of an internal error
  -h, --help         this help`;

/**
 * The line a usage error ends with: where the usage is, not the usage itself (git and kubectl do the
 * same), so the error stays the first and only thing the eye lands on. `usage` is a command's USAGE
 * text; its first line names the command (`Usage: portolan export ...`).
 */
export function forUsage(usage: string): string {
  const name = /^Usage: portolan ([a-z-]+)/.exec(usage)?.[1];
  return name ? `run \`portolan help ${name}\` for usage` : 'run `portolan help` for usage';
}

/** util.parseArgs with usage errors that name the flag, what was expected, and the likely flag meant. */
export function parse<T extends Options>(argv: readonly string[], options: T, usage: string) {
  const all = { ...COMMON, ...options };
  try {
    const config = {
      args: [...argv],
      options: all,
      allowPositionals: true,
      strict: true,
    } as const;
    const parsed = parseArgs<typeof config & { tokens: true }>({ ...config, tokens: true });
    refuseRepeats(parsed.tokens, all);
    return parsed;
  } catch (err) {
    if (err instanceof UsageError) throw new UsageError(`${err.message}\n${forUsage(usage)}`);
    const e = err as Error & { code?: string };
    let msg = e.message.replace(/\. To specify a positional argument.*$/s, '');
    const missing = /^Option '([^']*?) <value>' argument missing/.exec(msg);
    if (missing) msg = `${missing[1]} needs a value`;
    const ambiguous = /^Option '([^']*)' argument is ambiguous/.exec(msg);
    if (ambiguous) {
      const flag = ambiguous[1] ?? '';
      const at = argv.indexOf(flag);
      const next = at >= 0 ? argv[at + 1] : undefined;
      msg =
        next === undefined
          ? `${flag} needs a value`
          : `${flag} needs a value, and ${quote(next)} after it reads as an option (write ${flag}=${next} if it is the value)`;
    }
    const unknown = /^Unknown option '(-+)([^']*)'/.exec(msg);
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && unknown) {
      const flags = Object.entries(all).flatMap(([name, o]) => [
        `--${name}`,
        ...('short' in o && o.short ? [`-${o.short}`] : []),
      ]);
      const given = `${unknown[1]}${unknown[2]}`;
      const near = closest(
        `--${unknown[2]}`,
        flags.filter((f) => f.startsWith('--')),
      );
      msg = `unknown option ${given}${near ? ` (did you mean ${near}?)` : ''}`;
    }
    throw new UsageError(`${msg}\n${forUsage(usage)}`);
  }
}

/**
 * Refuses a single-valued option given twice with different values (`--format json --format csv`):
 * util.parseArgs keeps the last silently, so a careless command line would run with a value its
 * writer may not have meant. The same value twice, and repeated boolean flags, are harmless.
 */
function refuseRepeats(tokens: readonly ParsedToken[] | undefined, options: Options): void {
  const seen = new Map<string, string>();
  for (const t of tokens ?? []) {
    if (t.kind !== 'option' || t.value === undefined) continue;
    const o = options[t.name];
    if (o?.type !== 'string' || o.multiple) continue;
    const before = seen.get(t.name);
    if (before !== undefined && before !== t.value)
      throw new UsageError(
        `--${t.name} given twice (${quote(before)}, then ${quote(t.value)}); expected it once`,
      );
    seen.set(t.name, t.value);
  }
}

type ParsedToken = NonNullable<ReturnType<typeof parseArgs>['tokens']>[number];

export function oneOf<T extends string>(value: unknown, allowed: readonly T[], flag: string): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  throw new UsageError(
    `${flag} ${quote(value)} is not one of: ${allowed.join(', ')}${typeof value === 'string' ? didYouMean(value, allowed) : ''}`,
  );
}

export function exactlyOne(positionals: string[], what: string, usage: string): string {
  if (positionals.length === 1 && positionals[0] === '')
    throw new UsageError(`the ${what} is named by an empty argument (expected a path)\n${forUsage(usage)}`);
  if (positionals.length !== 1 || !positionals[0])
    throw new UsageError(`expected one ${what}, got ${positionals.length}\n${forUsage(usage)}`);
  return positionals[0];
}

/** A whole number from 1 to `max`, or undefined when the flag was not given. */
export function positiveInt(value: string | undefined, flag: string, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > max)
    throw new UsageError(`${flag} ${quote(value)} is not a whole number from 1 to ${max}`);
  return Number(value);
}

/**
 * `443,2500-2510` as merged ranges within 1-65535; `what` names the argument in the error, and
 * `written` is the argument as the user gave it (`22,23/udp` when `text` is its ports, `22,23`).
 */
export function parsePorts(text: string, what: string, written = text): PortRange[] {
  const out: PortRange[] = [];
  for (const part of text.split(',')) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(part.trim());
    const lo = Number(m?.[1]);
    const hi = Number(m?.[2] ?? m?.[1]);
    if (m && lo >= 1 && hi <= 65535 && lo > hi)
      throw new UsageError(
        `${what} ${quote(written)}${part === written ? '' : `: ${quote(part.trim())}`}: the range's low port is above its high port (expected low-high, e.g. ${hi}-${lo})`,
      );
    if (!m || lo < 1 || hi > 65535)
      throw new UsageError(
        `${what} ${quote(written)}${part === written ? '' : `: ${quote(part.trim())}`} is not a port or low-high range within 1-65535 (expected ${written === text ? 'ports and ranges separated by commas, e.g. 443, 8000-8010 or 22,443,8006' : 'PORTS or PORTS/udp, e.g. 443,8000-8010 or 123/udp'})`,
      );
    out.push([lo, hi]);
  }
  return mergePortRanges(out);
}
