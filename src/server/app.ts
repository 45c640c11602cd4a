import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { loadCatalogs } from '../catalog/load.js';
import { InputError, PortolanError } from '../errors.js';
import { changeRequest } from '../export/change-request.js';
import { checkSupported } from '../export/generator.js';
import { FORMAT_NAMES, type FormatName, loadGenerator } from '../export/index.js';
import { buildExportModel, ruleSummary } from '../export/model.js';
import { jsonSyntaxError } from '../util/json.js';
import { packagePath } from '../util/paths.js';
import { jsonTooDeep, MAX_JSON_DEPTH } from './json-body.js';
import { metrics } from './metrics.js';
import * as S from './schemas.js';
import { deltaModel, diffPlans } from './sites.js';
import { ApiError, type EventRow, formsOf, type Principal, type Role, type Store } from './store.js';
import { deliver, WebhookPolicy } from './webhooks.js';

/** Largest `detail` of one result an agent may post, in bytes of JSON (a flow's evidence is a few hundred). */
export const MAX_DETAIL_BYTES = 64 * 1024;
export interface AppOptions {
  store: Store;
  /** Largest request body accepted, in bytes (default 4 MiB). */
  bodyLimit?: number;
  /** The generator version stamped in export headers. */
  generatorVersion: string;
  /** Directory of the bundled console (index.html, app.js); none: the console is not served. */
  webDir?: string;
  logger?: boolean;
  /** Serve HTTPS with this PEM certificate and key. */
  https?: { cert: Buffer; key: Buffer };
  /**
   * `serve --debug`: an internal error's stack trace goes to stderr (otherwise its one-line message
   * only) and its message into the 500 reply (otherwise only "internal error; see the server log").
   */
  debug?: boolean;
  /** Where webhooks may go (serve --webhook-allow); default: the refusals of WebhookPolicy alone. */
  webhooks?: WebhookPolicy;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifySchema {
    /** One line for the OpenAPI description. */
    summary?: string;
    /** Reply schemas by status, for the OpenAPI description only (no reply is serialised with them). */
    replies?: Record<number, unknown>;
    /** The body may be left out (the route's preValidation makes it `{}`): not required in the OpenAPI description. */
    bodyOptional?: boolean;
  }
  interface FastifyContextConfig {
    /** Who may call the route: the roles allowed; none for the public console files. */
    allow?: readonly Role[];
  }
}

const READ: readonly Role[] = ['admin', 'viewer'];
const ADMIN: readonly Role[] = ['admin'];
const AGENT: readonly Role[] = ['agent'];

/**
 * The HTTP API and console. Every route declares its JSON schemas (bodies are validated before
 * the handler runs) and who may call it; one error handler maps errors to 4xx with a code:
 * `{ "error": { "code": "EAUTH", "message": "..." } }`.
 */
