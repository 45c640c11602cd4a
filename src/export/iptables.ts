import { InputError } from '../errors.js';
import type { Generator } from './generator.js';

// Placeholder until the iptables generator lands.
export const generator: Generator = {
  name: 'iptables',
  family: 'firewall',
  summary: 'iptables (not yet available)',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render() {
    throw new InputError('--to iptables is not available yet');
  },
};
