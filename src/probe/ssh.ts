import { type ServiceContext, type ServiceOutcome, withConn } from './conn.js';
import { answeredBy, firstLine } from './identify.js';
import { excerpt } from './verdict.js';

/**
 * SSH: the server speaks first with its identification line (RFC 4253 4.2), e.g.
 * "SSH-2.0-OpenSSH_9.2p1 Debian-2". A server that waits for the client gets ours, then answers.
 */
export function sshProbe(ctx: ServiceContext): Promise<ServiceOutcome> {
  return withConn(ctx, 'SSH', async (c) => {
    const line = (d: Buffer) => d.includes(10);
    let got = await c.read(line, ctx.timeoutMs / 2, 512);
    if (!got && c.data.length === 0 && !c.ended) {
      c.write('SSH-2.0-portolan\r\n');
      got = await c.read(line, ctx.timeoutMs / 2, 512);
    }
    const data = c.data;
    if (data.length === 0)
      return {
        verdict: 'open-unverified',
        detail: 'connected; no SSH identification line came back',
        evidence: {},
      };
    const banner = excerpt(firstLine(data));
    if (/^SSH-(2\.0|1\.99)-/.test(data.toString('latin1')))
      return { verdict: 'ok', detail: `SSH server: ${banner}`, evidence: { banner } };
    if (data.toString('latin1').startsWith('SSH-'))
      return {
        verdict: 'wrong-service',
        detail: `an SSH-1 only server (${banner}); SSH 2 is expected`,
        evidence: { banner },
      };
    return {
      verdict: 'wrong-service',
      detail: `expected SSH, ${answeredBy(data)} answers`,
      evidence: { banner },
    };
  });
}
