import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { maxRateFrom } from '../src/cli/check.js';
import { burstFor, type Clock, DEFAULT_MAX_RATE, RateLimiter } from '../src/probe/rate.js';
import { BIN, collect, ROOT, runCli } from './helpers.js';

/** A clock the test moves by hand. */
class FakeClock implements Clock {
  t = 0;
  now(): number {
    return this.t;
  }
}

/** The most starts in any window of `windowMs` (a window closed at its start, open at its end). */
function busiest(starts: readonly number[], windowMs: number): number {
  let most = 0;
  let lo = 0;
  for (let hi = 0; hi < starts.length; hi++) {
    while ((starts[hi] as number) - (starts[lo] as number) >= windowMs) lo++;
    most = Math.max(most, hi - lo + 1);
  }
  return most;
}

describe('connect rate: the token bucket, on an injected clock', () => {
  it('starts at most burst + rate x T connects in any window of T, and keeps up the rate', () => {
    for (const rate of [1, 20, 500, 3000]) {
      const clock = new FakeClock();
      const bucket = new RateLimiter(rate, burstFor(rate), clock);
      const starts: number[] = [];
      // A greedy caller asks every 0.25 ms for 10 simulated seconds.
      for (clock.t = 0; clock.t < 10_000; clock.t += 0.25)
        while (bucket.tryTake() === 0) starts.push(clock.t);
      const burst = burstFor(rate);
      assert.ok(busiest(starts, 1000) <= rate + burst, `rate ${rate}: ${busiest(starts, 1000)} in 1 s`);
      assert.ok(busiest(starts, 100) <= Math.ceil(rate / 10) + burst, `rate ${rate}: per 100 ms`);
      // Not slower than asked either: the whole run started rate x 10 s connects, give or take the burst.
      assert.ok(starts.length >= rate * 10, `rate ${rate}: only ${starts.length} in 10 s`);
      assert.ok(starts.length <= rate * 10 + burst, `rate ${rate}: ${starts.length} in 10 s`);
    }
  });

  it('tryTake says how long until the next token, and takes nothing while it waits', () => {
    const clock = new FakeClock();
    const bucket = new RateLimiter(10, 2, clock);
    assert.equal(bucket.tryTake(), 0);
    assert.equal(bucket.tryTake(), 0);
    assert.equal(bucket.tryTake(), 100);
    assert.equal(bucket.tryTake(), 100, 'asking again reserves nothing');
    clock.t = 60;
    assert.equal(bucket.tryTake(), 40);
    clock.t = 100;
    assert.equal(bucket.tryTake(), 0);
    assert.equal(bucket.tryTake(), 100);
    // An idle bucket saves up the burst, never more.
    clock.t = 10_000;
    assert.equal(bucket.tryTake(), 0);
    assert.equal(bucket.tryTake(), 0);
    assert.ok(bucket.tryTake() > 0);
  });

  it('reserve gives every waiter its own start time, one interval apart after the burst', () => {
    const clock = new FakeClock();
    const bucket = new RateLimiter(50, 3, clock);
    const waits = Array.from({ length: 8 }, () => bucket.reserve());
    assert.deepEqual(waits, [0, 0, 0, 20, 40, 60, 80, 100]);
    const starts = waits.map((w) => clock.t + w);
    assert.ok(busiest(starts, 1000) <= 50 + 3);
  });

  it('refuses a rate or burst that is not positive', () => {
    assert.throws(() => new RateLimiter(0), RangeError);
    assert.throws(() => new RateLimiter(Number.NaN), RangeError);
    assert.throws(() => new RateLimiter(10, 0), RangeError);
  });

  it('--max-rate, then PORTOLAN_MAX_RATE, then the documented default of 500', () => {
    assert.equal(DEFAULT_MAX_RATE, 500);
    assert.equal(maxRateFrom(undefined, undefined), 500);
    assert.equal(maxRateFrom(undefined, ''), 500);
    assert.equal(maxRateFrom(undefined, '50'), 50);
    assert.equal(maxRateFrom('20', '50'), 20);
    assert.equal(maxRateFrom('0', undefined), 0);
    assert.throws(() => maxRateFrom('fast', undefined), /--max-rate "fast" is not a rate/);
    assert.throws(() => maxRateFrom(undefined, '-1'), /PORTOLAN_MAX_RATE "-1" is not a rate/);
  });
});

describe('connect rate: probe against real listeners on loopback', () => {
  const servers: net.Server[] = [];
  const ports: number[] = [];
  let accepted = 0;
  before(async () => {
    for (let k = 0; k < 30; k++) {
      const s = net.createServer((c) => {
        accepted++;
        c.destroy();
      });
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      servers.push(s);
      ports.push((s.address() as net.AddressInfo).port);
    }
  });
  after(async () => {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  });

  async function probe(args: string[], env: Record<string, string>) {
    const t0 = performance.now();
    const r = await collect(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: '1', ...env },
    });
    return { ...r, ms: performance.now() - t0 };
  }

  it('--max-rate 20: every connect arrives, and no faster than 20 a second (an upper bound only)', {
    timeout: 120_000,
  }, async () => {
    accepted = 0;
    const r = await probe(
      ['probe', '127.0.0.1', ports.join(','), '--max-rate', '20', '--format', 'json'],
      {},
    );
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { maxRate?: number; flows: { verdict: string }[] };
    assert.equal(doc.maxRate, 20);
    assert.equal(doc.flows[0]?.verdict, 'open-unverified');
    // Every port was reached (plus the quiet RTT connects); the listeners counted each.
    assert.ok(accepted >= ports.length, `${accepted} connects reached the listeners`);
    // connect k starts no earlier than (k - burst) / rate seconds after the first: the run lasts at
    // least that long however fast or slow the machine is. A slow machine only makes it longer.
    const floorMs = ((accepted - burstFor(20)) * 1000) / 20;
    assert.ok(r.ms >= floorMs, `${accepted} connects in ${Math.round(r.ms)} ms: faster than 20/s`);
  });

  it('without --max-rate the report states the default cap', { timeout: 60_000 }, () => {
    const r = runCli(['probe', '127.0.0.1', String(ports[0]), '--format', 'json'], {
      env: { PORTOLAN_MAX_RATE: '' },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { maxRate?: number }).maxRate, DEFAULT_MAX_RATE);
    const off = runCli(['probe', '127.0.0.1', String(ports[0]), '--format', 'json', '--max-rate', '0']);
    assert.equal((JSON.parse(off.stdout) as { maxRate?: number }).maxRate, undefined);
  });

  it('--help of check and probe documents --max-rate and its default', () => {
    for (const cmd of ['check', 'probe']) {
      const help = runCli([cmd, '--help']).stdout;
      assert.match(help, /--max-rate N +connects started per second, over all targets \(default 500,/);
      assert.match(help, /SYN flood/);
    }
  });
});
