/** How much text is gathered before one write: large enough to be few syscalls, small next to memory. */
const BATCH_CHARS = 1 << 20;

/**
 * Writes text given in pieces to a stream as it comes, in batches of about 1 MiB, waiting for the
 * stream to drain when it says to (a slow pipe never makes the output pile up in memory). The text
 * as a whole is never one string, so output larger than a JavaScript string can hold (512 MiB) is
 * written. Rejects with the stream's error (EPIPE when the reader went away).
 */
export async function writeChunks(out: NodeJS.WritableStream, chunks: Iterable<string>): Promise<void> {
  let failed: Error | undefined;
  const onError = (err: Error) => {
    failed ??= err;
  };
  out.on('error', onError);
  try {
    const flush = async (text: string) => {
      if (failed) throw failed;
      if (!out.write(text))
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
    };
    let batch: string[] = [];
    let size = 0;
    for (const chunk of chunks) {
      batch.push(chunk);
      size += chunk.length;
      if (size >= BATCH_CHARS) {
        await flush(batch.join(''));
        batch = [];
        size = 0;
      }
    }
    if (batch.length) await flush(batch.join(''));
  } finally {
    out.off('error', onError);
  }
}
