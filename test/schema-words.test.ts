import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SCHEMAS } from '../src/util/schema.js';
import { runCli } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'portolan-schema-words-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Every subschema of a JSON schema that has a `pattern`, with its JSON pointer. */
function patterns(node: unknown, at = ''): { at: string; schema: Record<string, unknown> }[] {
  if (!node || typeof node !== 'object') return [];
  const out: { at: string; schema: Record<string, unknown> }[] = [];
  const o = node as Record<string, unknown>;
  if (typeof o.pattern === 'string') out.push({ at: at || '/', schema: o });
  for (const [k, v] of Object.entries(o)) if (k !== 'pattern') out.push(...patterns(v, `${at}/${k}`));
  return out;
}

describe('schema patterns are explained in words', () => {
  for (const [name, file] of Object.entries(SCHEMAS)) {
    it(`${name}: every pattern has a patternText that says what is allowed`, () => {
      const found = patterns(JSON.parse(readFileSync(file, 'utf8')));
      assert.ok(found.length > 0, `${file} has patterns to check`);
      for (const { at, schema } of found) {
        const words = schema.patternText;
        assert.equal(typeof words, 'string', `${file}${at}: pattern ${schema.pattern} has no patternText`);
        assert.ok((words as string).length >= 10, `${file}${at}: patternText is too short to explain`);
        assert.doesNotMatch(
          words as string,
          /[\^$\\]|\[[^\]]*-[^\]]*\]/,
          `${file}${at}: patternText is a regex`,
        );
      }
    });
  }

  it('a site name with an escape sequence: says no control characters, not a regex (exit 2)', () => {
    const file = join(dir, 'evil.yaml');
    writeFileSync(
      file,
      'site: "ev\\e[31mil"\nhosts:\n  a: { address: 10.0.0.1, roles: [platespin:server] }\n',
    );
    const r = runCli(['validate', file]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /evil\.yaml:1:7 site: "ev\\u001b\[31mil" holds U\+001B \(a C0 control character\) at character 3 \(expected printable text/,
    );
    assert.doesNotMatch(r.stderr, /\\u0000|\^\[|to match/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  });

  it('a catalog service "@SUM(1+1)": says lower-case letters, digits and "-", not a regex (exit 2)', () => {
    const cat = join(dir, 'cat');
    mkdirSync(cat, { recursive: true });
    const text = readFileSync(join('catalog', 'platespin.yaml'), 'utf8').replace(
      /service: \S+/,
      'service: "@SUM(1+1)"',
    );
    writeFileSync(join(cat, 'platespin.yaml'), text);
    const r = runCli(['validate', 'examples/platespin.yaml', '--catalog', cat]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /platespin\.yaml:\d+:\d+ entries\[\d+\]\.service: "@SUM\(1\+1\)" is not valid \(expected lower-case letters, digits and '-', starting with a letter or digit, at most 63 characters\)/,
    );
    assert.doesNotMatch(r.stderr, /\^\[a-z0-9\]|to match/);
  });
});
