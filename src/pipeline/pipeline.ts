// The query path: read → limit → access → intercept → forward. Each stage either produces
// the reply or hands the query on. The rate limit comes before everything that replies,
// so REFUSED and FORMERR count against a client's rate too; access comes before the rest
// so that no byte of a refused client's query reaches the table or an upstream;
// interception comes before forwarding so that a diverted name can never be answered
// with the upstream's (old) data. Stages return a result that says who answered, and the
// transports only move bytes.
//
// One path per configuration, immutable: a reload builds a new one and swaps it in
// (serving.ts); a query already forwarded finishes on the path it came in on.

import { isPassedOn, CLASS_IN, OPCODE_QUERY, Rcode, TYPE_A, TYPE_AAAA } from '../wire/header.js';
import { isUnreadable, readQuery, type Query, type Unreadable } from '../wire/query.js';
import { readEdns, udpLimit, EDNS_UDP_PAYLOAD, type Edns } from '../wire/edns.js';
import type { Selection } from '../wire/answers.js';
import { answerReply, errorReply, headerOnlyFormErr, headerOnlyReply, recordsReply } from '../wire/reply.js';
import type { AnswerCache, Resolution } from '../table/answer-cache.js';
import type { Forwarder } from '../upstream/forwarder.js';
import type { AccessList } from '../net/cidr.js';
import { LATER, type Client, type IntoHandler, type Reply, type ReplySink } from '../transport/handler.js';
import type { RateLimiter } from './rate-limit.js';
import type { QueryLog } from './query-log.js';
import { NO_TYPE, QueryStats } from './query-stats.js';
import type { Outcome, Result } from './outcome.js';
import { PendingQuery } from './pending-query.js';
import type { InFlight } from './in-flight.js';

const BADVERS = 16;
const DROPPED: Result = Object.freeze({ reply: null, outcome: 'dropped' });

/** What local rules need of the pipeline. */
export interface RuleContext {
  /** Resolvers whose EDNS Client Subnet is believed (--trust-ecs); null: nobody's. */
  trustEcs: AccessList | null;
  /** Milliseconds since the epoch; injectable for tests. */
  clock: () => number;
}

/** Per-client rate limiting (--rate-limit): the limiter, and what a client over it gets. */
export interface Limits {
  limiter: RateLimiter | null;
  /** REFUSED, or nothing at all (a spoofed flood then gets no reply to reflect). */
  action: 'refuse' | 'drop';
}

const NO_LIMITS: Limits = Object.freeze({ limiter: null, action: 'drop' as const });
const LIMITED: Result = Object.freeze({ reply: null, outcome: 'limited' });

const DEFAULT_RULES: RuleContext = Object.freeze({ trustEcs: null, clock: Date.now });

/** Where the pipeline reports each query: the figures for /metrics, and the query log. */
export interface Observers {
  stats: QueryStats;
  queryLog: QueryLog | null;
}

export interface PipelineOptions {
  access: AccessList;
  answers: AnswerCache;
  forwarder: Forwarder;
  /** A bug in a stage: logged by the owner; the query gets SERVFAIL. */
  onFault?: (err: unknown) => void;
  rules?: RuleContext;
  limits?: Limits;
  observers?: Observers;
  /** The largest UDP reply divert sends of its own (--max-udp-size); larger ones go out with TC. */
  maxUdpSize?: number;
  /** Where the queries waiting for an answer are counted (shared by the paths of successive configurations). */
  inFlight?: InFlight;
}

export class QueryPipeline {
  private readonly access: AccessList;
  private readonly answers: AnswerCache;
  readonly forwarder: Forwarder;
  private readonly onFault: (err: unknown) => void;
  private readonly rules: RuleContext;
  private readonly limits: Limits;
  readonly observers: Observers;
  private readonly maxUdpSize: number;
  private readonly inFlight: InFlight | null;
  /** Where an entry with rules writes its choice: read at once, so one serves every query. */
  private readonly selection: Selection = { records: Buffer.alloc(0), count: 0, scope: null };

