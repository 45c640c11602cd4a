import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import { PortolanError } from '../errors.js';
import { loadSite } from '../inventory/load.js';
import { buildPlan } from '../plan/plan.js';
import { type CheckOptions, type CheckReport, runCheck } from '../probe/engine.js';
import { summarize } from '../probe/report.js';
import { scopeFor } from '../probe/scope.js';
import { type FlowResult, unanswered } from '../probe/verdict.js';
import { writeFileAtomic } from '../util/atomic.js';
import { makeDirectory } from '../util/mkdir.js';
import { counted } from '../util/plural.js';
import { sizeText } from '../util/read.js';
import { safeLine } from '../util/terminal.js';

/** What the server's /api/agent/plan returns. */
export interface AgentPlan {
  agent: string;
  site: string;
  host: string;
  version: number;
  yaml: string;
  flowIds: string[];
  /**
   * Flows from this host that removal rows of change requests name and the latest version no longer
   * has in that form, with the inventory of the version that still has them: checked and posted as a run of
   * that version, so the server can tell a removal implemented (blocked) from still open. Absent
   * from servers before this field.
   */
  removals?: { version: number; yaml: string; flowIds: string[] }[];
}

/**
 * What is wrong with `value` as an {@link AgentPlan} (schemas.ts agentPlanReply), in words; undefined
 * when it is one. A plan comes from the network or the spool's plan.json: either may hold anything.
 */
export function planProblem(value: unknown): string | undefined {
  const isObject = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  const strings = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === 'string');
  const version = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 1;
  if (!isObject(value))
    return `expected an object, got ${Array.isArray(value) ? 'a list' : value === null ? 'null' : typeof value}`;
  for (const k of ['agent', 'site', 'host', 'yaml'] as const)
    if (typeof value[k] !== 'string') return `"${k}" is not a string`;
  if (!version(value.version)) return '"version" is not a whole number from 1';
  if (!strings(value.flowIds)) return '"flowIds" is not a list of strings';
  if (value.removals !== undefined) {
    if (!Array.isArray(value.removals)) return '"removals" is not a list';
    for (const [i, r] of value.removals.entries())
      if (!isObject(r) || !version(r.version) || typeof r.yaml !== 'string' || !strings(r.flowIds))
        return `"removals[${i}]" is not { version, yaml, flowIds }`;
  }
  return undefined;
}

/** One spooled check run, exactly the body of POST /api/agent/results. */
export interface SpooledRun {
  key: string;
  version: number;
  startedAt: string;
  isolated: boolean;
  results: { flowId: string; verdict: string; detail: Record<string, unknown> }[];
}

export interface AgentOptions {
  /** Base URL of `portolan serve`, e.g. http://10.0.0.5:7300 */
  server: string;
  token: string;
  /** Spool directory: pending/ (not yet acknowledged), rejected/, plan.json (last plan fetched). */
  spool: string;
  catalogs?: readonly string[];
  check?: Omit<CheckOptions, 'onProgress'>;
  /** One line per thing done: `spooled KEY`, `sent KEY`, `server unreachable: ...`. */
  log?: (line: string) => void;
  /** Per request (default 30 s). */
  requestTimeoutMs?: number;
  /** Largest reply body read, in bytes (default MAX_REPLY_BYTES); a longer one fails the request. */
  maxReplyBytes?: number;
  /**
   * PEM certificates the server's HTTPS certificate must chain to, in place of the system's trust
   * store (a private CA, or the server's self-signed certificate itself).
   */
  ca?: string | Buffer;
}

/** What one `Agent.cycle()` left behind. */
export interface CycleOutcome {
  /** Idempotency key of the run this cycle made; null when there was no plan to check. */
  key: string | null;
  /** Runs still in the spool (not acknowledged by the server). */
  pending: number;
  /** Flow results in those runs. */
  results: number;
  /** False when no request of this cycle got an HTTP answer (refused, timed out, TLS failed, 5xx). */
  reached: boolean;
  /** The directory the pending runs wait in. */
  spool: string;
}

/**
 * The server could not take the request now: no answer (a socket error or timeout), or an answer of
 * 5xx (`status` set: the server was reached, and failed). Either way the request is tried again in a
 * later round, with the runs kept in the spool.
 */
class Unreachable extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

/**
 * The largest reply body an agent reads by default: 64 MiB, far above the plan of one host's flows
 * (about 1 KiB a flow) and far below what holding it, its text and its JSON costs. A server that
 * answers more (an endless or runaway body) fails the request, as a 5xx does.
 */
export const MAX_REPLY_BYTES = 64 * 1024 * 1024;