export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  // One instance type whether HTTPS or not: the routes do not depend on it.
  const { store } = opts;
  const bodyLimit = opts.bodyLimit ?? 4 * 1024 * 1024;
  const app = Fastify({
    ...(opts.https ? { https: opts.https } : {}),
    logger: opts.logger ?? false,
    bodyLimit,
    // No type coercion: ajv would take "0x1", "1e1" and " 1" for the number 1 (and "true" for
    // true in a body). Numbers in a path or query string are strings checked by pattern
    // (schemas.ts wholeNumber); `verbose` gives the error handler the schema and the value refused.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false, verbose: true } },
    // Errors Fastify meets before routing (a path with a broken %-escape): the API's own shape,
    // `{ error: { code, message } }`, as every other refusal, not Fastify's.
    frameworkErrors: (err, req, reply) => {
      const { code, statusCode } = err as { code?: string; statusCode?: number };
      const bad = code === 'FST_ERR_BAD_URL';
      void (reply as import('fastify').FastifyReply).code(statusCode ?? 400).send({
        error: {
          code: 'EREQUEST',
          message: bad
            ? `the path ${JSON.stringify(req.url.split('?')[0]?.slice(0, 200))} is not a valid URL: a % must start an escape of two hex digits that decodes to UTF-8 (expected encodeURIComponent of each part)`
            : err.message,
        },
      });
    },
  });
  // JSON bodies: the default parser (proto and constructor poisoning refused), after a one-pass
  // check of how deep the body nests: thousands of levels would overflow the stack of whatever
  // walks the stored value later, so such a body is a 400 with where and what was expected.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  // Bodies are JSON only: Fastify's text/plain parser would hand a route a string, refused by its
  // schema as "must be object" (a 400 that hides the cause); without it that is a 415.
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = body as string;
    const at = jsonTooDeep(text);
    if (at !== undefined)
      return done(
        new ApiError(
          400,
          'EJSON',
          `body: JSON nested deeper than ${MAX_JSON_DEPTH} levels at character ${at + 1} (expected at most ${MAX_JSON_DEPTH} levels of objects and arrays)`,
        ),
        undefined,
      );
    parseJson(req, text, (err, parsed) => {
      if (!err || (err as { code?: string }).code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return done(err, parsed);
      // Fastify says only "not valid JSON": say where and what, or that the text is JSON whose
      // keys would set an object's prototype, which is refused.
      const e = jsonSyntaxError(text);
      done(
        new ApiError(
          400,
          'EJSON',
          e
            ? `body: not JSON at line ${e.line}, column ${e.column}: ${e.problem}`
            : 'body: a "__proto__" or "constructor" key is refused (prototype poisoning; expected plain data)',
        ),
        undefined,
      );
    });
  });
  const openapiPaths: Record<string, Record<string, unknown>> = {};
  /** Every route's path as a pattern, with its methods: a path known under another method is a 405. */
  const routeMethods: { pattern: RegExp; methods: Set<string> }[] = [];
  app.decorateRequest('principal', null);

  app.addHook('onRoute', (route) => {
    const pattern = new RegExp(
      `^${route.url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:[A-Za-z]+/g, '[^/]+')}$`,
    );
    const known = routeMethods.find((r) => r.pattern.source === pattern.source);
    const entry = known ?? { pattern, methods: new Set<string>() };
    if (!known) routeMethods.push(entry);
    for (const m of Array.isArray(route.method) ? route.method : [route.method]) entry.methods.add(m);
  });
  // Every reply: no content sniffing (a JSON error is never run as a script or page).
  app.addHook('onSend', async (_req, reply, payload) => {
    reply.header('x-content-type-options', 'nosniff');
    return payload;
  });

  app.addHook('onRoute', (route) => {
    if (!route.url.startsWith('/api/') && route.url !== '/metrics') return;
    const path = route.url.replace(/:([A-Za-z]+)/g, '{$1}');
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const m of methods) {
      if (m === 'HEAD') continue;
      const s = route.schema ?? {};
      const params = (s.params as { properties?: Record<string, unknown> } | undefined)?.properties ?? {};
      const query = (s.querystring as { properties?: Record<string, unknown> } | undefined)?.properties ?? {};
      const allow = route.config?.allow;
      const ops = openapiPaths[path] ?? {};
      openapiPaths[path] = ops;
      ops[m.toLowerCase()] = {
        summary: s.summary,
        security: allow ? [{ bearer: [] }] : [],
        'x-roles': allow,
        parameters: [
          ...Object.entries(params).map(([name, schema]) => ({ name, in: 'path', required: true, schema })),
          ...Object.entries(query).map(([name, schema]) => ({ name, in: 'query', schema })),
        ],
        ...(s.body
          ? {
              requestBody: { required: !s.bodyOptional, content: { 'application/json': { schema: s.body } } },
            }
          : {}),
        responses: Object.fromEntries(
          Object.entries((s.response as Record<string, unknown>) ?? s.replies ?? { 200: {} }).map(
            ([code, schema]) => [code, { description: code, content: { 'application/json': { schema } } }],
          ),
        ),
      };
    }
  });

  // Authentication runs before the body is read: no token, no parsing.
  app.addHook('onRequest', async (req, reply) => {
    const allow = req.routeOptions.config?.allow;
    if (!allow) return;
    const header = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    // RFC 6750 3: a 401 says which scheme to use, and for a token sent but not known, that it is invalid.
    if (!m?.[1]) {
      reply.header('www-authenticate', 'Bearer realm="portolan"');
      throw new ApiError(401, 'EAUTH', 'missing token: send "Authorization: Bearer TOKEN"');
    }
    const who = await store.authenticate(m[1]);
    if (!who) {
      reply.header('www-authenticate', 'Bearer realm="portolan", error="invalid_token"');
      throw new ApiError(401, 'EAUTH', 'unknown token');
    }
    if (!allow.includes(who.role))
      throw new ApiError(
        403,
        'EFORBIDDEN',
        `a ${who.role} token cannot ${req.method} ${req.routeOptions.url} (needs ${allow.join(' or ')})`,
      );
    req.principal = who;
  });

  app.setErrorHandler((err, req, reply) => {
    if (err instanceof ApiError)
      return reply.code(err.status).send({ error: { code: err.code, message: err.message } });
    if (err instanceof InputError)
      return reply.code(400).send({ error: { code: 'EINPUT', message: err.message } });
    if (err instanceof PortolanError && err.code !== 'EINTERNAL' && err.code !== 'EIO')
      return reply.code(400).send({ error: { code: err.code, message: err.message } });
    const e = err as {
      validation?: unknown;
      statusCode?: number;
      code?: string;
      message: string;
      validationContext?: string;
    };
    if (e.validation) {
      // ajv's words, without the context it starts with, and for a closed list the values it takes;
      // a string checked by a pattern (a number in a path or query string) says what the pattern
      // means, from its schema's description, rather than quote the pattern.
      const first = (
        e.validation as {
          keyword?: string;
          instancePath?: string;
          message?: string;
          params?: { allowedValues?: unknown[] };
          parentSchema?: { description?: string; pattern?: string };
          data?: unknown;
        }[]
      )[0];
      const allowed = first?.keyword === 'enum' ? first.params?.allowedValues : undefined;
      const context = e.validationContext ?? 'body';
      const expected = first?.parentSchema?.pattern ? first.parentSchema.description : undefined;
      const missing =
        context === 'body' && !first?.instancePath && (first?.data === undefined || first?.data === null);
      const message = missing
        ? 'body: missing (expected a JSON object, sent with content-type: application/json)'
        : expected && first?.keyword !== 'required'
          ? `${context}${first?.instancePath ?? ''}: expected ${expected}, got ${JSON.stringify(first?.data)?.slice(0, 100)}`
          : `${context}${first?.instancePath ?? ''}: ${first?.message ?? e.message}${allowed ? ` (expected one of: ${allowed.join(', ')})` : ''}`;
      return reply.code(400).send({ error: { code: 'EVALIDATION', message } });
    }
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
      const code =
        e.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
          ? 'ETOOLARGE'
          : e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
            ? 'EMEDIATYPE'
            : e.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || /JSON/i.test(e.message)
              ? 'EJSON'
              : 'EREQUEST';
      const message =
        code === 'ETOOLARGE'
          ? `request body is larger than ${bodyLimit} bytes, the most this server reads (serve --body-limit)`
          : code === 'EMEDIATYPE'
            ? `body: content-type ${JSON.stringify(String(req.headers['content-type'] ?? '').slice(0, 100))} is not accepted (expected application/json)`
            : e.message;
      return reply.code(e.statusCode).send({ error: { code, message } });
    }
    req.log.error(err);
    // "see the server log" must hold without a logger too: one line per internal error on stderr,
    // the stack trace only with --debug (it names the server's files).
    const what = opts.debug ? ((err as Error).stack ?? String(err)) : oneLine(err);
    if (!opts.logger)
      process.stderr.write(
        `portolan serve: internal error on ${req.method} ${req.url.split('?')[0]}: ${what}\n`,
      );
    return reply.code(500).send({
      error: {
        code: 'EINTERNAL',
        message: opts.debug ? `internal error: ${oneLine(err)}` : 'internal error; see the server log',
      },
    });
  });
  app.setNotFoundHandler((req, reply) => {
    // A path the API has under other methods: 405 with the methods it takes (RFC 9110 15.5.6).
    const path = req.url.split('?')[0] ?? '';
    const methods = new Set(routeMethods.filter((r) => r.pattern.test(path)).flatMap((r) => [...r.methods]));
    if (methods.size) {
      const allow = [...methods].sort().join(', ');
      return reply
        .code(405)
        .header('allow', allow)
        .send({
          error: {
            code: 'EMETHOD',
            message: `${req.method} is not a method of ${path.slice(0, 200)} (expected one of: ${allow})`,
          },
        });
    }
    return reply.code(404).send({
      error: {
        code: 'ENOTFOUND',
        message: `no route ${req.method} ${req.url.split('?')[0]?.slice(0, 200)} (expected a path and method that GET /api/openapi.json lists)`,
      },
    });
  });

  const policy = opts.webhooks ?? new WebhookPolicy();
  const emit = (events: EventRow[]) => {
    if (events.length) void deliver(store, events, policy);
  };

  // --- API description ---
  app.get('/api/openapi.json', { config: {}, schema: { summary: 'this description' } }, async () => ({
    openapi: '3.1.0',
    info: { title: 'portolan', version: opts.generatorVersion },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    paths: openapiPaths,
  }));

  // --- sites ---
  app.get(
    '/api/sites',
    { config: { allow: READ }, schema: { summary: 'sites with their latest version' } },
    async () => ({
      sites: await store.listSites(),
    }),
  );

  app.post<{ Body: { yaml: string } }>(
    '/api/sites',
    {
      config: { allow: ADMIN },
      schema: { summary: 'upload or edit an inventory: stored as the next version', body: S.siteBody },
    },
    async (req, reply) => {
      const r = await store.putSite(req.body.yaml);
      return reply.code(r.created ? 201 : 200).send(r);
    },
  );

  app.get<{ Params: { site: string } }>(
    '/api/sites/:site',
    { config: { allow: READ }, schema: { summary: 'versions of a site', params: S.siteParams } },
    async (req) => ({ site: req.params.site, versions: await store.versions(req.params.site) }),
  );

  app.get<{ Params: { site: string; version: string } }>(
    '/api/sites/:site/versions/:version',
    {
      config: { allow: READ },
      schema: { summary: 'one version: inventory YAML and plan', params: S.versionParams },
    },
    async (req) => {
      const v = await store.version(req.params.site, versionOf(req.params.version));
      return {
        site: req.params.site,
        version: v.version,
        createdAt: v.createdAt,
        yaml: v.yaml,
        hosts: v.parsed.inventory.hosts.map((h) => ({
          name: h.name,
          address: h.address.text,
          roles: h.roles.map((r) => `${r.product}:${r.role}`),
        })),
        plan: v.parsed.plan,
      };
    },
  );

  app.get<{
    Params: { site: string; version: string; format: string };
    Querystring: { host?: string; file?: string };
  }>(
    '/api/sites/:site/versions/:version/export/:format',
    {
      config: { allow: READ },
      schema: {
        summary: 'an export of one version in any export format',
        params: S.exportParams,
        querystring: S.exportQuery,
      },
    },
    async (req, reply) => {
      const v = await store.version(req.params.site, versionOf(req.params.version));
      const host = req.query.host;
      if (host !== undefined && !v.parsed.inventory.hosts.some((h) => h.name === host))
        throw new ApiError(400, 'ENOHOST', `host ${JSON.stringify(host)} is not in site ${req.params.site}`);
      const model = buildExportModel(v.parsed.plan, v.parsed.inventory, {
        generatorVersion: opts.generatorVersion,
        ...(host !== undefined ? { host } : {}),
      });
      return sendExport(
        reply,
        req.params.format as FormatName,
        model,
        req.query.file,
        `${req.params.site}-v${v.version}`,
      );
    },
  );

  app.get<{ Params: { site: string }; Querystring: { from: string; to: string } }>(
    '/api/sites/:site/diff',
    {
      config: { allow: READ },
      schema: {
        summary: 'flows added, removed and changed between two versions',
        params: S.siteParams,
        querystring: S.diffQuery,
      },
    },
    async (req) => {
      const a = await store.version(req.params.site, Number(req.query.from));
      const b = await store.version(req.params.site, Number(req.query.to));
      const d = diffPlans(a.parsed.plan, b.parsed.plan);
      return { site: req.params.site, from: a.version, to: b.version, ...d };
    },
  );

  app.get<{
    Params: { site: string; format: string };
    Querystring: { from: string; to: string; host?: string; file?: string };
  }>(
    '/api/sites/:site/delta/:format',
    {
      config: { allow: READ },
      schema: {
        summary: 'the delta change request between two versions, in any export format',
        params: S.formatParams,
        querystring: S.deltaQuery,
      },
    },
    async (req, reply) => {
      const a = await store.version(req.params.site, Number(req.query.from));
      const b = await store.version(req.params.site, Number(req.query.to));
      const model = deltaModel(
        diffPlans(a.parsed.plan, b.parsed.plan),
        a.parsed,
        b.parsed,
        opts.generatorVersion,
        req.query.host,
      );
      return sendExport(
        reply,
        req.params.format as FormatName,
        model,
        req.query.file,
        `${req.params.site}-v${a.version}-v${b.version}-delta`,
      );
    },
  );

  app.get<{ Params: { site: string } }>(
    '/api/sites/:site/status',
    {
      config: { allow: READ },
      schema: {
        summary:
          "latest verdict of every flow of the latest version (the failing one when agents disagree), each agent's, and recent history",
        params: S.siteParams,
      },
    },
    async (req) => {
      const v = await store.version(req.params.site, 'latest');
      // Only checks of each flow in its current form (flowForm): a changed flow keeps its id, and
      // the checks of its old addresses or ports (a removal row's evidence) are not its status.
      const status = new Map((await store.status(req.params.site, v.version)).map((s) => [s.flow_id, s]));
      // Each enrolled agent's latest verdict: the status is their roll-up, and agents that disagree are shown.
      const byAgent = new Map<
        string,
        { agent: string; name: string; verdict: string; failed: boolean; checkedAt: string }[]
      >();
      for (const a of await store.agentVerdicts(req.params.site, v.version))
        byAgent.set(a.flow_id, [
          ...(byAgent.get(a.flow_id) ?? []),
          {
            agent: a.agent_id,
            name: a.name,
            verdict: a.verdict,
            failed: !!a.failed,
            checkedAt: a.checked_at,
          },
        ]);
      const behind = await store.statusResults(req.params.site, v.version);
      // Each result carries its flow's form in its run's version: no earlier version is parsed.
      const history = await store.history(req.params.site, undefined, 20);
      const current = formsOf(v.parsed);
      const byFlow = new Map<string, typeof history>();
      for (const h of history)
        if (h.form === current.get(h.flowId)) byFlow.set(h.flowId, [...(byFlow.get(h.flowId) ?? []), h]);
      return {
        site: req.params.site,
        version: v.version,
        flows: v.parsed.plan.flows.map((f) => {
          const s = status.get(f.id);
          const hist = byFlow.get(f.id) ?? [];
          return {
            flow: f,
            verdict: s?.verdict ?? null,
            failed: s ? !!s.failed : null,
            checkedAt: s?.checked_at ?? null,
            agents: byAgent.get(f.id) ?? [],
            // The result behind the verdict shown (another agent's may be newer when they disagree),
            // found for every flow, not only those whose results are among the site's recent ones.
            latest: behind.get(f.id) ?? hist.find((h) => !h.isolated) ?? null,
            history: hist.map((h) => ({
              at: h.checkedAt,
              verdict: h.verdict,
              failed: h.failed,
              isolated: h.isolated,
            })),
          };
        }),
      };
    },
  );

  app.get<{ Params: { site: string; flow: string }; Querystring: { limit?: string } }>(
    '/api/sites/:site/flows/:flow/history',
    {
      config: { allow: READ },
      schema: {
        summary: "one flow's results, newest first",
        params: S.flowParams,
        querystring: S.limitQuery,
      },
    },
    async (req) => {
      const history = await store.history(req.params.site, req.params.flow, Number(req.query.limit ?? 100));
      if (history.length) return { history };
      // No results: a flow of the latest version not checked yet (an empty history), or no such
      // flow at all (404, as for an unknown site).
      const latest = await store.version(req.params.site, 'latest');
      if (!latest.parsed.plan.flows.some((f) => f.id === req.params.flow))
        throw new ApiError(
          404,
          'ENOFLOW',
          `no flow ${JSON.stringify(req.params.flow)} in site ${JSON.stringify(req.params.site)} (version ${latest.version}) and no results for it`,
        );
      return { history };
    },
  );

  // --- change requests ---
  app.post<{ Params: { site: string }; Body: { from: number; to: number } }>(
    '/api/sites/:site/change-requests',
    {
      config: { allow: ADMIN },
      schema: {
        summary: 'open a tracked delta change request between two versions',
        params: S.siteParams,
        body: S.changeBody,
      },
    },
    async (req, reply) => {
      const a = await store.version(req.params.site, req.body.from);
      const b = await store.version(req.params.site, req.body.to);
      const model = deltaModel(
        diffPlans(a.parsed.plan, b.parsed.plan),
        a.parsed,
        b.parsed,
        opts.generatorVersion,
      );
      const rows = [
        ...model.rules.map((r) => ({
          rule: r.id,
          summary: ruleSummary(r),
          flowIds: [...new Set(r.flows.map((f) => f.id))],
          action: 'allow' as const,
        })),
        // The previous version's rules that lose flows: agents check those flows (Store.updateRemovalRows).
        ...(model.removals ?? []).map((rm) => ({
          rule: rm.rule.id,
          summary: `${rm.whole ? 'remove' : 'narrow'}: ${ruleSummary(rm.rule)}`,
          flowIds: [...new Set(rm.leaving.map((f) => f.id))],
          action: 'remove' as const,
        })),
      ];
      const cr = await store.createChangeRequest(req.params.site, a.version, b.version, rows);
      return reply.code(201).send({ ...cr, table: changeRequest(model).rows.length });
    },
  );
  app.get<{ Params: { site: string } }>(
    '/api/sites/:site/change-requests',
    {
      config: { allow: READ },
      schema: {
        summary: 'change requests of a site with the state of each row',
        params: S.siteParams,
        replies: { 200: S.changeRequestsReply },
      },
    },
    async (req) => ({ changeRequests: await store.changeRequests(req.params.site) }),
  );
  app.get<{ Params: { site: string; id: string } }>(
    '/api/sites/:site/change-requests/:id',
    {
      config: { allow: READ },
      schema: { summary: 'one change request', params: S.crParams, replies: { 200: S.changeRequestReply } },
    },
    async (req) => store.changeRequest(req.params.site, req.params.id),
  );

  app.post<{ Params: { site: string; id: string }; Body: { reason?: string; supersededBy?: string } }>(
    '/api/sites/:site/change-requests/:id/close',
    {
      config: { allow: ADMIN },
      schema: {
        summary:
          'close an open change request (done, abandoned, or superseded by another): its rows stay as they are',
        params: S.crParams,
        body: S.closeBody,
        bodyOptional: true,
        replies: { 200: S.changeRequestReply },
      },
      // The body is optional: a bare POST closes with no reason.
      preValidation: async (req) => {
        if (req.body === undefined || req.body === null) req.body = {};
      },
    },
    async (req) => {
      const r = await store.closeChangeRequest(
        req.params.site,
        req.params.id,
        req.body.reason,
        req.body.supersededBy,
      );
      emit(r.events);
      return r.cr;
    },
  );

  // --- agents ---
  app.post<{ Body: { site: string; host: string; name?: string } }>(
    '/api/agents',
    {
      config: { allow: ADMIN },
      schema: { summary: 'enrol an agent for one host: returns its token once', body: S.enrolBody },
    },
    async (req, reply) =>
      reply.code(201).send(await store.enrol(req.body.site, req.body.host, req.body.name)),
  );
  app.get(
    '/api/agents',
    { config: { allow: READ }, schema: { summary: 'agents with last-seen time' } },
    async () => ({
      agents: await store.listAgents(),
    }),
  );
  app.delete<{ Params: { id: string } }>(
    '/api/agents/:id',
    {
      config: { allow: ADMIN },
      schema: { summary: 'remove an agent: its token stops working, its results stay', params: S.idParams },
    },
    async (req, reply) => {
      emit(await store.removeAgent(req.params.id));
      return reply.code(204).send();
    },
  );
  app.post<{ Body: { kind: 'viewer' } }>(
    '/api/tokens',
    {
      config: { allow: ADMIN },
      schema: {
        summary: 'make a read-only viewer token (shown once, with the id that revokes it)',
        body: S.tokenBody,
      },
    },
    async (_req, reply) => {
      const t = await store.createViewer();
      return reply.code(201).send({ kind: 'viewer', token: t.token, id: t.id });
    },
  );
  app.get(
    '/api/tokens',
    {
      config: { allow: ADMIN },
      schema: { summary: 'tokens by id, kind and creation time (never their text)' },
    },
    async () => ({ tokens: await store.listTokens() }),
  );
  app.delete<{ Params: { id: string } }>(
    '/api/tokens/:id',
    { config: { allow: ADMIN }, schema: { summary: 'revoke a viewer token', params: S.idParams } },
    async (req, reply) => {
      await store.revokeToken(req.params.id);
      return reply.code(204).send();
    },
  );

  // --- the agent protocol ---
  app.get(
    '/api/agent/plan',
    {
      config: { allow: AGENT },
      schema: {
        summary:
          "the agent's site inventory, the ids of the flows from its host, and removed flows to verify",
        replies: { 200: S.agentPlanReply },
      },
    },
    async (req, reply) => {
      const agent = await store.agent(req.principal?.agent ?? req.principal?.agentId ?? '');
      // Kept as JSON text per (site, version, host): not parsed, planned or serialised again.
      return reply.type('application/json; charset=utf-8').send(await store.agentPlanJson(agent));
    },
  );
  app.post(
    '/api/agent/heartbeat',
    { config: { allow: AGENT }, schema: { summary: 'the agent is alive', body: S.heartbeatBody } },
    async (req) => {
      emit(await store.heartbeat(req.principal?.agent ?? req.principal?.agentId ?? ''));
      return { ok: true };
    },
  );
  app.post<{ Body: S.RunBody }>(
    '/api/agent/results',
    {
      config: { allow: AGENT },
      schema: { summary: 'post one check run; the idempotency key makes a resend harmless', body: S.runBody },
    },
    async (req) => {
      // One flow's evidence is a few hundred bytes; a larger detail would be served back in every
      // status reply of the site, so it is refused here, before anything of the run is stored.
      req.body.results.forEach((r, i) => {
        const bytes = Buffer.byteLength(JSON.stringify(r.detail));
        if (bytes > MAX_DETAIL_BYTES)
          throw new ApiError(
            400,
            'EVALIDATION',
            `body/results/${i}/detail: ${bytes} bytes of JSON, more than ${MAX_DETAIL_BYTES} (expected the evidence of one flow, at most ${MAX_DETAIL_BYTES / 1024} KiB)`,
          );
      });
      const who = req.principal?.agent ?? req.principal?.agentId ?? '';
      let r: Awaited<ReturnType<Store['ingest']>>;
      try {
        r = await store.ingest(who, req.body);
      } catch (err) {
        // The run's version no longer loads with this server's catalogs: the server's fault, not
        // the run's. The agent keeps the run and sends it again; the agent list and an event say so.
        if (err instanceof ApiError && err.code === 'ESTORED')
          emit(await store.runRefused(await store.agent(who), req.body, `${err.code}: ${err.message}`));
        throw err;
      }
      emit(r.events);
      return { key: req.body.key, stored: r.stored, duplicate: !r.stored };
    },
  );

  // --- events, webhooks, catalog, metrics ---
  app.get<{ Querystring: { site?: string; limit?: string } }>(
    '/api/events',
    { config: { allow: READ }, schema: { summary: 'events, newest first', querystring: S.eventsQuery } },
    async (req) => ({ events: await store.events(req.query.site, Number(req.query.limit ?? 200)) }),
  );
  app.get('/api/webhooks', { config: { allow: ADMIN }, schema: { summary: 'webhooks' } }, async () => ({
    webhooks: await store.webhooks(),
  }));
  app.post<{ Body: { url: string } }>(
    '/api/webhooks',
    {
      config: { allow: ADMIN },
      schema: { summary: 'POST every event as JSON to this URL', body: S.webhookBody },
    },
    async (req, reply) => {
      await policy.check(req.body.url);
      return reply.code(201).send(await store.addWebhook(req.body.url));
    },
  );
  app.delete<{ Params: { id: string } }>(
    '/api/webhooks/:id',
    { config: { allow: ADMIN }, schema: { summary: 'remove a webhook', params: S.idParams } },
    async (req, reply) => {
      await store.deleteWebhook(req.params.id);
      return reply.code(204).send();
    },
  );
  app.get<{ Querystring: { lang?: 'en' | 'ja' } }>(
    '/api/catalog',
    {
      config: { allow: READ },
      schema: {
        summary: 'products, roles and cited entries (English or Japanese text)',
        querystring: S.langQuery,
      },
    },
    async (req) => catalogView(store.catalogs, req.query.lang ?? 'en'),
  );
  app.get(
    '/metrics',
    { config: { allow: READ }, schema: { summary: 'Prometheus metrics' } },
    async (_req, reply) => reply.type('text/plain; version=0.0.4').send(await metrics(store)),
  );

  // --- the console: public files; it asks for a token and calls the API with it ---
  const webDir = opts.webDir;
  if (webDir && existsSync(join(webDir, 'index.html'))) {
    const files: Record<string, [string, string]> = {
      '/': ['index.html', 'text/html; charset=utf-8'],
      '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
      '/app.css': ['app.css', 'text/css; charset=utf-8'],
    };
    for (const [url, [file, type]] of Object.entries(files))
      app.get(url, async (_req, reply) =>
        reply
          .type(type)
          .header('cache-control', 'no-cache')
          .header(
            'content-security-policy',
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
          )
          .send(readFileSync(join(webDir, file))),
      );
  }
  return app;
}

