import { InputError } from '../errors.js';
import type { Generator } from './generator.js';

// Placeholder until the markdown generator lands.
export const generator: Generator = {
  name: 'markdown',
  family: 'firewall',
  summary: 'markdown (not yet available)',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render() {
    throw new InputError('--to markdown is not available yet');
  },
};
