// The catalog page's words for an entry of GET /api/catalog, kept apart from the page so the
// tests can import them (test/bundle.test.ts). The shapes are the catalog's (catalog/schema.json).

/**
 * A catalog entry's `from` or `to` as the CLI's `portolan catalog PRODUCT` words it: a role name;
 * `{ any: description }`, a peer the documents leave unspecified; `{ role, local: true }`, the
 * same host as the other side.
 */
export function peerText(peer) {
  if (typeof peer === 'string') return peer;
  if (peer && typeof peer.any === 'string') return `unspecified peer: ${peer.any}`;
  if (peer && typeof peer.role === 'string') return peer.local ? `${peer.role} (the same host)` : peer.role;
  return JSON.stringify(peer);
}

/** An entry's ports: numbers and `low-high` ranges as they are; a per-drive port as `per-drive`. */
export function portsText(ports) {
  return ports.map((p) => (typeof p === 'object' && p !== null ? 'per-drive' : String(p))).join(',');
}

/**
 * One source of an entry: a seed document's table and row (`003_....txt discovery row 1`), or an
 * advisory's vendor page (`title <url> (read DATE)`).
 */
export function sourceText(s) {
  if (s.url !== undefined) return `${s.title ?? s.url} <${s.url}>${s.read ? ` (read ${s.read})` : ''}`;
  return `${s.doc} ${s.table} row ${s.row}`;
}

/** Whether an entry is an advisory: its sources are vendor pages, not the seed documents. */
export function isAdvisory(entry) {
  return (
    entry.basis === 'advisory' ||
    (entry.sources.length > 0 && entry.sources.every((s) => s.url !== undefined))
  );
}
