import { FORMAT_NAMES } from '../export/index.js';
import type { Verdict } from '../probe/verdict.js';
import { VERDICT_ORDER } from '../probe/verdict.js';

/** JSON schemas of the API: Fastify validates every request against them before a handler runs. */

const name = { type: 'string', minLength: 1, maxLength: 200 } as const;
/** A version number in a JSON body (a JSON number: `1`, never `"1"`; types are not coerced). */
const version = { type: 'integer', minimum: 1, maximum: 999_999_999 } as const;

/**
 * A whole number in a path or query string from 1 to `max`, with `pattern` matching exactly that
 * range: plain decimal digits only, so `0x1`, `1e1`, ` 1`, `+1`, `01` and `1.0` are refused (a bare
 * Number() or ajv's type coercion takes them all). The handler converts the text with Number().
 * `description` is the expectation a 400 reply quotes (app.ts, the error handler).
 */
function wholeNumber(max: number, pattern: string) {
  return {
    type: 'string',
    pattern,
    description: `a whole number from 1 to ${max} in plain decimal digits`,
  } as const;
}
const versionText = wholeNumber(999_999_999, '^[1-9][0-9]{0,8}$');

export const siteParams = { type: 'object', required: ['site'], properties: { site: name } } as const;
export const versionParams = {
  type: 'object',
  required: ['site', 'version'],
  properties: {
    site: name,
    version: {
      type: 'string',
      pattern: '^(latest|[1-9][0-9]{0,8})$',
      description: '"latest" or a version number from 1 to 999999999 in plain decimal digits',
    },
  },
} as const;
const format = { type: 'string', enum: FORMAT_NAMES } as const;
export const exportParams = {
  type: 'object',
  required: ['site', 'version', 'format'],
  properties: { ...versionParams.properties, format },
} as const;
export const formatParams = {
  type: 'object',
  required: ['site', 'format'],
  properties: { site: name, format },
} as const;
export const flowParams = {
  type: 'object',
  required: ['site', 'flow'],
  properties: { site: name, flow: name },
} as const;
export const crParams = {
  type: 'object',
  required: ['site', 'id'],
  properties: { site: name, id: name },
} as const;
export const idParams = { type: 'object', required: ['id'], properties: { id: name } } as const;

export const exportQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { host: name, file: name },
} as const;
export const diffQuery = {
  type: 'object',
  additionalProperties: false,
  required: ['from', 'to'],
  properties: { from: versionText, to: versionText },
} as const;
export const deltaQuery = {
  type: 'object',
  additionalProperties: false,
  required: ['from', 'to'],
  properties: { from: versionText, to: versionText, host: name, file: name },
} as const;
export const limitQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { limit: wholeNumber(1000, '^([1-9][0-9]{0,2}|1000)$') },
} as const;
export const eventsQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { site: name, limit: wholeNumber(5000, '^([1-9][0-9]{0,2}|[1-4][0-9]{3}|5000)$') },
} as const;
export const langQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { lang: { type: 'string', enum: ['en', 'ja'] } },
} as const;

export const siteBody = {
  type: 'object',
  additionalProperties: false,
  required: ['yaml'],
  properties: { yaml: { type: 'string', minLength: 1, maxLength: 1_000_000 } },
} as const;
export const changeBody = {
  type: 'object',
  additionalProperties: false,
  required: ['from', 'to'],
  properties: { from: version, to: version },
} as const;
export const closeBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    reason: {
      type: 'string',
      minLength: 1,
      maxLength: 1000,
      description: 'why, in a line: shown with the request',
    },
    supersededBy: {
      ...name,
      description: 'the id of the change request of the same site that replaces this one',
    },
  },
} as const;
export const enrolBody = {
  type: 'object',
  additionalProperties: false,
  required: ['site', 'host'],
  properties: { site: name, host: name, name },
} as const;
export const tokenBody = {
  type: 'object',
  additionalProperties: false,
  required: ['kind'],
  properties: { kind: { type: 'string', enum: ['viewer'] } },
} as const;
export const webhookBody = {
  type: 'object',
  additionalProperties: false,
  required: ['url'],
  properties: { url: { type: 'string', pattern: '^https?://', maxLength: 2000 } },
} as const;
export const heartbeatBody = {
  type: 'object',
  additionalProperties: false,
  properties: { version: { type: 'string', maxLength: 100 } },
} as const;

