import { MAX_SKEW_SECONDS } from '../listen/protocol.js';
import type { Flow } from '../model/flow.js';
import { formatPorts } from '../model/ports.js';

/**
 * What a probe found on one port (issue 4). Failing verdicts make `check` exit 1; `open|filtered`
 * (UDP, silent, protocol not spoken), `open-unverified` and `skipped` are not proof, but not a
 * failure either.
 */
export type Verdict =
  | 'ok'
  | 'ok (responder)'
  | 'reachable'
  | 'open-unverified'
  | 'open|filtered'
  | 'wrong-service'
  | 'not-serving'
  | 'tls-weak'
  | 'tls-failed'
  | 'closed'
  | 'reset-after-connect'
  | 'responder-overloaded'
  | 'blocked'
  | 'filtered'
  | 'intermittent'
  | 'no-host'
  | 'dns-failed'
  | 'no-route'
  | 'skipped';

/** Worst first: a flow's headline verdict is the first of these any of its ports got. */
export const VERDICT_ORDER: readonly Verdict[] = [
  'dns-failed',
  'no-host',
  'no-route',
  'blocked',
  'filtered',
  'intermittent',
  'closed',
  'reset-after-connect',
  'responder-overloaded',
  'tls-failed',
  'wrong-service',
  'not-serving',
  'tls-weak',
  'open|filtered',
  'open-unverified',
  'reachable',
  'ok (responder)',
  'ok',
  'skipped',
];

const FAILING: ReadonlySet<Verdict> = new Set([
  'dns-failed',
  'no-host',
  'no-route',
  'blocked',
  'filtered',
  'intermittent',
  'closed',
  'reset-after-connect',
  'responder-overloaded',
  'tls-failed',
  'wrong-service',
  'not-serving',
  'tls-weak',
]);

export function isFailure(v: Verdict): boolean {
  return FAILING.has(v);
}

/**
 * The failing verdicts that got no answer from the target itself: no name, no neighbour, no route,
 * an ICMP unreachable (which a host whose own link is down also gets from its kernel) or silence.
 * Every other failing verdict (closed, reset-after-connect, tls-failed, wrong-service, ...) is an
 * answer from the target: the prober's own network reached it.
 */
const NO_ANSWER_FROM_TARGET: ReadonlySet<Verdict> = new Set([
  'dns-failed',
  'no-host',
  'no-route',
  'blocked',
  'filtered',
]);

/** True when verdict `v` is a failure in which the target itself never answered (NO_ANSWER_FROM_TARGET). */
export function unanswered(v: Verdict): boolean {
  return NO_ANSWER_FROM_TARGET.has(v);
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
  /** Leap indicator (RFC 5905 7.3); 3 means the server's clock is not synchronised. */
  leap?: number;
  /** The kiss code of a kiss-o'-death reply (RFC 5905 7.4: RATE, DENY, RSTR, ...). */
  kiss?: string;
}

