import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import {
  type Compilable,
  type CompiledQuery,
  type Selectable,
  SqliteAdapter,
  type Transaction,
} from 'kysely';
import { InputError } from '../errors.js';
import { isFailure, type Verdict } from '../probe/verdict.js';
import { pushAll } from '../util/arrays.js';
import { counted as howMany } from '../util/plural.js';
import type { Db, Tables } from './db.js';
import { INSERT_ROWS, UNKNOWN_FORM } from './migrations.js';
import { flowForm, type ParsedSite, parseSite } from './sites.js';

/** A domain error the HTTP layer maps to a status: `code` is stable, `message` one line. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export type Role = 'admin' | 'viewer' | 'agent';
export type AgentRow = Selectable<Tables['agents']>;

export interface Principal {
  role: Role;
  agentId: string | null;
  /** An agent token's agent as read with the token; null for other tokens or a removed agent. */
  agent: AgentRow | null;
}

export interface EventRow {
  id: string;
  at: string;
  site: string | null;
  kind: string;
  subject: string;
  message: string;
  data: unknown;
}

/** One flow's result as an agent posts it. */
export interface PostedResult {
  flowId: string;
  verdict: Verdict;
  detail: Record<string, unknown>;
}

export interface PostedRun {
  key: string;
  version: number;
  startedAt: string;
  /** The agent could reach neither the server nor any target: its own network is suspect. */
  isolated: boolean;
  results: PostedResult[];
}

/** SHA-256 of a random token: tokens carry 256 bits, so a fast hash is enough (no password stretching). */
export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export function newToken(prefix: string): string {
  return `${prefix}_${randomBytes(32).toString('base64url')}`;
}

/**
 * Verdicts that are not failures and prove no path either (src/probe/verdict.ts): a flow skipped
 * was not probed, and open|filtered is UDP silence, which an open port and a dropping firewall
 * both give. A change row is not `working` on them.
 */
export const UNPROVEN: ReadonlySet<string> = new Set(['skipped', 'open|filtered']);

export type RemovalEvidence = 'blocked' | 'open' | 'inconclusive';

/**
 * What one verdict says about a removed flow (verdicts: src/probe/verdict.ts): `blocked` when the
 * flow no longer gets through (blocked: ICMP administratively prohibited; filtered: no answer;
 * closed: a reset, so the flow's service is not reached there, though the verdict cannot tell
 * a firewall's reset from the host's); `open` when a connection got through (every ok form,
 * reachable, open-unverified, wrong-service, not-serving, the TLS findings, reset-after-connect);
 * `inconclusive` otherwise (open|filtered, responder-overloaded, no-route, no-host, dns-failed,
 * skipped): they prove neither and are passed over.
 */
export function removalEvidence(verdict: string): RemovalEvidence {
  if (verdict === 'blocked' || verdict === 'filtered' || verdict === 'closed') return 'blocked';
  if (
    verdict === 'open|filtered' ||
    verdict === 'responder-overloaded' ||
    verdict === 'no-route' ||
    verdict === 'no-host' ||
    verdict === 'dns-failed' ||
    verdict === 'skipped'
  )
    return 'inconclusive';
  return 'open';
}

/** Each flow id of a plan with its form (sites.ts flowForm), computed once per parsed version. */
const formCache = new WeakMap<ParsedSite, Map<string, string>>();

/** `parsed`'s flows by id with their form (flowForm); kept while the parsed version is. */
export function formsOf(parsed: ParsedSite): Map<string, string> {
  let forms = formCache.get(parsed);
  if (!forms) {
    forms = new Map(parsed.plan.flows.map((f) => [f.id, flowForm(f)]));
    formCache.set(parsed, forms);
  }
  return forms;
}

/** How a removal row's rule id is stored (the primary key is change request and rule). */
const REMOVE_PREFIX = 'remove:';

/** The most runs stored in one transaction. */
const RUN_BATCH = 200;

export interface StoreOptions {
  /** Milliseconds since the Unix epoch, as Date.now (the default); tests move it instead of waiting. */
  clock?: () => number;
}

/**
 * The store: every read and write the API makes, on one query layer for SQLite and PostgreSQL. It
 * keeps no state between calls that another `serve` process sharing the database would need.
 */
export class Store {
  private readonly clock: () => number;
  /** Runs validated and waiting for the next group commit (drainRuns). */
  private readonly pendingRuns: {
    agent: AgentRow;
    run: PostedRun;
    resolve: (r: { stored: boolean; events: EventRow[] }) => void;
    reject: (err: unknown) => void;
  }[] = [];
  private draining = false;
  /** Result posts share transactions (SQLite: one writer at a time); see drainRuns. */
  private readonly groupCommit: boolean;
  /** Stored versions already read, by `VERSION\0SITE`: immutable rows (see version()). */
  private readonly versionCache = new Map<
    string,
    { version: number; yaml: string; createdAt: string; parsed: ParsedSite }
  >();

  /** Hot queries compiled once, by name (see prepared). */
  private readonly compiled = new Map<string, CompiledQuery>();
  /** The agent plan reply as JSON text after its `agent` field, by `SITE\0VERSION\0CHANGE-REQUESTS\0HOST` (see agentPlanJson). */
  private readonly planReplies = new Map<string, string>();

  constructor(
    readonly db: Db,
    readonly catalogs: readonly string[] = [],
    options: StoreOptions = {},
  ) {
    this.clock = options.clock ?? Date.now;
    this.groupCommit = db.getExecutor().adapter instanceof SqliteAdapter;
  }

  /**
   * Runs a fixed-shape query that the hot paths (every agent request) repeat: built and compiled by
   * Kysely once per store, then run with `params` in place of the first call's values. `build`
   * must make the same SQL whatever the values (no IN lists); the first call checks that its
   * values are exactly `params`, in order, so a wrong parameter order fails at once.
   */
  private async prepared<R>(
    db: Db | Transaction<Tables>,
    name: string,
    build: () => Compilable<R>,
    params: readonly unknown[],
  ) {
    let c = this.compiled.get(name) as CompiledQuery<R> | undefined;
    if (!c) {
      c = build().compile();
      if (JSON.stringify(c.parameters) !== JSON.stringify(params))
        throw new Error(
          `query ${name}: parameters ${JSON.stringify(c.parameters)} are not ${JSON.stringify(params)}`,
        );
      this.compiled.set(name, c);
    }
    return db.executeQuery<R>({ ...c, parameters: params });
  }

  /** The store's time as ISO-8601 UTC text, the form every time column holds. */
  private now(): string {
    return new Date(this.clock()).toISOString();
  }

  // --- tokens ---

  async hasAdmin(): Promise<boolean> {
    return !!(await this.db.selectFrom('tokens').select('id').where('kind', '=', 'admin').executeTakeFirst());
  }

  /** Makes a token of `kind`; only its hash is kept. Returns the token text, shown once. */
  async createToken(kind: Role, agentId: string | null = null): Promise<string> {
    const token = newToken(kind === 'agent' ? 'pta' : kind === 'admin' ? 'ptadm' : 'ptv');
    await this.db
      .insertInto('tokens')
      .values({ id: randomUUID(), kind, hash: hashToken(token), agent_id: agentId, created_at: this.now() })
      .execute();
    return token;
  }

  /** Makes a viewer token; returns its id (for revoking it) and its text, shown once. */
  async createViewer(): Promise<{ id: string; token: string }> {
    const token = newToken('ptv');
    const id = randomUUID();
    await this.db
      .insertInto('tokens')
      .values({ id, kind: 'viewer', hash: hashToken(token), agent_id: null, created_at: this.now() })
      .execute();
    return { id, token };
  }

  /** Every token by id, kind, agent and creation time: never its hash (the text is not kept). */
  async listTokens() {
    const rows = await this.db
      .selectFrom('tokens')
      .select(['id', 'kind', 'agent_id', 'created_at'])
      .orderBy('created_at')
      .execute();
    return rows.map((t) => ({ id: t.id, kind: t.kind, agent: t.agent_id, createdAt: t.created_at }));
  }