export interface RunBody {
  key: string;
  version: number;
  startedAt: string;
  isolated: boolean;
  results: { flowId: string; verdict: Verdict; detail: Record<string, unknown> }[];
}

export const runBody = {
  type: 'object',
  additionalProperties: false,
  required: ['key', 'version', 'startedAt', 'isolated', 'results'],
  properties: {
    key: { type: 'string', pattern: '^[A-Za-z0-9_-]{16,100}$' },
    version,
    startedAt: { type: 'string', format: 'date-time' },
    isolated: { type: 'boolean' },
    results: {
      type: 'array',
      maxItems: 20000,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['flowId', 'verdict', 'detail'],
        properties: {
          flowId: name,
          verdict: { type: 'string', enum: VERDICT_ORDER },
          detail: { type: 'object' },
        },
      },
    },
  },
} as const;

// --- replies, for the OpenAPI description only (GET /api/openapi.json): the handlers send them as
// they are, so a field added here is documented, never filtered out ---

const changeRow = {
  type: 'object',
  required: ['rule', 'action', 'summary', 'flowIds', 'state', 'evidence', 'updatedAt'],
  properties: {
    rule: {
      type: 'string',
      description: 'the rule id in the delta export (allow) or the previous version (remove)',
    },
    action: { type: 'string', enum: ['allow', 'remove'] },
    summary: { type: 'string' },
    flowIds: { type: 'array', items: { type: 'string' } },
    state: {
      type: 'string',
      enum: ['requested', 'working', 'broken', 'implemented'],
      description:
        'allow rows: requested -> working (every flow seen ok since the request) -> broken (a later check failed). ' +
        'remove rows: requested -> implemented (every flow seen blocked, filtered or closed since the request) -> ' +
        'broken (a later check reached one again); a removal still reachable before it was ever implemented stays requested',
    },
    evidence: {
      type: 'string',
      description:
        'one line per flow: FLOW: VERDICT at TIME; remove rows add (blocked) or (still open), or "not checked since the request"',
    },
    updatedAt: { type: 'string', format: 'date-time' },
  },
} as const;

export const changeRequestReply = {
  type: 'object',
  required: ['id', 'site', 'from', 'to', 'createdAt', 'rows'],
  properties: {
    id: { type: 'string' },
    site: { type: 'string' },
    from: version,
    to: version,
    createdAt: { type: 'string', format: 'date-time' },
    closedAt: {
      type: ['string', 'null'],
      format: 'date-time',
      description:
        'when it was closed (POST .../close); null while open. A closed request keeps its rows as they were: later checks move none of them and agents no longer check its removals',
    },
    closedReason: { type: ['string', 'null'] },
    supersededBy: {
      type: ['string', 'null'],
      description: 'the change request of the same site that replaces it, when it was closed for one',
    },
    rows: { type: 'array', items: changeRow },
  },
} as const;

export const changeRequestsReply = {
  type: 'object',
  required: ['changeRequests'],
  properties: { changeRequests: { type: 'array', items: changeRequestReply } },
} as const;

export const agentPlanReply = {
  type: 'object',
  required: ['agent', 'site', 'host', 'version', 'yaml', 'flowIds', 'removals'],
  properties: {
    agent: { type: 'string' },
    site: { type: 'string' },
    host: { type: 'string' },
    version,
    yaml: { type: 'string', description: "the latest version's inventory" },
    flowIds: { type: 'array', items: { type: 'string' }, description: 'the flows from this host to check' },
    removals: {
      type: 'array',
      description:
        'flows from this host that removal rows of change requests name and the latest version no longer has, ' +
        'with the inventory of the version that still has them: check them and post them as a run of that version',
      items: {
        type: 'object',
        required: ['version', 'yaml', 'flowIds'],
        properties: {
          version,
          yaml: { type: 'string' },
          flowIds: { type: 'array', items: { type: 'string' } },
        },
      },
    },
  },
} as const;
