import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  CHANGE_ALLOW,
  CHANGE_NONE,
  COLUMNS,
  changeRequest,
  changeTitle,
} from '../src/export/change-request.js';
import { CSV_FILE, renderCsv } from '../src/export/csv.js';
import { DOT_FILE, dotId, renderDot } from '../src/export/dot.js';
import { HTML_FILE, renderHtml } from '../src/export/html.js';
import { MARKDOWN_FILE, renderMarkdown } from '../src/export/markdown.js';
import { MERMAID_FILE, mermaidComment, mermaidText, renderMermaid } from '../src/export/mermaid.js';
import {
  buildExportModel,
  type ExportModel,
  portServicePairs,
  portServiceText,
  servicesByPort,
} from '../src/export/model.js';
import { type SiteGraph, siteGraph, UNSPECIFIED_CLUSTER, wrap } from '../src/export/site-graph.js';
import { EDGE_LABEL_WIDTH, renderSvg, SVG_FILE } from '../src/export/svg.js';
import { loadSite } from '../src/inventory/load.js';
import type { Flow } from '../src/model/flow.js';
import { csvField } from '../src/plan/format.js';
import { buildPlan } from '../src/plan/plan.js';
import { ROOT, runCli } from './helpers.js';

/**
 * The change-request tables (csv, markdown, html) and the site diagrams (mermaid, dot, svg): each
 * output is read back by a real tool where this machine has one (Graphviz `dot`, libxml2's
 * `xmllint`) and always by a strict parser written here, and every cell, label and comment of the
 * hostile inventory must come back as exactly the text that went in: no tag, rule, edge or
 * directive made of user text.
 */

const HOSTILE = `${ROOT}tests/fixtures/hostile/site.yaml`;
/** The version the CLI stamps in every header. */
const VERSION = (JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { version: string }).version;
const EXAMPLES = readdirSync(`${ROOT}examples`).filter((f) => f.endsWith('.yaml'));

function model(file: string, host?: string): ExportModel {
  const { inventory, catalogs } = loadSite(file);
  const plan = buildPlan(inventory, catalogs);
  return buildExportModel(plan, inventory, {
    ...(host !== undefined ? { host } : {}),
    generatorVersion: '0.0.0-test',
  });
}

/** Extra hostility the fixture cannot carry: label escapes, directives, formulas, comment enders, raw controls. */
const NASTY = [
  'C:\\N \\l \\G \\" back\\slash',
  '%%{init: {"securityLevel": "loose"}}%% #quot; #35; `md` [link](javascript:alert(1))',
  '--> --!> ]]> <!-- </title></style></td><script>alert(1)</script> <img src=x onerror=alert(1)>',
  'lone\rcarriage\u2028sep\u0001\u007f\u0085 \ud800 &lt; &#60; &amp;',
].join(' ');

/** The hostile model made worse: every free-text field the model carries gets NASTY added. */
function nastier(m: ExportModel): ExportModel {
  const flow = (f: Flow): Flow => ({
    ...f,
    purpose: `${f.purpose} ${NASTY}`,
    notes: ['=HYPERLINK("http://evil.example/","x")', ...f.notes, NASTY],
    sources: f.sources.map((s) => ({ doc: `@${s.doc}${NASTY}`, ref: s.ref })),
    from: f.from.host === null ? { ...f.from, description: `${f.from.description} ${NASTY}` } : f.from,
    to: f.to.host === null ? { ...f.to, description: `${f.to.description} ${NASTY}` } : f.to,
  });
  const set = (s: ExportModel['rules'][number]['src']) => ({
    ...s,
    unspecified: s.unspecified.map((d) => `${d} ${NASTY}`),
  });
  return {
    ...m,
    site: `${m.site} ${NASTY}`,
    rules: m.rules.map((r) => ({ ...r, src: set(r.src), dst: set(r.dst), flows: r.flows.map(flow) })),
    localFlows: m.localFlows.map(flow),
  };
}

/** Every model the properties below are checked on: hostile (both modes, and worse), plus every example. */
function models(): { name: string; m: ExportModel }[] {
  const primary = (f: string) => loadSite(`${ROOT}examples/${f}`).inventory.hosts[0]?.name as string;
  return [
    { name: 'hostile network', m: model(HOSTILE) },
    { name: 'hostile host web-server', m: model(HOSTILE, 'web-server') },
    { name: 'hostile+nasty network', m: nastier(model(HOSTILE)) },
    { name: 'hostile+nasty host web-client', m: nastier(model(HOSTILE, 'web-client')) },
    {
      name: 'veeam-proxmox host vbr-01 (a local flow)',
      m: nastier(model(`${ROOT}examples/veeam-proxmox.yaml`, 'vbr-01')),
    },
    ...EXAMPLES.flatMap((f) => [
      { name: `${f} network`, m: model(`${ROOT}examples/${f}`) },
      { name: `${f} host ${primary(f)}`, m: model(`${ROOT}examples/${f}`, primary(f)) },
    ]),
  ];
}
const ALL = models();

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}
const XMLLINT = has('xmllint');
const DOT = has('dot');
const NO_XMLLINT = XMLLINT ? false : 'xmllint not installed (Debian package libxml2-utils)';

function xmllint(args: string[], input: string): string {
  const r = spawnSync('xmllint', [...args, '-'], { input, encoding: 'utf8' });
  assert.equal(r.status, 0, `xmllint ${args.join(' ')}: ${r.stderr}`);
  return r.stderr;
}

// ---------------------------------------------------------------------------------------------
// Strict readers

/** RFC 4180, strictly: CRLF between records, quotes only around whole fields, `""` inside them. */
function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let fields: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        const q = text.indexOf('"', i);
        assert.ok(q >= 0, `unterminated quoted field at ${i}`);
        field += text.slice(i, q);
        i = q + 1;
        if (text[i] === '"') {
          field += '"';
          i++;
        } else break;
      }
    } else {
      const m = /^[^",\r\n]*/.exec(text.slice(i)) as RegExpExecArray;
      field = m[0];
      i += field.length;
    }
    fields.push(field);
    if (text[i] === ',') {
      i++;
      continue;
    }
    assert.equal(text.slice(i, i + 2), '\r\n', `expected , or CRLF after a field at offset ${i}`);
    i += 2;
    records.push(fields);
    fields = [];
    if (i === text.length) return records;
  }
}

