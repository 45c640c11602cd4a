import { InputError } from '../errors.js';
import type { Generator } from './generator.js';

// Placeholder until the firewalld generator lands.
export const generator: Generator = {
  name: 'firewalld',
  family: 'firewall',
  summary: 'firewalld (not yet available)',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render() {
    throw new InputError('--to firewalld is not available yet');
  },
};
