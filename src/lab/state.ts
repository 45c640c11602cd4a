import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { PortolanError, UsageError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import { makeDirectory } from '../util/mkdir.js';
import { filesDir, labRoot, statePath } from './names.js';

/**
 * A lab's state file: every namespace, link, directory and process the lab makes, recorded BEFORE
 * it is made, so `lab down` can remove exactly those whatever happened to `lab up` (killed with
 * SIGKILL half way, inventory moved or deleted). `down` needs nothing else than this file.
 */

export type Firewall = 'nftables' | 'iptables';
export const FIREWALLS: readonly Firewall[] = ['nftables', 'iptables'];

/** A host's ruleset: the generated one (minus what `break` removed) or the user's own file. */
export type RulesetSource =
  | { kind: 'generated'; firewall: Firewall }
  | { kind: 'user'; format: 'nftables' | 'iptables-save'; file: string };

/** A flow taken out of a host's generated ruleset by `lab break`. */
export interface Broken {
  from: string;
  protocol: 'tcp' | 'udp';
  port: number;
}

export interface LabHost {
  name: string;
  ns: string;
  /** The host's addresses in the lab (one per family it has), without prefix length. */
  addresses: string[];
  /** The inventory address, as written there (IP, CIDR or DNS name). */
  inventoryAddress: string;
  /** How the lab address was chosen, in words. */
  addressNote: string;
  link: { inner: string; outer: string };
  ruleset: RulesetSource;
  broken: Broken[];
  /** The responder, when the plan gives this host a port to accept. */
  responder?: { pid?: number; log: string; ports?: string };
}

export interface LabState {
  version: 1;
  name: string;
  key: string;
  site: string;
  /** The inventory `up` was given (absolute); later commands use the copies under `dir`. */
  inventory: string;
  /** Extra catalogs (absolute) passed to every command run in the lab. */
  catalogs: string[];
  dir: string;
  createdAt: string;
  /** Process id of `lab up` while it runs. */
  upPid: number;
  phase: 'creating' | 'up';
  firewall: Firewall;
  secret: string;
  hub: string;
  hosts: LabHost[];
  /** Every kernel object and file this lab made (or was about to make), in creation order. */
  objects: { netns: string[]; links: string[]; etcDirs: string[]; pids: number[] };
}

export class LabError extends PortolanError {
  constructor(message: string, code: 'EUSAGE' | 'EIO' = 'EUSAGE', options?: { cause?: unknown }) {
    super(message, code, options);
    this.name = 'LabError';
  }
}

/**
 * Writes the state atomically (a temporary file renamed over the old one), readable by this user
 * only: it holds the responders' shared secret.
 */
export function saveState(state: LabState, root = labRoot()): void {
  writeFileAtomic(statePath(root, state.name), `${JSON.stringify(state, null, 2)}\n`, {
    mode: 0o600,
    follow: false,
  });
}

/**
 * Claims a lab name: the state file (mode 0600) appears complete and exclusively (writeFileAtomic
 * `exclusive`: written to a temporary file, then hard-linked to its name, which fails with EEXIST when
 * the name is taken), so two `up` with the same
 * name never both proceed, and an `up` killed at any point never leaves an empty or half-written state
 * file that `down` or `list` could not read. Refuses when the name is taken.
 */
export function claimState(state: LabState, root = labRoot()): void {
  const path = statePath(root, state.name);
  makeDirectory(dirname(path), 0o700);
  try {
    writeFileAtomic(path, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600, exclusive: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      const old = readStateOrNull(state.name, root);
      const what = old
        ? `site ${old.site}, ${old.phase === 'up' ? 'up' : `being made by pid ${old.upPid}`} since ${old.createdAt}`
        : 'unreadable';
      throw new LabError(
        `lab ${state.name} already exists (${what}; state file ${path}): run "portolan lab down --name ${state.name}" first, or give another --name`,
      );
    }
    throw new LabError(`cannot create ${path}: ${(err as NodeJS.ErrnoException).code}`, 'EIO', {
      cause: err,
    });
  }
  makeOwnDirectory(filesDir(root, state.name));
}

/**
 * Makes the lab's files directory (mode 0700), or takes one a killed `up` left, but only a real
 * directory of this user: a symbolic link or another user's directory at its name would have the
 * lab's files written where someone else chose. A LabError (exit 2) says which.
 */
function makeOwnDirectory(dir: string): void {
  try {
    mkdirSync(dir, { mode: 0o700 });
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST')
      throw new LabError(`cannot create ${dir}: ${(err as NodeJS.ErrnoException).code}`, 'EIO', {
        cause: err,
      });
  }
  const st = lstatSync(dir);
  const uid = process.geteuid?.();
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid))
    throw new LabError(
      `${dir} exists and is ${st.isSymbolicLink() ? 'a symbolic link' : st.isDirectory() ? "another user's directory" : 'not a directory'} (expected no file there, or a directory of this user): remove it, or give another --name`,
    );
  chmodSync(dir, 0o700);
}

function readStateOrNull(name: string, root: string): LabState | null {
  try {
    return JSON.parse(readFileSync(statePath(root, name), 'utf8')) as LabState;
  } catch {
    return null;
  }
}

/** The state of lab `name`; a usage error naming the labs that exist when there is none. */
export function readState(name: string, root = labRoot()): LabState {
  const s = readStateOrNull(name, root);
  if (s) return s;
  const names = listLabNames(root);
  throw new LabError(
    `no lab named ${name} (state directory ${root}; labs: ${names.length ? names.join(', ') : 'none'})`,
  );
}

/** Lab names with a state file under `root`. */
export function listLabNames(root = labRoot()): string[] {
  let files: string[];
  try {
    files = readdirSync(root);
  } catch {
    return [];
  }
  return files
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -5))
    .sort();
}

/** The lab to act on: --name, or the only lab there is. */
export function pickLab(name: string | undefined, root = labRoot()): LabState {
  if (name !== undefined) return readState(name, root);
  const names = listLabNames(root);
  if (names.length === 1) return readState(names[0] as string, root);
  throw new UsageError(
    names.length
      ? `${names.length} labs are up (${names.join(', ')}): give --name`
      : `no lab is up (state directory ${root}): run "portolan lab up SITE.yaml" first`,
  );
}