  /**
   * Revokes a viewer token: it stops working at once. Throws ApiError 404 (no such token) or 400
   * for an admin token (replaced with serve --new-admin-token) or an agent's (DELETE /api/agents/ID).
   */
  async revokeToken(id: string): Promise<void> {
    const t = await this.db.selectFrom('tokens').select(['kind']).where('id', '=', id).executeTakeFirst();
    if (!t)
      throw new ApiError(
        404,
        'ENOTOKEN',
        `no token ${JSON.stringify(id)} (expected an id that GET /api/tokens lists)`,
      );
    if (t.kind !== 'viewer')
      throw new ApiError(
        400,
        'ETOKENKIND',
        `token ${JSON.stringify(id)} is an ${t.kind} token (expected a viewer token; ${t.kind === 'admin' ? 'the admin token is replaced with serve --new-admin-token' : "an agent's token goes with its agent: DELETE /api/agents/ID"})`,
      );
    await this.db.deleteFrom('tokens').where('id', '=', id).execute();
  }

  /** Replaces every admin token with a new one. */
  async rotateAdmin(): Promise<string> {
    await this.db.deleteFrom('tokens').where('kind', '=', 'admin').execute();
    return this.createToken('admin');
  }

  /**
   * Who holds `token`, or null. The stored hash is compared again in constant time. An agent's
   * token comes with its agent row (one query), so the agent routes need no second lookup.
   */
  async authenticate(token: string): Promise<Principal | null> {
    const hash = hashToken(token);
    const build = () =>
      this.db
        .selectFrom('tokens')
        .leftJoin('agents', 'agents.id', 'tokens.agent_id')
        .select([
          'tokens.hash',
          'tokens.kind',
          'tokens.agent_id',
          'agents.site',
          'agents.host',
          'agents.name',
          'agents.created_at',
          'agents.last_seen',
          'agents.stale',
          'agents.isolated_at',
          'agents.last_run_at',
          'agents.refused_at',
          'agents.refused',
        ])
        .where('tokens.hash', '=', hash);
    const row = (await this.prepared(this.db, 'authenticate', build, [hash])).rows[0];
    if (!row) return null;
    const a = Buffer.from(row.hash, 'hex');
    const b = Buffer.from(hash, 'hex');
    if (a.length !== b.length || !timingSafeEqual(a, b)) return null;
    const agent: AgentRow | null =
      row.agent_id !== null && row.site !== null
        ? {
            id: row.agent_id,
            site: row.site,
            host: row.host as string,
            name: row.name as string,
            created_at: row.created_at as string,
            last_seen: row.last_seen,
            stale: row.stale as number,
            isolated_at: row.isolated_at,
            last_run_at: row.last_run_at,
            refused_at: row.refused_at,
            refused: row.refused,
          }
        : null;
    return { role: row.kind, agentId: row.agent_id, agent };
  }

  // --- sites ---

  /**
   * Every site with its latest version: `{name, version, flows, updatedAt, verdicts}`, where
   * `verdicts` counts the latest verdict of each of that version's flows by verdict, and only a
   * verdict measured on the flow's current form (flowForm): the verdicts of flows the version no
   * longer has, or of a flow's earlier addresses or ports, are history, not counted. Flows without
   * one are not in `verdicts`: `unchecked` counts them (a site no agent checked yet has every
   * flow unchecked, never an empty tally that reads as nothing wrong). `checkedAt` is `{oldest,
   * newest}` of the verdicts counted (null when none): counts of verdicts weeks old do not pass
   * for today's. Two queries, no plan parsed.
   */
  async listSites() {
    const latest = this.db
      .selectFrom('site_versions')
      .select(['site', (e) => e.fn.max('version').as('version')])
      .groupBy('site')
      .as('latest');
    const rows = await this.db
      .selectFrom('site_versions')
      .innerJoin(latest, (j) =>
        j
          .onRef('latest.site', '=', 'site_versions.site')
          .onRef('latest.version', '=', 'site_versions.version'),
      )
      .select([
        'site_versions.site',
        'site_versions.version',
        'site_versions.flows',
        'site_versions.created_at',
      ])
      .orderBy('site_versions.site')
      .execute();
    const counted = await this.db
      .selectFrom('version_flows as vf')
      .innerJoin(latest, (j) =>
        j.onRef('latest.site', '=', 'vf.site').onRef('latest.version', '=', 'vf.version'),
      )
      .innerJoin('flow_status as fs', (j) =>
        j
          .onRef('fs.site', '=', 'vf.site')
          .onRef('fs.flow_id', '=', 'vf.flow_id')
          .onRef('fs.form', '=', 'vf.form'),
      )
      .select([
        'vf.site',
        'fs.verdict',
        (e) => e.fn.countAll().as('n'),
        (e) => e.fn.min('fs.checked_at').as('oldest'),
        (e) => e.fn.max('fs.checked_at').as('newest'),
      ])
      .groupBy(['vf.site', 'fs.verdict'])
      .orderBy('vf.site')
      .orderBy('fs.verdict')
      .execute();
    const verdicts = new Map<string, Record<string, number>>();
    const times = new Map<string, { oldest: string; newest: string }>();
    for (const c of counted) {
      const counts = verdicts.get(c.site) ?? {};
      counts[c.verdict] = Number(c.n);
      verdicts.set(c.site, counts);
      const t = times.get(c.site);
      const oldest = String(c.oldest);
      const newest = String(c.newest);
      times.set(c.site, {
        oldest: t && t.oldest < oldest ? t.oldest : oldest,
        newest: t && t.newest > newest ? t.newest : newest,
      });
    }
    return rows.map((r) => {
      const counts = verdicts.get(r.site) ?? {};
      const checked = Object.values(counts).reduce((a, b) => a + b, 0);
      return {
        name: r.site,
        version: Number(r.version),
        flows: Number(r.flows),
        updatedAt: r.created_at,
        verdicts: counts,
        unchecked: Math.max(0, Number(r.flows) - checked),
        checkedAt: times.get(r.site) ?? null,
      };
    });
  }

  /**
   * Stores an inventory as the site's next version (the site is named inside the YAML). The same
   * text as the latest version makes no new version. Throws InputError for a bad inventory.
   */
  async putSite(yaml: string): Promise<{ site: string; version: number; flows: number; created: boolean }> {
    const parsed = parseSite(yaml, this.catalogs);
    const site = parsed.plan.site;
    for (let attempt = 0; ; attempt++) {
      const latest = await this.latestVersion(site);
      if (latest && latest.yaml === yaml)
        return { site, version: latest.version, flows: latest.flows, created: false };
      const version = (latest?.version ?? 0) + 1;
      try {
        await this.db.transaction().execute(async (tx) => {
          await tx
            .insertInto('site_versions')
            .values({
              site,
              version,
              yaml,
              plan: JSON.stringify(parsed.plan),
              flows: parsed.plan.flows.length,
              created_at: this.now(),
            })
            .execute();
          const flows = [...formsOf(parsed)].map(([flow_id, form]) => ({ site, version, flow_id, form }));
          for (let i = 0; i < flows.length; i += INSERT_ROWS)
            await tx
              .insertInto('version_flows')
              .values(flows.slice(i, i + INSERT_ROWS))
              .execute();
          await this.event(
            tx,
            site,
            'site-version',
            site,
            `${site}: version ${version} stored (${howMany(parsed.plan.flows.length, 'flow')})`,
            {
              version,
            },
          );
        });
        return { site, version, flows: parsed.plan.flows.length, created: true };
      } catch (err) {
        // Another process stored the same version number first: take the next one.
        if (attempt < 3 && /unique|duplicate|constraint/i.test((err as Error).message)) continue;
        throw err;
      }
    }
  }

  /** The newest version's row, without its stored plan (derived again from the YAML when needed). */
  async latestVersion(site: string) {
    return this.db
      .selectFrom('site_versions')
      .select(['version', 'yaml', 'flows', 'created_at'])
      .where('site', '=', site)
      .orderBy('version', 'desc')
      .limit(1)
      .executeTakeFirst();
  }

