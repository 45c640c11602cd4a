import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { ServiceContext } from './conn.js';

/**
 * What a TLS server's handshake flight showed in the clear, read off the wire: in TLS 1.2 and
 * below the ServerHello, Certificate and CertificateRequest messages travel unencrypted before
 * ChangeCipherSpec (RFC 5246 7.3); in TLS 1.3 only the ServerHello does (RFC 8446 2).
 */
export interface ServerFlight {
  /** The negotiated version as Node names it (`TLSv1.2`, ...), from the ServerHello. */
  protocol?: string;
  /** The cipher suite the ServerHello chose: its OpenSSL name when known, else `0xC02F`. */
  cipher?: string;
  /** The server's own certificate (the first of its Certificate message), DER. */
  certificate?: Buffer;
  /** The server sent a CertificateRequest: it asks the client for a certificate (mutual TLS). */
  certificateRequest: boolean;
}

/** TLS protocol versions (RFC 8446 4.1.2, legacy_version) as tls.TLSSocket.getProtocol() names them. */
const VERSIONS: Record<number, string> = {
  768: 'SSLv3',
  769: 'TLSv1',
  770: 'TLSv1.1',
  771: 'TLSv1.2',
  772: 'TLSv1.3',
};

/** OpenSSL names of common cipher suites (IANA TLS Cipher Suites registry values). */
const SUITES: Record<number, string> = {
  4: 'RC4-MD5',
  5: 'RC4-SHA',
  10: 'DES-CBC3-SHA',
  47: 'AES128-SHA',
  53: 'AES256-SHA',
  156: 'AES128-GCM-SHA256',
  157: 'AES256-GCM-SHA384',
  158: 'DHE-RSA-AES128-GCM-SHA256',
  159: 'DHE-RSA-AES256-GCM-SHA384',
  49161: 'ECDHE-ECDSA-AES128-SHA',
  49162: 'ECDHE-ECDSA-AES256-SHA',
  49170: 'ECDHE-RSA-DES-CBC3-SHA',
  49171: 'ECDHE-RSA-AES128-SHA',
  49172: 'ECDHE-RSA-AES256-SHA',
  49191: 'ECDHE-RSA-AES128-SHA256',
  49192: 'ECDHE-RSA-AES256-SHA384',
  49195: 'ECDHE-ECDSA-AES128-GCM-SHA256',
  49196: 'ECDHE-ECDSA-AES256-GCM-SHA384',
  49199: 'ECDHE-RSA-AES128-GCM-SHA256',
  49200: 'ECDHE-RSA-AES256-GCM-SHA384',
  52392: 'ECDHE-RSA-CHACHA20-POLY1305',
  52393: 'ECDHE-ECDSA-CHACHA20-POLY1305',
  4865: 'TLS_AES_128_GCM_SHA256',
  4866: 'TLS_AES_256_GCM_SHA384',
  4867: 'TLS_CHACHA20_POLY1305_SHA256',
};

/** Most bytes of the server's flight kept (a certificate chain is a few kB). */
const MAX_FLIGHT_BYTES = 65536;

/**
 * The server's cleartext handshake messages in `data` (what it sent, from the first byte): TLS
 * records of type handshake (22) up to the first ChangeCipherSpec (20) or application data (23);
 * messages may span records. Stops quietly at anything malformed or cut short.
 */
export function parseServerFlight(data: Buffer): ServerFlight {
  const out: ServerFlight = { certificateRequest: false };
  const parts: Buffer[] = [];
  for (let i = 0; i + 5 <= data.length; ) {
    const type = data[i] as number;
    const len = data.readUInt16BE(i + 3);
    if (data[i + 1] !== 3 || i + 5 + len > data.length) break;
    if (type === 20 || type === 23) break;
    if (type === 22) parts.push(data.subarray(i + 5, i + 5 + len));
    i += 5 + len;
  }
  const hs = Buffer.concat(parts);
  for (let j = 0; j + 4 <= hs.length; ) {
    const type = hs[j] as number;
    const len = hs.readUIntBE(j + 1, 3);
    if (j + 4 + len > hs.length) break;
    const body = hs.subarray(j + 4, j + 4 + len);
    j += 4 + len;
    try {
      if (type === 2) serverHello(body, out);
      else if (type === 11 && !out.certificate) {
        // TLS 1.2 Certificate: a 3-byte list length, then each certificate with a 3-byte length.
        const first = body.readUIntBE(3, 3);
        out.certificate = body.subarray(6, 6 + first);
      } else if (type === 13) out.certificateRequest = true;
    } catch {
      break;
    }
  }
  return out;
}

function serverHello(body: Buffer, out: ServerFlight): void {
  let version = body.readUInt16BE(0);
  const sid = body[34] as number;
  const suite = body.readUInt16BE(35 + sid);
  // Extensions, after the compression method: supported_versions (43) carries TLS 1.3.
  let k = 35 + sid + 3;
  if (k + 2 <= body.length) {
    const end = Math.min(body.length, k + 2 + body.readUInt16BE(k));
    for (k += 2; k + 4 <= end; ) {
      const type = body.readUInt16BE(k);
      const len = body.readUInt16BE(k + 2);
      if (type === 43 && len >= 2) version = body.readUInt16BE(k + 4);
      k += 4 + len;
    }
  }
  out.protocol = VERSIONS[version] ?? `0x${version.toString(16)}`;
  out.cipher = SUITES[suite] ?? `0x${suite.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** A certificate's subject, issuer and end of validity, as the TLS evidence gives them. */
export function certificateFields(
  der: Buffer,
): { subject: string; issuer: string; validTo: string } | undefined {
  try {
    const x = new X509Certificate(der);
    const names = (s: string) => s.split('\n').filter(Boolean).join(', ');
    return { subject: names(x.subject), issuer: names(x.issuer), validTo: x.validTo };
  } catch {
    return undefined;
  }
}

/**
 * One more TLS handshake with the options of `handshake` in tls.ts, through a stream that keeps a
 * copy of what the server sends, for parseServerFlight: after a handshake that failed on an alert,
 * it shows what the server asked for before it gave up (a client certificate). Resolves when the
 * handshake ends either way, the server closes, or `ctx.timeoutMs` passes; never rejects.
 */
export async function serverFlight(ctx: ServiceContext): Promise<ServerFlight> {
  await ctx.limiter?.take();
  const seen: Buffer[] = [];
  let size = 0;
  return new Promise((resolve) => {
    const raw = net.connect({ host: ctx.address, port: ctx.port, noDelay: true });
    const tap = new Duplex({
      read() {
        raw.resume();
      },
      write(chunk, _encoding, done) {
        raw.write(chunk, done);
      },
      final(done) {
        raw.end();
        done();
      },
      destroy(err, done) {
        raw.destroy();
        done(err);
      },
    });
    raw.on('data', (b: Buffer) => {
      if (size < MAX_FLIGHT_BYTES) {
        seen.push(b);
        size += b.length;
      }
      if (!tap.push(b)) raw.pause();
    });
    raw.on('end', () => tap.push(null));
    raw.on('error', () => finish());
    raw.on('close', () => finish());
    const socket = tls.connect({
      socket: tap,
      servername: ctx.servername ?? '',
      rejectUnauthorized: false,
      minVersion: 'TLSv1',
      ciphers: 'DEFAULT:@SECLEVEL=0',
    });
    socket.on('error', () => finish());
    socket.once('secureConnect', () => finish());
    const timer = setTimeout(() => finish(), ctx.timeoutMs);
    let done = false;
    function finish(): void {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      raw.destroy();
      resolve(parseServerFlight(Buffer.concat(seen)));
    }
  });
}
