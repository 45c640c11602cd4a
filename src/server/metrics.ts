import { pushAll } from '../util/arrays.js';
import type { Store } from './store.js';

function label(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/**
 * Prometheus text exposition (format 0.0.4): flows per verdict per site, and each agent's last
 * heartbeat as a Unix time in seconds.
 */
export async function metrics(store: Store): Promise<string> {
  const out: string[] = [];
  out.push('# HELP portolan_flows Flows of a site by their latest verdict ("unchecked" when none yet).');
  out.push('# TYPE portolan_flows gauge');
  for (const s of await store.listSites()) {
    const counts = { ...s.verdicts };
    const checked = Object.values(counts).reduce((a, b) => a + b, 0);
    counts.unchecked = Math.max(0, s.flows - checked);
    for (const [v, n] of Object.entries(counts))
      out.push(`portolan_flows{site="${label(s.name)}",verdict="${label(v)}"} ${n}`);
  }
  out.push("# HELP portolan_agent_last_seen_seconds Unix time of the agent's last heartbeat or result.");
  out.push('# TYPE portolan_agent_last_seen_seconds gauge');
  const stale = [
    '# HELP portolan_agent_stale 1 unless the agent is reporting: its heartbeats stopped, or it never sent one.',
    '# TYPE portolan_agent_stale gauge',
  ];
  for (const a of await store.listAgents()) {
    const l = `site="${label(a.site)}",host="${label(a.host)}",agent="${label(a.name)}"`;
    if (a.lastSeen) out.push(`portolan_agent_last_seen_seconds{${l}} ${Date.parse(a.lastSeen) / 1000}`);
    stale.push(`portolan_agent_stale{${l}} ${a.stale ? 1 : 0}`);
  }
  pushAll(out, stale);
  return `${out.join('\n')}\n`;
}
