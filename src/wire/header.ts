// The DNS header and the codes of its fields: message IDs, flags, opcodes, response codes,
// and the record types and classes divert names. Every other wire module builds on these.

export const HEADER_BYTES = 12;

export const enum Rcode {
  NoError = 0,
  FormErr = 1,
  ServFail = 2,
  NXDomain = 3,
  NotImp = 4,
  Refused = 5,
}

export const TYPE_A = 1;
export const TYPE_AAAA = 28;
export const TYPE_OPT = 41;
export const CLASS_IN = 1;

/** Record types as logs, metrics and messages name them; any other is TYPEnnn (RFC 3597). */
const TYPE_NAMES: Record<number, string> = {
  1: 'A',
  2: 'NS',
  5: 'CNAME',
  6: 'SOA',
  12: 'PTR',
  15: 'MX',
  16: 'TXT',
  28: 'AAAA',
  33: 'SRV',
  35: 'NAPTR',
  39: 'DNAME',
  43: 'DS',
  48: 'DNSKEY',
  64: 'SVCB',
  65: 'HTTPS',
  99: 'SPF',
  255: 'ANY',
  257: 'CAA',
};

export function typeName(type: number): string {
  return TYPE_NAMES[type] ?? `TYPE${type}`;
}

/** Response codes of the header's four bits (RFC 1035, RFC 2136), by name. */
const RCODE_NAMES = [
  'NOERROR',
  'FORMERR',
  'SERVFAIL',
  'NXDOMAIN',
  'NOTIMP',
  'REFUSED',
  'YXDOMAIN',
  'YXRRSET',
  'NXRRSET',
  'NOTAUTH',
  'NOTZONE',
];

export function rcodeName(rcode: number): string {
  return RCODE_NAMES[rcode] ?? `RCODE${rcode}`;
}

export const QR = 0x8000;
export const OPCODE_MASK = 0x7800;
export const AA = 0x0400;
export const TC = 0x0200;
export const RD = 0x0100;
export const RA = 0x0080;
export const CD = 0x0010;

export const OPCODE_QUERY = 0;

/**
 * Opcodes divert never passes upstream: IQUERY (retired, RFC 3425: NOTIMP), NOTIFY and
 * UPDATE (clients may not write upstream zones through divert; its own table takes DNS
 * UPDATE on --update-listen) and DSO (RFC 8490: a session with this server, which it does
 * not offer; a server without DSO answers NOTIMP). QUERY, STATUS and unassigned opcodes
 * are forwarded unchanged.
 */
export function isPassedOn(opcode: number): boolean {
  return opcode !== 1 && opcode !== 4 && opcode !== 5 && opcode !== 6;
}

export function messageId(msg: Buffer): number {
  return msg.readUInt16BE(0);
}

export function setMessageId(msg: Buffer, id: number): void {
  msg.writeUInt16BE(id, 0);
}
