// The DNS UPDATE port (--update-listen, off by default): RFC 2136 updates of the address
// table, each signed with a TSIG key of --update-key-file (RFC 8945, HMAC-SHA256), over UDP
// and TCP on one port. A change goes through the same table writes as the admin API's PUT
// and DELETE: conditional on the version it was computed from, recorded in the history as
// made by `dnsupdate:<key name>`, and acknowledged (NOERROR) only once the query path
// answers with it (settle). Unsigned updates are refused, and so is a change of a name
// the key has no grant for in the key file's update-policy (grants.ts), or one the write
// policy refuses (--max-addresses, --allow-tld-wildcards); what divert cannot hold (records
// other than A and AAAA) is refused with the reason in the log.
//
// A signed request counts within its TSIG time window (at most 300 s) and once: a repeat
// (a UDP retransmission, or a replay) gets the first reply again and changes nothing.
// Updates are applied one at a time, so clients of this port never race each other.
//
// Atomicity is per name: all changes of one name are one write. A message that changes
// several names writes them in order; if one fails (a concurrent change, Redis away), the
// client gets SERVFAIL and the log names the names already written.

import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import { DivertError } from '../errors.js';
import { formatHostPort, type HostPort } from '../net/host-port.js';
import type { ServeConfig } from '../config/options.js';
import type { Client, Handler } from '../transport/handler.js';
import type { AddressTable } from '../table/address-table.js';
import type { Settled } from '../serving/handle.js';
import type { Entry, EntryData } from '../entry/entry.js';
import { BindFailure, ListenerSet } from '../transport/listener-set.js';
import { DEFAULT_TCP_LIMITS, type TcpAdmission } from '../transport/connection-slots.js';
import { listenerReport, type ListenerCounts } from '../transport/listener-events.js';
import { ClientNetworks } from '../net/client-networks.js';
import { throttledLog } from '../log.js';
import { HEADER_BYTES, rcodeName } from '../wire/header.js';
import { nameText, readMessage, type WireMessage } from './records.js';
import { authorize, keysWithoutGrant, type Grant } from './grants.js';
import { readKeyFile, type KeyFile } from './key-file.js';
import { appendUnsignedError, FUDGE_SECONDS, signReply, verifyMessage, type TsigKey, type TsigKeys, type TsigRecord } from './tsig.js';
import { UpdateFailure, UpdateRcode, checkPrerequisites, namesOf, planWrites, readUpdate } from './update.js';

const OPCODE_QUERY = 0;
const OPCODE_UPDATE = 5;
const QR = 0x8000;

/** The history's "by" of a change made with `key`, as X-Divert-Client is for the admin API. */
export function actorOf(key: TsigKey): string {
  return `dnsupdate:${key.name}`.slice(0, 100);
}

/**
 * The keys and their grants when DNS UPDATE is on, read before any port is bound so that
 * a bad key file stops the start; null when it is off.
 */
export async function loadUpdateKeys(config: Pick<ServeConfig, 'updateListen' | 'updateKeyFile'>, log: Logger): Promise<KeyFile | null> {
  if (!config.updateListen) {
    if (!config.updateKeyFile) return null;
    // a key file named is read even so: a bad one is found now, not when the port is turned on
    await readKeyFile(config.updateKeyFile);
    log.warn({ file: config.updateKeyFile }, '--update-key-file is given without --update-listen: DNS UPDATE stays off');
    return null;
  }
  if (!config.updateKeyFile) {
    throw new DivertError(
      'BAD_CONFIG',
      `--update-listen ${formatHostPort(config.updateListen)} needs --update-key-file FILE: the TSIG keys that may send updates (tsig-keygen -a hmac-sha256 NAME > FILE)`,
    );
  }
  const keyFile = await readKeyFile(config.updateKeyFile);
  log.info({ file: config.updateKeyFile, keys: [...keyFile.keys.keys()], grants: keyFile.grants.length }, 'DNS UPDATE keys read');
  for (const key of keysWithoutGrant(keyFile.keys.keys(), keyFile.grants)) {
    log.warn(
      { file: config.updateKeyFile, key },
      `DNS UPDATE key "${key}" has no grant in the update-policy of ${config.updateKeyFile}: it may change nothing`,
    );
  }
  return keyFile;
}

export interface UpdateServerOptions {
  listen: HostPort;
  keys: TsigKeys;
  /** The update-policy rules: the names each key may change. */
  grants: readonly Grant[];
  table: AddressTable;
  /** Resolves once the query path answers with every change made so far. */
  settle: () => Promise<Settled>;
  log: Logger;
  /** Seconds since the epoch, for TSIG times (tests inject one). */
  clock?: () => number;
}

export interface UpdateServer {
  address: HostPort;
  /** Messages the port's listeners could not serve, and TCP connections their limits closed. */
  listenerCounts: ListenerCounts;
  close(): Promise<void>;
}