  /**
   * What the agent plan reply depends on, read from the store on every call: the number of the
   * site's newest version, how many change requests the site has and how many of them are closed
   * (versions and change requests are only ever added, and a closed request is never reopened, so
   * both counts only grow). One statement.
   */
  private async planStamp(
    site: string,
  ): Promise<{ version: number | undefined; changeRequests: number; closed: number }> {
    const build = () =>
      this.db.selectNoFrom((eb) => [
        eb
          .selectFrom('site_versions')
          .select((e) => e.fn.max('version').as('v'))
          .where('site', '=', site)
          .as('version'),
        eb
          .selectFrom('change_requests')
          .select((e) => e.fn.countAll().as('n'))
          .where('site', '=', site)
          .as('crs'),
        eb
          .selectFrom('change_requests')
          .select((e) => e.fn.count('closed_at').as('n'))
          .where('site', '=', site)
          .as('closed'),
      ]);
    const row = (await this.prepared(this.db, 'planStamp', build, [site, site, site])).rows[0];
    const v = row?.version;
    return {
      version: v === null || v === undefined ? undefined : Number(v),
      changeRequests: Number(row?.crs ?? 0),
      closed: Number(row?.closed ?? 0),
    };
  }

  /**
   * GET /api/agent/plan's reply as JSON text: `{agent, site, host, version, yaml, flowIds,
   * removals}` for the site's latest version. The part after `agent` is kept per (site, version,
   * change-request count, closed count, host), all read from the store on every call: a stored
   * version never changes and a change request changes only once, when closed, so a new one or a
   * closing is seen at once and several serve processes on one database cannot serve a stale plan.
   */
  async agentPlanJson(agent: AgentRow): Promise<string> {
    const stamp = await this.planStamp(agent.site);
    const n = stamp.version;
    if (n === undefined)
      throw new ApiError(404, 'ENOSITE', `no version latest of site ${JSON.stringify(agent.site)}`);
    const key = `${agent.site}\u0000${n}\u0000${stamp.changeRequests}\u0000${stamp.closed}\u0000${agent.host}`;
    let rest = this.planReplies.get(key);
    if (rest === undefined) {
      const v = await this.version(agent.site, n);
      rest = JSON.stringify({
        site: agent.site,
        host: agent.host,
        version: v.version,
        yaml: v.yaml,
        flowIds: v.parsed.plan.flows.filter((f) => f.from.host === agent.host).map((f) => f.id),
        removals: await this.removalChecks(agent.site, agent.host, v.parsed),
      }).slice(1);
      if (this.planReplies.size >= 1024) this.planReplies.clear();
      this.planReplies.set(key, rest);
    }
    return `{"agent":${JSON.stringify(agent.id)},${rest}`;
  }

  /**
   * The flows from `host` that removal rows of the site's open change requests name and the latest
   * version (`latest`) no longer has in that form, grouped by the version that still has them, with its YAML:
   * the agent checks them with that version's inventory, and a flow found blocked proves its
   * removal (see updateRemovalRows). `[]` when there are none.
   */
  private async removalChecks(
    site: string,
    host: string,
    latest: ParsedSite,
  ): Promise<{ version: number; yaml: string; flowIds: string[] }[]> {
    const rows = await this.db
      .selectFrom('change_rows')
      .innerJoin('change_requests', 'change_requests.id', 'change_rows.cr_id')
      .select(['change_rows.flow_ids', 'change_requests.from_version'])
      .where('change_rows.site', '=', site)
      .where('change_rows.action', '=', 'remove')
      .where('change_requests.closed_at', 'is', null)
      .execute();
    if (!rows.length) return [];
    // A changed flow keeps its id with new endpoints: its old form is checked. A flow the latest
    // version has again exactly as before is wanted again: no longer checked as a removal.
    const current = formsOf(latest);
    // A flow on several removal rows is checked once, with the newest version that has it.
    const byFlow = new Map<string, number>();
    for (const r of rows)
      for (const id of JSON.parse(r.flow_ids) as string[])
        byFlow.set(id, Math.max(byFlow.get(id) ?? 0, r.from_version));
    const out: { version: number; yaml: string; flowIds: string[] }[] = [];
    for (const version of [...new Set(byFlow.values())].sort((a, b) => a - b)) {
      const v = await this.version(site, version);
      const forms = formsOf(v.parsed);
      const fromHost = new Map(
        v.parsed.plan.flows.filter((f) => f.from.host === host).map((f) => [f.id, forms.get(f.id)]),
      );
      const flowIds = [...byFlow]
        .filter(([id, ver]) => ver === version && fromHost.has(id) && fromHost.get(id) !== current.get(id))
        .map(([id]) => id)
        .sort();
      if (flowIds.length) out.push({ version, yaml: v.yaml, flowIds });
    }
    return out;
  }

  async versions(site: string) {
    const rows = await this.db
      .selectFrom('site_versions')
      .select(['version', 'flows', 'created_at'])
      .where('site', '=', site)
      .orderBy('version')
      .execute();
    if (!rows.length) throw new ApiError(404, 'ENOSITE', `no site ${JSON.stringify(site)}`);
    return rows.map((r) => ({ version: r.version, flows: r.flows, createdAt: r.created_at }));
  }

  /**
   * A stored version (`latest` or a number), parsed. A numbered version never changes once stored,
   * so it is kept here after the first read (bounded; derived from the database, never ahead of it):
   * an agent's result post costs no query for it.
   */
  async version(
    site: string,
    version: number | 'latest',
  ): Promise<{ version: number; yaml: string; createdAt: string; parsed: ParsedSite }> {
    const known = version === 'latest' ? undefined : this.versionCache.get(`${version}\u0000${site}`);
    if (known) return known;
    const row =
      version === 'latest'
        ? await this.latestVersion(site)
        : await this.db
            .selectFrom('site_versions')
            .select(['version', 'yaml', 'created_at'])
            .where('site', '=', site)
            .where('version', '=', version)
            .executeTakeFirst();
    if (!row) {
      const latest = version === 'latest' ? undefined : (await this.latestVersion(site))?.version;
      throw new ApiError(
        404,
        'ENOSITE',
        latest === undefined
          ? `no site ${JSON.stringify(site)} (expected one uploaded first: POST /api/sites, or the console's upload box)`
          : `no version ${version} of site ${JSON.stringify(site)} (expected ${latest === 1 ? '1' : `1 to ${latest}`} or latest)`,
      );
    }
    let parsed: ParsedSite;
    try {
      parsed = parseSite(row.yaml, this.catalogs);
    } catch (err) {
      // A stored version that no longer loads is the server's catalogs having changed since, not
      // a bad request: say which version and what to do.
      if (!(err instanceof InputError)) throw err;
      throw new ApiError(
        409,
        'ESTORED',
        `version ${row.version} of site ${JSON.stringify(site)} no longer loads with this server's catalogs: ${err.message} (expected the catalogs it was stored with: serve --catalog PATH; or upload a version that loads)`,
      );
    }
    const v = { version: row.version, yaml: row.yaml, createdAt: row.created_at, parsed };
    if (this.versionCache.size >= 256) this.versionCache.clear();
    this.versionCache.set(`${v.version}\u0000${site}`, v);
    return v;
  }

  // --- status and history ---

  /**
   * The latest verdict of each flow of version `version` (the latest when left out) of `site` that has one measured on the
   * flow's form in that version (flowForm): rows `{site, flow_id, form, verdict, failed,
   * checked_at}`. A flow whose addresses, protocol, ports or service changed has none until it is
   * checked again; its earlier verdicts stay in the history.
   */
  async status(site: string, version?: number) {
    const n = version ?? (await this.latestVersion(site))?.version ?? 0;
    return this.db
      .selectFrom('flow_status as fs')
      .innerJoin('version_flows as vf', (j) =>
        j
          .onRef('vf.site', '=', 'fs.site')
          .onRef('vf.flow_id', '=', 'fs.flow_id')
          .onRef('vf.form', '=', 'fs.form'),
      )
      .selectAll('fs')
      .where('vf.site', '=', site)
      .where('vf.version', '=', n)
      .execute();
  }

