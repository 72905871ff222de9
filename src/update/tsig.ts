// TSIG (RFC 8945) with HMAC-SHA256: the keys that may send DNS UPDATE (read by
// key-file.ts), the check of a signed request and the signature of the reply.
//
// Written here rather than taken from npm: dns-packet has no TSIG, and the few npm
// packages that sign DNS messages are unmaintained or cover only the client side. A TSIG
// MAC covers exact byte ranges of the message as received (the message without its TSIG
// record, ARCOUNT one less, the original ID), so the record is found by walking the
// message's bytes, not by decoding and encoding it again.
//
// A secret never leaves this module in a log line or an error message.

import { createHmac, timingSafeEqual } from 'node:crypto';
import { HEADER_BYTES } from '../wire/header.js';
import { CLASS_ANY, TYPE_TSIG, canonicalName, nameText, readMessage, type WireRecord } from './records.js';

export const ALGORITHM = 'hmac-sha256';
const HASH = 'sha256';
const MAC_BYTES = 32;
/** RFC 8945 5.2.2.1: a truncated MAC may not be shorter than this (half the hash, at least 10). */
const MIN_MAC_BYTES = Math.max(10, MAC_BYTES / 2);
/** The fudge divert signs with, and the most it grants a request (RFC 8945 10 recommends 300). */
export const FUDGE_SECONDS = 300;

/** TSIG error codes (RFC 8945 3, in the TSIG record; the header says NOTAUTH). */
export const TsigError = { NONE: 0, BADSIG: 16, BADKEY: 17, BADTIME: 18, BADTRUNC: 22 } as const;

export interface TsigKey {
  /** Lower case, without the trailing dot, as the history shows it. */
  name: string;
  algorithm: typeof ALGORITHM;
  secret: Buffer;
}

export type TsigKeys = ReadonlyMap<string, TsigKey>;

/** What the signed part of a TSIG covers besides the message (RFC 8945 4.3.3). */
interface TsigVariables {
  keyName: Buffer[];
  klass: number;
  ttl: number;
  algorithm: Buffer[];
  /** Seconds since the epoch (48 bits). */
  timeSigned: number;
  fudge: number;
  error: number;
  other: Buffer;
}

/** A TSIG record as read from a message. */
export interface TsigRecord extends TsigVariables {
  /** Where the record starts: the message it signs is everything before it. */
  start: number;
  mac: Buffer;
  originalId: number;
}

function u16(value: number): Buffer {
  const out = Buffer.alloc(2);
  out.writeUInt16BE(value);
  return out;
}

function u48(value: number): Buffer {
  const out = Buffer.alloc(6);
  out.writeUInt16BE(Math.floor(value / 2 ** 32), 0);
  out.writeUInt32BE(value % 2 ** 32, 2);
  return out;
}

function variablesBytes(v: TsigVariables): Buffer {
  const classTtl = Buffer.alloc(6);
  classTtl.writeUInt16BE(v.klass, 0);
  classTtl.writeUInt32BE(v.ttl, 2);
  return Buffer.concat([
    canonicalName(v.keyName),
    classTtl,
    canonicalName(v.algorithm),
    u48(v.timeSigned),
    u16(v.fudge),
    u16(v.error),
    u16(v.other.length),
    v.other,
  ]);
}

/**
 * The message a MAC covers: `msg` up to `tsigStart` (the TSIG record left out), ARCOUNT
 * one less when a TSIG was in it, and the ID set to the original one.
 */
function unsignedPart(msg: Buffer, tsigStart: number, originalId: number, hadTsig: boolean): Buffer {
  const out = Buffer.from(msg.subarray(0, tsigStart));
  out.writeUInt16BE(originalId, 0);
  if (hadTsig) out.writeUInt16BE(out.readUInt16BE(10) - 1, 10);
  return out;
}

function computeMac(secret: Buffer, parts: Buffer[]): Buffer {
  const hmac = createHmac(HASH, secret);
  for (const part of parts) hmac.update(part);
  return hmac.digest();
}

/** A request MAC, when signing a reply, goes first with its length (RFC 8945 4.3.1). */
function requestMacPrefix(requestMac: Buffer | undefined): Buffer[] {
  return requestMac ? [u16(requestMac.length), requestMac] : [];
}

export interface SignOptions {
  /** Seconds since the epoch; the clock by default. */
  now?: number;
  fudge?: number;
  /** Signing a reply: the MAC of the request it answers. */
  requestMac?: Buffer;
  error?: number;
  /** Other Data: a BADTIME reply carries the server's time here. */
  other?: Buffer;
  /** Time Signed when it is not `now` (a BADTIME reply echoes the client's). */
  timeSigned?: number;
}

