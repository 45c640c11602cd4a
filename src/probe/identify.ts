import { excerpt } from './verdict.js';

/**
 * Names the service behind bytes a peer sent, for `wrong-service` details: an SSH banner on a
 * TLS port, plain HTTP where TLS is expected, a TLS alert where plain text is expected.
 */
export function identify(data: Buffer): string | undefined {
  if (data.length === 0) return undefined;
  const head = data.subarray(0, 16).toString('latin1');
  if (head.startsWith('SSH-')) return `an SSH server (${excerpt(firstLine(data), 60)})`;
  if (/^HTTP\/\d/.test(head)) return `a plain HTTP server (${excerpt(firstLine(data), 60)})`;
  if (head.startsWith('220 VMware')) return 'the VMware authentication daemon';
  if (/^\d{3}[ -]/.test(head)) return `a line-based server (${excerpt(firstLine(data), 60)})`;
  const b0 = data[0] as number;
  if ((b0 === 0x15 || b0 === 0x16) && data[1] === 0x03) return 'a TLS server';
  if (data.length >= 8 && data.subarray(4, 8).toString('latin1') === '\xfeSMB') return 'an SMB2 server';
  if (b0 === 0x83 && data.length === 5 && data[1] === 0 && data[2] === 0 && data[3] === 1)
    return 'an SMB server refusing the session (NetBIOS negative session response)';
  if (data.length >= 8 && data.subarray(4, 8).toString('latin1') === '\xffSMB') return 'an SMB1 server';
  if (b0 === 0x03 && data[1] === 0x00 && data.length >= 6 && ((data[5] as number) & 0xf0) === 0xd0)
    return 'an RDP (X.224) server';
  if (b0 === 5 && data.length >= 3 && (data[2] === 12 || data[2] === 13)) return 'a DCE/RPC server';
  if (head.startsWith('PORTOLAN1')) return 'the portolan responder';
  return undefined;
}

export function firstLine(data: Buffer): Buffer {
  const nl = data.indexOf(10);
  return nl === -1 ? data : data.subarray(0, nl);
}

/** A wrong-service detail: who answers instead, or the first bytes. */
export function answeredBy(data: Buffer): string {
  return identify(data) ?? `unrecognised bytes (${excerpt(data, 40) || `${data.length} binary bytes`})`;
}
