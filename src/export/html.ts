import { pushAll } from '../util/arrays.js';
import {
  type ChangeRow,
  COLUMNS,
  changeRequest,
  changeTitle,
  LOCAL_IN_HOST_MODE,
  removeHeading,
} from './change-request.js';
import type { Generator } from './generator.js';
import { headerLines, oneLine } from './header.js';
import type { ExportModel } from './model.js';

/**
 * html: the change request as one self-contained page (inline CSS; no script, no external resource,
 * no link). The markup is polyglot: it parses the same as HTML and as well-formed XML, so a strict
 * XML parser can check it. Every piece of text, in elements, attributes and comments alike, passes
 * through `escapeXml`.
 */

export const HTML_FILE = 'change-request.html';

const ENTITY: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/**
 * The one escaping function for HTML and SVG text, attribute values and comments: `& < > " '` as
 * references; CR LF, CR, U+2028 and U+2029 as LF; characters XML 1.0 forbids or HTML calls a parse error (C0/C1
 * controls but tab and LF, lone surrogates, U+FFFE/U+FFFF) as U+FFFD; and the first `-` of every
 * `--` as `&#45;`, so no text can end a comment (`-->`, `--!>`) or put `--` inside one.
 */
export function escapeXml(text: string): string {
  return (
    text
      // Line and paragraph separators are line breaks to a reader, raw ones end a JavaScript line of
      // any script that copies the text: a line feed, as the terminal output has them.
      .replace(/\r\n?|[\u2028\u2029]/g, '\n')
      // Bidirectional overrides reorder the text a browser displays (Trojan Source): as `?`.
      .replace(/[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g, '?')
      .replace(
        /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g,
        '\ufffd',
      )
      .replace(/[&<>"']/g, (c) => ENTITY[c] as string)
      .replace(/-(?=-)/g, '&#45;')
  );
}

const STYLE = `body { font-family: system-ui, sans-serif; font-size: 14px; margin: 2em; color: #1a1a1a; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 2em; }
ul.meta { color: #555; font-size: 0.9em; padding-left: 1.2em; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #bbb; padding: 4px 6px; text-align: left; vertical-align: top; white-space: pre-line; }
th { background: #eef2f6; position: sticky; top: 0; }
tbody tr:nth-child(even) { background: #f8f9fb; }
td.rule, td.ports { white-space: pre; font-family: ui-monospace, monospace; }
td.from, td.to { min-width: 13em; }
td.purpose, td.sources, td.notes { min-width: 16em; }
@media print { body { margin: 0; font-size: 10px; } th { position: static; } }`;

/** The columns shown: `change` is implied by the section a row is in. */
const SHOWN = COLUMNS.map((c, i) => [c, i] as const).filter(([c]) => c !== 'change');

function table(
  rows: readonly ChangeRow[],
  kind: string,
  shown: readonly (readonly [string, number])[] = SHOWN,
): string[] {
  return [
    `<table class="${kind}">`,
    `<thead><tr>${shown.map(([c]) => `<th>${escapeXml(c)}</th>`).join('')}</tr></thead>`,
    '<tbody>',
    ...rows.map(
      (r) =>
        `<tr>${shown.map(([c, i]) => `<td class="${c}">${escapeXml(r.cells[i] ?? '')}</td>`).join('')}</tr>`,
    ),
    '</tbody>',
    '</table>',
  ];
}

export function renderHtml(model: ExportModel): { content: string; warnings: string[] } {
  const { rows, removals, warnings } = changeRequest(model);
  const header = headerLines(model, 'html').map(oneLine);
  const title = escapeXml(changeTitle(model));
  const rules = rows.filter((r) => r.kind === 'rule');
  const local = rows.filter((r) => r.kind === 'local');
  const out = [
    ...header.map((l) => `<!-- ${escapeXml(l)} -->`),
    '<!DOCTYPE html>',
    '<html xmlns="http://www.w3.org/1999/xhtml" lang="en">',
    '<head>',
    '<meta charset="utf-8" />',
    `<title>${title}</title>`,
    `<style>\n${STYLE}\n</style>`,
    '</head>',
    '<body>',
    `<h1>${title}</h1>`,
    '<ul class="meta">',
    ...header.map((l) => `<li>${escapeXml(l)}</li>`),
    '</ul>',
    `<h2>Rules to allow (${rules.length})</h2>`,
    ...(rules.length ? table(rules, 'rules') : ['<p>None.</p>']),
    `<h2>Local flows: no firewall change needed${model.mode === 'host' ? ` (${local.length})` : ''}</h2>`,
    ...(model.mode === 'network'
      ? [`<p>${escapeXml(LOCAL_IN_HOST_MODE)}</p>`]
      : local.length
        ? table(local, 'local')
        : ['<p>None.</p>']),
  ];
  if (removals.length)
    pushAll(out, [
      `<h2>${escapeXml(removeHeading(removals.length))}</h2>`,
      ...table(
        removals,
        'remove',
        COLUMNS.map((c, i) => [c, i] as const),
      ),
    ]);
  if (warnings.length)
    pushAll(out, [
      '<h2>Warnings and what is not covered</h2>',
      '<ul class="warnings">',
      ...warnings.map((w) => `<li>${escapeXml(w)}</li>`),
      '</ul>',
    ]);
  out.push('</body>', '</html>');
  return { content: `${out.join('\n')}\n`, warnings };
}

export const generator: Generator = {
  name: 'html',
  family: 'table',
  summary: 'change-request table as one self-contained HTML page (inline CSS, no script)',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render(model) {
    const { content, warnings } = renderHtml(model);
    return { files: [{ path: HTML_FILE, content }], warnings };
  },
};
