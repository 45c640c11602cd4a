import type { Flow } from '../model/flow.js';

/**
 * What a probe found on one port (issue 4). Failing verdicts make `check` exit 1; `open|filtered`
 * (UDP, silent, protocol not spoken), `open-unverified` and `skipped` are not proof, but not a
 * failure either.
 */
export type Verdict =
  | 'ok'
  | 'ok (responder)'
  | 'open-unverified'
  | 'open|filtered'
  | 'wrong-service'
  | 'tls-weak'
  | 'tls-failed'
  | 'closed'
  | 'blocked'
  | 'filtered'
  | 'dns-failed'
  | 'skipped';

/** Worst first: a flow's headline verdict is the first of these any of its ports got. */
export const VERDICT_ORDER: readonly Verdict[] = [
  'dns-failed',
  'blocked',
  'filtered',
  'closed',
  'tls-failed',
  'wrong-service',
  'tls-weak',
  'open|filtered',
  'open-unverified',
  'ok (responder)',
  'ok',
  'skipped',
];

const FAILING: ReadonlySet<Verdict> = new Set([
  'dns-failed',
  'blocked',
  'filtered',
  'closed',
  'tls-failed',
  'wrong-service',
  'tls-weak',
]);

export function isFailure(v: Verdict): boolean {
  return FAILING.has(v);
}

export function worst(verdicts: Iterable<Verdict>): Verdict | undefined {
  let best = -1;
  for (const v of verdicts) {
    const i = VERDICT_ORDER.indexOf(v);
    if (best === -1 || i < best) best = i;
  }
  return best === -1 ? undefined : VERDICT_ORDER[best];
}

export interface TlsEvidence {
  protocol: string;
  cipher: string;
  subject: string;
  issuer: string;
  validTo: string;
  expired: boolean;
}

export interface NtpEvidence {
  stratum: number;
  offsetMs: number;
  delayMs: number;
  refId: string;
}

/** What was seen on the wire; every field optional, none invented. */
export interface Evidence {
  /** The socket error that decided the verdict (ECONNREFUSED, EHOSTUNREACH, ...). */
  errno?: string;
  /** Time from the connect (or send) to the answer that decided the verdict. */
  rttMs?: number;
  /** Attempts made on this port, including retries after silence. */
  attempts?: number;
  bytesSent?: number;
  bytesSeen?: number;
  /** The first bytes the service sent, printable characters only. */
  banner?: string;
  tls?: TlsEvidence;
  http?: { status: string };
  ntp?: NtpEvidence;
  smb?: { dialect: string };
  /** Silent while the same peer answered other ports with rate-limited ICMP errors. */
  rateLimited?: boolean;
}

export interface PortResult {
  /** The address probed (an inventory IP, a resolved name, or loopback for a local flow). */
  address: string;
  port: number;
  protocol: 'tcp' | 'udp';
  verdict: Verdict;
  /** One line: what happened, in words. */
  detail: string;
  evidence: Evidence;
}

export interface FlowResult {
  flow: Flow;
  verdict: Verdict;
  failed: boolean;
  /** Where the probes went; empty when nothing was probed. */
  addresses: string[];
  /** Per port and address; empty for a skipped or dns-failed flow. */
  results: PortResult[];
  /** Why nothing was probed (skipped, dns-failed), or a note on how the target was found. */
  reason?: string;
  /** What to do about it, naming the catalog rows the flow comes from. */
  hint: string;
}

/** Printable excerpt of bytes a peer sent: control characters dropped, at most `max` characters. */
export function excerpt(data: Buffer | string, max = 80): string {
  const text = typeof data === 'string' ? data : data.toString('latin1');
  const clean = text.replace(/[^\x20-\x7e]+/g, ' ').trim();
  return clean.length > max ? `${clean.slice(0, max - 3)}...` : clean;
}

export function sourcesText(flow: Flow): string {
  return flow.sources.map((s) => `${s.doc} ${s.ref}`).join('; ');
}

/** The first citation of a flow, and how many more the JSON report lists. */
export function firstSourceText(flow: Flow): string {
  const [first] = flow.sources;
  if (!first) return 'no citation';
  const more = flow.sources.length - 1;
  return `${first.doc} ${first.ref}${more ? ` (+${more} more, see --format json)` : ''}`;
}

/** What the flow is for: the catalog's purpose, without its full stop. */
function purposeClause(flow: Flow): string {
  const p = flow.purpose.trim().replace(/\.$/, '');
  return p || 'no purpose given';
}

/**
 * The advice for a verdict, then the first catalog row that says the flow is needed. `ports` are
 * the flow's ports that got the verdict (a range is named whole); `example` gives the address.
 */
export function hintFor(
  flow: Flow,
  verdict: Verdict,
  example?: PortResult,
  ports?: readonly (readonly [number, number])[],
): string {
  const proto = flow.protocol;
  const portText = ports?.length
    ? ports.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`)).join(',')
    : example
      ? `${example.port}`
      : undefined;
  const where = example
    ? `${proto}/${portText} on ${example.address}`
    : `${proto} to ${flow.to.host ?? 'the peer'}`;
  const from = flow.from.host ?? 'the source';
  const to = flow.to.host ?? flow.to.description ?? 'the peer';
  const advice: Record<Verdict, string> = {
    ok: `${flow.service} answers as expected`,
    'ok (responder)':
      'the portolan responder answered: the path is open; install the product and check again',
    'open-unverified': `connected, but ${flow.service} cannot be recognised on the wire; to prove the path before the product is installed, run portolan listen on ${to} and check --secret`,
    'open|filtered': `UDP: no answer and no ICMP error, so the port is open or a firewall drops it; run portolan listen on ${to} and check --secret to tell`,
    'wrong-service': `another service answers ${where}: is ${flow.service} on another port, or something else on this one?`,
    'tls-weak': `${where} negotiates TLS below 1.2 or with a weak setup; the product expects TLS 1.2 or later`,
    'tls-failed': `the TLS handshake with ${where} failed: check the service's certificate and TLS settings`,
    closed: `nothing listens on ${where} (or a firewall answers with a TCP reset / port unreachable): is the service installed and running (${flow.service}: ${purposeClause(flow)})?`,
    blocked: `a firewall rejects ${where} (ICMP unreachable / prohibited): allow ${proto} ${from} -> ${to}`,
    filtered: `no answer after spaced retries: a firewall drops ${where}; allow ${proto} ${from} -> ${to}`,
    'dns-failed': `fix the name or the inventory address of ${to}`,
    skipped: 'nothing to probe from here',
  };
  return `${advice[verdict]} (needed by ${flow.product}: ${firstSourceText(flow)})`;
}