  constructor(options: PipelineOptions) {
    this.access = options.access;
    this.answers = options.answers;
    this.forwarder = options.forwarder;
    this.onFault = options.onFault ?? (() => {});
    this.rules = options.rules ?? DEFAULT_RULES;
    this.limits = options.limits ?? NO_LIMITS;
    this.observers = options.observers ?? { stats: new QueryStats(0), queryLog: null };
    this.maxUdpSize = options.maxUdpSize ?? EDNS_UDP_PAYLOAD;
    this.inFlight = options.inFlight ?? null;
  }

  /** The reply's bytes, as a transport's handler returns them. */
  readonly answer = (msg: Buffer, client: Client): Reply | Promise<Reply> => {
    const result = this.handle(msg, client);
    return result instanceof Promise ? result.then(replyOf) : result.reply;
  };

  /** The reply's bytes at once, or LATER: then they go to `sink` with `tag`. A forwarded
   * query's job reports straight to a PendingQuery here, with no promise on the way. */
  readonly answerInto: IntoHandler = (msg, client, sink, tag) => {
    const started = performance.now();
    const q = readQuery(msg);
    let result: Result | Promise<Result> | typeof LATER;
    try {
      result = this.route(msg, q, client, sink, tag, started);
    } catch (err) {
      result = this.fault(msg, q, err);
    }
    if (result === LATER) return LATER;
    if (!(result instanceof Promise)) return this.count(result.outcome, result.reply, msg, q, client, started);
    this.later(result, msg, q, client, started).then(
      (r) => sink.later(r.reply, tag),
      (err: unknown) => sink.failed(err, tag),
    );
    return LATER;
  };

  /** The reply and who gave it; the query counted in the figures and the query log. */
  handle(msg: Buffer, client: Client): Result | Promise<Result> {
    const started = performance.now();
    const q = readQuery(msg);
    let result: Result | Promise<Result>;
    try {
      result = withoutSink(this.route(msg, q, client, null, null, started));
    } catch (err) {
      result = this.fault(msg, q, err);
    }
    if (!(result instanceof Promise)) {
      this.count(result.outcome, result.reply, msg, q, client, started);
      return result;
    }
    return this.later(result, msg, q, client, started);
  }

  /** A forwarded query of answerInto's has its reply (null: none in time): counted, and the reply it gets. */
  forwarded(reply: Buffer | null, msg: Buffer, q: Query, client: Client, started: number): Reply {
    this.inFlight?.end();
    if (reply) return this.count('forwarded', reply, msg, q, client, started);
    return this.count('servfail', errorReply(msg, q, Rcode.ServFail), msg, q, client, started);
  }

  /** A result still to come: counted in flight meanwhile. */
  private later(result: Promise<Result>, msg: Buffer, q: Query | Unreadable, client: Client, started: number): Promise<Result> {
    this.inFlight?.begin();
    return result.then(
      (r) => this.settle(r, msg, q, client, started),
      (err) => this.settle(this.fault(msg, q, err), msg, q, client, started),
    );
  }

  private trusts(client: Client): boolean {
    return this.rules.trustEcs?.allows(client.address) ?? false;
  }

  private settle(result: Result, msg: Buffer, q: Query | Unreadable, client: Client, started: number): Result {
    this.inFlight?.end();
    this.count(result.outcome, result.reply, msg, q, client, started);
    return result;
  }

  /** Counts the query in the figures and the query log; returns its reply. */
  private count(outcome: Outcome, reply: Reply, msg: Buffer, q: Query | Unreadable, client: Client, started: number): Reply {
    const ms = performance.now() - started;
    this.observers.stats.record(outcome, client.transport, isUnreadable(q) ? NO_TYPE : q.qtype, ms / 1000);
    const log = this.observers.queryLog;
    if (log !== null && log.sampled()) log.write(msg, client, outcome, reply, ms);
    return reply;
  }

  /** A bug must cost one query a SERVFAIL, never the process. */
  private fault(msg: Buffer, q: Query | Unreadable, err: unknown): Result {
    this.onFault(err);
    return isUnreadable(q) ? DROPPED : { reply: errorReply(msg, q, Rcode.ServFail), outcome: 'servfail' };
  }

