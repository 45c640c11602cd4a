/**
 * The SQLite store's WAL checkpointer, on a thread of its own. In WAL mode with synchronous=NORMAL a
 * commit only appends to the WAL; the fsyncs happen when the WAL is copied back into the database
 * (a checkpoint). SQLite runs that checkpoint inside whichever commit crosses wal_autocheckpoint,
 * so one request in a thousand paid it on the event loop. Here a second connection runs a PASSIVE
 * checkpoint (never waits for a lock, never blocks the writer; https://sqlite.org/c3ref/wal_checkpoint_v2.html)
 * every `intervalMs`, and the serving connection's own auto-checkpoint is only a backstop.
 * workerData: { file: string; intervalMs: number }.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

const { file, intervalMs } = workerData as { file: string; intervalMs: number };
const db = new Database(file);
db.pragma('busy_timeout = 1000');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
const timer = setInterval(() => {
  try {
    checkpoint.run();
  } catch {
    // Busy or locked: the next tick tries again, and the serving connection's backstop still holds.
  }
}, intervalMs);
parentPort?.on('message', (m) => {
  if (m === 'close') {
    clearInterval(timer);
    db.close();
    parentPort?.close();
  }
});
