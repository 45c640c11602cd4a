import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { composeFast, composeLines, onlyComments, parseYamlText, resolvePlain } from '../src/util/yaml.js';
import { ROOT } from './helpers.js';

/** Data or the error message, through the fast reader (with its fallback) and through yaml's composer. */
function both(text: string): { fast: unknown; slow: unknown } {
  const read = (fast: boolean): unknown => {
    try {
      const y = parseYamlText(Buffer.from(text, 'utf8'), 'f.yaml', 'file', { fast });
      return { data: y.data };
    } catch (e) {
      return { error: (e as Error).message };
    }
  };
  return { fast: read(true), slow: read(false) };
}

/**
 * Asserts that parseYamlText's locate() on `text` gives what yaml's composer gives, key and value,
 * for every key path of the data, an absent key and index under each, and a path through each
 * scalar; returns how many paths were compared.
 */
function sameLocations(text: string): number {
  const fast = parseYamlText(Buffer.from(text), 'f.yaml');
  const slow = parseYamlText(Buffer.from(text), 'f.yaml', 'file', { fast: false });
  const paths: (string | number)[][] = [];
  const walk = (v: unknown, path: (string | number)[]): void => {
    paths.push(path);
    if (v !== null && typeof v === 'object') {
      for (const k of Object.keys(v))
        walk((v as Record<string, unknown>)[k], [...path, Array.isArray(v) ? Number(k) : k]);
      paths.push([...path, 'absent'], [...path, 99], [...path, -1], [...path, '0']);
    } else paths.push([...path, 'x'], [...path, 0]);
  };
  walk(slow.data, []);
  for (const path of paths)
    for (const at of ['key', 'value'] as const)
      assert.deepEqual(fast.locate(path, at), slow.locate(path, at), JSON.stringify({ text, path, at }));
  return paths.length;
}

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...yamlFiles(path));
    else if (/\.ya?ml$/.test(name)) out.push(path);
  }
  return out;
}

