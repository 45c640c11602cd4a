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
 * fd00:ec2::254 and Alibaba Cloud's 100.100.100.200. An IPv4-mapped IPv6 address
 * (`::ffff:169.254.169.254`) is its IPv4 address (net.BlockList maps it). Private networks
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

  /** Why `address` (an IP literal) may not be reached, or null when it may. */
  refused(address: string): string | null {
    const type = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (this.allowed.check(address, type)) return null;
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

/**
 * Delivers events to every webhook as generic JSON (`{ "event": { id, at, site, kind, subject,
 * message, data } }`), one POST per event, 5 s timeout, no retry and no redirect followed: the
 * event stays in /api/events. Each address is checked as the connection is made (WebhookPolicy).
 * A webhook not delivered is one line on stderr (the server log) naming it and why.
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
  await Promise.allSettled(
    hooks.flatMap((h) =>
      events.map((event) =>
        post(h.url, JSON.stringify({ event }), policy).then(
          (status) => {
            if (status >= 300)
              process.stderr.write(
                `portolan serve: webhook ${h.id} answered event ${event.kind} with HTTP ${status}${status < 400 ? ' (redirects are not followed)' : ''}\n`,
              );
          },
          (err: Error) =>
            process.stderr.write(
              `portolan serve: webhook ${h.id} not sent event ${event.kind}: ${err.message.replace(/\s*\n\s*/g, ' ')}\n`,
            ),
        ),
      ),
    ),
  );
}
