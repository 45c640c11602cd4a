import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { utf8Batches } from '../src/util/stream.js';

/** Pieces of every UTF-8 length (1-4 bytes a character, surrogate pairs included), of many sizes. */
function pieces(): string[] {
  const alphabet = ['a', 'é', '日本', '🛡️', '\u{1F4BE}', '"\\\n', ''];
  const out: string[] = [];
  for (let i = 0; i < 60_000; i++) {
    const c = alphabet[i % alphabet.length] as string;
    out.push(c.repeat(1 + (i % 37)));
  }
  // A piece of its own larger than a batch, and one just under it.
  out.push('x'.repeat(3 << 20), '日'.repeat(349_000), 'tail');
  return out;
}

describe('utf8Batches', () => {
  it('is the UTF-8 of the pieces joined, whatever falls on a batch boundary', () => {
    const all = pieces();
    const batches = [...utf8Batches(all)];
    assert.ok(batches.length > 3, `${batches.length} batches`);
    assert.ok(Buffer.concat(batches).equals(Buffer.from(all.join(''), 'utf8')));
    // Every batch but a lone oversized piece stays within 1 MiB, and none is empty.
    for (const b of batches)
      assert.ok(b.length > 0 && (b.length <= 1 << 20 || b.length === 3 << 20), String(b.length));
  });

  it('gives fresh buffers: a batch kept by a slow stream is not overwritten by the next', () => {
    const kept = [...utf8Batches(['a'.repeat(300_000), 'b'.repeat(300_000), 'c'.repeat(300_000)])];
    assert.deepEqual(
      kept.map((b) => [b.length, b[0]]),
      [
        [300_000, 0x61],
        [300_000, 0x62],
        [300_000, 0x63],
      ],
    );
  });

  it('yields nothing for no text', () => {
    assert.equal([...utf8Batches([])].length, 0);
    assert.equal([...utf8Batches(['', ''])].length, 0);
  });
});
