import type { EventRow, Store } from './store.js';

/**
 * Delivers events to every webhook as generic JSON (`{ "event": { id, at, site, kind, subject,
 * message, data } }`), one POST per event, 5 s timeout, no retry: the event stays in /api/events.
 */
export async function deliver(store: Store, events: readonly EventRow[]): Promise<void> {
  let hooks: { url: string }[];
  try {
    hooks = await store.webhooks();
  } catch {
    return;
  }
  await Promise.allSettled(
    hooks.flatMap((h) =>
      events.map((event) =>
        fetch(h.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'portolan-webhook' },
          body: JSON.stringify({ event }),
          signal: AbortSignal.timeout(5000),
        }).then((r) => r.body?.cancel()),
      ),
    ),
  );
}
