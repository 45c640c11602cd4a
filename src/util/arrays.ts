/**
 * Array helpers that work at any length. A call with a spread argument (`out.push(...items)`,
 * `Math.max(...values)`) puts every element on the stack and throws "Maximum call stack size
 * exceeded" from about 10^5 elements on (V8), so lists that grow with an inventory (hosts, flows,
 * ports, lines of an export) go through these loops instead.
 */

/** Appends every item of `items` to `target`, in order; returns `target`. */
export function pushAll<T>(target: T[], items: Iterable<T>): T[] {
  for (const item of items) target.push(item);
  return target;
}

/** The largest of `values`, or `empty` when there are none (Math.max of nothing is -Infinity). */
export function maxOf(values: Iterable<number>, empty = Number.NEGATIVE_INFINITY): number {
  let max = empty;
  let first = true;
  for (const v of values) {
    if (first || v > max) max = v;
    first = false;
  }
  return max;
}

/**
 * Appends `item` to the list `map` holds under `key`, starting the list when there is none; returns
 * the list. Grouping this way is linear: rebuilding the list per item (`[...old, item]`) is quadratic.
 */
export function appendTo<K, T>(map: Map<K, T[]>, key: K, item: T): T[] {
  const list = map.get(key);
  if (list) {
    list.push(item);
    return list;
  }
  const fresh = [item];
  map.set(key, fresh);
  return fresh;
}
