// Network fuzzer, part: the DNS UPDATE port (--update-listen), which the primary serves
// and which parses what anyone sends before the TSIG check. Messages: RFC 2136 updates
// built at random (zone, prerequisites, updates of any type and class), unsigned, with a
// random or truncated TSIG record, signed by an unknown key, or signed by the real key
// (so the verified path, grants and writes run too: the key may change only names under
// upd.fuzz.test, which no control query asks), then mutated at times; sent over UDP and
// over TCP with the framing the DNS port gets.

import { randomBytes } from 'node:crypto';
import { signMessage, type TsigKey } from '../src/update/tsig.js';
import type { Rng } from './netfuzz-rng.js';

export const UPDATE_ZONE = 'upd.fuzz.test';
export const UPDATE_KEY_NAME = 'fuzz-key';

const u16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const u32 = (n: number) => Buffer.from([(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);

function wire(name: string): Buffer {
  const labels = name.split('.').filter((l) => l !== '');
  return Buffer.concat([...labels.flatMap((l) => [Buffer.from([l.length]), Buffer.from(l, 'latin1')]), Buffer.from([0])]);
}

/** A key file granting the fuzz key the names under UPDATE_ZONE. */
export function updateKeyFile(secret: Buffer): string {
  return (
    `key "${UPDATE_KEY_NAME}" { algorithm hmac-sha256; secret "${secret.toString('base64')}"; };\n` +
    `update-policy { grant ${UPDATE_KEY_NAME} subdomain ${UPDATE_ZONE}.; };\n`
  );
}

const NAMES = [UPDATE_ZONE, `a.${UPDATE_ZONE}`, `b.${UPDATE_ZONE}`, `*.w.${UPDATE_ZONE}`, 'www.fuzz.test', 'com', '', 'x.y.z.example'];
const TYPES = [1, 1, 28, 28, 255, 5, 16, 250, 0];
const CLASSES = [1, 1, 1, 254, 255, 3];

function rr(rng: Rng, section: 'prereq' | 'update'): Buffer {
  const name = rng.pick(NAMES);
  const type = rng.pick(TYPES);
  const klass = section === 'prereq' ? rng.pick([255, 254, 1]) : rng.pick(CLASSES);
  let rdata: Buffer;
  if (klass === 255 || (klass === 254 && rng.chance(0.5))) rdata = Buffer.alloc(0);
  else if (type === 1) rdata = Buffer.from([192, 0, 2, rng.int(256)]);
  else if (type === 28) rdata = Buffer.concat([Buffer.from([0x20, 0x01, 0x0d, 0xb8]), Buffer.alloc(11), Buffer.from([rng.int(256)])]);
  else rdata = Buffer.from(Array.from({ length: rng.int(12) }, () => rng.int(256)));
  return Buffer.concat([wire(name), u16(type), u16(klass), u32(rng.chance(0.9) ? 30 : rng.next()), u16(rdata.length), rdata]);
}

function updateMessage(rng: Rng): Buffer {
  const prereqs = Array.from({ length: rng.int(3) }, () => rr(rng, 'prereq'));
  const updates = Array.from({ length: rng.int(5) }, () => rr(rng, 'update'));
  const opcode = rng.chance(0.9) ? 5 : rng.int(16);
  const zones = rng.chance(0.9) ? 1 : rng.int(3);
  const header = Buffer.concat([u16(rng.int(0x10000)), u16(opcode << 11), u16(zones), u16(prereqs.length), u16(updates.length), u16(0)]);
  const zone = Array.from({ length: zones }, () =>
    Buffer.concat([wire(rng.chance(0.8) ? UPDATE_ZONE : rng.pick(NAMES)), u16(rng.chance(0.9) ? 6 : rng.int(300)), u16(1)]),
  );
  return Buffer.concat([header, ...zone, ...prereqs, ...updates]);
}

/** One message for the UPDATE port. `key` is the real key; `mutate` may spoil any of them. */
export function updateFuzzMessage(rng: Rng, key: TsigKey, mutate: (rng: Rng, msg: Buffer) => Buffer): Buffer {
  const msg = updateMessage(rng);
  let out: Buffer;
  switch (rng.int(5)) {
    case 0:
      out = msg; // unsigned
      break;
    case 1:
      out = signMessage(msg, key).message; // signed by the key the server holds
      break;
    case 2:
      out = signMessage(msg, { ...key, name: 'unknown-key' }).message;
      break;
    case 3:
      out = signMessage(
        msg,
        { ...key, secret: randomBytes(32) },
        { now: rng.chance(0.5) ? Math.floor(Date.now() / 1000) : rng.next() },
      ).message;
      break;
    default: {
      // a TSIG record cut short
      const signed = signMessage(msg, key).message;
      out = signed.subarray(0, msg.length + rng.int(signed.length - msg.length));
    }
  }
  return rng.chance(0.3) ? mutate(rng, out) : out;
}
