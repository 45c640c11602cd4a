/** How many bytes are gathered before one write: large enough to be few syscalls, small next to memory. */
const BATCH_BYTES = 1 << 20;

/**
 * Text given in pieces, as UTF-8 in batches of about 1 MiB: each piece is encoded straight into the
 * batch (Buffer.write), so the pieces are never joined into one string and then encoded again. A
 * piece larger than a batch is a batch of its own. Every batch yielded is a fresh Buffer the caller
 * may keep (an asynchronous stream holds it until written).
 */
export function* utf8Batches(chunks: Iterable<string>): Generator<Buffer> {
  let buf = Buffer.allocUnsafe(BATCH_BYTES);
  let used = 0;
  for (const chunk of chunks) {
    // A UTF-16 code unit is at most 3 bytes of UTF-8 (a surrogate pair is 4 bytes for 2 units).
    if (used + chunk.length * 3 > BATCH_BYTES) {
      if (used > 0) {
        yield buf.subarray(0, used);
        buf = Buffer.allocUnsafe(BATCH_BYTES);
        used = 0;
      }
      if (chunk.length * 3 > BATCH_BYTES) {
        yield Buffer.from(chunk, 'utf8');
        continue;
      }
    }
    used += buf.write(chunk, used, 'utf8');
  }
  if (used > 0) yield buf.subarray(0, used);
}

/**
 * Writes text given in pieces to a stream as it comes, in UTF-8 batches of about 1 MiB (utf8Batches),
 * waiting for the stream to drain when it says to (a slow pipe never makes the output pile up in
 * memory). The text as a whole is never one string, so output larger than a JavaScript string can
 * hold (512 MiB) is written. Rejects with the stream's error (EPIPE when the reader went away).
 */
export async function writeChunks(out: NodeJS.WritableStream, chunks: Iterable<string>): Promise<void> {
  let failed: Error | undefined;
  const onError = (err: Error) => {
    failed ??= err;
  };
  out.on('error', onError);
  try {
    for (const batch of utf8Batches(chunks)) {
      if (failed) throw failed;
      if (!out.write(batch))
        await new Promise<void>((resolve, reject) => {
          const done = () => {
            out.off('drain', done);
            out.off('error', fail);
            resolve();
          };
          const fail = (err: Error) => {
            out.off('drain', done);
            reject(err);
          };
          out.once('drain', done);
          out.once('error', fail);
        });
      if (failed) throw failed;
    }
  } finally {
    out.off('error', onError);
  }
}

/** How many characters of lines writeLines gathers before one write. */
const LINE_BATCH_CHARS = 1 << 16;

/**
 * Writes `lines` (each without its line feed) to `out`, each followed by a line feed, gathered into
 * writes of about 64 KiB: thousands of warnings are a few writes, where a write per line is a
 * system call each (Node.js writes stderr, and stdout to a file or pipe, synchronously).
 */
export function writeLines(out: NodeJS.WritableStream, lines: Iterable<string>): void {
  let text = '';
  for (const line of lines) {
    text += `${line}\n`;
    if (text.length >= LINE_BATCH_CHARS) {
      out.write(text);
      text = '';
    }
  }
  if (text) out.write(text);
}