/** How many characters of a reply that is not portolan's JSON an agent line quotes. */
const EXCERPT_CHARS = 120;

/** Why the server could not take a request, for the agent's log: unreachable, or the 5xx it answered. */
function unreachableLine(err: Unreachable): string {
  return err.status === undefined ? `server unreachable: ${err.message}` : `server failed: ${err.message}`;
}

/**
 * The server answered with a 4xx that no retry of the same request can fix: 401/403 (the token is
 * unknown, revoked or not an agent token) or 404/405/501 (--server is not a portolan serve API). A user
 * error, exit 2: the message names the server, the request, the server's answer and what to do.
 */
export class ServerRefused extends PortolanError {
  readonly status: number;
  constructor(message: string, status: number) {
    super(message, 'EUSAGE');
    this.name = 'ServerRefused';
    this.status = status;
  }
}

/** The most port results kept per flow in a posted result (ranges are summarized, not listed). */
const MAX_PORTS = 64;
/**
 * The most verdict ranges kept per flow in a posted result: with MAX_PORTS ports it keeps a detail
 * well under the server's MAX_DETAIL_BYTES (64 KiB) however the verdicts of a range alternate.
 */
const MAX_RANGES = 256;

/**
 * The `detail` of one flow's posted result: reason, hint, addresses, the verdict ranges (at most
 * MAX_RANGES, with `rangesOmitted` counting the rest) and the first MAX_PORTS port results.
 */
export function detailOf(fr: FlowResult): Record<string, unknown> {
  const ranges = summarize(fr);
  return {
    reason: fr.reason ?? (fr.results.find((r) => r.verdict === fr.verdict)?.detail || undefined),
    hint: fr.hint,
    addresses: fr.addresses,
    ranges: ranges.slice(0, MAX_RANGES).map((s) => ({
      address: s.address,
      ports: s.ports,
      verdict: s.verdict,
      counts: s.counts,
    })),
    ...(ranges.length > MAX_RANGES ? { rangesOmitted: ranges.length - MAX_RANGES } : {}),
    ports: fr.results.slice(0, MAX_PORTS).map((r) => ({
      address: r.address,
      port: r.port,
      protocol: r.protocol,
      verdict: r.verdict,
      detail: r.detail,
      evidence: r.evidence,
    })),
  };
}

/**
 * The agent: fetches the flows that start at its host, checks them with the same engine as
 * `portolan check`, and posts the results. A run is written to the spool before it is sent and
 * deleted only once the server acknowledged its idempotency key, so no result is lost or counted
 * twice across agent or server restarts (the pattern of Zabbix agent 2's persistent buffer).
 */
export class Agent {
  private readonly pending: string;
  private readonly rejected: string;
  private readonly log: (line: string) => void;
  /** Whether any request of the current cycle got an HTTP answer from the server. */
  private answered = false;

  constructor(private readonly o: AgentOptions) {
    this.pending = join(o.spool, 'pending');
    this.rejected = join(o.spool, 'rejected');
    // The spool holds the site's plan and results: this user's only, from the directories' creation.
    makeDirectory(this.pending, 0o700);
    makeDirectory(this.rejected, 0o700);
    this.log = o.log ?? ((line) => process.stderr.write(`portolan agent: ${line}\n`));
  }

