import { InputError } from '../errors.js';
import type { Generator } from './generator.js';

// Placeholder until the nftables generator lands.
export const generator: Generator = {
  name: 'nftables',
  family: 'firewall',
  summary: 'nftables (not yet available)',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render() {
    throw new InputError('--to nftables is not available yet');
  },
};
