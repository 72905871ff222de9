// What became of a query: the label its figures, its query-log line and its metrics carry.

export type Outcome = 'intercepted' | 'forwarded' | 'refused' | 'formerr' | 'notimp' | 'servfail' | 'dropped' | 'limited';

export const OUTCOMES: readonly Outcome[] = ['intercepted', 'forwarded', 'refused', 'formerr', 'notimp', 'servfail', 'dropped', 'limited'];

export type OutcomeCounts = Record<Outcome, number>;

/** A query's reply (null: nothing is sent) and who gave it. */
export interface Result {
  reply: Buffer | null;
  outcome: Outcome;
}
