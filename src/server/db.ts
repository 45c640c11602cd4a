import { closeSync, constants, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import {
  Kysely,
  Migrator,
  PostgresDialect,
  type SqliteDatabase,
  SqliteDialect,
  type SqliteStatement,
} from 'kysely';
import pg from 'pg';
import { PortolanError, UsageError } from '../errors.js';
import { makeDirectory } from '../util/mkdir.js';
import { migrationProvider } from './migrations.js';

export interface Tables {
  tokens: {
    id: string;
    kind: 'admin' | 'viewer' | 'agent';
    hash: string;
    agent_id: string | null;
    created_at: string;
  };
  site_versions: {
    site: string;
    version: number;
    yaml: string;
    plan: string;
    flows: number;
    created_at: string;
  };
  agents: {
    id: string;
    site: string;
    host: string;
    name: string;
    created_at: string;
    last_seen: string | null;
    stale: number;
    isolated_at: string | null;
    /** received_at of the agent's latest run stored (migration 006). */
    last_run_at: string | null;
    /** When a run of the agent was last refused for a reason on the server's side (409 ESTORED), and why. */
    refused_at: string | null;
    refused: string | null;
  };
  runs: {
    key: string;
    agent_id: string;
    site: string;
    version: number;
    started_at: string;
    received_at: string;
    isolated: number;
    results: number;
  };
  results: {
    run_key: string;
    site: string;
    flow_id: string;
    verdict: string;
    failed: number;
    detail: string;
    checked_at: string;
    /** The flow's form in the run's version (flowForm; migration 005); UNKNOWN_FORM when it has none. */
    form: string;
  };
  /** A version's flows: each flow id with its form (sites.ts flowForm), written with the version. */
  version_flows: { site: string; version: number; flow_id: string; form: string };
  /**
   * Each flow's latest verdict per form: a verdict holds for every version whose flow of that id
   * has the same form, and a flow that changed form starts unchecked (migration 003).
   */
  flow_status: {
    site: string;
    flow_id: string;
    form: string;
    verdict: string;
    failed: number;
    checked_at: string;
  };
  /**
   * Each agent's latest verdict per flow form (migration 007): flow_status is the roll-up of the
   * enrolled agents' rows, so two agents on one host that disagree show the failing one.
   */
  agent_status: {
    site: string;
    flow_id: string;
    form: string;
    agent_id: string;
    verdict: string;
    failed: number;
    checked_at: string;
  };
  events: {
    id: string;
    at: string;
    site: string | null;
    kind: string;
    subject: string;
    message: string;
    data: string;
  };
  webhooks: { id: string; url: string; created_at: string };
  change_requests: {
    id: string;
    site: string;
    from_version: number;
    to_version: number;
    created_at: string;
    /** When it was closed (migration 004); null while open. A closed request is never reopened. */
    closed_at: string | null;
    closed_reason: string | null;
    /** The change request of the same site that replaces it, when it was closed for one. */
    superseded_by: string | null;
  };
  change_rows: {
    cr_id: string;
    rule: string;
    site: string;
    summary: string;
    flow_ids: string;
    /** `allow` rows: requested, working, broken; `remove` rows: requested, implemented, broken (Store.updateRemovalRows). */
    state: 'requested' | 'working' | 'broken' | 'implemented';
    /** `allow`: a rule to add; `remove`: a previous version's rule that loses flows. */
    action: 'allow' | 'remove';
    evidence: string;
    updated_at: string;
  };
}

export type Db = Kysely<Tables>;

/** Where a store lives: a SQLite file (WAL) or a PostgreSQL URL. */
export type DbTarget = { kind: 'sqlite'; file: string } | { kind: 'postgres'; url: string };

export function parseDbTarget(text: string): DbTarget {
  if (/^postgres(ql)?:\/\//.test(text)) return { kind: 'postgres', url: text };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text))
    throw new UsageError(`--db ${JSON.stringify(text)}: expected a SQLite file path or a postgres:// URL`);
  return { kind: 'sqlite', file: text };
}

/** Prepared statements kept per SQL text: Kysely prepares every query anew, which costs as much as running it. */
const STATEMENTS = 256;

/**
 * The SQLite handle Kysely sees, with its prepared statements reused (least recently used dropped
 * past STATEMENTS). Safe because Kysely's SQLite driver runs one query at a time on its one
 * connection; statements are never iterated concurrently.
 */
function statementCache(sqlite: Database.Database, onClose: () => void = () => {}): SqliteDatabase {
  const cache = new Map<string, Database.Statement>();
  return {
    close: () => {
      onClose();
      sqlite.close();
    },
    prepare(text: string) {
      let stmt = cache.get(text);
      if (stmt) cache.delete(text);
      else {
        stmt = sqlite.prepare(text);
        if (cache.size >= STATEMENTS) cache.delete(cache.keys().next().value as string);
      }
      cache.set(text, stmt);
      return stmt as unknown as SqliteStatement;
    },
  };
}

/** How often the checkpoint thread copies the WAL back into the database file. */
const CHECKPOINT_MS = 1000;
/** The serving connection's own auto-checkpoint, in pages of 4 KiB (SQLite's default is 1000): a backstop that bounds the WAL at about 16 MiB. */
const BACKSTOP_PAGES = 4000;

/**
 * Moves the WAL checkpoints (and with them the store's fsyncs) off the serving connection to a
 * thread of its own (checkpoint-worker.ts). The thread never keeps the process alive; if it cannot
 * start, the serving connection checkpoints as SQLite does by default.
 */
function startCheckpointer(sqlite: Database.Database, file: string): Worker | null {
  try {
    const worker = new Worker(new URL('./checkpoint-worker.js', import.meta.url), {
      workerData: { file, intervalMs: CHECKPOINT_MS },
    });
    worker.unref();
    worker.on('error', () => sqlite.open && sqlite.pragma('wal_autocheckpoint = 1000'));
    sqlite.pragma(`wal_autocheckpoint = ${BACKSTOP_PAGES}`);
    return worker;
  } catch {
    return null;
  }
}

/**
 * Opens the store and brings its schema up to date (migrations.ts). SQLite runs in WAL mode with a
 * busy timeout, so several processes may share one file; PostgreSQL is the fleet-scale store that
 * several `serve` processes share. Migrations take Kysely's lock, so concurrent starts are safe.
 */
export async function openDb(target: DbTarget): Promise<Db> {
  let db: Db;
  if (target.kind === 'sqlite') {
    let sqlite: Database.Database;
    try {
      if (target.file !== ':memory:') {
        // The store holds sites, verdicts and token hashes: a new store's directory is this user's
        // only (0700), and its file is made 0600 before SQLite opens it, so the -wal and -shm files
        // SQLite makes beside it take the same mode. An existing store keeps its modes.
        makeDirectory(dirname(target.file), 0o700);
        closeSync(openSync(target.file, constants.O_RDWR | constants.O_CREAT | constants.O_NOCTTY, 0o600));
      }
      sqlite = new Database(target.file);
      sqlite.pragma('journal_mode = WAL');
      sqlite.pragma('busy_timeout = 10000');
      sqlite.pragma('synchronous = NORMAL');
    } catch (err) {
      throw new PortolanError(`cannot open SQLite store ${target.file}: ${(err as Error).message}`, 'EIO', {
        cause: err,
      });
    }
    const checkpointer = target.file === ':memory:' ? null : startCheckpointer(sqlite, target.file);
    db = new Kysely<Tables>({
      dialect: new SqliteDialect({
        database: statementCache(sqlite, () => checkpointer?.postMessage('close')),
      }),
    });
  } else {
    const pool = new pg.Pool({ connectionString: target.url, max: 10 });
    db = new Kysely<Tables>({ dialect: new PostgresDialect({ pool }) });
  }
  const { error, results } = await new Migrator({ db, provider: migrationProvider }).migrateToLatest();
  if (error) {
    await db.destroy();
    const failed = results?.find((r) => r.status === 'Error')?.migrationName;
    throw new PortolanError(
      `cannot prepare the store${failed ? ` (migration ${failed})` : ''}: ${(error as Error).message}`,
      'EIO',
      { cause: error },
    );
  }
  return db;
}