function tsigRecordBytes(
  key: Buffer[],
  algorithm: Buffer[],
  v: { timeSigned: number; fudge: number; mac: Buffer; originalId: number; error: number; other: Buffer },
): Buffer {
  const rdata = Buffer.concat([
    canonicalName(algorithm),
    u48(v.timeSigned),
    u16(v.fudge),
    u16(v.mac.length),
    v.mac,
    u16(v.originalId),
    u16(v.error),
    u16(v.other.length),
    v.other,
  ]);
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(TYPE_TSIG, 0);
  fixed.writeUInt16BE(CLASS_ANY, 2);
  fixed.writeUInt32BE(0, 4);
  fixed.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([canonicalName(key), fixed, rdata]);
}

function appendRecord(msg: Buffer, record: Buffer): Buffer {
  const out = Buffer.concat([msg, record]);
  out.writeUInt16BE(out.readUInt16BE(10) + 1, 10);
  return out;
}

const ALGORITHM_LABELS = [Buffer.from(ALGORITHM)];

function labelsOf(name: string): Buffer[] {
  return name
    .split('.')
    .filter((l) => l !== '')
    .map((l) => Buffer.from(l, 'latin1'));
}

/** `msg` (a request, or a reply with `requestMac`) with a TSIG record signed by `key` appended. */
export function signMessage(msg: Buffer, key: TsigKey, options: SignOptions = {}): { message: Buffer; mac: Buffer } {
  const now = options.now ?? Math.floor(Date.now() / 1000);
  const variables: TsigVariables = {
    keyName: labelsOf(key.name),
    klass: CLASS_ANY,
    ttl: 0,
    algorithm: ALGORITHM_LABELS,
    timeSigned: options.timeSigned ?? now,
    fudge: options.fudge ?? FUDGE_SECONDS,
    error: options.error ?? TsigError.NONE,
    other: options.other ?? Buffer.alloc(0),
  };
  const originalId = msg.readUInt16BE(0);
  const mac = computeMac(key.secret, [
    ...requestMacPrefix(options.requestMac),
    unsignedPart(msg, msg.length, originalId, false),
    variablesBytes(variables),
  ]);
  const record = tsigRecordBytes(variables.keyName, variables.algorithm, { ...variables, mac, originalId });
  return { message: appendRecord(msg, record), mac };
}

/**
 * A reply that refuses a request's signature (BADKEY, BADSIG): a TSIG record with the
 * request's key and algorithm names and the error, but no MAC, since the reply cannot be
 * signed with a key the server does not have or the client does not hold (RFC 8945 5.3.2).
 */
export function appendUnsignedError(msg: Buffer, request: TsigRecord, error: number): Buffer {
  const record = tsigRecordBytes(request.keyName, request.algorithm, {
    timeSigned: request.timeSigned,
    fudge: request.fudge,
    mac: Buffer.alloc(0),
    originalId: msg.readUInt16BE(0),
    error,
    other: Buffer.alloc(0),
  });
  return appendRecord(msg, record);
}

function readTsig(record: WireRecord): TsigRecord | null {
  const rdata = record.rdata;
  // the algorithm name: uncompressed (RFC 8945 4.2), so it is read within the RDATA
  const algorithm: Buffer[] = [];
  let pos = 0;
  for (;;) {
    if (pos >= rdata.length) return null;
    const len = rdata[pos];
    if (len === 0) break;
    if (len > 63 || pos + 1 + len > rdata.length) return null;
    algorithm.push(rdata.subarray(pos + 1, pos + 1 + len));
    pos += 1 + len;
  }
  pos += 1;
  if (pos + 10 > rdata.length) return null;
  const timeSigned = rdata.readUInt16BE(pos) * 2 ** 32 + rdata.readUInt32BE(pos + 2);
  const fudge = rdata.readUInt16BE(pos + 6);
  const macSize = rdata.readUInt16BE(pos + 8);
  pos += 10;
  if (pos + macSize + 6 > rdata.length) return null;
  const mac = rdata.subarray(pos, pos + macSize);
  pos += macSize;
  const originalId = rdata.readUInt16BE(pos);
  const error = rdata.readUInt16BE(pos + 2);
  const otherLength = rdata.readUInt16BE(pos + 4);
  pos += 6;
  if (pos + otherLength !== rdata.length) return null;
  return {
    start: record.start,
    keyName: record.name,
    klass: record.klass,
    ttl: record.ttl,
    algorithm,
    timeSigned,
    fudge,
    mac,
    originalId,
    error,
    other: rdata.subarray(pos),
  };
}

