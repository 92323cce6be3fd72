/**
 * Faults under load: each scenario runs the load generator through a gateway
 * process while something breaks, then holds every client's reply against
 * what the upstream recorded. `make test-faults` runs them long; the vitest
 * suite runs a short version of each.
 */
import { type CheckReport, check, describeFailures } from './checker';
import { type GatewayProcess, benchGatewayConfig, startGatewayProcess } from './gateway-process';
import { type LoadResult, type Target, runLoad } from './load-generator';
import { startRecordingUpstream, type RecordingUpstream } from '../../testkit/recording-upstream';
import { startUpstreamChild } from './upstream-child';
import type { GatewayConfigInput } from '../../gateway/src/config/schema';

export interface ScenarioOptions {
  /** How long the load runs. */
  readonly durationMs: number;
  /** Concurrent client connections. */
  readonly concurrency: number;
  /** @default 4096 */
  readonly messageBytes?: number;
  /** @default 'tsx' (the sources under test) */
  readonly runtime?: 'dist' | 'tsx';
}

export interface ScenarioResult {
  readonly name: string;
  readonly report: CheckReport;
  readonly load: Pick<LoadResult, 'elapsedMs' | 'connectFailures' | 'refusedSessions' | 'maxOpen'>;
  /** Gateways that exited before they were asked to, with how. */
  readonly crashes: string[];
  /** How each gateway exited when stopped (0 is a clean drain). */
  readonly exits: Array<number | string>;
  /** Rule violations beyond the checker's: crash, bad exit, no reply, no work done. */
  readonly problems: string[];
  /** Things worth knowing that break no rule. */
  readonly notes: string[];
  /** One line per lost / duplicated / unacknowledged id. */
  readonly failureDetails: string[];
  readonly upstreamCounts?: RecordingUpstream['counts'];
}

/** Upstream timeouts short enough that a stalled upstream costs seconds, not minutes. */
const FAULT_GATEWAY_SETTINGS: GatewayConfigInput = {
  upstream: { connectionTimeoutMs: 1000, socketTimeoutMs: 2000 },
  drain: { delaySeconds: 1, graceSeconds: 15 },
};

interface Harness {
  target(): Target;
  /** Runs while the load runs; resolves when its fault is done. */
  during(durationMs: number): Promise<void>;
  deliveries(): Map<string, number>;
  gateways(): GatewayProcess[];
  /** Gateways the scenario itself signalled to stop (so their exit is no crash). */
  retired?: () => GatewayProcess[];
  /** How those exited. */
  stoppedExits?: () => Array<number | string>;
  close(): Promise<void>;
  counts?: () => RecordingUpstream['counts'];
  /** The upstream is killed: deliveries it recorded but never acknowledged are ambiguous, not violations. */
  upstreamMayDie?: boolean;
  /** Messages the upstream got whole but never answered (the sender cannot know their fate). */
  unanswered?: () => Map<string, number>;
  /** Recipients per message (default 1); with more, every accepted message must reach all of them. */
  recipients?: number;
  /** The recipients the upstream took for each id. */
  recipientsOf?: () => Map<string, Set<string>>;
  /** Let clients vanish at random points. */
  disconnectRate?: number;
}

type Scenario = (options: ScenarioOptions) => Promise<Harness>;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function gatewayFor(upstream: { host: string; port: number }, options: ScenarioOptions, extra: GatewayConfigInput = {}): Promise<GatewayProcess> {
  return startGatewayProcess({
    config: benchGatewayConfig(upstream, { ...FAULT_GATEWAY_SETTINGS, ...extra }),
    runtime: options.runtime ?? 'tsx',
  });
}

/** A gateway in front of an in-process recording upstream whose behaviour `during` changes. */
function withRecordingUpstream(
  during: (upstream: RecordingUpstream, durationMs: number) => Promise<void>,
  initial: Parameters<typeof startRecordingUpstream>[0] = {},
  extra: Partial<Harness> = {},
): Scenario {
  return async (options) => {
    const upstream = await startRecordingUpstream(initial);
    const gateway = await gatewayFor(upstream, options).catch(async (error: Error) => {
      await upstream.close();
      throw error;
    });
    return {
      target: () => ({ host: '127.0.0.1', port: gateway.ports.relay }),
      during: (durationMs) => during(upstream, durationMs),
      deliveries: () => upstream.deliveries,
      unanswered: () => upstream.unanswered,
      recipientsOf: () => upstream.recipients,
      gateways: () => [gateway],
      counts: () => upstream.counts,
      close: () => upstream.close(),
      ...extra,
    };
  };
}