  /**
   * The stored result behind each flow's status in version `version` of `site` (the check whose
   * verdict and time flow_status holds), by flow id, in the shape of history(): the evidence shown
   * with a verdict, for every flow however many results the site has.
   */
  async statusResults(site: string, version: number) {
    const rows = await this.db
      .selectFrom('flow_status as fs')
      .innerJoin('version_flows as vf', (j) =>
        j
          .onRef('vf.site', '=', 'fs.site')
          .onRef('vf.flow_id', '=', 'fs.flow_id')
          .onRef('vf.form', '=', 'fs.form'),
      )
      .innerJoin('results as r', (j) =>
        j
          .onRef('r.site', '=', 'fs.site')
          .onRef('r.flow_id', '=', 'fs.flow_id')
          .onRef('r.checked_at', '=', 'fs.checked_at')
          .onRef('r.form', '=', 'fs.form')
          .onRef('r.verdict', '=', 'fs.verdict'),
      )
      .innerJoin('runs', 'runs.key', 'r.run_key')
      .select([
        'r.flow_id',
        'r.verdict',
        'r.failed',
        'r.detail',
        'r.checked_at',
        'r.form',
        'runs.agent_id',
        'runs.version',
      ])
      .where('vf.site', '=', site)
      .where('vf.version', '=', version)
      .where('runs.isolated', '=', 0)
      .execute();
    const out = new Map<string, Awaited<ReturnType<Store['history']>>[number]>();
    for (const r of rows)
      if (!out.has(r.flow_id))
        out.set(r.flow_id, {
          flowId: r.flow_id,
          verdict: r.verdict,
          failed: !!r.failed,
          detail: JSON.parse(r.detail) as unknown,
          checkedAt: r.checked_at,
          agent: r.agent_id,
          version: r.version,
          isolated: false,
          form: r.form,
        });
    return out;
  }

  /**
   * Each enrolled agent's latest verdict on each flow of version `version` of `site`, measured on
   * the flow's form in that version: rows `{flow_id, agent_id, name, verdict, failed, checked_at}`,
   * by flow and agent name. A flow's status is their roll-up (updateStatus).
   */
  async agentVerdicts(site: string, version: number) {
    return this.db
      .selectFrom('agent_status as s')
      .innerJoin('version_flows as vf', (j) =>
        j
          .onRef('vf.site', '=', 's.site')
          .onRef('vf.flow_id', '=', 's.flow_id')
          .onRef('vf.form', '=', 's.form'),
      )
      .innerJoin('agents', 'agents.id', 's.agent_id')
      .select(['s.flow_id', 's.agent_id', 'agents.name', 's.verdict', 's.failed', 's.checked_at'])
      .where('vf.site', '=', site)
      .where('vf.version', '=', version)
      .orderBy('s.flow_id')
      .orderBy('agents.name')
      .execute();
  }

  /**
   * The latest results of a site's flows, newest first, at most `limit` per flow, each with the
   * `form` its flow had in the run's version (flowForm; UNKNOWN_FORM when none).
   */
  async history(site: string, flowId: string | undefined, limit: number) {
    let q = this.db
      .selectFrom('results')
      .innerJoin('runs', 'runs.key', 'results.run_key')
      .select([
        'results.flow_id',
        'results.verdict',
        'results.failed',
        'results.detail',
        'results.checked_at',
        'results.form',
        'runs.agent_id',
        'runs.version',
        'runs.isolated',
      ])
      .where('results.site', '=', site);
    if (flowId !== undefined) q = q.where('results.flow_id', '=', flowId);
    const rows = await q
      .orderBy('results.checked_at', 'desc')
      .limit(flowId !== undefined ? limit : limit * 500)
      .execute();
    const per = new Map<string, number>();
    return rows
      .filter((r) => {
        const n = (per.get(r.flow_id) ?? 0) + 1;
        per.set(r.flow_id, n);
        return n <= limit;
      })
      .map((r) => ({
        flowId: r.flow_id,
        verdict: r.verdict,
        failed: !!r.failed,
        detail: JSON.parse(r.detail) as unknown,
        checkedAt: r.checked_at,
        agent: r.agent_id,
        version: r.version,
        isolated: !!r.isolated,
        form: r.form,
      }));
  }

  // --- agents ---

  /** Enrolment: an agent for one inventory host of a site, with its own token (shown once). */
  async enrol(site: string, host: string, name: string | undefined) {
    const v = await this.version(site, 'latest');
    if (!v.parsed.inventory.hosts.some((h) => h.name === host))
      throw new ApiError(
        400,
        'ENOHOST',
        `host ${JSON.stringify(host)} is not in site ${site} (expected one of: ${v.parsed.inventory.hosts.map((h) => h.name).join(', ')})`,
      );
    const id = randomUUID();
    const at = this.now();
    await this.db
      .insertInto('agents')
      .values({
        id,
        site,
        host,
        name: name ?? host,
        created_at: at,
        last_seen: null,
        stale: 0,
        isolated_at: null,
        last_run_at: null,
        refused_at: null,
        refused: null,
      })
      .execute();
    const token = await this.createToken('agent', id);
    await this.event(
      this.db,
      site,
      'agent-enrolled',
      name ?? host,
      `agent ${name ?? host} enrolled for ${host}`,
      { id },
    );
    return { id, site, host, name: name ?? host, token };
  }

  /** An enrolled agent by id (or the row already read with its token). */
  async agent(id: string | AgentRow): Promise<AgentRow> {
    if (typeof id !== 'string') return id;
    const a = await this.db.selectFrom('agents').selectAll().where('id', '=', id).executeTakeFirst();
    if (!a) throw new ApiError(403, 'EAGENT', 'this agent token names no enrolled agent');
    return a;
  }

  /**
   * Removes an enrolled agent and its token (which stops working at once); its runs and results
   * stay as history, and the flows its verdicts counted in are rolled up again over the agents that
   * remain (a flow failing by its verdict alone turns at once, with its event). An `agent-removed`
   * event is written. Throws ApiError 404 for no such agent.
   */
  async removeAgent(id: string): Promise<EventRow[]> {
    return this.db.transaction().execute(async (tx) => {
      const a = await tx.selectFrom('agents').selectAll().where('id', '=', id).executeTakeFirst();
      if (!a)
        throw new ApiError(
          404,
          'ENOAGENT',
          `no agent ${JSON.stringify(id)} (expected an id that GET /api/agents lists)`,
        );
      await tx.deleteFrom('tokens').where('agent_id', '=', id).execute();
      await tx.deleteFrom('agents').where('id', '=', id).execute();
      // Its results stay as history; its verdicts no longer count in a flow's roll-up (updateStatus),
      // from now on: the flows they counted in are rolled up again over the agents that remain.
      const counted = await tx
        .selectFrom('agent_status')
        .select(['flow_id', 'form'])
        .where('agent_id', '=', id)
        .execute();
      await tx.deleteFrom('agent_status').where('agent_id', '=', id).execute();
      const turned = await this.rollUpAgain(tx, a.site, counted, `agent ${a.name} removed`);
      return [
        ...turned,
        await this.event(
          tx,
          a.site,
          'agent-removed',
          a.name,
          `agent ${a.name} (${a.host}) removed; its token no longer works`,
          {
            id,
          },
        ),
      ];
    });
  }

