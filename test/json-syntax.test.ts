/**
 * jsonSyntaxError (src/util/json.ts) judges JSON text as JSON.parse does and names the place:
 * the pvesh import and the server's request bodies locate a syntax error with it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { jsonSyntaxError } from '../src/util/json.js';

function parses(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

describe('jsonSyntaxError', () => {
  test('valid exactly where JSON.parse is: JSON values, their halves, and strings of JSON characters', () => {
    const agree = (text: string) => {
      assert.equal(jsonSyntaxError(text) === undefined, parses(text), JSON.stringify(text));
    };
    for (const t of [
      '',
      ' ',
      '[1,]',
      '{"a":1,}',
      '[01]',
      '-',
      '-0',
      '1e400',
      '0x50',
      '"\\u12"',
      '"a\nb"',
      '\uFEFF[]',
    ])
      agree(t);
    fc.assert(
      fc.property(fc.json(), (j) => {
        agree(j);
        agree(j.slice(0, j.length >> 1));
        agree(`${j},`);
      }),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...'[]{}",:0123456789-.eE+ \ntruefalsnul\\u') }), (s) => {
        agree(s);
      }),
      { numRuns: 10000 },
    );
  });

  test('names line, column and what was found, on one line whatever the text holds', () => {
    assert.deepEqual(jsonSyntaxError('{"a": 1,\n  }'), {
      offset: 11,
      line: 2,
      column: 3,
      problem: 'found "}", expected a double-quoted property name',
    });
    assert.equal(jsonSyntaxError('["\u001b[2J')?.problem, 'found "\\u001b", expected a string character');
    assert.equal(jsonSyntaxError('[1 \u202e]')?.problem, `found "\\u202e", expected ',' or ']'`);
    assert.equal(
      jsonSyntaxError('[')?.problem,
      'found the end of the text, expected a value (object, array, string, number, true, false or null)',
    );
    assert.equal(jsonSyntaxError('[] x')?.column, 4);
  });

  test('a million levels deep is judged without recursion', () => {
    const n = 1_000_000;
    assert.equal(jsonSyntaxError(`${'['.repeat(n)}${']'.repeat(n)}`), undefined);
    assert.equal(jsonSyntaxError(`${'['.repeat(n)}${']'.repeat(n - 1)}`)?.offset, 2 * n - 1);
  });
});
