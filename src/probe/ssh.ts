import { resetBeforeDataDetail, type ServiceContext, type ServiceOutcome, withConn } from './conn.js';
import { isReset } from './errno.js';
import { answeredBy, firstLine, identify } from './identify.js';
import { tlsServerThere } from './tls.js';
import { excerpt, SSH_CLOSED_AFTER_OURS, SSH_REFUSED, SSH_SILENT, SSH_WRAPPED } from './verdict.js';

/**
 * How long a TCP-wrappers daemon holds a connection it refuses before closing it: libwrap's
 * clean_exit() sleeps 5 s before exit (tcp_wrappers 7.6, refuse.c / clean_exit.c), and sshd built
 * with libwrap (Debian's) refuses a source /etc/hosts.deny names that way, sending nothing.
 */
export const WRAPPERS_HOLD_MS = 5000;
/** How long past WRAPPERS_HOLD_MS a silent SSH port is waited for (a loaded peer is late to exit). */
const HOLD_GRACE_MS = 1500;
/**
 * A close this long after our identification line, with nothing sent back, is not an answer to the
 * line: a service that closes what it does not understand (portolan listen, a TLS server) does so
 * within a round trip.
 */
const HELD_NOT_ANSWER_MS = 1000;

/** Most bytes read while looking for the identification line (RFC 4253 4.2 allows lines before it). */
const MAX_BYTES = 4096;

/** The server's identification line among the complete lines of `data` ("SSH-" at a line start). */
function identification(data: Buffer): Buffer | undefined {
  for (let start = 0; start < data.length; ) {
    const nl = data.indexOf(10, start);
    if (nl === -1) return undefined;
    if (data.subarray(start, start + 4).toString('latin1') === 'SSH-') return data.subarray(start, nl);
    start = nl + 1;
  }
  return undefined;
}

/**
 * SSH: the server speaks first with its identification line (RFC 4253 4.2), e.g.
 * "SSH-2.0-OpenSSH_9.2p1 Debian-2", possibly after other lines. A server that waits for the client
 * gets ours, then answers. A server that closes before its identification line, with nothing sent
 * to it or with only a line of its own ("Exceeded MaxStartups", as OpenSSH sends when too many
 * connections are unauthenticated at once), refuses this client: not-serving. One that closes
 * after our line without its own is not SSH, and a TLS server there is named (wrong-service).
 */
export async function sshProbe(ctx: ServiceContext): Promise<ServiceOutcome> {
  let closedAfterOurs = false;
  const out = await withConn(ctx, 'SSH', async (c) => {
    const found = (d: Buffer) => identification(d) !== undefined;
    const start = performance.now();
    let got = await c.read(found, ctx.timeoutMs / 2, MAX_BYTES);
    let spoke = false;
    let wroteAt = 0;
    if (!got && c.data.length === 0 && !c.ended) {
      c.write('SSH-2.0-portolan\r\n');
      spoke = true;
      wroteAt = performance.now();
      // A silent server is waited for past TCP wrappers' hold, so that sshd refusing this source
      // is seen closing; a server that sends its line at once is not slowed.
      const left = Math.max(ctx.timeoutMs / 2, WRAPPERS_HOLD_MS + HOLD_GRACE_MS - (wroteAt - start));
      got = await c.read(found, left, MAX_BYTES);
    }
    const heldMs = performance.now() - wroteAt;
    const data = c.data;
    const id = identification(data);
    if (id) {
      const banner = excerpt(id);
      const text = id.toString('latin1');
      if (/^SSH-(2\.0|1\.99)-/.test(text))
        return { verdict: 'ok', detail: `SSH server: ${banner}`, evidence: { banner } };
      return {
        verdict: 'wrong-service',
        detail: `an SSH-1 only server (${banner}); SSH 2 is expected`,
        evidence: { banner },
      };
    }
    // An SSH server sends its line as soon as it accepts; one that closed before anything was sent
    // to it, without its line, refuses this client (what it said instead is shown).
    if (c.ended && !spoke && (data.length ? !identify(data) : !c.error))
      return {
        verdict: 'not-serving',
        detail: `${SSH_REFUSED}${data.length ? `, after "${excerpt(data)}"` : ', with nothing sent to it'}: ${SSHD_REFUSES}`,
        evidence: data.length ? { banner: excerpt(firstLine(data)) } : {},
      };
    // Closed with no byte, long after our line: not an answer to it (a service that closes what it
    // does not understand does so at once) but a server that held the connection in silence and
    // then let it go, as sshd does with a source its TCP wrappers refuse.
    // Reset before portolan sent a byte: the service refuses the connection; no SSH line was
    // sent, so this is no answer to one.
    if (data.length === 0 && c.ended && !spoke && c.error && isReset(c.error))
      return {
        verdict: 'reset-after-connect',
        detail: resetBeforeDataDetail(c.error, 'SSH'),
        evidence: { errno: c.error },
      };
    if (data.length === 0 && c.ended && spoke && heldMs >= HELD_NOT_ANSWER_MS)
      return {
        verdict: 'not-serving',
        detail: `${SSH_REFUSED}: it held the connection ${(performance.now() - start) / 1000 >= 10 ? Math.round((performance.now() - start) / 1000) : ((performance.now() - start) / 1000).toFixed(1)} s in silence, then closed it${c.error ? ` (${c.error})` : ''}, ${SSH_WRAPPED} (/etc/hosts.deny: libwrap holds a refused connection ${WRAPPERS_HOLD_MS / 1000} s before closing it)`,
        evidence: c.error ? { errno: c.error } : {},
      };
    if (data.length === 0 && c.ended) {
      closedAfterOurs = true;
      return {
        verdict: 'open-unverified',
        detail: `connected, then closed${c.error ? ` (${c.error})` : ''} ${SSH_CLOSED_AFTER_OURS} (an SSH server sends its line first): not an SSH server`,
        evidence: {},
      };
    }
    if (data.length === 0)
      return {
        verdict: 'open-unverified',
        detail: SSH_SILENT,
        evidence: {},
      };
    const banner = excerpt(firstLine(data));
    return {
      verdict: 'wrong-service',
      detail: `expected SSH, ${answeredBy(data)} answers`,
      evidence: { banner },
    };
  });
  if (!closedAfterOurs) return out;
  // Something that waits for the client to speak, and closes on an SSH line: a TLS server (an
  // HTTPS or TLS service where SSH is expected) is told by its answer to a ClientHello.
  const who = await tlsServerThere(ctx);
  return who
    ? { verdict: 'wrong-service', detail: `expected SSH, ${who} answers`, evidence: out.evidence }
    : out;
}

/** What a server that accepts and closes before its SSH identification line may be. */
export const SSHD_REFUSES =
  'sshd refuses connections from this source now (its MaxStartups limit of unauthenticated connections at once is reached, PerSourcePenalties, or TCP wrappers: /etc/hosts.deny)';
