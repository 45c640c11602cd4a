import { InputError } from '../errors.js';
import type { Generator } from './generator.js';

// Placeholder until the azure generator lands.
export const generator: Generator = {
  name: 'azure',
  family: 'firewall',
  summary: 'azure (not yet available)',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render() {
    throw new InputError('--to azure is not available yet');
  },
};
