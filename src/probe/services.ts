import type { Flow } from '../model/flow.js';
import type { ServiceContext, ServiceOutcome } from './conn.js';
import { httpProbe } from './http.js';
import { msrpcProbe } from './msrpc.js';
import { rdpProbe } from './rdp.js';
import { smbProbe } from './smb.js';
import { sshProbe } from './ssh.js';
import { tlsProbe, tlsServerThere } from './tls.js';
import { CLOSED_UNANSWERED } from './verdict.js';
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
      return plainHttpProbe(ctx);
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

/**
 * Plain HTTP, and who answers instead when the answer is one an HTTPS port gives a plain request:
 * a 400 (nginx: "The plain HTTP request was sent to HTTPS port"), or a close with no answer (a
 * TLS server that reads the request as a broken ClientHello). A TLS handshake that works there
 * makes it wrong-service: the product's plain HTTP request would get the same answer.
 */
async function plainHttpProbe(ctx: ServiceContext): Promise<ServiceOutcome> {
  const out = await httpProbe(ctx);
  const status = out.evidence.http?.status;
  const bad = out.verdict === 'ok' && status !== undefined && /^HTTP\/\S+ 400\b/.test(status);
  const closed = out.verdict === 'open-unverified' && out.detail.includes(CLOSED_UNANSWERED);
  if (!bad && !closed) return out;
  const who = await tlsServerThere(ctx);
  if (!who) return out;
  return {
    verdict: 'wrong-service',
    detail: `expected plain HTTP, ${who} answers${bad ? ` (a plain request gets ${status})` : ' (it closed on a plain request)'}`,
    evidence: out.evidence,
  };
}