function listenError(err: NodeJS.ErrnoException, at: HostPort): DivertError {
  const where = formatHostPort(at);
  const reason =
    err.code === 'EADDRINUSE'
      ? `${where} is already in use; choose another port`
      : err.code === 'EACCES'
        ? `no permission to listen on ${where} (ports below 1024 need root or CAP_NET_BIND_SERVICE)`
        : err.code === 'EADDRNOTAVAIL'
          ? `${at.host} is not an address of this machine`
          : err.message;
  return new DivertError('LISTEN_FAILED', `--update-listen ${where}: ${reason}`, { cause: err });
}

/** Header (ID, QR, the request's opcode, `rcode`) and, when it could be read, the zone section echoed. */
function replyBytes(msg: Buffer, rcode: number, questionEnd: number): Buffer {
  const out = Buffer.alloc(questionEnd);
  msg.copy(out, 0, 0, questionEnd);
  out.writeUInt16BE(QR | (msg.readUInt16BE(2) & 0x7800) | (rcode & 0xf), 2);
  out.writeUInt16BE(questionEnd > HEADER_BYTES ? 1 : 0, 4);
  out.writeUInt16BE(0, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(0, 10);
  return out;
}

export async function startUpdateServer(options: UpdateServerOptions): Promise<UpdateServer> {
  const { keys, grants, table, settle } = options;
  const { policy } = table;
  const { log } = options;
  const clock = options.clock ?? (() => Math.floor(Date.now() / 1000));
  // anyone can send unsigned or badly signed datagrams: at most 10 lines about them in 10 s
  const warnRejected = throttledLog((details, message) => log.warn(details, message));

  // A signed request seen again within its time window (a UDP retransmission, or a replay)
  // gets the reply the first one got and is not applied twice.
  const seen = new LRUCache<string, Promise<Buffer>>({ max: 10_000, ttl: 2 * FUDGE_SECONDS * 1000 });
  // One update at a time: two clients of this port never race each other's version checks.
  let queue: Promise<unknown> = Promise.resolve();
  const serialized = <T>(task: () => Promise<T>): Promise<T> => {
    const run = queue.then(task);
    queue = run.catch(() => {});
    return run;
  };

  /** The writes of a plan, in order; SERVFAIL, and the log says what was written, when one fails. */
  async function write(
    plan: Map<string, EntryData | null>,
    entries: Map<string, Entry | null>,
    by: string,
    details: Record<string, unknown>,
  ): Promise<number> {
    const written: string[] = [];
    for (const [name, next] of plan) {
      const current = entries.get(name) ?? null;
      try {
        if (next === null) await table.delete(name, { ifVersion: current!.version, by });
        else await table.put(name, next, { ifVersion: current?.version ?? 0, by });
      } catch (err) {
        const notWritten = [...plan.keys()].slice(written.length);
        log.error(
          { ...details, failed: name, written, notWritten, err: (err as Error).message },
          written.length > 0
            ? `DNS UPDATE failed part way: ${written.join(', ')} written, ${notWritten.join(', ')} not (each name is changed whole or not at all)`
            : 'DNS UPDATE failed; nothing written',
        );
        if (written.length > 0) await settle().catch(() => {});
        return UpdateRcode.SERVFAIL;
      }
      written.push(name);
    }
    let unconfirmed: number[];
    try {
      ({ unconfirmed } = await settle());
    } catch (err) {
      log.error({ ...details, written, err: (err as Error).message }, 'DNS UPDATE written, but the query path did not confirm it');
      return UpdateRcode.SERVFAIL;
    }
    if (unconfirmed.length > 0) {
      // written, but not known to be answered everywhere: not acknowledged, as the admin API would not (it says 202)
      log.error(
        { ...details, written, unconfirmed },
        `DNS UPDATE written, but worker ${unconfirmed.join(', ')} did not confirm in time that it answers with it`,
      );
      return UpdateRcode.SERVFAIL;
    }
    log.info({ ...details, written }, written.length > 0 ? 'DNS UPDATE applied' : 'DNS UPDATE changed nothing');
    return UpdateRcode.NOERROR;
  }

  /**
   * RFC 2136 3: read and check, check the key's grants (before anything is read from the
   * table: a key may change nothing it has no grant for), read the entries, check the
   * prerequisites, then write what passes the write policy.
   */
  async function apply(message: WireMessage, key: TsigKey, client: Client): Promise<number> {
    const zone = message.questions.length === 1 ? nameText(message.questions[0].name) || '.' : undefined;
    const details: Record<string, unknown> = { key: key.name, client: client.address, transport: client.transport, zone };
    try {
      const request = readUpdate(message);
      authorize(grants, key.name, request);
      const names = namesOf(request);
      const entries = new Map(await Promise.all(names.map(async (name) => [name, await table.get(name)] as const)));
      checkPrerequisites(request.prerequisites, entries);
      return await write(planWrites(request, entries, policy), entries, actorOf(key), details);
    } catch (err) {
      if (err instanceof UpdateFailure) {
        log.warn({ ...details, rcode: rcodeName(err.rcode), reason: err.reason }, `DNS UPDATE not applied: ${err.reason}`);
        return err.rcode;
      }
      log.error({ ...details, err: (err as Error).message }, 'DNS UPDATE failed; nothing written');
      return UpdateRcode.SERVFAIL;
    }
  }

  async function answerSigned(msg: Buffer, key: TsigKey, tsig: TsigRecord, questionEnd: number, client: Client): Promise<Buffer> {
    const opcode = (msg.readUInt16BE(2) >> 11) & 0xf;
    let rcode: number;
    if (opcode === OPCODE_UPDATE) rcode = await serialized(() => apply(readMessage(msg)!, key, client));
    else rcode = opcode === OPCODE_QUERY ? UpdateRcode.REFUSED : UpdateRcode.NOTIMP;
    return signReply(replyBytes(msg, rcode, questionEnd), key, tsig, 0, clock());
  }

  async function answer(msg: Buffer, client: Client): Promise<Buffer | null> {
    // a response sent here would be answered by a response: never
    if (msg.length < HEADER_BYTES || msg.readUInt16BE(2) & QR) return null;
    const parsed = readMessage(msg);
    const questionEnd = parsed && parsed.questions.length === 1 ? parsed.questionEnd : HEADER_BYTES;
    const reply = (rcode: number) => replyBytes(msg, rcode, questionEnd);
    const who = { client: client.address, transport: client.transport };
    const verification = verifyMessage(msg, keys, { now: clock() });
    switch (verification.status) {
      case 'malformed':
        warnRejected({ ...who, reason: verification.reason }, `DNS UPDATE port: FORMERR: ${verification.reason}`);
        return reply(UpdateRcode.FORMERR);
      case 'unsigned': {
        const opcode = (msg.readUInt16BE(2) >> 11) & 0xf;
        if (opcode === OPCODE_UPDATE) warnRejected(who, 'DNS UPDATE refused: not signed (updates need a TSIG key of --update-key-file)');
        return reply(opcode === OPCODE_UPDATE || opcode === OPCODE_QUERY ? UpdateRcode.REFUSED : UpdateRcode.NOTIMP);
      }
      case 'rejected':
        warnRejected(
          { ...who, tsigError: verification.error, reason: verification.reason },
          `DNS UPDATE refused (NOTAUTH): ${verification.reason}`,
        );
        return appendUnsignedError(reply(UpdateRcode.NOTAUTH), verification.tsig, verification.error);
      case 'signed-error':
        warnRejected(
          { ...who, key: verification.key.name, tsigError: verification.error, reason: verification.reason },
          `DNS UPDATE refused (NOTAUTH): ${verification.reason}`,
        );
        return signReply(reply(UpdateRcode.NOTAUTH), verification.key, verification.tsig, verification.error, clock());
      case 'verified': {
        const { key, tsig } = verification;
        const replayKey = `${key.name} ${tsig.mac.toString('base64')}`;
        const earlier = seen.get(replayKey);
        if (earlier) {
          log.info(
            { ...who, key: key.name },
            'DNS UPDATE seen before (a retransmission or a replay): sent the same reply again, applied nothing',
          );
          return earlier;
        }
        const replied = answerSigned(msg, key, tsig, questionEnd, client);
        seen.set(replayKey, replied);
        return replied;
      }
    }
  }

  const inFlight = new Set<Promise<unknown>>();
  const handler: Handler = (msg, client) => {
    const done = answer(msg, client).catch((err: unknown) => {
      log.error({ err: (err as Error).message }, 'DNS UPDATE port: request failed');
      return null;
    });
    inFlight.add(done);
    void done.finally(() => inFlight.delete(done));
    return done;
  };

  const faultLog = throttledLog((details, message) => log.warn(details, message));
  const report = listenerReport((event, err) =>
    faultLog({ event, err: err instanceof Error ? err.message : String(err) }, 'DNS UPDATE port: a message could not be served'),
  );
  // anyone may connect (TSIG decides what they may do), but one client network may not hold every slot
  const networks = new ClientNetworks({ v4Prefix: 24, v6Prefix: 56 });
  const admission: TcpAdmission = { admits: () => true, networkOf: (address) => networks.of(address) };
  let listeners: ListenerSet;
  try {
    // updates are few and come from a handful of tools: small TCP caps
    listeners = await ListenerSet.open([options.listen], handler, {
      limits: { ...DEFAULT_TCP_LIMITS, maxConnections: 100, maxPerClient: 16 },
      admission,
      report,
      onError: (err) => log.warn({ err: err.message }, 'DNS UPDATE listener'),
    });
  } catch (err) {
    throw err instanceof BindFailure ? listenError(err.cause, err.at) : err;
  }
  const [address] = listeners.addresses;
  log.info({ update: formatHostPort(address), keys: [...keys.keys()] }, `DNS UPDATE on ${formatHostPort(address)} (UDP and TCP)`);

  return {
    address,
    listenerCounts: report.counts,
    // Stop taking requests, let the updates under way finish their writes and replies, then close.
    close: async () => {
      listeners.stopAccepting();
      await Promise.allSettled([...inFlight]);
      await listeners.close(250);
    },
  };
}
