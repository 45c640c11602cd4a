import { InputError } from '../errors.js';
import type { Generator } from './generator.js';

// Placeholder until the ufw generator lands.
export const generator: Generator = {
  name: 'ufw',
  family: 'firewall',
  summary: 'ufw (not yet available)',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render() {
    throw new InputError('--to ufw is not available yet');
  },
};
