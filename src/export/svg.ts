import { InputError } from '../errors.js';
import type { Generator } from './generator.js';

// Placeholder until the svg generator lands.
export const generator: Generator = {
  name: 'svg',
  family: 'firewall',
  summary: 'svg (not yet available)',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render() {
    throw new InputError('--to svg is not available yet');
  },
};
