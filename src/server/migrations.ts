import { type Kysely, type Migration, type MigrationProvider, sql } from 'kysely';
import type { Flow } from '../model/flow.js';
import { flowForm } from './sites.js';

/** The tables migration 003 reads and writes, as they are at that migration. */
interface At003 {
  site_versions: { site: string; version: number; plan: string; created_at: string };
  version_flows: { site: string; version: number; flow_id: string; form: string };
  flow_status: { site: string; flow_id: string; verdict: string; failed: number; checked_at: string };
  flow_status_form: {
    site: string;
    flow_id: string;
    form: string;
    verdict: string;
    failed: number;
    checked_at: string;
  };
  results: { run_key: string; site: string; flow_id: string; checked_at: string };
  runs: { key: string; version: number; isolated: number };
}

/** Rows per INSERT: 1000 rows of up to 6 values stay under both SQLite's and PostgreSQL's parameter limits. */
export const INSERT_ROWS = 1000;

/** The form a status row gets when the flow it was measured on is not known: it matches no flow. */
export const UNKNOWN_FORM = '-';

/**
 * Numbered schema migrations, shared by SQLite and PostgreSQL: only column types both take
 * (text, integer, bigint) and no dialect-specific defaults. Times are ISO-8601 UTC text, booleans
 * 0/1 integers, ids random UUIDs. Append a new number; never edit a released one.
 */
