import type { Flow } from '../model/flow.js';
import type { ServiceContext, ServiceOutcome } from './conn.js';
import { httpProbe } from './http.js';
import { msrpcProbe } from './msrpc.js';
import { rdpProbe } from './rdp.js';
import { smbProbe } from './smb.js';
import { sshProbe } from './ssh.js';
import { tlsProbe } from './tls.js';
import { vmwareAuthdProbe } from './vmware-authd.js';

/** The application probe for an open TCP port, chosen by the flow's catalog service and TLS flag. */
export type TcpKind = 'https' | 'tls' | 'http' | 'ssh' | 'smb' | 'rdp' | 'vmware-authd' | 'msrpc' | 'plain';
export type UdpKind = 'ntp' | 'plain';

export function tcpKind(flow: Flow, port: number): TcpKind {
  switch (flow.service) {
    case 'https':
      return 'https';
    case 'http':
      return flow.tls ? 'https' : 'http';
    case 'ssh':
      return 'ssh';
    // 445 is SMB over TCP; 139 needs a NetBIOS session first and is checked as plain TCP.
    case 'smb':
      return port === 139 ? 'plain' : 'smb';
    case 'rdp':
      return 'rdp';
    case 'vmware-nfc':
    case 'vmware-authd':
      return 'vmware-authd';
    case 'msrpc':
      return 'msrpc';
  }
  return flow.tls ? 'tls' : 'plain';
}

export function udpKind(flow: Flow): UdpKind {
  return flow.service === 'ntp' ? 'ntp' : 'plain';
}

export const KIND_NAMES: Record<TcpKind | UdpKind, string> = {
  https: 'HTTPS',
  tls: 'TLS',
  http: 'HTTP',
  ssh: 'SSH',
  smb: 'SMB',
  rdp: 'RDP',
  'vmware-authd': 'VMware authd',
  msrpc: 'MS-RPC endpoint mapper',
  ntp: 'NTP',
  plain: 'plain',
};

export function serviceProbe(kind: Exclude<TcpKind, 'plain'>, ctx: ServiceContext): Promise<ServiceOutcome> {
  switch (kind) {
    case 'https':
      return tlsProbe(ctx, { http: true });
    case 'tls':
      return tlsProbe(ctx, { http: false });
    case 'http':
      return httpProbe(ctx);
    case 'ssh':
      return sshProbe(ctx);
    case 'smb':
      return smbProbe(ctx);
    case 'rdp':
      return rdpProbe(ctx);
    case 'vmware-authd':
      return vmwareAuthdProbe(ctx);
    case 'msrpc':
      return msrpcProbe(ctx);
  }
}