  private async call(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; json: unknown }> {
    let res: { status: number; text: string };
    try {
      res = await httpRequest(new URL(path, this.o.server), {
        method,
        headers: {
          authorization: `Bearer ${this.o.token}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        timeoutMs: this.o.requestTimeoutMs ?? 30_000,
        maxBytes: this.o.maxReplyBytes ?? MAX_REPLY_BYTES,
        ...(this.o.ca !== undefined ? { ca: this.o.ca } : {}),
      });
    } catch (err) {
      const status = (err as { status?: number }).status;
      if (status !== undefined) {
        // Answered, with a body too large to read: the server is reached and failed, as a 5xx.
        this.answered = true;
        throw new Unreachable(
          `${method} ${path}: ${(err as Error).message}; tried again on the next run`,
          status,
        );
      }
      const cause = (err as { code?: string }).code ?? (err as Error).message;
      throw new Unreachable(`${method} ${new URL(path, this.o.server).href}: ${cause}`);
    }
    const text = res.text;
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = text;
    }
    // Any HTTP answer proves the path to the server: a run made now is never isolated.
    this.answered = true;
    // 501: the server does not know the method at all (a web server that is not portolan serve),
    // which no retry fixes: refused like 404 and 405.
    if (res.status >= 500 && res.status !== 501)
      throw new Unreachable(
        `${method} ${path}: the server answered HTTP ${res.status} ${Agent.message(json)}; tried again on the next run`,
        res.status,
      );
    return { status: res.status, json };
  }

  /**
   * What a reply says, for one log or error line: portolan's `error.message`, else an excerpt of
   * the reply (an HTML error page of another server: tags and runs of white space taken out, cut
   * at EXCERPT_CHARS). Control characters are replaced: the reply is the server's text, not ours.
   */
  private static message(json: unknown): string {
    const said = (json as { error?: { message?: unknown } })?.error?.message;
    if (typeof said === 'string') return safeLine(said);
    const text =
      typeof json === 'string'
        ? json
            .replace(/<[^>]*>/g, ' ')
            .replace(/\s+/g, ' ')
            .trim()
        : JSON.stringify(json);
    const cut = text.length > EXCERPT_CHARS ? `${text.slice(0, EXCERPT_CHARS)}...` : text;
    return safeLine(typeof json === 'string' ? JSON.stringify(cut) : cut);
  }

  /**
   * Throws {@link ServerRefused} for an answer to `method path` that no retry can fix (401, 403,
   * 404, 405, 501); returns for any other status.
   */
  private refuse(method: string, path: string, r: { status: number; json: unknown }): void {
    const server = new URL(this.o.server).origin;
    const said = `HTTP ${r.status} ${Agent.message(r.json)}`;
    if (r.status === 401)
      throw new ServerRefused(
        `server ${server} refused the agent token (${method} ${path}: ${said}): the token is mistyped or was revoked; enrol this host again (POST /api/agents) and give the new token with --token`,
        r.status,
      );
    if (r.status === 403)
      throw new ServerRefused(
        `server ${server} refused the token for ${method} ${path} (${said}): give the agent token this host's enrolment returned (POST /api/agents) with --token, not an admin or viewer token`,
        r.status,
      );
    if (r.status === 404 || r.status === 405 || r.status === 501)
      throw new ServerRefused(
        `server ${server} has no ${method} ${path} (${said}): is --server the URL of portolan serve?`,
        r.status,
      );
  }

  /**
   * Tells the server this agent is alive. False when the server could not be reached (no answer);
   * a 5xx is logged and counts as reached (the path to the server works). Throws
   * {@link ServerRefused} on 401, 403, 404, 405 or 501; another 4xx (400, 408, 429) is
   * logged and counts as reached.
   */
  async heartbeat(): Promise<boolean> {
    try {
      const path = '/api/agent/heartbeat';
      const r = await this.call('POST', path, {});
      this.refuse('POST', path, r);
      if (r.status !== 200)
        this.log(`server refused the heartbeat: HTTP ${r.status} ${Agent.message(r.json)}`);
      return true;
    } catch (err) {
      if (err instanceof Unreachable) {
        this.log(unreachableLine(err));
        // A server that answered 5xx was reached: the host's own network works.
        return err.status !== undefined;
      }
      throw err;
    }
  }

  /**
   * The plan from the server, or the last one fetched when the server cannot be reached or refuses
   * it with a 4xx a later request may not meet (400, 408, 429; logged). Throws {@link ServerRefused}
   * on 401, 403, 404, 405 or 501.
   */
  async plan(): Promise<AgentPlan | null> {
    const cached = join(this.o.spool, 'plan.json');
    try {
      const path = '/api/agent/plan';
      const r = await this.call('GET', path);
      this.refuse('GET', path, r);
      if (r.status !== 200) {
        // 409 (ESTORED: the site's version no longer loads with the server's catalogs) is the
        // server's to fix; the agent checks with the plan it has, and its runs wait in the spool.
        this.log(
          `server ${r.status === 409 ? 'could not give' : 'refused'} the plan: HTTP ${r.status} ${Agent.message(r.json)}; checking with the last plan fetched, if any`,
        );
        throw new Unreachable(`GET ${path}: HTTP ${r.status}`);
      }
      const wrong = planProblem(r.json);
      if (wrong) {
        // Checked before it is kept or used: a reply of another shape crashed the check that read it.
        this.log(`server sent a plan that is not one (${wrong}); using the last plan fetched`);
        throw new Unreachable(`GET ${path}: not a plan`);
      }
      atomicWrite(cached, JSON.stringify(r.json));
      return r.json as AgentPlan;
    } catch (err) {
      if (!(err instanceof Unreachable)) throw err;
      // A 5xx is said here (an unreachable server was said by the heartbeat).
      if (err.status !== undefined) this.log(unreachableLine(err));
      let kept: unknown;
      try {
        kept = JSON.parse(readFileSync(cached, 'utf8'));
      } catch {
        return null;
      }
      const wrong = planProblem(kept);
      if (kept !== null && wrong)
        this.log(`the last plan fetched (${cached}) is not one (${wrong}); ignored`);
      return wrong ? null : (kept as AgentPlan);
    }
  }

  /**
   * One round: heartbeat, plan, check, spool, send. The self-check guard: a run made while the
   * server was unreachable and in which no target answered is marked `isolated` (isolatedRun: this
   * host's own network is the likelier fault), and the server keeps it as history without changing
   * verdicts.
   */
  async cycle(): Promise<CycleOutcome> {
    this.answered = false;
    const reachable = await this.heartbeat();
    const plan = await this.plan();
    if (!plan) {
      this.log('no plan yet (none fetched from the server): nothing to check');
      return this.outcome(null);
    }
    const report = await this.check(plan.yaml, plan.host, plan.flowIds, 'site.yaml');
    const results = report.results.filter((r) => plan.flowIds.includes(r.flow.id));
    const isolated = isolatedRun(reachable, results);
    const key = this.spool(plan.version, report, results, isolated, '');
    // Removed flows: a failing verdict is the expected outcome there, so these runs cannot tell an
    // isolated host themselves; they share the main run's judgement.
    for (const rm of plan.removals ?? []) {
      const removed = await this.check(rm.yaml, plan.host, rm.flowIds, `removal-v${rm.version}.yaml`);
      const rs = removed.results.filter((r) => rm.flowIds.includes(r.flow.id));
      if (rs.length) this.spool(rm.version, removed, rs, isolated, ` removed in a later version`);
    }
    await this.flush();
    return this.outcome(key);
  }

  /** Writes one run to the spool (before sending: a crash from here on loses nothing); returns its key. */
  private spool(
    version: number,
    report: CheckReport,
    results: readonly FlowResult[],
    isolated: boolean,
    what: string,
  ): string {
    const run: SpooledRun = {
      key: randomUUID(),
      version,
      startedAt: report.startedAt,
      isolated,
      results: results.map((r) => ({ flowId: r.flow.id, verdict: r.verdict, detail: detailOf(r) })),
    };
    atomicWrite(
      join(this.pending, `${Date.now().toString().padStart(15, '0')}-${run.key}.json`),
      JSON.stringify(run),
    );
    this.log(
      `spooled ${run.key} (${counted(run.results.length, 'flow')}${what}${isolated ? ', isolated: neither the server nor any target answered' : ''})`,
    );
    return run.key;
  }

  /** What is left in the spool after a cycle, and whether the server answered at all. */
  private outcome(key: string | null): CycleOutcome {
    let results = 0;
    const files = this.pendingFiles();
    for (const name of files) {
      try {
        const run = JSON.parse(readFileSync(join(this.pending, name), 'utf8')) as Partial<SpooledRun> | null;
        if (Array.isArray(run?.results)) results += run.results.length;
      } catch {
        // An unreadable file is moved aside by the next flush; it holds no results to count.
      }
    }
    return { key, pending: files.length, results, reached: this.answered, spool: this.pending };
  }

  /** Checks `flowIds` from `host` with the inventory `yaml` (written to `name` in the spool first). */
  private async check(
    yaml: string,
    host: string,
    flowIds: readonly string[],
    name: string,
  ): Promise<CheckReport> {
    const file = join(this.o.spool, name);
    atomicWrite(file, yaml);
    const site = loadSite(file, this.o.catalogs ?? []);
    const built = buildPlan(site.inventory, site.catalogs);
    const scope = await scopeFor(site.inventory, built, { from: host });
    const known = new Set(flowIds);
    const missing = flowIds.filter((id) => !scope.flows.some((f) => f.id === id));
    if (missing.length)
      this.log(
        `${counted(missing.length, 'flow')} of the server's plan are not in this agent's plan (catalog versions differ): ${missing.slice(0, 3).join(', ')}`,
      );
    return runCheck(scope, this.o.check ?? {}, { flows: scope.flows.filter((f) => known.has(f.id)) });
  }

  private pendingFiles(): string[] {
    return readdirSync(this.pending)
      .filter((n) => n.endsWith('.json'))
      .sort();
  }

  /**
   * Sends every spooled run, oldest first; stops at the first that cannot be delivered (server
   * unreachable, 408, 429). A run the server answers 409 for (ESTORED: the run's version no longer
   * loads with the server's catalogs) is the server's to fix, not a fault of the run: it stays in
   * the spool, is sent again on the next flush, and the runs after it are still sent. A run the
   * server refuses for good (400: not a flow of this host; 413) is moved to rejected/. Returns how
   * many are left.
   */
  async flush(): Promise<number> {
    const files = this.pendingFiles();
    let kept = 0;
    for (let i = 0; i < files.length; i++) {
      const name = files[i] as string;
      const path = join(this.pending, name);
      let run: SpooledRun;
      try {
        run = JSON.parse(readFileSync(path, 'utf8')) as SpooledRun;
      } catch {
        renameSync(path, join(this.rejected, name));
        this.log(`unreadable spool file moved to ${join(this.rejected, name)}`);
        continue;
      }
      let r: { status: number; json: unknown };
      try {
        r = await this.call('POST', '/api/agent/results', run);
      } catch (err) {
        if (err instanceof Unreachable) {
          this.log(`${unreachableLine(err)}; ${counted(files.length - i, 'run')} spooled`);
          return files.length - i;
        }
        throw err;
      }
      if (r.status === 200 && (r.json as { key?: string })?.key === run.key) {
        rmSync(path, { force: true });
        this.log(
          `sent ${run.key}${(r.json as { duplicate?: boolean }).duplicate ? ' (already stored)' : ''}`,
        );
      } else if (r.status === 401 || r.status === 403) {
        // The run stays in the spool; the next agent run with a good token sends it.
        this.refuse('POST', '/api/agent/results', r);
      } else if (r.status === 408 || r.status === 429) {
        this.log(`server refused ${run.key}: HTTP ${r.status} ${Agent.message(r.json)}; kept in the spool`);
        return files.length - i;
      } else if (r.status === 409) {
        kept++;
        const code = (r.json as { error?: { code?: string } })?.error?.code;
        this.log(
          `server could not store ${run.key} (version ${run.version}): HTTP 409${code ? ` ${code}` : ''} ${Agent.message(r.json)}; the run is sound, so it stays in the spool (${this.pending}) and is sent again on every run until the server can store it`,
        );
      } else {
        renameSync(path, join(this.rejected, name));
        this.log(
          `server rejected ${run.key}: HTTP ${r.status} ${Agent.message(r.json)}; moved to ${this.rejected}`,
        );
      }
    }
    return kept;
  }
}

/**
 * One HTTP(S) request with node:http(s), so a private CA can be given per agent (fetch has no such
 * option). Rejects with the socket error (its `code`: ECONNREFUSED, CERT_HAS_EXPIRED,
 * UNABLE_TO_VERIFY_LEAF_SIGNATURE, ...), ETIMEDOUT after `timeoutMs` in all, or EFBIG (with the
 * reply's `status`) once the reply's body passes `maxBytes`: it is not read to its end.
 */
function httpRequest(
  url: URL,
  o: {
    method: string;
    headers: Record<string, string>;
    body?: string;
    timeoutMs: number;
    maxBytes: number;
    ca?: string | Buffer;
  },
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const options = {
      method: o.method,
      headers: {
        ...o.headers,
        ...(o.body !== undefined ? { 'content-length': String(Buffer.byteLength(o.body)) } : {}),
      },
      ...(o.ca !== undefined ? { ca: o.ca } : {}),
    };
    const req = (url.protocol === 'https:' ? https : http).request(url, options, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > o.maxBytes) {
          chunks.length = 0;
          req.destroy(
            Object.assign(
              new Error(`the server answered HTTP ${res.statusCode} with more than ${sizeText(o.maxBytes)}`),
              { code: 'EFBIG', status: res.statusCode ?? 0 },
            ),
          );
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    const timer = setTimeout(
      () => req.destroy(Object.assign(new Error(`no answer in ${o.timeoutMs} ms`), { code: 'ETIMEDOUT' })),
      o.timeoutMs,
    );
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end(o.body);
  });
}

/**
 * Writes a spool file whole (writeFileAtomic: flushed to disk before the rename, so a spooled run
 * survives a power cut, not only a crash), readable by this user only, replacing whatever has the name.
 */
function atomicWrite(file: string, text: string): void {
  writeFileAtomic(file, text, { mode: 0o600, follow: false });
}

/**
 * Whether a run is `isolated`: the server did not answer (`reachable` false) and every flow failed
 * without an answer from its target (verdict.ts unanswered: no name, neighbour or route, an ICMP
 * unreachable, silence), so this host's own network is the likelier fault. A target that answered
 * at all (a TCP reset: `closed`; a failed TLS handshake; another service) proves the host's network
 * reached it, and the run's failures are the site's.
 */
export function isolatedRun(
  reachable: boolean,
  results: readonly Pick<FlowResult, 'failed' | 'verdict'>[],
): boolean {
  return !reachable && results.length > 0 && results.every((r) => r.failed && unanswered(r.verdict));
}
