import tls from 'node:tls';
import {
  Conn,
  ConnectError,
  connectFailure,
  resetAfterConnect,
  round,
  type ServiceContext,
  type ServiceOutcome,
} from './conn.js';
import { isReset } from './errno.js';
import { httpStatus, unavailableDetail } from './http.js';
import { answeredBy, firstLine, identify } from './identify.js';
import { certificateFields, serverFlight } from './tls-flight.js';
import { CLOSED_UNANSWERED, excerpt, TLS_SILENT, type TlsEvidence } from './verdict.js';

/** Protocol versions below what the products' documents promise (TLS 1.2 or later). */
const WEAK_PROTOCOLS = new Set(['SSLv2', 'SSLv3', 'TLSv1', 'TLSv1.1']);
const WEAK_CIPHER = /(^|[-_])(RC4|DES|3DES|NULL|EXPORT|EXP|MD5|anon)([-_]|$)/i;

type Handshake =
  | {
      ok: true;
      socket: tls.TLSSocket;
      rttMs: number;
      tls: TlsEvidence;
      /**
       * The names of a certificate that does not name the server name the probe was given (a DNS
       * name), by tls.checkServerIdentity (RFC 6125: subjectAltName dNSName, wildcards; the
       * subject's CN only when there is no subjectAltName).
       */
      nameMismatch?: string;
    }
  | {
      ok: false;
      connected: boolean;
      code: string;
      reason: string;
      rttMs: number;
      /** The TLS alert the server ended the handshake with (RFC 8446 6), when it sent one. */
      alert?: number;
    };

/** OpenSSL's error message for an alert it received ends with its number (ssl/record/rec_layer_s3.c). */
const RECEIVED_ALERT = /SSL alert number (\d+)/;

/** The TLS alert unrecognized_name (RFC 6066 3): no certificate for the server name asked for, or none asked. */
const UNRECOGNIZED_NAME = 112;

function certName(o: unknown): string {
  if (!o || typeof o !== 'object') return '';
  return Object.entries(o as Record<string, string | string[]>)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : v}`)
    .join(', ');
}

async function handshake(ctx: ServiceContext): Promise<Handshake> {
  await ctx.limiter?.take();
  return new Promise((resolve) => {
    const t0 = performance.now();
    let connected = false;
    const socket = tls.connect({
      host: ctx.address,
      port: ctx.port,
      // SNI only for names; an IP address is not a valid server name (RFC 6066 3).
      servername: ctx.servername ?? '',
      // We report what the server offers, we do not trust it: no verification, every version and
      // cipher OpenSSL can still speak, so a TLS 1.0-only server is seen as tls-weak, not as failed.
      rejectUnauthorized: false,
      minVersion: 'TLSv1',
      ciphers: 'DEFAULT:@SECLEVEL=0',
    });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({
        ok: false,
        connected,
        code: 'ETIMEDOUT',
        reason: `no TLS handshake within ${ctx.timeoutMs} ms`,
        rttMs: performance.now() - t0,
      });
    }, ctx.timeoutMs);
    socket.once('connect', () => {
      connected = true;
    });
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const cert = socket.getPeerCertificate();
      const validTo = cert?.valid_to ?? '';
      const mismatch =
        ctx.servername && cert?.subject ? tls.checkServerIdentity(ctx.servername, cert) : undefined;
      resolve({
        ok: true,
        socket,
        rttMs: performance.now() - t0,
        ...(mismatch
          ? {
              nameMismatch: cert.subjectaltname
                ? `it names ${cert.subjectaltname}`
                : `it has no subjectAltName, and its subject is ${certName(cert.subject)}`,
            }
          : {}),
        tls: {
          protocol: socket.getProtocol() ?? 'unknown',
          cipher: socket.getCipher()?.name ?? 'unknown',
          subject: certName(cert?.subject),
          issuer: certName(cert?.issuer),
          validTo,
          expired: validTo !== '' && Date.parse(validTo) < Date.now(),
        },
      });
    });
    socket.once('error', (err: NodeJS.ErrnoException & { reason?: string }) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({
        ok: false,
        connected,
        code: err.code ?? 'EUNKNOWN',
        reason: err.reason ?? err.message.split('\n')[0] ?? err.message,
        rttMs: performance.now() - t0,
        ...alertOf(err.message),
      });
    });
  });
}

function alertOf(message: string): { alert?: number } {
  const m = RECEIVED_ALERT.exec(message);
  return m ? { alert: Number(m[1]) } : {};
}

/**
 * After a failed handshake: who is there instead? An SSH server sends its banner whatever we
 * say; a plain HTTP server answers a GET with a status line.
 */
async function diagnose(ctx: ServiceContext): Promise<Buffer> {
  let c: Conn;
  try {
    c = await Conn.open(ctx.address, ctx.port, ctx.timeoutMs, ctx.limiter);
  } catch {
    return Buffer.alloc(0);
  }
  try {
    c.write(`GET / HTTP/1.0\r\nHost: ${ctx.servername ?? ctx.address}\r\n\r\n`);
    await c.read((d) => d.includes(10), ctx.timeoutMs / 2, 1024);
    return c.data;
  } finally {
    c.close();
  }
}

function tlsText(t: TlsEvidence): string {
  const cert = t.subject
    ? `, certificate ${t.subject}, valid to ${t.validTo}${t.expired ? ' (EXPIRED)' : ''}`
    : '';
  return `${t.protocol} ${t.cipher}${cert}`;
}

/**
 * Who answers a TLS ClientHello on a port where another service was expected and stayed silent:
 * `a TLS server (...)` with what it negotiated, or with the alert it ended the handshake with;
 * undefined when nothing that speaks TLS answered (a close, a reset, silence, other bytes).
 */
export async function tlsServerThere(ctx: ServiceContext): Promise<string | undefined> {
  const hs = await handshake(ctx);
  if (hs.ok) {
    hs.socket.destroy();
    return `a TLS server (${tlsText(hs.tls)})`;
  }
  return hs.alert !== undefined ? `a TLS server (it ended the handshake: ${hs.reason})` : undefined;
}

/** The caveat of an ok whose server certificate expired at `validTo` (as OpenSSL prints it). */
function expiredCaveat(validTo: string): string {
  return `the server's certificate expired (${validTo}): a client that verifies it refuses the connection (one that pins its thumbprint may not); renew it`;
}

