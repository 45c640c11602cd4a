import { InputError } from '../errors.js';
import type { Generator } from './generator.js';

// Placeholder until the dot generator lands.
export const generator: Generator = {
  name: 'dot',
  family: 'firewall',
  summary: 'dot (not yet available)',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render() {
    throw new InputError('--to dot is not available yet');
  },
};