/** What was seen on the wire; every field optional, none invented. */
export interface Evidence {
  /** The socket error that decided the verdict (ECONNREFUSED, EHOSTUNREACH, ...). */
  errno?: string;
  /**
   * Round trip to the address in ms: the lowest of a few TCP connects made one at a time after the
   * sweep, each timed from just before connect() to its completion (see quietConnect). Absent for
   * an address that answered no TCP probe.
   */
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
  /** The dialect an SMB server chose, or the negative session response it refused the session with. */
  smb?: { dialect: string } | { refused: string };
  /**
   * Connects to the address's other TCP ports that went unanswered before they connected, of all
   * the connects made to them: set on a silent port judged `intermittent` from it.
   */
  loss?: { unanswered: number; connects: number };
  /** Silent while the same peer answered other ports with rate-limited ICMP errors. */
  rateLimited?: boolean;
  /**
   * The kernel's neighbour (ARP/NDP) entry for an on-link target, read after the probes
   * (`ip neigh`): FAILED or INCOMPLETE means no machine answered for the address.
   */
  neighbour?: { state: string; device?: string };
  /** The address the probes left this machine from (the kernel's route to the target). */
  source?: string;
  /** What an ok does not prove (e.g. the dynamic port WMI moves to after 135). */
  caveat?: string;
  /** The endpoint the RPC endpoint mapper handed out for an interface (ept_map), and that was probed. */
  epm?: { interface: string; port: number };
  /** The source address the portolan responder saw (its signed reply says so): NAT shows up here. */
  seenFrom?: string;
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
  /** What the probes learned beside the verdict (the target saw another source address: NAT). */
  notes?: string[];
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

/**
 * Whether `port` lies in one of the flow's ranges assigned at run time (catalog `dynamic-ports`):
 * nothing listening there is normal until the product opens a port.
 */
export function isDynamicPort(flow: Flow, port: number): boolean {
  return flow.dynamicPorts?.some(([lo, hi]) => port >= lo && port <= hi) ?? false;
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
 * `signed` is true when the check sent signed responder probes to this flow's target (--secret and
 * an inventory host): then a port that did not prove itself is not told to "run portolan listen" as
 * if nobody had, but that the responder did not answer the signed probe, and why that may be.
 * `responderSeen` is true when a responder answered some signed probe to the example's address in
 * the same check: a port refused there was not bound, where otherwise listen is likelier not running.
 */
export function hintFor(
  flow: Flow,
  verdict: Verdict,
  example?: PortResult,
  ports?: readonly (readonly [number, number])[],
  signed = false,
  responderSeen = false,
): string {
  const proto = flow.protocol;
  const portText = ports?.length
    ? ports.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`)).join(',')
    : example
      ? `${example.port}`
      : undefined;
  const flowPorts = flow.ports.length ? ` ${formatPorts(flow.ports)}` : '';
  const where = example
    ? `${proto}/${portText} on ${example.address}`
    : `${proto} to ${flow.to.host ?? 'the peer'}`;
  const from = flow.from.host ?? 'the source';
  const to = flow.to.host ?? flow.to.description ?? 'the peer';
  const allow = `allow ${proto}${flowPorts} ${from} -> ${to}`;
  const dynamic = example !== undefined && isDynamicPort(flow, example.port);
  // The command the user ran: `probe` flows are the command line's, every other flow is check's.
  const cmd = commandOf(flow);
  const named = flow.to.address && flow.to.address !== example?.address ? flow.to.address : undefined;
  const ntp = example?.evidence.ntp;
  // What a responder that did not answer the signed probe may mean: `portolan listen` closes a
  // probe signed with another secret, or for another host name than its --host, without a reply,
  // and logs "bad MAC" or "signed for host ...". probe signs for --name, else for HOST as typed.
  const mismatch = signedMismatch(flow, to);
  const unsigned = `portolan listen is not answering on ${where} (not running on ${to}, not on this port, or busy for the whole ${cmd}, digesting another source's connections: ${cmd} again), or ${mismatch}`;
  const advice: Record<Verdict, string> = {
    ok: `${flow.service} answers as expected`,
    'ok (responder)': `the portolan responder answered: the path is open; install the product and ${cmd} again`,
    reachable: `the ports of ${flow.service} are assigned at run time (a dynamic or transmission range): another port of the range on ${example?.address ?? to} connected, so the path reaches the range, and these reset because nothing listens on them yet (normal before the product opens a port), unless a firewall opens only part of the range and rejects the rest with a TCP reset: run portolan listen on ${to} and ${cmd} --secret to prove every port`,
    'open-unverified': example?.detail?.startsWith(SIGNED_CLOSED)
      ? `connected, and the signed probe was closed without a reply, as portolan listen does when ${mismatch}; or another service on ${where} closes what it does not understand`
      : signed
        ? `connected, but the responder did not answer the signed probe, and ${flow.service} cannot be recognised on the wire: ${unsigned}`
        : example?.detail?.includes(CLOSED_UNANSWERED)
          ? `connected, but the server on ${where} closed the connection without answering ${flow.service}: the service refuses this source (its access rules, such as nginx's return 444, or a connection limit), another service there closes what it does not understand, or a portolan listen responder was checked without its --secret; check ${flow.service}'s configuration on ${to}`
          : example?.detail?.includes(SSH_CLOSED_AFTER_OURS)
            ? `connected, but what listens on ${where} closed the connection after portolan's SSH identification line without sending one of its own, which an SSH server sends first: is ssh on another port, or another service on this one (a portolan listen responder, checked without its --secret, closes the same way)?`
            : example?.detail?.startsWith(SILENT_SERVICE)
              ? `connected, but ${flow.service} did not answer on ${where} in time: a slow or busy service, another one that waits in silence, ${example.detail === SSH_SILENT ? 'sshd refusing this source through TCP wrappers (/etc/hosts.deny: it holds a refused connection 5 s before closing it), ' : ''}or a device on the path (an IPS or application-aware firewall) that holds the session without passing it on${example.detail.includes(TLS_SILENT) ? "; or a path MTU black hole (the connect's small packets pass, the server's full-size packets of its first answer are dropped, and the ICMP fragmentation-needed / packet-too-big that would shrink them is filtered: let that ICMP through, or clamp the TCP MSS on the path)" : ''}; check that ${flow.service} runs on ${to} and ${cmd} again, or prove the path alone with portolan listen on ${to} and ${cmd} --secret`
              : `connected, but ${flow.service} cannot be recognised on the wire; to prove the path before the product is installed, run portolan listen on ${to} and ${cmd} --secret`,
    'open|filtered': signed
      ? `UDP: no answer to the signed probe and no ICMP error: a firewall drops ${where}, or ${unsigned}`
      : `UDP: no answer and no ICMP error, so the port is open or a firewall drops it; run portolan listen on ${to} and ${cmd} --secret to tell`,
    'wrong-service': `another service answers ${where}: is ${flow.service} on another port, or something else on this one?`,
    'not-serving': ntp?.kiss
      ? `the NTP server on ${example?.address} refuses to serve ${from} (kiss-o'-death ${ntp.kiss}: ${kissWords(ntp.kiss)}); check its access rules (chrony allow / ntpd restrict) and rate limits for ${from}`
      : ntp
        ? `the NTP server on ${example?.address} answers but is not synchronised to any time source itself (stratum ${ntp.stratum}, leap indicator ${ntp.leap ?? '?'}): check its upstream servers or reference clock (chronyc sources / ntpq -p on ${to}) and that it may reach them`
        : example?.detail.includes(SSH_WRAPPED)
          ? `sshd on ${example.address} holds connections from ${from} in silence and closes them, as TCP wrappers do with a source they refuse: check /etc/hosts.allow and /etc/hosts.deny on ${to} for ${from} (an sshd line in hosts.deny, or ALL: ALL, refuses every source hosts.allow does not name)`
          : example?.detail.startsWith(SSH_REFUSED)
            ? `sshd on ${example.address} closes connections from ${from} before identifying itself: check on ${to} its MaxStartups (unauthenticated connections at once, 10:30:100 by default: a job that opens many SSH sessions at once fills it) and PerSourcePenalties in sshd_config, and /etc/hosts.allow and /etc/hosts.deny (TCP wrappers) for ${from}`
            : example?.evidence.smb &&
                'dialect' in example.evidence.smb &&
                example.evidence.smb.dialect === 'SMB1'
              ? `the SMB server on ${example.address} offers only SMB1, which ${from} cannot be expected to speak (SMB1 is off by default on Windows since 10 1709 and Server 2019, and in Samba since 4.11): enable SMB2 or later on ${to} (Samba: server max protocol; Windows: Set-SmbServerConfiguration -EnableSMB2Protocol $true)`
              : example?.evidence.smb && 'refused' in example.evidence.smb
                ? `the SMB server on ${example.address} refuses sessions from ${from} (NetBIOS negative session response ${example.evidence.smb.refused}): check its host access rules for ${from} (Samba: hosts allow / hosts deny in the [global] section of smb.conf)`
                : example?.evidence.http
                  ? `the web server on ${where} answers "${example.evidence.http.status}": the path is open, but the service it fronts cannot serve now (a reverse proxy or load balancer whose backend is down or unhealthy, or ${flow.service} starting or in maintenance: vCenter answers 503 while its services start); check ${flow.service} and what the server forwards to on ${to}, then ${cmd} again`
                  : `${where} answers but refuses to serve: check the service's own configuration on ${to}`,
    'tls-weak': `${where} negotiates TLS below 1.2 or with a weak setup; the product expects TLS 1.2 or later`,
    'tls-failed':
      example?.evidence.errno === 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME'
        ? `the TLS server on ${where} completes a handshake only for a server name (SNI) it has a certificate for, and refused ${example.detail.includes('without a server name') ? 'one without a name' : 'this name'}: a client that connects by one of its names gets through; give ${to}'s DNS name ${flow.product === 'probe' ? 'as HOST' : 'as its inventory address'} (${cmd} sends it as SNI), or check the server's names`
        : `the TLS handshake with ${where} failed: check the service's certificate and TLS settings`,
    'reset-after-connect': example?.detail.includes(RESET_BEFORE_DATA)
      ? `what listens on ${where} accepts connections from ${from} and resets them at once, before any data was sent: the service (or a proxy in front of it) refuses this source, such as a connection limit that is full, a per-source limit or TCP wrappers, or it is a portolan responder at its connection limit; a firewall that resets sessions does so once data flows, so check ${flow.service} and its access rules on ${to}`
      : `${where} accepted the connection, then reset it once data was sent: an IPS or application-aware firewall between ${from} and ${to} resets the session (allow the application, not just the port), or another service on this port resets what it does not understand${signed || example?.detail?.includes('signed probe') ? `; a portolan responder also closes a probe signed with another secret this way: give ${cmd} the secret that listen on ${to} uses (PORTOLAN_SECRET), and see its log ("bad MAC")` : `; if portolan listen runs on ${to}, it resets every probe not signed with its secret this way: give ${cmd} that secret (--secret or PORTOLAN_SECRET)`}`,
    'responder-overloaded': `the portolan responder on ${example?.address ?? to} answered other ports but stayed too busy to answer ${where} (its log says "refused ... load" or nothing at all): the path is not proven either way; ${cmd} again with fewer sources at once, a lower --max-rate, or on a less loaded ${to}`,
    closed:
      dynamic && proto === 'tcp' && !signed
        ? `the ports of ${flow.service} are assigned at run time (a dynamic or transmission range), and every one tried on ${where} reset, none connected: nothing listens on the range yet (normal before the product opens a port), or a firewall rejects it with a TCP reset; a connect cannot tell the two apart, so the path is not proven: run portolan listen on ${to} and ${cmd} --secret to prove it, and if a firewall rejects it, ${allow}`
        : signed
          ? `nothing listens on ${where}, not even the portolan responder: ${
              responderSeen
                ? `portolan listen on ${to} answered other ports of ${example?.address ?? to} but did not bind this one (its "not bound on" lines say why: a port below 1024 needs root or CAP_NET_BIND_SERVICE), or the service there (${flow.service}) is stopped`
                : `portolan listen is not running on ${to} (no port of ${example?.address ?? to} answered a signed probe), or it did not bind this port (its "not bound on" lines say why: a port below 1024 needs root or CAP_NET_BIND_SERVICE), or the service there (${flow.service}) is stopped`
            }; the refusal (a TCP reset or ICMP port unreachable) shows the path is open up to ${to}, unless a firewall refuses for it that way: then ${allow}`
          : `nothing listens on ${where}: is the service installed and running (${flow.service}: ${purposeClause(flow)})? If a firewall answers for it with a TCP reset / port unreachable, ${allow}`,
    blocked: `a firewall rejects ${where} (ICMP unreachable / prohibited): ${allow}`,
    filtered:
      proto === 'udp' && flow.service === 'ntp'
        ? `no answer to spaced NTP requests, and a live NTP server answers every client it serves: a firewall drops ${where}, no NTP server runs there, or the one there does not serve ${from} (chronyd serves only the clients an allow line names, none by default; ntpd ignores those a restrict ... ignore line names): check its access rules, and ${allow}`
        : proto === 'tcp'
          ? `no answer after spaced retries: a firewall drops ${where}, or drops the answers on their way back (a stateful firewall or an asymmetric route on the return path that sees the server's SYN-ACK without the SYN), or the listener's accept queue is full (an application that stopped accepting connections: on ${to}, ss -ltn shows the port's Recv-Q above its Send-Q); ${allow}`
          : `no answer after spaced retries: a firewall drops ${where}; ${allow}`,
    intermittent: `connects to ${example?.address ?? to} are dropped at random, not by a rule for ${where}: other ports of the address connected only after unanswered tries, so ${flow.service} will fail at times; a SYN rate limit or DoS policy on a firewall or the host (nft/iptables limit, a FortiGate tcp_syn_flood threshold: ${cmd} itself may trip it, so ${cmd} again with a lower --max-rate), a full connection-tracking table (dmesg says "nf_conntrack: table full, dropping packet": raise net.netfilter.nf_conntrack_max), or a lossy link; find which, then ${cmd} again`,
    'no-host': `no machine on the local link answers ARP/NDP for ${example?.address ?? to}${named ? ` (the inventory gives ${named} for ${to})` : ''}: the host is down, or the inventory address${named ? ' or its DNS / hosts entry' : ''} is stale or wrong; check that ${to} is up and still has this address`,
    'dns-failed': `fix the name or the inventory address of ${to}`,
    'no-route': `this machine cannot send to ${example?.address ?? to} at all (no route, the interface is down, or a broadcast address): not a firewall; fix the routing or the inventory address of ${to} before checking ${proto} ${from} -> ${to}`,
    skipped: 'nothing to probe from here',
  };
  return `${advice[verdict]} (needed by ${flow.product}: ${firstSourceText(flow)})`;
}

/** In the detail of a service connect that was reset before the probe sent anything (see connectFailure). */
export const RESET_BEFORE_DATA = 'before anything was sent';

/**
 * How the detail of a service probe starts when the service, one portolan speaks, sent nothing back
 * in time ("connected; no SSH identification line came back", "connected; no answer to the TLS
 * ClientHello ..."): hintFor then says so rather than that the service cannot be recognised.
 */
export const SILENT_SERVICE = 'connected; no ';

/**
 * In the detail of a service probe whose server closed the connection without answering what it
 * was sent (see unanswered in conn.ts): hintFor then says it closed, not that it was slow.
 */
export const CLOSED_UNANSWERED = 'closed the connection with no answer to';

/** How an SSH probe's detail starts when the server closed before its identification line (not-serving). */
export const SSH_REFUSED = 'the server closed the connection without its SSH identification line';

/** In an SSH probe's detail when the peer closed after portolan's identification line without its own. */
export const SSH_CLOSED_AFTER_OURS = 'after our SSH identification line with no line of its own';

/**
 * In the detail of a TLS probe whose ClientHello got no answer in time. A TLS server answers with
 * its certificate, a flight of full-size packets, where every packet before it was small: a path
 * that drops full-size packets and the ICMP that would say so (a path MTU black hole, RFC 2923 2.1)
 * loses exactly that flight.
 */
export const TLS_SILENT = 'no answer to the TLS ClientHello';

/** In an SSH probe's detail when the server held the connection in silence, then closed it (libwrap). */
export const SSH_WRAPPED = 'as sshd does with a source its TCP wrappers refuse';

/** An SSH probe's detail when nothing came back, nor a close, within the service timeout. */
export const SSH_SILENT = `${SILENT_SERVICE}SSH identification line came back`;

/**
 * The reason given for a port whose signed probe was closed without a reply and whose service
 * probe got no byte back: hintFor then leads with the secret or host name mismatch.
 */
export const SIGNED_CLOSED =
  'the signed probe was closed without a reply, as portolan listen closes a probe signed with another secret or for another host name';

/** The command a flow's hint speaks of: `probe` for the command line's flows, else `check`. */
function commandOf(flow: Flow): 'probe' | 'check' {
  return flow.product === 'probe' ? 'probe' : 'check';
}

/**
 * Why a running `portolan listen` closes a signed probe without a reply, and what to do: the
 * secret differs, or the probe is signed for another host name than listen's --host (check signs
 * for the inventory host; probe for --name, or for HOST as typed without it), or the two clocks
 * differ by more than MAX_SKEW_SECONDS (the probe's timestamp is refused). A probe flow whose
 * host differs from its address (HOST as typed) was given --name: the name was chosen, so the
 * secret leads and the advice is not to give --name again.
 */
export function signedMismatch(flow: Flow, to: string): string {
  const cmd = commandOf(flow);
  const clock = `or its clock and this machine's differ by more than ${MAX_SKEW_SECONDS} s (its log says "timestamp outside the allowed clock skew"): set both right`;
  const secret = `give ${cmd} the secret that listen on ${to} printed (or PORTOLAN_SECRET)`;
  if (flow.product === 'probe' && flow.to.host !== null && flow.to.host !== flow.to.address)
    return `it uses another secret than this probe (its log says "bad MAC"): ${secret}; or it runs as another host than --name ${to} (its log says "signed for host ..." or names its own host after "bad MAC"): give --name the host listen runs as (its --host); ${clock}`;
  const name =
    flow.product === 'probe'
      ? `probe signs for host ${JSON.stringify(to)} (--name, else HOST as typed): give --name with the host listen runs as (its --host)`
      : `check signs for the inventory host ${JSON.stringify(to)}: listen must run with --host ${to}`;
  return `it uses another secret than this ${cmd}, or runs as another host (its log says "bad MAC" or "signed for host ..."): ${secret}; ${name}; ${clock}`;
}

/** RFC 5905 7.4 kiss codes portolan names; others are shown as sent. */
function kissWords(code: string): string {
  if (code === 'DENY' || code === 'RSTR') return 'access denied by the server';
  if (code === 'RATE') return 'rate exceeded';
  return 'the server will not serve this client';
}
