import { type ServiceContext, type ServiceOutcome, withConn } from './conn.js';
import { answeredBy, firstLine } from './identify.js';
import { CLOSED_UNANSWERED, excerpt } from './verdict.js';

/**
 * VMware authd on 902 (NFC goes through it): the daemon greets first with
 * "220 VMware Authentication Daemon Version 1.10: SSL Required, ServerDaemonProtocol:SOAP, ...".
 */
export function vmwareAuthdProbe(ctx: ServiceContext): Promise<ServiceOutcome> {
  return withConn(ctx, 'VMware authd', async (c) => {
    await c.read((d) => d.includes(10), ctx.timeoutMs, 1024);
    const data = c.data;
    if (data.length === 0)
      return {
        verdict: 'open-unverified',
        detail: c.ended
          ? `connected, then the server ${CLOSED_UNANSWERED} the connect: no authd greeting${c.error ? ` (${c.error})` : ''}`
          : 'connected; no authd greeting came back',
        evidence: {},
      };
    const banner = excerpt(firstLine(data));
    if (data.toString('latin1').startsWith('220 VMware Authentication Daemon'))
      return { verdict: 'ok', detail: `VMware authd: ${banner}`, evidence: { banner } };
    return {
      verdict: 'wrong-service',
      detail: `expected the VMware authd greeting, ${answeredBy(data)} answers`,
      evidence: { banner },
    };
  });
}
