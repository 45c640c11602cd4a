import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { UsageError } from '../errors.js';

/**
 * Names of the kernel objects a lab makes. Linux caps interface names at 15 bytes (IFNAMSIZ 16 with
 * the NUL) and namespaces are easiest to handle within the same bound, so every name is a fixed
 * prefix plus short hashes: `pl` + 6 hex of the lab (its state directory and name) + 5 hex of the
 * host, 13 bytes. Two labs, or two test runs with their own state directories, never share a name.
 */

/** Longest name the kernel takes for an interface (IFNAMSIZ - 1). */
export const IFNAME_MAX = 15;
export const NAME_PREFIX = 'pl';

/** Where state files live: PORTOLAN_LAB_DIR, else /run/portolan/labs (tmpfs: gone at reboot, as the namespaces are). */
export function labRoot(): string {
  return process.env.PORTOLAN_LAB_DIR || '/run/portolan/labs';
}

export function shortHash(text: string, hexChars: number): string {
  return createHash('sha256').update(text).digest('hex').slice(0, hexChars);
}

const LAB_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/i;

/** A lab name as given with --name (or taken from the site name); refused when it cannot be a file name. */
export function checkLabName(name: string, flag = '--name'): string {
  if (!LAB_NAME.test(name) || name.includes('..'))
    throw new UsageError(
      `${flag} ${JSON.stringify(name)} is not a lab name (expected 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit)`,
    );
  return name;
}

/** A site name turned into a default lab name. */
export function defaultLabName(site: string): string {
  const s = site
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 63);
  return s || 'lab';
}

export function labKey(root: string, name: string): string {
  return shortHash(`${root}\0${name}`, 6);
}

/** The namespace of one inventory host: `pl<lab><host>`, 13 bytes. */
export function hostNamespace(key: string, host: string): string {
  return `${NAME_PREFIX}${key}${shortHash(host, 5)}`;
}

/** The namespace holding the lab's bridge. */
export function hubNamespace(key: string): string {
  return `${NAME_PREFIX}${key}-hub`;
}

/** The hub-side end of a host's veth (inside the hub namespace): `v` + the host hash, 6 bytes. */
export function hubPort(host: string): string {
  return `v${shortHash(host, 5)}`;
}

/** The host-side end of every veth, inside the host's own namespace. */
export const HOST_IF = 'eth0';
export const BRIDGE = 'br0';

export function statePath(root: string, name: string): string {
  return join(root, `${name}.json`);
}

export function filesDir(root: string, name: string): string {
  return join(root, name);
}
