import { InputError } from '../errors.js';
import type { Generator } from './generator.js';

// Placeholder until the cisco generator lands.
export const generator: Generator = {
  name: 'cisco',
  family: 'firewall',
  summary: 'cisco (not yet available)',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render() {
    throw new InputError('--to cisco is not available yet');
  },
};