/** What a spreadsheet-safe CSV cell holds: csvField puts `'` before a formula-leading cell. */
/**
 * OWASP CSV injection, for readers splitting on `,` or `;`, on tabs or on lines: a `'` before a
 * formula character that starts the field (after blanks) or follows either separator, a tab or a
 * line break (after blanks on that line). Text is sanitised first (safeOf).
 */
const defused = (v: string): string => {
  const t = safeOf(v).replace(/([,;\t\r\n])(?=[^\S\r\n]*[=+\-@\uff1d\uff0b\uff0d\uff20])/g, "$1'");
  return /^\s*[=+\-@\uff1d\uff0b\uff0d\uff20]|^[\t\r\n]/.test(t) ? `'${t}` : t;
};

/** Reverses mdCell strictly: only a backslash before one of `\ | [ ] * _ ` ~`, `<br>` and three entities. */
function mdUnescape(cell: string): string {
  let out = '';
  for (let i = 0; i < cell.length; ) {
    const rest = cell.slice(i);
    const m = /^(\\[\\|[\]*_`~]|<br>|&lt;|&gt;|&amp;)/.exec(rest);
    if (m) {
      out += m[0].startsWith('\\')
        ? m[0].slice(1)
        : ({ '<br>': '\n', '&lt;': '<', '&gt;': '>', '&amp;': '&' } as Record<string, string>)[m[0]];
      i += m[0].length;
      continue;
    }
    assert.ok(
      !/^[\\<&|[\]*_`~]/.test(rest),
      `unescaped ${JSON.stringify(rest.slice(0, 12))} in a markdown cell`,
    );
    out += cell[i];
    i++;
  }
  return out;
}

/** Splits a markdown table row on unescaped pipes; the row must start with `| ` and end with ` |`. */
function mdRow(line: string): string[] {
  assert.ok(line.startsWith('| ') && line.endsWith(' |'), `not a table row: ${line.slice(0, 40)}`);
  const cells: string[] = [];
  let cur = '';
  const body = line.slice(2, -2);
  for (let i = 0; i < body.length; i++) {
    if (body[i] === '\\') {
      cur += body.slice(i, i + 2);
      i++;
    } else if (body.startsWith(' | ', i)) {
      cells.push(cur);
      cur = '';
      i += 2;
    } else cur += body[i];
  }
  cells.push(cur);
  return cells.map(mdUnescape);
}

interface El {
  name: string;
  attrs: Map<string, string>;
  children: (El | string)[];
}

const NAME = /^[A-Za-z_:][-A-Za-z0-9._:]*/;
// XML 1.0 Char: tab, LF, CR, U+0020-U+D7FF, U+E000-U+FFFD, U+10000-U+10FFFF (a lone surrogate is not one).
const XML_CHARS = /^(?:[\t\n\r\u0020-\ud7ff\ue000-\ufffd]|[\ud800-\udbff][\udc00-\udfff])*$/;

function decodeRefs(s: string, where: number): string {
  return s.replace(/&([^;&]*);|&/g, (ref, body: string | undefined) => {
    assert.ok(body !== undefined, `bare & near offset ${where}`);
    const named: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
    if (body in named) return named[body] as string;
    const m = /^#(?:(\d+)|x([0-9a-fA-F]+))$/.exec(body);
    assert.ok(m, `unknown entity ${ref} near offset ${where}`);
    const cp = m[1] !== undefined ? Number(m[1]) : Number.parseInt(m[2] as string, 16);
    const ch = String.fromCodePoint(cp);
    assert.match(ch, XML_CHARS, `character reference ${ref} is not an XML character`);
    return ch;
  });
}

/**
 * A strict XML 1.0 well-formedness reader for what these generators write: comments, an optional
 * `<!DOCTYPE html>`, one root element, attributes in quotes, the five predefined entities and
 * character references. No CDATA, processing instructions or internal subsets (none is written).
 */
