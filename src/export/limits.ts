import { InputError } from '../errors.js';
import { wrap } from '../util/wrap.js';
import type { ExportFile } from './generator.js';
import type { FormatName } from './index.js';

/**
 * `iptables-restore` reads its input in chunks of this many bytes (iptables/iptables-restore.c,
 * `char buffer[10240]` filled by fgets): a longer line is cut there and its rest parsed as a new
 * line, so a long comment can smuggle in a rule (DESIGN.md, facts measured).
 */
export const IPTABLES_RESTORE_BUFFER = 10240;
/** The longest line fgets returns whole from that buffer: the buffer less the newline and the NUL. */
export const IPTABLES_LINE_MAX = IPTABLES_RESTORE_BUFFER - 2;
/** POSIX {LINE_MAX} is at least 2048; GNU tools and the shells that read the scripts have no limit. */
export const SHELL_LINE_MAX = 4096;
/** Cisco IOS refuses a configuration line longer than 254 characters (the CLI line buffer). */
export const IOS_LINE_MAX = 254;
/** Excel keeps at most 32767 characters in a cell; a CSV record line stays below that. */
export const CSV_LINE_MAX = 32767;
/** Readers with no line limit of their own (Terraform HCL, XML, HTML, Markdown, DOT, Mermaid, SVG): bounded anyway. */
export const TEXT_LINE_MAX = 65536;

/** The longest line, in bytes (UTF-8), each format may write, and the reader that limit is for. */
export const LINE_LIMITS: Record<FormatName, { max: number; reader: string }> = {
  nftables: { max: SHELL_LINE_MAX, reader: 'nft -f' },
  iptables: { max: IPTABLES_LINE_MAX, reader: 'iptables-restore' },
  firewalld: { max: SHELL_LINE_MAX, reader: 'firewall-cmd and sh' },
  ufw: { max: SHELL_LINE_MAX, reader: 'ufw and sh' },
  windows: { max: SHELL_LINE_MAX, reader: 'PowerShell' },
  aws: { max: TEXT_LINE_MAX, reader: 'terraform' },
  azure: { max: TEXT_LINE_MAX, reader: 'terraform' },
  gcp: { max: TEXT_LINE_MAX, reader: 'terraform' },
  cisco: { max: IOS_LINE_MAX, reader: 'Cisco IOS' },
  csv: { max: CSV_LINE_MAX, reader: 'a spreadsheet' },
  'flat-csv': { max: CSV_LINE_MAX, reader: 'a firewall manager import' },
  markdown: { max: TEXT_LINE_MAX, reader: 'a Markdown renderer' },
  html: { max: TEXT_LINE_MAX, reader: 'a browser' },
  mermaid: { max: TEXT_LINE_MAX, reader: 'Mermaid' },
  dot: { max: TEXT_LINE_MAX, reader: 'Graphviz' },
  svg: { max: TEXT_LINE_MAX, reader: 'a browser' },
};

/**
 * Refuses an export with a line longer than its format's limit, before anything is written: a line
 * the reader would cut is a line the reader would misparse.
 */
export function checkLineLimits(format: FormatName, files: readonly ExportFile[]): void {
  const { max, reader } = LINE_LIMITS[format];
  for (const f of files) {
    let line = 1;
    for (const text of f.content.split('\n')) {
      const bytes = Buffer.byteLength(text);
      if (bytes > max)
        throw new InputError(
          `--to ${format}: line ${line} of ${f.path} would be ${bytes} bytes, longer than ${reader} reads whole (expected at most ${max}; shorten the catalog or inventory text it carries)`,
        );
      line++;
    }
  }
}

/**
 * Shortens text to at most `max` characters (display columns) at a word boundary, ending with
 * `mark` when anything was left out; a first word longer than the room is cut. Text that fits is
 * returned as is. For fields with a length limit of their own (an IOS remark holds 100 characters).
 */
export function cutAtWord(text: string, max: number, mark = '...'): string {
  if (text.length <= max) return text;
  const room = Math.max(1, max - mark.length);
  const head = (wrap(text, room)[0] ?? '').replace(/[\s,;:]+$/, '');
  return `${head}${mark}`;
}

/**
 * Text as at most `maxLines` lines of at most `max` characters, broken at word boundaries (see
 * util/wrap.ts); when more remains, the last line is cut with cutAtWord and ends with `mark`.
 */
export function wrapWithin(text: string, max: number, maxLines: number, mark = '...'): string[] {
  const all = wrap(text, max).filter((l) => l.length);
  if (all.length <= maxLines) return all;
  return [...all.slice(0, maxLines - 1), cutAtWord(all.slice(maxLines - 1).join(' '), max, mark)];
}
