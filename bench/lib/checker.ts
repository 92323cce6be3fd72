/**
 * The results checker: holds what each client was told against what the
 * upstream received, by message id. A gateway that never loses an accepted
 * message shows lost = 0, duplicated = 0 and no unacknowledged delivery other
 * than those of clients that vanished after their final dot.
 */
import type { Outcome } from './load-generator';

export interface CheckReport {
  /** Transactions started (MAIL FROM sent). */
  readonly sent: number;
  /** Final reply 250. */
  readonly accepted: number;
  /** Refused with 4xx at any stage. */
  readonly refusedTemporary: number;
  /** Refused with 5xx at any stage. */
  readonly refusedPermanent: number;
  /** No reply came (connection lost or reply timeout) while the client stayed. */
  readonly noReply: number;
  /** The client vanished on purpose (fault injection). */
  readonly abandoned: number;
  /** Distinct ids of this run the upstream received. */
  readonly delivered: number;
  /** Accepted (250) but never delivered. */
  readonly lost: number;
  /** Delivered more than once. */
  readonly duplicated: number;
  /** Delivered without the client seeing 250 although it stayed, or delivered without its final dot. */
  readonly unacknowledged: number;
  /** Delivered without a 250 to a client that vanished after its final dot: allowed. */
  readonly unacknowledgedAllowed: number;
  /**
   * Delivered once while the client was told 4xx because the upstream died between
   * accepting the message and sending its 250 (see `CheckOptions.upstreamMayDie`):
   * the ambiguity every SMTP hop has (RFC 1047); allowed, and reported.
   */
  readonly ambiguous: number;
  /** Ids the upstream got that no client sent in this run. */
  readonly unknown: number;
  /** Up to 20 ids per failure kind, for the report. */
  readonly examples: { lost: string[]; duplicated: string[]; unacknowledged: string[] };
  /** lost = 0, duplicated = 0, unacknowledged = 0, unknown = 0. */
  readonly ok: boolean;
}

/**
 * `deliveries` maps each id the upstream received to how many times it came.
 * Only ids starting with `runId` count, so an upstream shared by runs is fine.
 */
export interface CheckOptions {
  /**
   * The upstream was killed during the run. A message it recorded and then died
   * before answering reaches the client as 4xx: such deliveries (once, 4xx at the
   * dot, the gateway's reply naming the lost connection) count as `ambiguous`.
   */
  readonly upstreamMayDie?: boolean;
}

const LOST_CONNECTION = /connection|closed|lost|ECONN/i;

export function check(outcomes: readonly Outcome[], deliveries: ReadonlyMap<string, number>, runId: string, options: CheckOptions = {}): CheckReport {
  const byId = new Map(outcomes.map((outcome) => [outcome.id, outcome]));
  const examples = { lost: [] as string[], duplicated: [] as string[], unacknowledged: [] as string[] };
  const note = (list: string[], id: string) => list.length < 20 && list.push(id);
  let accepted = 0;
  let refusedTemporary = 0;
  let refusedPermanent = 0;
  let noReply = 0;
  let abandoned = 0;
  let lost = 0;
  for (const outcome of outcomes) {
    if (outcome.abandoned) abandoned += 1;
    else if (outcome.code === 250 && outcome.stage === 'dot') accepted += 1;
    else if (outcome.code >= 400 && outcome.code < 500) refusedTemporary += 1;
    else if (outcome.code >= 500) refusedPermanent += 1;
    else noReply += 1;
    if (outcome.code === 250 && outcome.stage === 'dot' && !deliveries.has(outcome.id)) {
      lost += 1;
      note(examples.lost, outcome.id);
    }
  }
  let delivered = 0;
  let duplicated = 0;
  let unacknowledged = 0;
  let unacknowledgedAllowed = 0;
  let ambiguous = 0;
  let unknown = 0;
  for (const [id, count] of deliveries) {
    if (!id.startsWith(`${runId}-`)) continue;
    const outcome = byId.get(id);
    if (!outcome) {
      unknown += 1;
      continue;
    }
    delivered += 1;
    if (count > 1) {
      duplicated += 1;
      note(examples.duplicated, id);
    }
    if (outcome.code === 250 && outcome.stage === 'dot') continue;
    if (outcome.abandoned === 'after-dot') unacknowledgedAllowed += 1;
    else if (options.upstreamMayDie && count === 1 && outcome.stage === 'dot' && outcome.code >= 400 && outcome.code < 500 && LOST_CONNECTION.test(outcome.text ?? '')) {
      ambiguous += 1;
    } else {
      unacknowledged += 1;
      note(examples.unacknowledged, id);
    }
  }
  return {
    sent: outcomes.length,
    accepted,
    refusedTemporary,
    refusedPermanent,
    noReply,
    abandoned,
    delivered,
    lost,
    duplicated,
    unacknowledged,
    unacknowledgedAllowed,
    ambiguous,
    unknown,
    examples,
    ok: lost === 0 && duplicated === 0 && unacknowledged === 0 && unknown === 0,
  };
}

/** One line per failing id: what the client saw and how often the upstream got it. */
export function describeFailures(report: CheckReport, outcomes: readonly Outcome[], deliveries: ReadonlyMap<string, number>): string[] {
  const byId = new Map(outcomes.map((outcome) => [outcome.id, outcome]));
  const lines: string[] = [];
  for (const [kind, ids] of Object.entries(report.examples)) {
    for (const id of ids) {
      const outcome = byId.get(id);
      lines.push(
        `${kind} ${id}: client saw ${outcome?.code || 'no reply'} at ${outcome?.stage}` +
          `${outcome?.abandoned ? ` (abandoned ${outcome.abandoned})` : ''}${outcome?.error ? ` (${outcome.error})` : ''}` +
          `${outcome?.text ? ` "${outcome.text}"` : ''}; upstream received it ${deliveries.get(id) ?? 0}×`,
      );
    }
  }
  return lines;
}

/** The median of the numbers that are not NaN (NaN when none is). */
export function median(values: number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (!sorted.length) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Latency percentiles of accepted messages, in ms. */
export function latencyStats(outcomes: readonly Outcome[]): { p50: number; p95: number; p99: number; max: number } {
  const values = outcomes
    .filter((outcome) => outcome.code === 250 && outcome.stage === 'dot')
    .map((outcome) => outcome.latencyMs)
    .sort((a, b) => a - b);
  const at = (q: number) => (values.length ? values[Math.min(values.length - 1, Math.ceil(q * values.length) - 1)] : Number.NaN);
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: values.length ? values[values.length - 1] : Number.NaN };
}
