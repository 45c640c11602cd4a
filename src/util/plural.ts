/**
 * A count with its noun in the right number: `counted(1, 'host')` is "1 host", `counted(2, 'host')`
 * is "2 hosts", `counted(3, 'entry', 'entries')` is "3 entries". English only (the Japanese texts
 * have no plural).
 */
export function counted(n: number, noun: string, plural = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : plural}`;
}
