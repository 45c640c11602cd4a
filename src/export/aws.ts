import { InputError } from '../errors.js';
import type { Generator } from './generator.js';

// Placeholder until the aws generator lands.
export const generator: Generator = {
  name: 'aws',
  family: 'firewall',
  summary: 'aws (not yet available)',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render() {
    throw new InputError('--to aws is not available yet');
  },
};
