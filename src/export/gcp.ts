import { InputError } from '../errors.js';
import type { Generator } from './generator.js';

// Placeholder until the gcp generator lands.
export const generator: Generator = {
  name: 'gcp',
  family: 'firewall',
  summary: 'gcp (not yet available)',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render() {
    throw new InputError('--to gcp is not available yet');
  },
};