describe('YAML: the event reader gives exactly what yaml composes', () => {
  it('reads every inventory, catalog and fixture of the repository to the same data', () => {
    const files = ['examples', 'catalog', 'test', 'bench'].flatMap((d) => yamlFiles(join(ROOT, d)));
    assert.ok(files.length >= 8, `found only ${files.length} YAML files`);
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      const { fast, slow } = both(text);
      assert.deepEqual(fast, slow, file);
    }
  });

  it('takes the fast way for a generated 300-host site, and reads it to the same data', async () => {
    const { generateSite } = (await import(join(ROOT, 'bench', 'gen-site.mjs'))) as {
      generateSite: (n: number) => string;
    };
    const text = generateSite(300);
    const fast = composeFast(text);
    assert.ok(fast, 'the generated site was not read by the event reader');
    const slow = parseYamlText(Buffer.from(text), 'site.yaml', 'inventory', { fast: false });
    assert.deepEqual(fast.data, slow.data);
  });

  it('resolves plain scalars by the YAML 1.2 core schema and keeps keys as written, as yaml does', () => {
    const text = [
      'a: 007',
      '007: x',
      'true: 1',
      '1e3: 2',
      'null: 3',
      'b: [.5, 1., +1, -0, 0x1F, 0o17, 1_000, .inf, -.Inf, .NaN, 1e3, 0b11, 99999999999999999999]',
      'c: [true, True, TRUE, tRUE, false, null, Null, ~, "", "true", yes, no, on]',
      'd: |\n  lit\n  eral\n',
      'e: >-\n  fol\n  ded\n',
      'f: "x\\ty\\u0041"',
      "g: 'it''s'",
      '__proto__: 4',
      'toString: 5',
      'h: plain\n  continued\n\n  para',
      'i: [a: 1, b]',
      'j: {k, l: }',
    ].join('\n');
    assert.ok(composeFast(text), 'declined a document it can read');
    const { fast, slow } = both(text);
    assert.deepEqual(fast, slow);
    const data = (fast as { data: Record<string, unknown> }).data;
    assert.equal(data['007'], 'x');
    assert.equal(data.a, 7);
    assert.equal(Object.getOwnPropertyDescriptor(data, '__proto__')?.value, 4);
  });

  it('leaves to yaml what it would refuse or expand, so the located errors stay', () => {
    const cases = [
      'a: 1\na: 2', // duplicate key
      'a: &x 1\nb: *x', // anchors and aliases
      'a: !!str 5', // tags
      '%YAML 1.2\n---\na: 1', // directives
      'a: 1\n---\nb: 2', // two documents
      '? [a, b]\n: c', // a key that is a list
      `a: ${'['.repeat(70)}${']'.repeat(70)}`, // nested too deep
      '\n...\na', // a document end marker, then a second document
      '... {}', // content after a document end marker
      ' ---\n[]', // an indented `---`: text to yaml
      `${'k'.repeat(1030)}: v`, // an implicit key longer than 1024 characters
      `k${' '.repeat(1030)}: v`,
      '"\\\n\n  c"', // an escaped line break before a blank line
      '- "\\U01e001F600"', // a \U escape past U+10FFFF
      'a:\n- []d:', // a key glued to a flow collection in a list at its key's indentation
      'a:\n- "q"d:', // ... or to a quoted scalar
      "a:\n- 's' y:", // ... or following it on the same line
      'a:\n- "q" ? k',
      "a:\n- 's'? |", // ... with a block scalar as the key
      '>+\n\n ', // a kept block scalar whose last line is spaces at the end of the text
    ];
    for (const text of cases) {
      assert.equal(composeFast(text), undefined, text);
      const { fast, slow } = both(text);
      assert.deepEqual(fast, slow, text);
    }
    const dup = both('hosts:\n  a: 1\n  a: 2\n').fast as { error: string };
    assert.match(dup.error, /duplicate key "?a"? \(first at line 2/);
  });

  it('locates keys of a fast-read file where yaml does', () => {
    const text = 'site: s\nhosts:\n  a: { address: 10.0.0.1 }\n  b:\n    address: 10.0.0.2\n';
    const fast = parseYamlText(Buffer.from(text), 'f.yaml');
    const slow = parseYamlText(Buffer.from(text), 'f.yaml', 'file', { fast: false });
    for (const path of [['hosts', 'b', 'address'], ['hosts', 'a'], ['hosts', 'zz'], ['site']])
      for (const at of ['key', 'value'] as const)
        assert.deepEqual(fast.locate(path, at), slow.locate(path, at));
    assert.deepEqual(fast.locate(['hosts', 'b', 'address']), {
      file: 'f.yaml',
      path: 'hosts.b.address',
      line: 5,
      column: 14,
    });
  });

  it('locates every key path of a line-read file where yaml does, without yaml', async () => {
    const texts = [
      '# c\n---\n# d\n\na:\n  # x\n\n  b: 1\nc:   # hi\n\n# z\nd: [ x,  "y" ]\ne:\n  - 1\n  -   { q:  2 , "r":  [[], {}]}\nf:\ng: 3\nh:   \n',
      'a: # hi\nb:\n  c:\n# x\n\n  # y\nd:  \n  \n# z\ne:',
      "'q': { 'k': [\"a\", 'b''c'], 007: ~ }\n\"é\": [1, [2, [3]]]\nlast:",
    ];
    const { generateSite } = (await import(join(ROOT, 'bench', 'gen-site.mjs'))) as {
      generateSite: (n: number) => string;
    };
    texts.push(generateSite(200));
    for (const file of yamlFiles(join(ROOT, 'examples'))) texts.push(readFileSync(file, 'utf8'));
    for (const text of texts) {
      assert.ok(composeLines(text), `the line reader declined ${JSON.stringify(text.slice(0, 80))}`);
      assert.ok(sameLocations(text) > 10);
    }
    // Past an absent key: its nearest ancestor, as yaml has it (the mapping's first key).
    assert.deepEqual(
      parseYamlText(Buffer.from(texts[0] as string), 'f.yaml').locate(['a', 'zz', 'y'], 'key'),
      {
        file: 'f.yaml',
        path: 'a.zz.y',
        line: 8,
        column: 3,
      },
    );
  });

  it('agrees with yaml on generated documents: tricky scalars, nesting, flow and block, bad indentation', () => {
    const scalar = fc.constantFrom(
      'a',
      'b c',
      '007',
      'true',
      'TRUE',
      'tRUE',
      'null',
      '~',
      '1e3',
      '.5',
      '1.',
      '+1',
      '-0',
      '0x1F',
      '0o17',
      '1_000',
      '.inf',
      '.NaN',
      '"q\\tx"',
      "'it''s'",
      '"a: b"',
      'é',
      '-',
      '1:2',
      'a#b',
      'x #c',
      '[x, y]',
      '{y: 1}',
      '[]',
      '{}',
      '&n v',
      '*n',
      '!!str 5',
      '"unterminated',
      '@at',
      '`tick',
      '%pct',
      'a: b',
      '- d',
      '? q',
      '|+\n\n ',
      '"a\\\n\n b"',
      '[]d:',
      '',
    );
    const key = fc.constantFrom(
      'a',
      'b',
      'c',
      '007',
      'true',
      '"q"',
      "'s'",
      'x y',
      '__proto__',
      '',
      '[k]',
      '? k',
    );
    const indent = fc.constantFrom('  ', '  ', '  ', ' ', '   ', '\t');
    type Tree =
      | { kind: 'map'; items: [string, Tree][] }
      | { kind: 'seq'; items: Tree[] }
      | { kind: 'scalar'; v: string };
    const tree: fc.Arbitrary<Tree> = fc.letrec<{ t: Tree }>((tie) => ({
      t: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        scalar.map((v) => ({ kind: 'scalar' as const, v })),
        fc.array(fc.tuple(key, tie('t')), { maxLength: 4 }).map((items) => ({ kind: 'map' as const, items })),
        fc.array(tie('t'), { maxLength: 4 }).map((items) => ({ kind: 'seq' as const, items })),
      ),
    })).t;
    const render = (t: Tree, pad: string, ind: string): string[] => {
      if (t.kind === 'scalar') return [`${pad}${t.v}`];
      if (!t.items.length) return [`${pad}${t.kind === 'map' ? '{}' : '[]'}`];
      const lines: string[] = [];
      for (const item of t.items) {
        const [head, child] =
          t.kind === 'map'
            ? [`${(item as [string, Tree])[0]}:`, (item as [string, Tree])[1]]
            : ['-', item as Tree];
        if (child.kind === 'scalar') lines.push(`${pad}${head} ${child.v}`);
        else {
          lines.push(`${pad}${head}`);
          lines.push(...render(child, pad + ind, ind));
        }
      }
      return lines;
    };
    // Mutations: characters with a meaning in YAML, dropped in anywhere.
    const mutation = fc.tuple(
      fc.nat(),
      fc.constantFrom(
        ' ',
        '  ',
        '\t',
        ':',
        ': ',
        '-',
        '- ',
        '#',
        ' #',
        '"',
        "'",
        '[',
        ']',
        '{',
        '}',
        ',',
        '? ',
        '\n',
        '\n  ',
        '|',
        '>',
        '\\',
        '%',
        '@',
        '\u00a0',
        '\ufeff',
        '---',
        '...',
        '\n...\n',
        '+',
        '\\\n',
        '\\U0011FFFF',
        '\u0085',
        '\u2028',
        'k'.repeat(1030),
      ),
    );
    fc.assert(
      fc.property(
        tree,
        indent,
        fc.boolean(),
        fc.array(mutation, { maxLength: 3 }),
        (t, ind, crlf, mutations) => {
          let text = render(t, '', ind).join(crlf ? '\r\n' : '\n');
          for (const [at, ch] of mutations) {
            const i = text.length ? at % (text.length + 1) : 0;
            text = text.slice(0, i) + ch + text.slice(i);
          }
          const { fast, slow } = both(text);
          assert.deepEqual(fast, slow, JSON.stringify(text));
        },
      ),
      { numRuns: Number(process.env.YAML_RUNS ?? 3000) },
    );
  });
  it('reads a generated 10,000-host site line by line, to the same data as the event reader', async () => {
    const { generateSite } = (await import(join(ROOT, 'bench', 'gen-site.mjs'))) as {
      generateSite: (n: number) => string;
    };
    const text = generateSite(10000);
    const lines = composeLines(text);
    assert.ok(lines, 'the generated site was not read by the line reader');
    assert.deepEqual(lines.data, composeFast(text)?.data);
  });

  it('reads the subset it takes as yaml does, and declines what lies outside it', () => {
    const take: [string, unknown][] = [
      ['a: 1\nb: x y # note\n', { a: 1, b: 'x y' }],
      [
        "# head\n---\na:\n  b: [p:r, \"q\", 'it''s', -1, .5, ~]\n",
        { a: { b: ['p:r', 'q', "it's", -1, 0.5, null] } },
      ],
      ['a:\n  - x\n  - { k: v, l: [] }\nb:\nc: {}\n', { a: ['x', { k: 'v', l: [] }], b: null, c: {} }],
      [
        'h:\n  007: { address: 10.0.0.1, roles: [a:b], facts: { os: windows, n: 0x1F } }\n',
        { h: { '007': { address: '10.0.0.1', roles: ['a:b'], facts: { os: 'windows', n: 31 } } } },
      ],
      [
        'a: b, c\nd: e:f\n"q k": \'\'\ne:  # c\n  # c\n  f: "a: b #c"',
        { a: 'b, c', d: 'e:f', 'q k': '', e: { f: 'a: b #c' } },
      ],
    ];
    for (const [text, data] of take) {
      assert.deepEqual(composeLines(text)?.data, data, text);
      assert.deepEqual(both(text).slow, { data }, text);
    }
    const decline = [
      'a: 1\na: 2', // a duplicate key: yaml names both places
      'a: {k: 1, k: 2}',
      'toString: 1', // a key an empty object has
      'a: b\n  c', // a plain scalar's next line
      'a:\n    b: 1\n  c: 2', // a key between two indentations
      'a:\n- x', // a list at its key's indentation
      'a: [x, y', // a flow list not closed on its line
      'a: [x, ]',
      'a: [x: 1]', // a pair in a list
      'a: {k}',
      'a: {k: }',
      'a: {k:v}',
      'a: [x #c]',
      'a: b#c',
      'a: "x\\ty"', // an escape
      'a: &x 1',
      'a: *x',
      'a: !t 1',
      'a: |\n  x',
      'a: >', // a block scalar with no lines: yaml reads ""
      'a:\n  - >',
      '? a\n: b',
      'a : b',
      '"a" : b',
      'a: "q"d',
      'a: [x] y',
      'a: - b',
      '- a',
      '  a: 1',
      '---\na: 1\n---\nb: 1',
      'a: 1\n...',
      '--- a: 1',
      'a:\tb',
      'a: b\r\nc: d',
      'a: \u00a0b',
      `${'k'.repeat(1001)}: v`,
      `a: ${'['.repeat(70)}${']'.repeat(70)}`,
      '@a: 1',
      'a: `b',
      '%YAML 1.2\n---\na: 1',
    ];
    for (const text of decline) {
      assert.equal(composeLines(text), undefined, text);
      const { fast, slow } = both(text);
      assert.deepEqual(fast, slow, text);
    }
  });

  it('agrees with yaml on generated inventories of flow mappings per line, mutated', () => {
    const scalar = fc.constantFrom(
      'a',
      'b c',
      'p:r',
      'x,y',
      "it's",
      '007',
      'true',
      'null',
      '~',
      '-1',
      '-a',
      '- a',
      '-',
      '--x',
      '.5',
      '.x',
      '1:2',
      'k:',
      ':k',
      '?k',
      'a #b',
      'a#b',
      '#x',
      '"q"',
      '"a: b"',
      '"e\\"q"',
      "'s''t'",
      "'s",
      '[]',
      '{}',
      'é',
      '@x',
      'a]',
      'a}',
      '&n v',
      '*n',
      '!t 5',
      '',
    );
    const key = fc.constantFrom(
      'a',
      'b',
      'c',
      'vm-1',
      'vm-1',
      '007',
      'true',
      '"q"',
      "'s'",
      'x y',
      '__proto__',
      'k:',
      '',
    );
    type Tree =
      | { kind: 'map'; items: [string, Tree][]; flow: boolean }
      | { kind: 'seq'; items: Tree[]; flow: boolean }
      | { kind: 'scalar'; v: string };
    const tree: fc.Arbitrary<Tree> = fc.letrec<{ t: Tree }>((tie) => ({
      t: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        scalar.map((v) => ({ kind: 'scalar' as const, v })),
        fc
          .tuple(fc.array(fc.tuple(key, tie('t')), { maxLength: 4 }), fc.boolean())
          .map(([items, flow]) => ({ kind: 'map' as const, items, flow })),
        fc
          .tuple(fc.array(tie('t'), { maxLength: 4 }), fc.boolean())
          .map(([items, flow]) => ({ kind: 'seq' as const, items, flow })),
      ),
    })).t;
    const sep = fc.constantFrom(', ', ',', ' , ');
    const flowText = (t: Tree, s: string, pad: string): string => {
      if (t.kind === 'scalar') return t.v;
      if (t.kind === 'seq') return `[${pad}${t.items.map((i) => flowText(i, s, pad)).join(s)}${pad}]`;
      return `{${pad}${t.items.map(([k, v]) => `${k}: ${flowText(v, s, pad)}`).join(s)}${pad}}`;
    };
    const render = (t: Tree, indent: string, s: string, pad: string, note: string): string[] => {
      if (t.kind === 'scalar' || t.flow || !t.items.length) return [`${flowText(t, s, pad)}${note}`];
      const lines: string[] = [];
      for (const item of t.items) {
        const [head, child] =
          t.kind === 'map'
            ? [`${(item as [string, Tree])[0]}:`, (item as [string, Tree])[1]]
            : ['-', item as Tree];
        if (child.kind !== 'scalar' && !child.flow && child.items.length) {
          lines.push(`${indent}${head}${note}`);
          lines.push(...render(child, `${indent}  `, s, pad, note).map((l) => `  ${l}`));
        } else lines.push(`${indent}${head} ${flowText(child, s, pad)}${note}`);
      }
      return lines;
    };
    const mutation = fc.tuple(
      fc.nat(),
      fc.constantFrom(
        ' ',
        ':',
        ': ',
        '-',
        '- ',
        '#',
        ' #',
        '"',
        "'",
        '[',
        ']',
        '{',
        '}',
        ',',
        '\n',
        '\n  ',
        '\\',
        '---\n',
        '...',
      ),
    );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(key, tree), { minLength: 1, maxLength: 5 }),
        sep,
        fc.constantFrom('', ' '),
        fc.constantFrom('', '', ' # c'),
        fc.array(mutation, { maxLength: 2 }),
        (items, s, pad, note, mutations) => {
          let text = render({ kind: 'map', items, flow: false }, '', s, pad, note)
            .map((l) => l.replace(/^(\s*)\s{2}/, '$1'))
            .join('\n');
          for (const [at, ch] of mutations) {
            const i = text.length ? at % (text.length + 1) : 0;
            text = text.slice(0, i) + ch + text.slice(i);
          }
          const lines = composeLines(text);
          const { fast, slow } = both(text);
          if (lines) {
            assert.deepEqual({ data: lines.data }, slow, JSON.stringify(text));
            sameLocations(text);
          }
          assert.deepEqual(fast, slow, JSON.stringify(text));
        },
      ),
      { numRuns: Number(process.env.YAML_RUNS ?? 3000) },
    );
  });
  it('agrees with yaml, key order included, on short random texts of the characters YAML gives meaning to', () => {
    const char = fc.constantFrom(
      'a',
      'x',
      ' ',
      ':',
      '-',
      '\n',
      '#',
      '[',
      ']',
      '{',
      '}',
      ',',
      '"',
      "'",
      '?',
      '.',
      '0',
      '1',
      '~',
      '\\',
      '@',
      '!',
    );
    const head = fc.constantFrom('', 'a: ', 'a:\n  ', 'a:\n  - ', 'a: [', 'a: {', 'k:\n  a: ', 'a: b\n');
    fc.assert(
      fc.property(head, fc.array(char, { minLength: 1, maxLength: 14 }), (prefix, chars) => {
        const text = prefix + chars.join('');
        const lines = composeLines(text);
        if (!lines) return;
        const { slow } = both(text);
        assert.deepEqual({ data: lines.data }, slow, JSON.stringify(text));
        sameLocations(text);
        assert.equal(
          JSON.stringify(lines.data),
          JSON.stringify((slow as { data: unknown }).data),
          JSON.stringify(text),
        );
      }),
      { numRuns: 10 * Number(process.env.YAML_RUNS ?? 3000) },
    );
  });

  it('loads the yaml package only when a file needs it: a fast read does not, nor locating in a line-read file', () => {
    // A fresh process: what this one has loaded says nothing.
    const script = `
      import { createRequire } from 'node:module';
      const { parseYamlText } = await import(${JSON.stringify(join(ROOT, 'dist', 'src', 'util', 'yaml.js'))});
      const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((k) => /[\\\\/]node_modules[\\\\/]yaml[\\\\/]/.test(k));
      const y = parseYamlText(Buffer.from('a: { b: 1 }\\n'), 'f.yaml');
      const before = loaded();
      const at = y.locate(['a', 'b']);
      const lines = loaded();
      // An escape: the line reader declines, the event reader reads it, and yaml locates.
      const e = parseYamlText(Buffer.from('a: { b: "\\\\t" }\\n'), 'f.yaml');
      const events = loaded();
      const escaped = e.locate(['a', 'b']);
      console.log(JSON.stringify({ before, lines, events, after: loaded(), at, escaped }));`;
    const out = JSON.parse(
      execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }),
    ) as Record<string, unknown>;
    assert.deepEqual(out, {
      before: false,
      lines: false,
      events: false,
      after: true,
      at: { file: 'f.yaml', path: 'a.b', line: 1, column: 9 },
      escaped: { file: 'f.yaml', path: 'a.b', line: 1, column: 9 },
    });
  });

  it('resolves plain scalars of digits, dots, colons, signs and number letters as yaml does', () => {
    const char = fc.constantFrom(...'0123456789..::+-eExXoaAfFiInNtTrRuUlLsS_'.split(''));
    fc.assert(
      fc.property(fc.array(char, { minLength: 1, maxLength: 12 }), (chars) => {
        const s = chars.join('');
        let slow: unknown;
        try {
          slow = (
            parseYamlText(Buffer.from(`v: ${s}\n`), 'f.yaml', 'file', { fast: false }).data as { v: unknown }
          ).v;
        } catch {
          return;
        }
        if (slow !== null && typeof slow === 'object') return;
        assert.deepEqual(resolvePlain(s), slow, s);
      }),
      { numRuns: 5 * Number(process.env.YAML_RUNS ?? 3000) },
    );
    for (const s of ['10.0.0.1', '1.2', '1.2.3', '::1', '1:2', '.5', '1e3', '0x1F', 'fe80::1', '2019.5'])
      assert.deepEqual(
        resolvePlain(s),
        (parseYamlText(Buffer.from(`v: ${s}\n`), 'f.yaml', 'file', { fast: false }).data as { v: unknown }).v,
        s,
      );
  });

  it('tells comment-only text from text with content, line by line at line feeds', () => {
    for (const text of ['', '\n', '# a\n  # b\n', ' \t\n#x', '# x\r y', '\u00a0# x'])
      assert.equal(onlyComments(text), true, JSON.stringify(text));
    for (const text of ['a', '# x\ny', '#\n \t z', '\r a', '\u2028a', '# a\n\u00a0b'])
      assert.equal(onlyComments(text), false, JSON.stringify(text));
  });
});
