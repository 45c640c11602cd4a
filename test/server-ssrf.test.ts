import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { ApiError, type EventRow, type Store } from '../src/server/store.js';
import { deliver, embeddedIPv4, ipv6Bytes, WebhookPolicy } from '../src/server/webhooks.js';

// Webhooks may not reach loopback, link-local or metadata addresses however the address is
// written: an IPv6 address that carries an IPv4 one (NAT64, 6to4, Teredo, IPv4-compatible,
// -mapped, -translated) reaches that IPv4 address through a translator or relay.

/** Each IPv6 form with the IPv4 address it carries, as the URL parser writes it back. */
const EMBEDDING: [string, string][] = [
  ['::ffff:127.0.0.1', '127.0.0.1'],
  ['::ffff:0:127.0.0.1', '127.0.0.1'],
  ['::127.0.0.1', '127.0.0.1'],
  ['::a9fe:a9fe', '169.254.169.254'],
  ['64:ff9b::127.0.0.1', '127.0.0.1'],
  ['64:ff9b::a9fe:a9fe', '169.254.169.254'],
  ['64:ff9b:1::7f00:1', '127.0.0.1'],
  ['64:ff9b:1:7f00:0:100::', '127.0.0.1'],
  ['64:ff9b:1:a9:fe:a9fe::', '169.254.169.254'],
  ['2002:7f00:1::', '127.0.0.1'],
  ['2002:a9fe:a9fe:1::1', '169.254.169.254'],
  ['2001:0:7f00:1::', '127.0.0.1'],
  ['2001:0:4136:e378:8000:63bf:80ff:fffe', '127.0.0.1'],
  ['2001:0:4136:e378:8000:63bf:5601:5601', '169.254.169.254'],
];

test('an IPv6 address is read byte by byte in every written form', () => {
  const hex = (t: string) => Buffer.from(ipv6Bytes(t) as Uint8Array).toString('hex');
  assert.equal(hex('::'), '0'.repeat(32));
  assert.equal(hex('::1'), `${'0'.repeat(31)}1`);
  assert.equal(hex('64:ff9b::127.0.0.1'), '0064ff9b00000000000000007f000001');
  assert.equal(hex('2001:db8:0:0:1::'), '20010db8000000000001000000000000');
  assert.equal(hex('fe80::1%eth0'), 'fe800000000000000000000000000001');
  assert.equal(ipv6Bytes('127.0.0.1'), null);
  assert.deepEqual(embeddedIPv4('::'), []);
  assert.deepEqual(embeddedIPv4('::1'), []);
  assert.deepEqual(embeddedIPv4('2001:db8::1'), []);
  for (const [v6, v4] of EMBEDDING)
    assert.ok(
      embeddedIPv4(v6).some((e) => e.ipv4 === v4),
      `${v6}: ${JSON.stringify(embeddedIPv4(v6))}`,
    );
});

test('a webhook at an IPv6 address carrying a loopback or link-local IPv4 is refused, when added and when sent', async () => {
  const policy = new WebhookPolicy();
  for (const [v6, v4] of EMBEDDING) {
    const why = policy.refused(v6);
    assert.ok(why, `${v6} carries ${v4}: refused`);
    // The local-use NAT64 prefix may be laid out several ways: the first refused reading is named.
    if (!v6.startsWith('64:ff9b:1:'))
      assert.match(why, new RegExp(`carries IPv4 ${v4.replace(/\./g, '\\.')}\\)$`), v6);
    else assert.match(why, /NAT64 \(local-use prefix, \/\d+ layout\) address \S+ carries IPv4 [\d.]+\)$/, v6);
    await assert.rejects(
      policy.check(`http://[${v6}]:8080/hook`),
      (e: unknown) =>
        e instanceof ApiError &&
        e.code === 'EWEBHOOK' &&
        /^body\/url: host "[0-9a-f:.]+" is (loopback|link-local|unspecified)/.test(e.message) &&
        /serve --webhook-allow [0-9a-f:]+\/128 permits this one\)$/.test(e.message),
      v6,
    );
  }
  // Private and public IPv4 addresses carried the same ways are allowed, as they are plain.
  for (const ok of [
    '64:ff9b::a00:1',
    '64:ff9b::808:808',
    '2002:c000:20a::1',
    '::ffff:192.0.2.10',
    '2001:db8::1',
  ])
    assert.equal(policy.refused(ok), null, ok);
  // --webhook-allow of the IPv4 address lets it through in every form, and so does the IPv6 address itself.
  assert.equal(new WebhookPolicy(['127.0.0.1/32']).refused('64:ff9b::7f00:1'), null);
  assert.equal(new WebhookPolicy(['64:ff9b::7f00:1/128']).refused('64:ff9b::7f00:1'), null);
});

