import { type ParseArgsConfig, parseArgs } from 'node:util';
import { UsageError } from '../errors.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

/** Options every command takes. */
export const COMMON = {
  debug: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  catalog: { type: 'string', multiple: true },
  'no-color': { type: 'boolean' },
} as const satisfies Options;

/** util.parseArgs with usage errors that name the flag and what was expected. */
export function parse<T extends Options>(argv: readonly string[], options: T, usage: string) {
  try {
    const config = {
      args: [...argv],
      options: { ...COMMON, ...options },
      allowPositionals: true,
      strict: true,
    } as const;
    return parseArgs<typeof config>(config);
  } catch (err) {
    const msg = (err as Error).message.replace(/\. To specify a positional argument.*$/s, '');
    throw new UsageError(`${msg}\n${usage}`);
  }
}

export function oneOf<T extends string>(value: unknown, allowed: readonly T[], flag: string): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  throw new UsageError(`${flag} ${JSON.stringify(value)} is not one of: ${allowed.join(', ')}`);
}

export function exactlyOne(positionals: string[], what: string, usage: string): string {
  if (positionals.length !== 1 || !positionals[0])
    throw new UsageError(`expected one ${what}, got ${positionals.length}\n${usage}`);
  return positionals[0];
}