  /**
   * Every enrolled agent: `{id, site, host, name, createdAt, lastSeen, lastRunAt, state, stale,
   * isolatedAt, refusedAt, refused}`. `state` is `never-reported` (no heartbeat or run yet),
   * `stale` (heartbeats stopped for serve --stale-after) or `reporting`; `stale` is true unless the
   * agent is reporting: an agent never heard from is not fresh. `lastRunAt` is when a run of it
   * was last stored (null: none yet); `refused` says why a run of it was last not stored for a
   * reason of the server's (a version that no longer loads: 409 ESTORED), at `refusedAt` (each
   * resend moves it): later than `lastRunAt`, the agent's results are not being stored.
   * `isolatedAt` is the start of its latest run when that run was isolated.
   */
  async listAgents() {
    const rows = await this.db.selectFrom('agents').selectAll().orderBy('site').orderBy('name').execute();
    return rows.map((a) => {
      const state = a.last_seen === null ? 'never-reported' : a.stale ? 'stale' : 'reporting';
      return {
        id: a.id,
        site: a.site,
        host: a.host,
        name: a.name,
        createdAt: a.created_at,
        lastSeen: a.last_seen,
        lastRunAt: a.last_run_at,
        state: state as 'never-reported' | 'stale' | 'reporting',
        stale: state !== 'reporting',
        isolatedAt: a.isolated_at,
        refusedAt: a.refused_at,
        refused: a.refused,
      };
    });
  }

