// The catalog page's words for an entry of GET /api/catalog, as `portolan catalog PRODUCT` prints
// them, kept apart from the page so the tests can import them (test/bundle.test.ts). The shapes are
// the catalog's (catalog/schema.json).

/**
 * A catalog entry's `from` or `to` as `portolan catalog` prints it: a role name; `any (who)` for
 * `{ any: who }`, a peer the documents leave unspecified; `role (same host)` for `{ role, local: true }`.
 */
export function peerText(peer) {
  if (typeof peer === 'string') return peer;
  if (peer && typeof peer.any === 'string') return `any (${peer.any})`;
  if (peer && typeof peer.role === 'string') return peer.local ? `${peer.role} (same host)` : peer.role;
  return JSON.stringify(peer);
}

/** An entry's ports: numbers as they are; a per-drive spec as `base+drive(first..last)`. */
export function portsText(ports) {
  return ports
    .map((p) => {
      const d = typeof p === 'object' && p !== null ? p['per-drive'] : undefined;
      if (d) return `${d.base}+drive(${d.first}..${d.last})`;
      return typeof p === 'object' && p !== null ? 'per-drive' : String(p);
    })
    .join(',');
}

/**
 * One citation: a seed document's table and row and what the row says there
 * (`001_....txt ports row 1: ...`), or an advisory's vendor page (`title <url> (read DATE)`).
 */
export function sourceText(s) {
  const ref = s.ref ? `: ${s.ref}` : '';
  if (s.url !== undefined) return `${s.title ?? s.url} <${s.url}>${s.read ? ` (read ${s.read})` : ''}${ref}`;
  return `${s.doc} ${s.table} row ${s.row}${ref}`;
}

/**
 * Whether an entry is an advisory: `basis: advisory`, or (from an API reply without `basis`) sources
 * that are vendor pages; the catalog loader allows pages on advisories only.
 */
export function isAdvisory(entry) {
  return entry.basis === 'advisory' || entry.sources.some((s) => s.url !== undefined);
}
