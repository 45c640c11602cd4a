import { readFileSync, rmSync } from 'node:fs';
import { filesDir, labRoot, statePath } from './names.js';
import { type LabState, listLabNames, readState } from './state.js';
import { netnsList, netnsPids, tryRun } from './sys.js';

export interface DownReport {
  name: string;
  processes: number;
  netns: number;
}

/** Running (a zombie waiting for its parent to reap it counts as gone: it holds no socket or namespace). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) [ZX]/s.test(stat);
  } catch {
    return false;
  }
}

/** A recorded responder pid is ours only while it still runs portolan listen from this lab's directory. */
function ours(pid: number, state: LabState): boolean {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmd.includes('listen') && cmd.includes(state.dir);
  } catch {
    return false;
  }
}

/**
 * Removes everything the state file lists and nothing else: processes inside the lab's namespaces
 * (and recorded responders still running from its directory), the namespaces (their veths go with
 * them: no end of a lab veth ever lives in the root namespace), the /etc/netns directories, the lab
 * directory, then the state file. Anything already gone is skipped, so it is safe to run twice and
 * after `up` was killed at any point.
 */
export async function down(state: LabState, root = labRoot()): Promise<DownReport> {
  const present = new Set(netnsList());
  const mine = state.objects.netns.filter((n) => present.has(n));
  const killed: number[] = [];
  const kill = (pid: number) => {
    if (pid === process.pid) return;
    try {
      process.kill(pid, 'SIGKILL');
      killed.push(pid);
    } catch {
      // already gone
    }
  };
  for (const pid of state.objects.pids) if (alive(pid) && ours(pid, state)) kill(pid);
  for (const ns of mine) for (const pid of netnsPids(ns)) kill(pid);
  // SIGKILL is delivered asynchronously: wait (briefly) until they are gone.
  const deadline = Date.now() + 5000;
  while (killed.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  for (const ns of mine) tryRun('ip', ['netns', 'del', ns]);
  for (const d of state.objects.etcDirs)
    if (d.startsWith('/etc/netns/') && !d.includes('..')) rmSync(d, { recursive: true, force: true });
  rmSync(filesDir(root, state.name), { recursive: true, force: true });
  rmSync(statePath(root, state.name), { force: true });
  return { name: state.name, processes: killed.length, netns: mine.length };
}

/** Every lab with a state file under the root. */
export async function downAll(root = labRoot()): Promise<DownReport[]> {
  const out: DownReport[] = [];
  for (const name of listLabNames(root)) out.push(await down(readState(name, root), root));
  return out;
}
