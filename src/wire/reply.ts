// Writing divert's own replies: the question echoed byte for byte, answer records copied
// in as encoded, an OPT record when the query had one, TC when it does not fit.

import { AA, HEADER_BYTES, OPCODE_MASK, QR, RA, RD, Rcode, CD, TC, TYPE_A, TYPE_AAAA } from './header.js';
import type { Query } from './query.js';
import { ecsOptionBytes, MIN_UDP_PAYLOAD, OPT_BYTES, readEdns, udpLimit, writeOpt, type Edns, type EcsEcho } from './edns.js';
import type { AnswerRecords } from './answers.js';

function replyFlags(q: { flags: number }, rcode: number, authoritative: boolean): number {
  return QR | (q.flags & (OPCODE_MASK | RD | CD)) | RA | (authoritative ? AA : 0) | (rcode & 0xf);
}

/**
 * A reply that echoes the query's header ID and question byte for byte and carries
 * `records` (already encoded, `count` of them) as its answer section.
 */
function buildReply(
  msg: Buffer,
  q: Query,
  rcode: number,
  authoritative: boolean,
  records: Buffer | null,
  count: number,
  edns: Edns | null,
  maxBytes: number,
  echo: EcsEcho | null = null,
): Buffer {
  const questionBytes = q.questionEnd - HEADER_BYTES;
  const optBytes = edns ? OPT_BYTES + (echo ? ecsOptionBytes(echo.ecs) : 0) : 0;
  let flags = replyFlags(q, rcode, authoritative);
  let answerBytes = records ? records.length : 0;
  if (HEADER_BYTES + questionBytes + answerBytes + optBytes > maxBytes) {
    flags |= TC; // RFC 2181 9: a truncated reply carries no partial RRset
    answerBytes = 0;
    count = 0;
  }
  const out = Buffer.allocUnsafe(HEADER_BYTES + questionBytes + answerBytes + optBytes);
  out.writeUInt16BE(q.id, 0);
  out.writeUInt16BE(flags, 2);
  out.writeUInt16BE(questionBytes > 0 ? 1 : 0, 4);
  out.writeUInt16BE(count, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(edns ? 1 : 0, 10);
  msg.copy(out, HEADER_BYTES, HEADER_BYTES, q.questionEnd);
  if (answerBytes > 0) records!.copy(out, q.questionEnd);
  if (edns) writeOpt(out, q.questionEnd + answerBytes, rcode, edns.dnssecOk, echo);
  return out;
}

/**
 * The answer for an intercepted name: its A or AAAA records, or NODATA for any other type.
 * With `ecsScope` (not null) and an ECS option in the query, the reply's OPT echoes that
 * option with SCOPE PREFIX-LENGTH = ecsScope (RFC 7871 7.2.1); otherwise no ECS option is
 * sent, as from a server that does not support ECS.
 */
export function answerReply(
  msg: Buffer,
  q: Query,
  answers: AnswerRecords,
  edns: Edns | null,
  maxBytes: number,
  ecsScope: number | null = null,
): Buffer {
  if (q.qtype === TYPE_A) return recordsReply(msg, q, answers.a, answers.aCount, edns, maxBytes, ecsScope);
  if (q.qtype === TYPE_AAAA) return recordsReply(msg, q, answers.aaaa, answers.aaaaCount, edns, maxBytes, ecsScope);
  return recordsReply(msg, q, null, 0, edns, maxBytes, ecsScope);
}

/** The answer for an intercepted name with these records (null: NODATA); ECS as in answerReply. */
export function recordsReply(
  msg: Buffer,
  q: Query,
  records: Buffer | null,
  count: number,
  edns: Edns | null,
  maxBytes: number,
  ecsScope: number | null = null,
): Buffer {
  const echo = ecsScope !== null && edns?.ecs ? { ecs: edns.ecs, scope: ecsScope } : null;
  return buildReply(msg, q, Rcode.NoError, true, records, count, edns, maxBytes, echo);
}

/** An error reply with the question echoed (REFUSED, SERVFAIL, NOTIMP, FORMERR, BADVERS). */
export function errorReply(msg: Buffer, q: Query, rcode: number, edns: Edns | null = null): Buffer {
  return buildReply(msg, q, rcode, false, null, 0, edns, 0xffff);
}

/** An error reply to a message whose header could be read but not its question: header only. */
export function headerOnlyReply(msg: Buffer, rcode: number): Buffer {
  const out = Buffer.alloc(HEADER_BYTES);
  out.writeUInt16BE(msg.readUInt16BE(0), 0);
  out.writeUInt16BE(replyFlags({ flags: msg.readUInt16BE(2) }, rcode, false), 2);
  return out;
}

/** FORMERR for a message whose header could be read but not its question: header only. */
export function headerOnlyFormErr(msg: Buffer): Buffer {
  return headerOnlyReply(msg, Rcode.FormErr);
}

/**
 * An upstream's reply that came over a stream (DoT), for a client that asked over UDP:
 * unchanged when it fits what the client takes (512, or its EDNS size, at most
 * `maxUdpSize`); otherwise its header with TC set and its question, no records, as a
 * UDP upstream truncates (RFC 2181 9), so the client asks again over TCP. `query` is the
 * client's query, whose question the reply was checked to repeat (query.ts isReplyTo).
 */
export function fitUdp(reply: Buffer, query: Buffer, questionEnd: number, maxUdpSize?: number): Buffer {
  if (reply.length <= MIN_UDP_PAYLOAD) return reply;
  const edns = readEdns(query, { questionEnd });
  if (reply.length <= udpLimit(edns === 'formerr' ? null : edns, maxUdpSize)) return reply;
  const out = Buffer.from(reply.subarray(0, questionEnd));
  out.writeUInt16BE(out.readUInt16BE(2) | TC, 2);
  // a message forwarded by its header alone keeps no question either
  if (questionEnd === HEADER_BYTES) out.writeUInt16BE(0, 4);
  out.fill(0, 6, HEADER_BYTES);
  return out;
}