export const SCENARIOS: Record<string, Scenario> = {
  /** SIGKILL the upstream a third of the way in; start it again 1.5 s later on the same port. */
  'upstream-killed-and-restarted': async (options) => {
    const upstream = await startUpstreamChild();
    const gateway = await gatewayFor(upstream, options).catch(async (error: Error) => {
      await upstream.stop();
      throw error;
    });
    return {
      target: () => ({ host: '127.0.0.1', port: gateway.ports.relay }),
      async during(durationMs) {
        await sleep(durationMs / 3);
        await upstream.kill();
        await sleep(1500);
        await upstream.restart();
      },
      deliveries: () => upstream.deliveries(),
      gateways: () => [gateway],
      upstreamMayDie: true,
      close: () => upstream.stop(),
    };
  },

  /**
   * 5% of messages are read to the dot and never answered; for 3 s in the middle,
   * all of them, and new upstream connections are accepted but never greeted.
   */
  'upstream-stalls': withRecordingUpstream(
    async (upstream, durationMs) => {
      await sleep(durationMs / 3);
      upstream.setBehaviour({ stallRate: 1, stallGreetingRate: 1 });
      await sleep(3000);
      upstream.setBehaviour({ stallRate: 0.05 });
    },
    { stallRate: 0.05 },
  ),

  /** A third of messages get 451 at the dot, then 421 (and a closed connection) for the second half. */
  'upstream-421-451': withRecordingUpstream(
    async (upstream, durationMs) => {
      await sleep(durationMs / 2);
      upstream.setBehaviour({ tempFailRate: 0.33, tempFailCode: 421 });
    },
    { tempFailRate: 0.33, tempFailCode: 451 },
  ),

  /** A fifth of upstream connections are cut right after DATA's 354. */
  'upstream-drops-mid-data': withRecordingUpstream(async () => undefined, { dropRate: 0.2 }),

  /**
   * A tenth of messages reach the upstream whole and then the connection is cut
   * instead of a reply: the gateway cannot know, must answer 451 and must not
   * send the message again itself (that would deliver it twice).
   */
  'upstream-drops-after-dot': withRecordingUpstream(async () => undefined, { dropAfterDotRate: 0.1 }),

  /**
   * Three recipients per message; the upstream defers (451) a tenth of RCPTs.
   * SMTP cannot defer one recipient after DATA, so a 250 to the client must mean
   * the upstream took every recipient.
   */
  'upstream-defers-recipients': withRecordingUpstream(async () => undefined, { rcptTempFailRate: 0.1 }, { recipients: 3 }),

  /** A third of clients vanish at a random point: after MAIL, RCPT, DATA, mid-body or right after the dot. */
  'clients-disconnect': withRecordingUpstream(async () => undefined, {}, { disconnectRate: 0.33 }),

  /**
   * A rolling update: halfway through, the first gateway gets SIGTERM and new
   * connections go to a second one; the first must finish what it has and exit 0.
   */
  'rolling-update': async (options) => {
    const upstream = await startRecordingUpstream();
    const first = await gatewayFor(upstream, options);
    const second = await gatewayFor(upstream, options);
    let current = first;
    const exits: Array<number | string> = [];
    return {
      target: () => ({ host: '127.0.0.1', port: current.ports.relay }),
      async during(durationMs) {
        await sleep(durationMs / 2);
        first.signal('SIGTERM');
        current = second;
        const exit = await first.waitExit(30_000).catch(() => undefined);
        exits.push(exit ? (exit.code ?? String(exit.signal)) : 'did not exit within 30 s');
      },
      deliveries: () => upstream.deliveries,
      gateways: () => [first, second],
      retired: () => [first],
      stoppedExits: () => exits,
      counts: () => upstream.counts,
      close: () => upstream.close(),
    };
  },
};