function parseXml(src: string): { root: El; comments: string[]; doctype: string | null } {
  assert.match(src, XML_CHARS, 'only XML characters');
  const comments: string[] = [];
  let doctype: string | null = null;
  let i = 0;
  const ws = () => {
    while (/[ \t\r\n]/.test(src[i] ?? '')) i++;
  };
  const comment = (): boolean => {
    if (!src.startsWith('<!--', i)) return false;
    const end = src.indexOf('-->', i + 4);
    assert.ok(end >= 0, 'unterminated comment');
    const body = src.slice(i + 4, end);
    assert.ok(!body.includes('--') && !body.endsWith('-'), `"--" inside a comment: ${body.slice(0, 60)}`);
    comments.push(body);
    i = end + 3;
    return true;
  };
  const element = (): El => {
    assert.equal(src[i], '<', `expected an element at ${i}`);
    i++;
    const name = NAME.exec(src.slice(i))?.[0];
    assert.ok(name, `bad element name at ${i}`);
    i += name.length;
    const el: El = { name, attrs: new Map(), children: [] };
    for (;;) {
      const before = i;
      ws();
      if (src.startsWith('/>', i)) {
        i += 2;
        return el;
      }
      if (src[i] === '>') {
        i++;
        break;
      }
      assert.ok(i > before, `expected whitespace before an attribute of <${name}> at ${i}`);
      const an = NAME.exec(src.slice(i))?.[0];
      assert.ok(an, `bad attribute name in <${name}> at ${i}`);
      i += an.length;
      ws();
      assert.equal(src[i], '=', `expected = after ${an}`);
      i++;
      ws();
      const quote = src[i];
      assert.ok(quote === '"' || quote === "'", `attribute ${an} not quoted`);
      const end = src.indexOf(quote, i + 1);
      assert.ok(end > i, `unterminated attribute ${an}`);
      const raw = src.slice(i + 1, end);
      assert.ok(!raw.includes('<'), `< in attribute ${an}`);
      assert.ok(!el.attrs.has(an), `duplicate attribute ${an} on <${name}>`);
      el.attrs.set(an, decodeRefs(raw.replace(/[\t\n\r]/g, ' '), i));
      i = end + 1;
    }
    for (;;) {
      const lt = src.indexOf('<', i);
      assert.ok(lt >= 0, `<${name}> not closed`);
      const raw = src.slice(i, lt);
      assert.ok(!raw.includes(']]>'), ']]> in text');
      if (raw) el.children.push(decodeRefs(raw, i));
      i = lt;
      if (comment()) continue;
      if (src.startsWith('</', i)) {
        i += 2;
        assert.ok(
          src.startsWith(`${name}`, i),
          `</${name}> expected at ${i}, found ${src.slice(i - 2, i + 20)}`,
        );
        i += name.length;
        ws();
        assert.equal(src[i], '>', `bad end tag </${name}>`);
        i++;
        return el;
      }
      assert.ok(
        !src.startsWith('<!', i) && !src.startsWith('<?', i),
        `CDATA, declaration or PI in content at ${i}`,
      );
      el.children.push(element());
    }
  };
  for (;;) {
    ws();
    if (comment()) continue;
    if (src.startsWith('<!DOCTYPE', i)) {
      assert.equal(doctype, null, 'one doctype');
      const end = src.indexOf('>', i);
      doctype = src.slice(i, end + 1);
      assert.equal(doctype, '<!DOCTYPE html>');
      i = end + 1;
      continue;
    }
    break;
  }
  const root = element();
  for (;;) {
    ws();
    if (!comment()) break;
  }
  assert.equal(i, src.length, 'nothing after the root element');
  return { root, comments, doctype };
}

function* walk(el: El): Generator<El> {
  yield el;
  for (const c of el.children) if (typeof c !== 'string') yield* walk(c);
}
const textOf = (el: El): string => el.children.map((c) => (typeof c === 'string' ? c : textOf(c))).join('');
const kids = (el: El, name: string): El[] =>
  el.children.filter((c): c is El => typeof c !== 'string' && c.name === name);
const classes = (el: El): string[] => (el.attrs.get('class') ?? '').split(' ');

/**
 * What text becomes once in an XML document (the html and svg escaping promise): CR LF and CR as
 * LF, and characters XML forbids or HTML calls a parse error as U+FFFD. Written here from the XML
 * and HTML specifications, not taken from the generator.
 */