  /** `sink` null: a forwarded query's result is a promise; otherwise it is LATER, and its reply goes to `sink` with `tag`. */
  private route<T>(
    msg: Buffer,
    q: Query | Unreadable,
    client: Client,
    sink: ReplySink<T> | null,
    tag: T,
    started: number,
  ): Result | Promise<Result> | typeof LATER {
    if (q === 'drop') return DROPPED;
    if (this.limits.limiter !== null && !this.limits.limiter.allows(client.address)) {
      if (this.limits.action === 'drop') return LIMITED;
      return { reply: q === 'formerr' ? headerOnlyReply(msg, Rcode.Refused) : errorReply(msg, q, Rcode.Refused), outcome: 'limited' };
    }
    if (q === 'formerr') return { reply: headerOnlyFormErr(msg), outcome: 'formerr' };
    if (!this.access.allows(client.address)) return { reply: errorReply(msg, q, Rcode.Refused), outcome: 'refused' };
    if (q.opcode !== OPCODE_QUERY) {
      // STATUS and unassigned opcodes go upstream as they came; UPDATE, NOTIFY, IQUERY and DSO never do
      if (!isPassedOn(q.opcode)) return { reply: errorReply(msg, q, Rcode.NotImp), outcome: 'notimp' };
      return this.forward(msg, q, client, sink, tag, started);
    }
    if (q.qclass !== CLASS_IN || q.name === '') return this.forward(msg, q, client, sink, tag, started);

    const found = this.answers.resolve(q.name);
    if (found instanceof Promise) return found.then((answers) => withoutSink(this.answerOrForward(msg, q, client, answers, null, null, 0)));
    return this.answerOrForward(msg, q, client, found, sink, tag, started);
  }

  private answerOrForward<T>(
    msg: Buffer,
    q: Query,
    client: Client,
    answers: Resolution,
    sink: ReplySink<T> | null,
    tag: T,
    started: number,
  ): Result | Promise<Result> | typeof LATER {
    if (!answers) return this.forward(msg, q, client, sink, tag, started);
    this.observers.stats.answeredBy(answers.owner ?? q.name);
    const edns: Edns | null | 'formerr' = readEdns(msg, q);
    if (edns === 'formerr') return { reply: errorReply(msg, q, Rcode.FormErr), outcome: 'formerr' };
    if (edns && edns.version !== 0) return { reply: errorReply(msg, q, BADVERS, edns), outcome: 'formerr' };
    const limit = client.transport === 'udp' ? udpLimit(edns, this.maxUdpSize) : 0xffff;
    if (!answers.select || (q.qtype !== TYPE_A && q.qtype !== TYPE_AAAA)) {
      // NODATA for other types is the same for every subnet: a trusted ECS gets scope 0
      const scope = answers.select && edns?.ecs && this.trusts(client) ? 0 : null;
      return { reply: answerReply(msg, q, answers, edns, limit, scope), outcome: 'intercepted' };
    }
    // an untrusted client's ECS is ignored, and not echoed: as from a server without ECS
    const ecs = edns?.ecs && this.trusts(client) ? edns.ecs : null;
    const chosen = answers.select(client.address, ecs, this.rules.clock(), q.qtype, this.selection);
    return { reply: recordsReply(msg, q, chosen.records, chosen.count, edns, limit, chosen.scope), outcome: 'intercepted' };
  }

  private forward<T>(
    msg: Buffer,
    q: Query,
    client: Client,
    sink: ReplySink<T> | null,
    tag: T,
    started: number,
  ): Promise<Result> | typeof LATER {
    // the forwarder picks the upstream transport by the client's: a stream client's reply is never truncated
    if (sink !== null) {
      this.inFlight?.begin();
      try {
        this.forwarder.forwardTo(msg, q.questionEnd, client.transport, new PendingQuery(this, msg, q, client, started, sink, tag), started);
      } catch (err) {
        // a bug before the job began: it will not end, so it is not waited for
        this.inFlight?.end();
        throw err;
      }
      return LATER;
    }
    return this.forwarder
      .forward(msg, q.questionEnd, client.transport)
      .then((reply) => (reply ? { reply, outcome: 'forwarded' } : { reply: errorReply(msg, q, Rcode.ServFail), outcome: 'servfail' }));
  }
}

/** What route() gives when it has no sink: LATER comes only with one. */
function withoutSink(result: Result | Promise<Result> | typeof LATER): Result | Promise<Result> {
  if (result === LATER) throw new Error('a query went on without a sink for its reply');
  return result;
}

function replyOf(result: Result): Reply {
  return result.reply;
}
