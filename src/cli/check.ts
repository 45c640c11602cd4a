import { UsageError } from '../errors.js';

// Placeholder until the check command lands.
export async function run(_argv: string[]): Promise<number> {
  throw new UsageError('portolan check is not available yet');
}
