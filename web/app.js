// The portolan console: one page per question (what is broken now, what changed, what does this
// flow need). Preact + htm, bundled by scripts/bundle.mjs; it calls the JSON API with the token
// the user pastes (kept in this browser's localStorage).
import htm from 'htm';
import { h, render } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { isAdvisory, peerText, portsText, sourceText } from './catalog-text.js';

const html = htm.bind(h);
// The lists below repeat the CLI's (src/probe/verdict.ts isFailure, src/export/index.ts FORMATS),
// which the browser bundle cannot import; test/bundle.test.ts holds them equal.
const FAILING = new Set([
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
const FORMATS = [
  'nftables',
  'iptables',
  'firewalld',
  'ufw',
  'windows',
  'aws',
  'azure',
  'gcp',
  'cisco',
  'csv',
  'flat-csv',
  'markdown',
  'html',
  'mermaid',
  'dot',
  'svg',
];

function token() {
  return localStorage.getItem('portolan-token') || '';
}

async function api(path, options = {}) {
  const r = await fetch(path, {
    ...options,
    headers: {
      authorization: `Bearer ${token()}`,
      ...(options.body ? { 'content-type': 'application/json' } : {}),
    },
  });
  if (!r.ok) {
    let msg = `HTTP ${r.status}`;
    try {
      msg = (await r.json()).error.message;
    } catch {}
    // A refused token is said in the console's words: what to paste, not what header to send.
    if (r.status === 401)
      msg = token()
        ? 'The server does not accept this token (mistyped, or revoked): paste another in the API token box above.'
        : 'No token yet: paste one in the API token box above.';
    throw new Error(msg);
  }
  return r.headers.get('content-type')?.includes('json') ? r.json() : r;
}

/** Downloads an export with the token (a plain link cannot carry it). */
async function download(path) {
  const r = await api(path);
  const blob =
    r instanceof Response
      ? await r.blob()
      : new Blob([JSON.stringify(r, null, 2)], { type: 'application/json' });
  const cd = r instanceof Response ? r.headers.get('content-disposition') || '' : '';
  // filename* (RFC 8187) carries a name in any script; filename="..." its ASCII stand-in.
  const star = /filename\*=UTF-8''([^;\s]+)/i.exec(cd)?.[1];
  let full = '';
  try {
    full = star ? decodeURIComponent(star) : '';
  } catch {}
  const name =
    full || /filename="([^"]+)"/.exec(cd)?.[1] || `${path.split('/').slice(-1)[0].split('?')[0]}.json`;
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
}

/**
 * Verdicts that are not failures and prove no path either: a flow skipped was not checked, and
 * open|filtered is UDP silence that an open port and a firewall's drop both give. Shown apart
 * from ok, never in its colour.
 */
const UNPROVEN = new Set(['skipped', 'open|filtered']);

function verdictClass(v) {
  if (!v) return 'v-none';
  if (UNPROVEN.has(v)) return 'v-warn';
  return FAILING.has(v) ? 'v-bad' : 'v-ok';
}

/** The spark mark of one result: ok, failing, or proving neither (isolated runs count for nothing). */
function sparkClass(x) {
  if (x.isolated || UNPROVEN.has(x.verdict)) return 'none';
  return x.failed ? 'bad' : 'ok';
}