/** An error's name and message on one line. */
function oneLine(err: unknown): string {
  const e = err as Error;
  return `${e?.name ?? 'Error'}: ${String(e?.message ?? err).replace(/\s*\n\s*/g, ' ')}`;
}

function versionOf(text: string): number | 'latest' {
  if (text === 'latest') return 'latest';
  return Number(text);
}

async function sendExport(
  reply: import('fastify').FastifyReply,
  format: FormatName,
  model: import('../export/model.js').ExportModel,
  file: string | undefined,
  stem: string,
) {
  const generator = await loadGenerator(format);
  checkSupported(generator, model);
  const out = generator.render(model);
  reply.header('x-portolan-warnings', String(out.warnings.length));
  if (out.files.length === 1 || file !== undefined) {
    const f = file === undefined ? out.files[0] : out.files.find((x) => x.path === file);
    if (!f)
      throw new ApiError(
        404,
        'ENOFILE',
        `export ${format} has no file ${JSON.stringify(file)} (expected one of: ${out.files.map((x) => x.path).join(', ')})`,
      );
    const name = `${stem}-${f.path.replace(/[^A-Za-z0-9._-]+/g, '_')}`;
    return reply
      .type('application/octet-stream')
      .header('content-disposition', contentDisposition(name))
      .send(f.content);
  }
  return reply.send({ files: out.files, warnings: out.warnings });
}

