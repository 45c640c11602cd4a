import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { ApiError, type EventRow, type Store } from './store.js';

/**
 * Addresses a webhook may not reach unless `serve --webhook-allow CIDR` names them: the serve
 * host itself and its link: what a server-side request must not be steered to (SSRF). Sources:
 * RFC 6890 (special-purpose address registries), RFC 3927 (IPv4 link-local, where cloud
 * metadata services answer: 169.254.169.254 on AWS, GCP, Azure, OpenStack), RFC 4291 (IPv6
 * loopback, unspecified, link-local fe80::/10, multicast), AWS's IPv6 metadata address
 * fd00:ec2::254 and Alibaba Cloud's 100.100.100.200. An IPv6 address that carries an IPv4 one
 * (`::ffff:169.254.169.254`, NAT64 `64:ff9b::a9fe:a9fe`, 6to4, Teredo: embeddedIPv4) is judged by
 * that IPv4 address too. Private networks
 * (10/8, 172.16/12, 192.168/16, fc00::/7) are allowed: a chat or ticket system inside the
 * network is the usual receiver.
 */
const REFUSED: readonly [string, readonly [string, number, 'ipv4' | 'ipv6'][]][] = [
  [
    'loopback',
    [
      ['127.0.0.0', 8, 'ipv4'],
      ['::1', 128, 'ipv6'],
    ],
  ],
  [
    'unspecified',
    [
      ['0.0.0.0', 8, 'ipv4'],
      ['::', 128, 'ipv6'],
    ],
  ],
  [
    'link-local (cloud metadata services answer there)',
    [
      ['169.254.0.0', 16, 'ipv4'],
      ['fe80::', 10, 'ipv6'],
    ],
  ],
  [
    'a cloud metadata service',
    [
      ['100.100.100.200', 32, 'ipv4'],
      ['fd00:ec2::254', 128, 'ipv6'],
    ],
  ],
  [
    'multicast',
    [
      ['224.0.0.0', 4, 'ipv4'],
      ['ff00::', 8, 'ipv6'],
    ],
  ],
  ['reserved or broadcast', [['240.0.0.0', 4, 'ipv4']]],
].map(([why, nets]) => [why as string, nets as [string, number, 'ipv4' | 'ipv6'][]]);

const REFUSED_LISTS = REFUSED.map(([why, nets]) => {
  const list = new BlockList();
  for (const [net, prefix, type] of nets) list.addSubnet(net, prefix, type);
  return [why, list] as const;
});

/** The ranges refused by default, as `serve --help` and SECURITY.md list them. */
export const REFUSED_RANGES = REFUSED.flatMap(([, nets]) => nets.map(([n, p]) => `${n}/${p}`));

/** Where webhooks may go: the default refusals, less the CIDRs of `serve --webhook-allow`. */
export class WebhookPolicy {
  private readonly allowed = new BlockList();
  /**
   * `allow`: CIDRs (`127.0.0.1/32`, `fe80::/10`) or single addresses reachable in spite of the
   * default refusals. `lookup`: name resolution (dns.lookup; tests give their own). Throws a
   * TypeError naming a CIDR that is not one.
   */
  constructor(
    readonly allow: readonly string[] = [],
    readonly lookup: typeof dnsLookup = dnsLookup,
  ) {
    for (const text of allow) {
      const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(text);
      const type = m?.[1] ? isIP(m[1]) : 0;
      const prefix = m?.[2] === undefined ? (type === 6 ? 128 : 32) : Number(m[2]);
      if (!m?.[1] || !type || prefix > (type === 6 ? 128 : 32))
        throw new TypeError(
          `${JSON.stringify(text)} is not an address or CIDR (expected e.g. 127.0.0.1/32 or fd00::/8)`,
        );
      this.allowed.addSubnet(m[1], prefix, type === 6 ? 'ipv6' : 'ipv4');
    }
  }