function useRoute() {
  const [hash, setHash] = useState(location.hash || '#/');
  useEffect(() => {
    const on = () => setHash(location.hash || '#/');
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return hash.slice(1).split('/').filter(Boolean).map(decodeURIComponent);
}

function useLoad(fn, deps) {
  const [state, setState] = useState({ data: null, error: null });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    fn().then(
      (data) => live && setState({ data, error: null }),
      (error) => live && setState({ data: null, error: error.message }),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  return [state, () => setTick((t) => t + 1)];
}

function TokenBox() {
  const [value, setValue] = useState(token());
  return html`<span class="token">
    <input type="password" placeholder="API token" aria-label="API token" value=${value} onInput=${(e) => setValue(e.target.value)} />
    <button onClick=${() => {
      localStorage.setItem('portolan-token', value.trim());
      location.reload();
    }}>Use token</button>
  </span>`;
}

/** When a site's verdicts were measured: never, one time, or the oldest and newest of them. */
function checkedText(c) {
  if (!c) return 'never';
  return c.oldest === c.newest ? c.newest : `${c.oldest} to ${c.newest}`;
}

function Sites() {
  const [{ data, error }, reload] = useLoad(() => api('/api/sites'), []);
  const [yaml, setYaml] = useState('');
  const [msg, setMsg] = useState('');
  const upload = async () => {
    try {
      const r = await api('/api/sites', { method: 'POST', body: JSON.stringify({ yaml }) });
      setMsg(`${r.site}: version ${r.version} (${r.flows} flows)${r.created ? '' : ', unchanged'}`);
      setYaml('');
      reload();
    } catch (e) {
      setMsg(`error: ${e.message}`);
    }
  };
  return html`<section>
    <h1>Sites</h1>
    ${error && html`<p class="err">${error}</p>`}
    <table>
      <thead><tr><th>site</th><th>version</th><th>flows</th><th>verdicts</th><th>checked</th><th>updated</th></tr></thead>
      <tbody>
        ${(data?.sites ?? []).map((s) => {
          // Flows with no verdict yet are said, never left out: a site nobody checked is not all green.
          const unchecked = s.unchecked ?? s.flows - Object.values(s.verdicts).reduce((a, b) => a + b, 0);
          return html`<tr data-site=${s.name}>
            <td><a href=${`#/site/${encodeURIComponent(s.name)}`}>${s.name}</a></td>
            <td>${s.version}</td><td>${s.flows}</td>
            <td class="verdicts">${Object.entries(s.verdicts).map(([v, n]) => html`<span class=${verdictClass(v)}>${n} ${v} </span>`)}${unchecked > 0 ? html`<span class="v-none">${unchecked} unchecked</span>` : ''}</td>
            <td class="checked">${checkedText(s.checkedAt)}</td>
            <td>${s.updatedAt}</td>
          </tr>`;
        })}
      </tbody>
    </table>
    <h2>Upload or edit an inventory</h2>
    <input type="file" accept=".yaml,.yml" aria-label="inventory file" onChange=${async (e) => setYaml(await e.target.files[0].text())} />
    <textarea aria-label="inventory YAML" value=${yaml} onInput=${(e) => setYaml(e.target.value)} placeholder="site: my-site"></textarea>
    <button onClick=${upload} disabled=${!yaml}>Upload</button>
    <p class=${msg.startsWith('error') ? 'err' : ''} role="status">${msg}</p>
  </section>`;
}

function HistoryChart({ history }) {
  const ref = useRef(null);
  useEffect(() => {
    if (!ref.current || !history.length) return;
    const pts = [...history].reverse();
    const xs = pts.map((p) => Date.parse(p.at) / 1000);
    const ys = pts.map((p) => (p.failed ? 0 : 1));
    const plot = new uPlot(
      {
        width: 360,
        height: 120,
        scales: { y: { range: [-0.2, 1.2] } },
        axes: [{}, { values: (_u, vals) => vals.map((v) => (v === 1 ? 'ok' : v === 0 ? 'fail' : '')) }],
        series: [{}, { label: 'verdict', stroke: '#0969da', points: { show: true } }],
        legend: { show: false },
      },
      [xs, ys],
      ref.current,
    );
    return () => plot.destroy();
  }, [history]);
  return html`<div ref=${ref} aria-label="verdict history chart"></div>`;
}

/** Agents whose latest verdicts on a flow disagree (one fails, another passes), or null. */
function disagreement(row) {
  const agents = row.agents ?? [];
  if (!agents.some((a) => a.failed) || agents.every((a) => a.failed)) return null;
  return agents.map((a) => `${a.name} ${a.verdict}`).join(', ');
}

function FlowDetail({ row }) {
  const l = row.latest;
  return html`<div class="detail">
    <strong>${row.flow.id}</strong>
    <p>${row.flow.purpose}</p>
    ${
      (row.agents ?? []).length > 0 &&
      html`<p>By agent: ${row.agents.map((a) => html`<span class=${verdictClass(a.verdict)}>${a.name}: ${a.verdict}</span> at ${a.checkedAt}; `)}</p>`
    }
    <p>Sources: ${row.flow.sources.map((s) => `${s.doc} ${s.ref}`).join('; ')}</p>
    ${
      l &&
      html`<p>Latest: <span class=${verdictClass(l.verdict)}>${l.verdict}</span> at ${l.checkedAt} — ${l.detail?.reason ?? ''}</p>
      <p>${l.detail?.hint ?? ''}</p>
      <pre>${(l.detail?.ports ?? []).map((p) => `${p.address}:${p.port}/${p.protocol} ${p.verdict} ${p.detail}`).join('\n')}</pre>`
    }
    <${HistoryChart} history=${row.history} />
  </div>`;
}

/** Rows of the flow matrix drawn at once. */
const MATRIX_PAGE = 200;

function Matrix({ site }) {
  const [{ data, error }, reload] = useLoad(
    () => api(`/api/sites/${encodeURIComponent(site)}/status`),
    [site],
  );
  const [f, setF] = useState({ product: '', role: '', host: '', verdict: '' });
  const [open, setOpen] = useState(null);
  const [page, setPage] = useState(0);
  const rows = data?.flows ?? [];
  const options = useMemo(() => {
    const o = { product: new Set(), role: new Set(), host: new Set(), verdict: new Set(['unchecked']) };
    for (const r of rows) {
      o.product.add(r.flow.product);
      for (const e of [r.flow.from, r.flow.to]) {
        if (e.role) o.role.add(e.role);
        if (e.host) o.host.add(e.host);
      }
      if (r.verdict) o.verdict.add(r.verdict);
    }
    return o;
  }, [rows]);
  const shown = useMemo(
    () =>
      rows.filter(
        (r) =>
          (!f.product || r.flow.product === f.product) &&
          (!f.role || r.flow.from.role === f.role || r.flow.to.role === f.role) &&
          (!f.host || r.flow.from.host === f.host || r.flow.to.host === f.host) &&
          (!f.verdict || (r.verdict ?? 'unchecked') === f.verdict),
      ),
    [rows, f],
  );
  // A site of thousands of flows is shown a page at a time: the table stays quick to draw and filter.
  const pages = Math.max(1, Math.ceil(shown.length / MATRIX_PAGE));
  const at = Math.min(page, pages - 1);
  const visible = shown.slice(at * MATRIX_PAGE, (at + 1) * MATRIX_PAGE);
  return html`<section>
    ${error && html`<p class="err">${error}</p>`}
    <div class="filters">
      ${['product', 'role', 'host', 'verdict'].map(
        (k) => html`<label>${k} <select aria-label=${`filter ${k}`} value=${f[k]} onChange=${(e) => {
          setF({ ...f, [k]: e.target.value });
          setPage(0);
        }}>
          <option value="">all</option>
          ${[...options[k]].sort().map((v) => html`<option value=${v}>${v}</option>`)}
        </select></label>`,
      )}
      <button onClick=${reload}>Refresh</button>
      <span>${shown.length} of ${rows.length} flows (version ${data?.version ?? ''})</span>
    </div>
    ${
      pages > 1 &&
      html`<nav class="pager" aria-label="flow pages">
      <button disabled=${at === 0} onClick=${() => setPage(at - 1)}>Previous</button>
      <span role="status">flows ${at * MATRIX_PAGE + 1}-${at * MATRIX_PAGE + visible.length} of ${shown.length} (page ${at + 1} of ${pages})</span>
      <button disabled=${at >= pages - 1} onClick=${() => setPage(at + 1)}>Next</button>
    </nav>`
    }
    <table aria-label="flow matrix">
      <thead><tr><th>from</th><th>to</th><th>protocol/ports</th><th>service</th><th>verdict</th><th>checked</th><th>history</th></tr></thead>
      <tbody>
        ${visible.map(
          (
            r,
          ) => html`<tr data-flow=${r.flow.id} onClick=${() => setOpen(open === r.flow.id ? null : r.flow.id)}>
            <td>${r.flow.from.host ?? 'any'} <span class="reason">${r.flow.from.role}</span></td>
            <td>${r.flow.to.host ?? r.flow.to.description ?? 'any'} <span class="reason">${r.flow.to.role}</span></td>
            <td>${r.flow.protocol} ${r.flow.ports.map(([a, b]) => (a === b ? a : `${a}-${b}`)).join(',')}</td>
            <td>${r.flow.service}</td>
            <td class="verdict"><span class=${verdictClass(r.verdict)}>${r.verdict ?? 'unchecked'}</span>
              ${r.failed && r.latest?.detail?.reason ? html`<div class="reason">${r.latest.detail.reason}</div>` : ''}
              ${disagreement(r) ? html`<div class="reason v-bad" role="note">agents disagree: ${disagreement(r)}</div>` : ''}</td>
            <td class="checked">${r.checkedAt ?? 'never'}</td>
            <td><span class="spark">${[...r.history].reverse().map((x) => html`<i class=${sparkClass(x)} title=${`${x.at} ${x.verdict}${x.isolated ? ' (isolated run: history only)' : ''}`}></i>`)}</span></td>
          </tr>`,
        )}
      </tbody>
    </table>
    ${open && html`<${FlowDetail} row=${rows.find((r) => r.flow.id === open)} />`}
  </section>`;
}

function Diff({ site, versions }) {
  const last = versions.at(-1)?.version ?? 1;
  const [from, setFrom] = useState(Math.max(1, last - 1));
  const [to, setTo] = useState(last);
  const [{ data, error }] = useLoad(
    () => api(`/api/sites/${encodeURIComponent(site)}/diff?from=${from}&to=${to}`),
    [site, from, to],
  );
  const [msg, setMsg] = useState('');
  const sel = (v, set, label) =>
    html`<select aria-label=${label} value=${v} onChange=${(e) => set(Number(e.target.value))}>${versions.map((x) => html`<option value=${x.version}>v${x.version}</option>`)}</select>`;
  const line = (fl) =>
    `${fl.from.host ?? 'any'} -> ${fl.to.host ?? 'any'} ${fl.protocol} ${fl.ports.map(([a, b]) => (a === b ? a : `${a}-${b}`)).join(',')} ${fl.service}`;
  return html`<section>
    <p>From ${sel(from, setFrom, 'from version')} to ${sel(to, setTo, 'to version')}</p>
    ${error && html`<p class="err">${error}</p>`}
    ${
      data &&
      html`<ul aria-label="plan diff">
      ${data.added.map((x) => html`<li class="v-ok">+ ${line(x)}</li>`)}
      ${data.removed.map((x) => html`<li class="v-bad">- ${line(x)}</li>`)}
      ${data.changed.map((x) => html`<li class="state-requested">~ ${line(x.from)} => ${line(x.to)}</li>`)}
      <li class="reason">${data.unchanged} unchanged</li>
    </ul>
    <p>Delta change request: ${FORMATS.map((f) => html`<button onClick=${() => download(`/api/sites/${encodeURIComponent(site)}/delta/${f}?from=${from}&to=${to}`).catch((e) => setMsg(e.message))}>${f}</button> `)}</p>
    <button onClick=${async () => {
      try {
        const cr = await api(`/api/sites/${encodeURIComponent(site)}/change-requests`, {
          method: 'POST',
          body: JSON.stringify({ from, to }),
        });
        setMsg(`change request ${cr.id} opened with ${cr.rows.length} rows`);
      } catch (e) {
        setMsg(e.message);
      }
    }}>Open tracked change request</button>`
    }
    <p role="status">${msg}</p>
  </section>`;
}

/** A change row's state in words: rows to allow and rows to remove read differently. */
function rowState(r) {
  if (r.action === 'remove') {
    if (r.state === 'implemented') return 'removed: verified blocked';
    if (r.state === 'broken') return 'open again';
    return /still open/.test(r.evidence) ? 'removal requested (still open)' : 'removal requested';
  }
  return r.state === 'working'
    ? 'implemented and working'
    : r.state === 'broken'
      ? 'broken again'
      : 'requested';
}

function Changes({ site }) {
  const [{ data, error }, reload] = useLoad(
    () => api(`/api/sites/${encodeURIComponent(site)}/change-requests`),
    [site],
  );
  const crs = data?.changeRequests ?? [];
  return html`<section>
    <button onClick=${reload}>Refresh</button>
    ${error && html`<p class="err">${error}</p>`}
    ${crs.map(
      (cr) => html`<div class=${cr.closedAt ? 'cr closed' : 'cr'} data-cr=${cr.id}>
      <h3>Change request ${cr.id.slice(0, 8)} (v${cr.from} -> v${cr.to}, ${cr.createdAt})${cr.closedAt ? ' closed' : ''}</h3>
      ${cr.closedAt ? html`<p class="reason" role="note">Closed at ${cr.closedAt}${cr.supersededBy ? `, superseded by ${cr.supersededBy.slice(0, 8)}` : ''}${cr.closedReason ? `: ${cr.closedReason}` : ''}. Its rows stay as they were; agents no longer check them.</p>` : html`<${CloseForm} site=${site} cr=${cr} others=${crs.filter((x) => x.id !== cr.id)} done=${reload} />`}
      <table aria-label="change request rows">
        <thead><tr><th>rule</th><th>change</th><th>state</th><th>evidence</th></tr></thead>
        <tbody>${cr.rows.map(
          (r) => html`<tr data-rule=${r.rule} data-action=${r.action}><td>${r.rule}</td><td>${r.summary}</td>
            <td class=${`state state-${r.state}`}>${rowState(r)}</td>
            <td><pre class="reason">${r.evidence}</pre></td></tr>`,
        )}</tbody>
      </table></div>`,
    )}
  </section>`;
}

/** Closes an open change request (admin token): a reason, and the request that replaces it if any. */
function CloseForm({ site, cr, others, done }) {
  const [reason, setReason] = useState('');
  const [by, setBy] = useState('');
  const [msg, setMsg] = useState('');
  const short = cr.id.slice(0, 8);
  return html`<p>
    <input aria-label=${`reason for closing ${short}`} placeholder="reason (optional)" maxlength="1000" value=${reason} onInput=${(e) => setReason(e.target.value)} />
    <select aria-label=${`superseded by (${short})`} value=${by} onChange=${(e) => setBy(e.target.value)}>
      <option value="">not superseded</option>
      ${others.map((o) => html`<option value=${o.id}>superseded by ${o.id.slice(0, 8)} (v${o.from} -> v${o.to})</option>`)}
    </select>
    <button onClick=${async () => {
      try {
        await api(
          `/api/sites/${encodeURIComponent(site)}/change-requests/${encodeURIComponent(cr.id)}/close`,
          {
            method: 'POST',
            body: JSON.stringify({
              ...(reason.trim() ? { reason: reason.trim() } : {}),
              ...(by ? { supersededBy: by } : {}),
            }),
          },
        );
        done();
      } catch (e) {
        setMsg(e.message);
      }
    }}>Close ${short}</button>
    <span role="status">${msg}</span>
  </p>`;
}

/** Formats that write one host's own firewall: they take a host (`?host=NAME`), never network mode. */
const HOST_ONLY = new Set(['firewalld', 'ufw', 'windows']);

function Exports({ site, version }) {
  const [msg, setMsg] = useState('');
  const [host, setHost] = useState('');
  const [{ data }] = useLoad(
    () => api(`/api/sites/${encodeURIComponent(site)}/versions/${version}`),
    [site, version],
  );
  const hosts = (data?.hosts ?? []).map((h) => h.name);
  const formats = host ? FORMATS : FORMATS.filter((f) => !HOST_ONLY.has(f));
  const query = host ? `?host=${encodeURIComponent(host)}` : '';
  return html`<section>
    <p>Version ${version}, <label>for <select aria-label="export for" value=${host} onChange=${(e) => {
      setHost(e.target.value);
      setMsg('');
    }}><option value="">the network (every host)</option>${hosts.map((h) => html`<option value=${h}>host ${h}</option>`)}</select></label>:</p>
    ${formats.map((f) => html`<button onClick=${() => download(`/api/sites/${encodeURIComponent(site)}/versions/${version}/export/${f}${query}`).catch((e) => setMsg(e.message))}>${f}</button> `)}
    ${host ? '' : html`<p class="reason">firewalld, ufw and windows write one host's own firewall: choose a host above.</p>`}
    <p role="status" class="err">${msg}</p>
  </section>`;
}

/**
 * The site diagram: the same SVG as `portolan export --to svg` (src/export/svg.ts), drawn by the
 * server for the latest version and placed inline, so hosts and arrows are part of the page.
 */
function Diagram({ site, version }) {
  const ref = useRef(null);
  const [{ data, error }] = useLoad(async () => {
    const r = await api(`/api/sites/${encodeURIComponent(site)}/versions/${version}/export/svg`);
    return r instanceof Response ? r.text() : '';
  }, [site, version]);
  useEffect(() => {
    const box = ref.current;
    if (!box || !data) return;
    const doc = new DOMParser().parseFromString(data, 'image/svg+xml');
    const svg = doc.documentElement;
    if (svg.nodeName !== 'svg') return;
    svg.removeAttribute('width');
    svg.removeAttribute('height');
    box.replaceChildren(document.importNode(svg, true));
  }, [data]);
  return html`<section>
    ${error && html`<p class="err">${error}</p>`}
    <p class="reason">Version ${version}, network mode: hosts grouped by role, one arrow per pair of hosts with its protocols and ports.</p>
    <div class="diagram" ref=${ref} role="figure" aria-label="site diagram"></div>
  </section>`;
}

function Site({ name, tab }) {
  const t = tab || 'matrix';
  // Read again on every tab: a version uploaded meanwhile (by the API, another admin) is the latest
  // the diagram and exports show, not the one seen when the site was first opened.
  const [{ data, error }] = useLoad(() => api(`/api/sites/${encodeURIComponent(name)}`), [name, t]);
  const versions = data?.versions ?? [];
  const link = (id, label) =>
    html`<a href=${`#/site/${encodeURIComponent(name)}/${id}`}><button aria-pressed=${t === id}>${label}</button></a>`;
  return html`<section>
    <h1>${name}</h1>
    ${error && html`<p class="err">${error}</p>`}
    <nav class="tabs">${link('matrix', 'Flows')}${link('diagram', 'Diagram')}${link('diff', 'Plan diff')}${link('changes', 'Change requests')}${link('exports', 'Exports')}</nav>
    ${t === 'matrix' && html`<${Matrix} site=${name} />`}
    ${t === 'diagram' && versions.length > 0 && html`<${Diagram} site=${name} version=${versions.at(-1).version} />`}
    ${t === 'diff' && versions.length > 0 && html`<${Diff} site=${name} versions=${versions} />`}
    ${t === 'changes' && html`<${Changes} site=${name} />`}
    ${t === 'exports' && versions.length > 0 && html`<${Exports} site=${name} version=${versions.at(-1).version} />`}
  </section>`;
}

function Agents() {
  const [{ data, error }, reload] = useLoad(() => api('/api/agents'), []);
  const [msg, setMsg] = useState('');
  const remove = async (a) => {
    if (!confirm(`Remove agent ${a.name} (${a.host})? Its token stops working; its results stay.`)) return;
    try {
      await api(`/api/agents/${encodeURIComponent(a.id)}`, { method: 'DELETE' });
      setMsg(`agent ${a.name} removed`);
      reload();
    } catch (e) {
      setMsg(e.message);
    }
  };
  return html`<section><h1>Agents</h1>
    ${error && html`<p class="err">${error}</p>`}
    <p role="status">${msg}</p>
    <table><thead><tr><th>agent</th><th>site</th><th>host</th><th>last seen</th><th>last results stored</th><th>state</th><th></th></tr></thead>
    <tbody>${(data?.agents ?? []).map((a) => {
      const st = agentState(a);
      return html`<tr data-agent=${a.id}><td>${a.name}</td><td>${a.site}</td><td>${a.host}</td><td>${a.lastSeen ?? 'never'}</td><td>${a.lastRunAt ?? 'none yet'}</td>
        <td class=${`state ${st.cls}`}>${st.text}${a.isolatedAt ? html` <span class="reason">latest run isolated (started ${a.isolatedAt}): neither the server nor any target answered it; kept as history only</span>` : ''}${
          a.refusedAt && !st.notStored
            ? html` <span class="reason">a run was not stored at ${a.refusedAt}: ${a.refused}</span>`
            : ''
        }</td>
        <td><button onClick=${() => remove(a)}>Remove ${a.name}</button></td></tr>`;
    })}</tbody></table></section>`;
}

/**
 * An agent's state in words and colour: only an agent whose heartbeats arrive and whose results
 * are stored is green. One never heard from, silent, or whose runs the server cannot store is not.
 */
function agentState(a) {
  const state = a.state ?? (a.lastSeen ? (a.stale ? 'stale' : 'reporting') : 'never-reported');
  if (state === 'never-reported')
    return { cls: 'v-warn', text: `never reported (enrolled at ${a.createdAt})` };
  if (state === 'stale') return { cls: 'v-bad', text: `silent: no heartbeat since ${a.lastSeen}` };
  if (a.refusedAt && (!a.lastRunAt || a.refusedAt > a.lastRunAt))
    return {
      cls: 'v-bad',
      notStored: true,
      text: `reporting, but its results are not stored (last refused at ${a.refusedAt}: ${a.refused})`,
    };
  if (!a.lastRunAt) return { cls: 'v-warn', text: 'reporting, no results yet' };
  return { cls: 'v-ok', text: 'reporting' };
}

function Events() {
  const [{ data, error }] = useLoad(() => api('/api/events?limit=300'), []);
  return html`<section><h1>Events</h1>
    ${error && html`<p class="err">${error}</p>`}
    <table><thead><tr><th>at</th><th>site</th><th>kind</th><th>what</th></tr></thead>
    <tbody>${(data?.events ?? []).map((e) => html`<tr><td>${e.at}</td><td>${e.site ?? ''}</td><td>${e.kind}</td><td>${e.message}</td></tr>`)}</tbody></table></section>`;
}

function CatalogEntries({ entries, label }) {
  return html`<table aria-label=${label}><thead><tr><th>from</th><th>to</th><th>protocol/ports</th><th>purpose</th><th>source</th></tr></thead>
    <tbody>${entries.map(
      (
        e,
      ) => html`<tr data-entry=${e.id}><td>${peerText(e.from)}</td><td>${peerText(e.to)}</td><td>${e.protocol} ${portsText(e.ports)}</td>
          <td>${e.purpose}${e.notes.length ? html`<div class="reason">${e.notes.join(' ')}</div>` : ''}</td>
          <td class="reason">${e.sources.map(sourceText).join('; ')}</td></tr>`,
    )}</tbody></table>`;
}

function Catalog() {
  const [lang, setLang] = useState(localStorage.getItem('portolan-lang') || 'en');
  const [{ data, error }] = useLoad(() => api(`/api/catalog?lang=${lang}`), [lang]);
  return html`<section><h1>Catalog</h1>
    <label>language <select aria-label="language" value=${lang} onChange=${(e) => {
      localStorage.setItem('portolan-lang', e.target.value);
      setLang(e.target.value);
    }}><option value="en">English</option><option value="ja">日本語</option></select></label>
    ${error && html`<p class="err">${error}</p>`}
    ${(data?.products ?? []).map((p) => {
      const advisories = p.entries.filter(isAdvisory);
      return html`<h2>${p.title} <span class="reason">${p.product}</span></h2>
      <${CatalogEntries} entries=${p.entries.filter((e) => !isAdvisory(e))} label=${`${p.product} entries`} />
      ${
        advisories.length > 0 &&
        html`<h3>Advisories</h3>
        <p class="reason">Beyond the documents, from the vendor pages cited; planned only with --advisories or the inventory key "advisories: include", otherwise shown as warnings.</p>
        <${CatalogEntries} entries=${advisories} label=${`${p.product} advisories`} />`
      }`;
    })}</section>`;
}

function App() {
  const route = useRoute();
  const [page, a, b] = route;
  return html`<header>
      <strong>portolan</strong>
      <a href="#/">Sites</a><a href="#/agents">Agents</a><a href="#/events">Events</a><a href="#/catalog">Catalog</a>
      <${TokenBox} />
    </header>
    <main>
      ${!token() && html`<p class="hint">Paste a token in the API token box above: the admin token is in the file <code>portolan serve</code> named when it started (its line <code>admin token: written to FILE</code> on the first start, <code>admin token: in FILE</code> after); a read-only viewer token is made with the admin token by <code>POST /api/tokens {"kind":"viewer"}</code>.</p>`}
      ${!page && html`<${Sites} />`}
      ${page === 'site' && html`<${Site} name=${a} tab=${b} />`}
      ${page === 'agents' && html`<${Agents} />`}
      ${page === 'events' && html`<${Events} />`}
      ${page === 'catalog' && html`<${Catalog} />`}
    </main>`;
}

render(html`<${App} />`, document.getElementById('app'));
