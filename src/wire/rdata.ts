// dns-packet's A and AAAA rdata codecs, the one use of dns-packet in the wire code: it
// writes an address as rdlength and bytes, for answer records once per table change
// (answers.ts) and for the address of an ECS echo (edns.ts).

import dnsPacket from 'dns-packet';

// dns-packet's per-type rdata codecs exist at run time but are missing from its typings.
interface RdataCodec {
  encode(value: string, buf: Buffer, offset: number): Buffer;
}
export const rdataCodecs = dnsPacket as unknown as { a: RdataCodec; aaaa: RdataCodec };