test('a name that resolves to such an address is refused when added and when the connection is made', async () => {
  let answer = '64:ff9b::a9fe:a9fe';
  const lookup = ((_host: string, opts: { all?: boolean }, cb: (...a: unknown[]) => void) =>
    opts.all ? cb(null, [{ address: answer, family: 6 }]) : cb(null, answer, 6)) as never;
  const policy = new WebhookPolicy([], lookup);
  await assert.rejects(
    policy.check('https://hooks.example.test/x'),
    /host "hooks\.example\.test" resolves to 64:ff9b::a9fe:a9fe, which is link-local \(cloud metadata services answer there\) \(the NAT64 address 64:ff9b::a9fe:a9fe carries IPv4 169\.254\.169\.254\)/,
  );
  answer = '2002:7f00:1::';
  const err = await new Promise<NodeJS.ErrnoException | null>((resolve) =>
    policy.connectLookup()('hooks.example.test', { all: false }, (e) => resolve(e)),
  );
  assert.equal(err?.code, 'EWEBHOOKADDR');
  assert.match(String(err?.message), /resolves to 2002:7f00:1::, loopback \(the 6to4 address/);
});

test('a webhook stored at a NAT64 loopback address is not sent; an IPv4-mapped one to an allowed receiver is', async () => {
  const got: string[] = [];
  const hook = createServer((req, res) => {
    got.push(req.url ?? '');
    req.resume();
    res.end();
  });
  await new Promise<void>((r) => hook.listen(0, '::', r));
  const port = (hook.address() as AddressInfo).port;
  const hooks = [
    { id: 'nat64', url: `http://[64:ff9b::7f00:1]:${port}/nat64`, createdAt: '' },
    { id: 'teredo', url: `http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:${port}/teredo`, createdAt: '' },
  ];
  const store = { webhooks: async () => hooks } as unknown as Store;
  const event: EventRow = { id: 'e', at: '', site: null, kind: 'test', subject: 's', message: 'm', data: {} };
  const lines: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string) => {
    lines.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    await deliver(store, [event], new WebhookPolicy());
    const text = lines.join('');
    assert.match(text, /webhook nat64 not sent event test: 64:ff9b::7f00:1 is loopback \(the NAT64 address/);
    assert.match(text, /webhook teredo not sent event test: \S+ is loopback \(the Teredo \(client\) address/);
    // The same receiver at ::ffff:127.0.0.1, allowed as 127.0.0.1, gets the event: the check is by address, not by form.
    hooks.splice(0, hooks.length, {
      id: 'mapped',
      url: `http://[::ffff:127.0.0.1]:${port}/mapped`,
      createdAt: '',
    });
    await deliver(store, [event], new WebhookPolicy(['127.0.0.1/32']));
  } finally {
    process.stderr.write = write;
    hook.close();
  }
  assert.deepEqual(got, ['/mapped']);
});

test('no amplification: a burst of events opens at most 4 connections to a webhook, and at most 1000 wait', async () => {
  let open = 0;
  let most = 0;
  let got = 0;
  const hook = createServer((req, res) => {
    open++;
    most = Math.max(most, open);
    got++;
    req.resume();
    // A slow receiver: the burst has to wait for it.
    setTimeout(() => {
      open--;
      res.end();
    }, 2);
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  const port = (hook.address() as AddressInfo).port;
  const store = {
    webhooks: async () => [{ id: 'slow', url: `http://127.0.0.1:${port}/`, createdAt: '' }],
  } as unknown as Store;
  const events: EventRow[] = Array.from({ length: 1200 }, (_, i) => ({
    id: `e${i}`,
    at: '',
    site: 'big',
    kind: 'flow-failing',
    subject: `flow ${i}`,
    message: 'm',
    data: {},
  }));
  const lines: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string) => {
    lines.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    await deliver(store, events, new WebhookPolicy(['127.0.0.1/32']));
  } finally {
    process.stderr.write = write;
    hook.close();
  }
  assert.ok(most <= 4, `${most} connections at once`);
  // Four start at once and a thousand wait: the rest of the burst is counted, not sent.
  assert.equal(got, 1004);
  assert.deepEqual(lines, [
    'portolan serve: webhook slow not sent 196 event(s): more than 1000 were waiting for it at once (GET /api/events has them)\n',
  ]);
});