/**
 * The caveat of an ok whose certificate does not name `servername`, the DNS name the probe was
 * given (`why`: the names the certificate has).
 */
function nameCaveat(servername: string, why: string): string {
  return `the server's certificate does not name ${servername} (${why}): a client that verifies the name refuses the connection (one that pins the certificate's thumbprint may not); issue one with ${servername} in its subjectAltName, or connect by a name it has`;
}

/** Node's code for the TLS 1.3 alert certificate_required (116, RFC 8446 6.2). */
const CERTIFICATE_REQUIRED = 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED';

/**
 * A server that requires a client certificate and ended the session for want of one (`alert`, as
 * OpenSSL words it): its TLS answered with its version, cipher and certificate, so the path and
 * the server are proven as far as a client without the product's certificate can go; the `ok`
 * carries that as its caveat (tls-weak below TLS 1.2 or with a weak cipher, as for any server).
 */
function clientCertificateOutcome(t: TlsEvidence, alert: string, rttMs: number): ServiceOutcome {
  const caveat = `the server requires a client certificate (mutual TLS) and ended the handshake without one (${alert}): whether it accepts the product's certificate is not tested`;
  const evidence = { tls: t, rttMs, caveat };
  if (WEAK_PROTOCOLS.has(t.protocol))
    return {
      verdict: 'tls-weak',
      detail: `negotiated ${tlsText(t)}; TLS 1.2 or later expected; ${caveat}`,
      evidence,
    };
  if (WEAK_CIPHER.test(t.cipher))
    return { verdict: 'tls-weak', detail: `negotiated a weak cipher: ${tlsText(t)}; ${caveat}`, evidence };
  return { verdict: 'ok', detail: `${tlsText(t)}; caveat: ${caveat}`, evidence };
}

/**
 * TLS (and HTTPS when `http`): the negotiated version, cipher and certificate. Below TLS 1.2 or a
 * weak cipher: tls-weak. A server that requires a client certificate: ok with a caveat (see
 * clientCertificateOutcome). A failed handshake: tls-failed, unless an SSH banner or plain HTTP
 * shows that another service answers (wrong-service).
 */