export async function runScenario(name: string, options: ScenarioOptions): Promise<ScenarioResult> {
  const scenario = SCENARIOS[name];
  if (!scenario) throw new Error(`unknown fault scenario "${name}"; expected one of ${Object.keys(SCENARIOS).join(', ')}`);
  const harness = await scenario(options);
  const runId = `${name}-${Date.now().toString(36)}`;
  const problems: string[] = [];
  try {
    const loadPromise = runLoad({
      target: harness.target,
      concurrency: options.concurrency,
      messageBytes: options.messageBytes ?? 4096,
      durationMs: options.durationMs,
      disconnectRate: harness.disconnectRate,
      recipients: harness.recipients,
      replyTimeoutMs: 60_000,
      runId,
    });
    const [load] = await Promise.all([loadPromise, harness.during(options.durationMs)]);
    // Let any transaction the gateway still owes the upstream settle before counting.
    await sleep(500);
    const retired = new Set(harness.retired?.() ?? []);
    const crashes = harness
      .gateways()
      .filter((gateway) => gateway.exited() && !retired.has(gateway))
      .map((gateway) => `gateway ${gateway.pid} exited ${JSON.stringify(gateway.exited())} during the run`);
    const exits = [...(harness.stoppedExits?.() ?? [])];
    for (const gateway of harness.gateways()) {
      if (gateway.exited()) continue;
      const exit = await gateway.stop(30_000);
      exits.push(exit.code ?? String(exit.signal));
    }
    const deliveries = harness.deliveries();
    const report = check(load.outcomes, deliveries, runId, { upstreamMayDie: harness.upstreamMayDie });
    if (crashes.length) problems.push(...crashes);
    if (exits.some((exit) => exit !== 0)) problems.push(`gateway exits ${JSON.stringify(exits)}, expected all 0`);
    // A message the upstream got whole but never answered must not arrive again: only the client may retry.
    const unanswered = harness.unanswered?.() ?? new Map<string, number>();
    const resent = [...unanswered].filter(([id, count]) => count + (deliveries.get(id) ?? 0) > 1).map(([id]) => id);
    if (resent.length) problems.push(`${resent.length} messages reached the upstream again after it cut the connection without replying (e.g. ${resent[0]})`);
    const unansweredAccepted = load.outcomes.filter((o) => o.code === 250 && unanswered.has(o.id) && !deliveries.has(o.id));
    if (unansweredAccepted.length) problems.push(`${unansweredAccepted.length} clients got 250 for a message the upstream never acknowledged`);
    if ((harness.recipients ?? 1) > 1) {
      const taken = harness.recipientsOf?.() ?? new Map<string, Set<string>>();
      const short = load.outcomes.filter((o) => o.code === 250 && o.stage === 'dot' && (taken.get(o.id)?.size ?? 0) < (harness.recipients ?? 1));
      if (short.length) problems.push(`${short.length} messages answered 250 reached fewer than ${harness.recipients} recipients (e.g. ${short[0].id}: ${[...(taken.get(short[0].id) ?? [])].join(', ') || 'none'})`);
    }
    if (report.accepted < 10) problems.push(`only ${report.accepted} messages accepted: the scenario did no real work`);
    // A client that sent its dot and heard nothing cannot know whether to retry: that is a broken reply rule.
    // Silence before the dot (the gateway closing a connection) only costs the client a retry, so it is noted.
    const silentAfterDot = load.outcomes.filter((outcome) => !outcome.abandoned && outcome.code === 0 && outcome.stage === 'dot');
    if (silentAfterDot.length) problems.push(`${silentAfterDot.length} transactions got no reply to their final dot (e.g. ${silentAfterDot[0].id}: ${silentAfterDot[0].error})`);
    const silentBeforeDot = load.outcomes.filter((outcome) => !outcome.abandoned && outcome.code === 0 && outcome.stage !== 'dot');
    const notes = silentBeforeDot.length
      ? [`${silentBeforeDot.length} connections closed without a reply before the dot, at ${[...new Set(silentBeforeDot.map((o) => o.stage))].join('/')}`]
      : [];
    if (report.ambiguous) notes.push(`${report.ambiguous} delivered once but answered 451: the upstream died after accepting, before its 250 left (RFC 1047)`);
    return {
      name,
      report,
      load: { elapsedMs: load.elapsedMs, connectFailures: load.connectFailures, refusedSessions: load.refusedSessions, maxOpen: load.maxOpen },
      crashes,
      exits,
      problems,
      notes,
      failureDetails: describeFailures(report, load.outcomes, deliveries),
      upstreamCounts: harness.counts?.(),
    };
  } finally {
    for (const gateway of harness.gateways()) if (!gateway.exited()) await gateway.stop(5_000);
    await harness.close();
  }
}