const MIGRATIONS: Record<string, Migration> = {
  '001_initial': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('tokens')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull().unique())
        .addColumn('agent_id', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('site_versions')
        .addColumn('site', 'text', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('yaml', 'text', (c) => c.notNull())
        .addColumn('plan', 'text', (c) => c.notNull())
        .addColumn('flows', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('site_versions_pk', ['site', 'version'])
        .execute();
      await db.schema
        .createTable('agents')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('site', 'text', (c) => c.notNull())
        .addColumn('host', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('last_seen', 'text')
        .addColumn('stale', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('isolated_at', 'text')
        .execute();
      await db.schema
        .createTable('runs')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('agent_id', 'text', (c) => c.notNull())
        .addColumn('site', 'text', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('started_at', 'text', (c) => c.notNull())
        .addColumn('received_at', 'text', (c) => c.notNull())
        .addColumn('isolated', 'integer', (c) => c.notNull())
        .addColumn('results', 'integer', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('results')
        .addColumn('run_key', 'text', (c) => c.notNull())
        .addColumn('site', 'text', (c) => c.notNull())
        .addColumn('flow_id', 'text', (c) => c.notNull())
        .addColumn('verdict', 'text', (c) => c.notNull())
        .addColumn('failed', 'integer', (c) => c.notNull())
        .addColumn('detail', 'text', (c) => c.notNull())
        .addColumn('checked_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('results_pk', ['run_key', 'flow_id'])
        .execute();
      await db.schema
        .createIndex('results_flow')
        .on('results')
        .columns(['site', 'flow_id', 'checked_at'])
        .execute();
      await db.schema
        .createTable('flow_status')
        .addColumn('site', 'text', (c) => c.notNull())
        .addColumn('flow_id', 'text', (c) => c.notNull())
        .addColumn('verdict', 'text', (c) => c.notNull())
        .addColumn('failed', 'integer', (c) => c.notNull())
        .addColumn('checked_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('flow_status_pk', ['site', 'flow_id'])
        .execute();
      await db.schema
        .createTable('events')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('at', 'text', (c) => c.notNull())
        .addColumn('site', 'text')
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('subject', 'text', (c) => c.notNull())
        .addColumn('message', 'text', (c) => c.notNull())
        .addColumn('data', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('events_at').on('events').column('at').execute();
      await db.schema
        .createTable('webhooks')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('url', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('change_requests')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('site', 'text', (c) => c.notNull())
        .addColumn('from_version', 'integer', (c) => c.notNull())
        .addColumn('to_version', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('change_rows')
        .addColumn('cr_id', 'text', (c) => c.notNull())
        .addColumn('rule', 'text', (c) => c.notNull())
        .addColumn('site', 'text', (c) => c.notNull())
        .addColumn('summary', 'text', (c) => c.notNull())
        .addColumn('flow_ids', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('evidence', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('change_rows_pk', ['cr_id', 'rule'])
        .execute();
      await sql`select 1`.execute(db);
    },
  },
  // A delta change request's rows: `allow` (a rule to add, tracked by the agents' checks) or
  // `remove` (a rule of the previous version that loses flows).
  '002_change_row_action': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .alterTable('change_rows')
        .addColumn('action', 'text', (c) => c.notNull().defaultTo('allow'))
        .execute();
    },
  },
  // Each version's flows by id with their form (sites.ts flowForm), and each flow's latest verdict
  // kept per form: the site list, /metrics and the status page count a verdict only for the
  // latest version's flows of the same form, without parsing a stored plan per request.
  '003_flow_forms': {
    async up(raw: Kysely<unknown>) {
      const db = raw as unknown as Kysely<At003>;
      // SQLite runs migrations outside a transaction (Kysely): a start that stopped half-way through
      // this one is finished (the old table already dropped) or begun again (it was not).
      const tables = new Set((await raw.introspection.getTables()).map((t) => t.name));
      if (tables.has('flow_status_form') && !tables.has('flow_status')) {
        await db.schema.alterTable('flow_status_form').renameTo('flow_status').execute();
        return;
      }
      await db.schema.dropTable('flow_status_form').ifExists().execute();
      await db.schema.dropTable('version_flows').ifExists().execute();
      await db.schema
        .createTable('version_flows')
        .addColumn('site', 'text', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('flow_id', 'text', (c) => c.notNull())
        .addColumn('form', 'text', (c) => c.notNull())
        // The form in the key too: the site list reads the latest version's flows from the index alone.
        .addPrimaryKeyConstraint('version_flows_pk', ['site', 'version', 'flow_id', 'form'])
        .execute();
      await db.schema
        .createTable('flow_status_form')
        .addColumn('site', 'text', (c) => c.notNull())
        .addColumn('flow_id', 'text', (c) => c.notNull())
        .addColumn('form', 'text', (c) => c.notNull())
        .addColumn('verdict', 'text', (c) => c.notNull())
        .addColumn('failed', 'integer', (c) => c.notNull())
        .addColumn('checked_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('flow_status_form_pk', ['site', 'flow_id', 'form'])
        .execute();
      // The version each stored verdict was measured on: its run's, else the one in force then.
      const measured = new Map<string, number>();
      for (const r of await db
        .selectFrom('flow_status as fs')
        .innerJoin('results as r', (j) =>
          j
            .onRef('r.site', '=', 'fs.site')
            .onRef('r.flow_id', '=', 'fs.flow_id')
            .onRef('r.checked_at', '=', 'fs.checked_at'),
        )
        .innerJoin('runs', 'runs.key', 'r.run_key')
        .select(['fs.site', 'fs.flow_id', (e) => e.fn.max('runs.version').as('version')])
        .where('runs.isolated', '=', 0)
        .groupBy(['fs.site', 'fs.flow_id'])
        .execute())
        measured.set(`${r.site}\u0000${r.flow_id}`, Number(r.version));
      const versions = await db
        .selectFrom('site_versions')
        .select(['site', 'version', 'created_at'])
        .orderBy('site')
        .orderBy('version')
        .execute();
      const statusSites = await db.selectFrom('flow_status').select('site').distinct().execute();
      const sites = [...new Set([...versions.map((v) => v.site), ...statusSites.map((s) => s.site)])];
      for (const site of sites) {
        const mine = versions.filter((v) => v.site === site);
        const status = await db.selectFrom('flow_status').selectAll().where('site', '=', site).execute();
        const measuredOn = status.map((s) => {
          const inForce = mine.filter((v) => v.created_at <= s.checked_at).at(-1) ?? mine[0];
          return measured.get(`${site}\u0000${s.flow_id}`) ?? inForce?.version ?? 0;
        });
        // Only the versions some verdict was measured on are kept in memory.
        const needed = new Set(measuredOn);
        const forms = new Map<number, Map<string, string>>();
        for (const v of mine) {
          const row = await db
            .selectFrom('site_versions')
            .select('plan')
            .where('site', '=', site)
            .where('version', '=', v.version)
            .executeTakeFirstOrThrow();
          const flows = (JSON.parse(row.plan) as { flows: Flow[] }).flows;
          const byId = new Map(flows.map((f) => [f.id, flowForm(f)]));
          if (needed.has(v.version)) forms.set(v.version, byId);
          const rows = [...byId].map(([flow_id, form]) => ({ site, version: v.version, flow_id, form }));
          for (let i = 0; i < rows.length; i += INSERT_ROWS)
            await db
              .insertInto('version_flows')
              .values(rows.slice(i, i + INSERT_ROWS))
              .execute();
        }
        const rows = status.map((s, i) => ({
          ...s,
          form: forms.get(measuredOn[i] ?? 0)?.get(s.flow_id) ?? UNKNOWN_FORM,
        }));
        for (let i = 0; i < rows.length; i += INSERT_ROWS)
          await db
            .insertInto('flow_status_form')
            .values(rows.slice(i, i + INSERT_ROWS))
            .execute();
      }
      await db.schema.dropTable('flow_status').execute();
      await db.schema.alterTable('flow_status_form').renameTo('flow_status').execute();
    },
  },
  // A change request can be closed (done with, abandoned, or superseded by a newer one): its rows
  // keep their last state and evidence, and agents no longer check its removals.
  '004_change_request_closed': {
    async up(db: Kysely<unknown>) {
      // SQLite runs migrations outside a transaction (Kysely): a start that stopped after some of
      // these columns were added adds only the others.
      const table = (await db.introspection.getTables()).find((t) => t.name === 'change_requests');
      const have = new Set(table?.columns.map((c) => c.name));
      for (const column of ['closed_at', 'closed_reason', 'superseded_by'])
        if (!have.has(column))
          await db.schema.alterTable('change_requests').addColumn(column, 'text').execute();
    },
  },
  // Each result with the form of its flow in its run's version (sites.ts flowForm): a site's recent
  // history picks the checks of each flow's current form without parsing every version it names
  // (an old version's inventory need not even parse with today's catalogs). Filled from
  // version_flows; a result whose flow its version does not have gets UNKNOWN_FORM.
  '005_result_form': {
    async up(db: Kysely<unknown>) {
      // SQLite runs migrations outside a transaction: a run that stopped after adding the column
      // fills the rows still empty, and an index already made is kept.
      const table = (await db.introspection.getTables()).find((t) => t.name === 'results');
      if (!table?.columns.some((c) => c.name === 'form'))
        await db.schema.alterTable('results').addColumn('form', 'text').execute();
      await sql`update results set form = coalesce((
          select vf.form from runs join version_flows vf
            on vf.site = runs.site and vf.version = runs.version
          where runs.key = results.run_key and vf.flow_id = results.flow_id
          limit 1), ${UNKNOWN_FORM})
        where form is null`.execute(db);
    },
  },
  // What an agent's row tells besides its heartbeats: when a run of it was last stored, and the
  // latest refusal of one of its runs that a later run may clear (a version that no longer loads
  // with the server's catalogs: 409 ESTORED), so the agent list can say an agent that heartbeats
  // but whose results are not stored is not reporting results. Filled from runs.
  '006_agent_runs': {
    async up(db: Kysely<unknown>) {
      // SQLite runs migrations outside a transaction: columns already added are kept.
      const table = (await db.introspection.getTables()).find((t) => t.name === 'agents');
      const have = new Set(table?.columns.map((c) => c.name));
      for (const column of ['last_run_at', 'refused_at', 'refused'])
        if (!have.has(column)) await db.schema.alterTable('agents').addColumn(column, 'text').execute();
      await sql`update agents set last_run_at = (
          select max(runs.received_at) from runs where runs.agent_id = agents.id)
        where last_run_at is null`.execute(db);
    },
  },
  // Each agent's latest verdict per flow form, so a flow's status is the roll-up of every agent
  // that checks it (the failing one when they disagree) rather than whichever posted last. Filled
  // from the stored results of runs that were not isolated.
  '007_agent_status': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('agent_status')
        .ifNotExists()
        .addColumn('site', 'text', (c) => c.notNull())
        .addColumn('flow_id', 'text', (c) => c.notNull())
        .addColumn('form', 'text', (c) => c.notNull())
        .addColumn('agent_id', 'text', (c) => c.notNull())
        .addColumn('verdict', 'text', (c) => c.notNull())
        .addColumn('failed', 'integer', (c) => c.notNull())
        .addColumn('checked_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('agent_status_pk', ['site', 'flow_id', 'form', 'agent_id'])
        .execute();
      await sql`insert into agent_status (site, flow_id, form, agent_id, verdict, failed, checked_at)
        select r.site, r.flow_id, r.form, u.agent_id, r.verdict, r.failed, r.checked_at
        from results r join runs u on u.key = r.run_key
        where u.isolated = 0 and r.form <> ${UNKNOWN_FORM} and r.checked_at = (
          select max(r2.checked_at) from results r2 join runs u2 on u2.key = r2.run_key
          where r2.site = r.site and r2.flow_id = r.flow_id and r2.form = r.form
            and u2.agent_id = u.agent_id and u2.isolated = 0)
        on conflict do nothing`.execute(db);
    },
  },
};

export const migrationProvider: MigrationProvider = {
  async getMigrations() {
    return MIGRATIONS;
  },
};
