import { InputError } from '../errors.js';
import type { Generator } from './generator.js';

// Placeholder until the windows generator lands.
export const generator: Generator = {
  name: 'windows',
  family: 'firewall',
  summary: 'windows (not yet available)',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render() {
    throw new InputError('--to windows is not available yet');
  },
};
