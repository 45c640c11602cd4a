import { InputError } from '../errors.js';
import type { Generator } from './generator.js';

// Placeholder until the html generator lands.
export const generator: Generator = {
  name: 'html',
  family: 'firewall',
  summary: 'html (not yet available)',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: true },
  render() {
    throw new InputError('--to html is not available yet');
  },
};
