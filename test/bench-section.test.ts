import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ROOT } from './helpers.js';

// The module is plain JavaScript beside the bench scripts; its types are in bench/section.d.mts.
const { replaceSection } = (await import(
  join(ROOT, 'bench', 'section.mjs')
)) as typeof import('../bench/section.mjs');

const B = '<!-- serve-ingest: written by bench/serve-ingest.mjs -->';
const E = '<!-- end serve-ingest -->';

test('bench sections: a section is replaced in place, the sections after it are kept', () => {
  const text = `<!-- a -->\nfirst\n<!-- /a -->\n\n${B}\nold table\n${E}\n\n<!-- scale: x -->\nscale table\n<!-- end scale -->\n\n## Notes after\n`;
  const out = replaceSection(text, B, E, `${B}\nnew table\n${E}\n`);
  assert.equal(
    out,
    `<!-- a -->\nfirst\n<!-- /a -->\n\n${B}\nnew table\n${E}\n\n<!-- scale: x -->\nscale table\n<!-- end scale -->\n\n## Notes after\n`,
  );
  // Replacing again gives the same text: nothing grows or moves.
  assert.equal(replaceSection(out, B, E, `${B}\nnew table\n${E}\n`), out);
});

test('bench sections: appended when missing; a begin marker without its end is refused', () => {
  assert.equal(replaceSection('# R\n', B, E, `${B}\nt\n${E}`), `# R\n\n${B}\nt\n${E}\n`);
  assert.throws(() => replaceSection(`${B}\nt\n<!-- scale: x -->\n`, B, E, `${B}\nt\n${E}`), /has no/);
  assert.throws(() => replaceSection('', B, E, 'no markers'), /must start with/);
});

test('bench sections: RESULTS.md has the server ingest section closed by its end marker', () => {
  const text = readFileSync(join(ROOT, 'bench', 'RESULTS.md'), 'utf8');
  const at = text.indexOf(B);
  assert.ok(at >= 0, 'the server ingest section is in RESULTS.md');
  assert.ok(text.indexOf(E, at) > at, 'its end marker follows it');
});
