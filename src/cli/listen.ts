import { UsageError } from '../errors.js';

// Placeholder until the listen command lands.
export async function run(_argv: string[]): Promise<number> {
  throw new UsageError('portolan listen is not available yet');
}