export async function tlsProbe(ctx: ServiceContext, opts: { http: boolean }): Promise<ServiceOutcome> {
  const hs = await handshake(ctx);
  if (!hs.ok) {
    if (!hs.connected)
      return connectFailure(new ConnectError(hs.code, hs.rttMs, ctx.address, ctx.port), 'TLS');
    // Reset right after the ClientHello: the path, not the certificate (an IPS, or a server such
    // as Windows SChannel that resets a hello it has no protocol or cipher for).
    if (isReset(hs.code)) return resetAfterConnect(hs.code, 'the TLS ClientHello', hs.rttMs);
    if (/unsupported protocol|no protocols available|wrong ssl version/i.test(hs.reason))
      return {
        verdict: 'tls-weak',
        detail: `the server offers only protocol versions older than TLS 1.0 (${hs.reason})`,
        evidence: { errno: hs.code, rttMs: round(hs.rttMs) },
      };
    // A handshake ended by the server's alert: did it ask for a client certificate first? In TLS
    // 1.2 and below the request travels in the clear, and a server that requires one (mutual TLS,
    // as product components that authenticate each other by certificate use) ends the handshake
    // when the client has none to send. Its TLS works; the product presents its own certificate.
    if (hs.alert !== undefined) {
      const flight = await serverFlight(ctx);
      if (flight.certificateRequest) {
        const cert = flight.certificate ? certificateFields(flight.certificate) : undefined;
        const validTo = cert?.validTo ?? '';
        const t: TlsEvidence = {
          protocol: flight.protocol ?? 'unknown',
          cipher: flight.cipher ?? 'unknown',
          subject: cert?.subject ?? '',
          issuer: cert?.issuer ?? '',
          validTo,
          expired: validTo !== '' && Date.parse(validTo) < Date.now(),
        };
        return clientCertificateOutcome(t, hs.reason, round(hs.rttMs));
      }
    }
    // An alert is TLS: the server speaks it and refused this handshake. Asking it in plain HTTP
    // then would only draw an HTTPS server's "plain HTTP request sent to HTTPS port" 400.
    if (hs.alert !== undefined)
      return {
        verdict: 'tls-failed',
        detail:
          hs.alert === UNRECOGNIZED_NAME
            ? `TLS handshake failed: the server knows no certificate for ${ctx.servername ? `the name ${ctx.servername}` : 'a handshake without a server name (SNI); the target is an address, not a name'} (alert ${hs.alert}, ${hs.reason})`
            : `TLS handshake failed: the server ended it with alert ${hs.alert} (${hs.reason})`,
        evidence: { errno: hs.code, rttMs: round(hs.rttMs) },
      };
    const seen = await diagnose(ctx);
    const who = identify(seen);
    if (who && !who.startsWith('a TLS server'))
      return {
        verdict: 'wrong-service',
        detail: `expected TLS, ${answeredBy(seen)} answers`,
        evidence: { errno: hs.code, rttMs: round(hs.rttMs), banner: excerpt(firstLine(seen)) },
      };
    // No answer in time is not a failed handshake: a busy server (a prefork server with every
    // worker taken, an event loop held up) completes it later, with nothing wrong in its
    // certificate or TLS settings. Connected, not proven, as for a silent SSH or HTTP server.
    if (hs.code === 'ETIMEDOUT')
      return {
        verdict: 'open-unverified',
        detail: `connected; ${TLS_SILENT} within ${ctx.timeoutMs} ms: a slow or busy server, something that holds the connection without answering, or a path that drops the server's full-size packets (an MTU black hole)`,
        evidence: { errno: hs.code, rttMs: round(hs.rttMs) },
      };
    return {
      verdict: 'tls-failed',
      detail: `TLS handshake failed: ${hs.reason}`,
      evidence: { errno: hs.code, rttMs: round(hs.rttMs) },
    };
  }
  const t = hs.tls;
  const c = Conn.wrap(hs.socket, hs.rttMs);
  try {
    const evidence = { tls: t, rttMs: round(hs.rttMs) };
    if (WEAK_PROTOCOLS.has(t.protocol))
      return { verdict: 'tls-weak', detail: `negotiated ${tlsText(t)}; TLS 1.2 or later expected`, evidence };
    if (WEAK_CIPHER.test(t.cipher))
      return { verdict: 'tls-weak', detail: `negotiated a weak cipher: ${tlsText(t)}`, evidence };
    // An expired certificate: the path and TLS work, but a client that verifies it refuses the
    // connection (one that pins the certificate's thumbprint, as backup products do for
    // self-signed hypervisor certificates, may not).
    // A certificate that does not name the server name a client connects by: the same, for a
    // client that checks the name (most HTTPS clients; a product that pins a thumbprint does not).
    const notes = [
      ...(t.expired ? [expiredCaveat(t.validTo)] : []),
      ...(hs.nameMismatch && ctx.servername ? [nameCaveat(ctx.servername, hs.nameMismatch)] : []),
    ];
    const expired = notes.length ? notes.join('; ') : undefined;
    const caveat = expired ? { caveat: expired } : {};
    const more = expired ? `; caveat: ${expired}` : '';
    if (!opts.http)
      return { verdict: 'ok', detail: `${tlsText(t)}${more}`, evidence: { ...evidence, ...caveat } };
    const status = await httpStatus(c, ctx.servername ?? ctx.address, ctx.timeoutMs);
    const down = status && unavailableDetail(status, ` over ${tlsText(t)}`);
    if (status && down)
      return { verdict: 'not-serving', detail: down, evidence: { ...evidence, http: { status } } };
    if (status)
      return {
        verdict: 'ok',
        detail: `${status} over ${tlsText(t)}${more}`,
        evidence: { ...evidence, http: { status }, ...caveat },
      };
    // TLS 1.3 sends the CertificateRequest encrypted and completes the client's side of the
    // handshake; a server that requires a certificate then ends the session with this alert.
    if (c.data.length === 0 && c.error === CERTIFICATE_REQUIRED)
      return clientCertificateOutcome(t, 'tlsv13 alert certificate required', evidence.rttMs);
    if (c.data.length === 0 && c.error && isReset(c.error))
      return {
        ...resetAfterConnect(c.error, 'the HTTP request (after a TLS handshake that worked)'),
        evidence: { ...evidence, errno: c.error },
      };
    return {
      verdict: 'open-unverified',
      detail: c.ended
        ? `TLS handshake ok (${tlsText(t)}), then the server ${CLOSED_UNANSWERED} an HTTP request${c.error ? ` (${c.error})` : ''}`
        : `TLS handshake ok (${tlsText(t)}), but no answer to an HTTP request`,
      evidence,
    };
  } finally {
    c.close();
  }
}