  /**
   * Why `address` (an IP literal) may not be reached, or null when it may. An IPv6 address that
   * carries an IPv4 address (embeddedIPv4: NAT64, 6to4, Teredo, IPv4-compatible, -mapped or
   * -translated) is judged by that IPv4 address too: a translator or relay delivers the request
   * there, so `64:ff9b::a9fe:a9fe` is the metadata service 169.254.169.254.
   */
  refused(address: string): string | null {
    const type = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (this.allowed.check(address, type)) return null;
    if (type === 'ipv6')
      for (const e of embeddedIPv4(address)) {
        const why = this.refused(e.ipv4);
        if (why) return `${why} (the ${e.kind} address ${address} carries IPv4 ${e.ipv4})`;
      }
    for (const [why, list] of REFUSED_LISTS) if (list.check(address, type)) return why;
    return null;
  }

  /**
   * A lookup function for http.request: resolves as dns.lookup does and fails with EWEBHOOKADDR
   * when any address of the name is refused, so the connection is made only to an address that
   * was checked (a name that resolved to a public address when the webhook was added and to
   * 169.254.169.254 now, DNS rebinding, is refused at send time).
   */
  connectLookup(): LookupFunction {
    return (hostname, options, callback) => {
      this.lookup(hostname, { ...options, all: true }, (err, addresses) => {
        if (err) return callback(err, '', 0);
        const list = addresses as unknown as LookupAddress[];
        const bad = list.find((a) => this.refused(a.address) !== null);
        if (bad || !list.length) {
          const e = new Error(
            bad
              ? `${hostname} resolves to ${bad.address}, ${this.refused(bad.address)}`
              : `${hostname} resolves to no address`,
          ) as NodeJS.ErrnoException;
          e.code = 'EWEBHOOKADDR';
          return callback(e, '', 0);
        }
        if (options.all) (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
        else callback(null, list[0]?.address as string, list[0]?.family as number);
      });
    };
  }

  /**
   * Checks a webhook URL before it is stored: http or https, and its host (an address, or every
   * address its name resolves to now) not refused. Throws ApiError 400 EWEBHOOK naming the host,
   * the address, why, and the way to allow it.
   */
  async check(url: string): Promise<void> {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new ApiError(
        400,
        'EWEBHOOK',
        `body/url: ${JSON.stringify(url.slice(0, 200))} is not a URL (expected http://HOST/PATH or https://HOST/PATH)`,
      );
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:')
      throw new ApiError(400, 'EWEBHOOK', `body/url: scheme ${u.protocol} (expected http: or https:)`);
    const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
    let addresses: string[];
    if (isIP(host)) addresses = [host];
    else
      addresses = await new Promise((resolve, reject) =>
        this.lookup(host, { all: true }, (err, list) =>
          err
            ? reject(
                new ApiError(
                  400,
                  'EWEBHOOK',
                  `body/url: host ${JSON.stringify(host)} does not resolve here (${err.code ?? err.message}; expected a name this server can resolve, or an address)`,
                ),
              )
            : resolve((list as unknown as LookupAddress[]).map((a) => a.address)),
        ),
      );
    for (const a of addresses) {
      const why = this.refused(a);
      if (why)
        throw new ApiError(
          400,
          'EWEBHOOK',
          `body/url: host ${JSON.stringify(host)}${a === host ? '' : ` resolves to ${a}, which`} is ${why}: webhooks may not reach loopback, unspecified, link-local, metadata, multicast or reserved addresses (expected another host; serve --webhook-allow ${a.includes(':') ? `${a}/128` : `${a}/32`} permits this one)`,
        );
    }
  }
}

/**
 * The 16 bytes of an IPv6 address in text (RFC 4291 section 2.2: hex groups, one `::`, a dotted
 * IPv4 tail; a `%zone` is dropped), or null when the text is not one.
 */
export function ipv6Bytes(text: string): Uint8Array | null {
  const addr = text.replace(/%.*$/, '');
  if (isIP(addr) !== 6) return null;
  let head = addr;
  const tail: number[] = [];
  const dotted = /(?:^|:)(\d+\.\d+\.\d+\.\d+)$/.exec(addr);
  if (dotted?.[1]) {
    for (const part of dotted[1].split('.')) tail.push(Number(part));
    head = addr.slice(0, addr.length - dotted[1].length);
    if (head.endsWith(':') && !head.endsWith('::')) head = head.slice(0, -1);
  }
  const groups = (s: string) => (s === '' ? [] : s.split(':').map((g) => Number.parseInt(g, 16)));
  const [left = '', right] = head.split('::');
  const l = groups(left);
  const r = right === undefined ? [] : groups(right);
  const missing = 8 - tail.length / 2 - l.length - r.length;
  const words = [...l, ...new Array(right === undefined ? 0 : missing).fill(0), ...r];
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  out.set(tail, 16 - tail.length);
  return out;
}

/**
 * The IPv4 addresses an IPv6 address carries, each with the name of the scheme that puts it there:
 * IPv4-mapped `::ffff:0:0/96` and IPv4-compatible `::/96` (RFC 4291 2.5.5), IPv4-translated
 * `::ffff:0:0:0/96` (RFC 2765), NAT64's well-known prefix `64:ff9b::/96` (RFC 6052) and its
 * local-use prefix `64:ff9b:1::/48` (RFC 8215; the operator's prefix may be /48, /56, /64 or /96
 * within it, so the IPv4 address of each of those RFC 6052 layouts the address fits is returned:
 * a webhook is refused when any of them is), 6to4 `2002::/16`
 * (RFC 3056: the IPv4 address in bits 16-47) and Teredo `2001::/32` (RFC 4380: the server in bits
 * 32-63, the client's address inverted in bits 96-127). `[]` for any other address; `::` and `::1`
 * carry none.
 */
export function embeddedIPv4(address: string): { kind: string; ipv4: string }[] {
  const b = ipv6Bytes(address);
  if (!b) return [];
  const v4 = (o: number[] | Uint8Array) => Array.from(o).join('.');
  const zero = (from: number, to: number) => b.slice(from, to).every((x) => x === 0);
  const out: { kind: string; ipv4: string }[] = [];
  if (zero(0, 10) && b[10] === 0xff && b[11] === 0xff)
    out.push({ kind: 'IPv4-mapped', ipv4: v4(b.slice(12)) });
  else if (zero(0, 8) && b[8] === 0xff && b[9] === 0xff && zero(10, 12))
    out.push({ kind: 'IPv4-translated', ipv4: v4(b.slice(12)) });
  else if (zero(0, 12) && !(zero(12, 15) && (b[15] as number) <= 1))
    out.push({ kind: 'IPv4-compatible', ipv4: v4(b.slice(12)) });
  const w0 = ((b[0] as number) << 8) | (b[1] as number);
  const w1 = ((b[2] as number) << 8) | (b[3] as number);
  const w2 = ((b[4] as number) << 8) | (b[5] as number);
  if (w0 === 0x64 && w1 === 0xff9b && w2 === 0 && zero(6, 12))
    out.push({ kind: 'NAT64', ipv4: v4(b.slice(12)) });
  if (w0 === 0x64 && w1 === 0xff9b && w2 === 1) {
    // RFC 6052 2.2: bits 64-71 (byte 8) are zero and skipped, and the suffix after the IPv4
    // address is zero; a layout whose bytes break that is not the one in use.
    const layouts: [string, number[], number][] = [
      ['/96', [12, 13, 14, 15], 16],
      ['/64', [9, 10, 11, 12], 13],
      ['/56', [7, 9, 10, 11], 12],
      ['/48', [6, 7, 9, 10], 11],
    ];
    for (const [len, at, suffix] of layouts)
      if ((len === '/96' || b[8] === 0) && zero(suffix, 16))
        out.push({
          kind: `NAT64 (local-use prefix, ${len} layout)`,
          ipv4: v4(at.map((i) => b[i] as number)),
        });
  }
  if (w0 === 0x2002) out.push({ kind: '6to4', ipv4: v4(b.slice(2, 6)) });
  if (w0 === 0x2001 && w1 === 0) {
    out.push({ kind: 'Teredo (server)', ipv4: v4(b.slice(4, 8)) });
    out.push({ kind: 'Teredo (client)', ipv4: v4(b.slice(12).map((x) => x ^ 0xff)) });
  }
  return out;
}

/** One POST of `body` to `url`, 5 s in all, no redirect followed; resolves with the status code. */
function post(url: string, body: string, policy: WebhookPolicy): Promise<number> {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  // An address in the URL is not looked up, so it is checked here; a name is checked as it resolves.
  const why = isIP(host) ? policy.refused(host) : null;
  if (why) return Promise.reject(new Error(`${host} is ${why}`));
  return new Promise((resolve, reject) => {
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(
      u,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'user-agent': 'portolan-webhook',
        },
        lookup: policy.connectLookup(),
        signal: AbortSignal.timeout(5000),
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** POSTs in flight to one webhook at a time, in this process. */
export const WEBHOOK_IN_FLIGHT = 4;
/** Events waiting for one webhook at most; more are not sent (they stay in GET /api/events). */
export const WEBHOOK_QUEUE = 1000;

/** One webhook's deliveries in this process: at most WEBHOOK_IN_FLIGHT at once, WEBHOOK_QUEUE waiting. */
interface HookQueue {
  running: number;
  waiting: (() => Promise<void>)[];
  dropped: number;
}
const queues = new Map<string, HookQueue>();

/**
 * Runs `job` for webhook `id` when fewer than WEBHOOK_IN_FLIGHT of its POSTs are in flight;
 * resolves when it has run, or at once when WEBHOOK_QUEUE jobs already wait (it is dropped and
 * counted: the queue's last job says how many on stderr).
 */
function enqueue(id: string, job: () => Promise<void>): Promise<void> {
  let q = queues.get(id);
  if (!q) {
    q = { running: 0, waiting: [], dropped: 0 };
    queues.set(id, q);
  }
  const queue = q;
  if (queue.waiting.length >= WEBHOOK_QUEUE) {
    queue.dropped++;
    return Promise.resolve();
  }
  return new Promise<void>((resolve) => {
    const run = async () => {
      queue.running++;
      try {
        await job();
      } finally {
        queue.running--;
        resolve();
        const next = queue.waiting.shift();
        if (next) void next();
        else if (queue.running === 0) {
          if (queue.dropped)
            process.stderr.write(
              `portolan serve: webhook ${id} not sent ${queue.dropped} event(s): more than ${WEBHOOK_QUEUE} were waiting for it at once (GET /api/events has them)\n`,
            );
          queues.delete(id);
        }
      }
    };
    if (queue.running < WEBHOOK_IN_FLIGHT) void run();
    else queue.waiting.push(run);
  });
}

/**
 * Delivers events to every webhook as generic JSON (`{ "event": { id, at, site, kind, subject,
 * message, data } }`), one POST per event, 5 s timeout, no retry and no redirect followed: the
 * event stays in /api/events. Each address is checked as the connection is made (WebhookPolicy).
 * No amplification: at most WEBHOOK_IN_FLIGHT POSTs to one webhook at once in this process, and
 * at most WEBHOOK_QUEUE waiting (a burst of thousands of flow events, a whole site failing at
 * once, does not open thousands of connections to the receiver; what is over is counted on
 * stderr). A webhook not delivered is one line on stderr (the server log) naming it and why.
 * Resolves when this call's events were sent or dropped.
 */
export async function deliver(
  store: Store,
  events: readonly EventRow[],
  policy: WebhookPolicy,
): Promise<void> {
  let hooks: { id: string; url: string }[];
  try {
    hooks = await store.webhooks();
  } catch {
    return;
  }
  await Promise.all(
    hooks.flatMap((h) =>
      events.map((event) =>
        enqueue(h.id, () =>
          // A URL that does not parse fails as a rejection, logged as any other failure.
          Promise.resolve()
            .then(() => post(h.url, JSON.stringify({ event }), policy))
            .then(
              (status) => {
                if (status >= 300)
                  process.stderr.write(
                    `portolan serve: webhook ${h.id} answered event ${event.kind} with HTTP ${status}${status < 400 ? ' (redirects are not followed)' : ''}\n`,
                  );
              },
              (err: Error) => {
                process.stderr.write(
                  `portolan serve: webhook ${h.id} not sent event ${event.kind}: ${err.message.replace(/\s*\n\s*/g, ' ')}\n`,
                );
              },
            ),
        ),
      ),
    ),
  );
}