/**
 * A Content-Disposition header naming a download (RFC 6266): `filename="..."` as the name is when
 * it is printable ASCII without `"` or `\\`, else that with each other character as `_`, followed
 * by `filename*=UTF-8''...` (RFC 8187) with the whole name. A header value may not hold characters
 * past U+00FF (Node refuses to send it), and a site may be named in any script.
 */
export function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/gu, '_');
  if (ascii === name) return `attachment; filename="${name}"`;
  const encoded = encodeURIComponent(name).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}

function catalogView(extra: readonly string[], lang: 'en' | 'ja') {
  const cats = loadCatalogs(extra);
  const pick = (en: string, ja: string | undefined) => (lang === 'ja' && ja ? ja : en);
  return {
    lang,
    products: [...cats.values()].map((c) => ({
      product: c.product,
      title: pick(c.title, c['title-ja']),
      roles: Object.entries(c.roles).map(([id, r]) => ({ id, title: pick(r.title, r['title-ja']) })),
      entries: c.entries.map((e) => ({
        id: e.id,
        from: e.from,
        to: e.to,
        protocol: e.protocol,
        ports: e.ports ?? [],
        service: e.service,
        purpose: pick(e.purpose, e['purpose-ja']),
        notes: lang === 'ja' && e['notes-ja'] ? e['notes-ja'] : (e.notes ?? []),
        sources: e.sources,
        ...(e.basis ? { basis: e.basis } : {}),
      })),
    })),
  };
}

export const WEB_DIR = packagePath('dist', 'web');
export type { FastifyRequest };
export { FORMAT_NAMES };
