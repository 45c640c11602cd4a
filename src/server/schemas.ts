import { FORMAT_NAMES } from '../export/index.js';
import type { Verdict } from '../probe/verdict.js';
import { VERDICT_ORDER } from '../probe/verdict.js';

/** JSON schemas of the API: Fastify validates every request against them before a handler runs. */

const name = { type: 'string', minLength: 1, maxLength: 200 } as const;
const version = { type: 'integer', minimum: 1 } as const;

export const siteParams = { type: 'object', required: ['site'], properties: { site: name } } as const;
export const versionParams = {
  type: 'object',
  required: ['site', 'version'],
  properties: { site: name, version: { type: 'string', pattern: '^(latest|[1-9][0-9]{0,8})$' } },
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
  properties: { from: version, to: version },
} as const;
export const deltaQuery = {
  type: 'object',
  additionalProperties: false,
  required: ['from', 'to'],
  properties: { from: version, to: version, host: name, file: name },
} as const;
export const limitQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { limit: { type: 'integer', minimum: 1, maximum: 1000 } },
} as const;
export const eventsQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { site: name, limit: { type: 'integer', minimum: 1, maximum: 5000 } },
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