function asXmlText(s: string): string {
  return s
    .replace(/\r\n?|[\u2028\u2029]/g, '\n')
    .replace(/[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g, '?')
    .replace(
      /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g,
      '\ufffd',
    );
}

const collapse = (s: string): string => s.replace(/\s+/g, ' ').trim();
/**
 * What the one sanitiser promises (src/util/terminal.ts): terminal controls (C0 but tab, LF and CR;
 * DEL; C1) and bidirectional controls as `?`; U+2028 and U+2029 as LF.
 */
const safeOf = (s: string): string =>
  s
    .replace(
      /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g,
      '?',
    )
    .replace(/[\u2028\u2029]/g, '\n');
/** What header.ts's oneLine promises: safeOf, then line breaks and tabs as one space. */
const oneLineOf = (s: string): string => safeOf(s).replace(/[\t\n\r\u2028\u2029]+/g, ' ');

// ---------------------------------------------------------------------------------------------
// The change request itself

describe('change request rows', () => {
  it('one row per rendered rule, then one per local flow, with every flow behind it', () => {
    for (const { name, m } of ALL) {
      const { rows } = changeRequest(m);
      const rules = rows.filter((r) => r.kind === 'rule');
      const local = rows.filter((r) => r.kind === 'local');
      assert.equal(rules.length, m.rules.length, name);
      assert.equal(local.length, m.localFlows.length, name);
      const col = (c: (typeof COLUMNS)[number]) => COLUMNS.indexOf(c);
      m.rules.forEach((r, i) => {
        const cells = rules[i]?.cells ?? [];
        assert.equal(cells.length, COLUMNS.length);
        assert.equal(cells[col('rule')], r.id, name);
        assert.equal(cells[col('change')], CHANGE_ALLOW);
        assert.equal(cells[col('protocol')], r.protocol);
        for (const f of r.flows) {
          const purpose = f.purpose.replace(/\r\n?/g, '\n');
          assert.ok(cells[col('purpose')]?.includes(purpose), `${name} ${r.id}: purpose of ${f.id}`);
          for (const s of f.sources)
            assert.ok(cells[col('sources')]?.includes(s.doc.replace(/\r\n?/g, '\n')));
          for (const e of [f.from, f.to]) {
            const side = e === f.from ? cells[col('from')] : cells[col('to')];
            if (e.host !== null)
              assert.match(
                side ?? '',
                new RegExp(`(^|\\n)${e.host.replace(/\./g, '\\.')} `),
                `${name} ${r.id}`,
              );
            else
              assert.ok(
                side?.includes(
                  `unspecified peer (name it before approval): ${e.description?.replace(/\r\n?/g, '\n')}`,
                ),
              );
          }
        }
      });
      for (const r of local) assert.equal(r.cells[col('change')], CHANGE_NONE);
    }
  });

  it('pairs each port with its service, in port order: 22/ssh, 8006/https', () => {
    const m = model(`${ROOT}examples/veeam-proxmox.yaml`);
    const rule = m.rules.find((r) => r.flows.some((f) => f.service === 'ssh'));
    assert.ok(rule);
    assert.deepEqual(rule.services, ['ssh', 'https']);
    const { rows } = changeRequest(m);
    const cells = rows.find((r) => r.cells[COLUMNS.indexOf('rule')] === rule.id)?.cells ?? [];
    assert.equal(cells[COLUMNS.indexOf('ports')], '22, 8006');
    assert.equal(cells[COLUMNS.indexOf('services')], '22/ssh\n8006/https');
    // Every rule of every example: each service cell names exactly the rule's ports, in order.
    for (const { name, m: mm } of ALL)
      for (const r of mm.rules) {
        if (r.protocol === 'icmp') continue;
        const pairs = portServicePairs(r.flows);
        const lows = pairs.map((p) => Number(p.split(/[-/]/)[0]));
        assert.deepEqual(
          lows,
          [...lows].sort((a, b) => a - b),
          `${name} ${r.id}`,
        );
        assert.deepEqual(
          servicesByPort(r.flows),
          [...new Set(pairs.flatMap((p) => p.slice(p.indexOf('/') + 1).split('+')))],
          `${name} ${r.id}: the service list reads in port order`,
        );
      }
    assert.deepEqual(
      portServicePairs([
        { protocol: 'tcp', ports: [[8006, 8006]], service: 'https' },
        { protocol: 'tcp', ports: [[22, 22]], service: 'ssh' },
        { protocol: 'tcp', ports: [[443, 443]], service: 'https' },
        { protocol: 'tcp', ports: [[443, 443]], service: 'vsphere' },
        { protocol: 'tcp', ports: [[2500, 3300]], service: 'veeam-transport' },
      ]),
      ['22/ssh', '443/https+vsphere', '2500-3300/veeam-transport', '8006/https'],
    );
    assert.equal(
      portServiceText([
        { protocol: 'udp', ports: [[111, 111]], service: 'rpcbind' },
        { protocol: 'tcp', ports: [[2049, 2049]], service: 'nfs' },
        { protocol: 'tcp', ports: [[22, 22]], service: 'ssh' },
      ]),
      'udp 111/rpcbind; tcp 22/ssh, 2049/nfs',
    );
  });

  it('asks for every unspecified peer to be named before approval', () => {
    const warnings = changeRequest(model(HOSTILE)).warnings.filter((w) => /^rule .*unspecified/.test(w));
    assert.equal(warnings.length, 1);
    assert.match(
      warnings[0] ?? '',
      /^rule forward-udp-5353-2: the source includes peers the documents leave unspecified \(anyone"; ip saddr/,
    );
    assert.ok(!/[\r\n]/.test(warnings[0] ?? ''), 'a warning is one line');
  });

  it('never lists a rule with an empty address set (an empty match means any)', () => {
    const m = model(HOSTILE);
    const empty = { v4: [], v6: [], names: [], unspecified: [], hosts: [] };
    const broken = { ...m, rules: m.rules.map((r, i) => (i === 0 ? { ...r, dst: empty } : r)) };
    const { rows, warnings } = changeRequest(broken);
    assert.deepEqual(
      rows.map((r) => r.cells[0]),
      m.rules.slice(1).map((r) => r.id),
    );
    assert.ok(
      warnings.some((w) => w === `rule ${m.rules[0]?.id} not listed: its destination address set is empty`),
    );
    assert.equal(siteGraph(broken).edges.length, siteGraph({ ...m, rules: m.rules.slice(1) }).edges.length);
  });
});

describe('csv', () => {
  it('parses back (strict RFC 4180) to the same cells: the column header in row 1, one record per row, then metadata and warnings', () => {
    for (const { name, m } of ALL) {
      const { content } = renderCsv(m);
      const records = parseCsv(content);
      const { rows, warnings } = changeRequest(m);
      assert.equal(records.length, 1 + rows.length + 1 + 4 + warnings.length, name);
      for (const r of records)
        assert.equal(r.length, COLUMNS.length, `${name}: every record has ${COLUMNS.length} fields`);
      // Spreadsheets and import tools read row 1 as the header.
      assert.deepEqual(records[0], [...COLUMNS]);
      assert.deepEqual(
        records.slice(1, 1 + rows.length),
        rows.map((r) => r.cells.map(defused)),
        name,
      );
      const tail = records.slice(1 + rows.length);
      assert.deepEqual(
        tail[0],
        COLUMNS.map(() => ''),
        `${name}: an empty record before the trailing section`,
      );
      assert.equal(tail[2]?.[0], `# site: ${oneLineOf(m.site)}`, name);
      for (const h of tail.slice(1)) {
        assert.match(h[0] ?? '', /^# /);
        assert.deepEqual(
          h.slice(1),
          COLUMNS.slice(1).map(() => ''),
        );
      }
      assert.deepEqual(
        tail.slice(5).map((h) => h[0]),
        warnings.map((w) => defused(`# warning: ${oneLineOf(w)}`)),
        name,
      );
    }
  });

  it('defuses formula-leading cells and keeps quotes, commas and line breaks inside one field', () => {
    const m = nastier(model(HOSTILE));
    const records = parseCsv(renderCsv(m).content);
    const body = records.slice(1, 1 + m.rules.length);
    const notes = body.map((r) => r[COLUMNS.indexOf('notes')]);
    assert.ok(notes.every((n) => n?.startsWith(`'=HYPERLINK("http://evil.example/","x")\n`)));
    const sources = body.map((r) => r[COLUMNS.indexOf('sources')]);
    assert.ok(sources.every((s) => s?.startsWith("'@evil")));
    assert.equal(records.length, 1 + m.rules.length + 1 + 4 + changeRequest(m).warnings.length);
    // Read one record per line, or split on tabs as a paste does: no piece starts a formula either
    // (a line of a cell after its line break, or a piece after a tab, could start with @ or =).
    const pieces = renderCsv(m).content.split(/[\r\n\t]+/);
    const live = pieces.filter((p) => /^[^\S\r\n]*[=+\-@\uff1d\uff0b\uff0d\uff20]/.test(p));
    assert.deepEqual(live, []);
    assert.equal(csvField('doc 1\n@SUM(1+1)'), `"doc 1\n'@SUM(1+1)"`);
    assert.equal(csvField('a\r\n  =1'), `"a\r\n'  =1"`);
    assert.equal(csvField('x\t-2+3'), `"x\t'-2+3"`);
  });

  it('goes to stdout through the CLI, the warnings to stderr', () => {
    const r = runCli(['export', HOSTILE, '--to', 'csv', '--network']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, renderCsv({ ...model(HOSTILE), generatorVersion: VERSION }).content);
    assert.match(r.stderr, /^warning: rule forward-udp-5353-2: the source includes peers/m);
  });
});

describe('markdown', () => {
  it('every table row splits into exactly the columns, and every cell unescapes to its value', () => {
    for (const { name, m } of ALL) {
      const { content } = renderMarkdown(m);
      const { rows } = changeRequest(m);
      const shown = COLUMNS.filter((c) => c !== 'change');
      const lines = content.split('\n');
      const tables = lines.filter((l) => l.startsWith('|'));
      const body = tables.filter((l) => !/^\|(---\|)+$/.test(l) && !l.startsWith(`| ${shown[0]} |`));
      assert.equal(body.length, rows.length, name);
      body.forEach((l, i) => {
        const cells = mdRow(l);
        assert.equal(cells.length, shown.length, `${name}: row ${i}`);
        assert.deepEqual(cells, (rows[i]?.cells ?? []).filter((_, k) => COLUMNS[k] !== 'change').map(safeOf));
      });
      // Outside the tables user text appears only in the header comments, the title and the lists.
      for (const l of lines) {
        if (l.startsWith('<!-- ')) {
          assert.ok(l.endsWith(' -->'));
          assert.ok(!l.slice(5, -4).includes('-->'), 'no text closes a comment');
          assert.ok(!l.slice(5, -4).includes('<'), 'no markup inside a comment');
        } else if (!l.startsWith('|')) assert.ok(!/<(?!br>)/.test(l), `${name}: raw < in ${l.slice(0, 60)}`);
      }
      assert.ok(content.startsWith('<!-- Generated by portolan '), 'the header comes first');
    }
  });

  it('lists local flows apart as needing no firewall change, and says where they are in network mode', () => {
    const host = renderMarkdown(model(`${ROOT}examples/veeam-proxmox.yaml`, 'vbr-01')).content;
    const section = host.slice(host.indexOf('## Local flows: no firewall change needed (1)'));
    assert.match(section, /\n\| local-1 \| local \| vbr-01 \(backup-server\) 10\.30\.0\.10 \| vbr-01/);
    const net = renderMarkdown(model(`${ROOT}examples/veeam-proxmox.yaml`)).content;
    assert.match(net, /## Local flows: no firewall change needed\n\nFlows that stay on one host/);
  });
});

describe('html', () => {
  it('is one self-contained page: no script, no external resource, only the expected elements', () => {
    for (const { name, m } of ALL) {
      const { content } = renderHtml(m);
      assert.ok(!/<script/i.test(content), `${name}: no <script`);

      const { root, comments, doctype } = parseXml(content);
      assert.equal(doctype, '<!DOCTYPE html>');
      assert.equal(root.name, 'html');
      const allowed = new Set([
        'html',
        'head',
        'meta',
        'title',
        'style',
        'body',
        'h1',
        'h2',
        'ul',
        'li',
        'p',
        'table',
        'thead',
        'tbody',
        'tr',
        'th',
        'td',
      ]);
      const attrs = new Set(['xmlns', 'lang', 'charset', 'class']);
      // Nothing loads or runs: the attribute allow-list has no src, href or on*, and the CSS no url().
      for (const el of walk(root)) {
        if (el.name === 'style') assert.ok(!/url\(|@import/i.test(textOf(el)), 'CSS loads nothing');
        assert.ok(allowed.has(el.name), `${name}: unexpected <${el.name}>`);
        for (const a of el.attrs.keys())
          assert.ok(attrs.has(a), `${name}: unexpected attribute ${a} on <${el.name}>`);
      }
      assert.equal(comments.length, 4, 'the header lines, as comments');
      assert.equal(decodeRefs(comments[1]?.trim() ?? '', 0), asXmlText(`site: ${oneLineOf(m.site)}`), name);
    }
  });

  it('every cell, the title and the header lines read back as exactly the text that went in', () => {
    for (const { name, m } of ALL) {
      const { root } = parseXml(renderHtml(m).content);
      const [head, body] = [kids(root, 'head')[0] as El, kids(root, 'body')[0] as El];
      assert.equal(textOf(kids(head, 'title')[0] as El), asXmlText(changeTitle(m)), name);
      assert.equal(textOf(kids(body, 'h1')[0] as El), asXmlText(changeTitle(m)));
      const meta = kids(body, 'ul').find((u) => classes(u).includes('meta')) as El;
      assert.equal(kids(meta, 'li').length, 4);
      const { rows } = changeRequest(m);
      const trs = kids(body, 'table').flatMap((t) => kids(kids(t, 'tbody')[0] as El, 'tr'));
      assert.equal(trs.length, rows.length, name);
      trs.forEach((tr, i) => {
        const expected = (rows[i]?.cells ?? []).filter((_, k) => COLUMNS[k] !== 'change').map(asXmlText);
        assert.deepEqual(kids(tr, 'td').map(textOf), expected, `${name}: row ${i}`);
      });
    }
  });

  it('hostile markup shows as text: <script> only ever as &lt;script&gt;', () => {
    const { content } = renderHtml(nastier(model(HOSTILE)));
    assert.ok(content.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
    assert.ok(content.includes('&lt;img src=x onerror=alert(1)&gt;'));
    assert.ok(!content.includes('<script') && !content.includes('<img'));
    // Line and paragraph separators (NASTY carries U+2028) never reach the page or the drawing raw.
    for (const text of [content, renderSvg(nastier(model(HOSTILE))).content])
      assert.doesNotMatch(text, /[\u2028\u2029]/);
  });

  it('libxml2 reads it as well-formed XML and as HTML without a single complaint', {
    skip: NO_XMLLINT,
  }, () => {
    for (const { name, m } of ALL) {
      const { content } = renderHtml(m);
      assert.equal(xmllint(['--noout'], content), '', name);
      assert.equal(xmllint(['--html', '--noout'], content), '', name);
      // libxml2's own reading of the first data cell of the page matches ours.
      const first = changeRequest(m).rows[0];
      if (first) {
        const r = spawnSync('xmllint', ['--xpath', 'string((//*[local-name()="td"])[9])', '-'], {
          input: content,
          encoding: 'utf8',
        });
        assert.equal(
          r.stdout.replace(/\n$/, ''),
          asXmlText(first.cells[COLUMNS.indexOf('purpose')] ?? ''),
          name,
        );
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Diagrams

/** What a diagram must show of the model: checked against each format's own read-back. */
function expectations(m: ExportModel): SiteGraph {
  const g = siteGraph(m);
  // Independent of the graph code: every flow of every rule is one edge's business.
  const nodeFor = (e: Flow['from']) =>
    g.nodes.find((n) =>
      e.host === null
        ? n.kind === 'unspecified' && n.name === collapse(e.description ?? '')
        : n.name === e.host,
    );
  for (const f of [...m.rules.flatMap((r) => r.flows), ...m.localFlows]) {
    const [a, b] = [nodeFor(f.from), nodeFor(f.to)];
    assert.ok(a && b, `nodes for ${f.id}`);
    const e = g.edges.find((x) => x.from === a && x.to === b && x.local === f.local);
    assert.ok(e, `an edge for ${f.id}`);
    const line = e.label.find((l) => l.replace(/^local /, '').startsWith(`${f.protocol} `));
    assert.ok(line, `${f.protocol} on the edge for ${f.id}`);
    for (const [lo, hi] of f.ports) {
      const covered = line
        .replace(/^(local )?\w+ /, '')
        .split(', ')
        .map((p) => p.split('-').map(Number))
        .some(([x, y]) => (x as number) <= lo && hi <= (y ?? x ?? 0));
      assert.ok(covered, `${f.id}: ${lo}-${hi} in ${line}`);
    }
  }
  for (const c of g.clusters)
    for (const n of c.nodes) assert.equal(c.key === UNSPECIFIED_CLUSTER, n.kind === 'unspecified');
  return g;
}

const MERMAID_SAFE = String.raw`(?:[A-Za-z0-9 .,:/()_+=@*!?'-]|#quot;|#\d+;)*`;
const MERMAID_LABEL = `${MERMAID_SAFE}(?:<br>${MERMAID_SAFE})*`;

function mermaidDecode(label: string): string[] {
  return label
    .split('<br>')
    .map((l) =>
      l.replace(/#quot;|#(\d+);/g, (_, cp?: string) => (cp ? String.fromCodePoint(Number(cp)) : '"')),
    );
}

describe('mermaid', () => {
  it('is exactly the statements this generator writes, with every label decoding to its text', () => {
    const STATEMENTS: [string, RegExp][] = [
      ['subgraph', new RegExp(`^  subgraph (g\\d+)\\["(${MERMAID_LABEL})"\\]$`)],
      ['node', new RegExp(`^    (n\\d+)\\["(${MERMAID_LABEL})"\\]$`)],
      ['open', new RegExp(`^    (n\\d+)\\(\\["(${MERMAID_LABEL})"\\]\\)$`)],
      ['end', /^ {2}end$/],
      ['edge', new RegExp(`^  (n\\d+) (-->|-\\.->)\\|"(${MERMAID_LABEL})"\\| (n\\d+)$`)],
      ['classDef', /^ {2}classDef unspecified stroke-dasharray: 5 5$/],
      ['class', /^ {2}class (n\d+(?:,n\d+)*) unspecified$/],
    ];
    for (const { name, m } of ALL) {
      const g = expectations(m);
      const lines = renderMermaid(m).content.split('\n');
      assert.equal(lines.pop(), '', 'ends with a newline');
      const header = lines.splice(0, 4);
      header.forEach((h) => {
        // A comment is not decoded: its text is written as itself, one line, no `%%` inside.
        assert.match(h, /^%% [^\n%]*(?:%[^\n%]+)*%?$/, name);
      });
      assert.equal(header[1]?.slice(3), `site: ${oneLineOf(m.site).replace(/%+/g, '%')}`);
      assert.match(header[0] ?? '', /^%% Generated by portolan \S+ \(--to mermaid\); do not edit by hand\.$/);
      assert.equal(lines.shift(), 'flowchart LR');
      const nodes = new Map<string, string[]>();
      const subgraphs: { label: string[]; nodes: string[] }[] = [];
      const edges: { from: string; to: string; dotted: boolean; label: string[] }[] = [];
      const open: string[] = [];
      let inside: { label: string[]; nodes: string[] } | null = null;
      let dashed: string[] = [];
      for (const l of lines) {
        const hit = STATEMENTS.map(([kind, re]) => [kind, re.exec(l)] as const).find(([, x]) => x);
        assert.ok(hit, `${name}: unexpected mermaid line ${JSON.stringify(l)}`);
        const [kind, x] = hit as [string, RegExpExecArray];
        if (kind === 'subgraph') {
          assert.equal(inside, null, 'subgraphs are not nested');
          inside = { label: mermaidDecode(x[2] as string), nodes: [] };
          subgraphs.push(inside);
        } else if (kind === 'node' || kind === 'open') {
          assert.ok(inside, 'a node inside a subgraph');
          assert.ok(!nodes.has(x[1] as string), 'each node once');
          nodes.set(x[1] as string, mermaidDecode(x[2] as string));
          inside.nodes.push(x[1] as string);
          if (kind === 'open') open.push(x[1] as string);
        } else if (kind === 'end') {
          assert.ok(inside, 'end closes a subgraph');
          inside = null;
        } else if (kind === 'edge') {
          assert.equal(inside, null, 'edges after the subgraphs');
          assert.ok(nodes.has(x[1] as string) && nodes.has(x[4] as string), 'edges join declared nodes');
          edges.push({
            from: x[1] as string,
            to: x[4] as string,
            dotted: x[2] === '-.->',
            label: mermaidDecode(x[3] as string),
          });
        } else if (kind === 'class') dashed = (x[1] as string).split(',');
      }
      assert.equal(inside, null, 'every subgraph ended');
      assert.deepEqual(
        subgraphs.map((s) => s.label),
        g.clusters.map((c) => [c.label]),
        name,
      );
      assert.deepEqual(
        subgraphs.map((s) => s.nodes.map((id) => nodes.get(id))),
        g.clusters.map((c) => c.nodes.map((n) => n.label)),
        name,
      );
      assert.deepEqual(
        edges,
        g.edges.map((e) => ({ from: e.from.id, to: e.to.id, dotted: e.local, label: e.label })),
        name,
      );
      const unspecified = g.nodes.filter((n) => n.kind === 'unspecified').map((n) => n.id);
      assert.deepEqual(open, unspecified);
      assert.deepEqual(dashed, unspecified);
    }
  });

  it('comments read as plain text: a ";" stays ";" (mermaid decodes entity codes in labels only)', () => {
    assert.equal(mermaidComment('a; b "c" #35; d'), 'a; b "c" #35; d');
    assert.equal(mermaidComment('x %%{init: {}}%% y\nz'), 'x %{init: {}}% y z');
    // In a label the same text is entity-coded, as mermaid's docs show (`A["A double quote:#quot;"]`).
    assert.equal(mermaidText('a; "b"'), 'a#59; #quot;b#quot;');
  });

  it('an unspecified peer shows its whole description, directive and entity tricks included', () => {
    const m = nastier(model(HOSTILE));
    const text = renderMermaid(m).content;
    assert.ok(!text.includes('%%{'));
    // Comments are dropped unread; in statements no markdown string or HTML can start.
    const statements = text
      .split('\n')
      .filter((l) => !l.startsWith('%% '))
      .join('\n');
    assert.ok(!statements.includes('`') && !/<(?!br>)/.test(statements));
    for (const l of text.split('\n').filter((x) => x.startsWith('%% ')))
      assert.ok(!l.slice(2).includes('%%'), l);
    const desc = m.rules[1]?.flows[0]?.from.description ?? '';
    const node = siteGraph(m).nodes.find((n) => n.kind === 'unspecified');
    // Wrapped at spaces, and a word longer than a line is cut: nothing is dropped.
    assert.equal(node?.label.join(' ').replace(/ /g, ''), collapse(desc).replace(/ /g, ''));
    assert.ok(node?.label.every((l) => l.length <= 40));
    assert.ok(collapse(desc).includes('%%{init: {"securityLevel": "loose"}}%% #quot; #35;'));
  });
});

describe('dot', () => {
  it('Graphviz renders every diagram, and its SVG shows exactly our nodes, clusters, labels and edges', {
    skip: DOT ? false : 'graphviz not installed',
  }, () => {
    for (const { name, m } of ALL) {
      const g = expectations(m);
      const source = renderDot(m).content;
      const r = spawnSync('dot', ['-Tsvg'], { input: source, encoding: 'utf8' });
      assert.equal(r.status, 0, `${name}: ${r.stderr}`);
      assert.equal(r.stderr, '', `${name}: Graphviz says nothing`);
      const { root } = parseXml(
        r.stdout.replace(/^<\?xml[^>]*\?>\n/, '').replace(/<!DOCTYPE svg[^>]*>\n/, ''),
      );
      const groups = [...walk(root)].filter((el) => el.name === 'g');
      const titled = (cls: string) =>
        groups
          .filter((el) => classes(el).includes(cls))
          .map((el) => ({ title: textOf(kids(el, 'title')[0] as El), texts: kids(el, 'text').map(textOf) }));
      let u = 0;
      const ids = g.nodes.map((n) => dotId(n, n.kind === 'unspecified' ? ++u : 0));
      // Graphviz keeps spaces but trims each label line and shows U+FFFD for what we replaced.
      const shown = (lines: string[]) => lines.map((l) => asXmlText(l).replace(/\t/g, '\ufffd'));
      const sorted = <T extends { title: string | undefined }>(xs: T[]) =>
        [...xs].sort((a, b) =>
          (a.title ?? '') < (b.title ?? '') ? -1 : (a.title ?? '') > (b.title ?? '') ? 1 : 0,
        );
      assert.deepEqual(
        sorted(titled('node')),
        sorted(g.nodes.map((n, i) => ({ title: ids[i], texts: shown(n.label) }))),
        name,
      );
      assert.deepEqual(
        titled('cluster').map((c) => c.texts),
        g.clusters.map((c) => shown([c.label])),
      );
      assert.deepEqual(
        sorted(titled('edge')),
        sorted(
          g.edges.map((e) => ({
            title: `${ids[g.nodes.indexOf(e.from)]}->${ids[g.nodes.indexOf(e.to)]}`,
            texts: shown(e.label),
          })),
        ),
        name,
      );
      const graphTitle = kids(groups[0] as El, 'text').map(textOf);
      assert.deepEqual(graphTitle, shown([g.title]), `${name}: the graph label`);
    }
  });

  it('every ID and string is quoted; no user text leaves its quotes or comment', () => {
    const text = renderDot(nastier(model(HOSTILE))).content;
    for (const l of text.split('\n').filter(Boolean)) {
      // Remove every well-formed quoted string: what remains is DOT syntax only.
      const bare = l.replace(/"(?:[^"\\]|\\.)*"/g, '""');
      if (l.startsWith('// ')) {
        assert.ok(!/[\r\n]/.test(l));
        continue;
      }
      assert.match(
        bare,
        /^(?:digraph "" \{|\}| {2}(?:graph|node|edge) \[.*\];| {2}subgraph "" \{| {4}label=""; style=""; fillcolor=""; color="";| {4}"" \[label=""(?:, shape=ellipse, style="")?\];| {2}\}| {2}"" -> "" \[label=""(?:, style=dashed)?\];)$/,
        `unexpected DOT: ${bare}`,
      );
    }
  });
});

describe('svg', () => {
  it('is well-formed XML with only drawing elements, and every text reads back exactly', () => {
    for (const { name, m } of ALL) {
      const g = expectations(m);
      const { content } = renderSvg(m);
      assert.ok(!/<script/i.test(content), `${name}: no <script`);
      const { root, comments } = parseXml(content);
      assert.equal(comments.length, 4, 'the header lines as comments');
      assert.equal(root.name, 'svg');
      assert.equal(root.attrs.get('xmlns'), 'http://www.w3.org/2000/svg');
      const allowed = new Set(['svg', 'title', 'defs', 'marker', 'path', 'rect', 'text', 'g']);
      const attrs =
        /^(xmlns|width|height|viewBox|font-family|font-size|font-weight|id|refX|refY|markerWidth|markerHeight|orient|d|fill|fill-opacity|stroke|stroke-width|stroke-dasharray|marker-end|x|y|rx|text-anchor|class|data-name|data-from|data-to)$/;
      for (const el of walk(root)) {
        assert.ok(allowed.has(el.name), `${name}: <${el.name}>`);
        for (const a of el.attrs.keys()) assert.match(a, attrs, `${name}: attribute ${a} on <${el.name}>`);
      }
      assert.equal(textOf(kids(root, 'title')[0] as El), asXmlText(g.title));
      const groups = [...walk(root)].filter((el) => el.name === 'g');
      const of = (cls: string) => groups.filter((el) => classes(el).includes(cls));
      assert.deepEqual(
        of('node').map((el) => ({ name: el.attrs.get('data-name'), texts: kids(el, 'text').map(textOf) })),
        g.nodes.map((n) => ({ name: asXmlText(n.name), texts: n.label.map(asXmlText) })),
        name,
      );
      assert.deepEqual(
        of('cluster').map((el) => kids(el, 'text').map(textOf)),
        g.clusters.map((c) => [asXmlText(c.label)]),
      );
      assert.equal(of('edge').length, g.edges.length);
      assert.deepEqual(
        of('edge-label').map((el) => ({
          from: el.attrs.get('data-from'),
          to: el.attrs.get('data-to'),
          texts: kids(el, 'text').map(textOf),
        })),
        g.edges.map((e) => ({
          from: asXmlText(e.from.name),
          to: asXmlText(e.to.name),
          texts: e.label.flatMap((l) => wrap(l, EDGE_LABEL_WIDTH)).map(asXmlText),
        })),
        name,
      );
    }
  });

  it('lays out without overlap: boxes apart, labels apart, everything inside the canvas', () => {
    for (const { name, m } of ALL) {
      const { root } = parseXml(renderSvg(m).content);
      const [w, h] = [Number(root.attrs.get('width')), Number(root.attrs.get('height'))];
      const rectOf = (el: El) => {
        const r = kids(el, 'rect')[0] as El;
        const n = (k: string) => Number(r.attrs.get(k));
        return { x: n('x'), y: n('y'), w: n('width'), h: n('height') };
      };
      const groups = [...walk(root)].filter((el) => el.name === 'g');
      const apart = (a: { x: number; y: number; w: number; h: number }, b: typeof a) =>
        a.x + a.w <= b.x || b.x + b.w <= a.x || a.y + a.h <= b.y || b.y + b.h <= a.y;
      const labels = groups.filter((el) => classes(el).includes('edge-label')).map(rectOf);
      for (const box of groups.filter((el) => classes(el).includes('cluster')).map(rectOf))
        for (const l of labels) assert.ok(apart(box, l), `${name}: an edge label covers a cluster`);
      for (const cls of ['node', 'edge-label', 'cluster']) {
        const rects = groups.filter((el) => classes(el).includes(cls)).map(rectOf);
        for (const r of rects)
          assert.ok(r.x >= 0 && r.y >= 0 && r.x + r.w <= w && r.y + r.h <= h, `${name}: ${cls} inside`);
        rects.forEach((a, i) => {
          for (const b of rects.slice(i + 1)) assert.ok(apart(a, b), `${name}: ${cls}s overlap`);
        });
      }
    }
  });

  it('libxml2 finds every SVG well-formed', { skip: NO_XMLLINT }, () => {
    for (const { name, m } of ALL) assert.equal(xmllint(['--noout'], renderSvg(m).content), '', name);
  });
});

describe('export docs through the CLI', () => {
  it('writes exactly one file per format with -o DIR/: what the generator renders for that host', () => {
    const formats: Record<string, [string, (m: ExportModel) => { content: string }]> = {
      csv: [CSV_FILE, renderCsv],
      markdown: [MARKDOWN_FILE, renderMarkdown],
      html: [HTML_FILE, renderHtml],
      mermaid: [MERMAID_FILE, renderMermaid],
      dot: [DOT_FILE, renderDot],
      svg: [SVG_FILE, renderSvg],
    };
    const dir = mkdtempSync(join(tmpdir(), 'portolan-docs-'));
    try {
      for (const [format, [file, render]] of Object.entries(formats)) {
        const r = runCli([
          'export',
          HOSTILE,
          '--to',
          format,
          '--host',
          'web-server',
          '-o',
          `${dir}/${format}/`,
        ]);
        assert.equal(r.code, 0, `${format}: ${r.stderr}`);
        assert.deepEqual(readdirSync(join(dir, format)), [`.portolan-${format}.files`, file]);
        const written = readFileSync(join(dir, format, file), 'utf8');
        const m = { ...model(HOSTILE, 'web-server'), generatorVersion: VERSION };
        assert.equal(written, render(m).content, format);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