/** What the check of a message's TSIG found; the reply each outcome gets is the caller's. */
export type Verification =
  /** No TSIG record. */
  | { status: 'unsigned' }
  /** The TSIG record is malformed or misplaced: FORMERR. */
  | { status: 'malformed'; reason: string }
  /** BADKEY or BADSIG: NOTAUTH, answered with an unsigned TSIG (appendUnsignedError). */
  | { status: 'rejected'; error: number; tsig: TsigRecord; reason: string }
  /** BADTIME or BADTRUNC: the MAC is right, so NOTAUTH is answered signed with the key. */
  | { status: 'signed-error'; error: number; key: TsigKey; tsig: TsigRecord; reason: string }
  | { status: 'verified'; key: TsigKey; tsig: TsigRecord };

export interface VerifyOptions {
  /** Seconds since the epoch; the clock by default. */
  now?: number;
  /** Checking a reply: the MAC of the request it answers. */
  requestMac?: Buffer;
}

function findTsig(msg: Buffer): { tsig: TsigRecord } | { reason: string } | null {
  const message = readMessage(msg);
  if (!message) return { reason: 'the message cannot be read' };
  const all = [...message.answers, ...message.authority, ...message.additional];
  const at = all.findIndex((r) => r.type === TYPE_TSIG);
  if (at < 0) return null;
  if (at !== all.length - 1 || message.additional.length === 0)
    return { reason: 'the TSIG record is not the last record of the additional section' };
  const tsig = readTsig(all[at]);
  if (!tsig) return { reason: 'the TSIG record is malformed' };
  if (tsig.klass !== CLASS_ANY) return { reason: 'the TSIG record is not of class ANY' };
  return { tsig };
}

/**
 * Checks the TSIG of `msg` against `keys` in RFC 8945 5.2's order: the key and algorithm,
 * then the MAC, then the time. The time window is the request's fudge, at most
 * FUDGE_SECONDS, so a signed request cannot be replayed for longer than that.
 */
export function verifyMessage(msg: Buffer, keys: TsigKeys, options: VerifyOptions = {}): Verification {
  if (msg.length < HEADER_BYTES) return { status: 'malformed', reason: 'shorter than a header' };
  const found = findTsig(msg);
  if (found === null) return { status: 'unsigned' };
  if ('reason' in found) return { status: 'malformed', reason: found.reason };
  const { tsig } = found;
  const keyName = nameText(tsig.keyName);
  const key = keys.get(keyName);
  if (!key) return { status: 'rejected', error: TsigError.BADKEY, tsig, reason: `unknown key "${keyName}"` };
  const algorithm = nameText(tsig.algorithm);
  if (algorithm !== key.algorithm) {
    return {
      status: 'rejected',
      error: TsigError.BADKEY,
      tsig,
      reason: `key "${keyName}" is ${key.algorithm}, the request says "${algorithm}"`,
    };
  }
  if (tsig.mac.length > MAC_BYTES || tsig.mac.length < MIN_MAC_BYTES) {
    return { status: 'malformed', reason: `a MAC of ${tsig.mac.length} bytes (expected ${MIN_MAC_BYTES} to ${MAC_BYTES})` };
  }
  const expected = computeMac(key.secret, [
    ...requestMacPrefix(options.requestMac),
    unsignedPart(msg, tsig.start, tsig.originalId, true),
    variablesBytes(tsig),
  ]);
  if (!timingSafeEqual(expected.subarray(0, tsig.mac.length), tsig.mac)) {
    return { status: 'rejected', error: TsigError.BADSIG, tsig, reason: `the MAC does not match key "${keyName}"` };
  }
  const now = options.now ?? Math.floor(Date.now() / 1000);
  const window = Math.min(tsig.fudge, FUDGE_SECONDS);
  if (Math.abs(now - tsig.timeSigned) > window) {
    return {
      status: 'signed-error',
      error: TsigError.BADTIME,
      key,
      tsig,
      reason: `signed at ${tsig.timeSigned}, ${now - tsig.timeSigned} s from the server's clock (allowed: ${window} s)`,
    };
  }
  if (tsig.mac.length < MAC_BYTES) {
    return {
      status: 'signed-error',
      error: TsigError.BADTRUNC,
      key,
      tsig,
      reason: `a MAC truncated to ${tsig.mac.length} bytes; divert wants all ${MAC_BYTES}`,
    };
  }
  return { status: 'verified', key, tsig };
}

/**
 * Signs `reply` (without a TSIG yet) as the answer to a request whose TSIG was checked:
 * its MAC covers the request's MAC first. A BADTIME reply keeps the client's Time Signed
 * and carries the server's time as Other Data, so the client can check it (RFC 8945 5.2.3).
 */
export function signReply(
  reply: Buffer,
  key: TsigKey,
  request: TsigRecord,
  error: number = TsigError.NONE,
  now = Math.floor(Date.now() / 1000),
): Buffer {
  const badTime = error === TsigError.BADTIME;
  return signMessage(reply, key, {
    now,
    requestMac: request.mac,
    error,
    timeSigned: badTime ? request.timeSigned : now,
    other: badTime ? u48(now) : undefined,
  }).message;
}
