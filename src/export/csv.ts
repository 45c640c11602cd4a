import { InputError } from '../errors.js';
import type { Generator } from './generator.js';

// Placeholder until the csv generator lands.
export const generator: Generator = {
  name: 'csv',
  family: 'firewall',
  summary: 'csv (not yet available)',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render() {
    throw new InputError('--to csv is not available yet');
  },
};
