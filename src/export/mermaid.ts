import { InputError } from '../errors.js';
import type { Generator } from './generator.js';

// Placeholder until the mermaid generator lands.
export const generator: Generator = {
  name: 'mermaid',
  family: 'firewall',
  summary: 'mermaid (not yet available)',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render() {
    throw new InputError('--to mermaid is not available yet');
  },
};
