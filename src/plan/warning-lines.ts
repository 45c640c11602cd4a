import type { Warning } from '../model/flow.js';

/** Warnings of one kind printed in full before the rest of the kind is summed up on one line. */
export const SHOWN_PER_KIND = 3;
/** Host names the summary line lists before "...". */
const NAMED_IN_SUMMARY = 5;

/**
 * The plan's warnings as lines for a terminal (without the `warning: ` prefix). A warning about one
 * host whose message differs from others of its code and product only by the host's name (a
 * catalog warning such as sql-guests-unknown, said once per guest: 29,000 lines on a site of
 * 100,000 hosts) is printed in full for the first SHOWN_PER_KIND hosts; the rest of that kind is
 * one line naming how many hosts and the first few. Every other warning is printed as it is, in
 * the plan's order. Nothing is lost: `plan --format json` keeps one warning per host, and
 * `validate` lists them all.
 *
 * `warnings`: Plan.warnings (messages already in the plan's language). Returns one string per line,
 * in the order of each kind's first warning.
 */
export function warningLines(warnings: readonly Warning[]): string[] {
  const kinds = new Map<string, Warning[]>();
  const order: (Warning | string)[] = [];
  for (const w of warnings) {
    const key = kindOf(w);
    if (key === undefined) {
      order.push(w);
      continue;
    }
    const kind = kinds.get(key);
    if (kind) kind.push(w);
    else {
      kinds.set(key, [w]);
      order.push(key);
    }
  }
  const lines: string[] = [];
  for (const item of order) {
    if (typeof item !== 'string') {
      lines.push(item.message);
      continue;
    }
    const kind = kinds.get(item) as Warning[];
    // Summing up fewer than two hosts would save no line.
    const shown = kind.length <= SHOWN_PER_KIND + 1 ? kind.length : SHOWN_PER_KIND;
    for (const w of kind.slice(0, shown)) lines.push(w.message);
    const rest = kind.slice(shown);
    if (!rest.length) continue;
    const names = rest.slice(0, NAMED_IN_SUMMARY).map((w) => w.host as string);
    const first = kind[0] as Warning;
    lines.push(
      `${first.product ? `${first.product}: ` : ''}the same ${first.code} warning for ${rest.length} more hosts: ${names.join(', ')}${rest.length > names.length ? ', ...' : ''} (plan --format json lists each)`,
    );
  }
  return lines;
}

/**
 * A per-host warning's kind: its code, product and message with the host's name taken out where it
 * stands as a name (not inside a longer word or name: host `a` leaves "Windows" whole, `vm-1` leaves
 * `vm-10`), so the warnings of hosts named like words of the message are summed up too.
 */
function kindOf(w: Warning): string | undefined {
  if (w.host === undefined || w.host === '' || !w.message.includes(w.host)) return undefined;
  const name = w.host.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const parts = w.message.split(new RegExp(`(?<![\\p{L}\\p{N}._-])${name}(?![\\p{L}\\p{N}._-])`, 'u'));
  if (parts.length < 2) return undefined;
  return `${w.code}\0${w.product ?? ''}\0${parts.join('\0')}`;
}
