import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { cellText, labHtml, labJson, labJunit, labTable, matrix } from '../src/lab/report.js';
import type { VerifyReport } from '../src/lab/verify.js';

const hostile = 'a<b>&"c\'';
const report: VerifyReport = {
  lab: 'east',
  site: hostile,
  firewall: 'nftables',
  exhaustive: false,
  startedAt: '2026-11-30T00:00:00.000Z',
  durationMs: 1234,
  hosts: [
    { name: 'p', addresses: ['10.0.0.1'], ruleset: 'generated nftables', broken: [] },
    { name: 's', addresses: ['10.0.0.2'], ruleset: 'generated nftables', broken: ['p->s:3542/tcp'] },
  ],
  flows: [
    {
      id: 'f1',
      product: 'x',
      from: 'p',
      to: 's',
      protocol: 'tcp',
      ports: [[3389, 3389]],
      service: 'rdp',
      local: false,
      verdict: 'ok (responder)',
      failed: false,
      checkFailed: false,
      sources: [{ doc: 'd.txt', ref: 'row 1' }],
      results: [],
    },
    {
      id: 'f2',
      product: 'x',
      from: 'p',
      to: 's',
      protocol: 'tcp',
      ports: [[3542, 3542]],
      service: hostile,
      local: false,
      verdict: 'filtered',
      failed: true,
      checkFailed: true,
      reason: hostile,
      expectedFailure: 'taken out by lab break',
      sources: [{ doc: 'd.txt', ref: 'row 3' }],
      results: [
        {
          address: '10.0.0.2',
          ports: [3542, 3542],
          verdict: 'filtered',
          detail: 'no answer to 3 spaced connects',
        },
      ],
    },
  ],
  notProbed: [],
  unplanned: [
    {
      from: 's',
      to: 'p',
      address: '10.0.0.1',
      protocol: 'tcp',
      port: 22,
      result: 'closed',
      detail: 'ECONNREFUSED',
    },
    {
      from: 'p',
      to: 's',
      address: '10.0.0.2',
      protocol: 'udp',
      port: 53,
      result: 'blocked',
      detail: 'no answer in 1500 ms',
    },
  ],
  errors: [],
  failed: true,
};

describe('lab verify reports', () => {
  it('the matrix: rows from, columns to, failures and leaks counted per pair', () => {
    const m = matrix(report);
    assert.equal(cellText(m[0]?.[1] as never), 'FAIL 1/2');
    assert.equal(cellText(m[1]?.[0] as never), 'LEAK 1');
    assert.equal(cellText(m[0]?.[0] as never), '');
  });

  it('the table names the failing flow, why, and its catalog rows', () => {
    const t = labTable(report, { color: false });
    assert.match(t, /filtered\s+p -> s\s+tcp\/3542/);
    assert.match(t, /expected: taken out by lab break/);
    assert.match(t, /catalog: x: d\.txt row 3/);
    assert.match(t, /closed\s+s -> p tcp\/22/);
    assert.match(t, /2 planned flows: 1 ok \(responder\), 1 filtered; 1 failed/);
  });

  it('JSON carries the flows, the probes and the matrix', () => {
    const doc = JSON.parse(labJson(report));
    assert.equal(doc.flows.length, 2);
    assert.equal(doc.matrix.length, 4);
  });

  it('JUnit and the SVG matrix are well-formed XML with hostile text escaped', () => {
    const dir = mkdtempSync(join(tmpdir(), 'portolan-lab-report-'));
    try {
      const junit = join(dir, 'r.xml');
      writeFileSync(junit, labJunit(report));
      const html = labHtml(report);
      const svg = join(dir, 'm.svg');
      writeFileSync(svg, html.slice(html.indexOf('<svg'), html.indexOf('</svg>') + 6));
      for (const f of [junit, svg]) {
        const r = spawnSync('xmllint', ['--noout', f], { encoding: 'utf8' });
        if (r.error) continue; // xmllint missing: scripts/test.sh installs libxml2-utils
        assert.equal(r.status, 0, r.stderr);
      }
      assert.ok(!html.includes(hostile), 'user text is escaped');
      assert.ok(!/<script|https?:\/\/(?!www\.w3\.org)/.test(html), 'self-contained');
      assert.match(labJunit(report), /failures="2"/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
