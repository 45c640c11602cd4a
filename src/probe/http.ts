import type { Conn, ServiceContext, ServiceOutcome } from './conn.js';
import { resetAfterConnect, unanswered, withConn } from './conn.js';
import { isReset } from './errno.js';
import { answeredBy, firstLine } from './identify.js';
import { excerpt } from './verdict.js';

const STATUS = /^HTTP\/\d(\.\d)? \d{3}/;

/** Sends a GET request (openssl s_server -www answers only GET) on an open connection (plain or TLS) and reads the status line. */
export async function httpStatus(c: Conn, host: string, timeoutMs: number): Promise<string | undefined> {
  c.write(`GET / HTTP/1.0\r\nHost: ${host}\r\nUser-Agent: portolan-check\r\nConnection: close\r\n\r\n`);
  await c.read((d) => d.includes(10), timeoutMs, 4096);
  const line = firstLine(c.data).toString('latin1').trim();
  return STATUS.test(line) ? excerpt(line) : undefined;
}

/**
 * Status codes by which a server says that the service it fronts cannot serve now (RFC 9110 15.6.3-5:
 * 502 Bad Gateway, 503 Service Unavailable, 504 Gateway Timeout): a reverse proxy or load balancer
 * whose backend is down, or a service that is starting or in maintenance (vCenter answers 503 while
 * its services start). The path to the server is open; the service is not serving.
 */
const UNAVAILABLE = /^HTTP\/\d(\.\d)? (502|503|504)\b/;

/** The detail of a status line UNAVAILABLE matches (after what it came over), else undefined. */
export function unavailableDetail(status: string, over = ''): string | undefined {
  if (!UNAVAILABLE.test(status)) return undefined;
  return `${status}${over}: ${HTTP_UNAVAILABLE}`;
}

/** In the detail of an HTTP answer that says the service behind the server is unavailable. */
export const HTTP_UNAVAILABLE =
  'the server answers, but says the service it fronts cannot serve now (a proxy or load balancer whose backend is down, or a service starting or in maintenance)';

/** Plain HTTP: a status line is ok; a TLS alert or an SSH banner is the wrong service. */
export function httpProbe(ctx: ServiceContext): Promise<ServiceOutcome> {
  return withConn(ctx, 'HTTP', async (c) => {
    const status = await httpStatus(c, ctx.servername ?? ctx.address, ctx.timeoutMs);
    const down = status && unavailableDetail(status);
    if (status && down) return { verdict: 'not-serving', detail: down, evidence: { http: { status } } };
    if (status) return { verdict: 'ok', detail: `HTTP server: ${status}`, evidence: { http: { status } } };
    const data = c.data;
    if (data.length === 0 && c.error && isReset(c.error))
      return resetAfterConnect(c.error, `the ${c.bytesSent}-byte HTTP request`);
    if (data.length === 0)
      return { verdict: 'open-unverified', detail: unanswered(c, 'an HTTP request'), evidence: {} };
    return {
      verdict: 'wrong-service',
      detail: `expected HTTP, ${answeredBy(data)} answers`,
      evidence: { banner: excerpt(firstLine(data)) },
    };
  });
}