  /**
   * Notes on the agent's row that the server could not store one of its runs for a reason of the
   * server's own (`code`, e.g. ESTORED: the run's version no longer loads with the server's
   * catalogs), so the agent list says so (`refused`, `refusedAt`). The agent keeps the run in its
   * spool and sends it again. One `run-not-stored` event when the reason differs from the last
   * one noted, not one per resend.
   */
  async runRefused(
    agent: AgentRow,
    run: { key: string; version: number },
    message: string,
  ): Promise<EventRow[]> {
    const at = this.now();
    const r = await this.db
      .updateTable('agents')
      .set({ refused_at: at, refused: message })
      .where('id', '=', agent.id)
      .where((eb) => eb.or([eb('refused', 'is', null), eb('refused', '<>', message)]))
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) !== 1) {
      await this.db.updateTable('agents').set({ refused_at: at }).where('id', '=', agent.id).execute();
      return [];
    }
    return [
      await this.event(
        this.db,
        agent.site,
        'run-not-stored',
        agent.name,
        `agent ${agent.name}: run ${run.key} (version ${run.version}) not stored: ${message}; the agent keeps it and sends it again`,
        { id: agent.id, run: run.key, version: run.version },
      ),
    ];
  }

  async heartbeat(who: string | AgentRow): Promise<EventRow[]> {
    const a = await this.agent(who);
    const agentId = a.id;
    const events: EventRow[] = [];
    if (!a.stale) {
      // The common case is one statement; a stale agent coming back also gets its event.
      const now = this.now();
      const build = () =>
        this.db.updateTable('agents').set({ last_seen: now, stale: 0 }).where('id', '=', agentId);
      await this.prepared(this.db, 'heartbeat', build, [now, 0, agentId]);
      return events;
    }
    await this.db.transaction().execute(async (tx) => {
      await tx
        .updateTable('agents')
        .set({ last_seen: this.now(), stale: 0 })
        .where('id', '=', agentId)
        .execute();
      if (a.stale)
        events.push(
          await this.event(
            tx,
            a.site,
            'agent-back',
            a.name,
            a.last_seen === null
              ? `agent ${a.name} reports for the first time`
              : `agent ${a.name} reports again`,
            { id: a.id },
          ),
        );
    });
    return events;
  }

  /**
   * Marks agents stale whose last heartbeat is older than `afterMs`, and those enrolled longer ago
   * than that that never reported; one event each, once.
   */
  async markStale(afterMs: number): Promise<EventRow[]> {
    const cutoff = new Date(this.clock() - afterMs).toISOString();
    const due = await this.db
      .selectFrom('agents')
      .selectAll()
      .where('stale', '=', 0)
      .where((eb) => eb(eb.fn.coalesce('last_seen', 'created_at'), '<', cutoff))
      .execute();
    const events: EventRow[] = [];
    for (const a of due) {
      await this.db.transaction().execute(async (tx) => {
        // Only the process whose update changed the row reports it.
        const r = await tx
          .updateTable('agents')
          .set({ stale: 1 })
          .where('id', '=', a.id)
          .where('stale', '=', 0)
          .where((eb) => eb(eb.fn.coalesce('last_seen', 'created_at'), '<', cutoff))
          .executeTakeFirst();
        if (Number(r.numUpdatedRows) === 1)
          events.push(
            await this.event(
              tx,
              a.site,
              'agent-stale',
              a.name,
              a.last_seen === null
                ? `agent ${a.name} was enrolled at ${a.created_at} and has never reported`
                : `agent ${a.name} has sent no heartbeat since ${a.last_seen}`,
              {
                id: a.id,
                lastSeen: a.last_seen,
              },
            ),
          );
      });
    }
    return events;
  }

  // --- results ---

  /**
   * Stores one check run exactly once, keyed by the agent's idempotency key: a repeated key is
   * acknowledged and changes nothing. In the same transaction: each flow's latest verdict, an
   * event when a flow turns failing or ok again, and change-request rows moving from requested
   * to working to broken. An isolated run is kept as history only.
   */
  async ingest(who: string | AgentRow, run: PostedRun): Promise<{ stored: boolean; events: EventRow[] }> {
    const agent = await this.agent(who);
    const v = await this.version(agent.site, run.version);
    const mine = new Set(v.parsed.plan.flows.filter((f) => f.from.host === agent.host).map((f) => f.id));
    for (const r of run.results)
      if (!mine.has(r.flowId))
        throw new ApiError(
          400,
          'EFLOW',
          `results[].flowId ${JSON.stringify(r.flowId)} is not a flow from ${agent.host} in version ${run.version} of ${agent.site}`,
        );
    // PostgreSQL runs each post's transaction on its own pooled connection, in parallel; SQLite has
    // one writer, so there the posts waiting meanwhile share the next commit.
    if (!this.groupCommit) return this.db.transaction().execute((tx) => this.storeRun(tx, agent, run));
    return new Promise((resolve, reject) => {
      this.pendingRuns.push({ agent, run, resolve, reject });
      if (!this.draining) {
        this.draining = true;
        setImmediate(() => void this.drainRuns());
      }
    });
  }

  /**
   * Group commit (SQLite): the runs posted while a transaction was open are stored together in the next one
   * (at most RUN_BATCH), so a burst of posts pays one commit per batch instead of one per run. A
   * batch that fails (a lost deadlock race with another process, say) is retried one run per
   * transaction, so one run's error reaches only its own request. The queue holds only requests
   * in flight: nothing another process needs to know.
   */
  private async drainRuns(): Promise<void> {
    while (this.pendingRuns.length) {
      const batch = this.pendingRuns.splice(0, RUN_BATCH);
      try {
        const out = await this.db.transaction().execute(async (tx) => {
          const done: { stored: boolean; events: EventRow[] }[] = [];
          for (const b of batch) done.push(await this.storeRun(tx, b.agent, b.run));
          return done;
        });
        for (const [i, b] of batch.entries()) b.resolve(out[i] as { stored: boolean; events: EventRow[] });
      } catch (err) {
        if (batch.length === 1) batch[0]?.reject(err);
        else
          for (const b of batch)
            try {
              b.resolve(await this.db.transaction().execute((tx) => this.storeRun(tx, b.agent, b.run)));
            } catch (e) {
              b.reject(e);
            }
      }
    }
    this.draining = false;
  }

  /** One run inside a transaction: see ingest. */
  private async storeRun(
    tx: Transaction<Tables>,
    agent: AgentRow,
    run: PostedRun,
  ): Promise<{ stored: boolean; events: EventRow[] }> {
    const agentId = agent.id;
    const events: EventRow[] = [];
    const at = this.now();
    const stored = await (async () => {
      const values = {
        key: run.key,
        agent_id: agentId,
        site: agent.site,
        version: run.version,
        started_at: run.startedAt,
        received_at: at,
        isolated: run.isolated ? 1 : 0,
        results: run.results.length,
      };
      const insertRun = () =>
        tx
          .insertInto('runs')
          .values(values)
          .onConflict((oc) => oc.column('key').doNothing());
      const ins = await this.prepared(tx, 'insertRun', insertRun, Object.values(values));
      if (Number(ins.numAffectedRows ?? 0n) !== 1) return false;
      const runForms = formsOf((await this.version(agent.site, run.version)).parsed);
      if (run.results.length)
        await tx
          .insertInto('results')
          .values(
            run.results.map((r) => ({
              run_key: run.key,
              site: agent.site,
              flow_id: r.flowId,
              verdict: r.verdict,
              failed: isFailure(r.verdict) ? 1 : 0,
              detail: JSON.stringify(r.detail),
              checked_at: run.startedAt,
              form: runForms.get(r.flowId) ?? UNKNOWN_FORM,
            })),
          )
          .execute();
      // The latest run's isolation, not the first one's: an agent whose network came back is not isolated.
      const isolatedAt = run.isolated ? run.startedAt : null;
      const seen = () =>
        tx
          .updateTable('agents')
          .set({ last_seen: at, stale: 0, isolated_at: isolatedAt, last_run_at: at })
          .where('id', '=', agentId);
      await this.prepared(tx, 'agentSeen', seen, [at, 0, isolatedAt, at, agentId]);
      if (run.isolated) {
        events.push(
          await this.event(
            tx,
            agent.site,
            'agent-isolated',
            agent.name,
            `agent ${agent.name} could reach neither the server nor any target at ${run.startedAt}; its results are kept as history only`,
            {
              id: agentId,
              run: run.key,
            },
          ),
        );
        return true;
      }
      const changeRows = await this.changeRowsOf(tx, agent.site);
      // A result for a flow that a removal row names, from a version before the removal, checks
      // the removal: it moves that row and leaves the flow's status (a flow the plan dropped) alone.
      const removing = new Set(
        changeRows
          .filter((r) => r.action === 'remove' && run.version < r.cr_to)
          .flatMap((r) => JSON.parse(r.flow_ids) as string[]),
      );
      const checked = run.results.filter((r) => !removing.has(r.flowId));
      pushAll(events, await this.updateStatus(tx, agent.site, agentId, runForms, checked, run.startedAt));
      pushAll(
        events,
        await this.updateChangeRows(
          tx,
          agent.site,
          changeRows.filter((r) => r.action === 'allow'),
          new Set(checked.map((r) => r.flowId)),
        ),
      );
      if (checked.length < run.results.length)
        pushAll(
          events,
          await this.updateRemovalRows(
            tx,
            agent.site,
            changeRows.filter((r) => r.action === 'remove' && run.version < r.cr_to),
            new Set(run.results.filter((r) => removing.has(r.flowId)).map((r) => r.flowId)),
          ),
        );
      return true;
    })();
    return { stored, events };
  }

  /**
   * Each flow's latest verdict for the form it has in the run's version (`forms`, by flow id): the
   * posting agent's own latest verdict per flow (agent_status; a spooled result older than the one
   * it has does not replace it), then the flow's roll-up over every enrolled agent that checked
   * that form: the most recent failing verdict when any agent's latest fails (two agents on one
   * host that disagree show the failing one, not whichever posted last), else the most recent
   * verdict. A few queries whatever the run's size; an event per flow whose roll-up turned. A
   * verdict of another form of the flow (its earlier or later addresses or ports) is left as it is.
   */
  private async updateStatus(
    tx: Transaction<Tables>,
    site: string,
    agentId: string,
    forms: ReadonlyMap<string, string>,
    results: readonly PostedResult[],
    at: string,
  ): Promise<EventRow[]> {
    if (!results.length) return [];
    const formOf = (id: string) => forms.get(id) ?? UNKNOWN_FORM;
    const ids = results.map((r) => r.flowId);
    const mine = new Map(
      (
        await tx
          .selectFrom('agent_status')
          .selectAll()
          .where('site', '=', site)
          .where('agent_id', '=', agentId)
          .where('flow_id', 'in', ids)
          .execute()
      )
        .filter((p) => p.form === formOf(p.flow_id))
        .map((p) => [p.flow_id, p]),
    );
    // In flow order: two transactions updating the same flows lock them in the same order (no deadlock).
    const newer = results
      .filter((r) => {
        const p = mine.get(r.flowId);
        return !p || p.checked_at <= at;
      })
      .sort((x, y) => (x.flowId < y.flowId ? -1 : x.flowId > y.flowId ? 1 : 0));
    if (!newer.length) return [];
    await tx
      .insertInto('agent_status')
      .values(
        newer.map((r) => ({
          site,
          flow_id: r.flowId,
          form: formOf(r.flowId),
          agent_id: agentId,
          verdict: r.verdict,
          failed: isFailure(r.verdict) ? 1 : 0,
          checked_at: at,
        })),
      )
      .onConflict((oc) =>
        oc.columns(['site', 'flow_id', 'form', 'agent_id']).doUpdateSet((eb) => ({
          verdict: eb.ref('excluded.verdict'),
          failed: eb.ref('excluded.failed'),
          checked_at: eb.ref('excluded.checked_at'),
        })),
      )
      .execute();
    const touched = newer.map((r) => r.flowId);
    // Every enrolled agent's latest verdict on these flows: a removed agent's results are history.
    const all = (
      await tx
        .selectFrom('agent_status as s')
        .innerJoin('agents', 'agents.id', 's.agent_id')
        .select(['s.flow_id', 's.form', 's.agent_id', 's.verdict', 's.failed', 's.checked_at'])
        .where('s.site', '=', site)
        .where('s.flow_id', 'in', touched)
        .execute()
    ).filter((p) => p.form === formOf(p.flow_id));
    const rolled = new Map<
      string,
      { verdict: string; failed: number; checked_at: string; agent_id: string }
    >();
    for (const row of all) {
      const best = rolled.get(row.flow_id);
      if (
        !best ||
        row.failed > best.failed ||
        (row.failed === best.failed && row.checked_at > best.checked_at)
      )
        rolled.set(row.flow_id, row);
    }
    const prev = new Map(
      (
        await tx
          .selectFrom('flow_status')
          .selectAll()
          .where('site', '=', site)
          .where('flow_id', 'in', touched)
          .execute()
      )
        .filter((p) => p.form === formOf(p.flow_id))
        .map((p) => [p.flow_id, p]),
    );
    const rows = touched.flatMap((id) => {
      const r = rolled.get(id);
      return r
        ? [
            {
              site,
              flow_id: id,
              form: formOf(id),
              verdict: r.verdict,
              failed: r.failed,
              checked_at: r.checked_at,
            },
          ]
        : [];
    });
    if (rows.length)
      await tx
        .insertInto('flow_status')
        .values(rows)
        .onConflict((oc) =>
          oc.columns(['site', 'flow_id', 'form']).doUpdateSet((eb) => ({
            verdict: eb.ref('excluded.verdict'),
            failed: eb.ref('excluded.failed'),
            checked_at: eb.ref('excluded.checked_at'),
          })),
        )
        .execute();
    const events: EventRow[] = [];
    for (const r of newer) {
      const p = prev.get(r.flowId);
      const now = rolled.get(r.flowId);
      if (!p || !now || p.failed === now.failed) continue;
      const kind = now.failed ? 'flow-failing' : 'flow-ok';
      // The reason is this run's when the roll-up is this agent's verdict.
      const detail =
        now.agent_id === agentId && typeof r.detail.reason === 'string' ? `: ${r.detail.reason}` : '';
      events.push(
        await this.event(tx, site, kind, r.flowId, `${r.flowId}: ${p.verdict} -> ${now.verdict}${detail}`, {
          from: p.verdict,
          to: now.verdict,
        }),
      );
    }
    return events;
  }

  /**
   * The roll-up of `flows` (flow id and form) over the latest verdicts of the agents enrolled now
   * (as updateStatus makes it: the most recent failing verdict when any fails, else the most recent),
   * written where it differs from the flow's status; a flow no enrolled agent checked keeps its status
   * as history. Returns a flow-failing or flow-ok event per flow whose roll-up turned, saying `why`.
   */
  private async rollUpAgain(
    tx: Transaction<Tables>,
    site: string,
    flows: readonly { flow_id: string; form: string }[],
    why: string,
  ): Promise<EventRow[]> {
    if (!flows.length) return [];
    const wanted = new Set(flows.map((f) => `${f.flow_id}\0${f.form}`));
    const ids = [...new Set(flows.map((f) => f.flow_id))].sort();
    const rolled = new Map<
      string,
      { flow_id: string; form: string; verdict: string; failed: number; checked_at: string }
    >();
    for (const row of await tx
      .selectFrom('agent_status as s')
      .innerJoin('agents', 'agents.id', 's.agent_id')
      .select(['s.flow_id', 's.form', 's.verdict', 's.failed', 's.checked_at'])
      .where('s.site', '=', site)
      .where('s.flow_id', 'in', ids)
      .execute()) {
      const key = `${row.flow_id}\0${row.form}`;
      if (!wanted.has(key)) continue;
      const best = rolled.get(key);
      if (
        !best ||
        row.failed > best.failed ||
        (row.failed === best.failed && row.checked_at > best.checked_at)
      )
        rolled.set(key, row);
    }
    const events: EventRow[] = [];
    for (const prev of await tx
      .selectFrom('flow_status')
      .selectAll()
      .where('site', '=', site)
      .where('flow_id', 'in', ids)
      .orderBy('flow_id')
      .execute()) {
      const now = rolled.get(`${prev.flow_id}\0${prev.form}`);
      if (!now || (now.verdict === prev.verdict && now.checked_at === prev.checked_at)) continue;
      await tx
        .updateTable('flow_status')
        .set({ verdict: now.verdict, failed: now.failed, checked_at: now.checked_at })
        .where('site', '=', site)
        .where('flow_id', '=', prev.flow_id)
        .where('form', '=', prev.form)
        .execute();
      if (prev.failed === now.failed) continue;
      events.push(
        await this.event(
          tx,
          site,
          now.failed ? 'flow-failing' : 'flow-ok',
          prev.flow_id,
          `${prev.flow_id}: ${prev.verdict} -> ${now.verdict} (${why})`,
          { from: prev.verdict, to: now.verdict },
        ),
      );
    }
    return events;
  }

  /**
   * Every change row of the site's open change requests with its change request's creation time
   * and target version: a closed request's rows keep the state and evidence they had.
   */
  private async changeRowsOf(tx: Transaction<Tables>, site: string) {
    const build = () =>
      tx
        .selectFrom('change_rows')
        .innerJoin('change_requests', 'change_requests.id', 'change_rows.cr_id')
        .selectAll('change_rows')
        .select(['change_requests.created_at as cr_created', 'change_requests.to_version as cr_to'])
        .where('change_rows.site', '=', site)
        .where('change_requests.closed_at', 'is', null);
    return (await this.prepared(tx, 'changeRows', build, [site])).rows;
  }

  /**
   * Rows to allow: requested -> working (every flow seen passing since the request, none of them
   * only UNPROVEN) -> broken (one failing). A flow counts by its verdict on the form it has in the request's target version: a
   * check of its older or newer addresses or ports proves nothing about the requested rule.
   */
  private async updateChangeRows(
    tx: Transaction<Tables>,
    site: string,
    rows: Awaited<ReturnType<Store['changeRowsOf']>>,
    touched: Set<string>,
  ): Promise<EventRow[]> {
    if (!rows.length) return [];
    const relevant = rows.filter((r) => (JSON.parse(r.flow_ids) as string[]).some((id) => touched.has(id)));
    if (!relevant.length) return [];
    const status = new Map(
      (
        await tx
          .selectFrom('flow_status as fs')
          .innerJoin('version_flows as vf', (j) =>
            j
              .onRef('vf.site', '=', 'fs.site')
              .onRef('vf.flow_id', '=', 'fs.flow_id')
              .onRef('vf.form', '=', 'fs.form'),
          )
          .selectAll('fs')
          .select('vf.version')
          .where('vf.site', '=', site)
          .where('vf.version', 'in', [...new Set(relevant.map((r) => r.cr_to))])
          .execute()
      ).map((s) => [`${s.version}\u0000${s.flow_id}`, s]),
    );
    const events: EventRow[] = [];
    for (const row of relevant) {
      const ids = JSON.parse(row.flow_ids) as string[];
      const seen = ids
        .map((id) => status.get(`${row.cr_to}\u0000${id}`))
        .filter((s) => s !== undefined && s.checked_at >= row.cr_created);
      const failing = seen.filter((s) => s?.failed);
      // Not failing is not working: a flow skipped, or UDP silence, proves no path (verdict.ts).
      const unproven = seen.filter((s) => s && UNPROVEN.has(s.verdict));
      let state = row.state;
      if (failing.length) state = row.state === 'requested' ? 'requested' : 'broken';
      else if (seen.length === ids.length && !unproven.length) state = 'working';
      const evidence = seen
        .map(
          (s) =>
            `${s?.flow_id}: ${s?.verdict} at ${s?.checked_at}${s && UNPROVEN.has(s.verdict) ? ' (proves no path yet)' : ''}`,
        )
        .join('\n');
      await this.setRowState(tx, site, row, state, evidence, events);
    }
    return events;
  }

  /**
   * Writes a change row's state and evidence; a state that changed is also a `change-STATE` event
   * (`from`, `to`), appended to `events`.
   */
  private async setRowState(
    tx: Transaction<Tables>,
    site: string,
    row: { cr_id: string; rule: string; state: Tables['change_rows']['state'] },
    state: Tables['change_rows']['state'],
    evidence: string,
    events: EventRow[],
  ): Promise<void> {
    await tx
      .updateTable('change_rows')
      .set({ state, evidence, updated_at: this.now() })
      .where('cr_id', '=', row.cr_id)
      .where('rule', '=', row.rule)
      .execute();
    if (state !== row.state)
      events.push(
        await this.event(
          tx,
          site,
          `change-${state}`,
          `${row.cr_id}/${row.rule}`,
          `change request ${row.cr_id.slice(0, 8)} row ${row.rule}: ${row.state} -> ${state}`,
          { changeRequest: row.cr_id, rule: row.rule, from: row.state, to: state },
        ),
      );
  }
  /**
   * Removal rows: `requested` -> `implemented` once every flow of the row, checked since the
   * request, was found blocked (verdict blocked, filtered or closed); -> `broken` when a later check
   * reaches one of them again (the removed rule, or another, lets it through); back to
   * `implemented` when all are blocked again. A check that reaches a flow before the removal was
   * ever seen leaves the row `requested`, with the evidence saying it is still open. Verdicts that
   * prove neither (removalEvidence) are passed over. One query per row touched.
   */
  private async updateRemovalRows(
    tx: Transaction<Tables>,
    site: string,
    rows: Awaited<ReturnType<Store['changeRowsOf']>>,
    touched: Set<string>,
  ): Promise<EventRow[]> {
    const events: EventRow[] = [];
    for (const row of rows) {
      const ids = JSON.parse(row.flow_ids) as string[];
      if (!ids.some((id) => touched.has(id))) continue;
      const seen = await tx
        .selectFrom('results')
        .innerJoin('runs', 'runs.key', 'results.run_key')
        .select(['results.flow_id', 'results.verdict', 'results.checked_at'])
        .where('results.site', '=', site)
        .where('results.flow_id', 'in', ids)
        .where('results.checked_at', '>=', row.cr_created)
        .where('runs.version', '<', row.cr_to)
        .where('runs.isolated', '=', 0)
        .orderBy('results.checked_at', 'desc')
        .execute();
      const latest = new Map<string, { verdict: string; at: string; evidence: RemovalEvidence }>();
      for (const r of seen) {
        const evidence = removalEvidence(r.verdict);
        if (evidence !== 'inconclusive' && !latest.has(r.flow_id))
          latest.set(r.flow_id, { verdict: r.verdict, at: r.checked_at, evidence });
      }
      const open = [...latest.values()].some((l) => l.evidence === 'open');
      let state = row.state;
      if (open) state = row.state === 'requested' ? 'requested' : 'broken';
      else if (latest.size === ids.length) state = 'implemented';
      const evidence = ids
        .map((id) => {
          const l = latest.get(id);
          return l
            ? `${id}: ${l.verdict} at ${l.at} (${l.evidence === 'open' ? 'still open' : 'blocked'})`
            : `${id}: not checked since the request`;
        })
        .join('\n');
      await this.setRowState(tx, site, row, state, evidence, events);
    }
    return events;
  }

  // --- change requests ---

  async createChangeRequest(
    site: string,
    from: number,
    to: number,
    rows: { rule: string; summary: string; flowIds: string[]; action?: 'allow' | 'remove' }[],
  ) {
    const id = randomUUID();
    const at = this.now();
    await this.db.transaction().execute(async (tx) => {
      await tx
        .insertInto('change_requests')
        .values({ id, site, from_version: from, to_version: to, created_at: at })
        .execute();
      if (rows.length)
        await tx
          .insertInto('change_rows')
          .values(
            rows.map((r) => ({
              cr_id: id,
              // A removal keeps the old rule's id, which the new version may use for a rule too.
              rule: r.action === 'remove' ? `${REMOVE_PREFIX}${r.rule}` : r.rule,
              action: r.action ?? ('allow' as const),
              site,
              summary: r.summary,
              flow_ids: JSON.stringify(r.flowIds),
              state: 'requested' as const,
              evidence: '',
              updated_at: at,
            })),
          )
          .execute();
      await this.event(
        tx,
        site,
        'change-requested',
        id,
        `change request ${id.slice(0, 8)}: ${howMany(rows.length, 'row')} for ${site} v${from} -> v${to}`,
        {
          from,
          to,
        },
      );
    });
    return this.changeRequest(site, id);
  }

  async changeRequests(site: string) {
    const crs = await this.db
      .selectFrom('change_requests')
      .selectAll()
      .where('site', '=', site)
      .orderBy('created_at', 'desc')
      .execute();
    return Promise.all(crs.map((c) => this.changeRequest(site, c.id)));
  }

  async changeRequest(site: string, id: string) {
    const cr = await this.db
      .selectFrom('change_requests')
      .selectAll()
      .where('site', '=', site)
      .where('id', '=', id)
      .executeTakeFirst();
    if (!cr)
      throw new ApiError(
        404,
        'ENOCHANGE',
        `no change request ${JSON.stringify(id)} for site ${site} (expected an id that GET /api/sites/${encodeURIComponent(site)}/change-requests lists)`,
      );
    const rows = await this.db
      .selectFrom('change_rows')
      .selectAll()
      .where('cr_id', '=', id)
      .orderBy('rule')
      .execute();
    return {
      id: cr.id,
      site: cr.site,
      from: cr.from_version,
      to: cr.to_version,
      createdAt: cr.created_at,
      closedAt: cr.closed_at ?? null,
      closedReason: cr.closed_reason ?? null,
      supersededBy: cr.superseded_by ?? null,
      rows: rows.map((r) => ({
        rule: r.action === 'remove' ? r.rule.slice(REMOVE_PREFIX.length) : r.rule,
        action: r.action,
        summary: r.summary,
        flowIds: JSON.parse(r.flow_ids) as string[],
        state: r.state,
        evidence: r.evidence,
        updatedAt: r.updated_at,
      })),
    };
  }

  /**
   * Closes an open change request of `site`: done with, abandoned, or superseded by the change
   * request `supersededBy` of the same site. Its rows keep their last state and evidence, agents
   * stop checking its removals, and later checks move none of its rows. A `change-closed` event is
   * written. Throws ApiError 404 (no such request), 409 ECLOSED (already closed) or 400
   * ESUPERSEDE (a `supersededBy` that is itself or not a change request of the site).
   */
  async closeChangeRequest(
    site: string,
    id: string,
    reason: string | undefined,
    supersededBy: string | undefined,
  ): Promise<{ cr: Awaited<ReturnType<Store['changeRequest']>>; events: EventRow[] }> {
    const events: EventRow[] = [];
    await this.db.transaction().execute(async (tx) => {
      const cr = await tx
        .selectFrom('change_requests')
        .selectAll()
        .where('site', '=', site)
        .where('id', '=', id)
        .executeTakeFirst();
      if (!cr)
        throw new ApiError(404, 'ENOCHANGE', `no change request ${JSON.stringify(id)} for site ${site}`);
      if (supersededBy !== undefined) {
        const other = await tx
          .selectFrom('change_requests')
          .select('id')
          .where('site', '=', site)
          .where('id', '=', supersededBy)
          .executeTakeFirst();
        if (!other || supersededBy === id)
          throw new ApiError(
            400,
            'ESUPERSEDE',
            `body/supersededBy: ${JSON.stringify(supersededBy)} is ${other ? 'the change request being closed' : `not a change request of site ${site}`} (expected the id of another change request of the site)`,
          );
      }
      const at = this.now();
      const r = await tx
        .updateTable('change_requests')
        .set({ closed_at: at, closed_reason: reason ?? null, superseded_by: supersededBy ?? null })
        .where('id', '=', id)
        .where('closed_at', 'is', null)
        .executeTakeFirst();
      if (Number(r.numUpdatedRows) !== 1)
        throw new ApiError(
          409,
          'ECLOSED',
          `change request ${JSON.stringify(id)} was closed at ${cr.closed_at ?? 'the same time by another request'} (expected an open one; a closed change request stays closed)`,
        );
      events.push(
        await this.event(
          tx,
          site,
          'change-closed',
          id,
          `change request ${id.slice(0, 8)} closed${supersededBy ? `, superseded by ${supersededBy.slice(0, 8)}` : ''}${reason ? `: ${reason}` : ''}`,
          { changeRequest: id, reason: reason ?? null, supersededBy: supersededBy ?? null },
        ),
      );
    });
    return { cr: await this.changeRequest(site, id), events };
  }

  // --- events and webhooks ---

  async event(
    db: Db | Transaction<Tables>,
    site: string | null,
    kind: string,
    subject: string,
    message: string,
    data: unknown,
  ): Promise<EventRow> {
    const e = { id: randomUUID(), at: this.now(), site, kind, subject, message, data };
    await db
      .insertInto('events')
      .values({ ...e, data: JSON.stringify(data) })
      .execute();
    return e;
  }

  async events(site: string | undefined, limit: number) {
    let q = this.db.selectFrom('events').selectAll();
    if (site !== undefined) q = q.where('site', '=', site);
    const rows = await q.orderBy('at', 'desc').limit(limit).execute();
    return rows.map((r) => ({ ...r, data: JSON.parse(r.data) as unknown }));
  }

  async addWebhook(url: string) {
    const row = { id: randomUUID(), url, created_at: this.now() };
    await this.db.insertInto('webhooks').values(row).execute();
    return { id: row.id, url, createdAt: row.created_at };
  }

  async webhooks() {
    return (await this.db.selectFrom('webhooks').selectAll().orderBy('created_at').execute()).map((w) => ({
      id: w.id,
      url: w.url,
      createdAt: w.created_at,
    }));
  }

  async deleteWebhook(id: string) {
    const r = await this.db.deleteFrom('webhooks').where('id', '=', id).executeTakeFirst();
    if (Number(r.numDeletedRows) !== 1)
      throw new ApiError(
        404,
        'ENOHOOK',
        `no webhook ${JSON.stringify(id)} (expected an id that GET /api/webhooks lists)`,
      );
  }

  /** Deletes results, runs and events older than `ms` (retention set by time). */
  async prune(ms: number): Promise<void> {
    const cutoff = new Date(this.clock() - ms).toISOString();
    await this.db.transaction().execute(async (tx) => {
      const old = tx.selectFrom('runs').select('key').where('received_at', '<', cutoff);
      await tx.deleteFrom('results').where('run_key', 'in', old).execute();
      await tx.deleteFrom('runs').where('received_at', '<', cutoff).execute();
      await tx.deleteFrom('events').where('at', '<', cutoff).execute();
    });
  }
}
